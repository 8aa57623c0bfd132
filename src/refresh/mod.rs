//! The refresh transaction of docs/SPEC.md: exactly one POST per rotation, machine-wide, and
//! once the token server has answered, the new pair is never dropped.
//!
//! Read this file top to bottom; it is the whole story.
//!
//! The transaction knows stores and locks, not the pool: a [`Refresher`] refreshes the pair
//! of one store (`dyn Authority`, `store/authority.rs`: Claude Code's credentials file, an
//! owned pool row, or any other store), takes the locks that store lists, and tells the pool
//! what happened to its rows through [`RowLedger`] (mark ok, mark dead, look again). The pool
//! builds a `Refresher` per call (`Pool::refresher`); `tests.rs` runs it with an in-memory
//! store and no pool at all.
//!
//! 1. In-process single flight: one refresh per grant at a time; other threads wait for the
//!    leader's result on a condvar (no mutex is held across network I/O or a lock wait).
//! 2. Cross-process: take the locks the store lists (`Authority::locks`): `.credentials.lock`,
//!    then Claude Code's `.oauth_refresh.lock` and `~/.claude.lock` directories (if enabled)
//!    for the credentials file; `auth.lock` for a row that owns its tokens. Bounded by
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
//! 7. Success: journal (fsync) -> write the authority -> mark the row ok -> commit. The store
//!    write is a compare-and-set on the refresh token the store held when re-read in step 3
//!    (as Claude Code's own save): if another writer saved a pair meanwhile, theirs stands,
//!    ours is served to this caller and its journal entry is settled. If the
//!    journal cannot be written now (the disk filled during the POST), the pair goes to the
//!    authority directly; if that fails too, it stays in this process's memory, is served,
//!    and every later call (and closing the pool) tries to save it again. A one-shot process
//!    calls `Pool::save_unsaved` before it exits and fails loudly, naming the paths, if
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

use crate::authority::{Authority, Written};
use crate::clock::now_ms;
use crate::counters::Counters;
use crate::credentials::{Issued, TokenPair};
use crate::error::{Error, Result, Status};
use crate::journal::{Entry, Journal, JournalDoc, Post};
use crate::lock::Held;
use crate::oauth::{RefreshError, TokenEndpoint};
use crate::policy::is_fresh;
use crate::pool_file::Row;
use crate::secret::Secret;
use crate::{fault, log, policy};
use std::collections::HashMap;
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
    authority: Arc<dyn Authority>,
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

/// What a refresh keeps between calls, per pool handle: in-flight refreshes by grant, pairs
/// still on their way to disk, and the shared back-off learnt from the journal.
#[derive(Default)]
pub struct Flights {
    flights: Mutex<HashMap<String, Arc<Flight>>>,
    unsaved: Mutex<HashMap<String, Unsaved>>,
    /// Refresh back-off per grant (epoch ms), cached from the journal so a resolve during
    /// a back-off does not take a lock just to learn it must not POST.
    backoff_until: Mutex<HashMap<String, i64>>,
}

