//! What hap knows about an OAuth provider, as data: where its token endpoint is, who the
//! client is, what its tokens look like and which OAuth errors end a grant. Code that needs
//! one of these facts reads it from here, so a second provider is a second value (and a
//! `provider` config key choosing it), not edits across the crate.
//!
//! Anthropic ([`anthropic::ANTHROPIC`]) is the only provider today. Not data yet: the
//! request body's shape and how an answer is read (`refresh/oauth.rs`), and the client's own
//! credentials file (`store/credentials.rs`, Claude Code's `claudeAiOauth`).

pub mod anthropic;

pub use anthropic::ANTHROPIC;

/// One OAuth provider's facts.
#[derive(Debug)]
pub struct Provider {
    /// The token endpoints, tried in order (the config's `token_urls` default).
    pub token_urls: &'static [&'static str],
    /// The public OAuth client id the refresh POST sends (the config's `client_id` default).
    pub client_id: &'static str,
    /// Every token of this provider starts with this: the one redaction rule
    /// ([`crate::secret::redact_tokens`], [`crate::secret::looks_like_token`]).
    pub token_prefix: &'static str,
    /// An OAuth access token starts with this; any other token is an API key.
    pub oauth_access_prefix: &'static str,
    /// OAuth error codes that mean the grant is gone for good (compared ignoring ASCII case).
    pub terminal_reasons: &'static [&'static str],
}

impl Provider {
    /// Whether an OAuth error code means "log in again".
    pub fn is_terminal_reason(&self, reason: &str) -> bool {
        let reason = reason.trim();
        self.terminal_reasons
            .iter()
            .any(|t| t.eq_ignore_ascii_case(reason))
    }
}

#[cfg(test)]
mod tests {
    use super::ANTHROPIC;

    #[test]
    fn terminal_reasons_ignore_case_and_blanks() {
        assert!(ANTHROPIC.is_terminal_reason(" Invalid_Grant "));
        assert!(!ANTHROPIC.is_terminal_reason("rate_limited"));
    }
}
