//! Anthropic's OAuth facts (Claude Code's login).

use super::Provider;

pub const ANTHROPIC: Provider = Provider {
    token_urls: &[
        "https://platform.claude.com/v1/oauth/token",
        "https://console.anthropic.com/v1/oauth/token",
    ],
    client_id: "9d1c250a-e61b-44d9-88ed-5944d1962f5e",
    token_prefix: "sk-ant-",
    oauth_access_prefix: "sk-ant-oat",
    terminal_reasons: &[
        "invalid_grant",
        "invalid_token",
        "token_revoked",
        "token_invalidated",
        "unauthorized_client",
        "refresh_token_reused",
    ],
};
