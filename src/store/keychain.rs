//! Claude Code's login in the macOS Keychain, driven through `/usr/bin/security` exactly as
//! Claude Code 2.1.328 drives it (interop/claude-code/FINDINGS.md, section 9), with its
//! credentials file as the fallback store.
//!
//! Platform-neutral on purpose: no macOS target can be built where hap is tested, so this
//! code runs on Linux against a fake `security` (`testing/fake_security.py`, the program path
//! is the config key `security_program`); only the *default* choice of this store is behind
//! `cfg(target_os = "macos")` (`StoreKind::default_for_platform`).
//!
//! * **Item**: service `Claude Code-credentials` (plus `-<8 hex of sha256>` of the config
//!   directory, see [`service_name`]), account `$USER` (see [`account_name`]). The item holds
//!   the same JSON as the credentials file; its `claudeAiOauth` is read and merged by the
//!   file's own code (`credentials::parse`, `credentials::merge_login`).
//! * **Read**: `security find-generic-password -a A -w -s S`. Exit 44: no item, and then the
//!   credentials file is the store (Claude Code's order). Exit 36: the keychain is locked, an
//!   error saying what to do (never a fallback: the item may hold a newer pair than the file).
//! * **Write**: `security -i` with `add-generic-password -U -a "A" -s "S" -X "<hex>"` on
//!   standard input, never in argv (the process list is world-readable). Claude Code falls
//!   back to argv when that line is longer than 4032 bytes; hap refuses instead.
//! * **When the Keychain has no item**, hap reads *and writes* the credentials file: it never
//!   creates the item and never deletes the file (Claude Code does both after its first
//!   Keychain save). The login stays where its owner put it; Claude Code, reading the
//!   Keychain first and finding nothing, reads the file hap wrote. Creating the item from a
//!   process that cannot reach the login keychain (started by launchd, over ssh) would fail,
//!   and deleting a file hap does not own is Claude Code's decision to make.
//! * **Locks and journal**: a Keychain item has no file to `flock`: the credentials file's
//!   own locks (`.credentials.lock`, Claude Code's `.oauth_refresh.lock`) guard the item too,
//!   as Claude Code's locks in that directory guard its Keychain saves; the journal sits
//!   beside the credentials file.
//! * **Stamp**: [`Stamp::Unknown`], every decision re-reads the item.

use crate::authority::{Authority, Deferred, PairRead, Stamp, Written};
use crate::credentials::{self, CredentialsFile, Issued, LoginSummary, RequestShape, TokenPair};
use crate::error::{Error, Result, Status};
use crate::journal::Journal;
use crate::lock::{Held, LockSpec};
use crate::secret::Secret;
use serde_json::{Map, Value};
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// `security`'s exit status for "the specified item could not be found in the keychain".
pub const EXIT_NO_ITEM: i32 = 44;
/// `security`'s exit status for "user interaction is not allowed" (the keychain is locked).
pub const EXIT_LOCKED: i32 = 36;
/// Longest `security -i` input line Claude Code sends on standard input (`Ve`, 2.1.328);
/// `security`'s interactive reader truncates longer lines.
pub const MAX_STDIN_LINE: usize = 4032;
/// The default program.
pub const SECURITY_PROGRAM: &str = "/usr/bin/security";
/// Each `security` call's bound. Claude Code allows 2 s; hap allows more because a refresh
/// that times out here after the token server answered has to leave the pair in the journal.
pub const SECURITY_TIMEOUT: Duration = Duration::from_secs(5);

/// Service base name (`"Claude Code" + OAUTH_FILE_SUFFIX ("" in production) + "-credentials"`).
pub const SERVICE_BASE: &str = "Claude Code-credentials";

/// The Keychain service name Claude Code 2.1.328 uses, from the values of
/// `CLAUDE_SECURESTORAGE_CONFIG_DIR` and `CLAUDE_CONFIG_DIR` (`H8`/`bBe`): `-<first 8 hex of
/// sha256>` of the NFC form of the string as given (no realpath, no slash trimming) is
/// appended when `CLAUDE_SECURESTORAGE_CONFIG_DIR` is set and non-empty (hash of it), or when
/// it is unset and `CLAUDE_CONFIG_DIR` is set and non-empty (hash of that). Set but empty
/// `CLAUDE_SECURESTORAGE_CONFIG_DIR` means the default directory: no hash.
pub fn service_name(secure_dir: Option<&OsStr>, config_dir: Option<&OsStr>) -> String {
    let hashed = match secure_dir {
        Some(s) if s.is_empty() => None,
        Some(s) => Some(s),
        None => config_dir.filter(|c| !c.is_empty()),
    };
    match hashed {
        None => SERVICE_BASE.to_string(),
        Some(dir) => {
            use sha2::Digest;
            // A non-UTF-8 path cannot reach JavaScript intact either; its lossy form is what
            // Node would hash.
            let text = dir.to_string_lossy();
            let nfc = icu_normalizer::ComposingNormalizerBorrowed::new_nfc().normalize(&text);
            let digest = sha2::Sha256::digest(nfc.as_bytes());
            let hex: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
            format!("{SERVICE_BASE}-{hex}")
        }
    }
}

