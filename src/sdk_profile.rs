//! The Anthropic SDK profile sink of `hap agent --sdk-profile NAME` (issue 15).
//!
//! The official SDKs read credentials from a named profile (Python `anthropic` ≥ 2.10,
//! `anthropic/lib/credentials/_providers.py`, `CredentialsFile`):
//!
//! - `<config dir>/configs/<profile>.json`: `{"authentication": {"type": "user_oauth"}, ...}`;
//! - `<config dir>/credentials/<profile>.json`: `{"version": "1.0", "type": "oauth_token",
//!   "access_token": ..., "expires_at": <unix seconds>}`;
//!
//! with the config dir `$ANTHROPIC_CONFIG_DIR`, else `~/.config/anthropic`. A `user_oauth`
//! profile **without `client_id`** is "externally rotated": the SDK never refreshes it and
//! re-reads the credentials file whenever its cached token is within 120 s of expiry (or
//! after a 401). With a `client_id` the SDK would refresh on its own, with no lock shared
//! with anyone, spending the single-use refresh token behind every other process's back;
//! so hap writes no `client_id` and no refresh token, only the access token and its expiry.
//!
//! The SDK refuses a credentials file that is a symlink or that group or others can read,
//! and a config file that group or others can write. hap writes both 0600, into 0700
//! directories, atomically (temp file, fsync, rename over the path, fsync of the directory):
//! a link at the path is replaced by a regular file, never followed. It writes only
//! `configs/<profile>.json` (once, when missing) and `credentials/<profile>.json`; every
//! other profile, and `active_config`, are left alone.
//!
//! A token with no known expiry is written with `"expires_at": 0`, which the SDK reads as
//! "ask the provider before every request" (its `TokenCache`): it then re-reads the file on
//! every request instead of caching the token forever.
//!
//! Anthropic's terms limit subscription credentials to one person's own use of Claude Code
//! and Anthropic's apps; this profile serves that person's own processes on this machine.

use crate::error::{Error, Result, Status};
use crate::pool::Token;
use serde_json::{json, Value};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use zeroize::Zeroizing;

static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// The profile config hap writes when none exists: an externally rotated `user_oauth`
/// profile (no `client_id`, no `credentials_path`).
fn own_config() -> Value {
    json!({"version": "1.0", "authentication": {"type": "user_oauth"}})
}

/// The SDK's own rule for profile names (`_validate_profile_name`): they become file names.
pub fn check_name(name: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::invalid(format!(
            "SDK profile name '{}' {why}",
            crate::error::shown(name)
        )))
    };
    if name.is_empty() {
        return bad("is empty");
    }
    if name != name.trim() {
        return bad("has leading or trailing whitespace");
    }
    if name.starts_with('.') {
        return bad("starts with a dot");
    }
    if name.contains(['/', '\\', '\0']) {
        return bad("contains a path separator or NUL");
    }
    Ok(())
}

/// `$ANTHROPIC_CONFIG_DIR`, else `~/.config/anthropic`, as the SDK resolves it.
pub fn config_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("ANTHROPIC_CONFIG_DIR").filter(|v| !v.is_empty()) {
        let d = PathBuf::from(d);
        if !d.is_absolute() {
            return Err(Error::invalid(
                "ANTHROPIC_CONFIG_DIR is a relative path: set it to an absolute one",
            ));
        }
        return Ok(d);
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(h) if Path::new(&h).is_absolute() => Ok(PathBuf::from(h).join(".config/anthropic")),
        _ => Err(Error::invalid(
            "HOME is not set (or relative): set ANTHROPIC_CONFIG_DIR for the SDK profile",
        )),
    }
}

/// What was last written, to rewrite only on a change (or when the file was replaced or
/// removed by someone else).
#[derive(PartialEq)]
struct Written {
    credential_id: String,
    fingerprint: String,
    expires_at_ms: Option<i64>,
    ino: u64,
    dev: u64,
}

pub struct SdkProfile {
    pub name: String,
    pub dir: PathBuf,
    written: Option<Written>,
}

