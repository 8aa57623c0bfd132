//! The nine exported functions of ABI 0.1. Names, signatures and statuses are fixed by
//! docs/ABI.md; keep this file and that page in step.

use super::{boundary, call, hap_pool, hap_status, into_handle, opt_str, set};
use crate::error::{Error, Status};
use crate::pool::Pool;
use crate::request::{Failure, ResolveRequest};
use std::ffi::{c_char, CStr, CString};

/// Major version of the ABI this header describes. A change of major breaks callers.
pub const HAP_ABI_VERSION_MAJOR: u32 = 0;
/// Minor version: additions only (a function, a status, an output key).
pub const HAP_ABI_VERSION_MINOR: u32 = 1;
/// `(major << 16) | minor`, what `hap_abi_version()` returns.
pub const HAP_ABI_VERSION: u32 = (HAP_ABI_VERSION_MAJOR << 16) | HAP_ABI_VERSION_MINOR;

/// Success; out-params are set.
pub const HAP_STATUS_OK: hap_status = 0;
/// NULL where not allowed, invalid UTF-8, malformed JSON, unknown or ill-typed key,
/// relative path, non-loopback http:// URL.
pub const HAP_STATUS_INVALID_ARGUMENT: hap_status = 1;
/// Nothing usable right now; the error JSON carries `retry_at_ms` when one comes back.
pub const HAP_STATUS_NO_CREDENTIAL: hap_status = 2;
/// The grant was rejected for good: a person must log in again. Nothing was blanked.
pub const HAP_STATUS_REAUTH_REQUIRED: hap_status = 3;
/// Transient: the token endpoint failed and no valid access token is left; `retry_at_ms`.
pub const HAP_STATUS_UNAVAILABLE: hap_status = 4;
/// Another process held a lock past `lock_timeout_ms`.
pub const HAP_STATUS_LOCK_TIMEOUT: hap_status = 5;
/// A store file cannot be parsed; it was left byte-for-byte unchanged; `path` set.
pub const HAP_STATUS_STORE_CORRUPT: hap_status = 6;
/// An operating-system error reading or writing a store; `path` set.
pub const HAP_STATUS_IO: hap_status = 7;
/// `hap_report_failure` (or a resolve) named a `credential_id` the pool does not have.
pub const HAP_STATUS_UNKNOWN_CREDENTIAL: hap_status = 8;
/// A bug (a caught panic); the pool answers HAP_STATUS_INTERNAL from then on.
pub const HAP_STATUS_INTERNAL: hap_status = 100;

/// `(major << 16) | minor` of the ABI the loaded library implements; 0.1 -> 0x00000001.
/// Bindings compare it with `HAP_ABI_VERSION` from the header they were built against.
#[no_mangle]
pub extern "C" fn hap_abi_version() -> u32 {
    call(|| HAP_ABI_VERSION)
}

/// A static string such as "hap 0.1.0 (abi 0.1)". Never freed.
#[no_mangle]
pub extern "C" fn hap_version() -> *const c_char {
    static V: &CStr = {
        const B: &[u8] = concat!(crate::version_string!(), "\0").as_bytes();
        match CStr::from_bytes_with_nul(B) {
            Ok(c) => c,
            Err(_) => panic!("version string has an interior NUL"),
        }
    };
    call(|| V.as_ptr())
}

/// The static name of a status, e.g. "HAP_STATUS_NO_CREDENTIAL"; "HAP_STATUS_UNKNOWN" for a
/// value this library does not know. Never freed.
#[no_mangle]
pub extern "C" fn hap_status_name(s: hap_status) -> *const c_char {
    call(|| match Status::from_code(s) {
        Some(st) => st.name_cstr().as_ptr(),
        None => c"HAP_STATUS_UNKNOWN".as_ptr(),
    })
}

