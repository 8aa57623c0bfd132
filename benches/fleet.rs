//! Issue 16: the hot resolve with the fleet authority (Redis) next to the file authority,
//! and how long a rotation committed by another host takes to reach a pool's cache.
//! Needs redis-server. Run: `cargo bench --features redis --bench fleet`. Figures and the
//! command are in BENCHMARKS.md, section 12.

use criterion::{criterion_group, criterion_main, Criterion};
use hap::internals::credentials::TokenPair;
use hap::internals::redis::{RedisConfig, RedisStore};
use hap::Secret;
use serde_json::json;
use std::time::{Duration, Instant};

#[path = "../tests/common/redis.rs"]
mod redis_server;

fn pair(n: usize) -> TokenPair {
    TokenPair {
        access: Secret::new(format!("sk-ant-oat01-fake-bench-{n}")),
        refresh: Some(Secret::new(format!("sk-ant-ort01-fake-bench-{n}"))),
        expires_at_ms: Some(hap::internals::clock::now_ms() + 3_600_000),
    }
}

fn bench(c: &mut Criterion) {
    let Some(s) = redis_server::RedisServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // This host's fleet journal; a bench is one process, set before any thread starts.
    std::env::set_var("XDG_STATE_HOME", dir.path());
    let pw = s.password_file("refresher");
    let store =
        RedisStore::new(RedisConfig::new(&s.url("refresher"), Some(&pw), None, None).unwrap());
    store.commit(None, &pair(0), None).unwrap();
    let cfg = json!({"redis_url": s.url("refresher"), "redis_password_file": pw,
        "token_urls": ["http://127.0.0.1:9/none"], "pool_path": null, "credentials_path": null});
    let pool = hap::Pool::open_json(Some(&cfg.to_string())).unwrap();
    let req = hap::ResolveRequest::default();
    // The second resolve starts the subscription, as in a long-lived host process.
    pool.resolve(&req).unwrap();
    pool.resolve(&req).unwrap();
    std::thread::sleep(Duration::from_millis(200));

    // The file authority, same machine, for comparison.
    let creds = dir.path().join("claude/.credentials.json");
    std::fs::create_dir_all(creds.parent().unwrap()).unwrap();
    std::fs::write(
        &creds,
        json!({"claudeAiOauth": {"accessToken": "sk-ant-oat01-fake-f1",
            "refreshToken": "sk-ant-ort01-fake-f1",
            "expiresAt": hap::internals::clock::now_ms() + 3_600_000}})
        .to_string(),
    )
    .unwrap();
    let fcfg = json!({"pool_path": null, "credentials_path": creds,
        "token_urls": ["http://127.0.0.1:9/none"]});
    let fpool = hap::Pool::open_json(Some(&fcfg.to_string())).unwrap();
    fpool.resolve(&req).unwrap();
    fpool.resolve(&req).unwrap();

    c.bench_function("hot_resolve_file_authority", |b| {
        b.iter(|| std::hint::black_box(fpool.resolve(&req).unwrap()))
    });
    let before = pool.pool_status().unwrap().counters;
    c.bench_function("hot_resolve_redis_authority", |b| {
        b.iter(|| std::hint::black_box(pool.resolve(&req).unwrap()))
    });
    let after = pool.pool_status().unwrap().counters;
    eprintln!(
        "redis reads during the hot-resolve bench: {} in {} resolves",
        after.store_reads - before.store_reads,
        after.resolves - before.resolves
    );

    // Rotation propagation: another host's commit until this pool serves the new token.
    let mut lat = Vec::new();
    for n in 1..=200 {
        let p = pair(n);
        let want = p.access.clone();
        let t = Instant::now();
        store
            .commit(Some(&pair(n - 1).refresh.unwrap().fingerprint()), &p, None)
            .unwrap();
        while pool.resolve(&req).unwrap().access_token != want {
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "rotation {n} never arrived"
            );
        }
        lat.push(t.elapsed());
    }
    lat.sort();
    let pct = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    eprintln!(
        "another host's commit -> this pool serves it, {} rotations: p50 {:?}, p99 {:?}, max {:?}",
        lat.len(),
        pct(0.50),
        pct(0.99),
        lat[lat.len() - 1]
    );

    // What `redis_wait_replicas` costs a commit (docs/FLEET.md, Replicas and failover): the
    // same compare-and-set with one replica attached, without WAIT and with `WAIT 1`.
    let Some(_replica) = redis_server::RedisServer::start_replica_of(&s) else {
        return;
    };
    let waiting =
        RedisStore::new(RedisConfig::new(&s.url("refresher"), Some(&pw), None, None).unwrap())
            .with_wait(1, 5000);
    let mut n = 200;
    for (what, st) in [
        ("no WAIT", &store),
        ("WAIT 1", &waiting),
        ("no WAIT", &store),
        ("WAIT 1", &waiting),
    ] {
        let mut lat = Vec::new();
        for _ in 0..300 {
            n += 1;
            let t = Instant::now();
            st.commit(
                Some(&pair(n - 1).refresh.unwrap().fingerprint()),
                &pair(n),
                None,
            )
            .unwrap();
            lat.push(t.elapsed());
        }
        lat.sort();
        let pct = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
        eprintln!(
            "commit of the pair, 1 replica, {what}: {} commits, p50 {:?}, p99 {:?}",
            lat.len(),
            pct(0.50),
            pct(0.99)
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
