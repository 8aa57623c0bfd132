//! The fleet authority behind the store seam (issue 16, docs/FLEET.md): with `redis_url`
//! set, the login every `claude_code` row borrows lives in Redis, not in a file. The refresh
//! transaction (`refresh/mod.rs`) is the same: the store's locks are this host's fleet lock
//! file plus the Redis lease, its read and compare-and-set write go to Redis, and its
//! journal is a local file of this host (a pair the server returned while Redis was down
//! waits there and is committed when Redis returns).
//!
//! The hot path stays without network: the pool caches the pair and a subscription to the
//! rotation channel says when to read it again. While the subscription is down, the cache
//! is re-read at every look, and a read that fails keeps the cache: a still-valid token is
//! served, an expired one ends in `UNAVAILABLE` from the refresh, which cannot take the
//! lease (fail closed: never an unlocked refresh).
//!
//! A pair stranded in this host's journal (the server answered while Redis was down, or a
//! failover rolled Redis back) is committed by the transaction's journal replay, and also by
//! every long-lived process whenever its subscription (re)connects (`recommit_stranded`),
//! so it goes in before another host, finding the token it spent, POSTs that token.
//!
//! Built without the `redis` feature, `Fleet` has no values and a `redis_url` is refused.

use crate::config::Config;
#[cfg(feature = "redis")]
use crate::credentials::TokenPair;
use crate::error::{Error, Result};

#[cfg(feature = "redis")]
pub(crate) use imp::Fleet;

/// Without the feature: no values, so every method is unreachable.
#[cfg(not(feature = "redis"))]
pub(crate) enum Fleet {}

#[cfg(not(feature = "redis"))]
impl Fleet {
    pub(crate) fn open(cfg: &Config) -> Result<Option<std::sync::Arc<Fleet>>> {
        cfg.check_sentinel_keys()?;
        match cfg.redis_url {
            None => Ok(None),
            Some(_) => Err(Error::invalid(
                "config key 'redis_url': this hap was built without the 'redis' feature \
                 (cargo build --features redis; scripts/dist builds include it)",
            )),
        }
    }
    pub(crate) fn authority(&self) -> std::sync::Arc<dyn crate::authority::Authority> {
        match *self {}
    }
    pub(crate) fn start_watch(&self) {
        match *self {}
    }
}

