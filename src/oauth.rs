//! The token endpoint: one `grant_type=refresh_token` POST, tried URL by URL.
//!
//! Rules (docs/SPEC.md): JSON body; next URL only on 404 or a connection failure (a request
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

/// Stack of the POST thread. A refresh goes ~28 KiB deep in a release build over TLS
/// (~64 KiB over plain HTTP in a debug build): crate::alloc::SCRUB_STACK (128 KiB) covers
/// it with room to spare, and the scrub itself must fit below the thread's first frames.
const POST_STACK: usize = 512 * 1024;

fn malformed() -> RefreshError {
    transient("token endpoint sent a malformed response", None)
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
            // No idle connection is kept: its read buffer would hold the last answer, both
            // tokens in clear, for as long as the pool is open (tests/memory_scan.rs), and a
            // refresh comes once an hour, long after a kept connection would be of use.
            .max_idle_connections(0)
            .timeout(Duration::from_millis(cfg.http_timeout_ms))
            .user_agent(&cfg.user_agent)
            .build();
        TokenEndpoint {
            agent,
            urls: cfg.token_urls.clone(),
            client_id: cfg.client_id.clone(),
        }
    }

    /// One refresh, tried URL by URL, on a short-lived thread of its own whose stack is
    /// zeroed before it ends. The request body, with the refresh token, passes through an
    /// 8 KiB stack buffer (`std::io::copy` inside ureq), and TLS and JSON parsing leave
    /// bytes in dead frames too: on the caller's thread they would stay in the host's stack
    /// (found there by tests/memory_scan.rs), and a host thread's stack cannot be zeroed
    /// safely because its size is unknown; this one's is known. If no thread can be
    /// started, the POST runs on the caller's thread as before.
    pub fn refresh(&self, refresh_token: &Secret) -> Result<TokenResponse, RefreshError> {
        std::thread::scope(|s| {
            let post = std::thread::Builder::new()
                .name("hap-refresh".into())
                .stack_size(POST_STACK)
                .spawn_scoped(s, || {
                    let r = self.post(refresh_token);
                    crate::alloc::scrub_stack();
                    r
                });
            match post {
                Ok(thread) => thread.join().unwrap_or_else(|_| Err(malformed())),
                Err(_) => self.post(refresh_token),
            }
        })
    }

    /// A panic inside the HTTP client (ureq 2.12 panics on a header line without a colon) is
    /// a malformed response, not a reason to retire the pool: it becomes a transient failure
    /// like any other bad body.
    fn post(&self, refresh_token: &Secret) -> Result<TokenResponse, RefreshError> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.refresh_inner(refresh_token)
        }))
        .unwrap_or_else(|_| Err(malformed()))
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
                Ok(resp) => return Self::answer(resp),
                Err(ureq::Error::Status(404, _)) => {
                    crate::log::debug(format_args!(
                        "token URL {url} answered 404; trying the next"
                    ));
                    last = transient("token endpoint answered 404", Some(404));
                }
                Err(ureq::Error::Status(_, resp)) => return Self::answer(resp),
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

    /// Reads what `interpret_answer` needs from a response: Retry-After only of a 429/5xx,
    /// the body only of a 200 (a read error is then the answer) or of another 4xx (best
    /// effort: the OAuth code).
    fn answer(resp: ureq::Response) -> Result<TokenResponse, RefreshError> {
        let status = resp.status();
        let throttled = status == 429 || status >= 500;
        let retry_after = if throttled {
            retry_after_ms(&resp)
        } else {
            None
        };
        let body = if status == 200 {
            read_capped(resp)?
        } else if (400..500).contains(&status) && !throttled {
            read_capped(resp).unwrap_or_default()
        } else {
            zeroize::Zeroizing::new(Vec::new())
        };
        interpret_answer(status, &body, retry_after)
    }
}

/// What an answer of the token endpoint means, from its status, its body (already capped at
/// 64 KiB; ignored unless the status is 200 or a 4xx other than 429) and its Retry-After.
/// 404 and connection failures never get here: the caller moves on to the next URL.
/// Public so that `fuzz/` can drive it without a socket (~10x the inputs per second of
/// going through HTTP).
pub fn interpret_answer(
    status: u16,
    body: &[u8],
    retry_after_ms: Option<i64>,
) -> Result<TokenResponse, RefreshError> {
    if status == 429 || status >= 500 {
        return Err(RefreshError::Transient {
            why: format!("token endpoint answered {status}"),
            http_status: Some(status),
            retry_after_ms,
        });
    }
    if (400..500).contains(&status) {
        return Err(match oauth_error_code(body) {
            Some(c) if crate::policy::is_terminal_reason(&c) => RefreshError::Terminal { code: c },
            Some(c) => transient(
                format!("token endpoint answered {status} ({c})"),
                Some(status),
            ),
            None => transient(format!("token endpoint answered {status}"), Some(status)),
        });
    }
    if status != 200 {
        // 3xx with redirects off, or an odd 1xx/2xx: never follow, never trust.
        return Err(transient(
            format!("token endpoint answered {status}; redirects are not followed"),
            Some(status),
        ));
    }
    let v: serde_json::Value = serde_json::from_slice(body)
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

#[cfg(test)]
mod tests {
    use super::{interpret_answer, RefreshError};

    fn transient_why(r: Result<super::TokenResponse, RefreshError>) -> (String, Option<i64>) {
        match r {
            Err(RefreshError::Transient {
                why,
                retry_after_ms,
                ..
            }) => (why, retry_after_ms),
            other => panic!("expected a transient failure, got {other:?}"),
        }
    }

    #[test]
    fn a_200_with_an_access_token_is_a_token() {
        let body = br#"{"access_token":"a1","refresh_token":"r1","expires_in":60,"scope":"x y"}"#;
        let t = interpret_answer(200, body, None).unwrap();
        assert_eq!(t.access.expose(), "a1");
        assert_eq!(t.refresh.unwrap().expose(), "r1");
        assert_eq!(t.expires_in_s, 60);
        assert_eq!(t.scopes.unwrap(), ["x", "y"]);
    }

    #[test]
    fn invalid_grant_is_terminal() {
        let r = interpret_answer(400, br#"{"error":"invalid_grant"}"#, None);
        assert!(matches!(r, Err(RefreshError::Terminal { code }) if code == "invalid_grant"));
    }

    #[test]
    fn a_reflected_refresh_token_is_not_echoed() {
        let (why, _) = transient_why(interpret_answer(
            400,
            br#"{"error":"sk-ant-ort01-reflected"}"#,
            None,
        ));
        assert_eq!(why, "token endpoint answered 400");
    }

    #[test]
    fn throttling_keeps_retry_after_and_ignores_the_body() {
        let body = br#"{"access_token":"a1"}"#;
        assert_eq!(
            transient_why(interpret_answer(429, body, Some(30_000))),
            ("token endpoint answered 429".to_string(), Some(30_000))
        );
        assert_eq!(transient_why(interpret_answer(503, body, None)).1, None);
    }

    #[test]
    fn redirects_and_odd_successes_are_not_trusted() {
        for status in [201, 204, 301, 302] {
            let (why, _) =
                transient_why(interpret_answer(status, br#"{"access_token":"a1"}"#, None));
            assert!(why.contains("redirects are not followed"), "{why}");
        }
    }
}
