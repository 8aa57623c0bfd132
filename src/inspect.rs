//! Read-only facts about the files hap and Claude Code keep, for tools that report on them
//! (`hap doctor`, `hap status`) without re-deriving the formats.
//!
//! Each fact is defined next to the format it describes (store paths, parsers and journal
//! locations in `store/`, lock owner records and the lock probe in `lock.rs`, temp-file names
//! in `store/fsio.rs`) and only reached through here, so a format changes in one place.
//! Nothing here writes a store or holds a lock past the call: the store types themselves
//! (with their write methods) are not exported.

use crate::authority::Authority;
use crate::error::Result;
use crate::store::credentials::CredentialsFile;
use crate::store::pool_file::PoolFile;
use std::path::{Path, PathBuf};

pub use crate::clock::{iso8601_utc, now_ms, parse_iso8601_ms};
pub use crate::lock::{flock_is_free, lock_owner, pid_alive, LockOwner, REFRESH_LOCK_STALE};
pub use crate::pool::default_pool_without_hermes;
pub use crate::pool::policy::parse_reset_at_s;
pub use crate::secret::{fingerprint, is_oauth_token};
pub use crate::store::credentials::{json_ms, LoginSummary, TokenPair, REFRESH_EXPIRY_WARN_MS};
pub use crate::store::fsio::{is_temp_file_name, read_with_stamp, write_target};
pub use crate::store::journal::{Backoff, JournalSummary, Post, Uncommitted};
pub use crate::store::pool_file::Row;

/// Where hap keeps what around Claude Code's credentials file at `path`.
#[derive(Clone, Debug, PartialEq)]
pub struct CredentialsPaths {
    /// `.credentials.lock` beside it: the `flock` Hermes takes (and hap, first of its locks).
    pub lock: PathBuf,
    /// Claude Code's own refresh lock directories, in the order hap takes them:
    /// `.oauth_refresh.lock`, then `<realpath(dir)>.lock` (`~/.claude.lock`, issue 12).
    pub refresh_lock_dirs: Vec<PathBuf>,
}

/// The macOS Keychain item a config reads Claude Code's login from (`credentials_store`
/// `keychain`, or `auto` on macOS), as `hap doctor` reports it.
#[derive(Clone, Debug)]
pub struct KeychainLogin {
    pub service: String,
    pub account: String,
    pub program: PathBuf,
    /// `Ok(None)`: no item, the credentials file is the store (Claude Code's order). An
    /// error says what to do (a locked keychain, no `security` program, a corrupt item).
    pub item: Result<Option<LoginSummary>>,
}

/// The Keychain item of `cfg`, read once; `None` when the config does not use the Keychain.
pub fn keychain_login(cfg: &crate::config::Config) -> Option<KeychainLogin> {
    if !cfg.credentials_store.uses_keychain() {
        return None;
    }
    let file = CredentialsFile::new(cfg.credentials_path.clone()?);
    let k = crate::store::keychain::KeychainStore::new(cfg.security_program.clone(), file);
    Some(KeychainLogin {
        service: k.service().to_string(),
        account: k.account().to_string(),
        program: cfg.security_program.clone(),
        item: k.summary(),
    })
}

/// Claude Code's login where `cfg` reads it, for reports: the Keychain item when the config
/// uses the Keychain and there is one, else the credentials file. The name says which, for
/// messages; `None` when neither exists.
pub fn claude_code_login(cfg: &crate::config::Config) -> Result<Option<(String, LoginSummary)>> {
    if let Some(k) = keychain_login(cfg) {
        if let Some(s) = k.item? {
            let name = format!(
                "macOS Keychain item '{}' (account '{}')",
                k.service, k.account
            );
            return Ok(Some((name, s)));
        }
    }
    let Some(path) = &cfg.credentials_path else {
        return Ok(None);
    };
    Ok(CredentialsFile::new(path.clone())
        .summary()?
        .map(|s| (path.display().to_string(), s)))
}

/// The lock paths of the credentials file at `path`.
pub fn credentials_paths(path: &Path) -> CredentialsPaths {
    let f = CredentialsFile::new(path.to_path_buf());
    CredentialsPaths {
        lock: f.lock_path(),
        refresh_lock_dirs: f.refresh_lock_dirs(),
    }
}

