//! `hap doctor`: what goes wrong in real setups, and how to fix it.
//!
//! Read-only: it never writes a store, never refreshes, never removes a lock. It reads the
//! raw JSON of the stores as well as the library's parsed view, because the problems worth
//! reporting are exactly where the two differ from what Hermes or Claude Code expect (rows
//! hap skips, tokens Hermes keeps in rows hap treats as borrowed). Findings name files,
//! credential ids and labels; no token value, or fingerprint of one, is ever printed.

use crate::ui::{self, human_ms, instant, relative, sh, Paint};
use hap::inspect::{json_ms, StoreKind, TokenPair, REFRESH_EXPIRY_WARN_MS};
use hap::Config;
use hap::{Pool, Status};
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

/// An expiry further ahead than any token lives means a clock (or a writer) is wrong.
const MAX_PLAUSIBLE_LIFETIME_MS: i64 = 400 * 86_400_000;
/// Below this an `expiresAt` is epoch seconds written where milliseconds belong.
const MS_EPOCH_FLOOR: i64 = 100_000_000_000;
/// 2024-01-01: a system clock before this is certainly wrong.
const CLOCK_FLOOR_MS: i64 = 1_704_067_200_000;
/// Clock difference with the token endpoint worth a warning.
const SKEW_WARN_MS: i64 = 5 * 60_000;
/// Claude Code's refresh lock directory counts as stale past this (proper-lockfile); a hap
/// temp file this old belongs to no write in progress.
const STALE_LOCK_MS: i64 = hap::inspect::REFRESH_LOCK_STALE.as_millis() as i64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok,
    Info,
    Warn,
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

pub struct Finding {
    pub level: Level,
    pub check: &'static str,
    pub what: String,
    pub fix: Option<String>,
}

struct Doctor<'a> {
    cfg: &'a Config,
    now: i64,
    findings: Vec<Finding>,
    /// The credentials file's pair, when it parses.
    creds_pair: Option<TokenPair>,
    /// Paths whose mode was already judged (a directory holds several stores).
    mode_checked: HashSet<PathBuf>,
}

fn mode_of(m: &fs::Metadata) -> u32 {
    m.permissions().mode() & 0o7777
}

fn age_ms(m: &fs::Metadata) -> Option<i64> {
    let mtime = m.modified().ok()?;
    Some(
        SystemTime::now()
            .duration_since(mtime)
            .unwrap_or(Duration::ZERO)
            .as_millis() as i64,
    )
}

/// Why a store's JSON could not be had.
enum Unreadable {
    /// The library refused to read it (not a regular file, too large, ...): its message.
    Io(String),
    /// The bytes are not JSON: serde_json's message.
    NotJson(String),
}

/// Reads a store's bytes and parses them as JSON; the bytes are zeroed when dropped. Read as
/// the library reads stores: a FIFO there must not hang doctor, a huge file is not loaded.
fn read_json(path: &Path) -> Result<Option<Value>, Unreadable> {
    match hap::inspect::read_with_stamp(path) {
        Ok(Some((bytes, _))) => {
            let bytes = zeroize::Zeroizing::new(bytes);
            // serde_json's syntax errors give positions, never the text around them.
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Unreadable::NotJson(e.to_string()))
        }
        Ok(None) => Ok(None),
        Err(e) => Err(Unreadable::Io(e.message)),
    }
}

/// Whether this user may write `path` (`access(2)`, real ids: the CLI runs with its own).
/// Root passes every mode check; a read-only file system still fails it.
fn may_write(path: &Path, dir: bool) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let mode = if dir {
        libc::W_OK | libc::X_OK
    } else {
        libc::W_OK
    };
    // SAFETY: a NUL-terminated path that lives across the call.
    if unsafe { libc::access(c.as_ptr(), mode) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn non_empty_str<'v>(o: &'v Map<String, Value>, k: &str) -> Option<&'v str> {
    o.get(k).and_then(Value::as_str).filter(|s| !s.is_empty())
}

