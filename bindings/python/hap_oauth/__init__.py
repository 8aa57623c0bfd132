"""hap: one Anthropic OAuth session shared safely by every process on the machine.

    import hap_oauth as hap

    pool = hap.Pool()                   # once per process; reuse it everywhere
    token = pool.resolve_token()
    ...  # call the API with token.access_token
    pool.report_failure(token.credential_id, 429, reset_at=...)  # when the API says so

HTTP clients: ``hap.HttpxAuth(pool)`` (httpx, httpx2 and so the anthropic SDK),
``hap.RequestsAuth(pool)``; asyncio: ``hap.AsyncPool(pool)``.

A thin binding of libhap (bundled in this package; ``HAP_LIBRARY_PATH`` overrides it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import _ffi
from ._aio import AsyncPool
from ._errors import (
    HapError,
    InternalError,
    InvalidArgument,
    InvalidArgumentError,
    IoError,
    LockTimeout,
    LockTimeoutError,
    NoCredential,
    NoCredentialError,
    ReauthRequired,
    ReauthRequiredError,
    StoreCorrupt,
    StoreCorruptError,
    Unavailable,
    UnavailableError,
    UnknownCredential,
    UnknownCredentialError,
)
from ._pool import FailureResult, Pool, Token
from ._version import __version__

if TYPE_CHECKING:
    from ._httpx import HttpxAuth
    from ._requests import RequestsAuth

__all__ = [
    "AsyncPool",
    "FailureResult",
    "HapError",
    "HttpxAuth",
    "InternalError",
    "InvalidArgument",
    "InvalidArgumentError",
    "IoError",
    "LockTimeout",
    "LockTimeoutError",
    "NoCredential",
    "NoCredentialError",
    "Pool",
    "ReauthRequired",
    "ReauthRequiredError",
    "RequestsAuth",
    "StoreCorrupt",
    "StoreCorruptError",
    "Token",
    "Unavailable",
    "UnavailableError",
    "UnknownCredential",
    "UnknownCredentialError",
    "__version__",
    "abi_version",
    "library_path",
    "library_version",
    "status_name",
]


def __getattr__(name: str) -> Any:
    # The HTTP adapters import their HTTP library, which the core binding does not need.
    if name == "HttpxAuth":
        from ._httpx import HttpxAuth

        return HttpxAuth
    if name == "RequestsAuth":
        from ._requests import RequestsAuth

        return RequestsAuth
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def abi_version() -> tuple[int, int]:
    """``(major, minor)`` of the loaded libhap's C ABI."""
    raw = int(_ffi.hap_abi_version())
    return (raw >> 16, raw & 0xFFFF)


def library_version() -> str:
    """The loaded libhap's version string, e.g. ``"hap 0.1.0 (abi 0.1)"``."""
    raw: bytes = _ffi.hap_version()
    return raw.decode("utf-8", "replace")


def library_path() -> str:
    """Absolute path of the libhap this process loaded."""
    return _ffi.LIBRARY_PATH


def status_name(status: int) -> str:
    """The static name of a status code, e.g. ``2 -> "HAP_STATUS_NO_CREDENTIAL"``."""
    raw: bytes = _ffi.hap_status_name(status)
    return raw.decode("ascii", "replace")
