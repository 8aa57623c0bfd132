"""100,000 hot resolves leave memory flat: every string the library hands out is freed."""

from __future__ import annotations

import os

import hap_oauth as hap

from conftest import FakeServer, Home


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        resident_pages = int(statm.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def test_hundred_thousand_hot_resolves_flat_memory(valid: Home, server: FakeServer) -> None:
    with hap.Pool(valid.config()) as pool:
        for _ in range(10_000):  # warm-up: allocator arenas, caches
            pool.resolve_token()
        before = rss_bytes()
        for _ in range(100_000):
            token = pool.resolve_token()
        after = rss_bytes()
        assert not token.refreshed
    assert server.posts() == 0
    growth = after - before
    # One leaked result string (~250 bytes) per call would be ~25 MB.
    assert growth < 4 * 1024 * 1024, f"RSS grew by {growth / 1024:.0f} KiB"
