"""One exception class per ``hap_status``, each also the builtin a Python programmer would catch.

| status | class | also a |
|---|---|---|
| 1 INVALID_ARGUMENT | InvalidArgumentError | ValueError |
| 2 NO_CREDENTIAL | NoCredentialError | LookupError |
| 3 REAUTH_REQUIRED | ReauthRequiredError | (none: a person must log in again) |
| 4 UNAVAILABLE | UnavailableError | ConnectionError (so OSError) |
| 5 LOCK_TIMEOUT | LockTimeoutError | TimeoutError (so OSError) |
| 6 STORE_CORRUPT | StoreCorruptError | ValueError (as json.JSONDecodeError is) |
| 7 IO | IoError | OSError |
| 8 UNKNOWN_CREDENTIAL | UnknownCredentialError | KeyError (so LookupError) |
| 100 INTERNAL | InternalError | RuntimeError |
| any other | HapError | |

The names end in ``Error`` as in the Node binding (docs/GLOSSARY.md). The names without the
suffix (``InvalidArgument``, ``NoCredential``, ``ReauthRequired``, ``Unavailable``,
``LockTimeout``, ``StoreCorrupt``, ``UnknownCredential``) are deprecated aliases of the same
classes: ``except NoCredential`` keeps working.
"""

from __future__ import annotations

from typing import Any, ClassVar


class HapError(Exception):
    """A failure libhap reported. ``str()`` is the library's one-line message (never a secret).

    Attributes: ``status`` (the ``hap_status`` integer), ``name`` (e.g.
    ``"HAP_STATUS_NO_CREDENTIAL"``), ``message``, and where they apply ``retry_at_ms`` (epoch ms
    when a credential comes back by itself), ``credential_id`` and ``path``.
    """

    STATUS: ClassVar[int | None] = None

    status: int
    name: str
    message: str
    retry_at_ms: int | None
    credential_id: str | None
    path: str | None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        name: str | None = None,
        retry_at_ms: int | None = None,
        credential_id: str | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status if status is not None else (self.STATUS or 0)
        self.name = name or _NAMES.get(self.status, "HAP_STATUS_UNKNOWN")
        self.retry_at_ms = retry_at_ms
        self.credential_id = credential_id
        self.path = path

    def __str__(self) -> str:
        # One definition for every subclass: KeyError would otherwise quote the message and
        # OSError would format errno fields.
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only attributes survive pickling (multiprocessing sends exceptions back).
        return (self.__class__, (self.message,), self.__dict__)


class InvalidArgumentError(HapError, ValueError):
    """Bad config or request: unknown or ill-typed key, relative path, non-loopback http URL."""

    STATUS = 1


class NoCredentialError(HapError, LookupError):
    """Nothing usable right now; ``retry_at_ms`` says when one comes back by itself, if ever."""

    STATUS = 2


class ReauthRequiredError(HapError):
    """The grant was rejected for good: a person must log in again. Nothing was blanked."""

    STATUS = 3


class UnavailableError(HapError, ConnectionError):
    """The token endpoint failed transiently and no valid token is left; see ``retry_at_ms``."""

    STATUS = 4


class LockTimeoutError(HapError, TimeoutError):
    """Another process held a store lock past ``lock_timeout_ms``."""

    STATUS = 5


class StoreCorruptError(HapError, ValueError):
    """A store file (``path``) cannot be parsed; it was left byte-for-byte unchanged."""

    STATUS = 6


class IoError(HapError, OSError):
    """The operating system refused to read or write a store (``path``)."""

    STATUS = 7


class UnknownCredentialError(HapError, KeyError):
    """``resolve_token`` or ``report_failure`` named a ``credential_id`` the pool lacks."""

    STATUS = 8


class InternalError(HapError, RuntimeError):
    """A bug in libhap (a caught panic); the pool answers this from then on: open a new one."""

    STATUS = 100


# Deprecated aliases: the names before they were aligned with the other bindings.
InvalidArgument = InvalidArgumentError
NoCredential = NoCredentialError
ReauthRequired = ReauthRequiredError
Unavailable = UnavailableError
LockTimeout = LockTimeoutError
StoreCorrupt = StoreCorruptError
UnknownCredential = UnknownCredentialError

_NAMES = {
    0: "HAP_STATUS_OK",
    1: "HAP_STATUS_INVALID_ARGUMENT",
    2: "HAP_STATUS_NO_CREDENTIAL",
    3: "HAP_STATUS_REAUTH_REQUIRED",
    4: "HAP_STATUS_UNAVAILABLE",
    5: "HAP_STATUS_LOCK_TIMEOUT",
    6: "HAP_STATUS_STORE_CORRUPT",
    7: "HAP_STATUS_IO",
    8: "HAP_STATUS_UNKNOWN_CREDENTIAL",
    100: "HAP_STATUS_INTERNAL",
}

#: status -> exception class; any status not here raises plain ``HapError``.
STATUS_CLASSES: dict[int, type[HapError]] = {
    cls.STATUS: cls
    for cls in (
        InvalidArgumentError,
        NoCredentialError,
        ReauthRequiredError,
        UnavailableError,
        LockTimeoutError,
        StoreCorruptError,
        IoError,
        UnknownCredentialError,
        InternalError,
    )
    if cls.STATUS is not None
}


def _opt_int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def error_from(status: int, error: dict[str, Any] | None, fallback_name: str) -> HapError:
    """Build the exception for a failed call from its ``error_out`` JSON (``None`` if absent)."""
    error = error or {}
    name = _opt_str(error.get("name")) or fallback_name
    message = _opt_str(error.get("message")) or name
    cls = STATUS_CLASSES.get(status, HapError)
    return cls(
        message,
        status=status,
        name=name,
        retry_at_ms=_opt_int(error.get("retry_at_ms")),
        credential_id=_opt_str(error.get("credential_id")),
        path=_opt_str(error.get("path")),
    )
