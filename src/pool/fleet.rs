//! The fleet authority wired into a pool (issue 16, docs/FLEET.md): with `redis_url` set,
//! the login lives in Redis, not in a file. The refresh transaction (`refresh/mod.rs`) is
//! the same: its locks become this host's fleet lock file plus the Redis lease, its store
//! read and write become Redis reads and compare-and-set writes, and its journal is a local
//! file of this host (a pair the server returned while Redis was down waits there and is
//! committed when Redis returns).
//!
//! The hot path stays without network: the pool caches the pair and a subscription to the
//! rotation channel says when to read it again. While the subscription is down, the cache
//! is re-read at every look, and a read that fails keeps the cache: a still-valid token is
//! served, an expired one ends in `UNAVAILABLE` from the refresh, which cannot take the
//! lease (fail closed: never an unlocked refresh).
//!
//! Built without the `redis` feature, `Fleet` has no values and a `redis_url` is refused.

use crate::config::Config;
use crate::credentials::TokenPair;
use crate::error::{Error, Result};

#[cfg(feature = "redis")]
pub(crate) use imp::{Fleet, Lease};

/// Without the feature: no values, so every method is unreachable.
#[cfg(not(feature = "redis"))]
pub(crate) enum Fleet {}
#[cfg(not(feature = "redis"))]
pub(crate) enum Lease {}

#[cfg(not(feature = "redis"))]
impl Fleet {
    pub(crate) fn open(cfg: &Config) -> Result<Option<Fleet>> {
        match cfg.redis_url {
            None => Ok(None),
            Some(_) => Err(Error::invalid(
                "config key 'redis_url': this hap was built without the 'redis' feature \
                 (cargo build --features redis; scripts/dist builds include it)",
            )),
        }
    }
    pub(crate) fn row_id(&self) -> &str {
        match *self {}
    }
    pub(crate) fn is_consumer(&self) -> bool {
        match *self {}
    }
    pub(crate) fn read(&self) -> Result<Option<TokenPair>> {
        match *self {}
    }
    pub(crate) fn journal_store(&self) -> std::path::PathBuf {
        match *self {}
    }
    pub(crate) fn lock_path(&self) -> std::path::PathBuf {
        match *self {}
    }
    pub(crate) fn fresh_view(&self, _known: bool) -> Option<u64> {
        match *self {}
    }
    pub(crate) fn note_read(&self, _generation: u64) {
        match *self {}
    }
    pub(crate) fn start_watch(&self) {
        match *self {}
    }
    pub(crate) fn lease(&self, _deadline: std::time::Instant) -> Result<Lease> {
        match *self {}
    }
    pub(crate) fn commit(
        &self,
        _replaced_fp: Option<&str>,
        _pair: &TokenPair,
        _scopes: Option<&[String]>,
    ) -> Result<()> {
        match *self {}
    }
    pub(crate) fn posting_left_ms(&self, _token_fp: &str, _now: i64) -> Result<Option<i64>> {
        match *self {}
    }
    pub(crate) fn mark_posting(&self, _token_fp: &str, _at_ms: i64) -> Result<()> {
        match *self {}
    }
    pub(crate) fn clear_posting(&self, _token_fp: &str) {
        match *self {}
    }
}

#[cfg(feature = "redis")]
mod imp {
    use super::*;
    use crate::error::Status;
    use crate::secret::fingerprint;
    pub(crate) use crate::store::redis::Lease;
    use crate::store::redis::{Commit, RedisConfig, RedisStore, Subscription};
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::OnceLock;
    use std::time::Instant;

    pub(crate) struct Fleet {
        pub(crate) store: RedisStore,
        sub: OnceLock<Subscription>,
        /// The subscription generation the cached view was read at.
        seen: AtomicU64,
        /// Learnt from Redis: this host's ACL user may not read the pair.
        consumer: AtomicBool,
        journal_store: PathBuf,
        row_id: String,
        lease_ms: u64,
        /// How long a taker watches for the pair after finding another host's
        /// possibly-spent marker: that host's POST may still be answered and committed.
        marker_window_ms: i64,
    }

