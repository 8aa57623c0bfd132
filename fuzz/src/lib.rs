//! The properties hap's fuzz targets check, one `check_*` function per target.
//!
//! This file is the `hap-fuzz` crate's library (used by `fuzz_targets/*.rs` under
//! cargo-fuzz) and is also compiled into `tests/fuzz_corpus.rs` with `#[path]`, so the
//! committed corpus replays through exactly the same code on stable Rust, without a fuzzer.
//! Keep it to `std`, `hap` and `serde_json`.
//!
//! Beyond "no panic", every check asserts:
//! * an error has the status its parser promises, and no error text (nor a `Debug` of a
//!   parsed value) contains a token-like string (`sk-ant-...`) taken from the input;
//! * a corrupt store read is `STORE_CORRUPT`, names the path, and leaves the file
//!   byte-for-byte unchanged (and so does a write attempted over it);
//! * a write over a valid store keeps every key hap does not own, in order;
//! * a valid config survives a round trip through `Config::to_json`;
//! * `hap_pool_open` never answers `HAP_STATUS_INTERNAL`, clears its out-params, and never
//!   writes a store.
//!
//! `strict = false` lets the fuzzers go past the open findings of
//! `fuzz/artifacts-found/README.md`: it skips raw responses with a colon-less header (a
//! panic in ureq), allows two echoes (an unknown JSON key named in an error, a "plain" OAuth
//! `error` code repeated in the error text) and compares numbers within a few ULPs;
//! `strict = true` (env `HAP_FUZZ_STRICT=1`) flags all of them.

use hap::ffi::{hap_free, hap_pool, hap_pool_free, hap_pool_open, hap_pool_status};
use hap::internals::config::Config;
use hap::internals::credentials::{CredentialsFile, TokenPair};
use hap::internals::lock::FileLock;
use hap::internals::oauth::{RefreshError, TokenEndpoint};
use hap::internals::pool_file::{PoolFile, Row};
use hap::{Error, Failure, ResolveRequest, Secret, Status};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::ffi::{c_char, CStr, CString};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

const TOKEN_PREFIX: &str = "sk-ant-";

/// `HAP_FUZZ_STRICT=1` turns the allowed echoes into failures.
pub fn strict_from_env() -> bool {
    static STRICT: OnceLock<bool> = OnceLock::new();
    *STRICT.get_or_init(|| std::env::var("HAP_FUZZ_STRICT").is_ok_and(|v| v == "1"))
}

// ---------------------------------------------------------------------------------------
// Sandbox: one directory per process, on tmpfs when there is one (hap fsyncs every write).
// ---------------------------------------------------------------------------------------

/// Short fake tokens only (COMMON.md): a longer one would look real to the commit hook.
const FIX_CREDS: &str = r#"{
  "claudeAiOauth": {
    "accessToken": "sk-ant-oat01-fake-a1",
    "refreshToken": "sk-ant-ort01-fake-r1",
    "expiresAt": 4102444800000,
    "scopes": ["user:inference", "user:profile"],
    "subscriptionType": "max",
    "rateLimitTier": "default_claude_max_20x"
  },
  "otherTool": {"keep": true}
}
"#;

const FIX_POOL: &str = r#"{
  "version": 1,
  "providers": {"nous": {"access_token": "nous-fake-1", "expires_at": "2100-01-01T00:00:00+00:00"}},
  "active_provider": "anthropic",
  "credential_pool": {
    "anthropic": [
      {"id": "a1b2c3", "label": "claude_code", "auth_type": "oauth", "priority": 0,
       "source": "claude_code", "access_token": null, "refresh_token": null,
       "expires_at_ms": 4102444800000, "last_status": null, "last_status_at": null,
       "last_error_code": null, "last_error_reason": null, "last_error_message": null,
       "last_error_reset_at": null, "request_count": 3,
       "secret_fingerprint": "sha256:0123456789abcdef", "custom": {"keep": [1, 2]}},
      {"id": "d4e5f6", "label": "work", "auth_type": "oauth", "priority": 1,
       "source": "manual", "access_token": "sk-ant-oat01-fake-m1",
       "refresh_token": "sk-ant-ort01-fake-m2", "expires_at_ms": 4102444800000,
       "last_status": "exhausted", "last_status_at": 1788000000.5, "last_error_code": 429,
       "last_error_reason": "rate_limit_error", "last_error_message": "slow down",
       "last_error_reset_at": 1788003600.0, "request_count": 12}
    ],
    "openrouter": [{"id": "ffffff", "access_token": "sk-or-fake-1"}]
  },
  "updated_at": "2026-11-28T19:52:56.123456+00:00"
}
"#;

