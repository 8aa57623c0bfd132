"""The README's recipe with the real official ``anthropic`` SDK (from PyPI) against the fake
Messages API and the fake token server.

The recipe (README "The official anthropic SDK"):

    pool = hap.Pool()
    client = anthropic.Anthropic(
        auth_token="set-by-hap",
        http_client=anthropic.DefaultHttpxClient(auth=hap.HttpxAuth(pool)),
    )
"""

from __future__ import annotations

import asyncio
import hashlib

import anthropic
import pytest

import hap_oauth as hap

from conftest import FakeServer, Home, MessagesApi

MAX_RETRIES = 2


def fp(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def client(api: MessagesApi, pool: hap.Pool) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=api.base,
        auth_token="set-by-hap",
        http_client=anthropic.DefaultHttpxClient(auth=hap.HttpxAuth(pool)),
        max_retries=MAX_RETRIES,
    )


def ask(c: anthropic.Anthropic) -> str:
    msg = c.messages.create(
        model="claude-fake", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
    )
    block = msg.content[0]
    assert block.type == "text"
    return block.text


def test_sdk_expired_login_refreshed_once_bearer_and_beta(
    expired: Home, server: FakeServer, messages_api: MessagesApi
) -> None:
    with hap.Pool(expired.config()) as pool:
        c = client(messages_api, pool)
        assert ask(c) == "ok"
        assert ask(c) == "ok"
    assert server.posts() == 1
    first, second = messages_api.log()
    new = expired.credentials()["claudeAiOauth"]["accessToken"]
    for entry in (first, second):
        assert entry["authorization_scheme"] == "Bearer"
        assert entry["bearer_sha256"] == fp(new)
        assert entry["x_api_key"] is False
        assert "oauth-2025-04-20" in entry["anthropic_beta"].split(",")
    # Nothing of the placeholder reached the wire.
    assert fp("set-by-hap") not in {first["bearer_sha256"], second["bearer_sha256"]}


def test_sdk_401_one_refresh_one_retry(
    valid: Home, server: FakeServer, messages_api: MessagesApi
) -> None:
    messages_api.script({"status": 401})
    with hap.Pool(valid.config()) as pool:
        assert ask(client(messages_api, pool)) == "ok"
    assert server.posts() == 1
    first, second = messages_api.log()
    assert first["bearer_sha256"] == fp("sk-ant-oat01-fake-a1")
    assert second["bearer_sha256"] != first["bearer_sha256"]


def test_sdk_401_twice_is_an_authentication_error_after_two_requests(
    valid: Home, server: FakeServer, messages_api: MessagesApi
) -> None:
    messages_api.script(*[{"status": 401}] * 6)
    with hap.Pool(valid.config()) as pool, pytest.raises(anthropic.AuthenticationError):
        ask(client(messages_api, pool))
    assert len(messages_api.log()) == 2
    assert server.posts() == 1


def test_sdk_429_short_retry_after_the_sdk_policy_applies(
    valid: Home, server: FakeServer, messages_api: MessagesApi
) -> None:
    """Retry-After 0: hap's bench ends at once, so the SDK's own retries go out, and no more
    than them: 1 + max_retries requests."""
    messages_api.script(*[{"status": 429, "headers": {"retry-after": "0"}}] * 10)
    with hap.Pool(valid.config()) as pool, pytest.raises(anthropic.RateLimitError):
        ask(client(messages_api, pool))
    assert len(messages_api.log()) == 1 + MAX_RETRIES
    assert server.posts() == 0


def test_sdk_429_long_retry_after_no_request_while_benched(
    valid: Home, server: FakeServer, messages_api: MessagesApi
) -> None:
    """Retry-After 30: the credential is benched for every process; the SDK's retries stop in
    hap (NoCredential, chained) without a second request reaching the API."""
    messages_api.script(*[{"status": 429, "headers": {"retry-after": "30"}}] * 10)
    with hap.Pool(valid.config()) as pool, pytest.raises(anthropic.APIError) as info:
        client(messages_api, pool).with_options(max_retries=0).messages.create(
            model="claude-fake", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
    assert isinstance(info.value, anthropic.RateLimitError)
    with hap.Pool(valid.config()) as pool, pytest.raises(anthropic.APIConnectionError) as info2:
        ask(client(messages_api, pool))
    assert isinstance(info2.value.__cause__, hap.NoCredential)
    assert len(messages_api.log()) == 1
    assert server.posts() == 0


def async_client(api: MessagesApi, pool: hap.Pool) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        base_url=api.base,
        auth_token="set-by-hap",
        http_client=anthropic.DefaultAsyncHttpxClient(auth=hap.HttpxAuth(pool)),
        max_retries=MAX_RETRIES,
    )


async def ask_async(c: anthropic.AsyncAnthropic) -> str:
    msg = await c.messages.create(
        model="claude-fake", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
    )
    block = msg.content[0]
    assert block.type == "text"
    return block.text


def test_async_sdk_expired_login_refreshed_once(
    expired: Home, server: FakeServer, messages_api: MessagesApi
) -> None:
    async def main() -> list[str]:
        with hap.Pool(expired.config()) as pool:
            c = async_client(messages_api, pool)
            answers = await asyncio.gather(*(ask_async(c) for _ in range(4)))
            await c.close()
            return answers

    assert asyncio.run(main()) == ["ok"] * 4
    assert server.posts() == 1
    new = expired.credentials()["claudeAiOauth"]["accessToken"]
    log = messages_api.log()
    assert len(log) == 4
    for e in log:
        assert e["authorization_scheme"] == "Bearer"
        assert e["bearer_sha256"] == fp(new)
        assert not e["x_api_key"]
        assert "oauth-2025-04-20" in e["anthropic_beta"].split(",")


def test_async_sdk_401_one_refresh_one_retry(
    valid: Home, server: FakeServer, messages_api: MessagesApi
) -> None:
    messages_api.script({"status": 401})

    async def main() -> str:
        with hap.Pool(valid.config()) as pool:
            c = async_client(messages_api, pool)
            answer = await ask_async(c)
            await c.close()
            return answer

    assert asyncio.run(main()) == "ok"
    assert server.posts() == 1
    first, second = messages_api.log()
    assert first["bearer_sha256"] == fp("sk-ant-oat01-fake-a1") != second["bearer_sha256"]
