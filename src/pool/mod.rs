//! A pool handle: the view of the stores, resolve, report_failure and status.
//!
//! Hot path (`resolve` finding a valid token in unchanged files): two `stat` calls, one
//! short in-process mutex, no read, no lock file, no write. Everything else (re-reading a
//! changed store, syncing borrowed rows, refreshing) happens only when `stat` says a store
//! changed or the token needs it. The refresh transaction itself lives in `refresh.rs`.

/// Pure rules: availability, benches, terminal reasons, strategies.
/// The fleet authority in Redis (issue 16), when `redis_url` is set.
pub(crate) mod fleet;
pub mod policy;

use crate::authority::{Authority, Stamp};
use crate::clock::now_ms;
use crate::config::{Config, Strategy};
use crate::counters::Counters;
use crate::credentials::{CredentialsFile, TokenPair};
use crate::error::{Error, Result, Status};
use crate::fsio::FileStamp;
use crate::lock::{FileLock, Held};
use crate::oauth::TokenEndpoint;
use crate::policy::{fresh_parts, is_fresh, is_rejected};
use crate::pool_file::{Kind, PoolFile, PoolRow, Row};
use crate::refresh::{Flights, Refresher, RowLedger};
use crate::request::{Failure, ResolveRequest};
use crate::secret::{fingerprint, Secret};
use crate::store::keychain::KeychainStore;
use policy::Availability;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// What `hap_resolve_token` returns.
#[derive(Clone, Debug)]
pub struct Token {
    pub access_token: Secret,
    pub credential_id: String,
    pub label: String,
    pub source: String,
    pub auth_type: String,
    pub expires_at_ms: Option<i64>,
    pub refreshed: bool,
}

#[derive(serde::Serialize)]
struct TokenJson<'a> {
    access_token: &'a str,
    credential_id: &'a str,
    label: &'a str,
    source: &'a str,
    auth_type: &'a str,
    expires_at_ms: Option<i64>,
    refreshed: bool,
}

impl Token {
    /// The result JSON of `hap_resolve_token`, serialized straight from borrowed fields
    /// (no intermediate map: this runs on every hot resolve through the C ABI).
    pub fn to_json_string(&self) -> String {
        serde_json::to_string(&TokenJson {
            access_token: self.access_token.expose(),
            credential_id: &self.credential_id,
            label: &self.label,
            source: &self.source,
            auth_type: &self.auth_type,
            expires_at_ms: self.expires_at_ms,
            refreshed: self.refreshed,
        })
        .expect("plain strings and numbers serialize")
    }
}

/// What `hap_report_failure` returns.
#[derive(Clone, Debug, PartialEq)]
pub struct FailureOutcome {
    pub credential_id: String,
    /// `ok`, `refresh_pending`, `exhausted` or `dead`.
    pub last_status: &'static str,
    pub available_at_ms: Option<i64>,
}