fn mkdir_private(p: &Path) -> Result<()> {
    match fs::DirBuilder::new().mode(0o700).recursive(true).create(p) {
        Ok(()) => Ok(()),
        Err(e) => Err(Error::io(p, "cannot create", &e)),
    }
}

/// Writes `bytes` to `path` atomically with mode 0600, replacing (never following) a link.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<fs::Metadata> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.hap-{}-{}.tmp",
        std::process::id(),
        TEMP_SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| -> Result<fs::Metadata> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, "cannot create", &e))?;
        f.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io(&tmp, "cannot chmod", &e))?;
        f.write_all(bytes)
            .map_err(|e| Error::io(&tmp, "cannot write", &e))?;
        f.sync_all()
            .map_err(|e| Error::io(&tmp, "cannot fsync", &e))?;
        fs::rename(&tmp, path).map_err(|e| Error::io(path, "cannot replace", &e))?;
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        f.metadata().map_err(|e| Error::io(path, "cannot stat", &e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

impl SdkProfile {
    /// The profile `name` under [`config_dir`].
    pub fn new(name: &str) -> Result<SdkProfile> {
        check_name(name)?;
        Ok(SdkProfile {
            name: name.to_string(),
            dir: config_dir()?,
            written: None,
        })
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("configs").join(format!("{}.json", self.name))
    }

    pub fn credentials_path(&self) -> PathBuf {
        self.dir
            .join("credentials")
            .join(format!("{}.json", self.name))
    }

    /// Creates the directories and the profile's config file when missing. An existing
    /// config that is not an externally rotated `user_oauth` profile (a `client_id`, a
    /// `credentials_path` elsewhere, another type) is another tool's profile: refused, not
    /// rewritten.
    pub fn prepare(&self) -> Result<()> {
        mkdir_private(&self.dir.join("configs"))?;
        mkdir_private(&self.dir.join("credentials"))?;
        let path = self.config_path();
        let refuse = |why: String| {
            Error::new(
                Status::Io,
                format!(
                    "{} {why}: hap writes only an externally rotated user_oauth profile; \
                     choose another --sdk-profile name or remove that file",
                    path.display()
                ),
            )
            .with_path(&path)
        };
        match fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let bytes = serde_json::to_vec_pretty(&own_config()).expect("serializes");
                write_private(&path, &bytes)?;
                Ok(())
            }
            Err(e) => Err(Error::io(&path, "cannot stat", &e)),
            Ok(m) if !m.is_file() => Err(refuse("is not a regular file".into())),
            Ok(m) => {
                if m.mode() & 0o022 != 0 {
                    return Err(refuse(format!(
                        "is writable by group or others (mode {:04o}), which the SDK refuses",
                        m.mode() & 0o7777
                    )));
                }
                let v: Value = fs::read(&path)
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .ok_or_else(|| refuse("is not a JSON object".into()))?;
                let auth = &v["authentication"];
                if auth["type"] != "user_oauth" {
                    return Err(refuse(format!("has authentication.type {}", auth["type"])));
                }
                for key in ["client_id", "credentials_path"] {
                    if !auth[key].is_null() {
                        return Err(refuse(format!("sets authentication.{key}")));
                    }
                }
                Ok(())
            }
        }
    }

    /// The credential whose token was written last: the profile sticks to it while it is
    /// usable, so a `round_robin` pool does not flip the file at every look.
    pub fn credential_id(&self) -> Option<&str> {
        self.written.as_ref().map(|w| w.credential_id.as_str())
    }

    /// Writes the token into the profile's credentials file when it differs from what was
    /// written last, or the file is no longer the one written. `Ok(true)` when it wrote.
    pub fn sync(&mut self, t: &Token) -> Result<bool> {
        let path = self.credentials_path();
        let fingerprint = t.access_token.fingerprint();
        if let (Some(w), Ok(m)) = (&self.written, fs::symlink_metadata(&path)) {
            if w.fingerprint == fingerprint
                && w.expires_at_ms == t.expires_at_ms
                && w.ino == m.ino()
                && w.dev == m.dev()
            {
                return Ok(false);
            }
        }
        // Built in a buffer zeroed when dropped, reserved up front so it never moves.
        let mut body = Zeroizing::new(String::with_capacity(t.access_token.expose().len() + 128));
        body.push_str(
            "{\n  \"version\": \"1.0\",\n  \"type\": \"oauth_token\",\n  \"access_token\": ",
        );
        body.push('"');
        // Tokens are [A-Za-z0-9_-]; anything else is escaped as JSON wants.
        for c in t.access_token.expose().chars() {
            match c {
                '"' => body.push_str("\\\""),
                '\\' => body.push_str("\\\\"),
                c if (c as u32) < 0x20 => body.push_str(&format!("\\u{:04x}", c as u32)),
                c => body.push(c),
            }
        }
        body.push_str("\",\n  \"expires_at\": ");
        // Unix seconds, rounded down: the SDK never believes a token longer than it lives.
        let expires_at = t.expires_at_ms.map_or(0, |ms| ms.div_euclid(1000));
        body.push_str(&expires_at.to_string());
        body.push_str("\n}\n");
        let m = write_private(&path, body.as_bytes())?;
        self.written = Some(Written {
            credential_id: t.credential_id.clone(),
            fingerprint,
            expires_at_ms: t.expires_at_ms,
            ino: m.ino(),
            dev: m.dev(),
        });
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn token(access: &str, exp: Option<i64>) -> Token {
        Token {
            access_token: Secret::new(access),
            credential_id: "a1b2c3".into(),
            label: "claude_code".into(),
            source: "claude_code".into(),
            auth_type: "oauth".into(),
            expires_at_ms: exp,
            refreshed: false,
        }
    }

    #[test]
    fn names_follow_the_sdk_rules() {
        assert!(check_name("hap").is_ok());
        for bad in ["", " hap", ".hap", "a/b", "a\\b", "a\0b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn writes_both_files_private_and_refuses_foreign_profiles() {
        let t = tempfile::tempdir().unwrap();
        let mut p = SdkProfile {
            name: "hap".into(),
            dir: t.path().join("anthropic"),
            written: None,
        };
        p.prepare().unwrap();
        let cfg: Value = serde_json::from_slice(&fs::read(p.config_path()).unwrap()).unwrap();
        assert_eq!(cfg["authentication"], json!({"type": "user_oauth"}));
        assert!(p
            .sync(&token("sk-ant-oat01-fake-a1", Some(1_788_000_000_999)))
            .unwrap());
        assert!(!p
            .sync(&token("sk-ant-oat01-fake-a1", Some(1_788_000_000_999)))
            .unwrap());
        let c: Value = serde_json::from_slice(&fs::read(p.credentials_path()).unwrap()).unwrap();
        assert_eq!(
            c,
            json!({"version": "1.0", "type": "oauth_token",
                   "access_token": "sk-ant-oat01-fake-a1", "expires_at": 1_788_000_000})
        );
        for f in [p.config_path(), p.credentials_path()] {
            assert_eq!(fs::metadata(&f).unwrap().mode() & 0o777, 0o600, "{f:?}");
        }
        // A link at the path is replaced, not followed.
        let other = p.dir.join("credentials/other.json");
        fs::write(&other, b"{}").unwrap();
        fs::remove_file(p.credentials_path()).unwrap();
        std::os::unix::fs::symlink(&other, p.credentials_path()).unwrap();
        assert!(p.sync(&token("sk-ant-oat01-fake-a2", None)).unwrap());
        assert_eq!(fs::read(&other).unwrap(), b"{}");
        let m = fs::symlink_metadata(p.credentials_path()).unwrap();
        assert!(m.is_file());
        let c: Value = serde_json::from_slice(&fs::read(p.credentials_path()).unwrap()).unwrap();
        assert_eq!(c["expires_at"], 0);
        // A profile that refreshes itself is not hap's to write.
        fs::write(
            p.config_path(),
            br#"{"authentication": {"type": "user_oauth", "client_id": "x"}}"#,
        )
        .unwrap();
        fs::set_permissions(p.config_path(), fs::Permissions::from_mode(0o600)).unwrap();
        let e = p.prepare().unwrap_err();
        assert!(e.message.contains("client_id"), "{}", e.message);
    }
}
