#!/usr/bin/env python3
"""Writes the hand-made seed inputs of every fuzz target into fuzz/seeds/<target>/.

Realistic documents: Claude Code's credentials file, Hermes Agent's auth.json with several
providers and unknown keys, the configs of docs/ABI.md, token endpoint answers. Fake tokens stay
short (a long sk-ant-...01- string looks real to the commit hook). Re-run after editing;
the files are committed, and tests/fuzz_corpus.rs replays them with the corpus.
"""
import json
import pathlib
import shutil

HERE = pathlib.Path(__file__).resolve().parent
OUT = HERE / "seeds"

A1, R1 = "sk-ant-oat01-fake-a1", "sk-ant-ort01-fake-r1"
A2, R2 = "sk-ant-oat01-fake-a2", "sk-ant-ort01-fake-r2"
FAR = 4102444800000

CREDS = {
    "claudeAiOauth": {
        "accessToken": A1,
        "refreshToken": R1,
        "expiresAt": FAR,
        "scopes": ["user:inference", "user:profile", "user:sessions:claude_code"],
        "subscriptionType": "max",
        "rateLimitTier": "default_claude_max_20x",
    },
    "otherTool": {"keep": True},
}

ROW_CC = {
    "id": "a1b2c3", "label": "claude_code", "auth_type": "oauth", "priority": 0,
    "source": "claude_code", "access_token": None, "refresh_token": None,
    "expires_at_ms": FAR, "last_status": None, "last_status_at": None,
    "last_error_code": None, "last_error_reason": None, "last_error_message": None,
    "last_error_reset_at": None, "request_count": 3,
    "secret_fingerprint": "sha256:0123456789abcdef",
}
ROW_MANUAL = {
    "id": "d4e5f6", "label": "work", "auth_type": "oauth", "priority": 1,
    "source": "manual", "access_token": A2, "refresh_token": R2,
    "expires_at_ms": 1788003600000, "last_status": "exhausted",
    "last_status_at": 1788000000.5, "last_error_code": 429,
    "last_error_reason": "rate_limit_error", "last_error_message": "Rate limited",
    "last_error_reset_at": 1788003600.0, "request_count": 12,
    "x_hermes_note": {"added_by": "hermes 0.9", "tags": ["a", "b"]},
}
ROW_KEY = {"id": "0a0b0c", "label": "api", "auth_type": "api_key", "priority": 2,
           "source": "manual:env", "access_token": "sk-ant-api03-fake-k1",
           "hap_rejected_fingerprint": "sha256:fedcba9876543210"}
HERMES = {
    "version": 1,
    "providers": {
        "nous": {"access_token": "nous-fake-1", "refresh_token": "nous-fake-2",
                 "expires_at": "2100-01-01T00:00:00+00:00", "portal_base_url": "https://x"},
        "openai-codex": {"tokens": {"id_token": "x", "account_id": "acct"}},
    },
    "active_provider": "anthropic",
    "credential_pool": {
        "anthropic": [ROW_CC, ROW_MANUAL, ROW_KEY],
        "openrouter": [{"id": "ffffff", "label": "or", "auth_type": "api_key",
                        "access_token": "sk-or-v1-fake", "source": "env:OPENROUTER_API_KEY"}],
        "nous": [],
    },
    "updated_at": "2026-11-28T19:52:56.123456+00:00",
    "future_key": [1, 2.5, None, True, {"deep": {"deeper": "x"}}],
}

def dumps(v, pretty=False):
    return json.dumps(v, indent=2 if pretty else None) + ("\n" if pretty else "")

SEEDS = {}

