//! A login hap serves but never refreshes (`Authority::refresh_deferred`):
//!
//! * `defer_refresh_to_claude_code` (issue 12, item 5): Claude Code owns its login. Users
//!   asked for it to keep exactly one refresher of a login (Claude Code, or its `claude
//!   daemon`).
//! * a fleet consumer host (issue 16): its Redis ACL user cannot read the refresh token; a
//!   refresher host rotates the login.
//!
//! hap then serves the login while its access token is valid, adopts a rotation at once
//! (every call re-reads the store), and otherwise answers `UNAVAILABLE` with `retry_at_ms`
//! and what the store says refreshes it. It takes no lock either: it writes nothing.
//!
//! The store says it is so; the refresher asks before anything else.

use super::{Outcome, Refresher};
use crate::authority::{Authority, Deferred};
use crate::clock::now_ms;
use crate::credentials::TokenPair;
use crate::error::{Error, Result, Status};
use crate::pool_file::Row;
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl Refresher<'_> {
    pub(super) fn deferred(
        &self,
        a: &Arc<dyn Authority>,
        d: &Deferred,
        row: &Row,
        stale: &TokenPair,
        force: bool,
    ) -> Result<Outcome> {
        let now = now_ms();
        let current = self.read_pair(&**a)?.ok_or_else(|| {
            Error::new(Status::ReauthRequired, d.when_gone).with_credential(&row.id)
        })?;
        let valid = current.expires_at_ms.is_none_or(|at| at > now);
        let rotated = current.access != stale.access;
        if valid && (rotated || !force) {
            if rotated {
                self.counters
                    .refresh_adopted
                    .fetch_add(1, Ordering::Relaxed);
                self.ledger.invalidate();
            }
            return Ok(Outcome {
                pair: current,
                refreshed: false,
            });
        }
        let why = if valid {
            "the API refused the login's access token"
        } else {
            "the login's access token has expired"
        };
        Err(
            Error::new(Status::Unavailable, format!("{why}, and {}", d.refresher))
                .with_retry_at(Some(now.saturating_add(d.retry_ms)))
                .with_credential(&row.id),
        )
    }
}