/// Every token the C ABI fixtures hold: none may ever appear in an error or status JSON.
const FIX_TOKENS: [&str; 6] = [
    "sk-ant-oat01-fake-a1",
    "sk-ant-ort01-fake-r1",
    "sk-ant-oat01-fake-m1",
    "sk-ant-ort01-fake-m2",
    "sk-ant-oat01-fake-bad",
    "sk-ant-ort01-fake-bad",
];

/// Files `hap_pool_open` may be pointed at through `@H@/...` in a config.
fn fixtures() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("home/.claude/.credentials.json", FIX_CREDS.as_bytes().to_vec()),
        ("home/.hermes/auth.json", FIX_POOL.as_bytes().to_vec()),
        (
            "bad/auth.json",
            br#"{"credential_pool": {"anthropic": [{"id": "a1b2c3", "access_token": "sk-ant-oat01-fake-bad"#
                .to_vec(),
        ),
        (
            "bad/.credentials.json",
            br#"{"claudeAiOauth": {"refreshToken": "sk-ant-ort01-fake-bad", "accessToken": 5}}"#
                .to_vec(),
        ),
        (
            "wrong/auth.json",
            br#"{"credential_pool": {"anthropic": {"id": "a1b2c3"}}}"#.to_vec(),
        ),
        ("empty/auth.json", Vec::new()),
    ]
}

struct Sandbox {
    root: PathBuf,
}

fn sandbox() -> &'static Sandbox {
    static SB: OnceLock<Sandbox> = OnceLock::new();
    SB.get_or_init(|| {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        // Sandboxes of processes that are gone (a fuzzer exits without cleaning up).
        for e in std::fs::read_dir(&base).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("hap-fuzz-") {
                if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let root = base.join(format!("hap-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (rel, bytes) in fixtures() {
            let p = root.join("abi").join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, bytes).unwrap();
        }
        // A directory where a store should be: an I/O error, not a parse.
        std::fs::create_dir_all(root.join("abi/isdir/auth.json")).unwrap();
        for sub in ["creds", "pool"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        // Default store paths resolve inside the sandbox, never in the real home.
        std::env::set_var("HOME", root.join("abi/home"));
        std::env::remove_var("HERMES_HOME");
        std::env::remove_var("CLAUDE_CONFIG_DIR");
        std::env::remove_var("HAP_LOG");
        Sandbox { root }
    })
}

// ---------------------------------------------------------------------------------------
// Leak checks
// ---------------------------------------------------------------------------------------

/// Fails when `shown` contains `sk-ant-` anywhere outside the `allowed` strings (each also
/// in the one-line form the ABI's error JSON gives messages).
fn assert_no_token(what: &str, shown: &str, allowed: &[String]) {
    let mut rest = shown.to_string();
    let mut allowed: Vec<String> = allowed
        .iter()
        .filter(|a| !a.is_empty())
        .flat_map(|a| [a.clone(), a.replace(['\n', '\r'], " ")])
        .collect();
    allowed.sort_by_key(|a| std::cmp::Reverse(a.len()));
    for a in &allowed {
        rest = rest.replace(a.as_str(), "");
    }
    assert!(
        !rest.contains(TOKEN_PREFIX),
        "{what} shows a token-like string: {shown:?}"
    );
}

/// `assert_no_token` on every key and string of a JSON value (compared unescaped).
fn assert_no_token_json(what: &str, v: &Value, allowed: &[String]) {
    match v {
        Value::String(s) => assert_no_token(what, s, allowed),
        Value::Array(a) => a
            .iter()
            .for_each(|x| assert_no_token_json(what, x, allowed)),
        Value::Object(m) => {
            for (k, x) in m {
                assert_no_token(what, k, allowed);
                assert_no_token_json(what, x, allowed);
            }
        }
        _ => {}
    }
}

/// The top-level keys of a JSON object text (what "unknown key 'x'" errors may name).
fn top_keys(text: &str) -> Vec<String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// The ABI error JSON of `e` must be well formed, one line, and free of tokens.
fn check_error(e: &Error, allowed: &[String]) {
    let j = e.to_json();
    assert_eq!(j["status"], e.status.code());
    assert_eq!(j["name"], e.status.name());
    let msg = j["message"].as_str().expect("message is a string");
    assert!(!msg.contains('\n') && !msg.contains('\r'), "{msg:?}");
    assert_no_token_json("error JSON", &j, allowed);
    assert_no_token("error Display", &e.to_string(), allowed);
}

// ---------------------------------------------------------------------------------------
// fuzz_config
// ---------------------------------------------------------------------------------------

/// `Config::from_json_str`: errors are `INVALID_ARGUMENT` without tokens; a valid config
/// is internally consistent and round-trips through `to_json`.
pub fn check_config(data: &[u8], strict: bool) {
    sandbox();
    // Invalid UTF-8 cannot reach this parser; fuzz_c_abi_open covers it at the boundary.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_json_str(Some(text)) {
        Err(e) => {
            assert_eq!(e.status, Status::InvalidArgument, "{e}");
            let allowed = if strict { Vec::new() } else { top_keys(text) };
            check_error(&e, &allowed);
        }
        Ok(cfg) => {
            assert!(!cfg.provider.is_empty());
            for p in [&cfg.pool_path, &cfg.credentials_path]
                .into_iter()
                .flatten()
            {
                assert!(p.is_absolute() && p.file_name().is_some(), "{p:?}");
            }
            assert!(!cfg.token_urls.is_empty());
            for u in &cfg.token_urls {
                assert!(hap::internals::config::check_token_url(u).is_ok(), "{u:?}");
            }
            assert!(cfg.http_timeout_ms > 0);
            let j = cfg.to_json();
            let again = Config::from_json_str(Some(&j.to_string()))
                .unwrap_or_else(|e| panic!("to_json of a valid config is refused: {e}"));
            assert_eq!(again.to_json(), j);
        }
    }
}

