//! The refresh transaction of docs/SPEC.md: exactly one POST per rotation, machine-wide, and
//! once the token server has answered, the new pair is never dropped.
//!
//! Read this file top to bottom; it is the whole story.
//!
//! 1. In-process single flight: one refresh per grant at a time; other threads wait for the
//!    leader's result on a condvar (no mutex is held across network I/O or a lock wait).
//! 2. Cross-process: take the authority's locks: `.credentials.lock`, then Claude Code's
//!    `.oauth_refresh.lock` and `~/.claude.lock` directories (if enabled) for the
//!    credentials file; `auth.lock` for a row that owns its tokens. Bounded by
//!    `lock_timeout_ms`.
//! 3. Re-read the authority. A different access token, valid long enough, means a sibling
//!    refreshed while we waited: adopt it, no POST. A pair of this process that no file
//!    took yet (step 7) is saved again and served.
//! 4. The journal: an entry holding a pair the store lacks (never committed: a crash
//!    between journal and store; or rotated past the store's token: the store was rolled
//!    back) is committed instead of POSTing, and served if it is fresh; a stale one is
//!    refreshed from. A refresh token counts as spent only when the server answered with a
//!    different one: a server that does not rotate keeps it valid (issue 10, item 3, where
//!    the committed entry of such a server was "replayed" forever, an expired token served
//!    with status OK). A spent token with no entry is never replayed.
//! 5. Before the POST, the journal records it (`posts`). That write is the check that the
//!    journal can be written at all: if it cannot (disk full, directory not writable),
//!    nothing is POSTed, the refresh token stays unspent and the caller gets the error.
//! 6. POST (see `oauth.rs` for URL fallback, redirects, size rules and the deadline).
//! 7. Success: journal (fsync) -> write the authority -> mark the row ok -> commit. If the
//!    journal cannot be written now (the disk filled during the POST), the pair goes to the
//!    authority directly; if that fails too, it stays in this process's memory, is served,
//!    and every later call (and closing the pool) tries to save it again. A one-shot process
//!    calls [`Pool::save_unsaved`] before it exits and fails loudly, naming the paths, if
//!    the pair is still nowhere (issue 10, item 1: a `?` here once dropped the only copy).
//! 8. `invalid_grant`: record the token as spent, release the locks and watch the authority
//!    for up to 3 s: an outside writer (an older Claude Code that takes no lock) may have
//!    spent our token and be about to write its pair. Adopt it, or retry once with its
//!    refresh token. Otherwise the row is `dead` and the caller gets `REAUTH_REQUIRED`. The
//!    credentials file is never written on this path.
//! 9. Transient failures (429, 5xx, timeouts, bad bodies): a back-off shared through the
//!    journal, so no process POSTs again inside it; `UNAVAILABLE` with `retry_at_ms`.
//!
//! ## Possibly spent
//!
//! A POST whose answer was never read may have spent its refresh token at the server: a
//! timeout after the request went out, a connection lost mid-answer, a 200 without a usable
//! token, or a process killed mid-POST (its record from step 5 stays behind). Its record in
//! the journal's `posts` is the "possibly spent" marker, and the rule is (issue 10, item 2;
//! the Claude Code interop reuses it):
//!
//! - until `INVALID_GRANT_WATCH` (3 s) has passed since the marker was written, no process
//!   POSTs that refresh token: each releases the locks and watches the store for a pair
//!   someone adopted, as after `invalid_grant` (step 8);
//! - after it, one retry POST is allowed: if the token was spent, the grant is gone either
//!   way, and the server's `invalid_grant` then ends it without a second watch;
//! - the marker ends when the store shows a different refresh token or that retry's
//!   answer is read (a retry that goes unanswered too leaves a marker of its own).
//!
//! What nothing covers: a process killed between the server's answer and step 7's journal
//! fsync. Its marker tells siblings the token is possibly spent; the pair itself is lost.

/// The token endpoint: one POST, its deadline, URL fallback and how an answer is read.
pub mod oauth;
/// `defer_refresh_to_claude_code`: Claude Code owns its login; hap never POSTs on it.
mod owned;

use crate::clock::now_ms;
use crate::credentials::{Issued, TokenPair};
use crate::error::{Error, Result, Status};
use crate::journal::{Entry, Journal, JournalDoc, Post};
use crate::lock::{ClaudeLocks, FileLock};
use crate::oauth::RefreshError;
use crate::pool::{is_fresh, pair_for, Pool};
use crate::pool_file::{Kind, Row};
use crate::{fault, log, policy};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long to watch the authority after `invalid_grant`, or after a possibly spent POST,
/// for a pair someone else writes.
const INVALID_GRANT_WATCH: Duration = Duration::from_secs(3);
const WATCH_MS: i64 = INVALID_GRANT_WATCH.as_millis() as i64;
const WATCH_POLL: Duration = Duration::from_millis(50);