/// [`service_name`] from this process's environment.
pub fn service_name_from_env() -> String {
    service_name(
        std::env::var_os("CLAUDE_SECURESTORAGE_CONFIG_DIR").as_deref(),
        std::env::var_os("CLAUDE_CONFIG_DIR").as_deref(),
    )
}

fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The Keychain account Claude Code 2.1.328 uses (`z1`/`Bee`): `$USER` (when set and
/// non-empty), else the login name of the password database, and `claude-code-user` when
/// there is none or it fails `^[a-zA-Z0-9._-]+$`.
pub fn account_name(user_env: Option<&OsStr>, passwd_name: Option<String>) -> String {
    let name = match user_env.filter(|u| !u.is_empty()) {
        Some(u) => u.to_str().map(str::to_string),
        None => passwd_name,
    };
    match name {
        Some(n) if plain_name(&n) => n,
        _ => "claude-code-user".to_string(),
    }
}

/// This process's user's login name from the password database (`os.userInfo()`).
fn passwd_name() -> Option<String> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: `pwd` is plain old data that getpwuid_r fills in; `result` is set to null or
    // to `&pwd`.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; `buf` outlives every use of `pwd`'s
    // string pointers below.
    let rc = unsafe {
        libc::getpwuid_r(
            libc::getuid(),
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
        return None;
    }
    // SAFETY: getpwuid_r succeeded: `pw_name` points to a NUL-terminated string in `buf`.
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
    name.to_str().ok().map(str::to_string)
}

/// [`account_name`] from this process's environment.
pub fn account_name_from_env() -> String {
    account_name(std::env::var_os("USER").as_deref(), passwd_name())
}

/// What one `security` call answered.
struct Answer {
    code: Option<i32>,
    stdout: Zeroizing<Vec<u8>>,
}

/// What the Keychain holds now.
enum Item {
    /// No item (exit 44, or an empty answer): the credentials file is the store.
    Absent,
    /// The item's JSON, parsed: the whole object and the login in it.
    Present {
        root: Map<String, Value>,
        pair: Option<TokenPair>,
    },
}

/// Claude Code's login in the Keychain, the credentials file as the fallback store.
#[derive(Clone, Debug)]
pub struct KeychainStore {
    program: PathBuf,
    service: String,
    account: String,
    timeout: Duration,
    file: CredentialsFile,
}

impl KeychainStore {
    /// The item this process's Claude Code uses (service and account from the environment),
    /// read and written with `program`, falling back to `file`.
    pub fn new(program: PathBuf, file: CredentialsFile) -> KeychainStore {
        KeychainStore::with_item(
            program,
            service_name_from_env(),
            account_name_from_env(),
            file,
        )
    }

    pub fn with_item(
        program: PathBuf,
        service: String,
        account: String,
        file: CredentialsFile,
    ) -> KeychainStore {
        KeychainStore {
            program,
            service,
            account,
            timeout: SECURITY_TIMEOUT,
            file,
        }
    }

    /// Each `security` call's bound (default [`SECURITY_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> KeychainStore {
        self.timeout = timeout;
        self
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    /// The fallback file (also where the locks and the journal live).
    pub fn credentials_file(&self) -> &CredentialsFile {
        &self.file
    }

    /// How errors and `STORE_CORRUPT` name the item: never a secret.
    fn item_name(&self) -> String {
        format!(
            "macOS Keychain item '{}' (account '{}')",
            self.service, self.account
        )
    }

    fn error(&self, status: Status, what: impl std::fmt::Display) -> Error {
        Error::new(status, format!("{}: {what}", self.item_name()))
    }

    fn locked_error(&self) -> Error {
        self.error(
            Status::Io,
            format!(
                "the keychain is locked (security exit {EXIT_LOCKED}): unlock it \
                 (`security unlock-keychain`, or log in at the Mac) and retry; a process \
                 started by launchd or over ssh may not reach the login keychain at all, and \
                 then config key credentials_store \"file\" uses {} instead",
                self.file.path().display()
            ),
        )
    }

    /// Runs `security` with `args` (never a secret) and `stdin` (where a secret goes),
    /// bounded by the timeout; the child is killed and reaped when it runs over.
    fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<Answer> {
        let mut child = Command::new(&self.program)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                self.error(
                    Status::Io,
                    format!(
                        "cannot run {} ({e}): set config key security_program to the \
                         `security` program, or credentials_store \"file\"",
                        self.program.display()
                    ),
                )
            })?;
        // Read on threads so a program that fills a pipe never deadlocks the wait below.
        let mut out = child.stdout.take().expect("piped");
        let reader = std::thread::spawn(move || {
            let mut buf = Zeroizing::new(Vec::new());
            let _ = out.read_to_end(&mut buf);
            buf
        });
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // A program that exits without reading its input answers with its status below.
            let _ = pipe.write_all(input);
        }
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2))
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let _ = reader.join();
                    return Err(self.error(
                        Status::Io,
                        format!(
                            "{} {} did not answer within {} ms; it was stopped (a Keychain \
                             prompt waiting for a click does this: answer it and retry)",
                            self.program.display(),
                            args.first().copied().unwrap_or(""),
                            self.timeout.as_millis()
                        ),
                    ));
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(self.error(Status::Io, format!("waiting for security: {e}")));
                }
            }
        };
        let stdout = reader.join().unwrap_or_default();
        Ok(Answer {
            code: status.code(),
            stdout,
        })
    }

    /// The item as it is now.
    fn read_item(&self) -> Result<Item> {
        let a = self.run(
            &[
                "find-generic-password",
                "-a",
                &self.account,
                "-w",
                "-s",
                &self.service,
            ],
            None,
        )?;
        match a.code {
            Some(0) => {}
            Some(EXIT_NO_ITEM) => return Ok(Item::Absent),
            Some(EXIT_LOCKED) => return Err(self.locked_error()),
            other => {
                return Err(self.error(
                    Status::Io,
                    format!(
                        "security find-generic-password failed ({}); run it by hand \
                         (`security find-generic-password -a '{}' -s '{}'`) to see why",
                        exit_text(other),
                        self.account,
                        self.service
                    ),
                ))
            }
        }
        // `-w` prints the password and a newline.
        let text: &[u8] = a.stdout.strip_suffix(b"\n").unwrap_or(&a.stdout);
        if text.iter().all(u8::is_ascii_whitespace) {
            // Claude Code reads an empty item as none and falls back to the file.
            return Ok(Item::Absent);
        }
        let (root, pair) = credentials::parse(Path::new(&self.item_name()), text)?;
        Ok(Item::Present { root, pair })
    }

    /// What `hap doctor` checks of the item (`inspect::keychain_login`): `None` when there is
    /// no item (the credentials file is the store then).
    pub fn summary(&self) -> Result<Option<LoginSummary>> {
        Ok(match self.read_item()? {
            Item::Absent => None,
            Item::Present { root, pair } => Some(LoginSummary::of(&root, pair)),
        })
    }

    /// Saves `root` as the item, through `security -i`'s standard input.
    fn save_item(&self, root: Map<String, Value>) -> Result<()> {
        // Compact, as Claude Code writes it.
        let json = Zeroizing::new(
            serde_json::to_vec(&Value::Object(root)).expect("a serde_json::Value serializes"),
        );
        let mut line = Zeroizing::new(String::with_capacity(json.len() * 2 + 128));
        line.push_str(&format!(
            "add-generic-password -U -a \"{}\" -s \"{}\" -X \"",
            self.account, self.service
        ));
        for b in json.iter() {
            line.push(char::from_digit((b >> 4) as u32, 16).expect("a nibble"));
            line.push(char::from_digit((b & 15) as u32, 16).expect("a nibble"));
        }
        line.push_str("\"\n");
        if line.len() > MAX_STDIN_LINE {
            // Claude Code would now put the hex in argv, where every user's `ps` sees it.
            return Err(self.error(
                Status::Io,
                format!(
                    "the login is {} bytes of JSON, too long for one `security -i` line \
                     ({MAX_STDIN_LINE} bytes with the command); hap never passes a secret in \
                     argv, so nothing was written (the new pair is in hap's journal). Remove \
                     other data from the item, or set config key credentials_store \"file\"",
                    json.len()
                ),
            ));
        }
        let a = self.run(&["-i"], Some(line.as_bytes()))?;
        match a.code {
            Some(0) => Ok(()),
            Some(EXIT_LOCKED) => Err(self.locked_error()),
            other => Err(self.error(
                Status::Io,
                format!(
                    "security add-generic-password failed ({}); nothing was written (the \
                     new pair is in hap's journal). A process started by launchd cannot \
                     write the login keychain",
                    exit_text(other)
                ),
            )),
        }
    }
}

