"""What every HTTP adapter of this package does with a token and with the API's answer.

One policy, shared by the ``httpx`` auth (sync and async flows) and the ``requests`` auth:

- A request carries the pool's token: an OAuth token as ``Authorization: Bearer`` plus the
  ``anthropic-beta: oauth-2025-04-20`` flag (merged into any ``anthropic-beta`` value already
  there) and no ``x-api-key``; an API key as ``x-api-key`` and no ``Authorization``.
- A 401 is reported (``report_failure``), then the same credential is resolved again: hap
  refreshes it, or hands over the token a sibling process already rotated to. The request is
  sent once more only when that gave a *different* token: one refresh, one retry.
- A 429 is reported, which benches the credential for every process; the request is sent
  once more only when the pool now resolves to *another* credential. Otherwise the 429 goes
  back to the caller, whose own retry policy (an SDK's ``max_retries``) decides: no retry
  storm, at most ``1 + max_retries`` requests. While the bench lasts, a resolve raises
  ``hap.NoCredential`` (with ``retry_at_ms``) instead of sending anything.
- A failure on the one retry is reported too, and handed back.

The functions here only decide and call the pool; the adapters run them inline (sync) or
in a worker thread (async), so an event loop never waits for a lock or the token endpoint.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import MutableMapping
from typing import Any

from ._errors import HapError
from ._pool import Pool, Token

#: The beta flag the Messages API wants beside an OAuth bearer token.
OAUTH_BETA = "oauth-2025-04-20"

log = logging.getLogger("hap")


def apply_token(headers: MutableMapping[str, str], token: Token) -> None:
    """Put ``token`` on a request's headers (case-insensitive mappings: httpx, requests)."""
    if token.auth_type == "api_key":
        headers.pop("Authorization", None)
        headers["x-api-key"] = token.access_token
        return
    headers.pop("x-api-key", None)
    headers["Authorization"] = f"Bearer {token.access_token}"
    flags = [f.strip() for f in headers.get("anthropic-beta", "").split(",") if f.strip()]
    if OAUTH_BETA not in flags:
        flags.append(OAUTH_BETA)
    headers["anthropic-beta"] = ",".join(flags)


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if value >= 0 and value == value and value != float("inf") else None


def _retry_after_s(headers: Any) -> float | None:
    raw = headers.get("retry-after")
    seconds = _number(raw)
    if seconds is not None or raw is None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _report(pool: Pool, token: Token, status: int, headers: Any) -> None:
    """report_failure for a 401/429, never raising: the response stands either way."""
    kwargs: dict[str, Any] = {}
    if status == 429:
        kwargs["reason"] = "rate_limit_error"
        kwargs["retry_after_s"] = _retry_after_s(headers)
        # The subscription limits' reset instant (epoch seconds), when the API sends it.
        kwargs["reset_at"] = _number(headers.get("anthropic-ratelimit-unified-reset"))
    try:
        pool.report_failure(token.credential_id, status, **kwargs)
    except (HapError, ValueError) as exc:
        log.warning(
            "hap: could not report HTTP %d for credential %s: %s", status, token.credential_id, exc
        )


def after_response(pool: Pool, token: Token, status: int, headers: Any) -> Token | None:
    """Report what the API answered; the token to send the request once more with, or None."""
    if status not in (401, 429):
        return None
    _report(pool, token, status, headers)
    try:
        if status == 401:
            fresh = pool.resolve_token(credential_id=token.credential_id)
            return fresh if fresh.access_token != token.access_token else None
        other = pool.resolve_token()
    except HapError:
        # Nothing usable now (benched, refused, endpoint down): the API's answer stands.
        return None
    return other if other.credential_id != token.credential_id else None


def after_retry(pool: Pool, token: Token, status: int, headers: Any) -> None:
    """The one retry's answer: reported, never retried again."""
    if status in (401, 429):
        _report(pool, token, status, headers)