// ---------------------------------------------------------------------------------------
// fuzz_requests
// ---------------------------------------------------------------------------------------

/// `ResolveRequest::from_json` and `Failure::from_json` on the same text; a parsed failure
/// also goes through the cooldown policy it feeds.
pub fn check_requests(data: &[u8], strict: bool) {
    sandbox();
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let allowed = if strict { Vec::new() } else { top_keys(text) };
    match ResolveRequest::from_json(Some(text)) {
        Err(e) => {
            assert_eq!(e.status, Status::InvalidArgument, "{e}");
            check_error(&e, &allowed);
        }
        Ok(r) => {
            let j = serde_json::json!({
                "min_validity_ms": r.min_validity_ms,
                "credential_id": r.credential_id,
                "force_refresh": r.force_refresh,
            });
            assert_eq!(ResolveRequest::from_json(Some(&j.to_string())).unwrap(), r);
        }
    }
    match Failure::from_json(Some(text)) {
        Err(e) => {
            assert_eq!(e.status, Status::InvalidArgument, "{e}");
            check_error(&e, &allowed);
        }
        Ok(f) => {
            assert!(!f.credential_id.is_empty());
            assert!((100..=599).contains(&f.status_code));
            if let Some(s) = f.retry_after_s {
                assert!(s.is_finite() && s >= 0.0);
            }
            if let Some(s) = f.reset_at_s {
                assert!(s.is_finite());
            }
            if let Some(r) = &f.reason {
                let _ = hap::internals::policy::is_terminal_reason(r);
            }
            // What a report does with it: bench the row, then ask when it comes back.
            let now_s = hap::internals::clock::now_ms() as f64 / 1000.0;
            let mut row = Row::new_borrowed("a1b2c3".into(), 0);
            row.last_status = Some(hap::internals::policy::STATUS_EXHAUSTED.into());
            row.last_status_at = Some(now_s);
            row.last_error_code = Some(f.status_code as i64);
            row.last_error_reason = f.reason.clone();
            row.last_error_reset_at = f.reset_at_s;
            for sole in [false, true] {
                if let hap::internals::policy::Availability::CoolingUntil(at) =
                    hap::internals::policy::available_at_ms(&row, sole)
                {
                    // reset_at is capped at 24 h after the bench.
                    assert!(
                        at as f64 <= (now_s + 24.0 * 3600.0) * 1000.0 + 1000.0,
                        "cooldown past the 24 h cap: {at}"
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// fuzz_credentials_file
// ---------------------------------------------------------------------------------------

fn new_pair() -> TokenPair {
    TokenPair {
        access: Secret::new("sk-ant-oat01-fuzz-a9"),
        refresh: Some(Secret::new("sk-ant-ort01-fuzz-r9")),
        expires_at_ms: Some(4_102_444_800_000),
    }
}

fn assert_secret_hidden(s: &Secret) {
    let shown = format!("{s:?}");
    if s.expose().len() >= 8 {
        assert!(!shown.contains(s.expose()), "Debug shows a secret");
    }
    assert!(
        !shown.contains(TOKEN_PREFIX),
        "Debug shows a token: {shown}"
    );
}

/// Same keys in the same order, same values. Numbers exactly when `strict`; otherwise
/// within a few ULPs, since serde_json's default float parsing is not round-trip exact and
/// a write-read cycle can move a float, or an integer beyond 64 bits read as one (see
/// fuzz/artifacts-found/README.md, finding 4).
fn same_value(a: &Value, b: &Value, strict: bool) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x == y
                || (!strict
                    && match (x.as_f64(), y.as_f64()) {
                        (Some(p), Some(q)) => (p - q).abs() <= 1e-15 * p.abs().max(q.abs()),
                        _ => false,
                    })
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_value(p, q, strict))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((k1, v1), (k2, v2))| k1 == k2 && same_value(v1, v2, strict))
        }
        _ => a == b,
    }
}

fn assert_same_doc(what: &str, got: &Value, want: &Value, strict: bool) {
    assert!(
        same_value(got, want, strict),
        "{what}:\n got: {got}\nwant: {want}"
    );
}

/// `CredentialsFile::read` on arbitrary bytes; on a valid file, `write_pair` changes the
/// token fields and nothing else.
pub fn check_credentials_file(data: &[u8], strict: bool) {
    // One sandbox file for the process: tests/fuzz_corpus.rs replays the corpus and the
    // findings on parallel threads, and a write of one input landed in another's check once
    // write_pair took Claude Code's storage-write lock (a wider window, issue 12).
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let sb = sandbox();
    let path = sb.root.join("creds/.credentials.json");
    std::fs::write(&path, data).unwrap();
    let file = CredentialsFile::new(path.clone()).without_settle();
    let read = file.read();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        data,
        "a read changed the file"
    );
    match read {
        Err(e) => {
            assert_eq!(e.status, Status::StoreCorrupt, "{e}");
            assert_eq!(e.path.as_deref(), Some(path.as_path()));
            check_error(&e, &[]);
            let w = file
                .write_pair(&new_pair(), &Default::default())
                .unwrap_err();
            assert_eq!(w.status, Status::StoreCorrupt, "{w}");
            assert_eq!(
                std::fs::read(&path).unwrap(),
                data,
                "a write over a corrupt file changed it"
            );
        }
        Ok(None) => panic!("the file exists"),
        Ok(Some(read)) => {
            let before: Value = serde_json::from_slice(data).expect("hap parsed it");
            let oauth = before.get("claudeAiOauth");
            let want_access = oauth
                .and_then(|o| o.get("accessToken"))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty());
            assert_eq!(
                read.pair.as_ref().map(|p| p.access.expose()),
                want_access,
                "accessToken read wrong"
            );
            if let Some(p) = &read.pair {
                assert_secret_hidden(&p.access);
                if let Some(r) = &p.refresh {
                    assert_secret_hidden(r);
                }
            }
            let scopes = vec!["user:inference".to_string()];
            let pair = new_pair();
            file.write_pair(
                &pair,
                &hap::internals::credentials::Issued::scopes(Some(scopes.clone())),
            )
            .unwrap_or_else(|e| panic!("write over a readable file failed: {e}"));
            let after_bytes = std::fs::read(&path).unwrap();
            let after: Value = serde_json::from_slice(&after_bytes).expect("hap wrote JSON");
            let mut want = before.clone();
            let root = want.as_object_mut().expect("object");
            let o = root
                .entry("claudeAiOauth")
                .or_insert_with(|| Value::Object(Map::new()));
            if !o.is_object() {
                *o = Value::Object(Map::new());
            }
            let o = o.as_object_mut().unwrap();
            o.insert("accessToken".into(), "sk-ant-oat01-fuzz-a9".into());
            o.insert("refreshToken".into(), "sk-ant-ort01-fuzz-r9".into());
            o.insert("expiresAt".into(), 4_102_444_800_000_i64.into());
            o.insert("scopes".into(), scopes.clone().into());
            assert_same_doc(
                "write_pair changed more than the token fields",
                &after,
                &want,
                strict,
            );
            assert_eq!(
                after_bytes.last() == Some(&b'\n'),
                data.last() == Some(&b'\n'),
                "trailing newline not kept"
            );
            let again = file
                .read()
                .expect("hap reads what it wrote")
                .expect("exists");
            assert_eq!(again.pair, Some(pair));
        }
    }
}

