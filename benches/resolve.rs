//! Criterion benchmarks: the hot resolve (valid token, unchanged files) through the Rust
//! API and through the C ABI, and a full refresh against the local fake token server.
//! Run: `cargo bench --bench resolve`. Figures and the command are in BENCHMARKS.md.

use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;
use std::ffi::{c_char, CString};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn write_creds(path: &std::path::Path, access: &str, refresh: &str, expires_at: i64) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let v = json!({"claudeAiOauth": {"accessToken": access, "refreshToken": refresh,
        "expiresAt": expires_at, "subscriptionType": "max"}});
    std::fs::write(path, v.to_string()).unwrap();
}

fn bench(c: &mut Criterion) {
    let mut server = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testing/fake_token_server.py"
        ))
        .arg("--exit-on-stdin-eof")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs the fake token server");
    let mut base = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut base)
        .unwrap();
    let token_url = format!("{}/v1/oauth/token", base.trim());

    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("claude/.credentials.json");
    let pool_path = dir.path().join("hermes/auth.json");
    let now = hap::internals::clock::now_ms();
    write_creds(
        &creds,
        "sk-ant-oat01-fake-b1",
        "sk-ant-ort01-fake-b1",
        now + 3_600_000,
    );
    let cfg = json!({"pool_path": pool_path, "credentials_path": creds, "token_urls": [token_url]});
    let pool = hap::Pool::open_json(Some(&cfg.to_string())).unwrap();
    let req = hap::ResolveRequest::default();
    pool.resolve(&req).unwrap();

    c.bench_function("hot_resolve_rust_api", |b| {
        b.iter(|| std::hint::black_box(pool.resolve(&req).unwrap()))
    });

    let ccfg = CString::new(cfg.to_string()).unwrap();
    let mut handle = std::ptr::null_mut();
    unsafe {
        assert_eq!(
            hap::ffi::hap_pool_open(ccfg.as_ptr(), &mut handle, std::ptr::null_mut()),
            0
        );
    }
    c.bench_function("hot_resolve_c_abi", |b| {
        b.iter(|| unsafe {
            let mut out: *mut c_char = std::ptr::null_mut();
            let st = hap::ffi::hap_resolve_token(
                handle.as_ref(),
                std::ptr::null(),
                &mut out,
                std::ptr::null_mut(),
            );
            assert_eq!(st, 0);
            hap::ffi::hap_free(out);
        })
    });
    unsafe { hap::ffi::hap_pool_free(Some(Box::from_raw(handle))) };

    // A full rotation: expired token on disk -> locks -> journal -> POST -> write-back.
    let mut group = c.benchmark_group("refresh");
    group.sample_size(30);
    let mut n = 0u64;
    group.bench_function("full_refresh_local_server", |b| {
        b.iter_batched(
            || {
                n += 1;
                write_creds(
                    &creds,
                    "sk-ant-oat01-fake-b1",
                    &format!("sk-ant-ort01-fake-{n}"),
                    0,
                );
                // Untimed: let the store watch see the rewrite. Until it does, the cache may
                // still serve the previous (valid) token, which is the documented trade.
                std::thread::sleep(std::time::Duration::from_millis(5));
            },
            |_| assert!(pool.resolve(&req).unwrap().refreshed),
            criterion::BatchSize::PerIteration,
        )
    });
    group.finish();
    let _ = server.kill();
    let _ = server.wait();
}

criterion_group!(benches, bench);
criterion_main!(benches);
