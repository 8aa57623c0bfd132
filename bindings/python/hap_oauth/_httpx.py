"""``HttpxAuth``: the pool as an ``httpx`` auth, for ``httpx.Client``/``AsyncClient`` and SDKs.

The official ``anthropic`` SDK 2.x runs on ``httpx2`` (a fork of httpx with the same ``Auth``
protocol) and refuses httpx objects; earlier SDKs and most other code run on ``httpx``. So
``HttpxAuth`` derives from the ``Auth`` class of each of the two that is installed, and one
object works with either client. The policy (headers, 401, 429) is ``_auth.py``'s.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
from typing import Any

from . import _auth
from ._aio import in_thread
from ._pool import Pool

_bases: list[type] = []
try:
    import httpx

    _bases.append(httpx.Auth)
except ImportError:  # pragma: no cover - depends on what is installed
    pass
try:
    import httpx2

    _bases.append(httpx2.Auth)
except ImportError:  # pragma: no cover
    pass
if not _bases:  # pragma: no cover
    raise ImportError(
        "hap.HttpxAuth needs httpx (or httpx2, which the anthropic SDK uses): "
        "pip install 'hap[httpx]'"
    )


class HttpxAuth(*_bases):  # type: ignore[misc]
    """``httpx.Client(auth=hap.HttpxAuth(pool))``: every request gets the pool's token.

    Sync and async clients both work; the async flow runs the pool's calls in hap's worker
    threads, so a refresh never blocks the event loop. On a 401 the credential is reported
    and refreshed once and the request retried once; on a 429 it is reported and the request
    retried only with another credential, else the 429 is returned as it came.
    ``min_validity_ms`` is passed to every resolve (default: the pool's refresh skew).
    """

    # The request may be sent twice: its body must be read once, up front.
    requires_request_body = True
    requires_response_body = False

    def __init__(self, pool: Pool, *, min_validity_ms: int | None = None) -> None:
        self._pool = pool
        self._min_validity_ms = min_validity_ms

    @property
    def pool(self) -> Pool:
        return self._pool

    def sync_auth_flow(self, request: Any) -> Generator[Any, Any, None]:
        request.read()
        token = self._pool.resolve_token(min_validity_ms=self._min_validity_ms)
        _auth.apply_token(request.headers, token)
        response = yield request
        retry = _auth.after_response(self._pool, token, response.status_code, response.headers)
        if retry is None:
            return
        _auth.apply_token(request.headers, retry)
        response = yield request
        _auth.after_retry(self._pool, retry, response.status_code, response.headers)

    async def async_auth_flow(self, request: Any) -> AsyncGenerator[Any, Any]:
        await request.aread()
        token = await in_thread(self._pool.resolve_token, min_validity_ms=self._min_validity_ms)
        _auth.apply_token(request.headers, token)
        response = yield request
        retry = await in_thread(
            _auth.after_response, self._pool, token, response.status_code, response.headers
        )
        if retry is None:
            return
        _auth.apply_token(request.headers, retry)
        response = yield request
        await in_thread(
            _auth.after_retry, self._pool, retry, response.status_code, response.headers
        )

    def __repr__(self) -> str:
        return f"<hap.HttpxAuth of {self._pool!r}>"