// ---------------------------------------------------------------------------------------
// fuzz_pool_file
// ---------------------------------------------------------------------------------------

/// Row keys hap writes; every other key of a row object must survive an update.
const ROW_KEYS: [&str; 17] = [
    "id",
    "label",
    "auth_type",
    "priority",
    "source",
    "access_token",
    "refresh_token",
    "expires_at_ms",
    "last_status",
    "last_status_at",
    "last_error_code",
    "last_error_reason",
    "last_error_message",
    "last_error_reset_at",
    "request_count",
    "secret_fingerprint",
    "hap_rejected_fingerprint",
];

const NEW_ROW_ID: &str = "fz0new";

fn lock(pf: &PoolFile) -> FileLock {
    let mut waited = false;
    FileLock::acquire(
        &pf.lock_path(),
        Instant::now() + Duration::from_secs(5),
        5000,
        &mut waited,
    )
    .expect("pool lock")
}

/// `a`'s keys appear in `b` in the same order.
fn assert_keys_in_order(what: &str, a: &Map<String, Value>, b: &Map<String, Value>) {
    let kept: Vec<&String> = b.keys().filter(|k| a.contains_key(*k)).collect();
    let orig: Vec<&String> = a.keys().collect();
    assert_eq!(kept, orig, "{what}: keys lost or reordered");
}

