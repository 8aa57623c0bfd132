//! One process of a race: opens a pool with the config JSON in argv[1] (or env
//! `HAP_DEMO_CONFIG`), waits until env `HAP_DEMO_START_AT_MS`, resolves once through the
//! Rust API and prints one JSON line: `{"lang": "rust", "pid", "credential_id",
//! "refreshed", "token_sha256"}` or `{"lang": "rust", "pid", "error", "message",
//! "retry_at_ms"}`.
//! Used by the integration tests and the README demo.

use sha2::{Digest, Sha256};
use std::time::Duration;

fn main() {
    let cfg = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("HAP_DEMO_CONFIG").ok())
        .unwrap_or_else(|| "{}".into());
    let request = std::env::args().nth(2);
    let pid = std::process::id();
    let fail = |e: hap::Error| -> ! {
        println!(
            "{}",
            serde_json::json!({"lang": "rust", "pid": pid, "error": e.status.name(), "message": e.message,
                "retry_at_ms": e.retry_at_ms})
        );
        std::process::exit(1);
    };
    let pool = hap::Pool::open_json(Some(&cfg)).unwrap_or_else(|e| fail(e));
    if let Some(at) = std::env::var("HAP_DEMO_START_AT_MS")
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
    {
        let wait = at - hap::inspect::now_ms();
        if wait > 0 {
            std::thread::sleep(Duration::from_millis(wait as u64));
        }
    }
    let req = hap::ResolveRequest::from_json(request.as_deref()).unwrap_or_else(|e| fail(e));
    let t = pool.resolve(&req).unwrap_or_else(|e| fail(e));
    let digest = Sha256::digest(t.access_token.expose().as_bytes());
    let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    println!(
        "{}",
        serde_json::json!({"lang": "rust", "pid": pid, "credential_id": t.credential_id,
                           "refreshed": t.refreshed, "token_sha256": hex})
    );
}
