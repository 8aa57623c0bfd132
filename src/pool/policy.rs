//! docs/SPEC.md, "States of a credential": when a credential may be used again after a failure.
//!
//! | state       | selectable            | left by                                          |
//! |-------------|-----------------------|--------------------------------------------------|
//! | fresh / ok  | yes                   | a reported failure                               |
//! | exhausted   | no, until cooldown    | cooldown end; a different token at the authority; a refresh |
//! | dead        | never by time         | a different token at the authority; a refresh    |

use crate::clock;
use crate::credentials::TokenPair;
use crate::pool_file::Row;
use crate::secret::Secret;
use serde_json::Value;

pub const STATUS_OK: &str = "ok";
pub const STATUS_EXHAUSTED: &str = "exhausted";
pub const STATUS_DEAD: &str = "dead";

const TTL_401_S: f64 = 300.0;
const TTL_429_S: f64 = 3600.0;
const TTL_OTHER_S: f64 = 3600.0;
const SOLE_CREDENTIAL_MAX_S: f64 = 60.0;
const RESET_AT_CAP_S: f64 = 24.0 * 3600.0;
pub const REFRESH_BACKOFF_MIN_MS: i64 = 60_000;
pub const REFRESH_BACKOFF_MAX_MS: i64 = 3_600_000;

/// Usable for at least `min_validity_ms` more, and not the token a caller saw refused.
#[inline]
pub fn is_fresh(row: &Row, pair: &TokenPair, min_validity_ms: u64, now: i64) -> bool {
    fresh_parts(row, &pair.access, pair.expires_at_ms, min_validity_ms, now)
}

#[inline]
pub fn fresh_parts(
    row: &Row,
    access: &Secret,
    expires_at_ms: Option<i64>,
    min_validity_ms: u64,
    now: i64,
) -> bool {
    // Saturating: an expiry near i64::MIN (a wrapped `expires_in`) minus now wrapped to a
    // huge positive margin, and a `min_validity_ms` of 2^63 or more cast to a negative one;
    // either served an expired token as fresh (issue 10).
    let long_enough = match expires_at_ms {
        None => true,
        Some(at) => at.saturating_sub(now) > i64::try_from(min_validity_ms).unwrap_or(i64::MAX),
    };
    long_enough && !is_rejected_token(row, access)
}

pub fn is_rejected(row: &Row, pair: &TokenPair) -> bool {
    is_rejected_token(row, &pair.access)
}

#[inline]
fn is_rejected_token(row: &Row, access: &Secret) -> bool {
    row.rejected_fingerprint
        .as_deref()
        .is_some_and(|fp| fp == access.fingerprint())
}

/// OAuth error codes that mean the grant is gone for good (the provider's list).
pub fn is_terminal_reason(reason: &str) -> bool {
    crate::provider::ANTHROPIC.is_terminal_reason(reason)
}

/// A `reset_at` as epoch seconds: accepts epoch seconds, epoch milliseconds (> 1e12) and
/// ISO-8601, as a number or a string.
pub fn parse_reset_at_s(v: &Value) -> Option<f64> {
    let from_num = |n: f64| {
        if !n.is_finite() || n <= 0.0 {
            None
        } else if n > 1e12 {
            Some(n / 1000.0)
        } else {
            Some(n)
        }
    };
    match v {
        Value::Number(n) => n.as_f64().and_then(from_num),
        Value::String(s) => match s.trim().parse::<f64>() {
            Ok(n) => from_num(n),
            Err(_) => clock::parse_iso8601_ms(s).map(|ms| ms as f64 / 1000.0),
        },
        _ => None,
    }
}

