//! The token endpoint: one `grant_type=refresh_token` POST, tried URL by URL.
//!
//! Rules (docs/SPEC.md): JSON body; next URL only on 404 or a connection failure (a request
//! that may have reached a server may have spent the token, so it is never repeated
//! elsewhere); no redirects; bodies over 64 KiB refused; TLS verified (rustls, webpki
//! roots); `http://` only to loopback (enforced at config time). No response body and no
//! token ever reaches an error message. The POST itself is `oauth/http.rs`: a wall-clock
//! deadline that still reads an answer already waiting in the socket, and an outcome that
//! says whether the request went out (and so whether the token may be spent).

use crate::config::Config;
use crate::secret::Secret;
use std::time::Duration;

mod http;

pub const MAX_BODY: u64 = 64 * 1024;
const DEFAULT_EXPIRES_IN_S: i64 = 3600;
/// The longest lifetime hap believes a token endpoint gives an access token: one year
/// (Anthropic's are 8 hours). A larger `expires_in` is clamped to this: 9.3e15 once wrapped
/// `expiresAt` negative in Claude Code's file (a token "fresh" forever) and, in a debug
/// build, panicked after the POST and lost the pair (issue 10, item 4).
pub(crate) const MAX_EXPIRES_IN_S: i64 = 365 * 24 * 3600;

#[derive(Debug)]
pub struct TokenResponse {
    pub access: Secret,
    pub refresh: Option<Secret>,
    /// Seconds, in `1..=MAX_EXPIRES_IN_S`.
    pub expires_in_s: i64,
    pub scopes: Option<Vec<String>>,
    /// `refresh_token_expires_in`, seconds, in `1..=MAX_EXPIRES_IN_S`.
    pub refresh_expires_in_s: Option<i64>,
    /// `account.uuid` and `organization.uuid`.
    pub account_uuid: Option<String>,
    pub organization_uuid: Option<String>,
}

impl TokenResponse {
    /// What the answer says about the login besides the pair, as Claude Code keeps it.
    pub fn issued(&self, now_ms: i64) -> crate::credentials::Issued {
        crate::credentials::Issued {
            scopes: self.scopes.clone(),
            refresh_expires_at_ms: self
                .refresh_expires_in_s
                .map(|s| now_ms.saturating_add(s.saturating_mul(1000))),
            account_uuid: self.account_uuid.clone(),
            organization_uuid: self.organization_uuid.clone(),
        }
    }
}

/// Built from the credentials file's login (`store/credentials.rs`).
pub use crate::credentials::RequestShape;

#[derive(Debug)]
pub enum RefreshError {
    /// The grant is gone for good (`invalid_grant` and friends). `code` is the OAuth error.
    Terminal { code: String },
    /// Worth retrying later, and the refresh token was not spent: network, 429, 5xx,
    /// another 4xx, a redirect, a request that never went out whole.
    Transient {
        why: String,
        http_status: Option<u16>,
        retry_after_ms: Option<i64>,
    },
    /// The request reached the server and no usable answer came back: a timeout after
    /// sending, a connection closed mid-answer, a 200 whose body holds no usable token. The
    /// server may have spent the refresh token ("possibly spent" in `refresh.rs`).
    Unanswered { why: String },
}

pub struct TokenEndpoint {
    urls: Vec<String>,
    client_id: String,
    user_agent: String,
    timeout: Duration,
}

/// Stack of the POST thread. A refresh goes ~28 KiB deep in a release build over TLS
/// (~64 KiB over plain HTTP in a debug build): crate::alloc::SCRUB_STACK (128 KiB) covers
/// it with room to spare, and the scrub itself must fit below the thread's first frames.
const POST_STACK: usize = 512 * 1024;

fn transient(why: impl Into<String>, http_status: Option<u16>) -> RefreshError {
    RefreshError::Transient {
        why: why.into(),
        http_status,
        retry_after_ms: None,
    }
}