/// `PoolFile::read` on arbitrary bytes; on a valid file, a no-op update leaves it
/// byte-for-byte alone and a real update keeps every key hap does not own.
pub fn check_pool_file(data: &[u8], strict: bool) {
    let sb = sandbox();
    let path = sb.root.join("pool/auth.json");
    std::fs::write(&path, data).unwrap();
    let pf = PoolFile::new(path.clone(), "anthropic".into());
    let read = pf.read();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        data,
        "a read changed the file"
    );
    let l = lock(&pf);
    match read {
        Err(e) => {
            assert_eq!(e.status, Status::StoreCorrupt, "{e}");
            assert_eq!(e.path.as_deref(), Some(path.as_path()));
            check_error(&e, &[]);
            let u = pf
                .update(&l, |rows| {
                    rows.push(Row::new_borrowed(NEW_ROW_ID.into(), 0));
                    Ok((true, ()))
                })
                .unwrap_err();
            assert_eq!(u.status, Status::StoreCorrupt, "{u}");
            assert_eq!(
                std::fs::read(&path).unwrap(),
                data,
                "an update over a corrupt file changed it"
            );
        }
        Ok(read) => {
            for r in &read.rows {
                assert!(!r.id.is_empty());
                for s in [&r.access_token, &r.refresh_token].into_iter().flatten() {
                    assert_secret_hidden(s);
                }
            }
            // No change, no write.
            pf.update(&l, |_| Ok((false, ()))).expect("no-op update");
            assert_eq!(std::fs::read(&path).unwrap(), data, "a no-op update wrote");

            let before: Value = serde_json::from_slice(data).expect("hap parsed it");
            let n_before = read.rows.len();
            let mut pushed = false;
            pf.update(&l, |rows| {
                for r in rows.iter_mut() {
                    r.last_status = Some("exhausted".into());
                    r.last_status_at = Some(1_788_000_000.25);
                    r.last_error_code = Some(429);
                    r.last_error_reason = Some("rate_limit_error".into());
                    r.request_count = r.request_count.saturating_add(1);
                }
                if !rows.iter().any(|r| r.id == NEW_ROW_ID) {
                    rows.push(Row::new_borrowed(NEW_ROW_ID.into(), 7));
                    pushed = true;
                }
                Ok((true, ()))
            })
            .unwrap_or_else(|e| panic!("update of a readable file failed: {e}"));
            let after_bytes = std::fs::read(&path).unwrap();
            let after: Value = serde_json::from_slice(&after_bytes).expect("hap wrote JSON");
            check_pool_kept(&before, &after, strict);
            let again = pf.read().expect("hap reads what it wrote");
            assert_eq!(again.rows.len(), n_before + usize::from(pushed));
        }
    }
}

fn check_pool_kept(before: &Value, after: &Value, strict: bool) {
    let (b, a) = (
        before.as_object().expect("object"),
        after.as_object().expect("hap wrote an object"),
    );
    assert_keys_in_order("top level", b, a);
    for k in a.keys() {
        assert!(
            b.contains_key(k) || k == "credential_pool" || k == "updated_at",
            "update added top-level key {k:?}"
        );
    }
    for (k, v) in b {
        if k != "credential_pool" && k != "updated_at" {
            assert_same_doc(&format!("top-level {k:?}"), &a[k], v, strict);
        }
    }
    let Some(Value::Object(bp)) = b.get("credential_pool") else {
        return;
    };
    let ap = a["credential_pool"].as_object().expect("credential_pool");
    assert_keys_in_order("credential_pool", bp, ap);
    for (prov, v) in bp {
        if prov != "anthropic" {
            assert_same_doc(&format!("provider {prov:?}"), &ap[prov], v, strict);
        }
    }
    let Some(Value::Array(bl)) = bp.get("anthropic") else {
        return;
    };
    let al = ap["anthropic"].as_array().expect("anthropic list");
    assert!(al.len() >= bl.len(), "rows dropped");
    for (i, item) in bl.iter().enumerate() {
        match (item, &al[i]) {
            (Value::Object(bo), Value::Object(ao)) => {
                let unknown = |m: &Map<String, Value>| -> Map<String, Value> {
                    m.iter()
                        .filter(|(k, _)| !ROW_KEYS.contains(&k.as_str()))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                };
                let (bu, au) = (unknown(bo), unknown(ao));
                assert_same_doc(
                    &format!("row {i}: unknown keys"),
                    &Value::Object(au),
                    &Value::Object(bu),
                    strict,
                );
                assert_keys_in_order(&format!("row {i}"), bo, ao);
            }
            (x, y) => assert_same_doc(&format!("non-object item {i}"), y, x, strict),
        }
    }
}

