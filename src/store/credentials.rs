//! Claude Code's credentials file (`~/.claude/.credentials.json`).
//!
//! The file belongs to Claude Code. hap reads `claudeAiOauth.{accessToken, refreshToken,
//! expiresAt}` and, after a refresh, writes back exactly those and what the token response
//! says besides ([`Issued`]: `scopes`, `refreshTokenExpiresAt`, account ids). Every other key, inside and outside `claudeAiOauth`, survives in
//! its order: Hermes once dropped `subscriptionType`, which pushed Claude Code into API-key
//! mode. A file hap cannot parse is never overwritten.

use crate::authority::{Authority, Deferred, PairRead, Stamp, Written};
use crate::error::{Error, Result};
use crate::fsio::{self, FileStamp};
use crate::journal::Journal;
use crate::lock::{Held, LockSpec};
use crate::secret::Secret;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// The token pair a store holds.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenPair {
    pub access: Secret,
    pub refresh: Option<Secret>,
    pub expires_at_ms: Option<i64>,
}

/// What a token answer says about the login besides the pair, written back beside it where
/// Claude Code keeps it (FINDINGS.md §5).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Issued {
    /// `scope`, split on spaces → `scopes`.
    pub scopes: Option<Vec<String>>,
    /// now + `refresh_token_expires_in` → `refreshTokenExpiresAt` (the earlier of it and a
    /// stored one, as Claude Code's own refresh keeps it).
    pub refresh_expires_at_ms: Option<i64>,
    /// `account.uuid` → `accountUuid`, `organization.uuid` → `organizationUuid`: only where
    /// the file has none (Claude Code carries the stored ones over a refresh).
    pub account_uuid: Option<String>,
    pub organization_uuid: Option<String>,
}

impl Issued {
    pub fn scopes(scopes: Option<Vec<String>>) -> Issued {
        Issued {
            scopes,
            ..Issued::default()
        }
    }
}

/// The login-dependent part of the POST body: Claude Code 2.1.328 sends the login's stored
/// `clientId` when it has one, and always a `scope` (FINDINGS.md §4). Default: the
/// configured client id and no `scope` (a Hermes pool row). Sent by `refresh/oauth.rs`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RequestShape {
    pub client_id: Option<String>,
    pub scope: Option<String>,
}

/// Claude Code 2.1.328's scope list for a login without a stored `clientId` (`Ain()`,
/// FINDINGS.md §4), followed by those of [`OPTIONAL_SCOPES`] the login holds.
pub const DEFAULT_SCOPES: &[&str] = &[
    "user:profile",
    "user:inference",
    "user:sessions:claude_code",
    "user:mcp_servers",
    "user:file_upload",
    "user:plugins",
];
pub const OPTIONAL_SCOPES: &[&str] = &[
    "user:projects:read",
    "user:projects:write",
    "user:privacy_consents:write",
];

/// The POST body's login-dependent part for a `claudeAiOauth` object, as Claude Code 2.1.328
/// builds it (`_l`, FINDINGS.md §4): with a stored `clientId`, that id and exactly the
/// stored scopes in their order (the defaults when there are none); without, the default
/// client id and the default list plus the optional scopes the login holds.
pub fn request_shape(oauth: &Map<String, Value>) -> RequestShape {
    let stored: Vec<&str> = oauth
        .get("scopes")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let client_id = oauth
        .get("clientId")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty());
    let mut scopes: Vec<&str> = match client_id {
        Some(_) if !stored.is_empty() => stored.clone(),
        Some(_) => DEFAULT_SCOPES.to_vec(),
        None => DEFAULT_SCOPES
            .iter()
            .chain(OPTIONAL_SCOPES.iter().filter(|o| stored.contains(o)))
            .copied()
            .collect(),
    };
    let mut seen = std::collections::HashSet::new();
    scopes.retain(|s| seen.insert(*s));
    RequestShape {
        client_id: client_id.map(str::to_string),
        scope: Some(scopes.join(" ")),
    }
}

/// The facts of a login (in Claude Code's file or its Keychain item, which hold the same
/// JSON) a report needs, and no key but the login's pair.
#[derive(Clone, Debug)]
pub struct LoginSummary {
    /// `None`: no usable login (no `claudeAiOauth.accessToken`).
    pub pair: Option<TokenPair>,
    /// `claudeAiOauth.subscriptionType` is there (Claude Code may fall back to API-key mode
    /// without it).
    pub has_subscription_type: bool,
    /// `claudeAiOauth.refreshTokenExpiresAt`, when positive.
    pub refresh_expires_at_ms: Option<i64>,
}