fn unanswered(why: impl Into<String>) -> RefreshError {
    RefreshError::Unanswered { why: why.into() }
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

fn retry_after_ms(v: &str) -> Option<i64> {
    if let Ok(s) = v.trim().parse::<f64>() {
        return (s.is_finite() && s >= 0.0).then_some((s * 1000.0) as i64);
    }
    None
}

/// Whose body `answer` reads: a 200's (the token) and another 4xx's (the OAuth code).
fn want_body(status: u16) -> bool {
    status == 200 || ((400..500).contains(&status) && status != 429)
}

/// A token hap may store and hand out: no control character anywhere. A newline, CR or NUL
/// in a token would split or cut every file line, header and shell variable it goes into
/// (issue 10, item 18), so an answer holding one is malformed.
fn usable_token(t: &str) -> bool {
    !t.is_empty() && !t.chars().any(char::is_control)
}

impl TokenEndpoint {
    pub fn new(cfg: &Config) -> TokenEndpoint {
        TokenEndpoint {
            urls: cfg.token_urls.clone(),
            client_id: cfg.client_id.clone(),
            user_agent: cfg.user_agent.clone(),
            timeout: Duration::from_millis(cfg.http_timeout_ms),
        }
    }

    /// One refresh, tried URL by URL, on a short-lived thread of its own whose stack is
    /// zeroed before it ends. The request body, with the refresh token, and TLS and JSON
    /// parsing leave bytes in dead stack frames: on the caller's thread they would stay in
    /// the host's stack (found there by tests/memory_scan.rs), and a host thread's stack
    /// cannot be zeroed safely because its size is unknown; this one's is known. If no
    /// thread can be started, the POST runs on the caller's thread.
    pub fn refresh(&self, refresh_token: &Secret) -> Result<TokenResponse, RefreshError> {
        self.refresh_with(refresh_token, &RequestShape::default())
    }

    /// [`refresh`](Self::refresh) with the body shaped for the login (`RequestShape`).
    pub fn refresh_with(
        &self,
        refresh_token: &Secret,
        shape: &RequestShape,
    ) -> Result<TokenResponse, RefreshError> {
        std::thread::scope(|s| {
            let post = std::thread::Builder::new()
                .name("hap-refresh".into())
                .stack_size(POST_STACK)
                .spawn_scoped(s, || {
                    let r = self.post(refresh_token, shape);
                    crate::alloc::scrub_stack();
                    r
                });
            match post {
                Ok(thread) => thread.join().unwrap_or_else(|_| {
                    Err(unanswered("token endpoint sent a malformed response"))
                }),
                Err(_) => self.post(refresh_token, shape),
            }
        })
    }

    /// A panic while reading an answer is a malformed answer, not a reason to retire the
    /// pool; it may come after the request went out, so the token may be spent.
    fn post(
        &self,
        refresh_token: &Secret,
        shape: &RequestShape,
    ) -> Result<TokenResponse, RefreshError> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.refresh_inner(refresh_token, shape)
        }))
        .unwrap_or_else(|_| Err(unanswered("token endpoint sent a malformed response")))
    }

    fn refresh_inner(
        &self,
        refresh_token: &Secret,
        shape: &RequestShape,
    ) -> Result<TokenResponse, RefreshError> {
        let body = zeroize::Zeroizing::new(body(
            refresh_token,
            shape.client_id.as_deref().unwrap_or(&self.client_id),
            shape.scope.as_deref(),
        ));
        let mut last = transient("no token URL configured", None);
        for url in &self.urls {
            let result = http::post(&http::Request {
                url,
                user_agent: &self.user_agent,
                body: body.as_bytes(),
                timeout: self.timeout,
                max_body: MAX_BODY as usize,
                want_body,
            });
            match result {
                Ok(reply) if reply.status == 404 => {
                    crate::log::debug(format_args!(
                        "token URL {url} answered 404; trying the next"
                    ));
                    last = transient("token endpoint answered 404", Some(404));
                }
                Ok(reply) => return Self::answer(reply),
                Err(http::PostError::Unreachable(why)) => {
                    crate::log::debug(format_args!("token URL {url}: {why}; trying the next"));
                    last = transient(why, None);
                }
                Err(http::PostError::NotSent(why)) => return Err(transient(why, None)),
                Err(http::PostError::NoAnswer(why)) => return Err(unanswered(why)),
            }
        }
        Err(last)
    }

    /// What `interpret_answer` needs from a reply: Retry-After only of a 429/5xx, the body
    /// of a 200 (one that could not be read whole is unanswered: the token may be spent) or
    /// of another 4xx (best effort: the OAuth code).
    fn answer(reply: http::Reply) -> Result<TokenResponse, RefreshError> {
        let status = reply.status;
        let retry_after = if status == 429 || status >= 500 {
            reply.retry_after.as_deref().and_then(retry_after_ms)
        } else {
            None
        };
        let body = match reply.body {
            http::Body::Complete(b) => b,
            http::Body::TooLarge if status == 200 => {
                return Err(unanswered("token response larger than 64 KiB refused"))
            }
            http::Body::Failed(why) if status == 200 => return Err(unanswered(why)),
            _ => zeroize::Zeroizing::new(Vec::new()),
        };
        interpret_answer(status, &body, retry_after)
    }
}