    fn host_label() -> String {
        let mut buf = [0u8; 64];
        // SAFETY: gethostname writes at most buf.len() bytes into buf.
        let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        if rc != 0 {
            return "host".into();
        }
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end])
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
            .collect()
    }

    /// This host's directory for the fleet journal and lock: `$XDG_STATE_HOME/hap`, else
    /// `~/.local/state/hap`.
    fn state_dir() -> Result<PathBuf> {
        if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                return Ok(d.join("hap"));
            }
        }
        match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            Some(h) if std::path::Path::new(&h).is_absolute() => {
                Ok(PathBuf::from(h).join(".local/state/hap"))
            }
            _ => Err(Error::invalid(
                "config key 'redis_url': HOME is not set, so there is no place for this \
                 host's fleet journal (set HOME or XDG_STATE_HOME)",
            )),
        }
    }

    impl Fleet {
        pub(crate) fn open(cfg: &Config) -> Result<Option<Fleet>> {
            let Some(url) = &cfg.redis_url else {
                return Ok(None);
            };
            let rc = RedisConfig::new(
                url,
                cfg.redis_password_file.as_deref(),
                cfg.redis_prefix.as_deref(),
                cfg.redis_ca_file.as_deref(),
            )?;
            let id = fingerprint(&format!("{url}\n{}", rc.prefix()));
            let journal_store = state_dir()?.join(format!("fleet-{}.json", &id[7..19]));
            Ok(Some(Fleet {
                store: RedisStore::new(rc),
                sub: OnceLock::new(),
                seen: AtomicU64::new(u64::MAX),
                consumer: AtomicBool::new(false),
                journal_store,
                row_id: id[7..13].to_string(),
                lease_ms: cfg.redis_lease_ms,
                marker_window_ms: (cfg.redis_lease_ms + cfg.http_timeout_ms) as i64,
            }))
        }

        pub(crate) fn row_id(&self) -> &str {
            &self.row_id
        }

        pub(crate) fn is_consumer(&self) -> bool {
            self.consumer.load(Ordering::Relaxed)
        }

        /// The pair (a refresher) or the access token alone (a consumer, whose ACL user may
        /// not read the pair: learnt at the first refusal).
        pub(crate) fn read(&self) -> Result<Option<TokenPair>> {
            if !self.is_consumer() {
                match self.store.read_pair() {
                    Ok(s) => return Ok(s.map(|s| s.pair)),
                    Err(e) if e.status == Status::InvalidArgument => {
                        crate::log::debug(format_args!(
                            "fleet: this ACL user reads the access token only (a consumer)"
                        ));
                        self.consumer.store(true, Ordering::Relaxed);
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(self.store.read_access()?.map(|a| TokenPair {
                access: a.access,
                refresh: None,
                expires_at_ms: a.expires_at_ms,
            }))
        }

        /// The store path the journal and the host lock are named after.
        pub(crate) fn journal_store(&self) -> PathBuf {
            self.journal_store.clone()
        }

        pub(crate) fn lock_path(&self) -> PathBuf {
            self.journal_store.with_extension("lock")
        }

        /// `Some(generation)` to record after a read; `None` when the cached view can be
        /// served as it is (`known`: a view was read; the subscription is up and nothing
        /// was published since).
        pub(crate) fn fresh_view(&self, known: bool) -> Option<u64> {
            let g = self.generation();
            match self.sub.get() {
                Some(s) if known && s.connected() && self.seen.load(Ordering::Acquire) == g => None,
                _ => Some(g),
            }
        }

        pub(crate) fn note_read(&self, generation: u64) {
            self.seen.store(generation, Ordering::Release);
        }

        fn generation(&self) -> u64 {
            self.sub.get().map_or(0, Subscription::generation)
        }

        /// Starts the subscription (a long-lived handle's, like the store watch).
        pub(crate) fn start_watch(&self) {
            if self.sub.get().is_some() {
                return;
            }
            if let Ok(s) = Subscription::start(self.store.config().clone()) {
                let _ = self.sub.set(s);
            }
        }

        pub(crate) fn lease(&self, deadline: Instant) -> Result<Lease> {
            self.store
                .acquire_lease(self.lease_ms, deadline, &host_label())
        }

        /// Compare-and-set on the refresh token the pair replaces.
        pub(crate) fn commit(
            &self,
            replaced_fp: Option<&str>,
            pair: &TokenPair,
            scopes: Option<&[String]>,
        ) -> Result<()> {
            match self.store.commit(replaced_fp, pair, scopes)? {
                Commit::Written(v) => {
                    crate::log::debug(format_args!("fleet: pair committed as version {v}"));
                    Ok(())
                }
                Commit::Moved => Err(Error::new(
                    Status::Io,
                    "the fleet's authority holds another refresh token than the one this \
                     refresh replaced (another host rotated, or a new login was imported); \
                     the pair was not written",
                )),
            }
        }

        /// How much longer a taker watches before POSTing `token_fp`: `Some` when a
        /// possibly-spent marker of that token is in Redis (another host's POST, or this
        /// host's, went out and its pair is not committed), clamped to the window.
        pub(crate) fn posting_left_ms(&self, token_fp: &str, now: i64) -> Result<Option<i64>> {
            Ok(self
                .store
                .posting()?
                .filter(|p| p.token_fp == token_fp)
                .map(|p| {
                    p.at_ms
                        .saturating_add(self.marker_window_ms)
                        .saturating_sub(now)
                        .clamp(0, self.marker_window_ms)
                }))
        }

        pub(crate) fn mark_posting(&self, token_fp: &str, at_ms: i64) -> Result<()> {
            self.store.mark_posting(token_fp, at_ms)
        }

        pub(crate) fn clear_posting(&self, token_fp: &str) {
            if let Err(e) = self.store.clear_posting(token_fp) {
                crate::log::debug(format_args!("fleet: marker not cleared: {e}"));
            }
        }
    }
}

/// `hap fleet import|export|status` (issue 16): moving a login into the fleet's Redis and
/// out of it, as library calls, so the CLI stays on the public API.
#[cfg(feature = "redis")]
pub mod admin {
    use crate::config::Config;
    use crate::credentials::{CredentialsFile, TokenPair};
    use crate::error::{Error, Result, Status};
    use crate::pool_file::PoolFile;
    use crate::store::redis::{Commit, RedisConfig, RedisStore};
    use serde_json::{json, Value};
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    /// Which login `import` moves.
    #[derive(Clone, Debug)]
    pub enum Source {
        /// Claude Code's, from the config's `credentials_path`.
        ClaudeCode,
        /// An owned row of the pool file, by id.
        PoolRow(String),
    }

    /// What `import` did.
    #[derive(Clone, Debug)]
    pub struct Imported {
        /// Where the login came from, for people.
        pub source: String,
        /// Where it went: the URL (never with a password) and prefix.
        pub authority: String,
        pub version: u64,
    }

    /// What `export` did.
    #[derive(Clone, Debug)]
    pub struct Exported {
        pub path: PathBuf,
        pub authority: String,
        pub version: u64,
    }

    fn store(cfg: &Config) -> Result<RedisStore> {
        let url = cfg.redis_url.as_deref().ok_or_else(|| {
            Error::invalid(
                "no fleet configured: set redis_url (and redis_password_file) in --config or \
                 the HAP_CONFIG file (docs/FLEET.md)",
            )
        })?;
        Ok(RedisStore::new(RedisConfig::new(
            url,
            cfg.redis_password_file.as_deref(),
            cfg.redis_prefix.as_deref(),
            cfg.redis_ca_file.as_deref(),
        )?))
    }

    fn authority(s: &RedisStore) -> String {
        format!(
            "{} (prefix {})",
            s.config().shown_url(),
            s.config().prefix()
        )
    }

    fn deadline(cfg: &Config) -> Instant {
        Instant::now() + Duration::from_millis(cfg.lock_timeout_ms)
    }

    /// Copies the login into Redis under the fleet's lease, only if Redis holds none.
    pub fn import(cfg: &Config, source: &Source) -> Result<Imported> {
        let redis = store(cfg)?;
        let (pair, from) = match source {
            Source::PoolRow(id) => {
                let path = cfg.pool_path.clone().ok_or_else(|| {
                    Error::invalid("importing a pool row needs a pool file (pool_path)")
                })?;
                let read = PoolFile::new(path.clone(), cfg.provider.clone()).read()?;
                let r = read
                    .rows
                    .iter()
                    .find(|r| &r.id == id)
                    .ok_or_else(|| Error::unknown_credential(id))?;
                let pair = match (&r.access_token, &r.refresh_token) {
                    (Some(a), Some(rt)) => TokenPair {
                        access: a.clone(),
                        refresh: Some(rt.clone()),
                        expires_at_ms: r.expires_at_ms,
                    },
                    _ => {
                        return Err(Error::invalid(format!(
                            "pool row {id} holds no OAuth pair of its own (a claude_code row \
                             borrows Claude Code's: import that instead)"
                        )))
                    }
                };
                (pair, format!("pool row {id} of {}", path.display()))
            }
            Source::ClaudeCode => {
                let path = cfg
                    .credentials_path
                    .clone()
                    .ok_or_else(|| Error::invalid("no credentials file (credentials_path)"))?;
                let pair = CredentialsFile::new(path.clone())
                    .read()?
                    .and_then(|r| r.pair)
                    .filter(|p| p.refresh.is_some())
                    .ok_or_else(|| {
                        Error::new(
                            Status::NoCredential,
                            format!("{} holds no login to import", path.display()),
                        )
                    })?;
                (pair, format!("Claude Code's login in {}", path.display()))
            }
        };
        let _lease = redis.acquire_lease(cfg.redis_lease_ms, deadline(cfg), "hap-fleet")?;
        match redis.commit(None, &pair, None)? {
            Commit::Written(version) => Ok(Imported {
                source: from,
                authority: authority(&redis),
                version,
            }),
            Commit::Moved => Err(Error::invalid(format!(
                "{} holds a login already: nothing imported (`hap fleet export` moves it out \
                 first)",
                authority(&redis)
            ))),
        }
    }

    /// Under the lease: the fleet's login into the credentials file, then out of Redis.
    pub fn export(cfg: &Config) -> Result<Exported> {
        let redis = store(cfg)?;
        let path = cfg
            .credentials_path
            .clone()
            .ok_or_else(|| Error::invalid("no credentials file (credentials_path)"))?;
        let _lease = redis.acquire_lease(cfg.redis_lease_ms, deadline(cfg), "hap-fleet")?;
        let stored = redis.read_pair()?.ok_or_else(|| {
            Error::new(
                Status::NoCredential,
                format!("{} holds no login", authority(&redis)),
            )
        })?;
        CredentialsFile::new(path.clone()).write_pair(&stored.pair, stored.scopes.as_deref())?;
        if let Err(e) = redis.remove() {
            return Err(Error::new(
                e.status,
                format!(
                    "the login is in {} now, but it could not be deleted from {} ({}): \
                     delete it there before any fleet host refreshes, or the family forks",
                    path.display(),
                    authority(&redis),
                    e.message
                ),
            ));
        }
        Ok(Exported {
            path,
            authority: authority(&redis),
            version: stored.version,
        })
    }

    /// The fleet's authority now, without a secret: `redis_url`, `redis_prefix`, `role`
    /// (refresher or consumer: what this ACL user may read), `version`, `expires_at_ms`,
    /// `lease_holder`, `lease_ttl_ms`, `possibly_spent_since_ms`.
    pub fn status(cfg: &Config) -> Result<Value> {
        let redis = store(cfg)?;
        let (role, version, expires) = match redis.read_pair() {
            Ok(Some(s)) => ("refresher", Some(s.version), s.pair.expires_at_ms),
            Ok(None) => ("refresher", None, None),
            // A consumer's ACL user: what it can see.
            Err(e) if e.status == Status::InvalidArgument => match redis.read_access()? {
                Some(a) => ("consumer", Some(a.version), a.expires_at_ms),
                None => ("consumer", None, None),
            },
            Err(e) => return Err(e),
        };
        let lease = redis.lease_holder().ok().flatten();
        let posting = redis.posting().ok().flatten();
        Ok(json!({
            "redis_url": redis.config().shown_url(),
            "redis_prefix": redis.config().prefix(),
            "role": role,
            "version": version,
            "expires_at_ms": expires,
            "lease_holder": lease.as_ref().map(|l| &l.0),
            "lease_ttl_ms": lease.as_ref().map(|l| l.1),
            "possibly_spent_since_ms": posting.map(|p| p.at_ms),
        }))
    }
}
