//! A reader for the agent tests (issue 15): opens one pool with the config JSON in argv[1]
//! (its `agent` key decides whether it defers to a running `hap agent`), prints
//! `{"ready": true}`, waits until the file argv[2] exists (it holds the epoch ms to stop
//! at), then resolves every argv[3] ms until then, printing one JSON line per resolve:
//! `{"kind": argv[4], "sha": <sha256 of the token, 16 hex>, "t_ms", "expires_at_ms",
//! "refreshed"}` or `{"kind", "t_ms", "error", "message"}`. Never the token itself. With
//! argv[5], it stops resolving after that many and keeps the pool open, idle, until then
//! (a long-lived process between requests).

use sha2::{Digest, Sha256};
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let cfg = args.get(1).cloned().unwrap_or_else(|| "{}".into());
    let go_file = args.get(2).cloned().unwrap_or_default();
    let every_ms: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(100);
    let kind = args.get(4).cloned().unwrap_or_else(|| "rust".into());
    let max_resolves: usize = args
        .get(5)
        .and_then(|s| s.parse().ok())
        .unwrap_or(usize::MAX);
    let pool = match hap::Pool::open_json(Some(&cfg)) {
        Ok(p) => p,
        Err(e) => {
            println!(
                "{}",
                serde_json::json!({"kind": kind, "t_ms": hap::inspect::now_ms(),
                                   "error": e.status.name(), "message": e.message})
            );
            std::process::exit(1);
        }
    };
    println!("{}", serde_json::json!({"kind": kind, "ready": true}));
    let end_at_ms: i64 = loop {
        if let Some(ms) = std::fs::read_to_string(&go_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            break ms;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut resolves = 0;
    while hap::inspect::now_ms() < end_at_ms {
        if resolves == max_resolves {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        resolves += 1;
        let line = match pool.resolve(&hap::ResolveRequest::default()) {
            Ok(t) => {
                let digest = Sha256::digest(t.access_token.expose().as_bytes());
                let sha: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
                serde_json::json!({"kind": kind, "sha": sha, "t_ms": hap::inspect::now_ms(),
                                   "expires_at_ms": t.expires_at_ms, "refreshed": t.refreshed})
            }
            Err(e) => serde_json::json!({"kind": kind, "t_ms": hap::inspect::now_ms(),
                                         "error": e.status.name(), "message": e.message}),
        };
        println!("{line}");
        std::thread::sleep(Duration::from_millis(every_ms));
    }
}
