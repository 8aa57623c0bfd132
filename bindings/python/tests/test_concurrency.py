"""Threads and processes: one POST per rotation, and the GIL is free during every call."""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import hap_oauth as hap

from conftest import FakeServer, Home
from hap_workers import resolve_once


def test_sixteen_threads_one_post(expired: Home, server: FakeServer) -> None:
    barrier = threading.Barrier(16)

    with hap.Pool(expired.config()) as pool:

        def resolve(_: int) -> hap.Token:
            barrier.wait(timeout=30)
            return pool.resolve_token()

        with ThreadPoolExecutor(16) as executor:
            tokens = list(executor.map(resolve, range(16)))

    assert server.posts() == 1
    assert len({t.access_token for t in tokens}) == 1
    assert sum(t.refreshed for t in tokens) == 1
    assert tokens[0].access_token == expired.credentials()["claudeAiOauth"]["accessToken"]


def test_eight_processes_with_separate_profiles_one_post(expired: Home, server: FakeServer) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(8)
    results = ctx.Queue()
    procs = []
    for i in range(8):
        # Each process is another Hermes profile: its own pool file, the one credentials file.
        config = expired.config(pool_path=str(expired.root / f"profile{i}" / "auth.json"))
        procs.append(ctx.Process(target=resolve_once, args=(config, barrier, results)))
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0

    assert all(o[0] == "ok" for o in outcomes), outcomes
    assert server.posts() == 1
    assert len({o[2] for o in outcomes}) == 1, "every process got the same token"
    assert sum(o[3] for o in outcomes) == 1, "exactly one process refreshed"
    for i in range(8):
        rows = json.loads((expired.root / f"profile{i}" / "auth.json").read_text())
        assert rows["credential_pool"]["anthropic"][0]["source"] == "claude_code"


def test_the_gil_is_released_during_a_slow_refresh(expired: Home, server: FakeServer) -> None:
    server.script({"delay_ms": 1000})
    ticks = 0
    stop = threading.Event()

    def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0.005)

    with hap.Pool(expired.config()) as pool:
        thread = threading.Thread(target=ticker)
        thread.start()
        try:
            time.sleep(0.05)
            started = time.monotonic()
            before = ticks
            token = pool.resolve_token()
            elapsed = time.monotonic() - started
            during = ticks - before
        finally:
            stop.set()
            thread.join()

    assert token.refreshed
    assert elapsed >= 0.9
    # A held GIL would allow ~0 ticks; a free one ~200 (5 ms each). Allow a loaded machine.
    assert during >= 50, f"only {during} ticks during a {elapsed:.2f}s resolve"


def test_close_waits_for_calls_in_flight(expired: Home, server: FakeServer) -> None:
    server.script({"delay_ms": 700})
    pool = hap.Pool(expired.config())
    with ThreadPoolExecutor(1) as executor:
        pending = executor.submit(pool.resolve_token)
        deadline = time.monotonic() + 10
        while server.posts() == 0:  # the resolve is now waiting on the server
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert not pending.done()
        pool.close()  # must wait for it, not free the handle under it
        assert pending.done()
        assert pending.result().refreshed
    with pytest.raises(ValueError, match="closed"):
        pool.resolve_token()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_pool_is_unusable_in_a_fork_child(valid: Home) -> None:
    with hap.Pool(valid.config()) as pool:
        pool.resolve_token()
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: never return into pytest
            try:
                os.close(read_fd)
                try:
                    pool.resolve_token()
                    verdict = "resolved"
                except ValueError as exc:
                    verdict = "ValueError: " + str(exc)
                pool.close()  # must not free the parent's handle
                fresh = hap.Pool(valid.config())
                fresh.resolve_token()
                fresh.close()
                os.write(write_fd, verdict.encode())
            finally:
                os._exit(0)
        os.close(write_fd)
        with os.fdopen(read_fd) as pipe:
            verdict = pipe.read()
        os.waitpid(pid, 0)
        assert verdict.startswith("ValueError:"), verdict
        assert "fork" in verdict
        pool.resolve_token()  # the parent's pool still works
