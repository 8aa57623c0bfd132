//! The C boundary. Everything unsafe in hap lives in this module.
//!
//! Conventions (also the top comment of `include/hap.h`):
//! * every exported body runs inside [`boundary`]: panics are caught, NULLs and invalid
//!   UTF-8 become `HAP_STATUS_INVALID_ARGUMENT`, errors become the error JSON;
//! * every `char **` out-param is set to NULL on entry and written only on success
//!   (`error_out` only on failure); what it receives is freed with `hap_free`;
//! * a handle whose call panicked answers `HAP_STATUS_INTERNAL` from then on.
#![allow(non_camel_case_types)]

mod exports;
pub use exports::*;

use crate::error::{Error, Status};
use crate::pool::Pool;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};

/// The opaque handle C sees as `hap_pool`.
pub struct hap_pool {
    pool: Pool,
    poisoned: AtomicBool,
}

/// Status code returned by every fallible hap function (0 = success).
pub type hap_status = i32;

/// Hands a Rust string to C. The caller frees it with `hap_free`.
fn to_c(s: String) -> *mut c_char {
    // JSON never contains a NUL byte (serde escapes it), so this cannot fail in practice;
    // if it did, refusing is better than truncating.
    match CString::new(s) {
        Ok(c) => c.into_raw(),
        Err(e) => {
            let mut bytes = e.into_vec();
            zeroize::Zeroize::zeroize(&mut bytes);
            std::ptr::null_mut()
        }
    }
}

/// Writes `value` to an out-param the boundary already cleared.
///
/// # Safety
/// `out` is NULL or valid for writes.
unsafe fn put(out: *mut *mut c_char, value: String) {
    if !out.is_null() {
        *out = to_c(value);
    }
}

/// Borrows an optional `const char *` argument as UTF-8.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string valid for the call.
unsafe fn opt_str<'a>(p: *const c_char, what: &str) -> Result<Option<&'a str>, Error> {
    if p.is_null() {
        return Ok(None);
    }
    CStr::from_ptr(p)
        .to_str()
        .map(Some)
        .map_err(|_| Error::invalid(format!("{what} is not valid UTF-8")))
}

/// Clears the out-params, runs `body` with panics caught, and reports the outcome.
///
/// # Safety
/// Every non-NULL out pointer is valid for writes.
unsafe fn boundary(
    handle: Option<&hap_pool>,
    result_out: *mut *mut c_char,
    needs_result: bool,
    error_out: *mut *mut c_char,
    body: impl FnOnce() -> Result<Option<String>, Error>,
) -> hap_status {
    if !result_out.is_null() {
        *result_out = std::ptr::null_mut();
    }
    if !error_out.is_null() {
        *error_out = std::ptr::null_mut();
    }
    let outcome = if needs_result && result_out.is_null() {
        Err(Error::invalid("the result out-parameter is NULL"))
    } else if handle.is_some_and(|h| h.poisoned.load(Ordering::Acquire)) {
        Err(Error::internal(
            "an earlier call on this pool failed inside hap; open a new pool",
        ))
    } else {
        match catch_unwind(AssertUnwindSafe(body)) {
            Ok(r) => r,
            Err(_) => {
                if let Some(h) = handle {
                    h.poisoned.store(true, Ordering::Release);
                }
                Err(Error::internal(
                    "internal error in hap (a bug); this pool is retired",
                ))
            }
        }
    };
    match outcome {
        Ok(value) => {
            if let Some(v) = value {
                put(result_out, v);
                if !result_out.is_null() && (*result_out).is_null() {
                    return Status::Internal.code();
                }
            }
            Status::Ok.code()
        }
        Err(e) => {
            // Serializing an Error cannot panic, but stay paranoid at the boundary.
            if let Ok(json) = catch_unwind(AssertUnwindSafe(|| e.to_json().to_string())) {
                put(error_out, json);
            }
            e.status.code()
        }
    }
}

/// Wraps a freshly opened pool for C.
fn into_handle(pool: Pool) -> *mut hap_pool {
    Box::into_raw(Box::new(hap_pool {
        pool,
        poisoned: AtomicBool::new(false),
    }))
}