impl LoginSummary {
    pub(crate) fn of(root: &Map<String, Value>, pair: Option<TokenPair>) -> LoginSummary {
        let oauth = root.get("claudeAiOauth");
        LoginSummary {
            pair,
            has_subscription_type: oauth.is_some_and(|o| o.get("subscriptionType").is_some()),
            refresh_expires_at_ms: oauth
                .and_then(|o| o.get("refreshTokenExpiresAt"))
                .and_then(json_ms)
                .filter(|t| *t > 0),
        }
    }
}

/// A parsed read of the file: the pair (None when there is no usable login) and the stamp
/// of the bytes it came from.
#[derive(Clone, Debug)]
pub struct CredentialsRead {
    pub stamp: FileStamp,
    pub pair: Option<TokenPair>,
}

/// How far ahead of the refresh token's own expiry (`refreshTokenExpiresAt`) `hap status`
/// and `hap doctor` warn: a headless machine otherwise learns of it when it is already
/// logged out (issue 12).
pub const REFRESH_EXPIRY_WARN_MS: i64 = 7 * 24 * 3600 * 1000;

/// Re-reads of an unparseable file before it is called corrupt (~0.3 s in all): long enough
/// for an in-place writer descheduled between its truncate and its write on a loaded
/// machine, short enough that a truly corrupt file is reported at once.
const SETTLE_MS: &[u64] = &[5, 20, 50, 100, 150];

/// How long a write waits for `.storage-write.lock`: past its 15 s stale age, so a lock
/// left by a killed writer is taken over, not waited out into an error.
const STORAGE_WRITE_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

#[derive(Clone, Debug)]
pub struct CredentialsFile {
    path: PathBuf,
    /// Re-read a file that looks cut before calling it corrupt ([`SETTLE_MS`]).
    settle: bool,
    /// Take Claude Code's refresh lock directories too (config `claude_code_lock`).
    claude_code_lock: bool,
    /// Claude Code refreshes this login, hap never (config `defer_refresh_to_claude_code`).
    deferred: bool,
}

/// The grant key of the credentials file's login (it is written into the journal).
pub const GRANT_CREDENTIALS: &str = "credentials";

/// A number that may arrive as an integer or a float (JavaScript writes both).
pub fn json_ms(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
}

/// Parses Claude Code's storage JSON (the file's bytes, or a Keychain item's): the whole
/// object, to write back, and the login in `claudeAiOauth`. `path` names the store in errors.
pub(crate) fn parse(path: &Path, bytes: &[u8]) -> Result<(Map<String, Value>, Option<TokenPair>)> {
    let root: Value = serde_json::from_slice(bytes).map_err(|e| Error::corrupt(path, e))?;
    let Value::Object(root) = root else {
        return Err(Error::corrupt(path, "top level is not an object"));
    };
    let pair = match root.get("claudeAiOauth") {
        None | Some(Value::Null) => None,
        Some(Value::Object(o)) => {
            let access = match o.get("accessToken") {
                Some(Value::String(s)) if !s.is_empty() => Some(Secret::new(s.clone())),
                None | Some(Value::Null) | Some(Value::String(_)) => None,
                Some(_) => {
                    return Err(Error::corrupt(
                        path,
                        "claudeAiOauth.accessToken is not a string",
                    ))
                }
            };
            let refresh = match o.get("refreshToken") {
                Some(Value::String(s)) if !s.is_empty() => Some(Secret::new(s.clone())),
                None | Some(Value::Null) | Some(Value::String(_)) => None,
                Some(_) => {
                    return Err(Error::corrupt(
                        path,
                        "claudeAiOauth.refreshToken is not a string",
                    ))
                }
            };
            let expires_at_ms = match o.get("expiresAt") {
                None | Some(Value::Null) => None,
                Some(v) => Some(json_ms(v).ok_or_else(|| {
                    Error::corrupt(path, "claudeAiOauth.expiresAt is not a number")
                })?),
            };
            access.map(|access| TokenPair {
                access,
                refresh,
                expires_at_ms,
            })
        }
        Some(_) => return Err(Error::corrupt(path, "claudeAiOauth is not an object")),
    };
    Ok((root, pair))
}

