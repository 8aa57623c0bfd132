"""The raw layer: libhap's C ABI (include/hap.h, docs/ABI.md) declared for ctypes, and nothing more.

Every exported function has its ``argtypes``/``restype`` in ``SIGNATURES`` (a test fails when the
header declares a function missing here). The library is loaded with ``ctypes.CDLL``, never
``PyDLL``: CDLL releases the GIL around each foreign call, so a refresh that waits on a lock or
on the network never stalls the other Python threads.

Strings the library hands out are declared ``c_void_p``, never ``c_char_p``: ctypes would copy a
``c_char_p`` result into ``bytes`` and drop the pointer, leaking it (and the token in it) without
the ``hap_free`` that zeroes it. ``take_string`` is the one place that decodes such a string and
frees it.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path
from typing import Any

from ._version import __version__

#: The ABI this package was written against: it runs on any libhap with the same major and
#: a minor at least this high (minor versions only add functions, statuses and keys).
ABI_MAJOR = 0
ABI_MINOR = 1

LIBRARY_NAME = "libhap.dylib" if sys.platform == "darwin" else "libhap.so"

hap_status = ctypes.c_int32
_out = ctypes.POINTER(ctypes.c_void_p)  # char ** and hap_pool **: written by the library

#: name -> (restype, argtypes), in include/hap.h order.
SIGNATURES: dict[str, tuple[Any, tuple[Any, ...]]] = {
    "hap_abi_version": (ctypes.c_uint32, ()),
    # The two static strings are never freed, so c_char_p (copy, keep no pointer) is right here.
    "hap_version": (ctypes.c_char_p, ()),
    "hap_status_name": (ctypes.c_char_p, (hap_status,)),
    "hap_pool_open": (hap_status, (ctypes.c_char_p, _out, _out)),
    "hap_resolve_token": (hap_status, (ctypes.c_void_p, ctypes.c_char_p, _out, _out)),
    "hap_report_failure": (hap_status, (ctypes.c_void_p, ctypes.c_char_p, _out, _out)),
    "hap_pool_status": (hap_status, (ctypes.c_void_p, _out, _out)),
    "hap_pool_free": (None, (ctypes.c_void_p,)),
    "hap_free": (None, (ctypes.c_void_p,)),
}


def find_library() -> str:
    """``HAP_LIBRARY_PATH`` if set (development, CI), else the copy bundled in this package."""
    override = os.environ.get("HAP_LIBRARY_PATH")
    if override:
        if not os.path.isabs(override):
            raise ImportError(f"HAP_LIBRARY_PATH must be an absolute path, got {override!r}")
        return override
    bundled = Path(__file__).resolve().parent / LIBRARY_NAME
    if not bundled.is_file():
        raise ImportError(
            f"hap_oauth: {LIBRARY_NAME} is not bundled in {bundled.parent} (a source checkout, "
            "not an installed package): install the package (`pip install hap-oauth`; in a "
            "checkout `pip install ./bindings/python`), or set HAP_LIBRARY_PATH to the absolute "
            "path of a built libhap"
        )
    return str(bundled)


def check_abi(found: int, path: str) -> None:
    """Refuse a library whose ABI this package cannot drive, naming both versions."""
    major, minor = found >> 16, found & 0xFFFF
    if major != ABI_MAJOR or minor < ABI_MINOR:
        raise ImportError(
            f"hap: {path} implements libhap ABI {major}.{minor}, but the hap Python package "
            f"{__version__} needs ABI {ABI_MAJOR}.{ABI_MINOR} (same major, minor >= "
            f"{ABI_MINOR}); install a matching hap-oauth or point HAP_LIBRARY_PATH at a "
            "matching libhap"
        )


def _load(path: str) -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL(path)
    except OSError as exc:
        raise ImportError(f"hap: cannot load libhap from {path}: {exc}") from exc

    def declare(name: str) -> None:
        try:
            fn = getattr(lib, name)
        except AttributeError:
            raise ImportError(f"hap: {path} does not export {name}; is it libhap?") from None
        fn.restype, argtypes = SIGNATURES[name]
        fn.argtypes = list(argtypes)

    # The version check comes first, so an old or foreign library fails with the clear message.
    declare("hap_abi_version")
    check_abi(int(lib.hap_abi_version()), path)
    for name in SIGNATURES:
        declare(name)
    return lib


LIBRARY_PATH = find_library()
lib = _load(LIBRARY_PATH)

hap_abi_version = lib.hap_abi_version
hap_version = lib.hap_version
hap_status_name = lib.hap_status_name
hap_pool_open = lib.hap_pool_open
hap_resolve_token = lib.hap_resolve_token
hap_report_failure = lib.hap_report_failure
hap_pool_status = lib.hap_pool_status
hap_pool_free = lib.hap_pool_free
hap_free = lib.hap_free


def take_string(ptr: ctypes.c_void_p) -> str:
    """Decode a ``char *`` that the library handed to us, then ``hap_free`` it (which zeroes it).

    The one place an owned string crosses into Python. ``ptr`` is an out-parameter the library
    wrote; NULL gives ``""``.
    """
    if not ptr.value:
        return ""
    try:
        return ctypes.string_at(ptr.value).decode("utf-8")
    finally:
        hap_free(ptr)
        ptr.value = None
