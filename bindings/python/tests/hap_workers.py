"""Code run in child processes (multiprocessing spawn imports it by module name)."""

from __future__ import annotations

from typing import Any


def resolve_once(config: dict[str, Any], barrier: Any, results: Any) -> None:
    """Open a pool, wait for every sibling, resolve once, send back what was returned."""
    import hap_oauth as hap

    try:
        with hap.Pool(config) as pool:
            barrier.wait(timeout=60)
            token = pool.resolve_token()
            results.put(("ok", token.credential_id, token.fingerprint, token.refreshed))
    except Exception as exc:  # the parent asserts on it
        results.put(("error", type(exc).__name__, str(exc), False))
