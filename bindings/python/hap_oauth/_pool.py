"""The idiomatic layer: ``Pool``, ``Token``, ``FailureResult`` over the raw declarations."""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import hashlib
import json
import os
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Union

from . import _ffi
from ._errors import HapError, error_from


@dataclass(frozen=True)
class Token:
    """An access token and where it came from. ``repr``/``str`` show a fingerprint, never it."""

    access_token: str = field(repr=False)
    credential_id: str
    label: str | None
    source: str
    auth_type: str
    #: Epoch milliseconds; ``None`` for tokens without expiry (API keys).
    expires_at_ms: int | None
    #: True when this very call's POST to the token endpoint produced the token.
    refreshed: bool

    @property
    def fingerprint(self) -> str:
        """``"sha256:" + 16 hex``: the ``secret_fingerprint`` hap writes in the pool file."""
        return "sha256:" + hashlib.sha256(self.access_token.encode("utf-8")).hexdigest()[:16]

    def __repr__(self) -> str:
        return (
            f"Token(credential_id={self.credential_id!r}, label={self.label!r}, "
            f"source={self.source!r}, auth_type={self.auth_type!r}, "
            f"expires_at_ms={self.expires_at_ms!r}, refreshed={self.refreshed!r}, "
            f"access_token=<{self.fingerprint}>)"
        )


@dataclass(frozen=True)
class FailureResult:
    """What ``report_failure`` did to the credential."""

    credential_id: str
    #: ``ok``, ``refresh_pending``, ``exhausted`` or ``dead``.
    last_status: str
    #: Epoch ms when an ``exhausted`` credential comes back; ``None`` otherwise.
    available_at_ms: int | None


ResetAt = Union[int, float, str, datetime.datetime]

# Pools alive in this process, so a fork() child can disown them (the ABI forbids using a pool
# across fork(): its locks and threads did not come along).
_live_pools: weakref.WeakSet[Pool] = weakref.WeakSet()


def _disown_after_fork() -> None:
    for pool in list(_live_pools):
        pool._disown()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_disown_after_fork)


def _json_default(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"hap config value of type {type(value).__name__} is not JSON")


def _invoke(fn: Any, *args: Any) -> str:
    """Call a libhap function with trailing ``(char **out, char **error_out)``; return ``*out``.

    Raises the status's ``HapError`` subclass from ``*error_out``.
    """
    out = ctypes.c_void_p()
    err = ctypes.c_void_p()
    try:
        status = fn(*args, ctypes.byref(out), ctypes.byref(err))
        if status == 0:
            return _ffi.take_string(out)
        raise _error(status, _ffi.take_string(err))
    finally:
        # Outputs are written only on the matching outcome; free anything left regardless.
        if out.value:
            _ffi.take_string(out)
        if err.value:
            _ffi.take_string(err)


def _error(status: int, error_json: str) -> HapError:
    try:
        parsed = json.loads(error_json) if error_json else None
    except ValueError:
        parsed = None
    return error_from(
        status,
        parsed if isinstance(parsed, dict) else None,
        _ffi.hap_status_name(status).decode("ascii", "replace"),
    )


