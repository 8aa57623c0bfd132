//! The C boundary. Everything unsafe in hap lives in this module.
//!
//! Conventions (also the top comment of `include/hap.h`):
//! * every exported body runs inside [`call`] (status-returning ones inside [`boundary`],
//!   built on it): panics are caught whatever the return type, NULLs and invalid UTF-8
//!   become `HAP_STATUS_INVALID_ARGUMENT`, errors become the error JSON;
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

/// What an export returns when its body panicked: each of the nine exports goes through
/// [`call`], so a panic never unwinds into C whatever the return type.
/// (rustls-ffi's `PanicOrDefault`, uniffi's `rust_call`.)
trait PanicValue {
    fn panic_value() -> Self;
}

impl PanicValue for () {
    fn panic_value() -> Self {}
}

/// `hap_status`: a panic is a bug in hap.
impl PanicValue for hap_status {
    fn panic_value() -> Self {
        Status::Internal.code()
    }
}

/// `hap_abi_version`: 0 is "no ABI", which every binding refuses to load.
impl PanicValue for u32 {
    fn panic_value() -> Self {
        0
    }
}

/// `hap_version`, `hap_status_name`: still a static string, never NULL.
impl PanicValue for *const c_char {
    fn panic_value() -> Self {
        c"".as_ptr()
    }
}

/// The one C boundary: runs an export's body with panics caught.
fn call<T: PanicValue>(body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|_| T::panic_value())
}

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

/// Sets an out-param to `value` if the caller passed one.
///
/// # Safety
/// `out` is NULL or valid for writes.
unsafe fn set<T>(out: *mut T, value: T) {
    if !out.is_null() {
        // SAFETY: non-NULL, and valid for writes by the caller's contract.
        unsafe { out.write(value) };
    }
}

/// Writes `value` to an out-param the boundary already cleared (nothing when it is NULL);
/// false when the value could not become a C string.
///
/// # Safety
/// `out` is NULL or valid for writes.
unsafe fn put(out: *mut *mut c_char, value: String) -> bool {
    if out.is_null() {
        return true;
    }
    let c = to_c(value);
    // SAFETY: the caller's contract.
    unsafe { set(out, c) };
    !c.is_null()
}

/// Borrows an optional `const char *` argument as UTF-8.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string valid for the call.
unsafe fn opt_str<'a>(p: *const c_char, what: &str) -> Result<Option<&'a str>, Error> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL and NUL-terminated, valid for the call (the caller's contract).
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map(Some)
        .map_err(|_| Error::invalid(format!("{what} is not valid UTF-8")))
}

/// The boundary of every status-returning export: clears the out-params, runs `body`
/// through [`call`], and reports the outcome.
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
    // SAFETY: the caller's contract, for both out pointers.
    unsafe {
        set(result_out, std::ptr::null_mut());
        set(error_out, std::ptr::null_mut());
    }
    let outcome = if needs_result && result_out.is_null() {
        Err(Error::invalid("the result out-parameter is NULL"))
    } else if handle.is_some_and(|h| h.poisoned.load(Ordering::Acquire)) {
        Err(Error::internal(
            "an earlier call on this pool failed inside hap; open a new pool",
        ))
    } else {
        // Caught here as well as in `call`: a panic in the body retires the handle.
        catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|_| {
            if let Some(h) = handle {
                h.poisoned.store(true, Ordering::Release);
            }
            Err(Error::internal(
                "internal error in hap (a bug); this pool is retired",
            ))
        })
    };
    match outcome {
        Ok(None) => Status::Ok.code(),
        // SAFETY: the caller's contract.
        Ok(Some(v)) => match unsafe { put(result_out, v) } {
            true => Status::Ok.code(),
            false => Status::Internal.code(),
        },
        Err(e) => {
            // Serializing an Error cannot panic, but stay paranoid at the boundary.
            if let Ok(json) = catch_unwind(AssertUnwindSafe(|| e.to_json().to_string())) {
                // SAFETY: the caller's contract.
                unsafe { put(error_out, json) };
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