impl FailureOutcome {
    pub fn to_json(&self) -> Value {
        json!({
            "credential_id": self.credential_id,
            "last_status": self.last_status,
            "available_at_ms": self.available_at_ms,
        })
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// The cached view of the pool file and the login's store. A `None` pool stamp means "not
/// read yet" (`known` false) or "file missing" (`known` true); a login stamp that is
/// `Stamp::Unknown` (a store no file stamp can watch) never matches, so it is re-read.
#[derive(Default)]
pub(crate) struct View {
    pool_known: bool,
    pool_stamp: Option<FileStamp>,
    creds_known: bool,
    creds_stamp: Stamp,
    /// Set by every reload: the rows have not been reconciled with the credentials file.
    unsynced: bool,
    pub rows: Vec<Row>,
    pub creds_pair: Option<TokenPair>,
    /// Picks this handle made per row, for `least_used` without a write per pick.
    picks: HashMap<String, u64>,
    /// The access token last handed out per row: a reported failure is about that
    /// token, even if the store has moved on since.
    served: HashMap<String, Secret>,
}

impl View {
    /// At most one credential with a token is not dead: docs/SPEC.md's "only non-dead
    /// credential of the pool", which is never benched for long. One rule for selection,
    /// reports and status.
    fn sole_live(&self) -> bool {
        let creds_present = self.creds_pair.is_some();
        self.rows
            .iter()
            .filter(|r| {
                has_token(r, creds_present) && r.last_status.as_deref() != Some(policy::STATUS_DEAD)
            })
            .count()
            <= 1
    }

    /// Counts the pick and remembers the token; allocates only when either is new.
    fn note_served(&mut self, t: &Token) {
        match self.picks.get_mut(&t.credential_id) {
            Some(n) => *n += 1,
            None => {
                self.picks.insert(t.credential_id.clone(), 1);
            }
        }
        if self.served.get(&t.credential_id) != Some(&t.access_token) {
            self.served
                .insert(t.credential_id.clone(), t.access_token.clone());
        }
    }
}

pub struct Pool {
    pub(crate) cfg: Config,
    pub(crate) pool_file: Option<PoolFile>,
    /// The store of the login every `claude_code` row borrows (Claude Code's credentials
    /// file), behind the store seam.
    pub(crate) login: Option<Arc<dyn Authority>>,
    pub(crate) endpoint: TokenEndpoint,
    pub(crate) view: Mutex<View>,
    pub(crate) flights: Flights,
    pub(crate) counters: Counters,
    rr_cursor: AtomicUsize,
    watch: OnceLock<crate::watch::StoreWatch>,
    /// Set at the second resolve. A one-shot process (`hap token`, a script) resolves once:
    /// starting a watch thread and an inotify descriptor for it cost more than the whole
    /// resolve (tearing the descriptor down took 80-90 % of `hap token`'s 12-16 ms).
    watch_wanted: AtomicBool,
    /// hap agent (issue 15): set when the config's `agent` key is prefer or require.
    agent: Option<crate::agent::client::Link>,
    /// Issue 16: the login lives in Redis (config `redis_url`); `login` is this store.
    pub(crate) fleet: Option<Arc<fleet::Fleet>>,
}

/// The token a row serves, from whichever store is its authority.
pub(crate) fn pair_for(row: &Row, creds_pair: Option<&TokenPair>) -> Option<TokenPair> {
    match row.kind() {
        Kind::Borrowed => creds_pair.cloned(),
        Kind::Owned | Kind::Foreign => PoolRow::pair_of(row),
    }
}

/// Whether the row has a token to serve, without copying it.
fn has_token(row: &Row, creds_present: bool) -> bool {
    match row.kind() {
        Kind::Borrowed => creds_present,
        Kind::Owned | Kind::Foreign => row.access_token.is_some(),
    }
}

/// The row's access token and expiry, borrowed: the hot path copies only what it returns.
fn token_ref<'a>(
    row: &'a Row,
    creds_pair: Option<&'a TokenPair>,
) -> Option<(&'a Secret, Option<i64>)> {
    match row.kind() {
        Kind::Borrowed => creds_pair.map(|p| (&p.access, p.expires_at_ms)),
        Kind::Owned | Kind::Foreign => row.access_token.as_ref().map(|a| (a, row.expires_at_ms)),
    }
}

fn not_expired(pair: &TokenPair, now: i64) -> bool {
    pair.expires_at_ms.is_none_or(|at| at > now)
}

/// Strips anything shaped like an Anthropic token from caller-supplied text before it is
/// stored: a caller pasting a raw API error must not put a secret into the pool file.
fn scrub(text: &str) -> String {
    // One line, no control characters, and the token check on what is kept: a DEL between
    // `s` and `k-ant-` must not slip a token past the check (fuzz finding 5's lesson).
    let text: String = text
        .chars()
        .filter_map(|c| match c {
            '\n' | '\r' | '\t' => Some(' '),
            c if c.is_control() => None,
            c => Some(c),
        })
        .collect();
    crate::secret::redact_tokens(&text)
        .chars()
        .take(500)
        .collect()
}

/// Reads a store, giving a writer that rewrites it in place (truncate, then write: not
/// every tool replaces atomically) a moment to finish before calling it corrupt. hap's
/// own writes are atomic renames and never need this; an unparseable file that stays
/// unparseable for ~60 ms is reported as `STORE_CORRUPT`.
fn read_settled<T>(settle: bool, read: impl Fn() -> Result<T>) -> Result<T> {
    let mut result = read();
    let waits: &[u64] = if settle { &[5, 15, 40] } else { &[] };
    for &wait_ms in waits {
        match &result {
            Err(e) if e.status == Status::StoreCorrupt => {
                std::thread::sleep(Duration::from_millis(wait_ms));
                result = read();
            }
            _ => break,
        }
    }
    result
}

fn now_s() -> f64 {
    now_ms() as f64 / 1000.0
}

/// True when `cfg` names the default pool file (`$HERMES_HOME/auth.json`, else
/// `~/.hermes/auth.json`) and its directory does not exist: Hermes is not installed. hap
/// then works from the credentials file alone and creates nothing under `~/.hermes` (it
/// used to create the directory at the first resolve, for a user who never installed
/// Hermes: issue 10); 401/429 verdicts live in the handle's memory. An explicit
/// `pool_path` keeps its meaning: its directory is created at the first write.
pub fn default_pool_without_hermes(cfg: &Config) -> bool {
    let Some(path) = &cfg.pool_path else {
        return false;
    };
    if !cfg.pool_path_from_default {
        return false;
    }
    // Only "not there" counts: a directory hap cannot stat is an error to report, not a
    // reason to run without the pool.
    path.parent().is_some_and(|dir| {
        std::fs::metadata(dir).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
    })
}

/// The store of the login `claude_code` rows borrow: the one place it is chosen. Claude
/// Code's credentials file, or (config `credentials_store`, the default on macOS) its
/// Keychain item with the file as fallback; nothing else in pool or refresh changes.
/// With `redis_url` (issue 16), it is the fleet's Redis.
fn login_store(cfg: &Config, fleet: Option<&Arc<fleet::Fleet>>) -> Option<Arc<dyn Authority>> {
    if let Some(f) = fleet {
        return Some(f.authority());
    }
    cfg.credentials_path.clone().map(|p| {
        let file = CredentialsFile::new(p)
            .with_claude_code_lock(cfg.claude_code_lock)
            .deferring_refresh(cfg.defer_refresh_to_claude_code);
        if cfg.credentials_store.uses_keychain() {
            Arc::new(KeychainStore::new(cfg.security_program.clone(), file)) as Arc<dyn Authority>
        } else {
            Arc::new(file) as Arc<dyn Authority>
        }
    })
}

/// The id of the in-memory row that stands for the credentials file when there is no pool
/// file: stable across processes, derived from the file's path.
fn memory_row_id(login: &dyn Authority) -> String {
    fingerprint(&login.name())[7..13].to_string()
}

fn new_row_id(rows: &[Row]) -> String {
    loop {
        let id = format!("{:06x}", crate::rng::next_u64() & 0xff_ffff);
        if !rows.iter().any(|r| r.id == id) {
            return id;
        }
    }
}

impl Pool {
    /// Opens a handle. Reads and validates what exists (an unreadable store fails with
    /// `STORE_CORRUPT` instead of being started over); needs no network.
    pub fn open(mut cfg: Config) -> Result<Pool> {
        cfg.check_ranges()?;
        if default_pool_without_hermes(&cfg) {
            crate::log::debug(format_args!(
                "no Hermes directory for the default pool file: working from the credentials file alone"
            ));
            cfg.pool_path = None;
        }
        let fleet = fleet::Fleet::open(&cfg)?;
        if fleet.is_some() {
            // The fleet's login is the one credential; no file of this host holds it.
            cfg.pool_path = None;
            cfg.credentials_path = None;
        }
        let pool = Pool {
            pool_file: cfg
                .pool_path
                .clone()
                .map(|p| PoolFile::new(p, cfg.provider.clone())),
            login: login_store(&cfg, fleet.as_ref()),
            endpoint: TokenEndpoint::new(&cfg),
            view: Mutex::new(View::default()),
            flights: Flights::default(),
            counters: Counters::default(),
            rr_cursor: AtomicUsize::new(0),
            watch: OnceLock::new(),
            watch_wanted: AtomicBool::new(false),
            agent: crate::agent::client::Link::new(&cfg),
            fleet,
            cfg,
        };
        // hap agent (issue 15): a pool that defers to a running agent never reads a store.
        if pool.agent.as_ref().is_some_and(|a| a.defers_open()) {
            return Ok(pool);
        }
        drop(pool.current(false, false)?);
        Ok(pool)
    }