// ---------------------------------------------------------------------------------------
// fuzz_token_response
// ---------------------------------------------------------------------------------------

/// What the status selector byte maps to when the input is not a raw HTTP response.
const STATUSES: [u16; 12] = [200, 400, 401, 403, 404, 429, 500, 503, 302, 201, 204, 418];
const SENT_REFRESH: &str = "sk-ant-ort01-fuzz-rt";

struct Server {
    port: u16,
    response: Mutex<Vec<u8>>,
    /// One exchange at a time (the replay test may call from several threads).
    turn: Mutex<()>,
}

fn serve_one(mut s: TcpStream, srv: &Server) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.set_nodelay(true);
    let mut req = Vec::new();
    let mut buf = [0u8; 4096];
    // Read the whole request (headers, then Content-Length bytes): closing with unread
    // bytes would reset the connection and hide the response.
    loop {
        if let Some(end) = req.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&req[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if req.len() >= end + 4 + len {
                break;
            }
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    let resp = srv.response.lock().unwrap().clone();
    let _ = s.write_all(&resp);
    let _ = s.flush();
    let _ = s.shutdown(std::net::Shutdown::Write);
    // Drain until the client closes, so our close cannot reset what it has not read.
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
    }
}

fn server() -> &'static Server {
    static SRV: OnceLock<&'static Server> = OnceLock::new();
    SRV.get_or_init(|| {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let srv: &'static Server = Box::leak(Box::new(Server {
            port: l.local_addr().unwrap().port(),
            response: Mutex::new(Vec::new()),
            turn: Mutex::new(()),
        }));
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                serve_one(s, srv);
            }
        });
        srv
    })
}

/// The body hap would see: the raw input after the selector byte, or after the blank line
/// of a raw response.
fn body_of(data: &[u8], raw: bool) -> &[u8] {
    if !raw {
        return &data[1..];
    }
    match data.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => &data[i + 4..],
        None => &[],
    }
}

/// A header line without a colon: ureq 2.12.1 panics (header.rs:103, slice out of range)
/// when hap or ureq reads such a header (Retry-After, Content-Length, Transfer-Encoding).
/// Finding 1 in fuzz/artifacts-found/README.md; skipped unless strict so the fuzzer can go on.
fn has_colonless_header(response: &[u8]) -> bool {
    response
        .split(|&b| b == b'\n')
        .skip(1)
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .take_while(|l| !l.is_empty())
        .any(|l| !l.contains(&b':'))
}

/// `TokenEndpoint::refresh` against an in-process server on 127.0.0.1 that answers with
/// the input: a whole HTTP response when it starts with `HTTP/`, else a status chosen by
/// the first byte and the rest as a JSON body.
pub fn check_token_response(data: &[u8], strict: bool) {
    sandbox();
    if data.is_empty() {
        return;
    }
    let srv = server();
    let _turn = srv.turn.lock().unwrap_or_else(|p| p.into_inner());
    let raw = data.starts_with(b"HTTP/");
    if raw && !strict && has_colonless_header(data) {
        return;
    }
    let status = STATUSES[data[0] as usize % STATUSES.len()];
    let response = if raw {
        data.to_vec()
    } else {
        let body = &data[1..];
        let mut r = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        )
        .into_bytes();
        if status == 429 || status == 503 {
            r.extend_from_slice(b"Retry-After: 30\r\n");
        }
        r.extend_from_slice(b"\r\n");
        r.extend_from_slice(body);
        r
    };
    *srv.response.lock().unwrap() = response;
    let cfg = Config::from_json_str(Some(&format!(
        r#"{{"pool_path": null, "credentials_path": null, "http_timeout_ms": 3000,
             "token_urls": ["http://127.0.0.1:{}/v1/oauth/token"]}}"#,
        srv.port
    )))
    .expect("config");
    let endpoint = TokenEndpoint::new(&cfg);
    let result = endpoint.refresh(&Secret::new(SENT_REFRESH));
    check_answer(result, (!raw).then_some(status), body_of(data, raw), strict);
}

