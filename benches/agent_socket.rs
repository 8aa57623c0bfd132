//! Resolve through the agent's socket beside the in-process hot path (issue 15).
//!
//! `cargo bench --bench agent_socket [-- CALLS]` starts the real `hap agent` (this build's
//! binary) on a temporary home whose login is valid for hours (no refresh, the token URL is
//! the discard port), then times every call on its own and prints median and p99:
//!
//! 1. `Pool::resolve` in-process (`agent` off): the hot path, no system call;
//! 2. `Pool::resolve` with `"agent": "require"`: a round trip on the pool's kept connection,
//!    the agent's own hot resolve, the answer parsed into a `Token`;
//! 3. the same round trip by hand: one request line written, one answer line read, no parse.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn percentile(sorted: &[u64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// Times every call of each function on its own, in alternating rounds so that a change of
/// load on a shared machine falls on all of them alike; (median, p99) in µs per function.
fn timed(calls: usize, fs: &mut [&mut dyn FnMut()]) -> Vec<(f64, f64)> {
    const ROUNDS: usize = 10;
    let mut ns: Vec<Vec<u64>> = vec![Vec::with_capacity(calls); fs.len()];
    for f in fs.iter_mut() {
        for _ in 0..calls / 10 {
            f();
        }
    }
    for _ in 0..ROUNDS {
        for (i, f) in fs.iter_mut().enumerate() {
            for _ in 0..calls / ROUNDS {
                let t = Instant::now();
                f();
                ns[i].push(t.elapsed().as_nanos() as u64);
            }
        }
    }
    ns.into_iter()
        .map(|mut v| {
            v.sort_unstable();
            (percentile(&v, 0.5), percentile(&v, 0.99))
        })
        .collect()
}

fn main() {
    let calls: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20_000);
    let home = tempfile::tempdir().unwrap();
    let root = home.path();
    let creds = root.join("claude/.credentials.json");
    std::fs::create_dir_all(creds.parent().unwrap()).unwrap();
    let exp = hap::inspect::now_ms() + 8 * 3_600_000;
    std::fs::write(
        &creds,
        serde_json::json!({"claudeAiOauth": {"accessToken": "sk-ant-oat01-fake-bench",
            "refreshToken": "sk-ant-ort01-fake-bench", "expiresAt": exp}})
        .to_string(),
    )
    .unwrap();
    let xdg = root.join("xdg");
    std::fs::create_dir_all(&xdg).unwrap();
    std::fs::set_permissions(&xdg, std::fs::Permissions::from_mode(0o700)).unwrap();
    let cfg = serde_json::json!({"pool_path": root.join("hermes/auth.json"),
        "credentials_path": creds, "token_urls": ["http://127.0.0.1:9/v1/oauth/token"]});
    let cfg_file = root.join("cfg.json");
    std::fs::write(&cfg_file, cfg.to_string()).unwrap();
    // The clients find the agent where it listens.
    std::env::set_var("XDG_RUNTIME_DIR", &xdg);
    let mut agent = Command::new(env!("CARGO_BIN_EXE_hap"))
        .args(["agent", "--log-format", "json", "--config"])
        .arg(&cfg_file)
        .env("HOME", root)
        .stderr(Stdio::null())
        .spawn()
        .expect("hap agent starts");
    let sock = xdg.join("hap/agent.sock");
    let start = Instant::now();
    while UnixStream::connect(&sock).is_err() {
        assert!(start.elapsed() < Duration::from_secs(30), "no agent socket");
        std::thread::sleep(Duration::from_millis(20));
    }

    let req = hap::ResolveRequest::default();
    let local = hap::Pool::open_json(Some(&cfg.to_string())).unwrap();
    let mut via = cfg.clone();
    via["agent"] = "require".into();
    let remote = hap::Pool::open_json(Some(&via.to_string())).unwrap();
    let s = UnixStream::connect(&sock).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    let r3 = timed(
        calls,
        &mut [
            &mut || {
                std::hint::black_box(local.resolve(&req).unwrap());
            },
            &mut || {
                std::hint::black_box(remote.resolve(&req).unwrap());
            },
            &mut || {
                w.write_all(b"{\"op\":\"resolve\"}\n").unwrap();
                line.clear();
                r.read_line(&mut line).unwrap();
            },
        ],
    );
    let [(in_med, in_p99), (sock_med, sock_p99), (raw_med, raw_p99)] = r3[..] else {
        unreachable!()
    };
    assert!(line.contains("\"ok\":true"), "{line}");
    // SAFETY: signals the agent this bench started.
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let _ = agent.wait();

    println!("| resolve | median | p99 | calls |");
    println!("|---|---:|---:|---:|");
    println!(
        "| in-process `Pool::resolve` (hot path) | {in_med:.2} µs | {in_p99:.2} µs | {calls} |"
    );
    println!(
        "| `Pool::resolve` with `\"agent\": \"require\"` (socket) | {sock_med:.2} µs | {sock_p99:.2} µs | {calls} |"
    );
    println!(
        "| raw socket round trip (`{{\"op\":\"resolve\"}}`, no parse) | {raw_med:.2} µs | {raw_p99:.2} µs | {calls} |"
    );
    println!(
        "{}",
        serde_json::json!({"in_process_us": {"median": in_med, "p99": in_p99},
            "socket_pool_us": {"median": sock_med, "p99": sock_p99},
            "socket_raw_us": {"median": raw_med, "p99": raw_p99}, "calls": calls})
    );
}
