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
                        _ => Some(v.as_u64().ok_or_else(|| {
                            Error::invalid("'min_validity_ms' must be a non-negative integer")
                        })?),
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
        Ok(r)
    }
}

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
                        _ => Some(crate::policy::parse_reset_at_s(&v).ok_or_else(|| {
                            Error::invalid(
                                "'reset_at' must be epoch seconds, epoch milliseconds or ISO-8601",
                            )
                        })?),
                    }
                }
                "retry_after_s" => {
                    f.retry_after_s = match &v {
                        Value::Null => None,
                        _ => Some(
                            v.as_f64()
                                .filter(|s| s.is_finite() && *s >= 0.0)
                                .ok_or_else(|| {
                                    Error::invalid("'retry_after_s' must be a non-negative number")
                                })?,
                        ),
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
        Ok(f)
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