def add(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    SEEDS.setdefault(target, []).append((name, data))

# --- config ----------------------------------------------------------------------------
typical = {"pool_path": "/tmp/h/hermes/auth.json",
           "credentials_path": "/tmp/h/claude/.credentials.json",
           "token_urls": ["http://127.0.0.1:38211/v1/oauth/token"],
           "lock_timeout_ms": 10000, "http_timeout_ms": 5000}
full = {"provider": "anthropic", "pool_path": "~/.hermes/auth.json",
        "credentials_path": "~/.claude/.credentials.json",
        "token_urls": ["https://platform.claude.com/v1/oauth/token",
                       "https://console.anthropic.com/v1/oauth/token"],
        "client_id": "9d1c250a-e61b-44d9-88ed-5944d1962f5e", "user_agent": "hap/0.1.0",
        "refresh_skew_ms": 120000, "strategy": "fill_first", "lock_timeout_ms": 25000,
        "http_timeout_ms": 10000, "claude_code_lock": True, "adopt_external_logins": True}
for name, c in [
    ("empty", {}), ("typical", typical), ("full", full),
    ("pool-null", {"pool_path": None, "credentials_path": "/tmp/c/.credentials.json"}),
    ("both-null", {"pool_path": None, "credentials_path": None}),
    ("loopback-v6", {"token_urls": ["http://[::1]:9/v1/oauth/token", "http://localhost/x"],
                     "strategy": "round_robin"}),
    ("least-used", {"strategy": "least_used", "provider": "anthropic-work",
                    "claude_code_lock": False, "adopt_external_logins": False}),
    ("claude-code-owns", {"defer_refresh_to_claude_code": True}),
    ("random", {"strategy": "random", "refresh_skew_ms": 0, "lock_timeout_ms": 0}),
    ("typo", {"pool_pth": "/x"}), ("ill-typed", {"lock_timeout_ms": "5"}),
    ("relative", {"pool_path": "rel/auth.json"}), ("dir-path", {"pool_path": "/tmp/"}),
    ("http-remote", {"token_urls": ["http://example.com/x"]}),
    ("http-trick", {"token_urls": ["http://127.0.0.1.evil.com/x"]}),
    ("no-urls", {"token_urls": []}), ("zero-timeout", {"http_timeout_ms": 0}),
    ("bad-strategy", {"strategy": "fastest"}), ("empty-provider", {"provider": ""}),
    ("agent", {"agent": "require", "pool_path": None}), ("bad-agent", {"agent": True}),
    ("token-key", {"sk-ant-oat01-fake-k1": True}),
    ("token-value", {"client_id": A1, "user_agent": R1}),
]:
    add("fuzz_config", name, dumps(c))
add("fuzz_config", "array", "[]")
add("fuzz_config", "truncated", '{"pool_path": "/tmp/h/au')
add("fuzz_config", "big-number", '{"lock_timeout_ms": 1e400}')
add("fuzz_config", "negative", '{"refresh_skew_ms": -1}')
add("fuzz_config", "dup-keys", '{"strategy": "random", "strategy": 7}')
# Finding 5: control characters split the token prefix until display joined it again.
add("fuzz_config", "key-echo-control-chars", b'{"=ht&s' + b"\x7f" * 106 + b'k-ant-ort01-h_sknth.0.1:":0}')

# --- requests (resolve + failure JSON) --------------------------------------------------
for name, r in [
    ("resolve-empty", {}), ("resolve-min", {"min_validity_ms": 60000}),
    ("resolve-id", {"credential_id": "a1b2c3", "force_refresh": True}),
    ("resolve-nulls", {"min_validity_ms": None, "credential_id": None, "force_refresh": None}),
    ("resolve-bad", {"force": True}),
    ("fail-429", {"credential_id": "a1b2c3", "status_code": 429, "reason": "rate_limit_error",
                  "message": "Number of request tokens has exceeded your per-minute rate limit",
                  "reset_at": 1788003600, "retry_after_s": 30.5}),
    ("fail-429-ms", {"credential_id": "a1b2c3", "status_code": 429, "reset_at": 1788003600123}),
    ("fail-429-iso", {"credential_id": "a1b2c3", "status_code": 429,
                      "reset_at": "2026-11-28T19:52:56.123+01:00"}),
    ("fail-iso-z", {"credential_id": "a1b2c3", "status_code": 529, "reset_at": "2026-11-28 19:52Z"}),
    ("fail-iso-str-num", {"credential_id": "a1b2c3", "status_code": 500, "reset_at": " 1788003600.5 "}),
    ("fail-401", {"credential_id": "a1b2c3", "status_code": 401, "reason": "token_revoked"}),
    ("fail-402", {"credential_id": "a1b2c3", "status_code": 402, "reason": "billing_error",
                  "message": None, "reset_at": None, "retry_after_s": None}),
    ("fail-bad-code", {"credential_id": "a1b2c3", "status_code": "429"}),
    ("fail-no-id", {"status_code": 429}),
    ("fail-token-key", {"credential_id": "a1b2c3", "status_code": 401, "sk-ant-ort01-fake-x": 1}),
    ("fail-token-msg", {"credential_id": "a1b2c3", "status_code": 401, "message": "bad " + A1}),
]:
    add("fuzz_requests", name, dumps(r))
add("fuzz_requests", "not-object", "[1, 2]")
add("fuzz_requests", "truncated", '{"credential_id": "a1')

# --- credentials file -------------------------------------------------------------------
add("fuzz_credentials_file", "claude-code-pretty", dumps(CREDS, pretty=True))
add("fuzz_credentials_file", "compact", dumps(CREDS))
c2 = json.loads(json.dumps(CREDS)); c2["claudeAiOauth"]["expiresAt"] = 1788003600000.0
c2["mcpOAuth"] = {"server|abc": {"accessToken": "x", "expiresAt": 0}}
add("fuzz_credentials_file", "float-expiry-mcp", dumps(c2, pretty=True))
c3 = {"claudeAiOauth": {"accessToken": A1, "expiresAt": None}}
add("fuzz_credentials_file", "no-refresh", dumps(c3))
add("fuzz_credentials_file", "null-oauth", dumps({"claudeAiOauth": None, "x": 1}))
add("fuzz_credentials_file", "empty-object", "{}")
add("fuzz_credentials_file", "empty-access", dumps({"claudeAiOauth": {"accessToken": "", "refreshToken": R1}}))
add("fuzz_credentials_file", "corrupt-truncated", '{"claudeAiOauth": {"accessToken": "sk-ant-oat01-fa')
add("fuzz_credentials_file", "access-number", dumps({"claudeAiOauth": {"accessToken": 5}}))
add("fuzz_credentials_file", "expiry-string", dumps({"claudeAiOauth": {"accessToken": A1, "expiresAt": "soon"}}))
add("fuzz_credentials_file", "oauth-array", dumps({"claudeAiOauth": [A1]}))
add("fuzz_credentials_file", "top-array", "[]\n")
add("fuzz_credentials_file", "empty-file", "")
add("fuzz_credentials_file", "dup-oauth", '{"claudeAiOauth": {"accessToken": "a"}, "k": 1, "claudeAiOauth": {"accessToken": "b", "z": 2}}')

# --- pool file --------------------------------------------------------------------------
add("fuzz_pool_file", "hermes-pretty", dumps(HERMES, pretty=True))
add("fuzz_pool_file", "hermes-compact", dumps(HERMES))
add("fuzz_pool_file", "minimal", dumps({"version": 1, "providers": {}}))
add("fuzz_pool_file", "pool-null", dumps({"version": 1, "credential_pool": None}))
add("fuzz_pool_file", "anthropic-null", dumps({"credential_pool": {"anthropic": None}}))
add("fuzz_pool_file", "odd-items", dumps({"credential_pool": {"anthropic": [
    1, "x", None, {}, {"id": ""}, {"id": 5}, {"id": "abcdef", "priority": 1.5,
    "request_count": 18446744073709551615, "expires_at_ms": -1, "last_status_at": 1e300},
    {"id": "abcdef", "label": "dup"}]}}))
add("fuzz_pool_file", "not-list", dumps({"credential_pool": {"anthropic": {"id": "abcdef"}}}))
add("fuzz_pool_file", "pool-array", dumps({"credential_pool": []}))
add("fuzz_pool_file", "corrupt", '{"version": 1, "credential_pool": {"anthropic": [{"id": "a1b2c3", "access_token": "sk-ant-oat01-fa')
add("fuzz_pool_file", "top-string", '"auth"')

# --- token response (first byte selects the status unless the input starts with HTTP/) --
SEL = {200: 0, 400: 1, 401: 2, 403: 3, 404: 4, 429: 5, 500: 6, 503: 7, 302: 8, 201: 9, 204: 10, 418: 11}
def tr(name, status, body):
    if not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    add("fuzz_token_response", name, bytes([SEL[status]]) + body)
    add("fuzz_token_body", name, bytes([SEL[status]]) + body)  # same form, no socket
tr("ok-full", 200, {"token_type": "Bearer", "access_token": A2, "refresh_token": R2,
                    "expires_in": 28800, "scope": "user:inference user:profile",
                    "organization": {"uuid": "o"}, "account": {"uuid": "a", "email_address": "e"}})
tr("ok-min", 200, {"access_token": A2})
tr("ok-float-expiry", 200, {"access_token": A2, "refresh_token": R2, "expires_in": 3600.5})
tr("ok-bad-expiry", 200, {"access_token": A2, "expires_in": -5, "scope": 7})
tr("ok-empty-access", 200, {"access_token": "", "refresh_token": R2})
tr("ok-not-json", 200, "<html>ok</html>")
# Issue 10: control characters in a token (item 18) and an expires_in that wrapped (item 4).
tr("ok-newline-in-access", 200, {"access_token": A2 + "\n", "refresh_token": R2, "expires_in": 28800})
tr("ok-nul-in-refresh", 200, {"access_token": A2, "refresh_token": R2 + "\u0000", "expires_in": 28800})
tr("ok-cr-in-refresh", 200, {"access_token": A2, "refresh_token": "\r" + R2, "expires_in": 28800})
tr("ok-expires-in-wraps", 200, {"access_token": A2, "refresh_token": R2, "expires_in": 9300000000000000})
tr("ok-expires-in-huge-float", 200, {"access_token": A2, "expires_in": 1e300})
tr("invalid-grant", 400, {"error": "invalid_grant", "error_description": "Refresh token not found or invalid"})
tr("nested-error", 400, {"type": "error", "error": {"type": "invalid_request_error", "message": "x"}})
tr("error-odd", 400, {"error": "not a plain code!"})
tr("error-echo", 400, {"error": "sk-ant-ort01-fuzz-rt"})
tr("unauthorized", 401, {"error": "invalid_token"})
tr("forbidden", 403, "")
tr("not-found", 404, "Not Found")
tr("rate-limited", 429, {"error": {"type": "rate_limit_error", "message": "slow"}})
tr("server-error", 500, "<html>500</html>")
tr("unavailable", 503, "")
tr("redirect", 302, "")
tr("created", 201, {"access_token": A2})
tr("teapot", 418, {"error": "token_revoked"})
raw = [
    ("raw-chunked", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
        b"10\r\n{\"access_token\":\r\n1a\r\n \"sk-ant-oat01-fake-a3\"}   \r\n0\r\n\r\n"),
    ("raw-retry-after", b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 120\r\nContent-Length: 2\r\n\r\n{}"),
    ("raw-retry-after-date", b"HTTP/1.1 503 X\r\nRetry-After: Wed, 21 Oct 2015 07:28:00 GMT\r\n\r\n"),
    ("raw-location", b"HTTP/1.1 301 Moved\r\nLocation: http://127.0.0.1:1/x\r\nContent-Length: 0\r\n\r\n"),
    ("raw-short-body", b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"access_token\": \"x\"}"),
    ("raw-http10", b"HTTP/1.0 200 OK\r\n\r\n{\"access_token\": \"sk-ant-oat01-fake-a4\", \"expires_in\": 60}"),
    ("raw-garbage", b"HTTP/9 abc\r\n\r\n"),
]
for name, data in raw:
    add("fuzz_token_response", name, data)

# --- C ABI: hap_pool_open (@H@ = the fixture directory; see src/lib.rs) ------------------
abi = [
    ("defaults", {}),
    ("typical", {"pool_path": "@H@/home/.hermes/auth.json",
                 "credentials_path": "@H@/home/.claude/.credentials.json",
                 "token_urls": ["http://127.0.0.1:38211/v1/oauth/token"],
                 "lock_timeout_ms": 10000, "http_timeout_ms": 5000}),
    ("tilde", {"pool_path": "~/.hermes/auth.json", "credentials_path": "~/.claude/.credentials.json",
               "strategy": "least_used", "provider": "openrouter"}),
    ("creds-only", {"pool_path": None, "credentials_path": "@H@/home/.claude/.credentials.json"}),
    ("pool-only", {"pool_path": "@H@/home/.hermes/auth.json", "credentials_path": None}),
    ("missing-files", {"pool_path": "@H@/nope/auth.json", "credentials_path": "@H@/nope/.credentials.json"}),
    ("bad-pool", {"pool_path": "@H@/bad/auth.json"}),
    ("bad-creds", {"credentials_path": "@H@/bad/.credentials.json", "pool_path": None}),
    ("wrong-pool", {"pool_path": "@H@/wrong/auth.json"}),
    ("empty-pool", {"pool_path": "@H@/empty/auth.json"}),
    ("dir-pool", {"pool_path": "@H@/isdir/auth.json"}),
    ("typo", {"pool_pth": "@H@/x"}),
    ("token-key", {"sk-ant-oat01-fake-k1": 1}),
]
for name, c in abi:
    add("fuzz_c_abi_open", name, dumps(c))
add("fuzz_c_abi_open", "null", b"")
add("fuzz_c_abi_open", "not-utf8", b'{"provider": "\xff\xfe"}')
add("fuzz_c_abi_open", "nul-inside", b'{"provider": "a"}\x00garbage')
add("fuzz_c_abi_open", "truncated", b'{"pool_path": "@H@/home/.her')

if __name__ == "__main__":
    if OUT.exists():
        shutil.rmtree(OUT)
    for target, items in SEEDS.items():
        d = OUT / target
        d.mkdir(parents=True)
        for name, data in items:
            (d / name).write_bytes(data)
    print({t: len(v) for t, v in SEEDS.items()})