    pub fn open_json(config_json: Option<&str>) -> Result<Pool> {
        Pool::open(Config::from_json_str(config_json)?)
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub(crate) fn lock_view(&self) -> MutexGuard<'_, View> {
        // A panic while holding the view leaves plain data behind; the FFI boundary
        // retires the whole handle after any panic anyway.
        self.view.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn deadline(&self) -> Instant {
        Instant::now() + Duration::from_millis(self.cfg.lock_timeout_ms)
    }

    /// Takes a store's locks: `paths` as `lock_paths()` lists them (one per spelling).
    pub(crate) fn lock_file(
        &self,
        paths: &[std::path::PathBuf],
        deadline: Instant,
    ) -> Result<FileLock> {
        let mut waited = false;
        let l = FileLock::acquire_all(paths, deadline, self.cfg.lock_timeout_ms, &mut waited);
        if waited {
            bump(&self.counters.lock_waits);
        }
        l
    }

    /// The flock `held` has on the pool file, for a write of the rows inside a transaction
    /// that already holds it (a second `flock` on it would wait on ourselves).
    pub(crate) fn held_pool_lock<'a>(&self, held: &'a Held) -> Option<&'a FileLock> {
        let paths = self.pool_file.as_ref()?.lock_paths().ok()?;
        held.flock(&paths)
    }

    /// The store a row's pair lives in: the one place a row's kind picks its authority.
    /// `None` when that store is not configured.
    pub(crate) fn authority(&self, row: &Row) -> Option<Arc<dyn Authority>> {
        match row.kind() {
            Kind::Borrowed => self.login.clone(),
            Kind::Owned | Kind::Foreign => self
                .pool_file
                .as_ref()
                .map(|p| Arc::new(PoolRow::new(p.clone(), row.id.clone())) as Arc<dyn Authority>),
        }
    }

