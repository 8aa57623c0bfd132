"""The idiomatic layer against the real library and the fake server."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import subprocess
import sys

import pytest

import hap_oauth as hap

from conftest import ACCESS_1, HOUR_MS, REFRESH_1, FakeServer, Home, now_ms


def test_resolve_a_valid_token_without_a_post(valid: Home, server: FakeServer) -> None:
    with hap.Pool(valid.config()) as pool:
        token = pool.resolve_token()
    assert token.access_token == ACCESS_1
    assert token.source == "claude_code"
    assert token.auth_type == "oauth"
    assert token.refreshed is False
    assert token.expires_at_ms is not None
    assert token.expires_at_ms > now_ms()
    assert server.posts() == 0


def test_refresh_writes_back_and_keeps_foreign_keys(expired: Home, server: FakeServer) -> None:
    with hap.Pool(expired.config()) as pool:
        token = pool.resolve_token()
        again = pool.resolve_token()
    assert token.refreshed is True
    assert token.access_token != ACCESS_1
    assert token.access_token.startswith("sk-ant-oat01-fake-")
    assert again.refreshed is False
    assert again.access_token == token.access_token
    assert server.posts() == 1

    creds = expired.credentials()
    oauth = creds["claudeAiOauth"]
    assert oauth["accessToken"] == token.access_token
    assert oauth["refreshToken"] != REFRESH_1
    assert abs(oauth["expiresAt"] - (now_ms() + HOUR_MS)) < 60_000
    assert oauth["subscriptionType"] == "max"
    assert oauth["rateLimitTier"] == "default_claude_max_20x"
    assert creds["otherTool"] == {"keep": True}
    assert os.stat(expired.credentials_path).st_mode & 0o777 == 0o600

    # The pool file borrows the credential: a row with its fingerprint, never the token.
    pool_text = expired.pool_path.read_text()
    assert token.access_token not in pool_text
    assert oauth["refreshToken"] not in pool_text
    rows = json.loads(pool_text)["credential_pool"]["anthropic"]
    assert [r["source"] for r in rows] == ["claude_code"]
    assert rows[0]["secret_fingerprint"] == token.fingerprint


def test_resolve_options(valid: Home, server: FakeServer) -> None:
    with hap.Pool(valid.config()) as pool:
        first = pool.resolve_token()
        pinned = pool.resolve_token(credential_id=first.credential_id)
        assert pinned.access_token == first.access_token
        assert server.posts() == 0
        # Valid for 5 h, so asking for 6 h of validity forces a refresh.
        longer = pool.resolve_token(min_validity_ms=6 * HOUR_MS)
        assert longer.refreshed is True
        forced = pool.resolve_token(force_refresh=True)
        assert forced.refreshed is True
        assert forced.access_token != longer.access_token
    assert server.posts() == 2


def test_config_dict_and_keyword_options_merge(valid: Home) -> None:
    config = valid.config()
    del config["pool_path"]
    # Keywords override the dict; PathLike values are accepted.
    with hap.Pool(config, pool_path=valid.pool_path, strategy="round_robin") as pool:
        status = pool.status()
    assert status["pool_path"] == str(valid.pool_path)
    assert status["strategy"] == "round_robin"


def test_token_is_frozen(valid: Home) -> None:
    with hap.Pool(valid.config()) as pool:
        token = pool.resolve_token()
    with pytest.raises(dataclasses.FrozenInstanceError):
        token.access_token = "x"  # type: ignore[misc]


def test_report_failure_results(valid: Home) -> None:
    reset = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=30)
    with hap.Pool(valid.config()) as pool:
        token = pool.resolve_token()
        benched = pool.report_failure(
            token.credential_id,
            429,
            reason="rate_limit_error",
            message="slow down",
            reset_at=reset,
            retry_after_s=30,
        )
        assert benched == hap.FailureResult(
            token.credential_id, "exhausted", benched.available_at_ms
        )
        assert benched.available_at_ms is not None
        assert now_ms() < benched.available_at_ms <= now_ms() + 61_000

        row = pool.status()["credentials"][0]
        assert row["last_status"] == "exhausted"
        assert row["available"] is False
        assert row["last_error_code"] == 429

        dead = pool.report_failure(token.credential_id, 401, reason="token_revoked")
        assert dead.last_status == "dead"
        assert dead.available_at_ms is None


def test_status_snapshot(valid: Home) -> None:
    with hap.Pool(valid.config()) as pool:
        pool.resolve_token()
        status = pool.status()
    assert status["provider"] == "anthropic"
    assert status["credentials_path"] == str(valid.credentials_path)
    assert len(status["credentials"]) == 1
    assert status["counters"]["resolves"] >= 1


# -- lifetime ---------------------------------------------------------------------------------


def test_a_closed_pool_raises_value_error(valid: Home) -> None:
    pool = hap.Pool(valid.config())
    assert not pool.closed
    pool.close()
    pool.close()  # idempotent
    assert pool.closed
    assert "closed" in repr(pool)
    with pytest.raises(ValueError, match="closed"):
        pool.resolve_token()
    with pytest.raises(ValueError, match="closed"):
        pool.report_failure("a1b2c3", 429)
    with pytest.raises(ValueError, match="closed"):
        pool.status()


def test_context_manager_closes(valid: Home) -> None:
    with hap.Pool(valid.config()) as pool:
        pool.resolve_token()
    assert pool.closed
    with pytest.raises(ValueError, match="closed"):
        pool.resolve_token()


def test_garbage_collection_frees_the_handle(valid: Home) -> None:
    for _ in range(200):
        hap.Pool(valid.config()).resolve_token()


# -- no secrets anywhere ----------------------------------------------------------------------


def _secrets(home: Home, *tokens: hap.Token) -> list[str]:
    oauth = home.credentials()["claudeAiOauth"]
    found = [ACCESS_1, REFRESH_1, oauth["accessToken"], oauth["refreshToken"]]
    return found + [t.access_token for t in tokens]


def test_no_token_in_repr_str_or_format(expired: Home) -> None:
    with hap.Pool(expired.config()) as pool:
        token = pool.resolve_token()
        texts = [repr(token), str(token), f"{token}", f"{token!r}", repr(pool), str(pool)]
        texts.append(json.dumps(pool.status()))
        texts.append(repr(pool.report_failure(token.credential_id, 429)))
    assert token.fingerprint in repr(token)
    assert token.fingerprint == (
        "sha256:" + hashlib.sha256(token.access_token.encode()).hexdigest()[:16]
    )
    assert "access_token=<sha256:" in repr(token)
    for text in texts:
        for secret in _secrets(expired, token):
            assert secret not in text


def test_no_token_in_exceptions(expired: Home, server: FakeServer) -> None:
    caught: list[hap.HapError] = []
    server.script({"status": 503, "body": {"error": "overloaded"}})
    with hap.Pool(expired.config()) as pool:
        with pytest.raises(hap.Unavailable) as unavailable:
            pool.resolve_token()
        caught.append(unavailable.value)
        server.revoke_all()
        with pytest.raises(hap.HapError) as other:
            pool.resolve_token(force_refresh=True)
        caught.append(other.value)
        with pytest.raises(hap.UnknownCredential) as unknown:
            pool.report_failure("ffffff", 429)
        caught.append(unknown.value)
    for exc in caught:
        texts = [str(exc), repr(exc), exc.message, repr(exc.__dict__)]
        for text in texts:
            for secret in _secrets(expired):
                assert secret not in text, (type(exc).__name__, text)


def test_cli_status(valid: Home) -> None:
    with hap.Pool(valid.config()) as pool:
        pool.resolve_token()
    result = subprocess.run(
        [sys.executable, "-m", "hap_oauth", "status", "--config", json.dumps(valid.config())],
        capture_output=True,
        text=True,
        check=False,
        cwd="/",  # not this folder: `-m hap_oauth` must find the package under test
    )
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["credentials"][0]["source"] == "claude_code"
    for secret in _secrets(valid):
        assert secret not in result.stdout


def test_cli_status_reports_errors_by_name(home: Home) -> None:
    home.pool_path.parent.mkdir(parents=True)
    home.pool_path.write_text("not json{")
    result = subprocess.run(
        [sys.executable, "-m", "hap_oauth", "status", "--pool-path", str(home.pool_path)],
        capture_output=True,
        text=True,
        check=False,
        cwd="/",  # not this folder: `-m hap_oauth` must find the package under test
    )
    assert result.returncode == 1
    assert "HAP_STATUS_STORE_CORRUPT" in result.stderr


def test_cli_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hap_oauth", "version"],
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
    )
    assert result.returncode == 0, result.stderr
    assert hap.__version__ in result.stdout
