"""hap.AsyncPool: awaitable resolve/report/status that never block the event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any, Callable

import pytest

import hap_oauth as hap

from conftest import FakeServer, Home

TICK_S = 0.005


async def ticks_during(call: Callable[[], Awaitable[Any]]) -> tuple[int, float, float]:
    """Run ``call`` beside a ticker that sleeps 5 ms at a time.

    Returns the ticks that completed while ``call`` ran, the loop's longest stall (the
    longest gap between ticks, the gap that spans the end of ``call`` included) and how long
    ``call`` took.
    """
    stamps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            await asyncio.sleep(TICK_S)
            stamps.append(time.perf_counter())

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)
    t0 = time.perf_counter()
    await call()
    t1 = time.perf_counter()
    await asyncio.sleep(0.03)  # let the ticker record the gap that spans the call's end
    stop.set()
    await task
    window = [t for t in stamps if t >= t0]
    before = [t for t in stamps if t < t0]
    points = before[-1:] + window
    stall = max(b - a for a, b in zip(points, points[1:]))
    return sum(1 for t in window if t <= t1), stall, t1 - t0


def test_the_loop_keeps_ticking_during_a_slow_refresh(expired: Home, server: FakeServer) -> None:
    server.script({"delay_ms": 1500})

    async def main() -> tuple[int, float, float]:
        async with await hap.AsyncPool.open(expired.config()) as apool:
            return await ticks_during(apool.resolve_token)

    ticks, stall, took = asyncio.run(main())
    assert server.posts() == 1
    assert took >= 1.4, "the token endpoint's 1.5 s delay was part of the call"
    # A blocked loop completes no tick at all; here it kept ticking through the refresh.
    assert ticks >= 20, (ticks, stall, took)


def test_a_blocking_resolve_in_a_coroutine_stalls_the_loop(
    expired: Home, server: FakeServer
) -> None:
    """The contrast the async API exists for (and the figure BENCHMARKS.md compares)."""
    server.script({"delay_ms": 1500})

    async def main() -> tuple[int, float, float]:
        with hap.Pool(expired.config()) as pool:

            async def blocking() -> None:
                pool.resolve_token()

            return await ticks_during(blocking)

    ticks, stall, _took = asyncio.run(main())
    assert server.posts() == 1
    assert ticks == 0
    assert stall >= 1.4


def test_async_pool_calls(valid: Home, server: FakeServer) -> None:
    async def main() -> None:
        apool = await hap.AsyncPool.open(valid.config())
        token = await apool.resolve_token(min_validity_ms=1000)
        assert token.access_token == "sk-ant-oat01-fake-a1"
        result = await apool.report_failure(token.credential_id, 429, retry_after_s=30)
        assert result.last_status == "exhausted"
        status = await apool.status()
        assert status["credentials"][0]["last_status"] == "exhausted"
        with pytest.raises(hap.NoCredential):
            await apool.resolve_token()
        await apool.aclose()
        assert apool.pool.closed

    asyncio.run(main())
    assert server.posts() == 0


def test_one_shared_pool_many_coroutines_one_post(expired: Home, server: FakeServer) -> None:
    server.script({"delay_ms": 300})
    with hap.Pool(expired.config()) as pool:
        apool = hap.AsyncPool(pool)

        async def main() -> list[hap.Token]:
            return await asyncio.gather(*(apool.resolve_token() for _ in range(16)))

        tokens = asyncio.run(main())
        # Wrapping never closes what the program owns.
        asyncio.run(apool.aclose())
        assert not pool.closed
    assert server.posts() == 1
    assert len({t.access_token for t in tokens}) == 1
    assert sum(t.refreshed for t in tokens) >= 1


def test_async_pool_wants_a_pool() -> None:
    with pytest.raises(TypeError):
        hap.AsyncPool({"pool_path": None})  # type: ignore[arg-type]