#[cfg(feature = "redis")]
mod imp {
    use super::*;
    use crate::authority::{Authority, Deferred, PairRead, Stamp, Written};
    use crate::error::Status;
    use crate::journal::Journal;
    use crate::lock::{Held, LeaseSource, LockSpec, TakeLease};
    use crate::secret::{fingerprint, Secret};
    use crate::store::redis::{Commit, Posting, RedisStore, Subscription};
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, OnceLock, Weak};
    use std::time::Instant;

    /// The fleet's login as a store (`dyn Authority`): Redis for the pair, the lease and the
    /// possibly-spent marker; this host's lock file and journal beside them.
    pub(crate) struct Fleet {
        store: RedisStore,
        sub: OnceLock<Subscription>,
        /// Learnt from Redis: this host's ACL user may not read the pair.
        consumer: AtomicBool,
        journal_store: PathBuf,
        lease_ms: u64,
        /// How long a taker watches for the pair after finding another host's
        /// possibly-spent marker: that host's POST may still be answered and committed.
        marker_window_ms: i64,
        /// Itself, for the lease's lock data.
        me: Weak<Fleet>,
        /// The last marker of another process this one saw (`posting_left_ms`), for the
        /// `invalid_grant` that may follow its window (`spent_hint`).
        seen_marker: std::sync::Mutex<Option<Posting>>,
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

    /// Who wrote a possibly-spent marker: the host and the process.
    fn marker_label() -> String {
        format!("{}:{}", host_label(), std::process::id())
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
        pub(crate) fn open(cfg: &Config) -> Result<Option<Arc<Fleet>>> {
            let Some(url) = &cfg.redis_url else {
                return Ok(None);
            };
            let rc = super::redis_config(cfg, url)?;
            // From the config, not from where the master is: with Sentinel, a failover
            // does not move this host's journal.
            let id = fingerprint(&format!("{url}\n{}", rc.prefix()));
            let journal_store = state_dir()?.join(format!("fleet-{}.json", &id[7..19]));
            Ok(Some(Arc::new_cyclic(|me| Fleet {
                store: RedisStore::new(rc)
                    .with_wait(cfg.redis_wait_replicas, cfg.redis_wait_timeout_ms),
                sub: OnceLock::new(),
                consumer: AtomicBool::new(false),
                journal_store,
                lease_ms: cfg.redis_lease_ms,
                marker_window_ms: (cfg.redis_lease_ms + cfg.http_timeout_ms) as i64,
                me: me.clone(),
                seen_marker: std::sync::Mutex::new(None),
            })))
        }

        pub(crate) fn authority(self: &Arc<Self>) -> Arc<dyn Authority> {
            self.clone()
        }

        fn is_consumer(&self) -> bool {
            self.consumer.load(Ordering::Relaxed)
        }

        /// Starts the subscription (a long-lived handle's, like the store watch). Each time
        /// it connects, this host's stranded pairs are committed (`recommit_stranded`).
        pub(crate) fn start_watch(&self) {
            if self.sub.get().is_some() {
                return;
            }
            // The callback owns its own handle, not the `Fleet`: a `Fleet` dropped on the
            // subscriber thread would join that thread from itself.
            let store = self.store.another();
            let journal = self.journal_store.clone();
            let on_connect = Box::new(move || match recommit_stranded(&store, &journal) {
                Ok(0) => {}
                Ok(n) => crate::log::debug(format_args!(
                    "fleet: {n} stranded pair(s) of this host committed on reconnect"
                )),
                Err(e) => crate::log::debug(format_args!(
                    "fleet: stranded pairs not committed on reconnect: {}",
                    e.status.name()
                )),
            });
            if let Ok(s) = Subscription::start(self.store.config().clone(), on_connect) {
                let _ = self.sub.set(s);
            }
        }

        fn lock_path(&self) -> PathBuf {
            self.journal_store.with_extension("lock")
        }

        /// The pair (a refresher) or the access token alone (a consumer, whose ACL user may
        /// not read the pair: learnt at the first refusal).
        fn read(&self) -> Result<Option<TokenPair>> {
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
    }

    /// Commits the pairs this host's journal holds and Redis lacks: Redis holds the refresh
    /// token an entry spent (the commit failed while Redis was down, or a failover rolled
    /// Redis back), so that token is dead at the server and the entry is the login. Run when
    /// the subscription (re)connects, so a long-lived process repairs Redis as soon as it is
    /// back, not only at its next refresh: before this, a host that refreshed first after
    /// the marker window POSTed the spent token and got `invalid_grant` (issue 16).
    ///
    /// No lock or lease: the write is the compare-and-set on the spent token, which is the
    /// whole safety condition (only this entry can succeed that token), and the journal is
    /// only read (`read_only`); the transaction's `settle` marks the entry committed later.
    pub(super) fn recommit_stranded(store: &RedisStore, journal_store: &Path) -> Result<u32> {
        let doc = Journal::for_store(journal_store).read_only()?;
        let mut committed = 0;
        // A chain of rotations Redis missed is followed like the transaction's step 4.
        for _ in 0..doc.entries.len() {
            let Some(stored) = store.read_pair()? else {
                break;
            };
            let Some(e) = doc.replayable(GRANT, &stored.pair) else {
                break;
            };
            match store.commit(Some(&e.spent), &e.pair(), e.scopes.as_deref())? {
                Commit::Written(_) => committed += 1,
                Commit::Moved => break,
            }
            if !e.rotated() {
                break;
            }
        }
        Ok(committed)
    }

    /// The fleet's grant key: the journal's entries are filed under it.
    const GRANT: &str = "fleet";

    impl TakeLease for Fleet {
        fn take(&self, deadline: Instant) -> Result<Box<dyn Send>> {
            let lease = self
                .store
                .acquire_lease(self.lease_ms, deadline, &host_label())?;
            Ok(Box::new(lease))
        }

        fn name(&self) -> String {
            self.store.config().shown_url().to_string()
        }
    }

    /// The store seam's contract (store/authority.rs) for the fleet's login. Its stamp is
    /// the subscription's generation while the subscription is up: the hot path then makes
    /// no network call; otherwise `Unknown`, and every look reads Redis.
    impl Authority for Fleet {
        fn grant_key(&self) -> String {
            GRANT.into()
        }

        fn name(&self) -> String {
            format!(
                "{} (prefix {})",
                self.store.config().shown_url(),
                self.store.config().prefix()
            )
        }

        fn file(&self) -> Option<PathBuf> {
            None
        }

        fn stamp(&self) -> Result<Stamp> {
            Ok(match self.sub.get() {
                Some(s) if s.connected() => Stamp::Version(s.generation()),
                _ => Stamp::Unknown,
            })
        }

        fn read_pair(&self) -> Result<PairRead> {
            // Taken before the read: a rotation in between shows as a new stamp next time.
            let stamp = self.stamp()?;
            Ok(PairRead {
                stamp,
                pair: self.read()?,
            })
        }

        fn write_pair(
            &self,
            _held: &Held,
            replaces: Option<&Secret>,
            pair: &TokenPair,
            issued: &crate::credentials::Issued,
        ) -> Result<Written> {
            let Some(replaces) = replaces else {
                // The fleet's pair always has a refresh token; an import is `hap fleet`'s.
                return Ok(Written::Moved);
            };
            // With `redis_wait_replicas`, a commit that reached the primary but not that many
            // replicas is an error (`UNAVAILABLE`), not `Stored`: the transaction keeps its
            // journal entry uncommitted and still serves the pair (refresh step 7). How that
            // entry is settled, and why that is safe:
            // - The next transaction of this host reads the primary, which shows the pair,
            //   and `JournalDoc::settle` marks the entry committed, replicas or not. That
            //   loses nothing: `replayable` replays a committed entry that *rotated* the
            //   refresh token whenever the store holds the token it spent, so if a failover
            //   then rolls the fleet back to that token, this host's next refresh
            //   transaction commits the pair again (tests/redis.rs,
            //   a_failover_with_wait_...). A server that does not rotate leaves the old
            //   token valid: a rollback to it loses no login.
            // - Replication is one ordered stream: the next refresh's marker is acknowledged
            //   by the replicas (else no POST) only once they have every earlier write,
            //   this commit included. So no second rotation is built on an unreplicated one.
            // - A replay of an entry the primary already holds is harmless: COMMIT_LUA finds
            //   its own pair, writes nothing new, and WAITs again.
            // What it does not cover: a failover while this host is gone for good (its
            // journal is the only other copy), as for a pair stranded in a journal.
            Ok(
                match self
                    .store
                    // The fleet's hash keeps the scopes of what the answer said (its
                    // format is unchanged by issue 12; docs/FLEET.md).
                    .commit(
                        Some(&replaces.fingerprint()),
                        pair,
                        issued.scopes.as_deref(),
                    )? {
                    Commit::Written(v) => {
                        crate::log::debug(format_args!("fleet: pair committed as version {v}"));
                        Written::Stored
                    }
                    Commit::Moved => Written::Moved,
                },
            )
        }

        fn locks(&self) -> Result<Vec<LockSpec>> {
            // This host's processes queue on a local lock, so one per host asks Redis for
            // the lease; without the lease (Redis unreachable: UNAVAILABLE) there is no
            // refresh at all, never an unlocked one.
            let path = self.lock_path();
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| Error::io(dir, "creating the fleet journal directory", &e))?;
            }
            let me = self
                .me
                .upgrade()
                .ok_or_else(|| Error::internal("the fleet authority is gone"))?;
            Ok(vec![
                LockSpec::Flock(vec![path]),
                LockSpec::Lease(LeaseSource(me)),
            ])
        }

        fn journal(&self) -> Result<Journal> {
            Ok(Journal::for_store(&self.journal_store))
        }

        /// A consumer host (its ACL user may not read the pair, learnt at the first
        /// refusal) never refreshes: it serves what Redis has and waits for a refresher
        /// host's rotation, which its subscription brings at once.
        fn refresh_deferred(&self) -> Option<Deferred> {
            self.is_consumer().then_some(Deferred {
                refresher: "this host is a fleet consumer (its Redis ACL user reads the access \
                            token only): a refresher host rotates the login; run `hap token` \
                            on one if none is running (docs/FLEET.md)",
                when_gone: "the fleet's Redis holds no login: `hap fleet import` on a refresher \
                            host (docs/FLEET.md)",
                // A rotation is published the moment it is committed.
                retry_ms: 1000,
            })
        }

        fn mark_posting(&self, token_fp: &str, at_ms: i64) -> Result<()> {
            self.store.mark_posting(token_fp, at_ms, &marker_label())
        }

        fn posting_left_ms(&self, token_fp: &str, now: i64) -> Result<Option<i64>> {
            let marker = self.store.posting()?.filter(|p| p.token_fp == token_fp);
            if let Some(p) = marker.as_ref().filter(|p| p.host != Some(marker_label())) {
                *self.seen_marker.lock().unwrap_or_else(|e| e.into_inner()) = Some(p.clone());
            }
            Ok(marker.map(|p| {
                p.at_ms
                    .saturating_add(self.marker_window_ms)
                    .saturating_sub(now)
                    .clamp(0, self.marker_window_ms)
            }))
        }

        fn clear_posting(&self, token_fp: &str) {
            if let Err(e) = self.store.clear_posting(token_fp) {
                crate::log::debug(format_args!("fleet: marker not cleared: {e}"));
            }
        }

        fn spent_hint(&self, token_fp: &str) -> Option<String> {
            let seen = self.seen_marker.lock().unwrap_or_else(|e| e.into_inner());
            let p = seen.as_ref().filter(|p| p.token_fp == token_fp)?;
            let ago_s = (crate::clock::now_ms() - p.at_ms).max(0) / 1000;
            Some(format!(
                "{} POSTed this refresh token {ago_s} s ago and its answer never reached                  Redis. If hap there kept the answer in its journal, any hap call on that host                  (`hap token`) puts it back and every host adopts it; log in again only if                  that fails (docs/FLEET.md)",
                p.host
                    .as_deref()
                    .map(|h| format!("the process {h}"))
                    .unwrap_or_else(|| "another host".into())
            ))
        }
    }
}