/// The result of a refresh: the pair to serve, and whether this call's own POST made it.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub pair: TokenPair,
    pub refreshed: bool,
}

type Shared = Option<Result<TokenPair>>;

#[derive(Default)]
struct Flight {
    done: Mutex<Shared>,
    cv: Condvar,
}

/// A pair the token endpoint issued that no file holds: the journal and the authority both
/// refused it (step 7). Served from memory and saved again at every later call.
#[derive(Clone)]
struct Unsaved {
    authority: Authority,
    row_id: String,
    /// Fingerprint of the refresh token the POST spent: while the store holds that token,
    /// this pair is the login.
    replaced: String,
    pair: TokenPair,
    issued: Issued,
    entry: Entry,
    /// What failed, paths included, for the error of a process about to exit.
    why: String,
}

/// In-flight refreshes of this process, by grant, and pairs still on their way to disk.
#[derive(Default)]
pub struct Flights {
    flights: Mutex<HashMap<String, Arc<Flight>>>,
    unsaved: Mutex<HashMap<String, Unsaved>>,
}

/// Publishes the leader's result and retires the flight even if the leader panics, so
/// followers never wait forever.
struct Leading<'a> {
    flights: &'a Flights,
    key: String,
    flight: Arc<Flight>,
}

impl Leading<'_> {
    fn finish(&self, result: Result<TokenPair>) {
        let mut d = self.flight.done.lock().unwrap_or_else(|p| p.into_inner());
        if d.is_none() {
            *d = Some(result);
        }
        self.flight.cv.notify_all();
    }
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        self.finish(Err(Error::internal("the refreshing thread failed")));
        let mut map = self
            .flights
            .flights
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if map
            .get(&self.key)
            .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
        {
            map.remove(&self.key);
        }
    }
}

/// Where a row's tokens live, and so which locks and journal guard a refresh of it.
#[derive(Clone)]
enum Authority {
    Credentials,
    PoolRow(String),
}

/// Locks held for one transaction; dropped in reverse order of taking.
struct Held {
    pool: Option<FileLock>,
    _refresh_dir: Option<ClaudeLocks>,
    _creds: Option<FileLock>,
}

const GRANT_CREDENTIALS: &str = "credentials";

impl Pool {
    fn authority(row: &Row) -> Authority {
        match row.kind() {
            Kind::Borrowed => Authority::Credentials,
            _ => Authority::PoolRow(row.id.clone()),
        }
    }

    fn grant_key(&self, a: &Authority) -> String {
        match a {
            Authority::Credentials => GRANT_CREDENTIALS.to_string(),
            Authority::PoolRow(id) => format!("{}/{id}", self.cfg.provider),
        }
    }

    fn journal(&self, a: &Authority) -> Result<Journal> {
        // Keyed on the file the store path resolves to: a symlink and its target are one
        // store with one journal (issue 10, item 12).
        let store = match a {
            Authority::Credentials => self.creds.as_ref().map(|c| c.target()),
            Authority::PoolRow(_) => self.pool_file.as_ref().map(|p| p.target()),
        };
        store
            .ok_or_else(|| Error::internal("refresh of a row without an authority"))?
            .map(|s| Journal::for_store(&s))
    }

    /// Step 1: in-process single flight around the transaction.
    pub(crate) fn refresh(
        &self,
        row: &Row,
        stale: &TokenPair,
        force: bool,
        min_validity: u64,
    ) -> Result<Outcome> {
        let authority = Self::authority(row);
        let key = self.grant_key(&authority);
        let (flight, leader) = {
            let mut map = self
                .flights
                .flights
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            match map.get(&key) {
                Some(f) => (f.clone(), false),
                None => {
                    let f = Arc::new(Flight::default());
                    map.insert(key.clone(), f.clone());
                    (f, true)
                }
            }
        };
        if !leader {
            let mut d = flight.done.lock().unwrap_or_else(|p| p.into_inner());
            while d.is_none() {
                d = flight.cv.wait(d).unwrap_or_else(|p| p.into_inner());
            }
            let shared = d.as_ref().expect("set").clone();
            return shared.map(|pair| Outcome {
                pair,
                refreshed: false,
            });
        }
        let leading = Leading {
            flights: &self.flights,
            key,
            flight,
        };
        let result = self.transaction(
            &authority,
            &leading.key,
            row,
            stale,
            force,
            min_validity,
            true,
        );
        leading.finish(
            result
                .as_ref()
                .map(|o| o.pair.clone())
                .map_err(Clone::clone),
        );
        drop(leading);
        result
    }

