//! Token material. A [`Secret`] zeroes its bytes when dropped and never prints itself:
//! `Debug` shows only its fingerprint, so a stray `{:?}` in a log or panic cannot leak it.

use crate::provider::ANTHROPIC;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(Zeroizing::new(s.into()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `"sha256:" + first 16 hex of sha256(secret)`: the form the pool file stores for
    /// borrowed rows (`secret_fingerprint`) and the journal stores for spent refresh tokens.
    pub fn fingerprint(&self) -> String {
        fingerprint(self.expose())
    }
}

pub fn fingerprint(s: &str) -> String {
    let digest = Sha256::digest(s.as_bytes());
    let mut out = String::with_capacity(7 + 16);
    out.push_str("sha256:");
    for b in &digest[..8] {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({})", self.fingerprint())
    }
}

/// Anthropic OAuth access tokens start with this; everything else is an API key.
pub fn is_oauth_token(token: &str) -> bool {
    token.starts_with(ANTHROPIC.oauth_access_prefix)
}

/// The one redaction rule: text holding the provider's token prefix holds a token. Callers
/// remove control characters first (a DEL between `s` and `k-ant-` must not hide one: fuzz
/// finding 5).
pub fn looks_like_token(text: &str) -> bool {
    text.contains(ANTHROPIC.token_prefix)
}

/// Replaces every token in `text` (the prefix and the `[A-Za-z0-9_-]` run after it) with
/// `[redacted]`, by the rule of [`looks_like_token`].
pub fn redact_tokens(text: &str) -> String {
    let prefix = ANTHROPIC.token_prefix;
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(prefix) {
        out.push_str(&rest[..i]);
        out.push_str("[redacted]");
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .unwrap_or(tail.len());
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_redaction_rule() {
        assert!(looks_like_token("x sk-ant-oat01-fake-a1 y"));
        assert!(!looks_like_token("sk-other"));
        assert_eq!(
            redact_tokens("a sk-ant-ort01-fake_b2, then sk-ant-oat01-fake-c3"),
            "a [redacted], then [redacted]"
        );
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let s = Secret::new("sk-ant-oat01-fake-a1");
        let shown = format!("{s:?}");
        assert!(!shown.contains("fake-a1"), "{shown}");
        assert!(shown.starts_with("Secret(sha256:"));
    }

    #[test]
    fn fingerprint_is_sha256_prefix() {
        // sha256("abc") = ba7816bf8f01cfea...
        assert_eq!(fingerprint("abc"), "sha256:ba7816bf8f01cfea");
    }
}