impl Doctor<'_> {
    fn add(&mut self, level: Level, check: &'static str, what: String, fix: Option<String>) {
        self.findings.push(Finding {
            level,
            check,
            what,
            fix,
        });
    }
    fn ok(&mut self, check: &'static str, what: impl Into<String>) {
        self.add(Level::Ok, check, what.into(), None);
    }
    fn info(&mut self, check: &'static str, what: impl Into<String>) {
        self.add(Level::Info, check, what.into(), None);
    }
    fn warn(&mut self, check: &'static str, what: impl Into<String>, fix: impl Into<String>) {
        self.add(Level::Warn, check, what.into(), Some(fix.into()));
    }
    fn error(&mut self, check: &'static str, what: impl Into<String>, fix: impl Into<String>) {
        self.add(Level::Error, check, what.into(), Some(fix.into()));
    }

    fn errors(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.level == Level::Error)
            .count()
    }

    fn clock(&mut self) {
        if self.now < CLOCK_FLOOR_MS {
            self.error(
                "clock",
                format!(
                    "the system clock reads {}: every expiry is judged against it",
                    instant(self.now)
                ),
                "set the clock, e.g. `timedatectl set-ntp true`",
            );
        } else {
            self.ok("clock", format!("system clock reads {}", instant(self.now)));
        }
    }

    /// Files holding tokens: 0600 at most; their directories 0700 at most.
    fn permissions(&mut self, path: &Path, what: &str) {
        let real = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        if !self.mode_checked.insert(real.clone()) {
            return;
        }
        if let Ok(m) = fs::metadata(&real) {
            let mode = mode_of(&m);
            if m.is_file() && mode & 0o077 != 0 {
                self.warn(
                    "permissions",
                    format!(
                        "{what} {} is mode {mode:04o}, wider than 0600: other users can read tokens",
                        real.display()
                    ),
                    format!("chmod 600 {}", sh(&real)),
                );
            }
        }
        if let Some(dir) = real.parent() {
            if !self.mode_checked.insert(dir.to_path_buf()) {
                return;
            }
            if let Ok(m) = fs::metadata(dir) {
                let mode = mode_of(&m);
                if mode & 0o077 != 0 {
                    self.warn(
                        "permissions",
                        format!(
                            "directory {} is mode {mode:04o}, wider than 0700",
                            dir.display()
                        ),
                        format!("chmod 700 {}", sh(dir)),
                    );
                }
            }
        }
    }

    /// The refresh token's own expiry (`claudeAiOauth.refreshTokenExpiresAt`): once it has
    /// passed, every refresh fails and only a new login helps.
    fn refresh_expiry(&mut self, what: &str, at: i64) {
        let fix = "log in again with Claude Code (`claude`, then /login) before then";
        if at <= self.now {
            self.error(
                "refresh expiry",
                format!(
                    "{what}: the refresh token expired {} ago: refreshes fail (REAUTH_REQUIRED)",
                    human_ms(self.now.saturating_sub(at))
                ),
                "log in again with Claude Code (`claude`, then /login)",
            );
        } else if at - self.now <= REFRESH_EXPIRY_WARN_MS {
            self.warn(
                "refresh expiry",
                format!(
                    "{what}: the refresh token itself expires {}; after that every refresh fails \
                     and hap answers REAUTH_REQUIRED",
                    relative(at, self.now)
                ),
                fix,
            );
        } else {
            self.ok(
                "refresh expiry",
                format!(
                    "{what}: the refresh token expires {}",
                    relative(at, self.now)
                ),
            );
        }
    }

    /// An expiry as stores write it (epoch ms): sane, not expired, not absurdly far away.
    fn expiry(&mut self, check: &'static str, what: &str, at: i64, refreshable: bool) -> bool {
        if at > 0 && at < MS_EPOCH_FLOOR {
            self.error(
                check,
                format!(
                    "{what}: expiry {at} looks like epoch seconds, not milliseconds: hap and \
                     Claude Code read it as 1970 and treat the token as expired"
                ),
                "log in again so a correct expiry is written; report the tool that wrote seconds",
            );
            return false;
        }
        if at.saturating_sub(self.now) > MAX_PLAUSIBLE_LIFETIME_MS {
            self.warn(
                "clock",
                format!(
                    "{what}: the token expires {}, longer than any token lives: the system \
                     clock is behind, or the expiry was written wrong",
                    relative(at, self.now)
                ),
                "check the clock (`timedatectl`), then log in again if the clock is right",
            );
            return false;
        }
        if at <= self.now {
            if refreshable {
                self.warn(
                    "expiry",
                    format!(
                        "{what}: the access token expired {} ago",
                        human_ms(self.now.saturating_sub(at))
                    ),
                    "nothing is broken: the next `hap token` refreshes it (or run it now)",
                );
            } else {
                self.error(
                    "expiry",
                    format!(
                        "{what}: the access token expired {} ago and there is no refresh token",
                        human_ms(self.now.saturating_sub(at))
                    ),
                    "log in again with Claude Code (`claude`, then /login)",
                );
            }
            return false;
        }
        true
    }

    /// Every write to a store happens in its directory (temp file + rename, the journal,
    /// the lock files): that directory, the store and its lock file must be writable. A
    /// read-only `~/.hermes` made every `hap token` fail with "cannot open lock file" while
    /// doctor reported 0 errors (issue 10).
    fn writable(&mut self, check: &'static str, store: &Path, lock: &Path, fails: &str) {
        let target = hap::inspect::write_target(store).unwrap_or_else(|_| store.to_path_buf());
        // The directory hap writes in, or the nearest ancestor it would be created in.
        let Some(dir) = target
            .ancestors()
            .skip(1)
            .find(|d| fs::symlink_metadata(d).is_ok())
        else {
            return;
        };
        let mut problems: Vec<(PathBuf, std::io::Error, bool)> = Vec::new();
        if let Err(e) = may_write(dir, true) {
            problems.push((dir.to_path_buf(), e, true));
        }
        for f in [target.as_path(), lock] {
            if fs::metadata(f).is_ok_and(|m| m.is_file()) {
                if let Err(e) = may_write(f, false) {
                    problems.push((f.to_path_buf(), e, false));
                }
            }
        }
        for (p, e, is_dir) in problems {
            let mode = if is_dir { "u+rwx" } else { "u+rw" };
            self.error(
                check,
                format!("hap cannot write {} ({e}): {fails}", p.display()),
                format!(
                    "chmod {mode} {0} if it is yours (ls -ld {0}), else ask its owner or root: \
                     sudo chown \"$(id -un)\" {0}{1}",
                    sh(&p),
                    if check == "pool" {
                        "; or run from Claude Code's login alone with --no-pool (config pool_path: null)"
                    } else {
                        ""
                    }
                ),
            );
        }
    }

    fn credentials(&mut self) {
        let Some(path) = self.cfg.credentials_path.clone() else {
            self.info("credentials", "no credentials file configured");
            return;
        };
        // On macOS (or with credentials_store "keychain") Claude Code's login is in the
        // Keychain first; the file is only its fallback, and may rightly not exist.
        if let Some(k) = hap::inspect::keychain_login(self.cfg) {
            if self.keychain(k, &path) {
                return;
            }
        }
        let link = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.warn(
                    "credentials",
                    format!("{} does not exist: no Claude Code login", path.display()),
                    "log in with Claude Code (`claude`, then /login), or pass --no-credentials \
                     if the pool holds every credential",
                );
                return;
            }
            Err(e) => {
                self.error(
                    "credentials",
                    format!("cannot stat {}: {e}", path.display()),
                    format!(
                        "check the directory's ownership and permissions: ls -ld {}",
                        sh(path.parent().unwrap_or(&path))
                    ),
                );
                return;
            }
        };
        if link.file_type().is_symlink() {
            match fs::canonicalize(&path) {
                // hap locks and journals the target, so both spellings share one refresh;
                // Claude Code does not: its first refresh replaces the link with a regular
                // file, and from then on the target is a stale copy.
                Ok(target) => self.warn(
                    "credentials",
                    format!(
                        "{} is a symlink to {}: hap keeps the link, but Claude Code replaces it \
                         with a regular file on its first refresh, stranding every process \
                         configured with {} on a login that is no longer refreshed",
                        path.display(),
                        target.display(),
                        target.display()
                    ),
                    format!(
                        "configure every process with {} (never the target), or make it a \
                         regular file: cp --remove-destination {} {}",
                        sh(&path),
                        sh(&target),
                        sh(&path)
                    ),
                ),
                Err(e) => {
                    self.error(
                        "credentials",
                        format!("{} is a symlink that leads nowhere: {e}", path.display()),
                        format!("point it at the real file, or remove it: rm {}", sh(&path)),
                    );
                    return;
                }
            }
        }
        match fs::metadata(&path) {
            Ok(m) if !m.is_file() => {
                self.error(
                    "credentials",
                    format!("{} is not a regular file", path.display()),
                    "move it aside and log in again with Claude Code",
                );
                return;
            }
            _ => {}
        }
        self.permissions(&path, "credentials file");
        let lock = hap::inspect::credentials_paths(&path).lock;
        self.writable(
            "credentials",
            &path,
            &lock,
            "a refreshed token cannot be saved and every refresh fails with HAP_STATUS_IO",
        );
        let login = match hap::inspect::read_login(&path) {
            Ok(Some(login)) => login,
            Ok(None) => return,
            Err(e) if e.status == Status::StoreCorrupt => {
                self.error(
                    "credentials",
                    e.message,
                    "hap and Claude Code cannot use it and hap never overwrites it: restore it \
                     from a backup, or move it aside and log in again with Claude Code",
                );
                return;
            }
            Err(e) => {
                self.error(
                    "credentials",
                    e.message,
                    format!("check ownership and permissions: ls -l {}", sh(&path)),
                );
                return;
            }
        };
        let Some(pair) = login else {
            self.warn(
                "credentials",
                format!(
                    "{} holds no login (no claudeAiOauth.accessToken)",
                    path.display()
                ),
                "log in with Claude Code (`claude`, then /login)",
            );
            return;
        };
        let raw = read_json(&path).ok().flatten().unwrap_or(Value::Null);
        let oauth = &raw["claudeAiOauth"];
        self.login(
            &path.display().to_string(),
            &format!("credentials file {}", path.display()),
            pair,
            oauth.get("subscriptionType").is_some(),
            json_ms(&oauth["refreshTokenExpiresAt"]).filter(|t| *t > 0),
        );
    }

    /// The Keychain item of the login (`credentials_store`). True when it settles the
    /// check (the item is the store, or it cannot be read); false when there is no item and
    /// the file is the store, as for Claude Code.
    fn keychain(&mut self, k: hap::inspect::KeychainLogin, path: &Path) -> bool {
        let item = format!(
            "macOS Keychain item '{}' (account '{}')",
            k.service, k.account
        );
        let summary = match k.item {
            Ok(Some(s)) => s,
            Ok(None) => {
                self.info(
                    "credentials",
                    format!("no {item}: the credentials file is the store, as for Claude Code"),
                );
                return false;
            }
            Err(e) => {
                // The store's messages say what to do (unlock, the program, the item).
                self.error(
                    "credentials",
                    e.message,
                    format!(
                        "until then hap cannot read the login; config key credentials_store \
                         \"file\" makes it use {} instead",
                        path.display()
                    ),
                );
                return true;
            }
        };
        // The locks and the journal are beside the file, which may not exist.
        let lock = hap::inspect::credentials_paths(path).lock;
        self.writable(
            "credentials",
            path,
            &lock,
            "the refresh locks cannot be taken and every refresh fails with HAP_STATUS_IO",
        );
        if path.exists() {
            self.info(
                "credentials",
                format!(
                    "{} exists too: Claude Code and hap read the Keychain item first; the file \
                     is a fallback copy",
                    path.display()
                ),
            );
        }
        let Some(pair) = summary.pair else {
            self.warn(
                "credentials",
                format!("{item} holds no login (no claudeAiOauth.accessToken)"),
                "log in with Claude Code (`claude`, then /login)",
            );
            return true;
        };
        self.login(
            &item,
            &item,
            pair,
            summary.has_subscription_type,
            summary.refresh_expires_at_ms,
        );
        true
    }

    /// The checks of a login wherever it is stored (`name` in messages, `what` in the
    /// expiry's), and the pair for the checks that compare with it.
    fn login(
        &mut self,
        name: &str,
        what: &str,
        pair: TokenPair,
        has_subscription_type: bool,
        refresh_expires_at_ms: Option<i64>,
    ) {
        if !has_subscription_type {
            self.warn(
                "credentials",
                format!(
                    "{name}: claudeAiOauth.subscriptionType is missing: Claude Code may fall \
                     back to API-key mode (older Hermes versions dropped it on write-back)"
                ),
                "log in again with Claude Code to restore it; hap keeps every key it finds",
            );
        }
        let refreshable = pair.refresh.is_some();
        if !refreshable {
            self.warn(
                "credentials",
                format!(
                    "{name} holds an access token without a refresh token: it cannot be renewed"
                ),
                "log in again with Claude Code (`claude`, then /login)",
            );
        }
        let sane = match pair.expires_at_ms {
            Some(at) => self.expiry("expiry", what, at, refreshable),
            None => true,
        };
        if let Some(at) = refresh_expires_at_ms {
            self.refresh_expiry(name, at);
        }
        if sane {
            let when = match pair.expires_at_ms {
                Some(at) => format!("expires {}", relative(at, self.now)),
                None => "has no expiry".to_string(),
            };
            self.ok(
                "credentials",
                format!("{name} parses; the login's access token {when}"),
            );
        }
        self.creds_pair = Some(pair);
    }

    fn pool(&mut self) {
        const MEMORY_ONLY: &str = "401/429 verdicts then live only in the memory of the process \
            that got them: other processes keep using a benched credential";
        let Some(path) = self.cfg.pool_path.clone() else {
            self.info(
                "pool",
                format!("no pool file configured (--no-pool): {MEMORY_ONLY}"),
            );
            return;
        };
        if hap::inspect::default_pool_without_hermes(self.cfg) {
            let dir = path.parent().unwrap_or(&path);
            self.info(
                "pool",
                format!(
                    "no Hermes directory ({}): hap works from Claude Code's login alone and \
                     creates nothing there; {MEMORY_ONLY} (to share them: mkdir -m 700 {})",
                    dir.display(),
                    sh(dir)
                ),
            );
            return;
        }
        let lock = hap::inspect::pool_lock_path(&path);
        const POOL_FAILS: &str = "every `hap token` that adopts the login, records a \
            401/429 or refreshes a pool row fails with HAP_STATUS_IO";
        match fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let errors = self.errors();
                self.writable("pool", &path, &lock, POOL_FAILS);
                if self.errors() == errors {
                    self.ok(
                        "pool",
                        format!(
                            "{} does not exist yet: hap creates it (0600, directories 0700) on its first write",
                            path.display()
                        ),
                    );
                }
                return;
            }
            Err(e) => {
                self.error(
                    "pool",
                    format!("cannot stat {}: {e}", path.display()),
                    "check the directory's ownership and permissions",
                );
                return;
            }
            Ok(m) if m.file_type().is_symlink() => self.info(
                "pool",
                format!(
                    "{} is a symlink: supported (hap replaces the target)",
                    path.display()
                ),
            ),
            Ok(_) => {}
        }
        self.permissions(&path, "pool file");
        self.writable("pool", &path, &lock, POOL_FAILS);
        let root = match read_json(&path) {
            Ok(Some(Value::Object(root))) => root,
            Ok(Some(_)) => {
                self.error(
                    "pool",
                    format!("{}: the top level is not a JSON object", path.display()),
                    "restore it from a backup; hap refuses it (STORE_CORRUPT) and leaves it unchanged",
                );
                return;
            }
            Ok(None) => return,
            Err(Unreadable::Io(e)) => {
                self.error(
                    "pool",
                    e,
                    "fix what the message names; hap reads only regular files of at most 16 MiB",
                );
                return;
            }
            Err(Unreadable::NotJson(e)) => {
                self.error(
                    "pool",
                    format!("{} cannot be parsed ({e})", path.display()),
                    "restore it from a backup; hap and Hermes cannot use it, and hap leaves it unchanged",
                );
                return;
            }
        };
        let provider = self.cfg.provider.clone();
        let items = match root.get("credential_pool") {
            None | Some(Value::Null) => {
                self.ok(
                    "pool",
                    format!("{} parses; no credential_pool yet", path.display()),
                );
                return;
            }
            Some(Value::Object(p)) => {
                match p.get(&provider) {
                    None | Some(Value::Null) => {
                        self.ok(
                            "pool",
                            format!(
                                "{} parses; no credential_pool.{provider} rows yet",
                                path.display()
                            ),
                        );
                        return;
                    }
                    Some(Value::Array(items)) => items.clone(),
                    Some(_) => {
                        self.error(
                        "hermes-compat",
                        format!(
                            "{}: credential_pool.{provider} is not a list: hap refuses the file \
                             (STORE_CORRUPT) while Hermes may read it differently",
                            path.display()
                        ),
                        format!("make credential_pool.{provider} a list of row objects (or remove it)"),
                    );
                        return;
                    }
                }
            }
            Some(_) => {
                self.error(
                    "hermes-compat",
                    format!("{}: credential_pool is not an object", path.display()),
                    "make credential_pool an object of provider -> list of rows",
                );
                return;
            }
        };
        self.rows(&path, &provider, &items);
        self.ok(
            "pool",
            format!(
                "{} parses; credential_pool.{provider} has {} row(s)",
                path.display(),
                items.len()
            ),
        );
    }

    /// Rows Hermes and hap would read differently, and rows that cannot work.
    fn rows(&mut self, path: &Path, provider: &str, items: &[Value]) {
        let creds_fp = self.creds_pair.as_ref().map(|p| p.access.fingerprint());
        let mut ids: HashMap<String, usize> = HashMap::new();
        let mut borrowed = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let at = format!("{}: credential_pool.{provider}[{i}]", path.display());
            let Some(o) = item.as_object() else {
                self.warn(
                    "hermes-compat",
                    format!("{at} is not an object: hap skips it"),
                    "remove the entry",
                );
                continue;
            };
            let label = non_empty_str(o, "label").unwrap_or("");
            let Some(id) = non_empty_str(o, "id") else {
                self.warn(
                    "hermes-compat",
                    format!(
                        "{at} (label '{label}') has no id: hap ignores the row, Hermes does not"
                    ),
                    "give it a unique 6-hex-digit id, or remove it",
                );
                continue;
            };
            *ids.entry(id.to_string()).or_default() += 1;
            let name = format!("row {id} of {}", path.display());
            let source = match o.get("source") {
                None | Some(Value::Null) => {
                    self.info(
                        "hermes-compat",
                        format!(
                            "{name} has no source: hap treats it as `manual` (it owns its tokens)"
                        ),
                    );
                    "manual"
                }
                Some(Value::String(s)) => s.as_str(),
                Some(_) => {
                    self.warn(
                        "hermes-compat",
                        format!("{name}: source is not a string: hap treats it as `manual`"),
                        "set source to \"manual\" or \"claude_code\"",
                    );
                    "manual"
                }
            };
            let access = non_empty_str(o, "access_token");
            let refresh = non_empty_str(o, "refresh_token");
            match o.get("last_status") {
                None | Some(Value::Null) => {}
                Some(Value::String(s)) if s == "ok" || s == "exhausted" => {}
                Some(Value::String(s)) if s == "dead" => self.warn(
                    "pool",
                    format!(
                        "{name} is dead ({}): never selected until its store holds a new token",
                        o.get("last_error_reason")
                            .and_then(Value::as_str)
                            .unwrap_or("no reason recorded")
                    ),
                    "log in again (a new token at the row's store lifts it at once)",
                ),
                Some(other) => self.warn(
                    "hermes-compat",
                    format!("{name}: last_status {other} is not null/ok/exhausted/dead: hap treats the row as available"),
                    "set last_status to null",
                ),
            }
            match o.get("expires_at_ms") {
                None | Some(Value::Null) | Some(Value::Number(_)) => {}
                Some(_) => self.warn(
                    "hermes-compat",
                    format!("{name}: expires_at_ms is not a number: hap ignores it"),
                    "write epoch milliseconds, or null",
                ),
            }
            if source == "claude_code" {
                borrowed.push(id.to_string());
                if let Some(a) = access {
                    if creds_fp.as_deref() == Some(hap::inspect::fingerprint(a).as_str()) {
                        self.info(
                            "hermes-compat",
                            format!(
                                "{name} (claude_code) keeps a copy of the login's token, as Hermes \
                                 writes them; hap reads the credentials file instead (same token now)"
                            ),
                        );
                    } else {
                        self.warn(
                            "hermes-compat",
                            format!(
                                "{name} (claude_code) keeps a token that differs from the \
                                 credentials file's: Hermes would use the row's copy, hap uses the \
                                 credentials file"
                            ),
                            "let Hermes re-sync the row from the credentials file, or delete the \
                             row's access_token and refresh_token (the credentials file is its only authority)",
                        );
                    }
                }
                if self.cfg.credentials_path.is_some() && self.creds_pair.is_none() {
                    self.warn(
                        "pool",
                        format!(
                            "{name} borrows the Claude Code login, but there is none to borrow"
                        ),
                        "log in with Claude Code (`claude`, then /login)",
                    );
                }
                continue;
            }
            let owned = source == "manual" || source.starts_with("manual:");
            if !owned {
                self.info(
                    "pool",
                    format!("{name} (source {source}) is used as it is; hap never refreshes it"),
                );
            }
            let Some(a) = access else {
                self.warn(
                    "pool",
                    format!("{name} has no access_token: it is never selected"),
                    "add a token to the row, or remove it",
                );
                continue;
            };
            let is_oauth_token = hap::inspect::is_oauth_token(a);
            match o.get("auth_type").and_then(Value::as_str) {
                Some("oauth") if !is_oauth_token => self.warn(
                    "hermes-compat",
                    format!("{name}: auth_type is oauth but the token is not an OAuth token"),
                    "set auth_type to \"api_key\"",
                ),
                Some("api_key") if is_oauth_token => self.warn(
                    "hermes-compat",
                    format!("{name}: auth_type is api_key but the token is an OAuth token: hap never refreshes it"),
                    "set auth_type to \"oauth\"",
                ),
                _ => {}
            }
            let oauth = match o.get("auth_type").and_then(Value::as_str) {
                Some(t) => t == "oauth",
                None => is_oauth_token,
            };
            let refreshable = owned && oauth && refresh.is_some();
            if owned && oauth && refresh.is_none() {
                self.warn(
                    "pool",
                    format!("{name} is an OAuth row without refresh_token: it cannot be renewed"),
                    "add the refresh token, or log in again",
                );
            }
            if let Some(at) = o.get("expires_at_ms").and_then(hap::inspect::json_ms) {
                self.expiry("expiry", &name, at, refreshable);
            }
        }
        for (id, n) in ids {
            if n > 1 {
                self.warn(
                    "hermes-compat",
                    format!(
                        "id {id} appears {n} times in {}: hap updates only the first",
                        path.display()
                    ),
                    "give every row its own id",
                );
            }
        }
        if borrowed.len() > 1 {
            self.warn(
                "hermes-compat",
                format!(
                    "{} has {} claude_code rows ({}): they share one login and are benched together",
                    path.display(),
                    borrowed.len(),
                    borrowed.join(", ")
                ),
                "keep one claude_code row and remove the others",
            );
        }
    }

    /// Fingerprints of every refresh token the stores hold right now.
    fn store_refresh_fingerprints(&self) -> HashSet<String> {
        let mut set = HashSet::new();
        if let Some(r) = self.creds_pair.as_ref().and_then(|p| p.refresh.as_ref()) {
            set.insert(r.fingerprint());
        }
        if let Some(p) = &self.cfg.pool_path {
            if let Ok(rows) = hap::inspect::read_pool_rows(p, &self.cfg.provider) {
                for row in rows {
                    if let Some(r) = &row.refresh_token {
                        set.insert(r.fingerprint());
                    }
                }
            }
        }
        set
    }

    fn journals(&mut self) {
        let stores: Vec<(StoreKind, PathBuf)> = [
            (StoreKind::Credentials, &self.cfg.credentials_path),
            (StoreKind::Pool, &self.cfg.pool_path),
        ]
        .into_iter()
        .filter_map(|(kind, p)| p.clone().map(|p| (kind, p)))
        .collect();
        let live = self.store_refresh_fingerprints();
        for (kind, store) in stores {
            // hap keys the journal on the file a symlinked store resolves to.
            let Ok(jp) = hap::inspect::journal_path(kind, &store) else {
                continue;
            };
            if fs::symlink_metadata(&jp).is_err() {
                continue;
            }
            self.permissions(&jp, "journal");
            let doc = match hap::inspect::read_journal(&jp) {
                Ok(d) => d,
                Err(e) => {
                    self.error(
                        "journal",
                        e.message,
                        format!(
                            "if `hap token` still works, move it aside (mv {0} {0}.bad); it may \
                             hold the only copy of a refreshed token, so keep the copy",
                            sh(&jp)
                        ),
                    );
                    continue;
                }
            };
            let mut pending = 0;
            for e in &doc.uncommitted {
                if live.contains(&e.spent) {
                    pending += 1;
                    self.warn(
                        "journal",
                        format!(
                            "{} holds a refreshed pair (from {}) that never reached {}: a process \
                             died mid-refresh and the store still holds the spent refresh token",
                            jp.display(),
                            instant(e.at_ms),
                            store.display()
                        ),
                        "run `hap token --force-refresh`: hap commits the journalled pair without a \
                         POST. Do not delete the journal: it holds the only valid refresh token",
                    );
                } else {
                    self.info(
                        "journal",
                        format!(
                            "{} has an uncommitted entry from {} that no store refers to any more \
                             (superseded): harmless",
                            jp.display(),
                            instant(e.at_ms)
                        ),
                    );
                }
            }
            for (grant, b) in &doc.backoff {
                if b.until_ms > self.now {
                    let code = b
                        .code
                        .map(|c| format!(", last HTTP {c}"))
                        .unwrap_or_default();
                    self.warn(
                        "journal",
                        format!(
                            "refreshes of {grant} are backing off until {} ({}) after {} failure(s){code}: no process POSTs before then",
                            instant(b.until_ms),
                            relative(b.until_ms, self.now),
                            b.failures
                        ),
                        "wait; `hap doctor --online` checks that the token endpoint answers",
                    );
                }
            }
            if pending == 0 {
                self.ok(
                    "journal",
                    format!("{}: no pair is waiting to be committed", jp.display()),
                );
            }
        }
    }

    fn locks(&mut self) {
        let mut flocks = Vec::new();
        let mut dirs = Vec::new();
        if let Some(p) = &self.cfg.credentials_path {
            let cf = hap::inspect::credentials_paths(p);
            flocks.push(cf.lock);
            if self.cfg.claude_code_lock {
                // `.oauth_refresh.lock` and `~/.claude.lock`: hap takes both (issue 12).
                for dir in &cf.refresh_lock_dirs {
                    self.refresh_lock_dir(dir);
                }
            }
            dirs.push(hap::inspect::write_target(p).unwrap_or_else(|_| p.clone()));
        }
        if let Some(p) = &self.cfg.pool_path {
            flocks.push(hap::inspect::pool_lock_path(p));
            dirs.push(hap::inspect::write_target(p).unwrap_or_else(|_| p.clone()));
        }
        for lock in flocks {
            if fs::symlink_metadata(&lock).is_err() {
                continue;
            }
            // One non-blocking try: never waits, never holds it past this line.
            match hap::inspect::flock_is_free(&lock) {
                Ok(true) => {
                    self.ok(
                        "locks",
                        format!(
                            "{} is free (a leftover lock file is harmless: flock locks die with their holder)",
                            lock.display()
                        ),
                    );
                }
                Ok(false) => self.info(
                    "locks",
                    format!(
                        "{} is held by a running process right now (it is released when that process exits)",
                        lock.display()
                    ),
                ),
                Err(e) => self.error(
                    "locks",
                    e.message,
                    format!("check ownership and permissions: ls -l {}", sh(&lock)),
                ),
            }
        }
        let mut seen = HashSet::new();
        for store in dirs {
            let Some(dir) = store.parent() else { continue };
            if !seen.insert(dir.to_path_buf()) {
                continue;
            }
            let Ok(entries) = fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !hap::inspect::is_temp_file_name(&name) {
                    continue;
                }
                let old = entry
                    .metadata()
                    .ok()
                    .and_then(|m| age_ms(&m))
                    .is_some_and(|a| a > STALE_LOCK_MS);
                if old {
                    let p = entry.path();
                    self.warn(
                        "locks",
                        format!(
                            "{} is a temp file left by an interrupted write (it may hold tokens)",
                            p.display()
                        ),
                        format!("rm {}", sh(&p)),
                    );
                }
            }
        }
    }

    fn refresh_lock_dir(&mut self, dir: &Path) {
        let Ok(m) = fs::symlink_metadata(dir) else {
            return;
        };
        if !m.is_dir() {
            self.error(
                "locks",
                format!(
                    "{} is not a directory: Claude Code's refresh lock can never be taken",
                    dir.display()
                ),
                format!("rm {}", sh(dir)),
            );
            return;
        }
        let age = age_ms(&m).unwrap_or(0);
        // Stale but beyond rmdir: hap and Claude Code wait on it until their deadline.
        let not_empty = fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some());
        if age > STALE_LOCK_MS && not_empty {
            self.error(
                "locks",
                format!(
                    "{} is stale but not empty: neither hap nor Claude Code can remove it, so \
                     every refresh times out (HAP_STATUS_LOCK_TIMEOUT)",
                    dir.display()
                ),
                format!("rm -r {}", sh(dir)),
            );
            return;
        }
        // hap leaves `<dir>.hap-owner` ("pid inode ctime") beside a lock it holds.
        let owner = hap::inspect::lock_owner(dir);
        if let Some(pid) = owner.filter(|o| !o.alive).map(|o| o.pid) {
            self.warn(
                "locks",
                format!(
                    "{} was left by hap process {pid}, which has exited (touched {} ago)",
                    dir.display(),
                    human_ms(age)
                ),
                format!(
                    "nothing to do: the next hap takes it over at once; to clear it now: rmdir {}",
                    sh(dir)
                ),
            );
            return;
        }
        if age > STALE_LOCK_MS {
            self.warn(
                "locks",
                format!(
                    "{} is stale: its holder stopped touching it {} ago (it died mid-refresh)",
                    dir.display(),
                    human_ms(age)
                ),
                format!(
                    "hap and Claude Code take over a lock older than 60 s by themselves; to clear it now: rmdir {}",
                    sh(dir)
                ),
            );
        } else {
            self.info(
                "locks",
                format!(
                    "{} exists: a refresh is in progress in {} (touched {} ago)",
                    dir.display(),
                    match owner {
                        Some(o) => format!("hap process {}", o.pid),
                        None => "Claude Code or another tool".to_string(),
                    },
                    human_ms(age)
                ),
            );
        }
    }

    /// What the library itself makes of it all: can a resolve succeed right now?
    fn resolvable(&mut self) {
        let pool = match Pool::open(self.cfg.clone()) {
            Ok(p) => p,
            Err(e) => {
                self.error(
                    "pool",
                    format!(
                        "hap cannot open the pool: {} ({})",
                        e.message,
                        e.status.name()
                    ),
                    "fix the findings above",
                );
                return;
            }
        };
        let doc = match pool.status() {
            Ok(d) => d,
            Err(e) => {
                self.error(
                    "pool",
                    format!(
                        "hap cannot read the pool: {} ({})",
                        e.message,
                        e.status.name()
                    ),
                    "fix the findings above",
                );
                return;
            }
        };
        let creds = doc["credentials"].as_array().cloned().unwrap_or_default();
        let with_token: Vec<&Value> = creds
            .iter()
            .filter(|c| c["has_token"].as_bool() != Some(false))
            .collect();
        if with_token.is_empty() {
            let adoptable = self.creds_pair.is_some()
                && self.cfg.pool_path.is_some()
                && self.cfg.adopt_external_logins;
            let pool_broken = self
                .findings
                .iter()
                .any(|f| f.check == "pool" && f.level == Level::Error);
            if adoptable && pool_broken {
                self.info(
                    "usable",
                    "the Claude Code login is adopted into the pool at the first `hap token` \
                     once the pool error above is fixed; until then `hap token` fails",
                );
            } else if adoptable {
                self.ok(
                    "usable",
                    "the Claude Code login is adopted into the pool at the first `hap token`",
                );
            } else {
                let pool = self
                    .cfg
                    .pool_path
                    .as_ref()
                    .map(|p| {
                        format!(
                            " or add a row to credential_pool.{} in {}",
                            self.cfg.provider,
                            p.display()
                        )
                    })
                    .unwrap_or_default();
                self.error(
                    "usable",
                    "no credential at all: every resolve fails with HAP_STATUS_NO_CREDENTIAL",
                    format!("log in with Claude Code (`claude`, then /login){pool}"),
                );
            }
            return;
        }
        let available = with_token
            .iter()
            .filter(|c| c["available"].as_bool() == Some(true))
            .count();
        if available > 0 {
            self.ok(
                "usable",
                format!(
                    "{} credential(s), {available} available now",
                    with_token.len()
                ),
            );
            return;
        }
        let next = with_token
            .iter()
            .filter_map(|c| c["available_at_ms"].as_i64())
            .min();
        match next {
            Some(at) => self.warn(
                "usable",
                format!(
                    "every credential is cooling down; the first comes back at {} ({})",
                    instant(at),
                    relative(at, self.now)
                ),
                "wait, or add another credential; `hap status` shows each one",
            ),
            None => self.error(
                "usable",
                "every credential is dead: resolves fail until someone logs in again",
                "log in again with Claude Code (`claude`, then /login)",
            ),
        }
    }

    fn config(&mut self) {
        for url in &self.cfg.token_urls {
            if url.to_ascii_lowercase().starts_with("http://") {
                self.info(
                    "config",
                    format!("token URL {url} is plain http to loopback (a test endpoint?)"),
                );
            }
        }
        if !self.cfg.claude_code_lock {
            self.info(
                "config",
                "claude_code_lock is off: a Claude Code refreshing at the same moment is not excluded",
            );
        }
    }

    /// `--online`: each token URL answers a GET (no body, no token: never a refresh), and the
    /// server's Date header against our clock.
    fn online(&mut self) {
        let agent = ureq::AgentBuilder::new()
            .redirects(0)
            .timeout(Duration::from_millis(self.cfg.http_timeout_ms))
            .user_agent(&self.cfg.user_agent)
            .build();
        let mut reachable = 0;
        let mut clock_checked = false;
        let urls = self.cfg.token_urls.clone();
        for url in &urls {
            let started = Instant::now();
            let resp = match agent.get(url).call() {
                Ok(r) => Ok(r),
                Err(ureq::Error::Status(_, r)) => Ok(r),
                Err(ureq::Error::Transport(t)) => Err(t),
            };
            match resp {
                Ok(r) => {
                    reachable += 1;
                    let ms = started.elapsed().as_millis();
                    let code = r.status();
                    if code >= 500 {
                        self.warn(
                            "online",
                            format!("{url} answers, but with HTTP {code} (to a GET), in {ms} ms"),
                            "the endpoint may be down; hap retries with a back-off",
                        );
                    } else {
                        self.ok(
                            "online",
                            format!("{url} is reachable (HTTP {code} to a GET; no refresh attempted) in {ms} ms"),
                        );
                    }
                    if !clock_checked {
                        if let Some(server_ms) = r.header("date").and_then(parse_http_date_ms) {
                            clock_checked = true;
                            // The Date header has 1 s resolution and was sent mid-request.
                            let skew = self.now.saturating_sub(server_ms);
                            if skew.abs() > SKEW_WARN_MS {
                                self.warn(
                                    "clock",
                                    format!(
                                        "this machine's clock is {} {} the token endpoint's: tokens look valid or expired at the wrong time",
                                        human_ms(skew.abs()),
                                        if skew > 0 { "ahead of" } else { "behind" }
                                    ),
                                    "synchronise the clock, e.g. `timedatectl set-ntp true`",
                                );
                            } else {
                                self.ok(
                                    "clock",
                                    format!(
                                        "clock within {} of the token endpoint's",
                                        human_ms(skew.abs().max(1000))
                                    ),
                                );
                            }
                        }
                    }
                }
                Err(t) => {
                    self.add(
                        Level::Warn,
                        "online",
                        format!("{url} is not reachable: {t}"),
                        Some("check DNS, firewall and network access to that host".into()),
                    );
                }
            }
        }
        if reachable == 0 {
            self.error(
                "online",
                "no token endpoint is reachable: refreshes fail with HAP_STATUS_UNAVAILABLE",
                "check DNS, firewall and network access; --token-url overrides the endpoints",
            );
        }
    }
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110 IMF-fixdate) to epoch ms.
fn parse_http_date_ms(v: &str) -> Option<i64> {
    let parts: Vec<&str> = v.split_whitespace().collect();
    if parts.len() != 6 || parts[5] != "GMT" {
        return None;
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == parts[2])? + 1;
    let day: u32 = parts[1].parse().ok()?;
    let year: u32 = parts[3].parse().ok()?;
    hap::inspect::parse_iso8601_ms(&format!("{year:04}-{month:02}-{day:02}T{}Z", parts[4]))
}

