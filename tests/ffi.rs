//! The C boundary, driven exactly as C would drive it: raw pointers, NULLs, bad bytes.

mod common;
use common::*;
use hap::ffi::*;
use serde_json::{json, Value};
use std::ffi::{c_char, CStr, CString};
use std::ptr::{null, null_mut};

/// Takes an owned string from hap and frees it with hap_free.
unsafe fn take(p: *mut c_char) -> String {
    assert!(!p.is_null());
    let s = CStr::from_ptr(p).to_str().unwrap().to_string();
    hap_free(p);
    s
}

unsafe fn open(cfg: &str) -> (i32, *mut hap_pool, Option<Value>) {
    let c = CString::new(cfg).unwrap();
    let mut pool: *mut hap_pool = std::ptr::dangling_mut::<hap_pool>(); // must be cleared on entry
    let mut err: *mut c_char = std::ptr::dangling_mut::<c_char>();
    let st = hap_pool_open(c.as_ptr(), &mut pool, &mut err);
    let e = (!err.is_null()).then(|| serde_json::from_str(&take(err)).unwrap());
    (st, pool, e)
}

#[test]
fn statics() {
    assert_eq!(hap_abi_version(), HAP_ABI_VERSION);
    let v = unsafe { CStr::from_ptr(hap_version()) }.to_str().unwrap();
    assert!(v.starts_with("hap 0.1.") && v.ends_with("(abi 0.1)"), "{v}");
    let name = |s| {
        unsafe { CStr::from_ptr(hap_status_name(s)) }
            .to_str()
            .unwrap()
    };
    assert_eq!(name(HAP_STATUS_NO_CREDENTIAL), "HAP_STATUS_NO_CREDENTIAL");
    assert_eq!(name(HAP_STATUS_INTERNAL), "HAP_STATUS_INTERNAL");
    assert_eq!(name(42), "HAP_STATUS_UNKNOWN");
    assert_eq!(name(-1), "HAP_STATUS_UNKNOWN");
    unsafe {
        hap_free(null_mut());
        hap_pool_free(None);
    }
}

#[test]
fn bad_config_inputs_get_invalid_argument_with_a_message() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("auth.json");
    let cases = [
        "not json".to_string(),
        "[1,2]".to_string(),
        json!({"pool_path": "relative/auth.json"}).to_string(),
        json!({"unknown_key": 1}).to_string(),
        json!({"lock_timeout_ms": -5}).to_string(),
        json!({"strategy": "best"}).to_string(),
        json!({"pool_path": p, "token_urls": ["http://example.com/token"]}).to_string(),
        json!({"pool_path": p, "token_urls": []}).to_string(),
    ];
    for cfg in cases {
        let (st, pool, err) = unsafe { open(&cfg) };
        assert_eq!(st, HAP_STATUS_INVALID_ARGUMENT, "{cfg}");
        assert!(pool.is_null());
        let err = err.unwrap();
        assert_eq!(err["status"], 1);
        assert_eq!(err["name"], "HAP_STATUS_INVALID_ARGUMENT");
        assert!(!err["message"].as_str().unwrap().is_empty());
    }
    // Invalid UTF-8.
    let bad = [b'{', 0xff, b'}', 0];
    let mut pool = null_mut();
    assert_eq!(
        unsafe { hap_pool_open(bad.as_ptr() as *const c_char, &mut pool, null_mut()) },
        HAP_STATUS_INVALID_ARGUMENT
    );
    // NULL pool_out.
    assert_eq!(
        unsafe { hap_pool_open(null(), null_mut(), null_mut()) },
        HAP_STATUS_INVALID_ARGUMENT
    );
}

