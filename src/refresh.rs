//! The refresh transaction of docs/SPEC.md: exactly one POST per rotation, machine-wide.
//!
//! Read this file top to bottom; it is the whole story.
//!
//! 1. In-process single flight: one refresh per grant at a time; other threads wait for the
//!    leader's result on a condvar (no mutex is held across network I/O or a lock wait).
//! 2. Cross-process: take the authority's locks: `.credentials.lock`, then Claude Code's
//!    `.oauth_refresh.lock` directory (if enabled) for the credentials file; `auth.lock` for
//!    a row that owns its tokens. Bounded by `lock_timeout_ms`.
//! 3. Re-read the authority. A different access token, valid long enough, means a sibling
//!    refreshed while we waited: adopt it, no POST.
//! 4. The journal: if an entry replaced the store's refresh token, that token is spent and
//!    the pair never reached the store (a crash): commit the entry's pair, no POST. A spent
//!    token with no entry is never replayed.
//! 5. POST (see `oauth.rs` for URL fallback, redirects and size rules).
//! 6. Success: journal (fsync) -> write the authority -> mark the row ok -> commit.
//! 7. `invalid_grant`: record the token as spent, release the locks and watch the authority for up to 3 s: an outside
//!    writer (an older Claude Code that takes no lock) may have spent our token and be about
//!    to write its pair. Adopt it, or retry once with its refresh token. Otherwise the row is
//!    `dead` and the caller gets `REAUTH_REQUIRED`. The credentials file is never written on
//!    this path.
//! 8. Transient failures (429, 5xx, timeouts, bad bodies): a back-off shared through the
//!    journal, so no process POSTs again inside it; `UNAVAILABLE` with `retry_at_ms`.

use crate::clock::now_ms;
use crate::credentials::TokenPair;
use crate::error::{Error, Result, Status};
use crate::journal::{Entry, Journal};
use crate::lock::{FileLock, RefreshLockDir};
use crate::oauth::RefreshError;
use crate::pool::{is_fresh, Pool};
use crate::pool_file::{Kind, Row};
use crate::{fault, log, policy};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long to watch the authority after `invalid_grant` for an outside writer's pair.
const INVALID_GRANT_WATCH: Duration = Duration::from_secs(3);
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

/// In-flight refreshes of this process, by grant.
#[derive(Default)]
pub struct Flights(Mutex<HashMap<String, Arc<Flight>>>);

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
        let mut map = self.flights.0.lock().unwrap_or_else(|p| p.into_inner());
        if map
            .get(&self.key)
            .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
        {
            map.remove(&self.key);
        }
    }
}

/// Where a row's tokens live, and so which locks and journal guard a refresh of it.
enum Authority {
    Credentials,
    PoolRow(String),
}