/// The properties of a token endpoint answer's meaning. `status` is what the server sent
/// when the harness chose it (`None` for a raw HTTP response the fuzzer wrote whole).
fn check_answer(
    result: Result<hap::internals::oauth::TokenResponse, RefreshError>,
    status: Option<u16>,
    body: &[u8],
    strict: bool,
) {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    match result {
        Ok(t) => {
            assert!(!t.access.is_empty());
            // Clamped to a year (oauth.rs MAX_EXPIRES_IN_S, issue 10 item 4); no control
            // character in a token (item 18).
            assert!(t.expires_in_s > 0 && t.expires_in_s <= 365 * 24 * 3600);
            assert!(!t.access.expose().chars().any(char::is_control));
            assert!(!t
                .refresh
                .as_ref()
                .is_some_and(|r| r.expose().chars().any(char::is_control)));
            assert_secret_hidden(&t.access);
            if let Some(r) = &t.refresh {
                assert_secret_hidden(r);
            }
            if let Some(status) = status {
                assert_eq!(status, 200, "a {status} answer gave a token");
                let j = json.expect("a token from a body that is not JSON");
                assert_eq!(j["access_token"].as_str(), Some(t.access.expose()));
            }
        }
        Err(RefreshError::Terminal { code }) => {
            assert!(
                hap::internals::policy::is_terminal_reason(&code),
                "{code:?}"
            );
            assert!(!code.contains(SENT_REFRESH));
        }
        Err(RefreshError::Transient { why, .. }) | Err(RefreshError::Unanswered { why }) => {
            if status == Some(200) {
                // A token holding a control character is a malformed answer (issue 10,
                // item 18): refused, like a body without an access_token.
                let token = |k: &str| json.as_ref().and_then(|j| j.get(k)).and_then(Value::as_str);
                let clean = |t: &str| !t.chars().any(char::is_control);
                let access_ok = token("access_token").is_some_and(|a| !a.is_empty() && clean(a));
                if access_ok && token("refresh_token").is_none_or(clean) {
                    panic!("a 200 with a usable access_token was refused: {why}");
                }
            }
            // The OAuth `error` code is repeated in the text when it is a plain identifier.
            let mut allowed = Vec::new();
            if !strict {
                if let Some(e) = json.as_ref().and_then(|j| j.get("error")) {
                    let code = match e {
                        Value::Object(o) => o.get("type").and_then(Value::as_str),
                        v => v.as_str(),
                    };
                    allowed.extend(code.map(str::to_string));
                }
            }
            assert_no_token("token endpoint error", &why, &allowed);
        }
    }
}

// ---------------------------------------------------------------------------------------
// fuzz_token_body
// ---------------------------------------------------------------------------------------

/// `oauth::interpret_answer` directly: the first byte picks the status (as in
/// fuzz_token_response's non-raw form), the rest is the body. Same properties, no socket.
pub fn check_token_body(data: &[u8], strict: bool) {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let status = STATUSES[sel as usize % STATUSES.len()];
    let retry = (status == 429 || status == 503).then_some(30_000);
    let result = hap::internals::oauth::interpret_answer(status, body, retry);
    if let Err(RefreshError::Transient { retry_after_ms, .. }) = &result {
        if status == 429 || status >= 500 {
            assert_eq!(*retry_after_ms, retry);
        }
    }
    check_answer(result, Some(status), body, strict);
}

// ---------------------------------------------------------------------------------------
// fuzz_c_abi_open
// ---------------------------------------------------------------------------------------

/// Lexically inside the sandbox (the config parser accepts any absolute path; the fuzzer
/// must not send hap to read the rest of the machine).
fn inside(root: &Path, p: &Path) -> bool {
    p.starts_with(root) && !p.components().any(|c| c == Component::ParentDir)
}

fn replace_all(hay: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

/// Every file under `dir` with its bytes (directories as `None`).
fn snapshot(dir: &Path, out: &mut BTreeMap<PathBuf, Option<Vec<u8>>>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.insert(p.clone(), None);
            snapshot(&p, out);
        } else {
            out.insert(p.clone(), std::fs::read(&p).ok());
        }
    }
}

/// Every string value (keys too with `keys`) of a config JSON: the status JSON echoes
/// paths, provider and URLs by design.
fn config_strings(v: &Value, keys: bool, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| config_strings(x, keys, out)),
        Value::Object(m) => {
            for (k, x) in m {
                if keys {
                    out.push(k.clone());
                }
                config_strings(x, keys, out);
            }
        }
        _ => {}
    }
}

/// Garbage hap must overwrite (out-params are cleared on entry).
const DANGLING_POOL: *mut hap_pool = std::ptr::dangling_mut::<hap_pool>();
const DANGLING_STR: *mut c_char = std::ptr::dangling_mut::<c_char>();

/// Takes a C string from hap and frees it with `hap_free`.
///
/// # Safety
/// `p` is a non-NULL string hap handed out.
unsafe fn take(p: *mut c_char) -> String {
    let s = CStr::from_ptr(p)
        .to_str()
        .expect("hap hands out UTF-8")
        .to_string();
    hap_free(p);
    s
}

