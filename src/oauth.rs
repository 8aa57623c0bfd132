//! The token endpoint: one `grant_type=refresh_token` POST, tried URL by URL.
//!
//! Rules (SPEC §4.5, §5): JSON body; next URL only on 404 or a connection failure (a request
//! that may have reached a server may have spent the token, so it is never repeated
//! elsewhere); no redirects; bodies over 64 KiB refused; TLS verified (rustls, webpki
//! roots); `http://` only to loopback (enforced at config time). No response body and no
//! token ever reaches an error message.

use crate::config::Config;
use crate::secret::Secret;
use std::io::Read;
use std::time::Duration;

pub const MAX_BODY: u64 = 64 * 1024;
const DEFAULT_EXPIRES_IN_S: i64 = 3600;

#[derive(Debug)]
pub struct TokenResponse {
    pub access: Secret,
    pub refresh: Option<Secret>,
    pub expires_in_s: i64,
    pub scopes: Option<Vec<String>>,
}

#[derive(Debug)]
pub enum RefreshError {
    /// The grant is gone for good (`invalid_grant` and friends). `code` is the OAuth error.
    Terminal { code: String },
    /// Worth retrying later: network, timeout, 429, 5xx, a malformed body.
    Transient {
        why: String,
        http_status: Option<u16>,
        retry_after_ms: Option<i64>,
    },
}

pub struct TokenEndpoint {
    agent: ureq::Agent,
    urls: Vec<String>,
    client_id: String,
}

fn transient(why: impl Into<String>, http_status: Option<u16>) -> RefreshError {
    RefreshError::Transient {
        why: why.into(),
        http_status,
        retry_after_ms: None,
    }
}

/// Reads at most 64 KiB; `None` when the body is larger.
fn read_capped(resp: ureq::Response) -> Result<zeroize::Zeroizing<Vec<u8>>, RefreshError> {
    let mut buf = zeroize::Zeroizing::new(Vec::new());
    resp.into_reader()
        .take(MAX_BODY + 1)
        .read_to_end(&mut buf)
        .map_err(|e| {
            transient(
                format!("reading the token response failed: {}", e.kind()),
                None,
            )
        })?;
    if buf.len() as u64 > MAX_BODY {
        return Err(transient(
            "token response larger than 64 KiB refused",
            Some(200),
        ));
    }
    Ok(buf)
}

/// The `error` code of an OAuth error body, if it is a plain identifier (anything else is
/// not echoed, in case a server reflects the request).
fn oauth_error_code(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let code = match v.get("error")? {
        serde_json::Value::String(s) => s.clone(),
        // Anthropic sometimes nests: {"error": {"type": "...", "message": "..."}}
        serde_json::Value::Object(o) => o.get("type")?.as_str()?.to_string(),
        _ => return None,
    };
    // OAuth error codes are lowercase words joined by underscores (RFC 6749 §5.2). Anything
    // else is not echoed: a server (or proxy) may reflect the refresh token it was sent.
    let plain = !code.is_empty()
        && code.len() <= 40
        && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    plain.then_some(code)
}

fn retry_after_ms(resp: &ureq::Response) -> Option<i64> {
    let v = resp.header("retry-after")?.trim();
    if let Ok(s) = v.parse::<f64>() {
        return (s.is_finite() && s >= 0.0).then_some((s * 1000.0) as i64);
    }
    None
}

impl TokenEndpoint {
    pub fn new(cfg: &Config) -> TokenEndpoint {
        let agent = ureq::AgentBuilder::new()
            .redirects(0)
            .timeout(Duration::from_millis(cfg.http_timeout_ms))
            .user_agent(&cfg.user_agent)
            .build();
        TokenEndpoint {
            agent,
            urls: cfg.token_urls.clone(),
            client_id: cfg.client_id.clone(),
        }
    }