    /// The refresh transaction, with this handle as the ledger of its rows.
    fn refresher(&self) -> Refresher<'_> {
        Refresher {
            flights: &self.flights,
            endpoint: &self.endpoint,
            counters: &self.counters,
            lock_timeout_ms: self.cfg.lock_timeout_ms,
            ledger: self,
        }
    }

    /// Saves every pair of this process that no file holds yet (refresh step 7). A process
    /// about to exit calls this: `Err` names the paths that refused the pair, which is lost
    /// when the process ends. Also run when the pool is dropped.
    pub fn save_unsaved(&self) -> Result<()> {
        self.refresher().save_unsaved()
    }

    /// Forgets the cached stamps so the next look re-reads both stores.
    pub(crate) fn invalidate(&self) {
        let mut v = self.lock_view();
        v.pool_known = false;
        v.creds_known = false;
    }

    /// The current view: stat both stores, re-read what changed, and (with `sync`) bring
    /// the pool file in line with the credentials file. Returns the locked view.
    /// With `trust_watch`, a quiet store watch stands in for the two `stat` calls (see
    /// `watch.rs` for why that is safe only for serving a still-valid token).
    pub(crate) fn current(&self, sync: bool, trust_watch: bool) -> Result<MutexGuard<'_, View>> {
        if let Some(w) = self.watch.get() {
            if trust_watch && w.unchanged() {
                let v = self.lock_view();
                // A login store the watch cannot see (no file) is never vouched for.
                let watchable = matches!(v.creds_stamp, Stamp::File(_));
                if v.pool_known && v.creds_known && watchable && !(sync && v.unsynced) {
                    return Ok(v);
                }
            }
            w.begin_look();
        }
        let pool_stamp = match &self.pool_file {
            Some(p) => p.stamp()?,
            None => None,
        };
        let creds_stamp = match &self.login {
            Some(l) => l.stamp()?,
            None => Stamp::File(None),
        };
        let (fresh, had_view) = {
            let v = self.lock_view();
            let had_view = v.pool_known && v.creds_known;
            let fresh = had_view && v.pool_stamp == pool_stamp && v.creds_stamp == creds_stamp;
            if fresh && !(sync && v.unsynced) {
                return Ok(v);
            }
            (fresh, had_view)
        };
        if !fresh {
            match self.reload(!had_view) {
                Ok(()) => {}
                // A store another tool is rewriting in place (truncate, then write) parses
                // as garbage for a moment. With a view already read, keep serving it: any
                // decision that writes re-reads the store under its lock and reports the
                // corruption there, and the stamps stay old so the next call looks again.
                // A network store (the fleet's Redis) that does not answer: the same, and the
                // refresh, which cannot take its lease, fails closed (UNAVAILABLE).
                Err(e)
                    if (e.status == Status::StoreCorrupt || e.status == Status::Unavailable)
                        && had_view =>
                {
                    crate::log::debug(format_args!("{e}; serving the last good view"));
                    return Ok(self.lock_view());
                }
                Err(e) => return Err(e),
            }
        }
        if sync {
            self.sync()?;
            self.lock_view().unsynced = false;
        }
        Ok(self.lock_view())
    }

    /// Starts the store watch if it is not running and the handle has proved long-lived
    /// (`watch_wanted`). Lazily, and again after each write: a directory that does not
    /// exist yet (no pool file before the first write) cannot be watched, and stat serves
    /// until it can.
    fn ensure_watch(&self) {
        if let Some(f) = &self.fleet {
            if self.watch_wanted.load(Ordering::Relaxed) {
                f.start_watch();
            }
            return;
        }
        if self.watch.get().is_some() || !self.watch_wanted.load(Ordering::Relaxed) {
            return;
        }
        let files: Vec<std::path::PathBuf> = [
            self.pool_file.as_ref().map(|p| p.path().to_path_buf()),
            self.login.as_ref().and_then(|l| l.file()),
        ]
        .into_iter()
        .flatten()
        .collect();
        let files: Vec<&std::path::Path> = files.iter().map(|p| p.as_path()).collect();
        if let Some(w) = crate::watch::StoreWatch::start(&files) {
            crate::log::debug(format_args!("store watch started"));
            let _ = self.watch.set(w);
        }
    }

    /// Re-reads both stores (outside the view mutex) and installs what it read.
    /// `settle`: with no view to fall back on (opening), give an in-place writer a moment.
    fn reload(&self, settle: bool) -> Result<()> {
        bump(&self.counters.store_reads);
        self.ensure_watch();
        let pool_read = match &self.pool_file {
            Some(p) => Some(read_settled(settle, || p.read())?),
            None => None,
        };
        let creds_read = match &self.login {
            Some(l) => Some(read_settled(settle, || l.read_pair())?),
            None => None,
        };
        let mut v = self.lock_view();
        v.unsynced = true;
        v.creds_known = true;
        v.creds_stamp = creds_read.as_ref().map_or(Stamp::File(None), |r| r.stamp);
        v.creds_pair = creds_read.and_then(|r| r.pair);
        v.pool_known = true;
        match pool_read {
            Some(read) => {
                v.pool_stamp = read.stamp;
                v.rows = read.rows;
            }
            None => {
                // No pool file: one in-memory row stands for the credentials file, and its
                // status lives as long as this handle.
                v.pool_stamp = None;
                if let (Some(login), true) = (&self.login, v.rows.is_empty()) {
                    if v.creds_pair.is_some() {
                        v.rows.push(Row::new_borrowed(memory_row_id(&**login), 0));
                    }
                }
            }
        }
        Ok(())
    }

    /// "Resolve" step 2 (docs/SPEC.md): seed a `claude_code` row for a credentials-file login, and
    /// lift a bench from any row whose authority now holds a different token (a re-login or
    /// a sibling's rotation), at once, without waiting out the cooldown.
    fn sync(&self) -> Result<()> {
        let needs = {
            let v = self.lock_view();
            let creds_fp = v.creds_pair.as_ref().map(|p| p.access.fingerprint());
            let seed = self.cfg.adopt_external_logins
                && self.pool_file.is_some()
                && creds_fp.is_some()
                && !v.rows.iter().any(|r| r.kind() == Kind::Borrowed);
            seed || v.rows.iter().any(|r| stale_bench(r, creds_fp.as_deref()))
        };
        if !needs {
            return Ok(());
        }
        let adopt = self.cfg.adopt_external_logins;
        self.update_rows(None, |rows, creds_pair| {
            let creds_fp = creds_pair.map(|p| p.access.fingerprint());
            let mut changed = false;
            if adopt && creds_fp.is_some() && !rows.iter().any(|r| r.kind() == Kind::Borrowed) {
                let priority = rows
                    .iter()
                    .map(|r| r.priority.saturating_add(1))
                    .max()
                    .unwrap_or(0);
                let mut row = Row::new_borrowed(new_row_id(rows), priority);
                row.secret_fingerprint = creds_fp.clone();
                row.expires_at_ms = creds_pair.and_then(|p| p.expires_at_ms);
                crate::log::debug(format_args!(
                    "adopted the Claude Code login as row {}",
                    row.id
                ));
                rows.push(row);
                changed = true;
            }
            for r in rows.iter_mut() {
                if stale_bench(r, creds_fp.as_deref()) {
                    crate::log::debug(format_args!(
                        "row {}: authority holds a new token; bench lifted",
                        r.id
                    ));
                    r.clear_status();
                    r.rejected_fingerprint = None;
                    changed = true;
                }
            }
            Ok((changed, ()))
        })
    }

    /// Read-modify-write of the rows under the pool lock (or in memory when there is no
    /// pool file). `held` is the pool lock when the caller already holds it. The closure
    /// sees the freshest rows and the current credentials pair.
    pub(crate) fn update_rows<T>(
        &self,
        held: Option<&FileLock>,
        change: impl FnOnce(&mut Vec<Row>, Option<&TokenPair>) -> Result<(bool, T)>,
    ) -> Result<T> {
        match &self.pool_file {
            Some(pf) => {
                let own;
                let lock = match held {
                    Some(l) => l,
                    None => {
                        own = self.lock_file(&pf.lock_paths()?, self.deadline())?;
                        &own
                    }
                };
                // The credentials pair only informs the change (seeding, lifting a bench);
                // an unreadable credentials file must not block a pool write, which may be
                // the write-back of a refreshed owned row.
                let creds_pair = match &self.login {
                    Some(l) => l.read_pair().ok().and_then(|r| r.pair),
                    None => None,
                };
                let (read, out) = pf.update(lock, |rows| change(rows, creds_pair.as_ref()))?;
                self.ensure_watch();
                let mut v = self.lock_view();
                v.pool_known = true;
                v.pool_stamp = read.stamp;
                v.rows = read.rows;
                bump(&self.counters.store_writes);
                Ok(out)
            }
            None => {
                let mut v = self.lock_view();
                let creds_pair = v.creds_pair.clone();
                let mut rows = std::mem::take(&mut v.rows);
                let result = change(&mut rows, creds_pair.as_ref());
                v.rows = rows;
                result.map(|(_, out)| out)
            }
        }
    }

    /// Indices of selectable rows in the order the strategy wants them tried, and the
    /// earliest instant a cooling row comes back.
    fn candidates(&self, v: &mut View, only: Option<&str>) -> Result<(Vec<usize>, Option<i64>)> {
        let creds_present = v.creds_pair.is_some();
        let has_token = |r: &Row| has_token(r, creds_present);
        if let Some(id) = only {
            if !v.rows.iter().any(|r| r.id == id) {
                return Err(Error::unknown_credential(id));
            }
        }
        let sole = v.sole_live();
        let mut next_at: Option<i64> = None;
        let mut idx: Vec<usize> = Vec::new();
        for (i, r) in v.rows.iter().enumerate() {
            if only.is_some_and(|id| id != r.id) || !has_token(r) {
                continue;
            }
            match policy::available_at_ms(r, sole) {
                Availability::Available => idx.push(i),
                Availability::CoolingUntil(at) => next_at = Some(next_at.map_or(at, |n| n.min(at))),
                Availability::Dead => {}
            }
        }
        let rows = &v.rows;
        match self.cfg.strategy {
            Strategy::FillFirst => idx.sort_by_key(|&i| rows[i].priority),
            Strategy::RoundRobin => {
                idx.sort_by_key(|&i| rows[i].priority);
                if !idx.is_empty() {
                    let k = self.rr_cursor.fetch_add(1, Ordering::Relaxed) % idx.len();
                    idx.rotate_left(k);
                }
            }
            Strategy::LeastUsed => {
                let picks = &v.picks;
                idx.sort_by_key(|&i| {
                    (
                        rows[i]
                            .request_count
                            .saturating_add(picks.get(&rows[i].id).copied().unwrap_or(0)),
                        rows[i].priority,
                    )
                })
            }
            Strategy::Random => {
                for k in (1..idx.len()).rev() {
                    idx.swap(k, crate::rng::below(k as u64 + 1) as usize);
                }
            }
        }
        Ok((idx, next_at))
    }

    fn token_of(row: &Row, pair: TokenPair, refreshed: bool) -> Token {
        Token {
            access_token: pair.access,
            credential_id: row.id.clone(),
            label: row.label.clone(),
            source: row.source.clone(),
            auth_type: row.auth_type.clone(),
            expires_at_ms: pair.expires_at_ms,
            refreshed,
        }
    }

    /// docs/SPEC.md, "Resolve": sync, pick, return a valid token, refreshing when it needs it.
    pub fn resolve(&self, req: &ResolveRequest) -> Result<Token> {
        req.check()?;
        // hap agent (issue 15): the agent's answer, when the config asks for it and one answers.
        if let Some(r) = self
            .agent
            .as_ref()
            .and_then(|a| a.resolve(req, self.cfg.refresh_skew_ms))
        {
            return r;
        }
        let n = self.counters.resolves.fetch_add(1, Ordering::Relaxed) + 1;
        if n == 2 {
            // A handle that resolves twice is a long-lived one: now the store watch pays.
            self.watch_wanted.store(true, Ordering::Relaxed);
            self.ensure_watch();
        }
        let min_validity = req.min_validity_ms.unwrap_or(self.cfg.refresh_skew_ms);
        // The common case is answered from the cache without leaving the mutex. A quiet
        // store watch may vouch for the cache only when it yields a valid token; any other
        // answer is decided on a view checked with stat.
        let mut trust_watch = true;
        let (order, next_at) = loop {
            let mut v = self.current(true, trust_watch)?;
            let picked = self.candidates(&mut v, req.credential_id.as_deref());
            let (order, next_at) = match picked {
                Ok(c) => c,
                Err(_) if trust_watch => {
                    trust_watch = false;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if let Some(&i) = order.first() {
                let row = &v.rows[i];
                if let Some((access, expires_at_ms)) = token_ref(row, v.creds_pair.as_ref()) {
                    if !req.force_refresh
                        && fresh_parts(row, access, expires_at_ms, min_validity, now_ms())
                    {
                        let pair = TokenPair {
                            access: access.clone(),
                            refresh: None,
                            expires_at_ms,
                        };
                        let token = Self::token_of(row, pair, false);
                        v.note_served(&token);
                        return Ok(token);
                    }
                }
            }
            if trust_watch {
                trust_watch = false;
                continue;
            }
            let ids: Vec<String> = order.iter().map(|&i| v.rows[i].id.clone()).collect();
            break (ids, next_at);
        };
        let mut first_err: Option<Error> = None;
        for id in order {
            match self.resolve_row(&id, min_validity, req.force_refresh) {
                Ok(t) => {
                    self.lock_view().note_served(&t);
                    return Ok(t);
                }
                Err(e) => {
                    crate::log::debug(format_args!("row {id}: {e}"));
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap_or_else(|| {
            let msg = match next_at {
                Some(_) => "every credential is cooling down",
                None => "no usable credential: log in with Claude Code or add one to the pool",
            };
            Error::new(Status::NoCredential, msg).with_retry_at(next_at)
        }))
    }

    /// One row that needs more than a cached answer: serve it, or refresh it.
    fn resolve_row(&self, id: &str, min_validity: u64, force: bool) -> Result<Token> {
        let (row, pair) = {
            let v = self.current(true, false)?;
            let row = v.rows.iter().find(|r| r.id == id).cloned().ok_or_else(|| {
                Error::new(Status::NoCredential, "the credential vanished").with_credential(id)
            })?;
            let pair = pair_for(&row, v.creds_pair.as_ref()).ok_or_else(|| {
                Error::new(Status::NoCredential, "the credential has no token").with_credential(id)
            })?;
            (row, pair)
        };
        let now = now_ms();
        if !force && is_fresh(&row, &pair, min_validity, now) {
            return Ok(Self::token_of(&row, pair, false));
        }
        let authority = self.authority(&row);
        // A store someone else refreshes (a fleet consumer holds no refresh token) still
        // goes to the refresher, which serves it or says who refreshes it.
        let deferred = authority
            .as_ref()
            .is_some_and(|a| a.refresh_deferred().is_some());
        let refreshable =
            row.is_oauth() && row.kind() != Kind::Foreign && (pair.refresh.is_some() || deferred);
        if !refreshable {
            if not_expired(&pair, now) && !is_rejected(&row, &pair) {
                return Ok(Self::token_of(&row, pair, false));
            }
            return Err(Error::new(
                Status::NoCredential,
                "the credential's token has expired and hap cannot refresh it",
            )
            .with_credential(id));
        }
        let Some(authority) = authority else {
            return Err(Error::internal("a row whose store is not configured").with_credential(id));
        };
        match self
            .refresher()
            .refresh(authority, &row, &pair, force, min_validity)
        {
            Ok(out) => {
                if is_rejected(&row, &pair) && out.pair.access != pair.access {
                    self.note_retry(id, &out.pair);
                }
                Ok(Self::token_of(&row, out.pair, out.refreshed))
            }
            // docs/SPEC.md, "Resolve" step 5: a failed refresh still serves an unexpired token.
            Err(e)
                if not_expired(&pair, now_ms())
                    && !is_rejected(&row, &pair)
                    && e.status != Status::Internal =>
            {
                crate::log::debug(format_args!(
                    "row {id}: refresh failed ({}); serving the unexpired token",
                    e.status.name()
                ));
                Ok(Self::token_of(&row, pair, false))
            }
            Err(e) => Err(e.with_credential(id)),
        }
    }

    /// Marks `pair` as the token a refresh produced in answer to a reported 401: a 401 on
    /// it benches the row (see `report_failure`). Best effort: the pair is already safe in
    /// its store, and a lost marker costs one more refresh at the next 401.
    fn note_retry(&self, id: &str, pair: &TokenPair) {
        let fp = Some(pair.access.fingerprint());
        let result = self.update_rows(None, |rows, _| {
            let Some(r) = rows.iter_mut().find(|r| r.id == id) else {
                return Ok((false, ()));
            };
            let changed = r.retried_fingerprint != fp;
            r.retried_fingerprint = fp.clone();
            Ok((changed, ()))
        });
        if let Err(e) = result {
            crate::log::debug(format_args!(
                "row {id}: 401 retry marker not written: {}",
                e.status.name()
            ));
        }
    }

    /// docs/SPEC.md, "Reporting a failure": what a caller saw when it used a token.
    pub fn report_failure(&self, f: &Failure) -> Result<FailureOutcome> {
        f.check()?;
        // hap agent (issue 15): see `resolve`.
        if let Some(r) = self.agent.as_ref().and_then(|a| a.report_failure(f)) {
            return r;
        }
        let (row, served) = {
            let v = self.current(true, false)?;
            let row = v
                .rows
                .iter()
                .find(|r| r.id == f.credential_id)
                .cloned()
                .ok_or_else(|| Error::unknown_credential(&f.credential_id))?;
            let served =
                v.served.get(&row.id).map(Secret::fingerprint).or_else(|| {
                    pair_for(&row, v.creds_pair.as_ref()).map(|p| p.access.fingerprint())
                });
            (row, served)
        };
        let id = row.id.clone();
        let reason = f.reason.as_deref().map(str::trim).filter(|r| !r.is_empty());
        let terminal = reason.is_some_and(policy::is_terminal_reason);
        let served_fp = served;
        let now = now_s();

        if !terminal && f.status_code == 401 && row.is_oauth() && row.kind() != Kind::Foreign {
            // Not a bench: first ask the authority whether a sibling already rotated.
            let fresh = self.read_authority_pair(&row)?;
            if let (Some(fresh), Some(served_fp)) = (&fresh, &served_fp) {
                if &fresh.access.fingerprint() != served_fp {
                    bump(&self.counters.refresh_adopted);
                    self.invalidate();
                    return Ok(FailureOutcome {
                        credential_id: id,
                        last_status: "ok",
                        available_at_ms: None,
                    });
                }
            }
            // A first 401 on any token gets one refresh; only a 401 on the token that refresh
            // produced benches the row. (Judging by time instead, "a 401 within 60 s of a
            // refresh", benched the only credential for a minute whenever the API refused a
            // token that a refresh for an expired login had just produced: issue 10.)
            let second = served_fp.is_some() && row.retried_fingerprint == served_fp;
            if !second {
                self.update_rows(None, |rows, _| {
                    let Some(r) = rows.iter_mut().find(|r| r.id == id) else {
                        return Ok((false, ()));
                    };
                    r.rejected_fingerprint = served_fp.clone();
                    r.last_error_code = Some(401);
                    r.last_error_reason = reason.map(scrub);
                    r.last_error_message = f.message.as_deref().map(scrub);
                    Ok((true, ()))
                })?;
                return Ok(FailureOutcome {
                    credential_id: id,
                    last_status: "refresh_pending",
                    available_at_ms: None,
                });
            }
            // The token a refresh produced for a 401 is refused too: bench it (below).
        }

        let status = if terminal {
            policy::STATUS_DEAD
        } else {
            policy::STATUS_EXHAUSTED
        };
        let reset_at = f.reset_at_s.or(f.retry_after_s.map(|s| now + s));
        let row_after = self.update_rows(None, |rows, _| {
            let Some(r) = rows.iter_mut().find(|r| r.id == id) else {
                return Ok((false, None));
            };
            r.last_status = Some(status.to_string());
            r.last_status_at = Some(now);
            r.last_error_code = Some(f.status_code as i64);
            r.last_error_reason = reason.map(scrub);
            r.last_error_message = f.message.as_deref().map(scrub);
            r.last_error_reset_at = if terminal { None } else { reset_at };
            // Remember which token was benched: a different one at the authority lifts it.
            if served_fp.is_some() {
                r.secret_fingerprint = served_fp.clone();
            }
            // A refused token is not served again when the bench ends: it is refreshed.
            if f.status_code == 401 && !terminal {
                r.rejected_fingerprint = served_fp.clone();
            }
            Ok((true, Some(r.clone())))
        })?;
        let available_at_ms = match (terminal, row_after) {
            (false, Some(r)) => {
                let sole = self.lock_view().sole_live();
                match policy::available_at_ms(&r, sole) {
                    Availability::CoolingUntil(at) => Some(at),
                    _ => Some(now_ms()),
                }
            }
            _ => None,
        };
        Ok(FailureOutcome {
            credential_id: id,
            last_status: status,
            available_at_ms,
        })
    }

    /// The pair the row's authority holds right now, read from disk whatever the cache says.
    pub(crate) fn read_authority_pair(&self, row: &Row) -> Result<Option<TokenPair>> {
        match self.authority(row) {
            Some(a) => Ok(a.read_pair()?.pair),
            None => Ok(None),
        }
    }

    /// A snapshot with no side effects and no secrets, as the JSON `hap_pool_status` returns
    /// (the keys of [`PoolStatus`], in its field order).
    pub fn status(&self) -> Result<Value> {
        // hap agent (issue 15): see `resolve`.
        if let Some(r) = self.agent.as_ref().and_then(|a| a.status()) {
            return r;
        }
        Ok(serde_json::to_value(self.pool_status()?).expect("plain strings and numbers serialize"))
    }

    /// A snapshot with no side effects and no secrets, typed. (A pool that defers to the
    /// agent answers `status` through it; this typed view is always the local one.)
    pub fn pool_status(&self) -> Result<PoolStatus> {
        let v = self.current(false, false)?;
        let sole = v.sole_live();
        let credentials = v
            .rows
            .iter()
            .map(|r| {
                let pair = pair_for(r, v.creds_pair.as_ref());
                let availability = policy::available_at_ms(r, sole);
                let pending = pair.as_ref().is_some_and(|p| is_rejected(r, p));
                // A benched row keeps its bench in view; its refusal marker only says that the
                // refused token is refreshed, not served, once the bench ends.
                let benched = matches!(
                    r.last_status.as_deref(),
                    Some(policy::STATUS_DEAD) | Some(policy::STATUS_EXHAUSTED)
                );
                let last_status = if pending && !benched {
                    Some("refresh_pending".to_string())
                } else {
                    r.last_status.clone()
                };
                CredentialStatus {
                    credential_id: r.id.clone(),
                    label: r.label.clone(),
                    source: r.source.clone(),
                    auth_type: r.auth_type.clone(),
                    priority: r.priority,
                    last_status,
                    available: pair.is_some() && availability == Availability::Available,
                    available_at_ms: match availability {
                        Availability::CoolingUntil(at) => Some(at),
                        _ => None,
                    },
                    expires_at_ms: pair.as_ref().and_then(|p| p.expires_at_ms),
                    has_token: pair.is_some(),
                    last_error_code: r.last_error_code,
                    last_error_reason: r.last_error_reason.clone(),
                    request_count: r
                        .request_count
                        .saturating_add(v.picks.get(&r.id).copied().unwrap_or(0)),
                }
            })
            .collect();
        let c = &self.counters;
        let path =
            |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.to_string_lossy().into_owned());
        Ok(PoolStatus {
            provider: self.cfg.provider.clone(),
            pool_path: path(&self.cfg.pool_path),
            credentials_path: path(&self.cfg.credentials_path),
            strategy: self.cfg.strategy.as_str().to_string(),
            credentials,
            counters: PoolCounters {
                resolves: c.resolves.load(Ordering::Relaxed),
                refresh_posts: c.refresh_posts.load(Ordering::Relaxed),
                refresh_adopted: c.refresh_adopted.load(Ordering::Relaxed),
                journal_recoveries: c.journal_recoveries.load(Ordering::Relaxed),
                lock_waits: c.lock_waits.load(Ordering::Relaxed),
                store_reads: c.store_reads.load(Ordering::Relaxed),
                store_writes: c.store_writes.load(Ordering::Relaxed),
            },
        })
    }
}

/// What a refresh does to the rows (the refresh transaction knows the pool only as this).
impl RowLedger for Pool {
    fn mark_ok(&self, row_id: &str, pair: &TokenPair, held: &Held) {
        let now = now_s();
        let fp = pair.access.fingerprint();
        let result = self.update_rows(self.held_pool_lock(held), |rows, _| {
            let Some(r) = rows.iter_mut().find(|r| r.id == row_id) else {
                return Ok((false, ()));
            };
            r.expires_at_ms = pair.expires_at_ms;
            r.clear_status();
            r.last_status = Some(policy::STATUS_OK.into());
            r.last_status_at = Some(now);
            r.secret_fingerprint = Some(fp.clone());
            r.rejected_fingerprint = None;
            Ok((true, ()))
        });
        // The pair is already safe in its store; a pool file we cannot update only loses a
        // status line, so the refresh does not fail for it.
        if let Err(e) = result {
            crate::log::debug(format_args!(
                "row {row_id}: status not written: {}",
                e.status.name()
            ));
        }
    }

    fn mark_dead(&self, row_id: &str, code: &str, token_fp: Option<String>) -> Result<()> {
        let now = now_s();
        self.update_rows(None, |rows, _| {
            let Some(r) = rows.iter_mut().find(|r| r.id == row_id) else {
                return Ok((false, ()));
            };
            r.last_status = Some(policy::STATUS_DEAD.into());
            r.last_status_at = Some(now);
            r.last_error_code = Some(400);
            r.last_error_reason = Some(code.to_string());
            r.last_error_message = Some("refresh token rejected; log in again".into());
            r.last_error_reset_at = None;
            if token_fp.is_some() {
                r.secret_fingerprint = token_fp.clone();
            }
            Ok((true, ()))
        })
    }

    fn invalidate(&self) {
        Pool::invalidate(self)
    }
}

/// A pool dropped with a pair no file took tries once more to save it (a host that calls
/// `hap_pool_free` right after a refresh on a full disk).
impl Drop for Pool {
    fn drop(&mut self) {
        if self.flights.has_unsaved() {
            if let Err(e) = self.save_unsaved() {
                crate::log::debug(format_args!("closing with an unsaved pair: {e}"));
            }
        }
    }
}

/// What `hap_pool_status` returns (docs/ABI.md, "status"): no token, no fingerprint.
/// Serializes to exactly that JSON, keys in field order.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PoolStatus {
    pub provider: String,
    pub pool_path: Option<String>,
    pub credentials_path: Option<String>,
    /// `fill_first`, `round_robin`, `random` or `least_used`.
    pub strategy: String,
    pub credentials: Vec<CredentialStatus>,
    pub counters: PoolCounters,
}

/// One credential of a [`PoolStatus`].
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CredentialStatus {
    pub credential_id: String,
    pub label: String,
    pub source: String,
    pub auth_type: String,
    pub priority: i64,
    /// `ok`, `refresh_pending`, `exhausted`, `dead`, or none yet.
    pub last_status: Option<String>,
    pub available: bool,
    pub available_at_ms: Option<i64>,
    pub expires_at_ms: Option<i64>,
    pub has_token: bool,
    pub last_error_code: Option<i64>,
    pub last_error_reason: Option<String>,
    pub request_count: u64,
}

/// This handle's counters since it was opened.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct PoolCounters {
    pub resolves: u64,
    pub refresh_posts: u64,
    pub refresh_adopted: u64,
    pub journal_recoveries: u64,
    pub lock_waits: u64,
    pub store_reads: u64,
    pub store_writes: u64,
}

