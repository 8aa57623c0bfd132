//! Claude Code's credentials file (`~/.claude/.credentials.json`).
//!
//! The file belongs to Claude Code. hap reads `claudeAiOauth.{accessToken, refreshToken,
//! expiresAt}` and, after a refresh, writes back exactly those (and `scopes` when the token
//! response names them). Every other key, inside and outside `claudeAiOauth`, survives in
//! its order: Hermes once dropped `subscriptionType`, which pushed Claude Code into API-key
//! mode. A file hap cannot parse is never overwritten.

use crate::authority::{Authority, PairRead, Stamp, Written};
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

/// A parsed read of the file: the pair (None when there is no usable login) and the stamp
/// of the bytes it came from.
#[derive(Clone, Debug)]
pub struct CredentialsRead {
    pub stamp: FileStamp,
    pub pair: Option<TokenPair>,
}

#[derive(Clone, Debug)]
pub struct CredentialsFile {
    path: PathBuf,
    /// Take Claude Code's `.oauth_refresh.lock` directory too (config `claude_code_lock`).
    claude_code_lock: bool,
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
/// token fields (and `scopes`) inside `claudeAiOauth`, every other key kept in its order.
/// Both of Claude Code's stores hold this JSON (the file, and on macOS the Keychain item,
/// `store/keychain.rs`), so both write through here.
pub(crate) fn merge_login(
    root: &mut Map<String, Value>,
    pair: &TokenPair,
    scopes: Option<&[String]>,
) {
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
    if let Some(scopes) = scopes {
        o.insert("scopes".into(), scopes.to_vec().into());
    }
}

impl CredentialsFile {
    pub fn new(path: PathBuf) -> CredentialsFile {
        CredentialsFile {
            path,
            claude_code_lock: false,
        }
    }

    /// Whether a refresh also takes Claude Code's own lock directory
    /// ([`refresh_lock_dir`](Self::refresh_lock_dir)).
    pub fn with_claude_code_lock(mut self, on: bool) -> CredentialsFile {
        self.claude_code_lock = on;
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

    pub fn stamp(&self) -> Result<Option<FileStamp>> {
        fsio::stamp(&self.path)
    }

    /// `Ok(None)` when the file does not exist; `STORE_CORRUPT` when it cannot be parsed.
    pub fn read(&self) -> Result<Option<CredentialsRead>> {
        let Some((bytes, stamp)) = fsio::read_with_stamp(&self.path)? else {
            return Ok(None);
        };
        let (_, pair) = parse(&self.path, &bytes)?;
        Ok(Some(CredentialsRead { stamp, pair }))
    }

    /// Replaces the token fields, and only those. The caller holds `.credentials.lock`.
    /// Re-reads the file first so a key another tool wrote a moment ago is not lost.
    pub fn write_pair(&self, pair: &TokenPair, scopes: Option<&[String]>) -> Result<FileStamp> {
        let (original, mut root) = match fsio::read_with_stamp(&self.path)? {
            Some((bytes, _)) => {
                let (root, _) = parse(&self.path, &bytes)?;
                (bytes, root)
            }
            // Recreating a deleted file (a journal replay after the user removed it) with
            // just the login is the least surprising outcome.
            None => (b"{\n".to_vec(), Map::new()),
        };
        merge_login(&mut root, pair, scopes);
        let bytes = zeroize::Zeroizing::new(serialize_like(&original, &Value::Object(root)));
        fsio::write_atomic(&self.path, &bytes)
    }
}

/// Claude Code's login as a store: a file with a stamp, locked by `.credentials.lock` (every
/// spelling) and, when configured, Claude Code's `.oauth_refresh.lock` directory.
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

    fn write_pair(
        &self,
        _held: &Held,
        replaces: Option<&Secret>,
        pair: &TokenPair,
        scopes: Option<&[String]>,
    ) -> Result<Written> {
        let holds = self.read()?.and_then(|r| r.pair).and_then(|p| p.refresh);
        if holds.as_ref() != replaces {
            return Ok(Written::Moved);
        }
        CredentialsFile::write_pair(self, pair, scopes)?;
        Ok(Written::Stored)
    }

    fn locks(&self) -> Result<Vec<LockSpec>> {
        let mut locks = vec![LockSpec::Flock(self.lock_paths()?)];
        if self.claude_code_lock {
            locks.push(LockSpec::ClaudeCodeDir(self.refresh_lock_dir()));
        }
        Ok(locks)
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
        f.write_pair(&pair, None).unwrap();
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
            f.write_pair(&pair, None).unwrap_err().status,
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
        let w = Authority::write_pair(&f, &held, Some(&stale), &pair, None).unwrap();
        assert_eq!(w, Written::Moved);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), login);
        let holds = Secret::new("sk-ant-ort01-fake-r9");
        let w = Authority::write_pair(&f, &held, Some(&holds), &pair, None).unwrap();
        assert_eq!(w, Written::Stored);
        assert_eq!(Authority::read_pair(&f).unwrap().pair.unwrap(), pair);
    }
}