    /// Step 2: the authority's locks, in the one order every hap process uses
    /// (credentials lock, Claude Code's directory, then the pool lock), so no two deadlock.
    fn take_locks(&self, a: &Authority) -> Result<Held> {
        let deadline = self.deadline();
        match a {
            Authority::Credentials => {
                let creds = self
                    .creds
                    .as_ref()
                    .expect("borrowed rows need a credentials file");
                let l = self.lock_file(&creds.lock_paths()?, deadline)?;
                let dir = if self.cfg.claude_code_lock {
                    let mut waited = false;
                    let d = ClaudeLocks::acquire(
                        &creds.refresh_lock_dirs(),
                        deadline,
                        self.cfg.lock_timeout_ms,
                        &mut waited,
                    );
                    if waited {
                        self.counters.lock_waits.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(d?)
                } else {
                    None
                };
                Ok(Held {
                    pool: None,
                    _refresh_dir: dir,
                    _creds: Some(l),
                })
            }
            Authority::PoolRow(_) => {
                let pf = self
                    .pool_file
                    .as_ref()
                    .expect("owned rows live in a pool file");
                Ok(Held {
                    pool: Some(self.lock_file(&pf.lock_paths()?, deadline)?),
                    _refresh_dir: None,
                    _creds: None,
                })
            }
        }
    }

    /// Writes the new pair to the authority and marks the row fresh, in the pool file too.
    fn commit_pair(
        &self,
        a: &Authority,
        held: &Held,
        row_id: &str,
        pair: &TokenPair,
        issued: &Issued,
    ) -> Result<()> {
        if let Authority::Credentials = a {
            self.creds
                .as_ref()
                .expect("credentials authority")
                .write_pair(pair, issued)?;
            fault::point("after_store_write");
        }
        let owned = matches!(a, Authority::PoolRow(_));
        let now_s = now_ms() as f64 / 1000.0;
        let fp = pair.access.fingerprint();
        let result = self.update_rows(held.pool.as_ref(), |rows, _| {
            let Some(r) = rows.iter_mut().find(|r| r.id == row_id) else {
                return Ok((false, ()));
            };
            if owned {
                r.access_token = Some(pair.access.clone());
                r.refresh_token = pair.refresh.clone();
            }
            r.expires_at_ms = pair.expires_at_ms;
            r.clear_status();
            r.last_status = Some(policy::STATUS_OK.into());
            r.last_status_at = Some(now_s);
            r.secret_fingerprint = Some(fp.clone());
            r.rejected_fingerprint = None;
            Ok((true, ()))
        });
        match result {
            Ok(()) => {}
            // The pair is already safe in the authority (credentials file); a pool file we
            // cannot update only loses a status line, so do not fail the refresh for it.
            Err(e) if !owned => log::debug(format_args!(
                "row {row_id}: status not written: {}",
                e.status.name()
            )),
            Err(e) => return Err(e),
        }
        if !owned {
            fault::point("after_pool_write");
        }
        self.invalidate();
        Ok(())
    }

    fn store_path(&self, a: &Authority) -> Option<PathBuf> {
        match a {
            Authority::Credentials => self.creds.as_ref().map(|c| c.path().to_path_buf()),
            Authority::PoolRow(_) => self.pool_file.as_ref().map(|p| p.path().to_path_buf()),
        }
    }

    /// The pair the authority holds for `row_id` right now.
    fn read_pair(&self, a: &Authority, row_id: &str) -> Result<Option<TokenPair>> {
        match a {
            Authority::Credentials => match &self.creds {
                Some(c) => Ok(c.read()?.and_then(|r| r.pair)),
                None => Ok(None),
            },
            Authority::PoolRow(_) => match &self.pool_file {
                Some(p) => Ok(p
                    .read()?
                    .rows
                    .iter()
                    .find(|r| r.id == row_id)
                    .and_then(|r| pair_for(r, None))),
                None => Ok(None),
            },
        }
    }

    fn unsaved(&self, key: &str) -> Option<Unsaved> {
        let map = self
            .flights
            .unsaved
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.get(key).cloned()
    }

    fn forget_unsaved(&self, key: &str) {
        let mut map = self
            .flights
            .unsaved
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.remove(key);
    }

    /// This process's unsaved pair for the grant, when it is fresh enough to serve.
    fn fresh_unsaved(&self, key: &str, row: &Row, min_validity: u64) -> Option<Outcome> {
        let u = self.unsaved(key)?;
        is_fresh(row, &u.pair, min_validity, now_ms()).then_some(Outcome {
            pair: u.pair,
            refreshed: false,
        })
    }

    /// Tries again to put an unsaved pair into the journal and the authority (locks held).
    /// Either one is enough: the journal is replayed by whoever reads it next.
    fn save_locked(&self, key: &str, held: &Held, u: &Unsaved) -> Result<()> {
        let journal = self.journal(&u.authority)?;
        let journalled = journal.read().and_then(|mut doc| {
            if !doc.entries.iter().any(|e| e.id == u.entry.id) {
                doc.entries.push(u.entry.clone());
            }
            doc.posts.retain(|p| p.grant != key);
            journal.write(&mut doc)
        });
        let stored = self.commit_pair(&u.authority, held, &u.row_id, &u.pair, &u.issued);
        match (&journalled, &stored) {
            (Err(je), Err(se)) => {
                let why = unsaved_why(
                    journal.path(),
                    je,
                    self.store_path(&u.authority).as_deref(),
                    se,
                );
                let mut map = self
                    .flights
                    .unsaved
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if let Some(x) = map.get_mut(key) {
                    x.why = why.clone();
                }
                Err(Error::new(se.status, why))
            }
            _ => {
                log::debug(format_args!("row {}: the unsaved pair is saved", u.row_id));
                self.forget_unsaved(key);
                Ok(())
            }
        }
    }

    /// Saves every pair of this process that no file holds yet (step 7). A process about to
    /// exit calls this: `Err` names the paths that refused the pair, which is lost when the
    /// process ends. Also run when the pool is dropped.
    pub fn save_unsaved(&self) -> Result<()> {
        let pending: Vec<(String, Unsaved)> = {
            let map = self
                .flights
                .unsaved
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            map.iter().map(|(k, u)| (k.clone(), u.clone())).collect()
        };
        let mut first_err = None;
        for (key, u) in pending {
            let result = self.take_locks(&u.authority).and_then(|held| {
                let store = self.read_pair(&u.authority, &u.row_id)?;
                let holds_replaced = store
                    .as_ref()
                    .and_then(|p| p.refresh.as_ref())
                    .is_some_and(|r| r.fingerprint() == u.replaced);
                if holds_replaced {
                    self.save_locked(&key, &held, &u)
                } else {
                    // The store moved on (our pair, a new login): nothing left to save.
                    self.forget_unsaved(&key);
                    Ok(())
                }
            });
            if let Err(e) = result {
                let why = self.unsaved(&key).map_or(u.why.clone(), |x| x.why);
                let msg = if e.message == why {
                    why
                } else {
                    format!("{why}; retrying: {}", e.message)
                };
                first_err.get_or_insert(
                    Error::new(
                        Status::Io,
                        format!(
                            "the token endpoint issued a new login but hap could not save it \
                             ({msg}); it is lost when this process exits: free space or fix \
                             permissions there, then log in again if hap asks"
                        ),
                    )
                    .with_credential(&u.row_id),
                );
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    #[allow(clippy::too_many_arguments)]
    fn transaction(
        &self,
        a: &Authority,
        key: &str,
        row: &Row,
        stale: &TokenPair,
        force: bool,
        min_validity: u64,
        may_retry: bool,
    ) -> Result<Outcome> {
        // Claude Code owns its login (`owned.rs`): no lock, no journal, no POST.
        if self.cfg.defer_refresh_to_claude_code && matches!(a, Authority::Credentials) {
            return self.claude_code_owned(row, stale, force);
        }
        // An unsaved pair of this process is served whatever else fails before it is saved.
        let or_unsaved = |e: Error| match self.fresh_unsaved(key, row, min_validity) {
            Some(o) => Ok(o),
            None => Err(e),
        };
        // A back-off learnt earlier: no lock, no I/O, no POST until it ends.
        if let Some(&until) = self.lock_view().backoff_until.get(key) {
            if until > now_ms() {
                return or_unsaved(unavailable(until, "the token endpoint is backing off"));
            }
        }

        let held = match self.take_locks(a) {
            Ok(h) => h,
            Err(e) => return or_unsaved(e),
        };

        // Step 3: re-read; save an unsaved pair; adopt a sibling's rotation.
        let read = match self.read_authority_pair(row) {
            Ok(r) => r,
            Err(e) => return or_unsaved(e),
        };
        let store_pair = read.ok_or_else(|| {
            Error::new(
                Status::ReauthRequired,
                "the login is gone from its store: log in again",
            )
            .with_credential(&row.id)
        })?;
        let mut current = store_pair.clone();
        if let Some(u) = self.unsaved(key) {
            let holds_replaced = current
                .refresh
                .as_ref()
                .is_some_and(|r| r.fingerprint() == u.replaced);
            if holds_replaced {
                if let Err(e) = self.save_locked(key, &held, &u) {
                    log::debug(format_args!("row {}: still unsaved: {e}", row.id));
                }
                if is_fresh(row, &u.pair, min_validity, now_ms()) {
                    return Ok(Outcome {
                        pair: u.pair,
                        refreshed: false,
                    });
                }
                // Due for a refresh itself: from its refresh token, the only valid one.
                current = u.pair;
            } else {
                self.forget_unsaved(key);
            }
        }
        let rotated = current.access != stale.access;
        if rotated && is_fresh(row, &current, min_validity, now_ms()) {
            self.counters
                .refresh_adopted
                .fetch_add(1, Ordering::Relaxed);
            log::debug(format_args!("row {}: adopted a sibling's rotation", row.id));
            self.invalidate();
            return Ok(Outcome {
                pair: current,
                refreshed: false,
            });
        }
        if !force && !rotated && is_fresh(row, &current, min_validity, now_ms()) {
            return Ok(Outcome {
                pair: current,
                refreshed: false,
            });
        }

        // Step 4: the journal.
        let journal = self.journal(a)?;
        let mut doc = journal.read()?;
        let mut dirty = doc.settle(key, &store_pair);
        // Follow the rotations the store missed: one entry, or a chain of rotated ones.
        let mut replayed: Option<Entry> = None;
        for _ in 0..doc.entries.len() {
            let Some(e) = doc.replayable(key, &current).cloned() else {
                break;
            };
            current = e.pair();
            let rotated = e.rotated();
            replayed = Some(e);
            if !rotated {
                break;
            }
        }
        if let Some(entry) = replayed {
            log::debug(format_args!(
                "row {}: committing a journalled pair instead of POSTing",
                row.id
            ));
            let pair = current.clone();
            match self.commit_pair(
                a,
                &held,
                &row.id,
                &pair,
                &Issued::scopes(entry.scopes.clone()),
            ) {
                Ok(()) => {
                    if let Some(e) = doc.entries.iter_mut().find(|e| e.id == entry.id) {
                        e.committed = true;
                    }
                    dirty = true;
                }
                // It is durable in the journal: served from there until a write works.
                Err(e) => log::debug(format_args!(
                    "row {}: journalled pair not committed: {}",
                    row.id,
                    e.status.name()
                )),
            }
            self.counters
                .journal_recoveries
                .fetch_add(1, Ordering::Relaxed);
            if is_fresh(row, &pair, min_validity, now_ms()) {
                if dirty {
                    let _ = journal.write(&mut doc);
                }
                return Ok(Outcome {
                    pair,
                    refreshed: false,
                });
            }
            // Replayed but due for a refresh: refresh from the replayed pair's token.
        }
        let Some(refresh_token) = current.refresh.clone() else {
            return Err(Error::new(
                Status::ReauthRequired,
                "the store holds no refresh token: log in again",
            ));
        };
        let token_fp = refresh_token.fingerprint();
        if doc.is_spent(&token_fp) {
            if dirty {
                let _ = journal.write(&mut doc);
            }
            drop(held);
            return self.after_invalid_grant(
                a,
                key,
                row,
                &current,
                force,
                min_validity,
                may_retry,
                true,
                "a spent refresh token",
            );
        }
        if let Some(b) = doc.backoff.get(key) {
            let now = now_ms();
            // A clock set back must not stretch a back-off past its longest.
            let until = b
                .until_ms
                .min(now.saturating_add(policy::REFRESH_BACKOFF_MAX_MS));
            if until > now {
                self.lock_view()
                    .backoff_until
                    .insert(key.to_string(), until);
                if dirty {
                    let _ = journal.write(&mut doc);
                }
                return Err(unavailable(until, "the token endpoint is backing off"));
            }
        }
        // The possibly-spent rule (module comment).
        let mut retrying_unanswered = false;
        if let Some(p) = doc.possibly_spent(key, &token_fp) {
            let now = now_ms();
            // Clamped: a marker from a clock that ran ahead must not keep siblings waiting.
            let left_ms = p
                .at_ms
                .saturating_add(WATCH_MS)
                .saturating_sub(now)
                .clamp(0, WATCH_MS);
            if left_ms > 0 {
                if !may_retry {
                    return Err(unavailable(
                        now.saturating_add(left_ms),
                        "a refresh with this token went unanswered moments ago and may have \
                         spent it",
                    ));
                }
                drop(held);
                return self.watch_possibly_spent(
                    a,
                    key,
                    row,
                    &current,
                    force,
                    min_validity,
                    left_ms,
                );
            }
            retrying_unanswered = true;
        }

        // Step 5: record the POST before spending the token. A journal that cannot be
        // written now would leave the new pair nowhere to go: do not POST.
        doc.posts.retain(|p| p.grant != key);
        doc.posts.push(Post {
            grant: key.to_string(),
            token: token_fp.clone(),
            at_ms: now_ms(),
            pid: std::process::id(),
        });
        if let Err(e) = journal.write(&mut doc) {
            return Err(Error::new(
                e.status,
                format!(
                    "not refreshing: {} (hap records each refresh in its journal before the \
                     refresh token is spent, so that the new pair cannot be lost): free space \
                     or fix permissions there",
                    e.message
                ),
            )
            .with_path(journal.path())
            .with_credential(&row.id));
        }

        // Step 6: the one POST.
        fault::point("before_post");
        self.counters.refresh_posts.fetch_add(1, Ordering::Relaxed);
        log::debug(format_args!("row {}: POST refresh", row.id));
        // Claude Code's body for this login (its client id and scopes); a pool row's as before.
        let shape = match (a, &self.creds) {
            (Authority::Credentials, Some(c)) => c.request_shape().unwrap_or_default(),
            _ => Default::default(),
        };
        match self.endpoint.refresh_with(&refresh_token, &shape) {
            Ok(resp) => {
                fault::point("after_token_response");
                let now = now_ms();
                let issued = resp.issued(now);
                let rotated_refresh = resp.refresh.as_ref().is_some_and(|r| *r != refresh_token);
                let pair = TokenPair {
                    access: resp.access,
                    refresh: resp.refresh.or(Some(refresh_token)),
                    // expires_in is at most a year (oauth.rs); saturating all the same.
                    expires_at_ms: Some(now.saturating_add(resp.expires_in_s.saturating_mul(1000))),
                };
                let entry = Entry {
                    id: format!("{:016x}", crate::rng::next_u64()),
                    grant: key.to_string(),
                    spent: token_fp.clone(),
                    access_token: pair.access.expose().to_string(),
                    refresh_token: pair.refresh.as_ref().map(|r| r.expose().to_string()),
                    expires_at_ms: pair.expires_at_ms,
                    scopes: resp.scopes.clone(),
                    committed: false,
                    at_ms: now,
                };
                doc.entries.push(entry.clone());
                doc.posts.retain(|p| p.grant != key);
                if rotated_refresh {
                    doc.spent.push(token_fp.clone());
                }
                doc.backoff.remove(key);
                self.lock_view().backoff_until.remove(key);
                // Step 7: from here on the pair is kept, whatever fails.
                self.keep_new_pair(
                    a, &held, row, key, &journal, &mut doc, entry, &pair, issued, token_fp,
                );
                Ok(Outcome {
                    pair,
                    refreshed: true,
                })
            }
            Err(RefreshError::Terminal { code }) => {
                // Remember the refusal while the locks are held: every sibling that would
                // POST this token next finds it spent and goes straight to watching the
                // store. (A server with reuse detection may revoke the whole grant when a
                // refused token is presented again.) Best effort: the refusal stands even if
                // the journal cannot be written.
                doc.spent.push(token_fp.clone());
                doc.posts.retain(|p| p.grant != key);
                if let Err(e) = journal.write(&mut doc) {
                    log::debug(format_args!(
                        "journal not written after {code}: {}",
                        e.status.name()
                    ));
                }
                drop(held);
                // After an unanswered POST's window the store was watched already.
                self.after_invalid_grant(
                    a,
                    key,
                    row,
                    &current,
                    force,
                    min_validity,
                    may_retry,
                    !retrying_unanswered,
                    &code,
                )
            }
            Err(RefreshError::Transient {
                why,
                http_status,
                retry_after_ms,
            }) => {
                // Step 9: a back-off every process sees, through the journal. The answer
                // says the token was not spent: the POST's marker ends.
                doc.posts.retain(|p| p.grant != key);
                let until = self.back_off(key, &mut doc, http_status, retry_after_ms);
                if let Err(e) = journal.write(&mut doc) {
                    log::debug(format_args!("journal not written: {}", e.status.name()));
                }
                Err(unavailable(until, &format!("refresh failed: {why}")))
            }
            Err(RefreshError::Unanswered { why }) => {
                // Possibly spent: the marker stays, its window starting now.
                let now = now_ms();
                match doc.posts.iter_mut().find(|p| p.grant == key) {
                    Some(p) => p.at_ms = now,
                    None => doc.posts.push(Post {
                        grant: key.to_string(),
                        token: token_fp.clone(),
                        at_ms: now,
                        pid: std::process::id(),
                    }),
                }
                let until = self.back_off(key, &mut doc, None, None);
                if let Err(e) = journal.write(&mut doc) {
                    log::debug(format_args!("journal not written: {}", e.status.name()));
                }
                Err(unavailable(
                    until,
                    &format!(
                        "refresh failed: {why}; the token endpoint may have spent the refresh \
                         token"
                    ),
                ))
            }
        }
    }

    /// One more transient failure of the grant's refresh: the shared back-off's end.
    fn back_off(
        &self,
        key: &str,
        doc: &mut JournalDoc,
        http_status: Option<u16>,
        retry_after_ms: Option<i64>,
    ) -> i64 {
        let b = doc.backoff.entry(key.to_string()).or_default();
        b.failures = b.failures.saturating_add(1);
        b.until_ms =
            now_ms().saturating_add(policy::refresh_backoff_ms(b.failures, retry_after_ms));
        b.code = http_status.map(i64::from);
        let until = b.until_ms;
        self.lock_view()
            .backoff_until
            .insert(key.to_string(), until);
        until
    }

    /// Step 7: the token endpoint answered; the pair is the only copy of the login. Journal,
    /// then authority; failing both, memory (served, and saved again at every later call).
    #[allow(clippy::too_many_arguments)]
    fn keep_new_pair(
        &self,
        a: &Authority,
        held: &Held,
        row: &Row,
        key: &str,
        journal: &Journal,
        doc: &mut JournalDoc,
        entry: Entry,
        pair: &TokenPair,
        issued: Issued,
        replaced: String,
    ) {
        let journalled = journal.write(doc);
        if journalled.is_ok() {
            fault::point("after_journal");
        }
        let stored = self.commit_pair(a, held, &row.id, pair, &issued);
        match (journalled, stored) {
            (Ok(()), Ok(())) => {
                if let Some(e) = doc.entries.iter_mut().find(|e| e.id == entry.id) {
                    e.committed = true;
                }
                // The pair is in the store; an entry left uncommitted is settled later.
                if let Err(e) = journal.write(doc) {
                    log::debug(format_args!("journal commit mark not written: {e}"));
                }
                fault::point("after_commit");
                self.forget_unsaved(key);
            }
            (Err(e), Ok(())) => {
                log::debug(format_args!(
                    "row {}: journal not written ({}); the pair went to the store directly",
                    row.id,
                    e.status.name()
                ));
                self.forget_unsaved(key);
            }
            (Ok(()), Err(e)) => log::debug(format_args!(
                "row {}: store not written ({}); the journal holds the pair",
                row.id,
                e.status.name()
            )),
            (Err(je), Err(se)) => {
                let why = unsaved_why(journal.path(), &je, self.store_path(a).as_deref(), &se);
                log::debug(format_args!(
                    "row {}: pair kept in memory only: {why}",
                    row.id
                ));
                let mut map = self
                    .flights
                    .unsaved
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                map.insert(
                    key.to_string(),
                    Unsaved {
                        authority: a.clone(),
                        row_id: row.id.clone(),
                        replaced,
                        pair: pair.clone(),
                        issued,
                        entry,
                        why,
                    },
                );
            }
        }
    }

    /// The authority's pair while watching it: a store another tool is rewriting in place
    /// (truncate, then write) reads as garbage for a moment, which is "not yet", not an
    /// error; the transaction that follows reports a corruption that stays.
    fn read_settling(&self, row: &Row) -> Result<Option<TokenPair>> {
        match self.read_authority_pair(row) {
            Err(e) if e.status == Status::StoreCorrupt => Ok(None),
            r => r,
        }
    }

    /// The possibly-spent window (module comment): watch the store instead of POSTing a
    /// refresh token whose last POST went unanswered moments ago; afterwards, the one retry.
    #[allow(clippy::too_many_arguments)]
    fn watch_possibly_spent(
        &self,
        a: &Authority,
        key: &str,
        row: &Row,
        current: &TokenPair,
        force: bool,
        min_validity: u64,
        left_ms: i64,
    ) -> Result<Outcome> {
        log::debug(format_args!(
            "row {}: the last POST of this refresh token went unanswered; watching the store",
            row.id
        ));
        let until = Instant::now() + Duration::from_millis(left_ms.max(0) as u64);
        loop {
            if let Some(now_pair) = self.read_settling(row)? {
                if now_pair.refresh != current.refresh {
                    self.invalidate();
                    if is_fresh(row, &now_pair, min_validity, now_ms()) {
                        self.counters
                            .refresh_adopted
                            .fetch_add(1, Ordering::Relaxed);
                        return Ok(Outcome {
                            pair: now_pair,
                            refreshed: false,
                        });
                    }
                    return self.transaction(a, key, row, &now_pair, force, min_validity, false);
                }
            }
            if Instant::now() >= until {
                break;
            }
            std::thread::sleep(WATCH_POLL);
        }
        self.transaction(a, key, row, current, force, min_validity, false)
    }

    /// Step 8. The locks are released: a writer that takes them must be able to finish.
    /// `watch` is false when the store was watched already (the retry after an unanswered
    /// POST's window).
    #[allow(clippy::too_many_arguments)]
    fn after_invalid_grant(
        &self,
        a: &Authority,
        key: &str,
        row: &Row,
        spent: &TokenPair,
        force: bool,
        min_validity: u64,
        may_retry: bool,
        watch: bool,
        code: &str,
    ) -> Result<Outcome> {
        log::debug(format_args!(
            "row {}: token endpoint said {code}; watching the store",
            row.id
        ));
        let watch_until = Instant::now()
            + if watch {
                INVALID_GRANT_WATCH
            } else {
                Duration::ZERO
            };
        loop {
            if let Some(now_pair) = self.read_settling(row)? {
                if now_pair.refresh != spent.refresh {
                    self.invalidate();
                    if is_fresh(row, &now_pair, min_validity, now_ms()) {
                        self.counters
                            .refresh_adopted
                            .fetch_add(1, Ordering::Relaxed);
                        return Ok(Outcome {
                            pair: now_pair,
                            refreshed: false,
                        });
                    }
                    if may_retry {
                        return self.transaction(
                            a,
                            key,
                            row,
                            &now_pair,
                            force,
                            min_validity,
                            false,
                        );
                    }
                    break;
                }
            }
            if Instant::now() >= watch_until {
                break;
            }
            std::thread::sleep(WATCH_POLL);
        }
        let dead_fp = self
            .read_authority_pair(row)
            .ok()
            .flatten()
            .map(|p| p.access.fingerprint());
        let now_s = now_ms() as f64 / 1000.0;
        let id = row.id.clone();
        let code = code.to_string();
        self.update_rows(None, |rows, _| {
            let Some(r) = rows.iter_mut().find(|r| r.id == id) else {
                return Ok((false, ()));
            };
            r.last_status = Some(policy::STATUS_DEAD.into());
            r.last_status_at = Some(now_s);
            r.last_error_code = Some(400);
            r.last_error_reason = Some(code.clone());
            r.last_error_message = Some("refresh token rejected; log in again".into());
            r.last_error_reset_at = None;
            if dead_fp.is_some() {
                r.secret_fingerprint = dead_fp.clone();
            }
            Ok((true, ()))
        })?;
        Err(Error::new(
            Status::ReauthRequired,
            format!("the token endpoint rejected the grant ({code}): log in again"),
        )
        .with_credential(&row.id))
    }
}

fn unavailable(until_ms: i64, why: &str) -> Error {
    Error::new(Status::Unavailable, why.to_string()).with_retry_at(Some(until_ms))
}

/// Where a pair that no file took was refused, for the error of a process about to exit.
fn unsaved_why(
    journal: &std::path::Path,
    je: &Error,
    store: Option<&std::path::Path>,
    se: &Error,
) -> String {
    let store = store.map_or_else(|| "the store".to_string(), |p| p.display().to_string());
    format!(
        "journal {}: {}; store {store}: {}",
        journal.display(),
        je.message,
        se.message
    )
}

/// A pool dropped with a pair no file took tries once more to save it (a host that calls
/// `hap_pool_free` right after a refresh on a full disk).
impl Drop for Pool {
    fn drop(&mut self) {
        let pending = !self
            .flights
            .unsaved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty();
        if pending {
            if let Err(e) = self.save_unsaved() {
                log::debug(format_args!("closing with an unsaved pair: {e}"));
            }
        }
    }
}
