//! The ownership switch, `defer_refresh_to_claude_code` (issue 12, item 5): Claude Code owns
//! its login, and hap never POSTs on it. Users asked for it to keep exactly one refresher of
//! a login (Claude Code, or its `claude daemon`). hap then serves the login while its access
//! token is valid, adopts a rotation Claude Code wrote at once (every call re-reads the
//! file), and otherwise answers `UNAVAILABLE` with `retry_at_ms`, telling the user to run
//! `claude`. It takes none of Claude Code's locks either: it writes nothing.
//!
//! The store says it is so (`Authority::refresh_deferred`, set where the pool picks the
//! login's store from the config); the refresher asks before anything else.

use super::{Outcome, Refresher};
use crate::authority::Authority;
use crate::clock::now_ms;
use crate::credentials::TokenPair;
use crate::error::{Error, Result, Status};
use crate::pool_file::Row;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// When a caller should look again: Claude Code refreshes as soon as it is used.
const RETRY_MS: i64 = 30_000;

impl Refresher<'_> {
    pub(super) fn claude_code_owned(
        &self,
        a: &Arc<dyn Authority>,
        row: &Row,
        stale: &TokenPair,
        force: bool,
    ) -> Result<Outcome> {
        let now = now_ms();
        let current = self.read_pair(&**a)?.ok_or_else(|| {
            Error::new(
                Status::ReauthRequired,
                "the login is gone from its store: log in again with Claude Code (`claude`, \
                 then /login)",
            )
            .with_credential(&row.id)
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
        Err(Error::new(
            Status::Unavailable,
            format!(
                "{why}, and Claude Code owns this login (defer_refresh_to_claude_code): hap \
                 does not refresh it. Run `claude` (any prompt) to refresh it; hap picks up \
                 the new token at once"
            ),
        )
        .with_retry_at(Some(now.saturating_add(RETRY_MS)))
        .with_credential(&row.id))
    }
}