    /// One refresh, tried URL by URL. A panic inside the HTTP client (ureq 2.12 panics on a
    /// header line without a colon) is a malformed response, not a reason to retire the
    /// pool: it becomes a transient failure like any other bad body.
    pub fn refresh(&self, refresh_token: &Secret) -> Result<TokenResponse, RefreshError> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.refresh_inner(refresh_token)
        }))
        .unwrap_or_else(|_| Err(transient("token endpoint sent a malformed response", None)))
    }

    fn refresh_inner(&self, refresh_token: &Secret) -> Result<TokenResponse, RefreshError> {
        let body = zeroize::Zeroizing::new(
            serde_json::json!({
                "grant_type": "refresh_token",
                "refresh_token": refresh_token.expose(),
                "client_id": self.client_id,
            })
            .to_string(),
        );
        let mut last = transient("no token URL configured", None);
        for url in &self.urls {
            let result = self
                .agent
                .post(url)
                .set("Content-Type", "application/json")
                .set("Accept", "application/json")
                .send_string(&body);
            match result {
                Ok(resp) => return Self::parse_success(resp),
                Err(ureq::Error::Status(404, _)) => {
                    crate::log::debug(format_args!(
                        "token URL {url} answered 404; trying the next"
                    ));
                    last = transient("token endpoint answered 404", Some(404));
                }
                Err(ureq::Error::Status(code, resp)) => {
                    return Err(Self::classify_status(code, resp))
                }
                Err(ureq::Error::Transport(t)) => match t.kind() {
                    ureq::ErrorKind::Dns | ureq::ErrorKind::ConnectionFailed => {
                        crate::log::debug(format_args!(
                            "token URL {url} unreachable; trying the next"
                        ));
                        last = transient(
                            format!("cannot reach the token endpoint ({})", t.kind()),
                            None,
                        );
                    }
                    kind => {
                        return Err(transient(
                            format!("token endpoint request failed ({kind})"),
                            None,
                        ));
                    }
                },
            }
        }
        Err(last)
    }

    fn classify_status(code: u16, resp: ureq::Response) -> RefreshError {
        let retry_after = retry_after_ms(&resp);
        if code == 429 || code >= 500 {
            return RefreshError::Transient {
                why: format!("token endpoint answered {code}"),
                http_status: Some(code),
                retry_after_ms: retry_after,
            };
        }
        let body = read_capped(resp).ok();
        let oauth_code = body.as_deref().and_then(|b| oauth_error_code(b));
        match oauth_code {
            Some(c) if crate::policy::is_terminal_reason(&c) => RefreshError::Terminal { code: c },
            Some(c) => transient(format!("token endpoint answered {code} ({c})"), Some(code)),
            None => transient(format!("token endpoint answered {code}"), Some(code)),
        }
    }

    fn parse_success(resp: ureq::Response) -> Result<TokenResponse, RefreshError> {
        let code = resp.status();
        if code != 200 {
            // 3xx with redirects off, or an odd 2xx: never follow, never trust.
            return Err(transient(
                format!("token endpoint answered {code}; redirects are not followed"),
                Some(code),
            ));
        }
        let body = read_capped(resp)?;
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|_| transient("token endpoint sent a body that is not JSON", Some(200)))?;
        let access = match v.get("access_token").and_then(|a| a.as_str()) {
            Some(a) if !a.is_empty() => Secret::new(a),
            _ => return Err(transient("token response has no access_token", Some(200))),
        };
        let refresh = v
            .get("refresh_token")
            .and_then(|r| r.as_str())
            .filter(|r| !r.is_empty())
            .map(Secret::new);
        let expires_in_s = v
            .get("expires_in")
            .and_then(crate::credentials::json_ms)
            .filter(|e| *e > 0)
            .unwrap_or(DEFAULT_EXPIRES_IN_S);
        let scopes = v
            .get("scope")
            .and_then(|s| s.as_str())
            .map(|s| s.split_whitespace().map(str::to_string).collect());
        // `v` holds copies of the tokens; serde_json::Value cannot be zeroized in place, so
        // drop it here, as early as possible.
        drop(v);
        Ok(TokenResponse {
            access,
            refresh,
            expires_in_s,
            scopes,
        })
    }
}