/// A bench (exhausted or dead, or a 401 marker) that no longer applies because the row's
/// authority now holds a token other than the one that was benched.
fn stale_bench(r: &Row, creds_fp: Option<&str>) -> bool {
    let benched = matches!(
        r.last_status.as_deref(),
        Some(policy::STATUS_EXHAUSTED) | Some(policy::STATUS_DEAD)
    );
    if !benched {
        return false;
    }
    let current = match r.kind() {
        Kind::Borrowed => creds_fp.map(str::to_string),
        Kind::Owned | Kind::Foreign => r.access_token.as_ref().map(|t| t.fingerprint()),
    };
    // Hermes' own claude_code rows carry the token itself instead of a fingerprint.
    // A fingerprint in another format (another tool's) says nothing we can compare.
    let benched_fp = r
        .secret_fingerprint
        .clone()
        .filter(|fp| fp.len() == 23 && fp.starts_with("sha256:"))
        .or_else(|| match r.kind() {
            Kind::Borrowed => r.access_token.as_ref().map(|t| t.fingerprint()),
            _ => None,
        });
    match (current, benched_fp) {
        (Some(cur), Some(old)) => cur != old,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::{pair, MemoryStore};

    /// A login store no file stamp can watch (a Keychain item, a network service) needs no
    /// special case here: its `Stamp::Unknown` never matches, so every call re-reads it.
    #[test]
    fn a_login_store_without_a_file_stamp_is_re_read_at_every_call() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config::from_json_str(Some(
            r#"{"credentials_path": null, "pool_path": null, "token_urls": ["http://127.0.0.1:9/t"]}"#,
        ))
        .unwrap();
        let mut pool = Pool::open(cfg).unwrap();
        let later = now_ms() + 3_600_000;
        let store = MemoryStore::new(
            &dir,
            pair("sk-ant-oat01-fake-k1", "sk-ant-ort01-fake-k1", later),
        );
        pool.login = Some(store.clone());
        pool.invalidate();
        let req = ResolveRequest::default();
        let token = |pool: &Pool| {
            pool.resolve(&req)
                .unwrap()
                .access_token
                .expose()
                .to_string()
        };
        assert_eq!(token(&pool), "sk-ant-oat01-fake-k1");
        assert_eq!(token(&pool), "sk-ant-oat01-fake-k1");
        for n in 2..5 {
            let t = format!("sk-ant-oat01-fake-k{n}");
            store.set(pair(&t, &format!("sk-ant-ort01-fake-k{n}"), later));
            assert_eq!(token(&pool), t);
        }
    }
}