/// `hap_pool_open` with the input as `config_json` (up to its first NUL; empty = NULL;
/// `@H@` = the sandbox directory, whose fixtures are a valid pool file and credentials
/// file, corrupt and ill-typed ones, an empty one and a directory).
pub fn check_c_abi_open(data: &[u8], strict: bool) {
    let abi = sandbox().root.join("abi");
    let cut = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let root = abi.to_string_lossy().into_owned();
    let bytes = replace_all(&data[..cut], b"@H@", root.as_bytes());
    let text = std::str::from_utf8(&bytes).ok();
    let parsed = if data.is_empty() {
        Some(Config::from_json_str(None))
    } else {
        text.map(|t| Config::from_json_str(Some(t)))
    };
    if let Some(Ok(cfg)) = &parsed {
        let paths = [&cfg.pool_path, &cfg.credentials_path];
        if paths.into_iter().flatten().any(|p| !inside(&abi, p)) {
            return;
        }
    }
    let mut before = BTreeMap::new();
    snapshot(&abi, &mut before);

    let c = CString::new(bytes.clone()).expect("cut at the first NUL");
    let arg = if data.is_empty() {
        std::ptr::null()
    } else {
        c.as_ptr()
    };
    // Garbage in the out-params: hap must clear them on entry.
    let mut pool = DANGLING_POOL;
    let mut err = DANGLING_STR;
    // SAFETY: `arg` is NULL or NUL-terminated; both out pointers are valid for writes.
    let st = unsafe { hap_pool_open(arg, &mut pool, &mut err) };
    // Config values (paths, also as expanded by the parser) may show; unknown keys only
    // when not strict (finding 2).
    let mut allowed = Vec::new();
    if let Some(v) = text.and_then(|t| serde_json::from_str::<Value>(t).ok()) {
        config_strings(&v, !strict, &mut allowed);
    }
    if let Some(Ok(cfg)) = &parsed {
        config_strings(&cfg.to_json(), false, &mut allowed);
    }
    // Fixture tokens never show, whatever the config says.
    let no_fixture_token = |what: &str, s: &str| {
        for t in FIX_TOKENS {
            assert!(!s.contains(t), "{what} shows a store token: {s}");
        }
    };
    // SAFETY: hap_status_name returns a static NUL-terminated string.
    let name = unsafe { CStr::from_ptr(hap::ffi::hap_status_name(st)) }
        .to_str()
        .unwrap()
        .to_string();
    if st == hap::ffi::HAP_STATUS_OK {
        assert!(err.is_null(), "error_out set on success");
        assert!(!pool.is_null() && pool != DANGLING_POOL);
        let mut out = DANGLING_STR;
        let mut e2 = DANGLING_STR;
        // SAFETY: `pool` is the live handle just opened; out pointers are valid.
        let st2 = unsafe { hap_pool_status(pool.as_ref(), &mut out, &mut e2) };
        assert_eq!(
            st2,
            hap::ffi::HAP_STATUS_OK,
            "status of an open pool failed"
        );
        assert!(e2.is_null());
        // SAFETY: hap set `out` on success.
        let status = unsafe { take(out) };
        let v: Value = serde_json::from_str(&status).expect("status JSON");
        assert!(v["credentials"].is_array(), "{status}");
        no_fixture_token("status JSON", &status);
        assert_no_token_json("status JSON", &v, &allowed);
        // SAFETY: opened above, freed once, no other call running on it.
        unsafe { hap_pool_free(Some(Box::from_raw(pool))) };
    } else {
        assert!(pool.is_null(), "pool_out not cleared on failure");
        assert!(
            [
                hap::ffi::HAP_STATUS_INVALID_ARGUMENT,
                hap::ffi::HAP_STATUS_STORE_CORRUPT,
                hap::ffi::HAP_STATUS_IO,
            ]
            .contains(&st),
            "hap_pool_open answered {name}"
        );
        assert!(!err.is_null() && err != DANGLING_STR);
        // SAFETY: hap set `err` on failure.
        let e = unsafe { take(err) };
        let v: Value = serde_json::from_str(&e).expect("error JSON");
        assert_eq!(v["status"], st, "{e}");
        assert_eq!(v["name"], name.as_str(), "{e}");
        let msg = v["message"].as_str().expect("message");
        assert!(!msg.contains('\n'), "{e}");
        if st != hap::ffi::HAP_STATUS_INVALID_ARGUMENT {
            assert!(v["path"].is_string(), "no path: {e}");
        }
        no_fixture_token("error JSON", &e);
        assert_no_token_json("error JSON", &v, &allowed);
    }
    // The boundary agrees with the Rust parser.
    match &parsed {
        None => assert_eq!(st, hap::ffi::HAP_STATUS_INVALID_ARGUMENT, "invalid UTF-8"),
        Some(Err(_)) => assert_eq!(st, hap::ffi::HAP_STATUS_INVALID_ARGUMENT),
        Some(Ok(_)) => assert_ne!(st, hap::ffi::HAP_STATUS_INVALID_ARGUMENT),
    }
    // Opening writes nothing.
    let mut after = BTreeMap::new();
    snapshot(&abi, &mut after);
    assert!(before == after, "hap_pool_open changed the sandbox");
}
