//! The JSON arguments of `hap_resolve_token` and `hap_report_failure`, validated strictly:
//! an unknown or ill-typed key is an `INVALID_ARGUMENT` that names the key.

use crate::error::{Error, Result};
use serde_json::{Map, Value};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResolveRequest {
    pub min_validity_ms: Option<u64>,
    pub credential_id: Option<String>,
    pub force_refresh: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    pub credential_id: String,
    pub status_code: u16,
    pub reason: Option<String>,
    pub message: Option<String>,
    /// Epoch seconds, already normalised from seconds, milliseconds or ISO-8601.
    pub reset_at_s: Option<f64>,
    pub retry_after_s: Option<f64>,
}

fn object(json: Option<&str>, what: &str) -> Result<Map<String, Value>> {
    let Some(json) = json else {
        return Ok(Map::new());
    };
    match serde_json::from_str::<Value>(json) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Error::invalid(format!("{what} must be a JSON object"))),
        // serde_json's syntax errors quote positions, never input text.
        Err(e) => Err(Error::invalid(format!("{what} is not valid JSON: {e}"))),
    }
}

fn opt_string(key: &str, v: &Value) -> Result<Option<String>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(Error::invalid(format!("'{key}' must be a string"))),
    }
}

impl ResolveRequest {
    pub fn from_json(json: Option<&str>) -> Result<ResolveRequest> {
        let mut r = ResolveRequest::default();
        for (k, v) in object(json, "request")? {
            match k.as_str() {
                "min_validity_ms" => {
                    r.min_validity_ms = match &v {
                        Value::Null => None,
                        _ => Some(crate::config::ms_in_range(
                            &k,
                            "",
                            &v,
                            0,
                            crate::config::MAX_VALIDITY_MS,
                        )?),
                    }
                }
                "credential_id" => r.credential_id = opt_string(&k, &v)?,
                "force_refresh" => {
                    r.force_refresh = match &v {
                        Value::Null => false,
                        _ => v.as_bool().ok_or_else(|| {
                            Error::invalid("'force_refresh' must be true or false")
                        })?,
                    }
                }
                other => {
                    return Err(Error::invalid(format!(
                        "unknown request key '{}'",
                        crate::error::shown(other)
                    )))
                }
            }
        }
        r.check()?;
        Ok(r)
    }

    /// The ranges `from_json` enforces, for a request built in Rust (the CLI): 2^63 ms or
    /// more turned negative in the freshness test and served an expired token (issue 10).
    pub fn check(&self) -> Result<()> {
        let max = crate::config::MAX_VALIDITY_MS;
        match self.min_validity_ms {
            Some(ms) if ms > max => Err(crate::config::range_error("min_validity_ms", "", 0, max)),
            _ => Ok(()),
        }
    }
}

/// The latest `reset_at` accepted: the last second of year 9999. Anything later is not a
/// time anyone meant (and the cooldown is capped at 24 h anyway).
pub(crate) const MAX_RESET_AT_S: f64 = 253_402_300_799.0;
/// The longest `retry_after_s` accepted: a year.
pub(crate) const MAX_RETRY_AFTER_S: f64 = 31_536_000.0;

const RESET_AT_RULE: &str =
    "'reset_at' must be epoch seconds, epoch milliseconds or ISO-8601, from 1970 to the year 9999";
const RETRY_AFTER_RULE: &str = "'retry_after_s' must be a number of seconds from 0 to 31536000";

impl Failure {
    pub fn from_json(json: Option<&str>) -> Result<Failure> {
        let Some(json) = json else {
            return Err(Error::invalid("failure JSON is required"));
        };
        let mut id = None;
        let mut code = None;
        let mut f = Failure {
            credential_id: String::new(),
            status_code: 0,
            reason: None,
            message: None,
            reset_at_s: None,
            retry_after_s: None,
        };
        for (k, v) in object(Some(json), "failure")? {
            match k.as_str() {
                "credential_id" => id = opt_string(&k, &v)?,
                "status_code" => {
                    code = Some(
                        v.as_u64()
                            .filter(|c| (100..=599).contains(c))
                            .ok_or_else(|| {
                                Error::invalid("'status_code' must be an HTTP status (100-599)")
                            })? as u16,
                    )
                }
                "reason" => f.reason = opt_string(&k, &v)?,
                "message" => f.message = opt_string(&k, &v)?,
                "reset_at" => {
                    f.reset_at_s = match &v {
                        Value::Null => None,
                        _ => Some(
                            crate::policy::parse_reset_at_s(&v)
                                .ok_or_else(|| Error::invalid(RESET_AT_RULE))?,
                        ),
                    }
                }
                "retry_after_s" => {
                    f.retry_after_s = match &v {
                        Value::Null => None,
                        _ => Some(v.as_f64().ok_or_else(|| Error::invalid(RETRY_AFTER_RULE))?),
                    }
                }
                other => {
                    return Err(Error::invalid(format!(
                        "unknown failure key '{}'",
                        crate::error::shown(other)
                    )))
                }
            }
        }
        f.credential_id = id
            .filter(|i| !i.is_empty())
            .ok_or_else(|| Error::invalid("'credential_id' is required"))?;
        f.status_code = code.ok_or_else(|| Error::invalid("'status_code' is required"))?;
        f.check()?;
        Ok(f)
    }

    /// The ranges `from_json` enforces, for a failure built in Rust (the CLI's `hap
    /// report`): a time that is not finite or centuries away must not reach the cooldown
    /// arithmetic.
    pub fn check(&self) -> Result<()> {
        if !(100..=599).contains(&self.status_code) {
            return Err(Error::invalid(
                "'status_code' must be an HTTP status (100-599)",
            ));
        }
        if self
            .reset_at_s
            .is_some_and(|s| !(s.is_finite() && s > 0.0 && s <= MAX_RESET_AT_S))
        {
            return Err(Error::invalid(RESET_AT_RULE));
        }
        if self
            .retry_after_s
            .is_some_and(|s| !(s.is_finite() && (0.0..=MAX_RETRY_AFTER_S).contains(&s)))
        {
            return Err(Error::invalid(RETRY_AFTER_RULE));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_keys() {
        assert!(ResolveRequest::from_json(Some(r#"{"force":true}"#))
            .unwrap_err()
            .message
            .contains("force"));
        assert_eq!(
            ResolveRequest::from_json(None).unwrap(),
            ResolveRequest::default()
        );
        assert!(Failure::from_json(Some(r#"{"credential_id":"a"}"#)).is_err());
        assert!(Failure::from_json(Some(r#"{"credential_id":"a","status_code":"429"}"#)).is_err());
        let f = Failure::from_json(Some(
            r#"{"credential_id":"a","status_code":429,"reset_at":"1970-01-01T00:01:00Z"}"#,
        ))
        .unwrap();
        assert_eq!(f.reset_at_s, Some(60.0));
    }
}