#[test]
fn null_and_malformed_call_arguments() {
    let s = FakeServer::start();
    let h = Home::new();
    h.write_creds(A1, R1, now_ms() + 3_600_000);
    let (st, pool, _) = unsafe { open(&h.config(&s, "").to_string()) };
    assert_eq!(st, HAP_STATUS_OK);
    unsafe {
        let mut out: *mut c_char = std::ptr::dangling_mut::<c_char>();
        let mut err: *mut c_char = null_mut();
        // NULL pool.
        assert_eq!(
            hap_resolve_token(None, null(), &mut out, &mut err),
            HAP_STATUS_INVALID_ARGUMENT
        );
        assert!(out.is_null());
        take(err);
        // NULL result out-param, error_out NULL too: status only.
        assert_eq!(
            hap_resolve_token(pool.as_ref(), null(), null_mut(), null_mut()),
            HAP_STATUS_INVALID_ARGUMENT
        );
        for bad in ["{", "[]", r#"{"force_refresh": "yes"}"#, r#"{"nope": 1}"#] {
            let c = CString::new(bad).unwrap();
            assert_eq!(
                hap_resolve_token(pool.as_ref(), c.as_ptr(), &mut out, null_mut()),
                HAP_STATUS_INVALID_ARGUMENT,
                "{bad}"
            );
            assert!(out.is_null());
        }
        for bad in [
            "{}",
            r#"{"credential_id": "x"}"#,
            r#"{"credential_id": "x", "status_code": 1000}"#,
            r#"{"credential_id": "x", "status_code": 429, "reset_at": "later"}"#,
        ] {
            let c = CString::new(bad).unwrap();
            assert_eq!(
                hap_report_failure(pool.as_ref(), c.as_ptr(), &mut out, null_mut()),
                HAP_STATUS_INVALID_ARGUMENT,
                "{bad}"
            );
        }
        assert_eq!(
            hap_report_failure(pool.as_ref(), null(), &mut out, null_mut()),
            HAP_STATUS_INVALID_ARGUMENT
        );
        assert_eq!(
            hap_pool_status(pool.as_ref(), null_mut(), null_mut()),
            HAP_STATUS_INVALID_ARGUMENT
        );
        let c = CString::new(r#"{"credential_id": "zzzzzz", "status_code": 429}"#).unwrap();
        assert_eq!(
            hap_report_failure(pool.as_ref(), c.as_ptr(), &mut out, &mut err),
            HAP_STATUS_UNKNOWN_CREDENTIAL
        );
        let e: Value = serde_json::from_str(&take(err)).unwrap();
        assert_eq!(e["credential_id"], "zzzzzz");

        // The happy path: the token is in the result, and nowhere else.
        assert_eq!(
            hap_resolve_token(pool.as_ref(), null(), &mut out, &mut err),
            HAP_STATUS_OK
        );
        assert!(err.is_null());
        let r: Value = serde_json::from_str(&take(out)).unwrap();
        assert_eq!(r["access_token"], A1);
        assert_eq!(r["refreshed"], false);
        assert_eq!(r["auth_type"], "oauth");
        assert_eq!(
            hap_pool_status(pool.as_ref(), &mut out, null_mut()),
            HAP_STATUS_OK
        );
        let status = take(out);
        assert!(!status.contains("fake-"), "{status}");
        let st: Value = serde_json::from_str(&status).unwrap();
        assert_eq!(st["counters"]["resolves"], 1);
        hap_pool_free(owned(pool));
    }
}

#[test]
fn corrupt_store_is_reported_with_its_path_and_left_byte_for_byte() {
    let h = Home::new();
    for (path, bytes) in [
        (
            h.creds_path(),
            &b"{\"claudeAiOauth\": {\"accessToken\": \"sk-ant-oat01-fake-a1\", \"refr"[..],
        ),
        (h.pool_path(""), &b"{\"credential_pool\": []}"[..]),
        (h.pool_path(""), &b"\x00\x01garbage"[..]),
    ] {
        let h = Home::new();
        let path = path
            .strip_prefix(path.ancestors().nth(2).unwrap())
            .map(|p| h.dir.path().join(p))
            .unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        let cfg = json!({"pool_path": h.pool_path(""), "credentials_path": h.creds_path()});
        let (st, pool, err) = unsafe { open(&cfg.to_string()) };
        assert_eq!(st, HAP_STATUS_STORE_CORRUPT);
        assert!(pool.is_null());
        let err = err.unwrap();
        assert_eq!(err["path"], path.to_string_lossy().as_ref());
        assert!(!err.to_string().contains("fake-a1"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "left byte-for-byte");
    }
}

#[test]
fn no_token_in_errors_status_or_debug_log() {
    let s = FakeServer::start();
    let h = Home::new();
    h.write_creds(A1, R1, now_ms() - 1000);
    s.revoke(R1);
    // A debug-logged process through a refresh that fails for good.
    let (v, stderr) = worker_result(spawn_worker(&h.config(&s, ""), 0, &[("HAP_LOG", "debug")]));
    assert_eq!(v["error"], "HAP_STATUS_REAUTH_REQUIRED");
    assert!(stderr.contains("hap["), "debug log was written: {stderr}");
    for secret in [A1, R1, "fake-"] {
        assert!(!stderr.contains(secret), "log leaked: {stderr}");
        assert!(!v.to_string().contains(secret), "error leaked: {v}");
    }
    // And a successful refresh, logged.
    let h2 = Home::new();
    h2.write_creds(A1, "sk-ant-ort01-fake-r7", now_ms() - 1000);
    let (v, stderr) = worker_result(spawn_worker(&h2.config(&s, ""), 0, &[("HAP_LOG", "debug")]));
    assert_eq!(v["refreshed"], true, "{v}");
    assert!(!stderr.contains("fake-"), "log leaked: {stderr}");
    let status = open_with(h2.config(&s, "")).status().unwrap().to_string();
    assert!(!status.contains("fake-"), "{status}");
    let journal = std::fs::read_dir(h2.creds_path().parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect::<Vec<_>>();
    assert!(
        journal.iter().any(|n| n == ".credentials.hap-journal.json"),
        "{journal:?}"
    );
}

#[test]
fn concurrent_calls_on_one_handle() {
    let s = FakeServer::start();
    let h = Home::new();
    h.write_creds(A1, R1, now_ms() - 1000);
    let (_, pool, _) = unsafe { open(&h.config(&s, "").to_string()) };
    let addr = pool as usize;
    let threads: Vec<_> = (0..8)
        .map(|i| {
            std::thread::spawn(move || unsafe {
                let pool = addr as *const hap_pool;
                let mut out = null_mut();
                for _ in 0..50 {
                    let st = if i % 2 == 0 {
                        hap_resolve_token(pool.as_ref(), null(), &mut out, null_mut())
                    } else {
                        hap_pool_status(pool.as_ref(), &mut out, null_mut())
                    };
                    assert_eq!(st, HAP_STATUS_OK);
                    take(out);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    unsafe { hap_pool_free(owned(pool)) };
    assert_eq!(s.posts(), 1);
}

/// A handle as `hap_pool_free` takes it (C passes the pointer; Rust spells the ownership).
///
/// # Safety
/// `pool` is NULL or a handle from `hap_pool_open` not yet freed.
unsafe fn owned(pool: *mut hap_pool) -> Option<Box<hap_pool>> {
    std::ptr::NonNull::new(pool).map(|p| Box::from_raw(p.as_ptr()))
}
