//! Claude Code's credentials file (`~/.claude/.credentials.json`).
//!
//! The file belongs to Claude Code. hap reads `claudeAiOauth.{accessToken, refreshToken,
//! expiresAt}` and, after a refresh, writes back exactly those (and `scopes` when the token
//! response names them). Every other key, inside and outside `claudeAiOauth`, survives in
//! its order: Hermes once dropped `subscriptionType`, which pushed Claude Code into API-key
//! mode. A file hap cannot parse is never overwritten.

use crate::error::{Error, Result};
use crate::fsio::{self, FileStamp};
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
}

/// A number that may arrive as an integer or a float (JavaScript writes both).
pub fn json_ms(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
}

fn parse(path: &Path, bytes: &[u8]) -> Result<(Map<String, Value>, Option<TokenPair>)> {
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

impl CredentialsFile {
    pub fn new(path: PathBuf) -> CredentialsFile {
        CredentialsFile { path, settle: true }
    }

    /// Reports a cut file at once: for the fuzz harness, which feeds cut files by the
    /// hundred thousand and has no writer to wait for.
    pub fn without_settle(mut self) -> CredentialsFile {
        self.settle = false;
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
        Ok(self.read_parsed()?.and_then(|(_, _, root, _)| {
            root.get("claudeAiOauth")
                .and_then(|o| o.get("refreshTokenExpiresAt"))
                .and_then(json_ms)
                .filter(|t| *t > 0)
        }))
    }

    /// Replaces the token fields, and only those. The caller holds `.credentials.lock`.
    /// Re-reads the file first so a key another tool wrote a moment ago is not lost; the
    /// re-read and the rename run under Claude Code's `.storage-write.lock`, and only they
    /// (a hap killed inside a longer hold would make Claude Code's save after its POST
    /// fail for 15 s).
    pub fn write_pair(&self, pair: &TokenPair, issued: &Issued) -> Result<FileStamp> {
        let mut waited = false;
        let _storage = crate::lock::RefreshLockDir::acquire_stale_after(
            &self.storage_write_lock(),
            crate::lock::STORAGE_WRITE_STALE,
            std::time::Instant::now() + STORAGE_WRITE_WAIT,
            STORAGE_WRITE_WAIT.as_millis() as u64,
            &mut waited,
        )?;
        let (original, mut root) = match self.read_parsed()? {
            Some((bytes, _, root, _)) => (bytes, root),
            // Recreating a deleted file (a journal replay after the user removed it) with
            // just the login is the least surprising outcome.
            None => (b"{\n".to_vec(), Map::new()),
        };
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
        let bytes = zeroize::Zeroizing::new(serialize_like(&original, &Value::Object(root)));
        fsio::write_atomic(&self.path, &bytes)
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
}