/// The cooldown a bench of this status code gets when the caller gave no reset time.
pub fn ttl_for_code(code: Option<i64>) -> f64 {
    match code {
        Some(401) => TTL_401_S,
        Some(429) => TTL_429_S,
        _ => TTL_OTHER_S,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Availability {
    Available,
    /// Cooling down until this epoch ms.
    CoolingUntil(i64),
    Dead,
}

/// When an exhausted row comes back, in epoch ms. `sole` is true when it is the only
/// non-dead credential of the pool: then it is never benched for more than 60 s (unless
/// billing, 402, which waiting will not fix), since benching it locks the user out. That
/// cap wins over a caller's `reset_at`: a sole credential reported with a reset 10 minutes
/// ahead comes back after 60 s, and the API's next answer decides again.
pub fn available_at_ms(row: &Row, sole: bool) -> Availability {
    match row.last_status.as_deref() {
        Some(STATUS_DEAD) => Availability::Dead,
        Some(STATUS_EXHAUSTED) => {
            let now_s = clock::now_ms() as f64 / 1000.0;
            // A bench time in the future (another machine's clock, a hand edit, a hostile
            // file: 1e300 benched the row for ever) counts from now: every cap below
            // then holds.
            let since = row.last_status_at.unwrap_or(0.0).min(now_s);
            let mut until = match row.last_error_reset_at {
                Some(reset) => reset.min(since + RESET_AT_CAP_S),
                None => since + ttl_for_code(row.last_error_code),
            };
            if sole && row.last_error_code != Some(402) {
                until = until.min(since + SOLE_CREDENTIAL_MAX_S);
            }
            let until_ms = (until * 1000.0) as i64;
            if until_ms <= clock::now_ms() {
                Availability::Available
            } else {
                Availability::CoolingUntil(until_ms)
            }
        }
        _ => Availability::Available,
    }
}

/// The shared refresh back-off after `failures` consecutive transient failures: 60 s
/// doubling to at most an hour, or the server's own Retry-After when it is longer.
pub fn refresh_backoff_ms(failures: u32, retry_after_ms: Option<i64>) -> i64 {
    let exp = REFRESH_BACKOFF_MIN_MS.saturating_mul(1i64 << failures.saturating_sub(1).min(10));
    let b = exp.min(REFRESH_BACKOFF_MAX_MS);
    match retry_after_ms {
        Some(ra) => b.max(ra.min(REFRESH_BACKOFF_MAX_MS)),
        None => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn exhausted(code: i64, secs_ago: f64, reset: Option<f64>) -> Row {
        let mut r = Row::new_borrowed("a1b2c3".into(), 0);
        r.last_status = Some(STATUS_EXHAUSTED.into());
        r.last_status_at = Some(clock::now_ms() as f64 / 1000.0 - secs_ago);
        r.last_error_code = Some(code);
        r.last_error_reset_at = reset;
        r
    }

    #[test]
    fn cooldowns() {
        assert!(matches!(
            available_at_ms(&exhausted(429, 10.0, None), false),
            Availability::CoolingUntil(_)
        ));
        assert_eq!(
            available_at_ms(&exhausted(401, 301.0, None), false),
            Availability::Available
        );
        // Sole credential: at most 60 s, except billing.
        assert_eq!(
            available_at_ms(&exhausted(429, 61.0, None), true),
            Availability::Available
        );
        assert!(matches!(
            available_at_ms(&exhausted(402, 61.0, None), true),
            Availability::CoolingUntil(_)
        ));
        // reset_at wins, capped at 24 h.
        let now = clock::now_ms() as f64 / 1000.0;
        let Availability::CoolingUntil(u) =
            available_at_ms(&exhausted(429, 0.0, Some(now + 1e7)), false)
        else {
            panic!()
        };
        assert!((u as f64 / 1000.0 - (now + 86400.0)).abs() < 2.0);
        let mut dead = exhausted(401, 1e6, None);
        dead.last_status = Some("dead".into());
        assert_eq!(available_at_ms(&dead, true), Availability::Dead);
    }

    #[test]
    fn reset_at_forms() {
        assert_eq!(parse_reset_at_s(&json!(1788000000)), Some(1788000000.0));
        assert_eq!(
            parse_reset_at_s(&json!(1788000000000i64)),
            Some(1788000000.0)
        );
        assert_eq!(parse_reset_at_s(&json!("1788000000")), Some(1788000000.0));
        assert_eq!(parse_reset_at_s(&json!("1970-01-01T00:00:10Z")), Some(10.0));
        assert_eq!(parse_reset_at_s(&json!("soon")), None);
    }

    #[test]
    fn terminal_reasons_any_case() {
        assert!(is_terminal_reason("INVALID_GRANT"));
        assert!(is_terminal_reason("refresh_token_reused"));
        assert!(!is_terminal_reason("rate_limit_error"));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(refresh_backoff_ms(1, None), 60_000);
        assert_eq!(refresh_backoff_ms(2, None), 120_000);
        assert_eq!(refresh_backoff_ms(20, None), 3_600_000);
        assert_eq!(refresh_backoff_ms(1, Some(300_000)), 300_000);
    }
}
