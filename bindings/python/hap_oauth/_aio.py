"""``AsyncPool``: the pool's calls as coroutines that never block the event loop.

A resolve that refreshes waits for a lock and the token endpoint (seconds, when the endpoint
is slow); called straight from a coroutine it stalls every other task for that long. Here
each call runs in a worker thread of one small executor owned by this module, not the loop's
default executor: the default one also runs ``getaddrinfo`` for the loop, and a few resolves
waiting on one refresh must not stall the program's DNS lookups.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import threading
from collections.abc import Mapping
from typing import Any, Callable, TypeVar

from ._pool import FailureResult, Pool, ResetAt, Token

T = TypeVar("T")

_executor: concurrent.futures.ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _hap_executor() -> concurrent.futures.ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            # Four: resolves that wait on one refresh share its result, so more threads
            # would only wait longer together.
            _executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=4, thread_name_prefix="hap"
            )
        return _executor


async def in_thread(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run a blocking pool call in hap's worker threads and await it."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_hap_executor(), functools.partial(fn, *args, **kwargs))


class AsyncPool:
    """The awaitable face of a ``hap.Pool``: ``await apool.resolve_token()``.

    ``AsyncPool(pool)`` wraps a pool the program already holds (one pool, shared by threads
    and coroutines alike); ``await AsyncPool.open(config, **options)`` opens one in a worker
    thread (opening reads the store files). ``aclose()`` (or ``async with``) closes a pool this
    object opened, never one it was handed.
    """

    def __init__(self, pool: Pool, /) -> None:
        if not isinstance(pool, Pool):
            raise TypeError("AsyncPool(pool) takes a hap.Pool; use `await AsyncPool.open(...)`")
        self._pool = pool
        self._owns = False

    @classmethod
    async def open(cls, config: Mapping[str, Any] | None = None, /, **options: Any) -> AsyncPool:
        """Open a pool (``hap.Pool(config, **options)``) without blocking the loop."""
        pool = await in_thread(Pool, config, **options)
        self = cls(pool)
        self._owns = True
        return self

    @property
    def pool(self) -> Pool:
        """The shared synchronous pool, for threads and sync code of the same program."""
        return self._pool

    async def resolve_token(
        self,
        *,
        min_validity_ms: int | None = None,
        credential_id: str | None = None,
        force_refresh: bool = False,
    ) -> Token:
        """``Pool.resolve_token`` in a worker thread."""
        return await in_thread(
            self._pool.resolve_token,
            min_validity_ms=min_validity_ms,
            credential_id=credential_id,
            force_refresh=force_refresh,
        )

    async def report_failure(
        self,
        credential_id: str,
        status_code: int,
        *,
        reason: str | None = None,
        message: str | None = None,
        reset_at: ResetAt | None = None,
        retry_after_s: float | None = None,
    ) -> FailureResult:
        """``Pool.report_failure`` in a worker thread."""
        return await in_thread(
            self._pool.report_failure,
            credential_id,
            status_code,
            reason=reason,
            message=message,
            reset_at=reset_at,
            retry_after_s=retry_after_s,
        )

    async def status(self) -> dict[str, Any]:
        """``Pool.status`` in a worker thread."""
        return await in_thread(self._pool.status)

    async def aclose(self) -> None:
        """Close the pool if this object opened it (waits for calls in flight, off the loop)."""
        if self._owns:
            await in_thread(self._pool.close)

    async def __aenter__(self) -> AsyncPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<hap.AsyncPool of {self._pool!r}>"
