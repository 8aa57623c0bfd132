"""hap: one Anthropic OAuth session shared safely by every process on the machine.

    import hap_oauth as hap

    with hap.Pool(pool_path="~/.hermes/auth.json") as pool:
        token = pool.resolve_token()
        ...  # call the API with token.access_token
        pool.report_failure(token.credential_id, 429, reset_at=...)  # when the API says so

A thin binding of libhap (bundled in this package; ``HAP_LIBRARY_PATH`` overrides it).
"""

from __future__ import annotations

from . import _ffi
from ._errors import (
    HapError,
    InternalError,
    InvalidArgument,
    IoError,
    LockTimeout,
    NoCredential,
    ReauthRequired,
    StoreCorrupt,
    Unavailable,
    UnknownCredential,
)
from ._pool import FailureResult, Pool, Token
from ._version import __version__

__all__ = [
    "FailureResult",
    "HapError",
    "InternalError",
    "InvalidArgument",
    "IoError",
    "LockTimeout",
    "NoCredential",
    "Pool",
    "ReauthRequired",
    "StoreCorrupt",
    "Token",
    "Unavailable",
    "UnknownCredential",
    "__version__",
    "abi_version",
    "library_path",
    "library_version",
    "status_name",
]


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