/// What a reader sees in the middle of an in-place rewrite: nothing yet, or a prefix of the
/// JSON (whitespace included).
fn cut(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_whitespace)
        || serde_json::from_slice::<serde::de::IgnoredAny>(bytes)
            .err()
            .is_some_and(|e| e.is_eof())
}

/// Keeps the file's own layout: Claude Code writes indented JSON, other tools compact.
pub fn serialize_like(original: &[u8], value: &Value) -> Vec<u8> {
    let pretty = original.iter().take(64).any(|&b| b == b'\n');
    let mut out = if pretty {
        serde_json::to_vec_pretty(value)
    } else {
        serde_json::to_vec(value)
    }
    .expect("a serde_json::Value always serializes");
    if original.last() == Some(&b'\n') {
        out.push(b'\n');
    }
    out
}

/// Writes the login into Claude Code's storage JSON, the one place its fields are set: the
/// token fields and what the token endpoint issued with them (`Issued`) inside
/// `claudeAiOauth`, every other key kept in its order.
/// Both of Claude Code's stores hold this JSON (the file, and on macOS the Keychain item,
/// `store/keychain.rs`), so both write through here.
pub(crate) fn merge_login(root: &mut Map<String, Value>, pair: &TokenPair, issued: &Issued) {
    let oauth = root
        .entry("claudeAiOauth")
        .or_insert_with(|| Value::Object(Map::new()));
    if !oauth.is_object() {
        *oauth = Value::Object(Map::new());
    }
    let o = oauth.as_object_mut().expect("just made an object");
    o.insert("accessToken".into(), pair.access.expose().into());
    if let Some(r) = &pair.refresh {
        o.insert("refreshToken".into(), r.expose().into());
    }
    if let Some(at) = pair.expires_at_ms {
        o.insert("expiresAt".into(), at.into());
    }
    if let Some(scopes) = &issued.scopes {
        o.insert("scopes".into(), scopes.clone().into());
    }
    if let Some(at) = issued.refresh_expires_at_ms {
        let stored = o
            .get("refreshTokenExpiresAt")
            .and_then(json_ms)
            .filter(|t| *t > 0);
        o.insert(
            "refreshTokenExpiresAt".into(),
            stored.map_or(at, |s| s.min(at)).into(),
        );
    }
    for (key, v) in [
        ("accountUuid", &issued.account_uuid),
        ("organizationUuid", &issued.organization_uuid),
    ] {
        if let (Some(v), false) = (v, o.get(key).and_then(Value::as_str).is_some()) {
            o.insert(key.into(), v.clone().into());
        }
    }
}

impl CredentialsFile {
    pub fn new(path: PathBuf) -> CredentialsFile {
        CredentialsFile {
            path,
            settle: true,
            claude_code_lock: false,
            deferred: false,
        }
    }

    /// Reports a cut file at once: for the fuzz harness, which feeds cut files by the
    /// hundred thousand and has no writer to wait for.
    pub fn without_settle(mut self) -> CredentialsFile {
        self.settle = false;
        self
    }

    /// Whether a refresh also takes Claude Code's own lock directories
    /// ([`refresh_lock_dirs`](Self::refresh_lock_dirs)).
    pub fn with_claude_code_lock(mut self, on: bool) -> CredentialsFile {
        self.claude_code_lock = on;
        self
    }