class Pool:
    """A handle on the machine-wide credential pool (``hap_pool``).

    ``Pool(config, **options)``: ``config`` is the ABI's config object (every key optional:
    ``pool_path``, ``credentials_path``, ``token_urls``, ``lock_timeout_ms``, ...); keyword
    options override its keys. Paths may be ``os.PathLike``. Opening needs no network.

    Thread-safe: any number of threads may call one pool at once. ``close()`` waits for calls
    in flight, then frees the handle; later calls raise ``ValueError``. Use it as a context
    manager, or let garbage collection close it.
    """

    def __init__(self, config: Mapping[str, Any] | None = None, /, **options: Any) -> None:
        self._handle: int | None = None
        self._closed_reason = "operation on a closed hap.Pool"
        self._cond = threading.Condition(threading.Lock())
        self._inflight = 0
        merged = {**(config or {}), **options}
        raw = json.dumps(merged, default=_json_default).encode("utf-8")
        handle = ctypes.c_void_p()
        err = ctypes.c_void_p()
        status = _ffi.hap_pool_open(raw, ctypes.byref(handle), ctypes.byref(err))
        if status != 0:
            raise _error(status, _ffi.take_string(err))
        self._handle = handle.value
        _live_pools.add(self)

    # -- lifetime -----------------------------------------------------------------------------

    def _enter(self) -> int:
        with self._cond:
            if self._handle is None:
                raise ValueError(self._closed_reason)
            self._inflight += 1
            return self._handle

    def _leave(self) -> None:
        with self._cond:
            self._inflight -= 1
            if self._inflight == 0:
                self._cond.notify_all()

    def close(self) -> None:
        """Free the handle once calls in flight have returned. Idempotent."""
        with self._cond:
            handle, self._handle = self._handle, None
            if handle is None:
                return
            # hap_pool_free must never run during another call on the pool.
            while self._inflight:
                self._cond.wait()
        _ffi.hap_pool_free(handle)

    @property
    def closed(self) -> bool:
        return self._handle is None

    def _disown(self) -> None:
        # In a fork() child: forget the parent's handle without touching it.
        self._cond = threading.Condition(threading.Lock())
        self._inflight = 0
        self._handle = None
        self._closed_reason = (
            "this hap.Pool was opened before fork(); open a new Pool in the child process"
        )

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        # A backstop only: no call can be in flight once the last reference is gone.
        handle = getattr(self, "_handle", None)
        if handle is not None:
            self._handle = None
            # Interpreter shutdown may already have torn down ctypes.
            with contextlib.suppress(Exception):
                _ffi.hap_pool_free(handle)

    def __repr__(self) -> str:
        return f"<hap.Pool {'closed' if self._handle is None else 'open'}>"

    # -- calls --------------------------------------------------------------------------------

    def resolve_token(
        self,
        *,
        min_validity_ms: int | None = None,
        credential_id: str | None = None,
        force_refresh: bool = False,
    ) -> Token:
        """A token valid for at least ``min_validity_ms`` (default: the pool's refresh skew).

        Refreshes when needed (one POST machine-wide per rotation; other threads and processes
        wait and adopt its result). ``credential_id`` pins one credential; ``force_refresh``
        refreshes even a valid token. Blocks for lock waits and the network, without the GIL.
        """
        request: bytes | None = None
        if min_validity_ms is not None or credential_id is not None or force_refresh:
            fields: dict[str, Any] = {}
            if min_validity_ms is not None:
                fields["min_validity_ms"] = min_validity_ms
            if credential_id is not None:
                fields["credential_id"] = credential_id
            if force_refresh:
                fields["force_refresh"] = True
            request = json.dumps(fields).encode("utf-8")
        handle = self._enter()
        try:
            result = json.loads(_invoke(_ffi.hap_resolve_token, handle, request))
        finally:
            self._leave()
        return Token(
            access_token=result["access_token"],
            credential_id=result["credential_id"],
            label=result.get("label"),
            source=result.get("source", ""),
            auth_type=result.get("auth_type", ""),
            expires_at_ms=result.get("expires_at_ms"),
            refreshed=bool(result.get("refreshed", False)),
        )

    def report_failure(
        self,
        credential_id: str,
        status_code: int,
        *,
        reason: str | None = None,
        message: str | None = None,
        reset_at: ResetAt | None = None,
        retry_after_s: float | None = None,
    ) -> FailureResult:
        """Tell the pool what the API answered when ``credential_id``'s token was used.

        ``reset_at``: epoch seconds, epoch ms, an ISO-8601 string or a ``datetime`` (naive means
        local time). A 429 benches the credential until then; an OAuth 401 makes the next
        resolve refresh; terminal reasons (``token_revoked``, ...) mark it dead.
        """
        failure: dict[str, Any] = {"credential_id": credential_id, "status_code": status_code}
        if reason is not None:
            failure["reason"] = reason
        if message is not None:
            failure["message"] = message
        if isinstance(reset_at, datetime.datetime):
            failure["reset_at"] = reset_at.astimezone(datetime.timezone.utc).isoformat()
        elif reset_at is not None:
            failure["reset_at"] = reset_at
        if retry_after_s is not None:
            failure["retry_after_s"] = retry_after_s
        raw = json.dumps(failure).encode("utf-8")
        handle = self._enter()
        try:
            result = json.loads(_invoke(_ffi.hap_report_failure, handle, raw))
        finally:
            self._leave()
        return FailureResult(
            credential_id=result["credential_id"],
            last_status=result["last_status"],
            available_at_ms=result.get("available_at_ms"),
        )

    def status(self) -> dict[str, Any]:
        """A snapshot of the pool (credentials, cooldowns, counters); no secrets, no I/O side
        effects."""
        handle = self._enter()
        try:
            result: dict[str, Any] = json.loads(_invoke(_ffi.hap_pool_status, handle))
        finally:
            self._leave()
        return result