fn exit_text(code: Option<i32>) -> String {
    match code {
        Some(c) => format!("exit {c}"),
        None => "killed by a signal".into(),
    }
}

fn refresh_of(pair: &Option<TokenPair>) -> Option<&Secret> {
    pair.as_ref().and_then(|p| p.refresh.as_ref())
}

/// The Keychain item, else the credentials file: one store to hap.
impl Authority for KeychainStore {
    fn grant_key(&self) -> String {
        // One login (Claude Code's), wherever it sits: the file's key, so a journal entry
        // written while the login was in the file is still replayed once it is in the item.
        credentials::GRANT_CREDENTIALS.to_string()
    }

    fn name(&self) -> String {
        format!("{}, else {}", self.item_name(), self.file.path().display())
    }

    fn file(&self) -> Option<PathBuf> {
        None
    }

    fn stamp(&self) -> Result<Stamp> {
        Ok(Stamp::Unknown)
    }

    fn read_pair(&self) -> Result<PairRead> {
        let pair = match self.read_item()? {
            Item::Present { pair, .. } => pair,
            Item::Absent => self.file.read()?.and_then(|r| r.pair),
        };
        Ok(PairRead {
            stamp: Stamp::Unknown,
            pair,
        })
    }

    fn write_pair(
        &self,
        held: &Held,
        replaces: Option<&Secret>,
        pair: &TokenPair,
        issued: &Issued,
    ) -> Result<Written> {
        // Claude Code wraps its Keychain writes in the storage-write lock too; held for the
        // re-read and the save only, as for the file.
        let storage = self.file.take_storage_write_lock()?;
        match self.read_item()? {
            // No item: the login is in the file, and stays there (see the module comment).
            // The file's write takes the lock itself.
            Item::Absent => {
                drop(storage);
                Authority::write_pair(&self.file, held, replaces, pair, issued)
            }
            Item::Present {
                mut root,
                pair: holds,
            } => {
                if refresh_of(&holds) != replaces {
                    return Ok(Written::Moved);
                }
                credentials::merge_login(&mut root, pair, issued);
                self.save_item(root)?;
                // `security -i` has answered 0 for a command it did not carry out: read back
                // before calling the pair durable.
                match self.read_item()? {
                    Item::Present {
                        pair: Some(now), ..
                    } if now.access == pair.access => Ok(Written::Stored),
                    _ => Err(self.error(
                        Status::Io,
                        "security -i answered success but the item does not hold the new \
                         pair; nothing else was written (the new pair is in hap's journal)",
                    )),
                }
            }
        }
    }

