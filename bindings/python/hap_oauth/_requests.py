"""``RequestsAuth``: the pool as a ``requests`` auth (``session.auth = hap.RequestsAuth(pool)``).

The retry is sent from a response hook on the same connection, as requests' own
``HTTPDigestAuth`` does; the policy (headers, 401, 429) is ``_auth.py``'s.
"""

from __future__ import annotations

from typing import Any

try:
    import requests
    from requests.hooks import default_hooks
except ImportError as exc:  # pragma: no cover - depends on what is installed
    raise ImportError("hap.RequestsAuth needs requests: pip install 'hap[requests]'") from exc

from . import _auth
from ._pool import Pool, Token


class RequestsAuth(requests.auth.AuthBase):
    """Every request gets the pool's token; a 401 is refreshed and retried once; a 429 is
    retried only with another credential, else returned as it came. ``min_validity_ms`` is
    passed to every resolve (default: the pool's refresh skew)."""

    def __init__(self, pool: Pool, *, min_validity_ms: int | None = None) -> None:
        self._pool = pool
        self._min_validity_ms = min_validity_ms

    @property
    def pool(self) -> Pool:
        return self._pool

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        token = self._pool.resolve_token(min_validity_ms=self._min_validity_ms)
        _auth.apply_token(r.headers, token)

        def on_response(response: requests.Response, **kwargs: Any) -> requests.Response:
            return self._after(response, token, kwargs)

        r.register_hook("response", on_response)  # type: ignore[no-untyped-call]
        return r

    def _after(
        self, response: requests.Response, token: Token, send_kwargs: dict[str, Any]
    ) -> requests.Response:
        retry = _auth.after_response(self._pool, token, response.status_code, response.headers)
        body = response.request.body
        # A streamed body (a generator or file) cannot be sent a second time.
        if retry is None or not (body is None or isinstance(body, (bytes, str))):
            return response
        response.content  # noqa: B018 - drain it so the connection can be reused
        response.close()
        prep = response.request.copy()
        prep.hooks = default_hooks()  # the retry's answer must not come back to this hook
        _auth.apply_token(prep.headers, retry)
        if response.connection is None:  # pragma: no cover - requests always sets it
            return response
        again: requests.Response = response.connection.send(prep, **send_kwargs)
        again.history.append(response)
        again.request = prep
        _auth.after_retry(self._pool, retry, again.status_code, again.headers)
        return again

    def __repr__(self) -> str:
        return f"<hap.RequestsAuth of {self._pool!r}>"