/// The JSON body, keys in Claude Code's order: `grant_type`, `refresh_token`, `client_id`,
/// `scope` (when there is one).
pub fn body(refresh_token: &Secret, client_id: &str, scope: Option<&str>) -> String {
    let mut v = serde_json::json!({
        "grant_type": "refresh_token",
        "refresh_token": refresh_token.expose(),
        "client_id": client_id,
    });
    if let Some(scope) = scope {
        v["scope"] = scope.into();
    }
    v.to_string()
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
    // A 200 may have spent the refresh token: one without a usable token is unanswered.
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| unanswered("token endpoint sent a body that is not JSON"))?;
    let access = match v.get("access_token").and_then(|a| a.as_str()) {
        Some(a) if usable_token(a) => Secret::new(a),
        Some(a) if !a.is_empty() => {
            return Err(unanswered(
                "token response has an access_token with control characters",
            ))
        }
        _ => return Err(unanswered("token response has no access_token")),
    };
    let refresh = match v.get("refresh_token").and_then(|r| r.as_str()) {
        None | Some("") => None,
        Some(r) if usable_token(r) => Some(Secret::new(r)),
        Some(_) => {
            return Err(unanswered(
                "token response has a refresh_token with control characters",
            ))
        }
    };
    let expires_in_s = v
        .get("expires_in")
        .and_then(crate::credentials::json_ms)
        .filter(|e| *e > 0)
        .map_or(DEFAULT_EXPIRES_IN_S, |e| e.min(MAX_EXPIRES_IN_S));
    let scopes = v
        .get("scope")
        .and_then(|s| s.as_str())
        .map(|s| s.split_whitespace().map(str::to_string).collect());
    let refresh_expires_in_s = v
        .get("refresh_token_expires_in")
        .and_then(crate::credentials::json_ms)
        .filter(|e| *e > 0)
        .map(|e| e.min(MAX_EXPIRES_IN_S));
    // A uuid is kept only when it looks like one: it goes into Claude Code's file.
    let uuid = |key: &str| {
        v.get(key)
            .and_then(|o| o.get("uuid"))
            .and_then(|u| u.as_str())
            .filter(|u| {
                !u.is_empty()
                    && u.len() <= 64
                    && u.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
            })
            .map(str::to_string)
    };
    let account_uuid = uuid("account");
    let organization_uuid = uuid("organization");
    // `v` holds copies of the tokens; serde_json::Value cannot be zeroized in place, so
    // drop it here, as early as possible.
    drop(v);
    Ok(TokenResponse {
        access,
        refresh,
        expires_in_s,
        scopes,
        refresh_expires_in_s,
        account_uuid,
        organization_uuid,
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

    fn unanswered_why(r: Result<super::TokenResponse, RefreshError>) -> String {
        match r {
            Err(RefreshError::Unanswered { why }) => why,
            other => panic!("expected an unanswered refresh, got {other:?}"),
        }
    }

    /// Issue 10, item 18: a control character in either token makes the answer malformed;
    /// it is never stored or served, and the error does not echo it.
    #[test]
    fn tokens_with_control_characters_are_a_malformed_answer() {
        for bad in [
            r"a\n1",
            r"a\r1",
            r"a\u00001",
            r"\u001b[0ma1",
            r"a1\u007f",
            r"a1\t",
            r"a\u00851",
        ] {
            for body in [
                format!(r#"{{"access_token":"{bad}","refresh_token":"r1","expires_in":60}}"#),
                format!(r#"{{"access_token":"a1","refresh_token":"{bad}","expires_in":60}}"#),
            ] {
                let why = unanswered_why(interpret_answer(200, body.as_bytes(), None));
                assert!(why.contains("control characters"), "{why}");
                assert!(!why.contains("a1") && !why.contains("r1"), "{why}");
            }
        }
        // Other non-ASCII text is not a control character.
        let ok = r#"{"access_token":"a1é","refresh_token":"r1"}"#;
        assert!(interpret_answer(200, ok.as_bytes(), None).is_ok());
    }

    /// Issue 10, item 4: `expires_in` is clamped to a year; 9.3e15 once wrapped `expiresAt`.
    #[test]
    fn expires_in_is_clamped_to_a_year() {
        for e in [
            "9300000000000000",
            "9223372036854775807",
            "1e300",
            "31536001",
        ] {
            let body = format!(r#"{{"access_token":"a1","expires_in":{e}}}"#);
            let t = interpret_answer(200, body.as_bytes(), None).unwrap();
            assert_eq!(t.expires_in_s, super::MAX_EXPIRES_IN_S, "{e}");
        }
        for e in ["0", "-5", r#""x""#, "null"] {
            let body = format!(r#"{{"access_token":"a1","expires_in":{e}}}"#);
            let t = interpret_answer(200, body.as_bytes(), None).unwrap();
            assert_eq!(t.expires_in_s, 3600, "{e}");
        }
    }

    #[test]
    fn a_200_without_a_usable_token_may_have_spent_it() {
        for body in [&b"not json{"[..], br#"{"access_token":""}"#, br#"{"x":1}"#] {
            unanswered_why(interpret_answer(200, body, None));
        }
    }
}