    fn locks(&self) -> Result<Vec<LockSpec>> {
        self.file.locks()
    }

    fn journal(&self) -> Result<Journal> {
        self.file.journal()
    }

    fn request_shape(&self) -> Result<RequestShape> {
        match self.read_item()? {
            Item::Present { root, .. } => Ok(root
                .get("claudeAiOauth")
                .and_then(Value::as_object)
                .map_or_else(
                    || credentials::request_shape(&Map::new()),
                    credentials::request_shape,
                )),
            Item::Absent => self.file.request_shape(),
        }
    }

    fn refresh_deferred(&self) -> Option<Deferred> {
        self.file.refresh_deferred()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_name_follows_claude_codes_rules() {
        let s =
            |a: Option<&str>, b: Option<&str>| service_name(a.map(OsStr::new), b.map(OsStr::new));
        assert_eq!(s(None, None), "Claude Code-credentials");
        let h = |t: &str| {
            use sha2::Digest;
            let d = sha2::Sha256::digest(t.as_bytes());
            d[..4]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        assert_eq!(
            s(None, Some("/tmp/cc")),
            format!("Claude Code-credentials-{}", h("/tmp/cc"))
        );
        assert_eq!(
            s(Some("/tmp/secure"), Some("/tmp/cc")),
            format!("Claude Code-credentials-{}", h("/tmp/secure"))
        );
        // Set but empty: the default directory, no hash, whatever CLAUDE_CONFIG_DIR says.
        assert_eq!(s(Some(""), Some("/tmp/cc")), "Claude Code-credentials");
        assert_eq!(s(None, Some("")), "Claude Code-credentials");
        // As given: a trailing slash is another name.
        assert_ne!(s(None, Some("/tmp/cc/")), s(None, Some("/tmp/cc")));
        // NFC: a decomposed "é" hashes as the composed one.
        assert_eq!(
            s(None, Some("/tmp/cafe\u{301}")),
            format!("Claude Code-credentials-{}", h("/tmp/caf\u{e9}"))
        );
    }

    #[test]
    fn account_is_user_then_passwd_then_a_safe_name() {
        let a = |u: Option<&str>, p: Option<&str>| {
            account_name(u.map(OsStr::new), p.map(str::to_string))
        };
        assert_eq!(a(Some("alice"), Some("bob")), "alice");
        assert_eq!(a(None, Some("bob")), "bob");
        assert_eq!(a(Some(""), Some("bob")), "bob");
        assert_eq!(a(Some("a b"), Some("bob")), "claude-code-user");
        assert_eq!(a(Some("x\"y"), None), "claude-code-user");
        assert_eq!(a(None, None), "claude-code-user");
        assert_eq!(a(Some("first.last_1-2"), None), "first.last_1-2");
    }
}