    /// Whether Claude Code owns this login's refresh and hap never POSTs on it
    /// ([`Authority::refresh_deferred`]).
    pub fn deferring_refresh(mut self, on: bool) -> CredentialsFile {
        self.deferred = on;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `<dir>/.credentials.lock`, the flock Hermes takes around this file.
    pub fn lock_path(&self) -> PathBuf {
        self.path.with_file_name(".credentials.lock")
    }

    /// Every `.credentials.lock` a writer of this file takes, in the order to take them:
    /// beside the file the path resolves to first, then beside each symlink leading to it,
    /// ending with [`lock_path`](Self::lock_path) (the one Hermes takes). One entry when
    /// the path is no link. Processes configured with the link and with its target then
    /// exclude each other, and with Hermes; the order (nearest the target first) is the
    /// same for every spelling, so no two deadlock.
    pub fn lock_paths(&self) -> Result<Vec<PathBuf>> {
        Ok(fsio::link_chain(&self.path)?
            .iter()
            .rev()
            .map(|p| p.with_file_name(".credentials.lock"))
            .collect())
    }

    /// The file the path resolves to: what hap's journal is keyed on, so every spelling of
    /// one file shares one journal.
    pub fn target(&self) -> Result<PathBuf> {
        Ok(fsio::link_chain(&self.path)?.pop().expect("never empty"))
    }

    /// `<dir>/.oauth_refresh.lock`, Claude Code's own refresh lock directory.
    pub fn refresh_lock_dir(&self) -> PathBuf {
        self.path.with_file_name(".oauth_refresh.lock")
    }

    /// Every refresh lock directory of Claude Code, in the order it takes them:
    /// `<dir>/.oauth_refresh.lock`, then `<realpath(dir)>.lock` (`~/.claude.lock`; the
    /// unresolved path when realpath fails, as Claude Code does). `<dir>` is the directory
    /// the path names, not a symlink's target: Claude Code locks its config directory.
    pub fn refresh_lock_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = vec![self.refresh_lock_dir()];
        let dir = self.path.parent().unwrap_or(Path::new("/"));
        let real = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        if let Some(name) = real.file_name() {
            let mut name = name.to_os_string();
            name.push(".lock");
            dirs.push(real.with_file_name(name));
        }
        dirs
    }

    /// `<dir>/.storage-write.lock`: Claude Code 2.1.328 takes it (mkdir, stale 15 s) around
    /// every read-modify-write of this file, its compare-and-swap save after a POST
    /// included.
    /// Takes [`storage_write_lock`](Self::storage_write_lock), waiting at most
    /// `STORAGE_WRITE_WAIT`: around a write's re-read and rename (or Keychain save) only.
    pub fn take_storage_write_lock(&self) -> Result<crate::lock::RefreshLockDir> {
        let mut waited = false;
        crate::lock::RefreshLockDir::acquire_stale_after(
            &self.storage_write_lock(),
            crate::lock::STORAGE_WRITE_STALE,
            std::time::Instant::now() + STORAGE_WRITE_WAIT,
            STORAGE_WRITE_WAIT.as_millis() as u64,
            &mut waited,
        )
    }

    pub fn storage_write_lock(&self) -> PathBuf {
        self.path.with_file_name(".storage-write.lock")
    }

    pub fn stamp(&self) -> Result<Option<FileStamp>> {
        fsio::stamp(&self.path)
    }

    /// `Ok(None)` when the file does not exist; `STORE_CORRUPT` when it cannot be parsed,
    /// after [`SETTLE_MS`] of re-reads.
    pub fn read(&self) -> Result<Option<CredentialsRead>> {
        Ok(self
            .read_parsed()?
            .map(|(_, stamp, _, pair)| CredentialsRead { stamp, pair }))
    }

    /// What a report (`hap doctor`, `hap status`) needs of the login; `None`: no file.
    pub fn summary(&self) -> Result<Option<LoginSummary>> {
        Ok(self
            .read_parsed()?
            .map(|(_, _, root, pair)| LoginSummary::of(&root, pair)))
    }

