"""hap.HttpxAuth (sync and async) and hap.RequestsAuth against real servers.

The fake Messages API (testing/fake_messages_api.py) logs what each request carried; the
fake token server counts refresh POSTs. Nothing is mocked: real sockets, real store files.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import httpx
import pytest
import requests

import hap_oauth as hap

from conftest import HOUR_MS, FakeServer, Home, MessagesApi, now_ms

BODY = {"model": "claude-fake", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}


def fp(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def file_token(home: Home) -> str:
    token: str = home.credentials()["claudeAiOauth"]["accessToken"]
    return token


def add_manual_row(home: Home) -> str:
    """A second, independent OAuth credential in the pool file (valid for hours)."""
    home.pool_path.parent.mkdir(parents=True, exist_ok=True)
    access = "sk-ant-oat01-fake-manual"
    doc = {
        "version": 1,
        "credential_pool": {
            "anthropic": [
                {
                    "id": "man001",
                    "label": "second",
                    "auth_type": "oauth",
                    "priority": 5,
                    "source": "manual",
                    "access_token": access,
                    "refresh_token": "sk-ant-ort01-fake-manual",
                    "expires_at_ms": now_ms() + 5 * HOUR_MS,
                }
            ]
        },
    }
    home.pool_path.write_text(json.dumps(doc))
    return access


def send_httpx(api: MessagesApi, pool: hap.Pool, **headers: str) -> httpx.Response:
    with httpx.Client(base_url=api.base, auth=hap.HttpxAuth(pool)) as client:
        return client.post("/v1/messages", json=BODY, headers=headers)


def send_httpx_async(api: MessagesApi, pool: hap.Pool, **headers: str) -> httpx.Response:
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(base_url=api.base, auth=hap.HttpxAuth(pool)) as client:
            return await client.post("/v1/messages", json=BODY, headers=headers)

    return asyncio.run(go())


def send_requests(api: MessagesApi, pool: hap.Pool, **headers: str) -> requests.Response:
    with requests.Session() as session:
        session.auth = hap.RequestsAuth(pool)
        return session.post(api.base + "/v1/messages", json=BODY, headers=headers, timeout=30)


SENDERS: dict[str, Any] = {
    "httpx": send_httpx,
    "httpx-async": send_httpx_async,
    "requests": send_requests,
}


@pytest.fixture(params=sorted(SENDERS))
def send(request: pytest.FixtureRequest) -> Any:
    return SENDERS[request.param]


def test_expired_login_is_refreshed_once_and_headers_are_right(
    send: Any, expired: Home, server: FakeServer, messages_api: MessagesApi
) -> None:
    with hap.Pool(expired.config()) as pool:
        # A caller's own x-api-key and beta flag: the key must go, the flag must stay.
        resp = send(
            messages_api,
            pool,
            **{"x-api-key": "sk-ant-api03-fake-key", "anthropic-beta": "tools-2024-04-04"},
        )
    assert resp.status_code == 200, resp.text
    assert server.posts() == 1
    (entry,) = messages_api.log()
    assert entry["authorization_scheme"] == "Bearer"
    assert entry["bearer_sha256"] == fp(file_token(expired))
    assert file_token(expired) != "sk-ant-oat01-fake-a1"
    assert entry["x_api_key"] is False
    assert entry["anthropic_beta"].split(",") == ["tools-2024-04-04", "oauth-2025-04-20"]


def test_401_means_one_refresh_and_one_retry(
    send: Any, valid: Home, server: FakeServer, messages_api: MessagesApi
) -> None:
    messages_api.script({"status": 401})
    with hap.Pool(valid.config()) as pool:
        resp = send(messages_api, pool)
    assert resp.status_code == 200, resp.text
    assert server.posts() == 1
    first, second = messages_api.log()
    assert first["bearer_sha256"] == fp("sk-ant-oat01-fake-a1")
    assert second["bearer_sha256"] == fp(file_token(valid)) != first["bearer_sha256"]


def test_a_second_401_is_handed_back_not_retried(
    send: Any, valid: Home, server: FakeServer, messages_api: MessagesApi
) -> None:
    messages_api.script({"status": 401}, {"status": 401}, {"status": 401})
    with hap.Pool(valid.config()) as pool:
        resp = send(messages_api, pool)
        assert resp.status_code == 401
        assert len(messages_api.log()) == 2
        assert server.posts() == 1
        # The refreshed token was refused too, within a minute of its refresh: benched.
        (cred,) = pool.status()["credentials"]
        assert cred["last_status"] == "exhausted", cred


def test_429_on_the_only_credential_is_handed_back(
    send: Any, valid: Home, server: FakeServer, messages_api: MessagesApi
) -> None:
    messages_api.script({"status": 429, "headers": {"retry-after": "30"}})
    with hap.Pool(valid.config()) as pool:
        resp = send(messages_api, pool)
        assert resp.status_code == 429
        assert len(messages_api.log()) == 1
        assert server.posts() == 0
        (cred,) = pool.status()["credentials"]
        assert cred["last_status"] == "exhausted", cred
        assert cred["last_error_code"] == 429
        # While benched nothing is sent at all: the adapter raises before any request.
        with pytest.raises(hap.NoCredential) as info:
            send(messages_api, pool)
        assert info.value.retry_at_ms is not None
    assert len(messages_api.log()) == 1


def test_429_retries_once_with_another_credential(
    send: Any, valid: Home, server: FakeServer, messages_api: MessagesApi
) -> None:
    add_manual_row(valid)
    messages_api.script({"status": 429, "headers": {"retry-after": "30"}})
    with hap.Pool(valid.config()) as pool:
        resp = send(messages_api, pool)
    assert resp.status_code == 200, resp.text
    first, second = messages_api.log()
    assert {first["bearer_sha256"], second["bearer_sha256"]} == {
        fp("sk-ant-oat01-fake-a1"),
        fp("sk-ant-oat01-fake-manual"),
    }
    assert server.posts() == 0


def test_an_api_key_credential_goes_out_as_x_api_key(
    send: Any, home: Home, messages_api: MessagesApi
) -> None:
    home.pool_path.parent.mkdir(parents=True, exist_ok=True)
    key = "sk-ant-api03-fake-pool-key"
    row = {"id": "key001", "label": "k", "auth_type": "api_key", "priority": 0}
    row.update({"source": "manual", "access_token": key})
    home.pool_path.write_text(json.dumps({"credential_pool": {"anthropic": [row]}}))
    with hap.Pool(home.config(credentials_path=None)) as pool:
        resp = send(messages_api, pool)
    # The fake API accepts only bearer tokens: what matters is what was sent.
    assert resp.status_code == 401
    entry = messages_api.log()[0]
    assert entry["x_api_key"] is True
    assert entry["authorization_scheme"] is None
    assert entry["anthropic_beta"] is None