/// The login the credentials file at `path` holds: `Ok(None)` when the file does not exist,
/// `Ok(Some(None))` when it holds no usable login, `STORE_CORRUPT` when it does not parse.
pub fn read_login(path: &Path) -> Result<Option<Option<TokenPair>>> {
    Ok(CredentialsFile::new(path.to_path_buf())
        .read()?
        .map(|r| r.pair))
}

/// `claudeAiOauth.refreshTokenExpiresAt` of the credentials file at `path`, when it has one
/// (`STORE_CORRUPT` when it does not parse).
pub fn refresh_expires_at_ms(path: &Path) -> Result<Option<i64>> {
    CredentialsFile::new(path.to_path_buf()).refresh_expires_at_ms()
}

/// The rows of `provider` in the pool file at `path` (none when it does not exist).
pub fn read_pool_rows(path: &Path, provider: &str) -> Result<Vec<Row>> {
    Ok(PoolFile::new(path.to_path_buf(), provider.to_string())
        .read()?
        .rows)
}

/// The `flock` file beside the pool file at `path` (`auth.json` → `auth.lock`).
pub fn pool_lock_path(path: &Path) -> PathBuf {
    crate::config::Config::pool_lock_path(path)
}

/// Which store a journal protects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    /// Claude Code's credentials file.
    Credentials,
    /// A Hermes pool file (for its rows that own their tokens).
    Pool,
}

/// The journal hap keeps for the store at `path`: beside the file a symlinked path resolves
/// to, as the refresh transaction finds it (`Authority::journal`).
pub fn journal_path(kind: StoreKind, path: &Path) -> Result<PathBuf> {
    let journal = match kind {
        StoreKind::Credentials => CredentialsFile::new(path.to_path_buf()).journal()?,
        StoreKind::Pool => PoolFile::new(path.to_path_buf(), String::new()).journal()?,
    };
    Ok(journal.path().to_path_buf())
}

/// The journal at `journal` (a path from [`journal_path`]), without its tokens. An
/// unparseable journal is an error naming it; a missing one is empty.
pub fn read_journal(journal: &Path) -> Result<JournalSummary> {
    Ok(crate::store::journal::Journal::at(journal)
        .read_only()?
        .summary())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_corrupt_journal_is_reported_and_left_where_it_is() {
        let d = tempfile::tempdir().unwrap();
        let store = d.path().join(".credentials.json");
        let journal = journal_path(StoreKind::Credentials, &store).unwrap();
        assert_eq!(journal, d.path().join(".credentials.hap-journal.json"));
        std::fs::write(&journal, b"{\"entries\": [").unwrap();
        let e = read_journal(&journal).unwrap_err();
        assert_eq!(e.status, crate::Status::StoreCorrupt);
        assert_eq!(std::fs::read(&journal).unwrap(), b"{\"entries\": [");
        assert_eq!(
            std::fs::read_dir(d.path()).unwrap().count(),
            1,
            "nothing set aside"
        );
    }

    #[test]
    fn a_journal_summary_holds_fingerprints_and_no_token() {
        let d = tempfile::tempdir().unwrap();
        let store = d.path().join("auth.json");
        let journal = journal_path(StoreKind::Pool, &store).unwrap();
        std::fs::write(
            &journal,
            r#"{"version": 2, "entries": [{"id": "e1", "grant": "anthropic/a1b2c3",
                "spent": "sha256:0123456789abcdef", "access_token": "sk-ant-oat01-fake-a2",
                "refresh_token": "sk-ant-ort01-fake-r2", "committed": false, "at_ms": 7}],
                "backoff": {"credentials": {"until_ms": 9, "failures": 2, "code": 503}}}"#,
        )
        .unwrap();
        let s = read_journal(&journal).unwrap();
        assert_eq!(
            s.uncommitted,
            [Uncommitted {
                grant: "anthropic/a1b2c3".into(),
                spent: "sha256:0123456789abcdef".into(),
                at_ms: 7
            }]
        );
        assert_eq!(s.backoff["credentials"].failures, 2);
        assert!(!format!("{s:?}").contains("fake-a2"));
    }
}
