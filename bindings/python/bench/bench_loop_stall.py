#!/usr/bin/env python3
"""How long does a refresh stall an asyncio event loop? ``AsyncPool`` vs a blocking call.

    HAP_LIBRARY_PATH=$PWD/target/release/libhap.so PYTHONPATH=bindings/python \\
        python3 bindings/python/bench/bench_loop_stall.py [--reps 5] [--delay-ms 1500]

Each rep: a fresh expired Claude Code login, the fake token server answering the refresh
after ``--delay-ms`` (standing in for a slow token endpoint), and a ticker task that sleeps
5 ms at a time. The loop's stall is the longest gap between two ticks while the resolve
(which refreshes) is in flight, the gap spanning its end included. ``async`` awaits
``hap.AsyncPool.resolve_token()``; ``blocking`` calls ``hap.Pool.resolve_token()`` straight
from the coroutine; ``idle`` awaits ``asyncio.sleep`` for as long, with no hap call at all:
the noise floor of the machine (a loaded machine stalls a loop by itself). Prints one line
per rep and the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, Callable

import hap_oauth as hap

REPO = Path(__file__).resolve().parents[3]


async def stall_of(call: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    """(longest gap between ticks around ``call``, how long ``call`` took), in seconds."""
    stamps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            await asyncio.sleep(0.005)
            stamps.append(time.perf_counter())

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)
    t0 = time.perf_counter()
    await call()
    took = time.perf_counter() - t0
    await asyncio.sleep(0.03)
    stop.set()
    await task
    points = [t for t in stamps if t < t0][-1:] + [t for t in stamps if t >= t0]
    return max(b - a for a, b in zip(points, points[1:])), took


def admin(base: str, path: str, body: dict[str, Any]) -> None:
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST")
    req.add_header("Content-Type", "application/json")
    urllib.request.urlopen(req, timeout=10).read()


def one(base: str, mode: str, delay_ms: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="hap-stall-") as tmp:
        creds = Path(tmp) / ".credentials.json"
        issued = json.loads(
            urllib.request.urlopen(
                urllib.request.Request(base + "/_admin/issue", data=b"{}", method="POST"),
                timeout=10,
            ).read()
        )
        oauth = {
            "accessToken": issued["access_token"],
            "refreshToken": issued["refresh_token"],
            "expiresAt": int(time.time() * 1000) - 60_000,
            "subscriptionType": "max",
        }
        creds.write_text(json.dumps({"claudeAiOauth": oauth}))
        if mode != "idle":
            admin(base, "/_admin/script", {"faults": [{"delay_ms": delay_ms}]})
        config = {
            "pool_path": None,
            "credentials_path": str(creds),
            "token_urls": [base + "/v1/oauth/token"],
            "http_timeout_ms": delay_ms + 10_000,
        }

        async def main() -> tuple[float, float]:
            with hap.Pool(config) as pool:
                if mode == "idle":
                    return await stall_of(lambda: asyncio.sleep(delay_ms / 1000))
                if mode == "async":
                    return await stall_of(hap.AsyncPool(pool).resolve_token)

                async def blocking() -> None:
                    pool.resolve_token()

                return await stall_of(blocking)

        return asyncio.run(main())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--delay-ms", type=int, default=1500)
    args = ap.parse_args()
    server = subprocess.Popen(
        [sys.executable, str(REPO / "testing" / "fake_token_server.py"), "--exit-on-stdin-eof"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    assert server.stdin is not None
    base = server.stdout.readline().strip()
    results: dict[str, list[float]] = {"idle": [], "async": [], "blocking": []}
    try:
        for rep in range(args.reps):
            for mode in results:
                stall, took = one(base, mode, args.delay_ms)
                results[mode].append(stall)
                print(
                    f"rep {rep + 1} {mode:8s} refresh took {took * 1000:7.1f} ms, "
                    f"loop's longest stall {stall * 1000:7.1f} ms"
                )
    finally:
        server.stdin.close()
        server.wait(timeout=10)
    for mode, stalls in results.items():
        print(
            f"{mode:8s} median longest stall {statistics.median(stalls) * 1000:.1f} ms "
            f"(max {max(stalls) * 1000:.1f} ms) over {len(stalls)} refreshes of "
            f"{args.delay_ms} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