    /// The file's bytes, stamp, root object and pair. Claude Code 2.1.126 and older write
    /// this file in place (`writeFileSync`: truncate, then write), so a read can land
    /// between the two and see an empty or cut file: one `hap token` in 168 of the interop
    /// race got `STORE_CORRUPT` that way (issue 12). A read that looks cut (empty, or JSON
    /// that ends early) is retried for a moment; any other unparseable file, or one that
    /// stays cut, is reported, and never written.
    #[allow(clippy::type_complexity)]
    fn read_parsed(
        &self,
    ) -> Result<Option<(Vec<u8>, FileStamp, Map<String, Value>, Option<TokenPair>)>> {
        let mut waits = SETTLE_MS.iter();
        loop {
            let Some((bytes, stamp)) = fsio::read_with_stamp(&self.path)? else {
                return Ok(None);
            };
            match parse(&self.path, &bytes) {
                Ok((root, pair)) => return Ok(Some((bytes, stamp, root, pair))),
                Err(e) if e.status == crate::Status::StoreCorrupt && self.settle && cut(&bytes) => {
                    match waits.next() {
                        Some(&ms) => std::thread::sleep(std::time::Duration::from_millis(ms)),
                        None => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The POST body's login-dependent part for the login in the file ([`request_shape`]);
    /// the default when the file holds no login object.
    pub fn request_shape(&self) -> Result<RequestShape> {
        Ok(match self.read_parsed()? {
            Some((_, _, root, _)) => match root.get("claudeAiOauth") {
                Some(Value::Object(o)) => request_shape(o),
                _ => request_shape(&Map::new()),
            },
            None => request_shape(&Map::new()),
        })
    }

    /// `claudeAiOauth.refreshTokenExpiresAt`, when the file has one.
    pub fn refresh_expires_at_ms(&self) -> Result<Option<i64>> {
        Ok(self.summary()?.and_then(|s| s.refresh_expires_at_ms))
    }

    /// Replaces the token fields, and only those. The caller holds `.credentials.lock`.
    /// Re-reads the file first so a key another tool wrote a moment ago is not lost; the
    /// re-read and the rename run under Claude Code's `.storage-write.lock`, and only they
    /// (a hap killed inside a longer hold would make Claude Code's save after its POST
    /// fail for 15 s).
    pub fn write_pair(&self, pair: &TokenPair, issued: &Issued) -> Result<FileStamp> {
        Ok(self
            .write_locked(None, pair, issued)?
            .expect("an unconditional write always writes"))
    }

    /// [`write_pair`](Self::write_pair) as a compare-and-set: only while the file holds
    /// `replaces` as its refresh token (`None`: holds none), else `Ok(None)` and nothing
    /// written. The check is made on the re-read under `.storage-write.lock`, as Claude
    /// Code's own save after its POST makes it, so no writer that takes that lock can slip
    /// a pair in between the check and the rename.
    pub fn write_pair_if(
        &self,
        replaces: Option<&Secret>,
        pair: &TokenPair,
        issued: &Issued,
    ) -> Result<Option<FileStamp>> {
        self.write_locked(Some(replaces), pair, issued)
    }

    fn write_locked(
        &self,
        replaces: Option<Option<&Secret>>,
        pair: &TokenPair,
        issued: &Issued,
    ) -> Result<Option<FileStamp>> {
        let _storage = self.take_storage_write_lock()?;
        let (original, mut root, holds) = match self.read_parsed()? {
            Some((bytes, _, root, pair)) => (bytes, root, pair.and_then(|p| p.refresh)),
            // Recreating a deleted file (a journal replay after the user removed it) with
            // just the login is the least surprising outcome.
            None => (b"{\n".to_vec(), Map::new(), None),
        };
        if replaces.is_some_and(|r| holds.as_ref() != r) {
            return Ok(None);
        }
        merge_login(&mut root, pair, issued);
        let bytes = zeroize::Zeroizing::new(serialize_like(&original, &Value::Object(root)));
        fsio::write_atomic(&self.path, &bytes).map(Some)
    }
}

/// Claude Code's login as a store: a file with a stamp, locked by `.credentials.lock` (every
/// spelling) and, when configured, Claude Code's `.oauth_refresh.lock` and
/// `<realpath(dir)>.lock` directories; its write takes `.storage-write.lock` too.
impl Authority for CredentialsFile {
    fn grant_key(&self) -> String {
        GRANT_CREDENTIALS.to_string()
    }

    fn name(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    fn file(&self) -> Option<PathBuf> {
        Some(self.path.clone())
    }

    fn stamp(&self) -> Result<Stamp> {
        Ok(Stamp::File(CredentialsFile::stamp(self)?))
    }

    fn read_pair(&self) -> Result<PairRead> {
        Ok(match self.read()? {
            Some(r) => PairRead {
                stamp: Stamp::File(Some(r.stamp)),
                pair: r.pair,
            },
            None => PairRead {
                stamp: Stamp::File(None),
                pair: None,
            },
        })
    }

    /// Everything the answer said (`Issued`), under `.storage-write.lock`: see
    /// [`CredentialsFile::write_pair_if`].
    fn write_pair(
        &self,
        _held: &Held,
        replaces: Option<&Secret>,
        pair: &TokenPair,
        issued: &Issued,
    ) -> Result<Written> {
        Ok(match self.write_pair_if(replaces, pair, issued)? {
            Some(_) => Written::Stored,
            None => Written::Moved,
        })
    }

    fn locks(&self) -> Result<Vec<LockSpec>> {
        let mut locks = vec![LockSpec::Flock(self.lock_paths()?)];
        if self.claude_code_lock {
            locks.push(LockSpec::ClaudeCodeDirs(self.refresh_lock_dirs()));
        }
        Ok(locks)
    }

    /// Claude Code's body for this login: its stored client id and scopes.
    fn request_shape(&self) -> Result<RequestShape> {
        CredentialsFile::request_shape(self)
    }

    fn refresh_deferred(&self) -> Option<Deferred> {
        self.deferred.then_some(Deferred {
            refresher: "Claude Code owns this login (defer_refresh_to_claude_code): hap does \
                        not refresh it. Run `claude` (any prompt) to refresh it; hap picks up \
                        the new token at once",
            when_gone: "the login is gone from its store: log in again with Claude Code \
                        (`claude`, then /login)",
            // Claude Code refreshes as soon as it is used.
            retry_ms: 30_000,
        })
    }

    fn journal(&self) -> Result<Journal> {
        // Keyed on the file the path resolves to: a symlink and its target are one store
        // with one journal (issue 10, item 12).
        Ok(Journal::for_store(&self.target()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_keeps_every_other_key_in_order() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(".credentials.json");
        let before = r#"{
  "zFirst": 1,
  "claudeAiOauth": {
    "accessToken": "sk-ant-oat01-fake-a1",
    "refreshToken": "sk-ant-ort01-fake-r1",
    "expiresAt": 1000,
    "scopes": ["user:inference"],
    "subscriptionType": "max",
    "rateLimitTier": "default_claude_max_20x"
  },
  "aLast": {"x": [1, 2]}
}
"#;
        std::fs::write(&p, before).unwrap();
        let f = CredentialsFile::new(p.clone());
        let pair = TokenPair {
            access: Secret::new("sk-ant-oat01-fake-a2"),
            refresh: Some(Secret::new("sk-ant-ort01-fake-r2")),
            expires_at_ms: Some(2000),
        };
        f.write_pair(&pair, &Issued::default()).unwrap();
        let after: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        let expected: Value = serde_json::from_str(
            &before
                .replace("fake-a1", "fake-a2")
                .replace("fake-r1", "fake-r2")
                .replace("1000", "2000"),
        )
        .unwrap();
        assert_eq!(after, expected);
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&after), keys(&expected));
        assert_eq!(
            keys(&after["claudeAiOauth"]),
            keys(&expected["claudeAiOauth"])
        );
        assert_eq!(f.read().unwrap().unwrap().pair.unwrap(), pair);
    }

    #[test]
    fn corrupt_file_is_reported_and_untouched() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(".credentials.json");
        std::fs::write(
            &p,
            b"{\"claudeAiOauth\": {\"accessToken\": \"sk-ant-oat01-fa",
        )
        .unwrap();
        let f = CredentialsFile::new(p.clone());
        assert_eq!(f.read().unwrap_err().status, crate::Status::StoreCorrupt);
        let pair = TokenPair {
            access: Secret::new("x"),
            refresh: None,
            expires_at_ms: None,
        };
        assert_eq!(
            f.write_pair(&pair, &Issued::default()).unwrap_err().status,
            crate::Status::StoreCorrupt
        );
        assert_eq!(
            std::fs::read(&p).unwrap(),
            b"{\"claudeAiOauth\": {\"accessToken\": \"sk-ant-oat01-fa"
        );
    }

    #[test]
    fn a_symlinked_file_is_locked_and_journalled_at_its_target_too() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().join("dotfiles/claude.json");
        std::fs::create_dir_all(real.parent().unwrap()).unwrap();
        std::fs::write(&real, b"{}").unwrap();
        std::fs::create_dir(d.path().join("claude")).unwrap();
        let link = d.path().join("claude/.credentials.json");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let f = CredentialsFile::new(link.clone());
        assert_eq!(
            f.lock_paths().unwrap(),
            [
                d.path().join("dotfiles/.credentials.lock"),
                d.path().join("claude/.credentials.lock")
            ]
        );
        assert_eq!(f.target().unwrap(), real);
        let plain = CredentialsFile::new(real.clone());
        assert_eq!(
            plain.lock_paths().unwrap(),
            [d.path().join("dotfiles/.credentials.lock")]
        );
    }

    #[test]
    fn the_store_write_is_a_compare_and_set_on_the_refresh_token() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(".credentials.json");
        let login = r#"{"claudeAiOauth": {"accessToken": "sk-ant-oat01-fake-a9", "refreshToken": "sk-ant-ort01-fake-r9", "expiresAt": 1}}"#;
        std::fs::write(&p, login).unwrap();
        let f = CredentialsFile::new(p.clone());
        let held = Held::default();
        let pair = TokenPair {
            access: Secret::new("sk-ant-oat01-fake-a2"),
            refresh: Some(Secret::new("sk-ant-ort01-fake-r2")),
            expires_at_ms: Some(2),
        };
        // The store no longer holds r1 (a new login saved r9): nothing is written.
        let stale = Secret::new("sk-ant-ort01-fake-r1");
        let w = Authority::write_pair(&f, &held, Some(&stale), &pair, &Issued::default()).unwrap();
        assert_eq!(w, Written::Moved);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), login);
        let holds = Secret::new("sk-ant-ort01-fake-r9");
        let w = Authority::write_pair(&f, &held, Some(&holds), &pair, &Issued::default()).unwrap();
        assert_eq!(w, Written::Stored);
        assert_eq!(Authority::read_pair(&f).unwrap().pair.unwrap(), pair);
    }

