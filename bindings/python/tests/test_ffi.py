"""The raw layer: declarations match include/hap.h, the ABI check, where the library comes from."""

from __future__ import annotations

import ctypes
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import hap_oauth as hap
from hap_oauth import _errors, _ffi

from conftest import REPO_ROOT

HEADER = REPO_ROOT / "include" / "hap.h"


def _header_text(text: str | None = None) -> str:
    text = HEADER.read_text() if text is None else text
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def header_functions(text: str | None = None) -> dict[str, int]:
    """Every function hap.h (or ``text``) declares -> its parameter count."""
    text = "\n".join(
        line for line in _header_text(text).splitlines() if not line.lstrip().startswith("#")
    )
    found: dict[str, int] = {}
    for name, params in re.findall(r"\b(hap_\w+)\s*\(([^()]*)\)\s*;", text):
        params = params.strip()
        found[name] = 0 if params in ("", "void") else params.count(",") + 1
    return found


def test_header_declares_the_nine_functions_of_abi_md() -> None:
    assert len(header_functions()) >= 9


def test_every_header_function_is_declared_with_its_arity() -> None:
    in_header = header_functions()
    missing = sorted(set(in_header) - set(_ffi.SIGNATURES))
    assert not missing, f"include/hap.h declares functions hap_oauth/_ffi.py does not: {missing}"
    stale = sorted(set(_ffi.SIGNATURES) - set(in_header))
    assert not stale, f"hap_oauth/_ffi.py declares functions include/hap.h does not: {stale}"
    for name, (_restype, argtypes) in _ffi.SIGNATURES.items():
        assert len(argtypes) == in_header[name], name
        fn = getattr(_ffi.lib, name)
        assert list(fn.argtypes) == list(argtypes), name


def test_the_drift_check_sees_a_new_function() -> None:
    grown = HEADER.read_text() + (
        "\n/* a new function */\n"
        "hap_status hap_pool_reload(const hap_pool *pool,\n"
        "                           char **error_out);\n"
    )
    assert header_functions(grown)["hap_pool_reload"] == 2
    assert set(header_functions(grown)) - set(_ffi.SIGNATURES) == {"hap_pool_reload"}


def test_owned_strings_are_never_c_char_p() -> None:
    # A c_char_p result would be copied and its pointer lost: never hap_free'd, never zeroed.
    for name, (restype, argtypes) in _ffi.SIGNATURES.items():
        if name in ("hap_version", "hap_status_name"):
            continue  # static strings, documented as never freed
        assert restype is not ctypes.c_char_p, name
        for arg in argtypes:
            assert arg is not ctypes.POINTER(ctypes.c_char_p), name


def test_header_abi_version_matches_the_package() -> None:
    text = HEADER.read_text()
    major = int(re.search(r"#define\s+HAP_ABI_VERSION_MAJOR\s+(\d+)", text).group(1))  # type: ignore[union-attr]
    minor = int(re.search(r"#define\s+HAP_ABI_VERSION_MINOR\s+(\d+)", text).group(1))  # type: ignore[union-attr]
    assert major == _ffi.ABI_MAJOR
    assert minor >= _ffi.ABI_MINOR
    assert hap.abi_version() == (major, minor)


def test_every_status_in_the_header_has_an_exception_class() -> None:
    statuses = {
        name: int(value)
        for name, value in re.findall(r"\b(HAP_STATUS_[A-Z_]+)\s*=?\s*\(?(\d+)\)?", _header_text())
    }
    if not statuses:
        pytest.skip("hap.h spells no HAP_STATUS_* values")
    for name, value in statuses.items():
        if value == 0:
            continue
        assert value in _errors.STATUS_CLASSES, name
        assert hap.status_name(value) == name


def test_status_names_come_from_the_library() -> None:
    for status, cls in _errors.STATUS_CLASSES.items():
        assert hap.status_name(status) == cls("m").name
    assert hap.status_name(0) == "HAP_STATUS_OK"
    assert hap.status_name(12345) == "HAP_STATUS_UNKNOWN"


def test_versions() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", hap.__version__)
    assert hap.library_version().startswith("hap ")
    assert os.path.isabs(hap.library_path())


@pytest.mark.parametrize(
    ("found", "shown"), [(0x0001_0000, "1.0"), (0x0000_0000, "0.0"), (0x0002_0003, "2.3")]
)
def test_abi_mismatch_is_an_import_error_naming_both_versions(found: int, shown: str) -> None:
    with pytest.raises(ImportError) as info:
        _ffi.check_abi(found, "/x/libhap.so")
    text = str(info.value)
    assert f"ABI {shown}" in text
    assert f"ABI {_ffi.ABI_MAJOR}.{_ffi.ABI_MINOR}" in text
    assert "/x/libhap.so" in text


def test_a_newer_minor_abi_is_accepted() -> None:
    _ffi.check_abi((_ffi.ABI_MAJOR << 16) | (_ffi.ABI_MINOR + 1), "/x/libhap.so")


def _import_hap(env_library_path: str | None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("HAP_LIBRARY_PATH", None)
    if env_library_path is not None:
        env["HAP_LIBRARY_PATH"] = env_library_path
    return subprocess.run(
        [sys.executable, "-c", "import hap_oauth as hap; print(hap.library_path())"],
        env=env,
        capture_output=True,
        text=True,
        cwd="/",
        check=False,
    )


def test_a_missing_library_is_an_import_error() -> None:
    result = _import_hap("/nonexistent/libhap.so")
    assert result.returncode != 0
    assert "ImportError" in result.stderr
    assert "/nonexistent/libhap.so" in result.stderr


def test_hap_library_path_must_be_absolute() -> None:
    result = _import_hap("libhap.so")
    assert result.returncode != 0
    assert "must be an absolute path" in result.stderr


def test_a_library_that_is_not_libhap_is_an_import_error() -> None:
    libc = "/lib/x86_64-linux-gnu/libc.so.6"
    if not Path(libc).exists():
        pytest.skip("no libc at the Debian path")
    result = _import_hap(libc)
    assert result.returncode != 0
    assert "does not export hap_abi_version" in result.stderr


def test_hap_library_path_overrides() -> None:
    result = _import_hap(_ffi.LIBRARY_PATH)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == _ffi.LIBRARY_PATH


def test_the_installed_package_loads_its_bundled_library() -> None:
    bundled = Path(_ffi.__file__).resolve().parent / _ffi.LIBRARY_NAME
    if not bundled.is_file():
        pytest.skip("running from a source checkout: no bundled library")
    result = _import_hap(None)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(bundled)