/// The fleet's Redis as the config names it: `redis_url` and its password, prefix and CA,
/// and the Sentinel keys.
#[cfg(feature = "redis")]
fn redis_config(cfg: &Config, url: &str) -> Result<crate::store::redis::RedisConfig> {
    cfg.check_sentinel_keys()?;
    crate::store::redis::RedisConfig::new(
        url,
        cfg.redis_password_file.as_deref(),
        cfg.redis_prefix.as_deref(),
        cfg.redis_ca_file.as_deref(),
    )?
    .with_sentinels(&cfg.redis_sentinels, cfg.redis_sentinel_master.as_deref())
}

/// `hap fleet import|export|status` (issue 16): moving a login into the fleet's Redis and
/// out of it, as library calls, so the CLI stays on the public API.
#[cfg(feature = "redis")]
pub mod admin {
    use crate::config::Config;
    use crate::credentials::{CredentialsFile, TokenPair};
    use crate::error::{Error, Result, Status};
    use crate::pool_file::PoolFile;
    use crate::store::redis::{Commit, RedisStore};
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
        Ok(RedisStore::new(super::redis_config(cfg, url)?)
            .with_wait(cfg.redis_wait_replicas, cfg.redis_wait_timeout_ms))
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
        CredentialsFile::new(path.clone()).write_pair(
            &stored.pair,
            &crate::credentials::Issued::scopes(stored.scopes.clone()),
        )?;
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

