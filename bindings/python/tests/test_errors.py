"""Every status reaches Python as its own exception class, which is also the fitting builtin."""

from __future__ import annotations

import fcntl
import os
import pickle
from pathlib import Path

import pytest

import hap_oauth as hap
from hap_oauth import _errors

from conftest import FakeServer, Home, now_ms

EXPECTED = [
    (1, hap.InvalidArgumentError, ValueError),
    (2, hap.NoCredentialError, LookupError),
    (3, hap.ReauthRequiredError, hap.HapError),
    (4, hap.UnavailableError, ConnectionError),
    (5, hap.LockTimeoutError, TimeoutError),
    (6, hap.StoreCorruptError, ValueError),
    (7, hap.IoError, OSError),
    (8, hap.UnknownCredentialError, KeyError),
    (100, hap.InternalError, RuntimeError),
]

# The names before they were aligned with the Node binding (docs/GLOSSARY.md): deprecated
# aliases of the very same classes, so `except hap.NoCredential` keeps catching.
DEPRECATED_ALIASES = {
    "InvalidArgument": "InvalidArgumentError",
    "NoCredential": "NoCredentialError",
    "ReauthRequired": "ReauthRequiredError",
    "Unavailable": "UnavailableError",
    "LockTimeout": "LockTimeoutError",
    "StoreCorrupt": "StoreCorruptError",
    "UnknownCredential": "UnknownCredentialError",
}


@pytest.mark.parametrize(("status", "cls", "builtin"), EXPECTED)
def test_status_maps_to_class_and_builtin(status: int, cls: type, builtin: type) -> None:
    error = {
        "status": status,
        "name": hap.status_name(status),
        "message": "one line",
        "retry_at_ms": 1_788_000_300_000,
        "credential_id": "a1b2c3",
        "path": "/tmp/x/auth.json",
    }
    exc = _errors.error_from(status, error, "unused")
    assert type(exc) is cls
    assert isinstance(exc, hap.HapError)
    assert isinstance(exc, builtin)
    assert exc.status == status
    assert exc.name == hap.status_name(status)
    assert exc.message == "one line"
    assert str(exc) == "one line"  # not KeyError's quoting, not OSError's errno format
    assert exc.retry_at_ms == 1_788_000_300_000
    assert exc.credential_id == "a1b2c3"
    assert exc.path == "/tmp/x/auth.json"
    with pytest.raises(builtin):
        raise exc


def test_every_status_class_is_covered() -> None:
    assert {s for s, _, _ in EXPECTED} == set(_errors.STATUS_CLASSES)


@pytest.mark.parametrize(("old", "new"), sorted(DEPRECATED_ALIASES.items()))
def test_deprecated_names_are_the_same_classes(old: str, new: str) -> None:
    cls = getattr(hap, new)
    assert getattr(hap, old) is cls
    assert cls.__name__ == new
    assert {old, new} <= set(hap.__all__)
    exc = _errors.error_from(cls.STATUS, None, hap.status_name(cls.STATUS))
    with pytest.raises(getattr(hap, old)):
        raise exc


def test_an_unknown_status_is_a_generic_hap_error() -> None:
    exc = _errors.error_from(77, None, "HAP_STATUS_UNKNOWN")
    assert type(exc) is hap.HapError
    assert exc.status == 77
    assert exc.name == "HAP_STATUS_UNKNOWN"
    assert exc.retry_at_ms is None


def test_exceptions_pickle_with_their_attributes() -> None:
    exc = hap.NoCredential("cooling down", retry_at_ms=5, credential_id="abc123")
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is hap.NoCredential
    assert (back.status, back.name, back.retry_at_ms, back.credential_id) == (
        2,
        "HAP_STATUS_NO_CREDENTIAL",
        5,
        "abc123",
    )
    assert str(back) == "cooling down"


# -- each status raised by the real library ------------------------------------------------


def test_invalid_argument_names_the_key(home: Home) -> None:
    with pytest.raises(hap.InvalidArgument) as info:
        hap.Pool(home.config(no_such_key=1))
    assert isinstance(info.value, ValueError)
    assert info.value.status == 1
    assert "no_such_key" in str(info.value)


def test_invalid_argument_for_a_relative_path(home: Home) -> None:
    with pytest.raises(ValueError, match="pool_path") as info:
        hap.Pool(home.config(pool_path="relative/auth.json"))
    assert isinstance(info.value, hap.InvalidArgument)


def test_no_credential(home: Home) -> None:
    with hap.Pool(home.config()) as pool, pytest.raises(hap.NoCredential) as info:
        pool.resolve_token()
    assert isinstance(info.value, LookupError)
    assert info.value.name == "HAP_STATUS_NO_CREDENTIAL"


def test_no_credential_while_cooling_down_carries_retry_at(valid: Home) -> None:
    with hap.Pool(valid.config()) as pool:
        token = pool.resolve_token()
        result = pool.report_failure(token.credential_id, 429, reason="rate_limit_error")
        assert result.last_status == "exhausted"
        with pytest.raises(hap.NoCredential) as info:
            pool.resolve_token()
    assert info.value.retry_at_ms is not None
    assert info.value.retry_at_ms > now_ms()


def test_reauth_required(expired: Home, server: FakeServer) -> None:
    server.revoke_all()
    before = expired.credentials_path.read_bytes()
    with hap.Pool(expired.config()) as pool, pytest.raises(hap.ReauthRequired) as info:
        pool.resolve_token()
    assert info.value.status == 3
    assert expired.credentials_path.read_bytes() == before  # nothing blanked


def test_unavailable(expired: Home, server: FakeServer) -> None:
    server.script({"status": 500, "body": {"error": "server_error"}})
    with hap.Pool(expired.config()) as pool, pytest.raises(hap.Unavailable) as info:
        pool.resolve_token()
    assert isinstance(info.value, ConnectionError)
    assert info.value.retry_at_ms is not None


def test_lock_timeout(expired: Home) -> None:
    lock_path = expired.credentials_path.parent / ".credentials.lock"
    with open(lock_path, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with (
            hap.Pool(expired.config(lock_timeout_ms=300)) as pool,
            pytest.raises(hap.LockTimeout) as info,
        ):
            pool.resolve_token()
    assert isinstance(info.value, TimeoutError)
    assert isinstance(info.value, OSError)


def test_store_corrupt_leaves_the_file_alone(home: Home) -> None:
    home.pool_path.parent.mkdir(parents=True)
    home.pool_path.write_bytes(b"not json{")
    with pytest.raises(hap.StoreCorrupt) as info:
        hap.Pool(home.config())
    assert isinstance(info.value, ValueError)
    assert info.value.path is not None
    assert Path(info.value.path).name == "auth.json"
    assert home.pool_path.read_bytes() == b"not json{"


def test_io_error(home: Home) -> None:
    # A directory where the credentials file should be: reading it is an OS error (EISDIR).
    home.credentials_path.mkdir(parents=True)
    with pytest.raises(hap.IoError) as info, hap.Pool(home.config()) as pool:
        pool.resolve_token()
    assert isinstance(info.value, OSError)
    assert info.value.path is not None
    assert os.path.basename(info.value.path) == ".credentials.json"


def test_unknown_credential(valid: Home) -> None:
    with hap.Pool(valid.config()) as pool, pytest.raises(hap.UnknownCredential) as info:
        pool.report_failure("ffffff", 429)
    assert isinstance(info.value, KeyError)
    assert "ffffff" in str(info.value) or info.value.credential_id == "ffffff"