    /// The merge of issue 12 into the store seam: the store lists both of Claude Code's lock
    /// directories, checks its compare-and-set on the re-read under `.storage-write.lock`
    /// (a check made before waiting for that lock would overwrite the pair Claude Code saved
    /// while holding it), and writes back everything the answer said (`Issued`).
    #[test]
    fn the_store_locks_both_claude_dirs_and_compares_under_the_storage_write_lock() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(".credentials.json");
        let login = r#"{"claudeAiOauth": {"accessToken": "sk-ant-oat01-fake-a9", "refreshToken": "sk-ant-ort01-fake-r9", "expiresAt": 1}}"#;
        std::fs::write(&p, login).unwrap();
        let f = CredentialsFile::new(p.clone());
        assert_eq!(
            f.locks().unwrap(),
            [LockSpec::Flock(f.lock_paths().unwrap())]
        );
        let f = f.with_claude_code_lock(true);
        let real = std::fs::canonicalize(d.path()).unwrap();
        let mut claude_lock = real.clone().into_os_string();
        claude_lock.push(".lock");
        assert_eq!(
            f.locks().unwrap(),
            [
                LockSpec::Flock(f.lock_paths().unwrap()),
                LockSpec::ClaudeCodeDirs(vec![
                    d.path().join(".oauth_refresh.lock"),
                    PathBuf::from(claude_lock)
                ])
            ]
        );