    /// The fleet's authority now, without a secret: `redis_url`, `redis_prefix`,
    /// `redis_sentinels` and `redis_sentinel_master` (empty and null without Sentinel),
    /// `master_addr` (with Sentinel: `host:port` of the master reached), `role`
    /// (refresher or consumer: what this ACL user may read), `version`, `expires_at_ms`,
    /// `lease_holder`, `lease_ttl_ms`, `possibly_spent_since_ms`, `possibly_spent_by` (the
    /// process that POSTed, `host:pid`), `redis_wait_replicas` (the config's),
    /// `connected_replicas` (what the primary reports; `null` when this ACL user may not ask).
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
        let replicas = redis.connected_replicas().ok();
        // With Sentinel: the master this connection reached (ROLE-checked), an address.
        let master = redis
            .config()
            .sentinel_master()
            .and_then(|_| redis.master_addr());
        Ok(json!({
            "redis_url": redis.config().shown_url(),
            "redis_prefix": redis.config().prefix(),
            "redis_sentinels": redis.config().sentinels(),
            "redis_sentinel_master": redis.config().sentinel_master(),
            "master_addr": master,
            "role": role,
            "version": version,
            "expires_at_ms": expires,
            "lease_holder": lease.as_ref().map(|l| &l.0),
            "lease_ttl_ms": lease.as_ref().map(|l| l.1),
            "possibly_spent_since_ms": posting.as_ref().map(|p| p.at_ms),
            "possibly_spent_by": posting.and_then(|p| p.host),
            "redis_wait_replicas": cfg.redis_wait_replicas,
            "connected_replicas": replicas,
        }))
    }
}