impl Flights {
    /// Whether a pair no file took is waiting in memory (step 7).
    pub fn has_unsaved(&self) -> bool {
        !self
            .unsaved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    fn backoff_until(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        self.backoff_until.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a refresh does to the pool's rows, and all it knows of the pool (which implements
/// it in `pool/mod.rs`): refresh depends on stores and locks, the pool on refresh, never the
/// other way round.
pub(crate) trait RowLedger {
    /// The row's store now holds `pair` (a refresh, a journal replay or a saved unsaved
    /// pair): mark the row ok. `held` are the transaction's locks, the pool lock among them
    /// when the row's store is the pool file. Best effort: the pair is safe in its store.
    fn mark_ok(&self, row_id: &str, pair: &TokenPair, held: &Held);

    /// The token endpoint refused the grant (`code`) and nobody saved a new pair: mark the
    /// row dead. `token_fp`: the fingerprint of the access token its store holds now.
    fn mark_dead(&self, row_id: &str, code: &str, token_fp: Option<String>) -> Result<()>;

    /// A store changed behind the pool's cached view: look again at the next call.
    fn invalidate(&self);
}

/// The refresh transaction for one pool handle: what it needs of the handle, borrowed.
pub(crate) struct Refresher<'a> {
    pub flights: &'a Flights,
    pub endpoint: &'a TokenEndpoint,
    pub counters: &'a Counters,
    pub lock_timeout_ms: u64,
    pub ledger: &'a dyn RowLedger,
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

impl Refresher<'_> {
    /// Step 1: in-process single flight around the transaction.
    pub(crate) fn refresh(
        &self,
        authority: Arc<dyn Authority>,
        row: &Row,
        stale: &TokenPair,
        force: bool,
        min_validity: u64,
    ) -> Result<Outcome> {
        let key = authority.grant_key();
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
            flights: self.flights,
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
    fn take_locks(&self, a: &dyn Authority) -> Result<Held> {
        let mut waited = false;
        let held = a.locks().and_then(|specs| {
            Held::take(
                &specs,
                Instant::now() + Duration::from_millis(self.lock_timeout_ms),
                self.lock_timeout_ms,
                &mut waited,
            )
        });
        if waited {
            self.counters.lock_waits.fetch_add(1, Ordering::Relaxed);
        }
        held
    }

    /// Writes the new pair to the authority, if it still holds `replaces`, and marks the
    /// row fresh in the pool file.
    #[allow(clippy::too_many_arguments)]
    fn commit_pair(
        &self,
        a: &dyn Authority,
        held: &Held,
        row_id: &str,
        replaces: Option<&Secret>,
        pair: &TokenPair,
        issued: &Issued,
    ) -> Result<Written> {
        let written = a.write_pair(held, replaces, pair, issued)?;
        if written == Written::Moved {
            log::debug(format_args!(
                "row {row_id}: the store moved on; its pair stands"
            ));
            self.ledger.invalidate();
            return Ok(written);
        }
        fault::point("after_store_write");
        self.ledger.mark_ok(row_id, pair, held);
        fault::point("after_pool_write");
        self.ledger.invalidate();
        Ok(written)
    }

    /// The pair the authority holds right now.
    fn read_pair(&self, a: &dyn Authority) -> Result<Option<TokenPair>> {
        Ok(a.read_pair()?.pair)
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

    /// Tries again to put an unsaved pair into the journal and the authority (locks held;
    /// the store holds `replaces`). Either one is enough: the journal is replayed by whoever
    /// reads it next. `Ok(true)` when the store now holds the pair.
    fn save_locked(
        &self,
        key: &str,
        held: &Held,
        u: &Unsaved,
        replaces: Option<&Secret>,
    ) -> Result<bool> {
        let journal = u.authority.journal()?;
        let journalled = journal.read().and_then(|mut doc| {
            if !doc.entries.iter().any(|e| e.id == u.entry.id) {
                doc.entries.push(u.entry.clone());
            }
            doc.posts.retain(|p| p.grant != key);
            journal.write(&mut doc)
        });
        let stored = self.commit_pair(&*u.authority, held, &u.row_id, replaces, &u.pair, &u.issued);
        match (&journalled, &stored) {
            (Err(je), Err(se)) => {
                let why = unsaved_why(journal.path(), je, &u.authority.name(), se);
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
                Ok(matches!(stored, Ok(Written::Stored)))
            }
        }
    }

    /// Saves every pair of this process that no file holds yet (step 7); see
    /// `Pool::save_unsaved`.
    pub(crate) fn save_unsaved(&self) -> Result<()> {
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
            let result = self.take_locks(&*u.authority).and_then(|held| {
                let store = self.read_pair(&*u.authority)?;
                let holds = store.and_then(|p| p.refresh);
                let holds_replaced = holds
                    .as_ref()
                    .is_some_and(|r| r.fingerprint() == u.replaced);
                if holds_replaced {
                    self.save_locked(&key, &held, &u, holds.as_ref()).map(drop)
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
        a: &Arc<dyn Authority>,
        key: &str,
        row: &Row,
        stale: &TokenPair,
        force: bool,
        min_validity: u64,
        may_retry: bool,
    ) -> Result<Outcome> {
        // Someone else refreshes this login (`owned.rs`): no lock, no journal, no POST.
        if let Some(d) = a.refresh_deferred() {
            return self.deferred(a, &d, row, stale, force);
        }
        // An unsaved pair of this process is served whatever else fails before it is saved.
        let or_unsaved = |e: Error| match self.fresh_unsaved(key, row, min_validity) {
            Some(o) => Ok(o),
            None => Err(e),
        };
        // A back-off learnt earlier: no lock, no I/O, no POST until it ends.
        if let Some(&until) = self.flights.backoff_until().get(key) {
            if until > now_ms() {
                return or_unsaved(unavailable(until, "the token endpoint is backing off"));
            }
        }

        let held = match self.take_locks(&**a) {
            Ok(h) => h,
            Err(e) => return or_unsaved(e),
        };

        // Step 3: re-read; save an unsaved pair; adopt a sibling's rotation.
        let read = match self.read_pair(&**a) {
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
        // The refresh token the store holds as far as this transaction knows: what its
        // next write replaces (the compare-and-set of `Authority::write_pair`).
        let mut in_store = store_pair.refresh.clone();
        if let Some(u) = self.unsaved(key) {
            let holds_replaced = current
                .refresh
                .as_ref()
                .is_some_and(|r| r.fingerprint() == u.replaced);
            if holds_replaced {
                match self.save_locked(key, &held, &u, in_store.as_ref()) {
                    Ok(true) => in_store = u.pair.refresh.clone(),
                    Ok(false) => {}
                    Err(e) => log::debug(format_args!("row {}: still unsaved: {e}", row.id)),
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
            self.ledger.invalidate();
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
        let journal = a.journal()?;
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
            let committed = self.commit_pair(
                &**a,
                &held,
                &row.id,
                in_store.as_ref(),
                &pair,
                &Issued::scopes(entry.scopes.clone()),
            );
            match committed {
                Ok(Written::Stored) => {
                    if let Some(e) = doc.entries.iter_mut().find(|e| e.id == entry.id) {
                        e.committed = true;
                    }
                    dirty = true;
                    in_store = pair.refresh.clone();
                }
                Ok(Written::Moved) => {}
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
                self.flights.backoff_until().insert(key.to_string(), until);
                if dirty {
                    let _ = journal.write(&mut doc);
                }
                return Err(unavailable(until, "the token endpoint is backing off"));
            }
        }
        // The possibly-spent rule (module comment).
        let mut retrying_unanswered = false;
        let now = now_ms();
        // Clamped: a marker from a clock that ran ahead must not keep siblings waiting.
        let local = doc.possibly_spent(key, &token_fp).map(|p| {
            p.at_ms
                .saturating_add(WATCH_MS)
                .saturating_sub(now)
                .clamp(0, WATCH_MS)
        });
        // Issue 16: a store shared beyond this machine keeps a marker every host sees.
        let shared = a.posting_left_ms(&token_fp, now)?;
        if local.is_some() || shared.is_some() {
            let left_ms = local.unwrap_or(0).max(shared.unwrap_or(0));
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
        // Issue 16: and where the other hosts see it. Not there: do not POST.
        if let Err(e) = a.mark_posting(&token_fp, now_ms()) {
            doc.posts.retain(|p| p.grant != key);
            let _ = journal.write(&mut doc);
            return Err(e.with_credential(&row.id));
        }

        // Step 6: the one POST.
        fault::point("before_post");
        self.counters.refresh_posts.fetch_add(1, Ordering::Relaxed);
        log::debug(format_args!("row {}: POST refresh", row.id));
        // The body the store's owner would send for this login (Claude Code's client id and
        // scopes, issue 12); a pool row's as before. A file that cannot be read for it now
        // was just read: the default shape, rather than no refresh.
        let shape = a.request_shape().unwrap_or_default();
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
                self.flights.backoff_until().remove(key);
                // Step 7: from here on the pair is kept, whatever fails.
                self.keep_new_pair(
                    a,
                    &held,
                    in_store.as_ref(),
                    row,
                    key,
                    &journal,
                    &mut doc,
                    entry,
                    &pair,
                    issued,
                    token_fp,
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
                a.clear_posting(&token_fp);
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
        self.flights.backoff_until().insert(key.to_string(), until);
        until
    }

    /// Step 7: the token endpoint answered; the pair is the only copy of the login. Journal,
    /// then authority; failing both, memory (served, and saved again at every later call).
    #[allow(clippy::too_many_arguments)]
    fn keep_new_pair(
        &self,
        a: &Arc<dyn Authority>,
        held: &Held,
        in_store: Option<&Secret>,
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
        let stored = self.commit_pair(&**a, held, &row.id, in_store, pair, &issued);
        match (journalled, stored) {
            // Another writer saved a pair while the token endpoint answered (the store no
            // longer holds the token this POST spent): theirs stands, ours is served once.
            (journalled, Ok(Written::Moved)) => {
                if journalled.is_ok() {
                    if let Some(e) = doc.entries.iter_mut().find(|e| e.id == entry.id) {
                        e.committed = true;
                    }
                    if let Err(e) = journal.write(doc) {
                        log::debug(format_args!("journal commit mark not written: {e}"));
                    }
                }
                self.forget_unsaved(key);
            }
            (Ok(()), Ok(Written::Stored)) => {
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
            (Err(e), Ok(Written::Stored)) => {
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
                let why = unsaved_why(journal.path(), &je, &a.name(), &se);
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
    fn read_settling(&self, a: &dyn Authority) -> Result<Option<TokenPair>> {
        match self.read_pair(a) {
            Err(e) if e.status == Status::StoreCorrupt => Ok(None),
            r => r,
        }
    }

    /// Watches the store, locks released, until `until` (read at least once) for a pair
    /// whose refresh token is not `spent`'s: someone else saved one (a sibling, or an older
    /// Claude Code that takes no lock). The one loop behind step 8 and the possibly-spent
    /// window.
    fn watch_store(
        &self,
        a: &dyn Authority,
        spent: &TokenPair,
        until: Instant,
    ) -> Result<Option<TokenPair>> {
        loop {
            if let Some(now_pair) = self.read_settling(a)? {
                if now_pair.refresh != spent.refresh {
                    self.ledger.invalidate();
                    return Ok(Some(now_pair));
                }
            }
            if Instant::now() >= until {
                return Ok(None);
            }
            std::thread::sleep(WATCH_POLL);
        }
    }

    /// A pair someone else saved, served as it is.
    fn adopted(&self, pair: TokenPair) -> Result<Outcome> {
        self.counters
            .refresh_adopted
            .fetch_add(1, Ordering::Relaxed);
        Ok(Outcome {
            pair,
            refreshed: false,
        })
    }

    /// The possibly-spent window (module comment): watch the store instead of POSTing a
    /// refresh token whose last POST went unanswered moments ago; afterwards, the one retry.
    #[allow(clippy::too_many_arguments)]
    fn watch_possibly_spent(
        &self,
        a: &Arc<dyn Authority>,
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
        match self.watch_store(&**a, current, until)? {
            Some(pair) if is_fresh(row, &pair, min_validity, now_ms()) => self.adopted(pair),
            Some(pair) => self.transaction(a, key, row, &pair, force, min_validity, false),
            None => self.transaction(a, key, row, current, force, min_validity, false),
        }
    }

    /// Step 8. The locks are released: a writer that takes them must be able to finish.
    /// `watch` is false when the store was watched already (the retry after an unanswered
    /// POST's window).
    #[allow(clippy::too_many_arguments)]
    fn after_invalid_grant(
        &self,
        a: &Arc<dyn Authority>,
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
        let until = Instant::now()
            + if watch {
                INVALID_GRANT_WATCH
            } else {
                Duration::ZERO
            };
        match self.watch_store(&**a, spent, until)? {
            Some(pair) if is_fresh(row, &pair, min_validity, now_ms()) => {
                return self.adopted(pair)
            }
            Some(pair) if may_retry => {
                return self.transaction(a, key, row, &pair, force, min_validity, false)
            }
            _ => {}
        }
        let dead_fp = self
            .read_pair(&**a)
            .ok()
            .flatten()
            .map(|p| p.access.fingerprint());
        self.ledger.mark_dead(&row.id, code, dead_fp)?;
        let hint = spent
            .refresh
            .as_ref()
            .and_then(|r| a.spent_hint(&r.fingerprint()));
        Err(Error::new(
            Status::ReauthRequired,
            match hint {
                Some(h) => format!("the token endpoint rejected the grant ({code}): {h}"),
                None => format!("the token endpoint rejected the grant ({code}): log in again"),
            },
        )
        .with_credential(&row.id))
    }
}

fn unavailable(until_ms: i64, why: &str) -> Error {
    Error::new(Status::Unavailable, why.to_string()).with_retry_at(Some(until_ms))
}

/// Where a pair that no file took was refused, for the error of a process about to exit.
fn unsaved_why(journal: &std::path::Path, je: &Error, store: &str, se: &Error) -> String {
    format!(
        "journal {}: {}; store {store}: {}",
        journal.display(),
        je.message,
        se.message
    )
}

/// The transaction with an in-memory store: test code only.
#[cfg(test)]
mod tests;