        // Claude Code holds `.storage-write.lock` and saves its own rotation (r7) under it.
        let storage = f.storage_write_lock();
        std::fs::create_dir(&storage).unwrap();
        let rotated = login
            .replace("fake-r9", "fake-r7")
            .replace("fake-a9", "fake-a7");
        let (p2, rotated2) = (p.clone(), rotated.clone());
        let claude = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            std::fs::write(&p2, rotated2).unwrap();
            std::fs::remove_dir(&storage).unwrap();
        });
        let pair = TokenPair {
            access: Secret::new("sk-ant-oat01-fake-a2"),
            refresh: Some(Secret::new("sk-ant-ort01-fake-r2")),
            expires_at_ms: Some(2),
        };
        let issued = Issued {
            scopes: Some(vec!["user:inference".into()]),
            refresh_expires_at_ms: Some(5_000_000_000_000),
            account_uuid: Some("0000-fake".into()),
            organization_uuid: None,
        };
        let r9 = Secret::new("sk-ant-ort01-fake-r9");
        let held = Held::default();
        let w = Authority::write_pair(&f, &held, Some(&r9), &pair, &issued).unwrap();
        claude.join().unwrap();
        assert_eq!(
            w,
            Written::Moved,
            "Claude Code's save under its lock stands"
        );
        assert_eq!(std::fs::read_to_string(&p).unwrap(), rotated);

        let r7 = Secret::new("sk-ant-ort01-fake-r7");
        let w = Authority::write_pair(&f, &held, Some(&r7), &pair, &issued).unwrap();
        assert_eq!(w, Written::Stored);
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        let o = &v["claudeAiOauth"];
        assert_eq!(o["refreshToken"], "sk-ant-ort01-fake-r2");
        assert_eq!(o["scopes"], serde_json::json!(["user:inference"]));
        assert_eq!(o["refreshTokenExpiresAt"], 5_000_000_000_000i64);
        assert_eq!(o["accountUuid"], "0000-fake");
        assert!(!f.storage_write_lock().exists(), "released after the write");
    }
}