pub fn diagnose(cfg: &Config, online: bool) -> Vec<Finding> {
    let mut d = Doctor {
        cfg,
        now: hap::inspect::now_ms(),
        findings: Vec::new(),
        creds_pair: None,
        mode_checked: HashSet::new(),
    };
    d.clock();
    d.config();
    d.credentials();
    d.pool();
    d.journals();
    d.locks();
    // hap agent (issue 15).
    d.findings.extend(crate::agent::findings(cfg));
    // hap fleet (issue 16).
    d.findings.extend(crate::fleet::findings(cfg));
    d.resolvable();
    if online {
        d.online();
    }
    d.findings
}

pub fn run(cfg: &Config, online: bool, json: bool, paint: Paint) -> ExitCode {
    let findings = diagnose(cfg, online);
    let count = |l: Level| findings.iter().filter(|f| f.level == l).count();
    let (errors, warnings) = (count(Level::Error), count(Level::Warn));
    if json {
        let list: Vec<Value> = findings
            .iter()
            .map(|f| {
                json!({"level": f.level.as_str(), "check": f.check, "what": f.what, "fix": f.fix})
            })
            .collect();
        let doc = json!({"findings": list, "errors": errors, "warnings": warnings});
        ui::outln(&serde_json::to_string_pretty(&doc).expect("a Value serializes"));
    } else {
        let mut out = String::new();
        for f in &findings {
            let tag = format!("{:<5}", f.level.as_str());
            let tag = match f.level {
                Level::Ok => paint.green(&tag),
                Level::Info => paint.dim(&tag),
                Level::Warn => paint.yellow(&tag),
                Level::Error => paint.red(&tag),
            };
            out.push_str(&format!("{tag}  {:<13} {}\n", f.check, f.what));
            if let Some(fix) = &f.fix {
                out.push_str(&format!(
                    "{:<5}  {:<13} {} {fix}\n",
                    "",
                    "",
                    paint.bold("fix:")
                ));
            }
        }
        out.push_str(&format!("\n{} error(s), {} warning(s)\n", errors, warnings));
        ui::out(&out);
    }
    if errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_date() {
        assert_eq!(
            parse_http_date_ms("Sun, 06 Nov 1994 08:49:37 GMT"),
            hap::inspect::parse_iso8601_ms("1994-11-06T08:49:37Z")
        );
        assert_eq!(parse_http_date_ms("yesterday"), None);
    }
}