/// Locks held for one transaction; dropped in reverse order of taking.
struct Held {
    pool: Option<FileLock>,
    _refresh_dir: Option<RefreshLockDir>,
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
            let mut map = self.flights.0.lock().unwrap_or_else(|p| p.into_inner());
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
                    let d = RefreshLockDir::acquire(
                        &creds.refresh_lock_dir(),
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
        scopes: Option<&[String]>,
    ) -> Result<()> {
        if let Authority::Credentials = a {
            self.creds
                .as_ref()
                .expect("credentials authority")
                .write_pair(pair, scopes)?;
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
        // A back-off learnt earlier: no lock, no I/O, no POST until it ends.
        if let Some(&until) = self.lock_view().backoff_until.get(key) {
            if until > now_ms() {
                return Err(unavailable(until, "the token endpoint is backing off"));
            }
        }

        let held = self.take_locks(a)?;

        // Step 3: re-read and adopt a sibling's rotation.
        let current = self.read_authority_pair(row)?.ok_or_else(|| {
            Error::new(
                Status::ReauthRequired,
                "the login is gone from its store: log in again",
            )
            .with_credential(&row.id)
        })?;
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
        let Some(refresh_token) = current.refresh.clone() else {
            return Err(Error::new(
                Status::ReauthRequired,
                "the store holds no refresh token: log in again",
            ));
        };

        // Step 4: the journal.
        let journal = self.journal(a)?;
        let mut doc = journal.read()?;
        let spent_fp = refresh_token.fingerprint();
        if let Some(entry) = doc.entry_replacing(key, &spent_fp).cloned() {
            log::debug(format_args!(
                "row {}: committing a journalled pair instead of POSTing",
                row.id
            ));
            let pair = entry.pair();
            self.commit_pair(a, &held, &row.id, &pair, entry.scopes.as_deref())?;
            if let Some(e) = doc.entries.iter_mut().find(|e| e.id == entry.id) {
                e.committed = true;
            }
            journal.write(&mut doc)?;
            self.counters
                .journal_recoveries
                .fetch_add(1, Ordering::Relaxed);
            return Ok(Outcome {
                pair,
                refreshed: false,
            });
        }
        if doc.is_spent(&spent_fp) {
            drop(held);
            return self.after_invalid_grant(
                a,
                key,
                row,
                &current,
                force,
                min_validity,
                may_retry,
                "a spent refresh token",
            );
        }
        if let Some(b) = doc.backoff.get(key) {
            if b.until_ms > now_ms() {
                self.lock_view()
                    .backoff_until
                    .insert(key.to_string(), b.until_ms);
                return Err(unavailable(b.until_ms, "the token endpoint is backing off"));
            }
        }

        // Step 5: the one POST.
        fault::point("before_post");
        self.counters.refresh_posts.fetch_add(1, Ordering::Relaxed);
        log::debug(format_args!("row {}: POST refresh", row.id));
        match self.endpoint.refresh(&refresh_token) {
            Ok(resp) => {
                fault::point("after_token_response");
                let rotated_refresh = resp.refresh.is_some();
                let pair = TokenPair {
                    access: resp.access,
                    refresh: resp.refresh.or(Some(refresh_token)),
                    expires_at_ms: Some(now_ms() + resp.expires_in_s.saturating_mul(1000)),
                };
                // Step 6: durable in the journal before any shared store is touched.
                let entry_id = format!("{:016x}", crate::rng::next_u64());
                doc.entries.push(Entry {
                    id: entry_id.clone(),
                    grant: key.to_string(),
                    spent: spent_fp.clone(),
                    access_token: pair.access.expose().to_string(),
                    refresh_token: pair.refresh.as_ref().map(|r| r.expose().to_string()),
                    expires_at_ms: pair.expires_at_ms,
                    scopes: resp.scopes.clone(),
                    committed: false,
                    at_ms: now_ms(),
                });
                if rotated_refresh {
                    doc.spent.push(spent_fp);
                }
                doc.backoff.remove(key);
                journal.write(&mut doc)?;
                fault::point("after_journal");
                self.lock_view().backoff_until.remove(key);
                self.commit_pair(a, &held, &row.id, &pair, resp.scopes.as_deref())?;
                if let Some(e) = doc.entries.iter_mut().find(|e| e.id == entry_id) {
                    e.committed = true;
                }
                journal.write(&mut doc)?;
                fault::point("after_commit");
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
                doc.spent.push(spent_fp.clone());
                if let Err(e) = journal.write(&mut doc) {
                    log::debug(format_args!(
                        "journal not written after {code}: {}",
                        e.status.name()
                    ));
                }
                drop(held);
                self.after_invalid_grant(
                    a,
                    key,
                    row,
                    &current,
                    force,
                    min_validity,
                    may_retry,
                    &code,
                )
            }
            Err(RefreshError::Transient {
                why,
                http_status,
                retry_after_ms,
            }) => {
                // Step 8: a back-off every process sees, through the journal.
                let b = doc.backoff.entry(key.to_string()).or_default();
                b.failures = b.failures.saturating_add(1);
                b.until_ms = now_ms() + policy::refresh_backoff_ms(b.failures, retry_after_ms);
                b.code = http_status.map(i64::from);
                let until = b.until_ms;
                journal.write(&mut doc)?;
                self.lock_view()
                    .backoff_until
                    .insert(key.to_string(), until);
                Err(unavailable(until, &format!("refresh failed: {why}")))
            }
        }
    }

    /// Step 7. The locks are released: a writer that takes them must be able to finish.
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
        code: &str,
    ) -> Result<Outcome> {
        log::debug(format_args!(
            "row {}: token endpoint said {code}; watching the store",
            row.id
        ));
        let watch_until = Instant::now() + INVALID_GRANT_WATCH;
        loop {
            if let Some(now_pair) = self.read_authority_pair(row)? {
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