/// Opens a pool handle from `config_json` (NULL or "{}" = every default). On success
/// `*pool_out` receives a handle to release with `hap_pool_free`. Needs no network.
///
/// # Safety
/// `config_json` is NULL or a NUL-terminated string; `pool_out` is valid for writes;
/// `error_out` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn hap_pool_open(
    config_json: *const c_char,
    pool_out: *mut *mut hap_pool,
    error_out: *mut *mut c_char,
) -> hap_status {
    call(|| {
        // SAFETY: `pool_out` is NULL or valid for writes (the caller's contract).
        unsafe { set(pool_out, std::ptr::null_mut()) };
        let mut opened: Option<Pool> = None;
        // SAFETY: `error_out` is NULL or valid for writes; there is no result out-param.
        let status = unsafe {
            boundary(None, std::ptr::null_mut(), false, error_out, || {
                if pool_out.is_null() {
                    return Err(Error::invalid("pool_out is NULL"));
                }
                // SAFETY: NULL or NUL-terminated, valid for the call (the caller's contract).
                let cfg = opt_str(config_json, "config_json")?;
                opened = Some(Pool::open_json(cfg)?);
                Ok(None)
            })
        };
        if let Some(pool) = opened {
            // SAFETY: as above; only reached when `pool_out` is not NULL.
            unsafe { set(pool_out, into_handle(pool)) };
        }
        status
    })
}

/// Returns a valid access token as JSON (see docs/ABI.md) in `*result_json_out`. May block for
/// a lock wait and a refresh. `request_json` may be NULL.
///
/// # Safety
/// `pool` is NULL or a live handle; strings are NULL or NUL-terminated; out pointers are
/// NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn hap_resolve_token(
    pool: Option<&hap_pool>,
    request_json: *const c_char,
    result_json_out: *mut *mut c_char,
    error_out: *mut *mut c_char,
) -> hap_status {
    // SAFETY: out pointers NULL or valid for writes (the caller's contract).
    call(|| unsafe {
        boundary(pool, result_json_out, true, error_out, || {
            let h = pool.ok_or_else(|| Error::invalid("pool is NULL"))?;
            // SAFETY: NULL or NUL-terminated, valid for the call (the caller's contract).
            let req = ResolveRequest::from_json(opt_str(request_json, "request_json")?)?;
            let token = h.pool.resolve(&req)?;
            // The String moves into the C string without a copy; hap_free zeroes it.
            Ok(Some(token.to_json_string()))
        })
    })
}

/// Reports what the caller saw when it used a token (HTTP status, reason, reset time).
/// `*result_json_out` receives `{"credential_id", "last_status", "available_at_ms"}`.
///
/// # Safety
/// As `hap_resolve_token`.
#[no_mangle]
pub unsafe extern "C" fn hap_report_failure(
    pool: Option<&hap_pool>,
    failure_json: *const c_char,
    result_json_out: *mut *mut c_char,
    error_out: *mut *mut c_char,
) -> hap_status {
    // SAFETY: out pointers NULL or valid for writes (the caller's contract).
    call(|| unsafe {
        boundary(pool, result_json_out, true, error_out, || {
            let h = pool.ok_or_else(|| Error::invalid("pool is NULL"))?;
            // SAFETY: NULL or NUL-terminated, valid for the call (the caller's contract).
            let f = Failure::from_json(opt_str(failure_json, "failure_json")?)?;
            Ok(Some(h.pool.report_failure(&f)?.to_json().to_string()))
        })
    })
}

/// A snapshot of the pool as JSON, with no side effects and no secrets.
///
/// # Safety
/// As `hap_resolve_token`.
#[no_mangle]
pub unsafe extern "C" fn hap_pool_status(
    pool: Option<&hap_pool>,
    status_json_out: *mut *mut c_char,
    error_out: *mut *mut c_char,
) -> hap_status {
    // SAFETY: out pointers NULL or valid for writes (the caller's contract).
    call(|| unsafe {
        boundary(pool, status_json_out, true, error_out, || {
            let h = pool.ok_or_else(|| Error::invalid("pool is NULL"))?;
            Ok(Some(h.pool.status()?.to_string()))
        })
    })
}

/// Releases a handle. NULL is ignored. Never twice, never during another call on it.
///
/// # Safety
/// `pool` is NULL or a handle from `hap_pool_open` not yet freed.
#[no_mangle]
pub unsafe extern "C" fn hap_pool_free(pool: Option<Box<hap_pool>>) {
    call(|| drop(pool))
}

/// Releases a string hap handed out, zeroing its bytes first. NULL is ignored.
///
/// # Safety
/// `s` is NULL or a string from hap not yet freed.
#[no_mangle]
pub unsafe extern "C" fn hap_free(s: *mut c_char) {
    call(|| {
        if !s.is_null() {
            // SAFETY: a string from `to_c` (CString::into_raw) not yet freed (the caller's
            // contract).
            let mut bytes = unsafe { CString::from_raw(s) }.into_bytes_with_nul();
            zeroize::Zeroize::zeroize(&mut bytes);
        }
    })
}
