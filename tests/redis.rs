//! Issue 16: the fleet authority and refresh lease in Redis, against a real `redis-server`
//! (tests/common/redis.rs starts one per test: loopback, random port, `appendonly yes`,
//! `appendfsync always`, ACL users admin/refresher/consumer). Needs `--features redis`;
//! skipped with a loud message when redis-server is not installed (`HAP_REQUIRE_REDIS=1`
//! makes that a failure, as scripts/test does).
#![cfg(feature = "redis")]

mod common;
#[path = "common/redis.rs"]
mod redis_server;

use hap::internals::credentials::TokenPair;
use hap::internals::redis::{Commit, RedisConfig, RedisStore, Subscription};
use hap::{Secret, Status};
use redis_server::RedisServer;
use std::time::{Duration, Instant};

const A1: &str = "sk-ant-oat01-fake-a1";
const R1: &str = "sk-ant-ort01-fake-r1";
const A2: &str = "sk-ant-oat01-fake-a2";
const R2: &str = "sk-ant-ort01-fake-r2";
const A3: &str = "sk-ant-oat01-fake-a3";
const R3: &str = "sk-ant-ort01-fake-r3";

fn pair(a: &str, r: &str) -> TokenPair {
    TokenPair {
        access: Secret::new(a),
        refresh: Some(Secret::new(r)),
        expires_at_ms: Some(common::now_ms() + 3_600_000),
    }
}

fn store(s: &RedisServer, user: &str) -> RedisStore {
    let cfg =
        RedisConfig::new(&s.url(user), Some(&s.password_file(user)), None, None).expect("config");
    RedisStore::new(cfg)
}

macro_rules! server {
    () => {
        match RedisServer::start() {
            Some(s) => s,
            None => return,
        }
    };
}

#[test]
fn every_write_of_the_pair_is_a_compare_and_set_on_the_token_it_replaces() {
    let s = server!();
    let r = store(&s, "refresher");
    assert!(r.read_pair().unwrap().is_none());
    // An import writes only where no pair is.
    assert_eq!(
        r.commit(None, &pair(A1, R1), None).unwrap(),
        Commit::Written(1)
    );
    assert_eq!(r.commit(None, &pair(A2, R2), None).unwrap(), Commit::Moved);
    // A rotation from R1.
    let scopes = vec!["user:inference".to_string()];
    assert_eq!(
        r.commit(
            Some(&Secret::new(R1).fingerprint()),
            &pair(A2, R2),
            Some(&scopes)
        )
        .unwrap(),
        Commit::Written(2)
    );
    // A late holder that also spent R1 (it cannot have: single-use) or a stale writer:
    // refused, and the stored pair is untouched.
    assert_eq!(
        r.commit(Some(&Secret::new(R1).fingerprint()), &pair(A3, R3), None)
            .unwrap(),
        Commit::Moved
    );
    let got = r.read_pair().unwrap().unwrap();
    assert_eq!(got.pair.access.expose(), A2);
    assert_eq!(got.pair.refresh.as_ref().unwrap().expose(), R2);
    assert_eq!(got.version, 2);
    assert_eq!(got.scopes, Some(scopes));
    // The consumers' key holds the access token, never the refresh token.
    let access = r.read_access().unwrap().unwrap();
    assert_eq!(access.access.expose(), A2);
    assert_eq!(access.version, 2);
    assert!(!s.cli(&["HGETALL", "hap:access"]).contains("ort01"));
}

#[test]
fn a_consumer_reads_the_access_token_and_nothing_else() {
    let s = server!();
    store(&s, "refresher")
        .commit(None, &pair(A1, R1), None)
        .unwrap();
    let c = store(&s, "consumer");
    assert_eq!(c.read_access().unwrap().unwrap().access.expose(), A1);
    let e = c.read_pair().unwrap_err();
    assert!(e.message.contains("ACL user"), "{e}");
    assert!(!e.message.contains(R1));
    let e = c
        .commit(Some(&Secret::new(R1).fingerprint()), &pair(A2, R2), None)
        .unwrap_err();
    assert!(e.message.contains("ACL user"), "{e}");
    let e = c
        .acquire_lease(1000, Instant::now(), "consumer")
        .err()
        .expect("a consumer cannot take the lease");
    assert!(e.message.contains("ACL user"), "{e}");
    // And the pair is as it was.
    let got = store(&s, "refresher").read_pair().unwrap().unwrap();
    assert_eq!(got.pair.access.expose(), A1);
}

#[test]
fn the_lease_is_exclusive_renewed_while_held_and_released_only_by_its_owner() {
    let s = server!();
    let a = store(&s, "refresher");
    let b = store(&s, "refresher");
    let ttl = 300;
    let held = a
        .acquire_lease(ttl, Instant::now() + Duration::from_secs(1), "a")
        .unwrap();
    // Held for 3 TTLs: the renewal keeps it; b times out.
    let t = Instant::now();
    let e = b
        .acquire_lease(ttl, Instant::now() + Duration::from_millis(900), "b")
        .err()
        .expect("b must not get a held lease");
    assert_eq!(e.status, Status::LockTimeout);
    assert!(t.elapsed() >= Duration::from_millis(850));
    assert!(held.renewals() >= 2, "renewals: {}", held.renewals());
    assert!(!held.lost());
    drop(held);
    // Released by compare-and-delete: b gets it at once.
    let hb = b.acquire_lease(ttl, Instant::now(), "b").unwrap();
    assert_eq!(s.cli(&["GET", "hap:lease"]), hb.owner());

    // A holder whose lease expired and was taken (planted here as another owner's) notices,
    // stops renewing, and its release leaves the successor's lease alone.
    s.cli(&["SET", "hap:lease", "successor", "PX", "60000"]);
    let until = Instant::now() + Duration::from_secs(3);
    while !hb.lost() {
        assert!(
            Instant::now() < until,
            "the renewal did not notice the takeover"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(hb);
    assert_eq!(s.cli(&["GET", "hap:lease"]), "successor");
}

#[test]
fn the_possibly_spent_marker_ends_with_the_commit_of_its_token_only() {
    let s = server!();
    let r = store(&s, "refresher");
    r.commit(None, &pair(A1, R1), None).unwrap();
    let fp1 = Secret::new(R1).fingerprint();
    r.mark_posting(&fp1, 1234, "host-a:42").unwrap();
    let p = r.posting().unwrap().unwrap();
    assert_eq!((p.token_fp.as_str(), p.at_ms), (fp1.as_str(), 1234));
    assert_eq!(p.host.as_deref(), Some("host-a:42"));
    // Clearing another token's marker leaves it.
    r.clear_posting("sha256:0000000000000000").unwrap();
    assert!(r.posting().unwrap().is_some());
    // The commit of the pair that replaced R1 ends it.
    r.commit(Some(&Secret::new(R1).fingerprint()), &pair(A2, R2), None)
        .unwrap();
    assert!(r.posting().unwrap().is_none());
    // A refused commit does not.
    r.mark_posting(&Secret::new(R2).fingerprint(), 1, "host-a:42")
        .unwrap();
    assert_eq!(
        r.commit(Some(&Secret::new(R1).fingerprint()), &pair(A3, R3), None)
            .unwrap(),
        Commit::Moved
    );
    assert!(r.posting().unwrap().is_some());
    r.clear_posting(&Secret::new(R2).fingerprint()).unwrap();
    assert!(r.posting().unwrap().is_none());
}

#[test]
fn a_rotation_reaches_a_subscriber_without_it_polling() {
    let s = server!();
    let cfg = RedisConfig::new(
        &s.url("consumer"),
        Some(&s.password_file("consumer")),
        None,
        None,
    )
    .unwrap();
    let sub = Subscription::start(cfg, Box::new(|| {})).unwrap();
    let until = Instant::now() + Duration::from_secs(5);
    while !sub.connected() {
        assert!(Instant::now() < until, "subscription did not connect");
        std::thread::sleep(Duration::from_millis(5));
    }
    let r = store(&s, "refresher");
    let mut lat = Vec::new();
    let mut from = R1;
    r.commit(None, &pair(A1, R1), None).unwrap();
    for i in 0..20 {
        let g = sub.generation();
        let next_r = format!("sk-ant-ort01-fake-r{}", i + 10);
        let t = Instant::now();
        r.commit(
            Some(&Secret::new(from).fingerprint()),
            &pair("sk-ant-oat01-fake-x", &next_r),
            None,
        )
        .unwrap();
        while sub.generation() == g {
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "rotation {i} never arrived"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        lat.push(t.elapsed());
        from = Box::leak(next_r.into_boxed_str());
    }
    lat.sort();
    eprintln!(
        "rotation -> subscriber: p50 {:?} max {:?}",
        lat[lat.len() / 2],
        lat[lat.len() - 1]
    );
}

#[test]
fn what_redis_acknowledged_survives_sigkill_with_appendfsync_always() {
    let mut s = server!();
    let r = store(&s, "refresher");
    r.commit(None, &pair(A1, R1), None).unwrap();
    r.commit(Some(&Secret::new(R1).fingerprint()), &pair(A2, R2), None)
        .unwrap();
    // SIGKILL, then a start on the same directory. The store reconnects by itself after
    // the server closed its connection.
    s.restart();
    let got = r.read_pair().unwrap().unwrap();
    assert_eq!(got.pair.refresh.unwrap().expose(), R2);
    assert_eq!(got.version, 2);
}

#[test]
fn redis_unreachable_is_unavailable_with_a_retry_time_and_no_password_shown() {
    let mut s = server!();
    let r = store(&s, "refresher");
    r.commit(None, &pair(A1, R1), None).unwrap();
    s.kill9();
    let e = r.read_pair().unwrap_err();
    assert_eq!(e.status, Status::Unavailable, "{e}");
    assert!(e.retry_at_ms.is_some());
    let e = r
        .acquire_lease(1000, Instant::now() + Duration::from_millis(100), "x")
        .err()
        .unwrap();
    assert_eq!(e.status, Status::Unavailable, "{e}");
    assert!(!format!("{e} {e:?}").contains(redis_server::REFRESHER_PW));
}

#[test]
fn the_password_is_never_in_the_url_a_message_or_debug_output() {
    let s = server!();
    let e = RedisConfig::new(
        &format!(
            "redis://refresher:{}@127.0.0.1:{}/",
            redis_server::REFRESHER_PW,
            s.port
        ),
        None,
        None,
        None,
    )
    .unwrap_err();
    assert_eq!(e.status, Status::InvalidArgument);
    assert!(e.message.contains("redis_password_file"), "{e}");
    assert!(!e.message.contains(redis_server::REFRESHER_PW));
    // A wrong password: refused by Redis, and the message does not echo it.
    let bad = s.dir.path().join("bad.pw");
    std::fs::write(&bad, "wrong-pw-fake\n").unwrap();
    let cfg = RedisConfig::new(&s.url("refresher"), Some(&bad), None, None).unwrap();
    assert!(!format!("{cfg:?}").contains("wrong-pw-fake"));
    let e = RedisStore::new(cfg).read_pair().unwrap_err();
    assert!(!format!("{e} {e:?}").contains("wrong-pw-fake"), "{e}");
    // With Sentinel: the password is in neither the config's Debug nor the error of a
    // connection through sentinels (here: none listening).
    let cfg = RedisConfig::new("redis://refresher@hapm/", Some(&bad), None, None)
        .unwrap()
        .with_sentinels(&["127.0.0.1:1".to_string()], Some("hapm"))
        .unwrap();
    assert!(!format!("{cfg:?}").contains("wrong-pw-fake"));
    let e = RedisStore::new(cfg).read_pair().unwrap_err();
    assert!(!format!("{e} {e:?}").contains("wrong-pw-fake"), "{e}");
}

#[test]
fn rediss_with_an_acl_user_works() {
    if std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_err()
    {
        eprintln!(
            "\n!!!!! SKIPPED: openssl CLI missing, no test certificate for rediss:// !!!!!\n"
        );
        return;
    }
    let Some(s) = RedisServer::start_tls() else {
        return;
    };
    let cfg = RedisConfig::new(
        &s.tls_url("refresher"),
        Some(&s.password_file("refresher")),
        None,
        Some(&s.ca_path()),
    )
    .unwrap();
    let r = RedisStore::new(cfg);
    assert_eq!(
        r.commit(None, &pair(A1, R1), None).unwrap(),
        Commit::Written(1)
    );
    assert_eq!(r.read_pair().unwrap().unwrap().pair.access.expose(), A1);
    // Without the CA, the server's certificate is refused: no plaintext fallback.
    let cfg = RedisConfig::new(
        &s.tls_url("refresher"),
        Some(&s.password_file("refresher")),
        None,
        None,
    )
    .unwrap();
    let e = RedisStore::new(cfg).read_pair().unwrap_err();
    assert_eq!(e.status, Status::Unavailable, "{e}");
}

// ---------------------------------------------------------------------------------------
// The fleet through the pool (step 2/3): simulated hosts are processes with their own HOME
// (their own fleet journal and lock) and no shared file, on one Redis and the fake token
// server. The workers are examples/hap_worker.rs and examples/hap_reader.rs.

use common::FakeServer;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A simulated host: its own HOME with its own copy of the password file.
fn host(s: &RedisServer) -> tempfile::TempDir {
    let h = tempfile::tempdir().unwrap();
    std::fs::copy(s.password_file("refresher"), h.path().join("redis.pw")).unwrap();
    h
}

fn fleet_cfg(s: &RedisServer, server: &FakeServer, home: &Path, extra: Value) -> Value {
    let mut c = json!({
        "redis_url": s.url("refresher"),
        "redis_password_file": home.join("redis.pw"),
        "token_urls": [server.token_url()],
        "pool_path": null,
        "credentials_path": null,
        "refresh_skew_ms": 0,
        "lock_timeout_ms": 30000,
        "http_timeout_ms": 8000,
    });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn bin(name: &str) -> std::path::PathBuf {
    common::worker_bin().with_file_name(name)
}

fn spawn_in(home: &Path, cfg: &Value, start_at_ms: i64) -> Child {
    Command::new(common::worker_bin())
        .arg(cfg.to_string())
        .env("HAP_DEMO_START_AT_MS", start_at_ms.to_string())
        .env("HOME", home)
        .env_remove("XDG_STATE_HOME")
        .env_remove("HAP_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn sha6(token: &str) -> String {
    Sha256::digest(token.as_bytes())[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A login minted by the fake server, its access token valid for `valid_ms` from now.
fn minted(server: &FakeServer, valid_ms: i64) -> TokenPair {
    let v: Value = ureq::post(&format!("{}/_admin/issue", server.base))
        .send_json(json!({}))
        .unwrap()
        .into_json()
        .unwrap();
    TokenPair {
        access: Secret::new(v["access_token"].as_str().unwrap()),
        refresh: Some(Secret::new(v["refresh_token"].as_str().unwrap())),
        expires_at_ms: Some(common::now_ms() + valid_ms),
    }
}

/// A login minted by the fake server, imported into Redis, its access token expired.
fn import_expired(s: &RedisServer, server: &FakeServer) {
    let p = minted(server, -1000);
    assert_eq!(
        store(s, "refresher").commit(None, &p, None).unwrap(),
        Commit::Written(1)
    );
}

/// Makes the stored access token expired (its time is up), tokens unchanged.
fn expire_now(s: &RedisServer) {
    let past = (common::now_ms() - 1000).to_string();
    s.cli(&["HSET", "hap:pair", "expires_at_ms", &past]);
    s.cli(&["HSET", "hap:access", "expires_at_ms", &past]);
}

fn redis_access_sha(s: &RedisServer) -> String {
    sha6(
        store(s, "refresher")
            .read_access()
            .unwrap()
            .unwrap()
            .access
            .expose(),
    )
}

fn env_n(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The race: M hosts x N processes on one expired grant, round after round. Each
/// round must cost exactly one POST, every process must get the one new token, and nobody
/// `invalid_grant`. Defaults keep it short; the figure of BENCHMARKS.md is
/// `HAP_FLEET_HOSTS=4 HAP_FLEET_PROCS=8 HAP_FLEET_ROUNDS=20 cargo test --release
///  --features redis --test redis m_hosts -- --nocapture`.
#[test]
fn m_hosts_by_n_processes_make_exactly_one_post_per_rotation() {
    let s = server!();
    let server = FakeServer::start();
    let (m, n, rounds) = (
        env_n("HAP_FLEET_HOSTS", 4),
        env_n("HAP_FLEET_PROCS", 4),
        env_n("HAP_FLEET_ROUNDS", 3),
    );
    let hosts: Vec<_> = (0..m).map(|_| host(&s)).collect();
    import_expired(&s, &server);
    let t0 = Instant::now();
    for round in 0..rounds {
        if round > 0 {
            expire_now(&s);
        }
        let posts0 = server.posts();
        let start_at = common::now_ms() + 300 + 40 * (m * n) as i64;
        let children: Vec<_> = hosts
            .iter()
            .flat_map(|h| {
                let cfg = fleet_cfg(&s, &server, h.path(), json!({}));
                (0..n)
                    .map(|_| spawn_in(h.path(), &cfg, start_at))
                    .collect::<Vec<_>>()
            })
            .collect();
        let results: Vec<_> = children.into_iter().map(common::worker_result).collect();
        let want = redis_access_sha(&s);
        let mut refreshed = 0;
        for (v, err) in &results {
            assert_eq!(v["token_sha256"], want.as_str(), "round {round}: {v} {err}");
            refreshed += usize::from(v["refreshed"] == true);
        }
        assert_eq!(
            server.posts() - posts0,
            1,
            "round {round}: one POST per rotation"
        );
        assert_eq!(refreshed, 1, "round {round}: one process refreshed");
        let got = store(&s, "refresher").read_pair().unwrap().unwrap();
        assert_eq!(got.version, round as u64 + 2, "round {round}: one rotation");
    }
    let stats = server.stats();
    assert_eq!(stats["invalid_grant"], 0, "{stats}");
    assert_eq!(server.posts(), rounds as u64);
    eprintln!(
        "fleet race: {m} hosts x {n} processes x {rounds} rounds: {} POSTs for {rounds} \
         rotations, 0 invalid_grant, {:?}",
        server.posts(),
        t0.elapsed()
    );
}

/// A long-lived process of host `home` (examples/hap_reader.rs, `args` after its config and
/// go file): started, ready, and told to run for `run_ms`. Its stdout has a JSON line per
/// resolve.
fn start_reader(
    home: &Path,
    cfg: &Value,
    run_ms: i64,
    args: &[&str],
) -> (Child, std::io::BufReader<std::process::ChildStdout>) {
    let go = home.join("go");
    let mut reader = Command::new(bin("hap_reader"))
        .arg(cfg.to_string())
        .arg(&go)
        .args(args)
        .env("HOME", home)
        .env_remove("XDG_STATE_HOME")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(reader.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert!(line.contains("ready"), "{line}");
    std::fs::write(&go, (common::now_ms() + run_ms).to_string()).unwrap();
    (reader, out)
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a child of this test.
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
}

/// The takeover: the lease holder is SIGSTOPped past its lease while its POST is
/// in flight; another host takes the lease, finds the possibly-spent marker and waits; the
/// resumed holder commits its pair (Redis still holds the token it spent), the taker adopts
/// it, and nobody gets `invalid_grant`. Without the marker the taker POSTs the same token:
/// the server answers it first and the holder's answer is `invalid_grant`.
#[test]
fn a_holder_paused_past_its_lease_still_commits_and_the_taker_waits_for_it() {
    let s = server!();
    let server = FakeServer::start();
    let (ha, hb) = (host(&s), host(&s));
    import_expired(&s, &server);
    // The holder's POST stays at the server for 2.5 s before it is answered.
    server.script(json!([{"delay_ms": 2500}]));
    let extra = json!({"redis_lease_ms": 600});
    let a = spawn_in(
        ha.path(),
        &fleet_cfg(&s, &server, ha.path(), extra.clone()),
        0,
    );
    // Its POST is at the server (counted on arrival), its marker in Redis.
    wait_for("the holder's POST", 20, || server.posts() == 1);
    assert!(!s.cli(&["HGET", "hap:posting", "token"]).is_empty());
    signal(a.id(), libc::SIGSTOP);
    // Past its lease: nobody renews it.
    wait_for("the lease to expire", 10, || {
        s.cli(&["EXISTS", "hap:lease"]) == "0"
    });
    let b = spawn_in(hb.path(), &fleet_cfg(&s, &server, hb.path(), extra), 0);
    // The taker takes the lease and watches instead of POSTing.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(server.posts(), 1, "the taker POSTed a possibly spent token");
    signal(a.id(), libc::SIGCONT);
    let (va, ea) = common::worker_result(a);
    let (vb, eb) = common::worker_result(b);
    assert_eq!(va["refreshed"], true, "{va} {ea}");
    assert_eq!(vb["refreshed"], false, "{vb} {eb}");
    assert_eq!(va["token_sha256"], vb["token_sha256"]);
    assert_eq!(vb["token_sha256"], redis_access_sha(&s).as_str());
    let stats = server.stats();
    assert_eq!(stats["posts"], 1, "{stats}");
    assert_eq!(stats["invalid_grant"], 0, "{stats}");
}

/// Redis SIGKILLed while a refresh is in flight: the holder's commit fails, its pair waits
/// in the host's journal (and is served), and after Redis restarts the next process of that
/// host commits it without a POST. Nothing lost, one POST.
#[test]
fn redis_killed_during_a_refresh_loses_nothing() {
    let mut s = server!();
    let server = FakeServer::start();
    let ha = host(&s);
    import_expired(&s, &server);
    server.script(json!([{"delay_ms": 1500}]));
    let cfg = fleet_cfg(&s, &server, ha.path(), json!({}));
    let a1 = spawn_in(ha.path(), &cfg, 0);
    // Its POST is at the server (counted on arrival), its marker in Redis.
    wait_for("the holder's POST", 20, || server.posts() == 1);
    assert!(!s.cli(&["HGET", "hap:posting", "token"]).is_empty());
    s.kill9();
    let (v1, e1) = common::worker_result(a1);
    assert_eq!(v1["refreshed"], true, "{v1} {e1}");
    s.restart();
    let r = store(&s, "refresher");
    assert_eq!(
        r.read_pair().unwrap().unwrap().version,
        1,
        "Redis never saw the pair"
    );
    let (v2, e2) = common::worker_result(spawn_in(ha.path(), &cfg, 0));
    assert_eq!(v2["token_sha256"], v1["token_sha256"], "{v2} {e2}");
    assert_eq!(v2["refreshed"], false);
    let got = r.read_pair().unwrap().unwrap();
    assert_eq!(got.version, 2);
    assert_eq!(
        sha6(got.pair.access.expose()),
        v1["token_sha256"].as_str().unwrap()
    );
    assert_eq!(server.posts(), 1);
    assert!(
        r.posting().unwrap().is_none(),
        "the marker ends with the commit"
    );
}

/// Two hosts on an expired login whose next POST is answered after 1.5 s, and a config
/// whose marker window (lease + HTTP timeout) is 3 s: the stranding tests' start.
fn stranding(s: &RedisServer) -> (FakeServer, tempfile::TempDir, tempfile::TempDir, Value) {
    let server = FakeServer::start();
    let (ha, hb) = (host(s), host(s));
    import_expired(s, &server);
    server.script(json!([{"delay_ms": 1500}]));
    let short = json!({"redis_lease_ms": 1000, "http_timeout_ms": 2000});
    (server, ha, hb, short)
}

/// A long-lived process whose pair was stranded in its host's journal (Redis SIGKILLed
/// while its POST was in flight) commits it as soon as Redis is back, from its subscription's
/// reconnect, even while it is idle: another host that needs a refresh after the marker
/// window then adopts that pair. Before, the pair waited for the holder's next resolve,
/// and the other host POSTed the spent token and got `invalid_grant`.
#[test]
fn a_stranded_pair_is_committed_when_redis_returns_before_another_host_spends_its_token() {
    let mut s = server!();
    let (server, ha, hb, short) = stranding(&s);
    let cfg_a = fleet_cfg(&s, &server, ha.path(), short.clone());
    // Two resolves (the second starts its subscription), then idle.
    let (mut reader, mut out) = start_reader(ha.path(), &cfg_a, 60_000, &["300", "rust", "2"]);
    let mut line = String::new();
    wait_for("the reader's POST", 20, || server.posts() == 1);
    s.kill9();
    // The answer arrives with Redis down: journal, served.
    line.clear();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    let first: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(first["refreshed"], true, "{first}");
    // Past the marker window before Redis returns.
    std::thread::sleep(Duration::from_millis(3500));
    s.restart();
    let r = store(&s, "refresher");
    wait_for("the reader to commit its stranded pair", 15, || {
        r.read_pair().unwrap().unwrap().version == 2
    });
    // Another host needs a refresh now, with its own HOME and journal.
    let (vb, eb) = common::worker_result(spawn_in(
        hb.path(),
        &fleet_cfg(&s, &server, hb.path(), short),
        0,
    ));
    let b_sha = vb["token_sha256"]
        .as_str()
        .unwrap_or_else(|| panic!("{vb} {eb}"));
    assert!(
        first["sha"].as_str().unwrap().starts_with(b_sha),
        "{vb} {first}"
    );
    assert_eq!(server.posts(), 1);
    assert_eq!(server.stats()["invalid_grant"], 0);
    let _ = reader.kill();
    let _ = reader.wait();
}

/// The same stranding with no process of the holder's host alive: another host refreshes
/// first, after the marker window, and gets `invalid_grant`. The error names the process
/// whose POST spent the token (`host:pid`) and says what to do; the holder's host's next
/// process commits its pair, and the other host adopts it: nothing was lost.
#[test]
fn invalid_grant_after_a_stranded_post_names_its_host_and_the_holder_repairs_it() {
    let mut s = server!();
    let (server, ha, hb, short) = stranding(&s);
    let cfg_a = fleet_cfg(&s, &server, ha.path(), short.clone());
    let cfg_b = fleet_cfg(&s, &server, hb.path(), short);
    let a1 = spawn_in(ha.path(), &cfg_a, 0);
    let a1_pid = a1.id();
    wait_for("the holder's POST", 20, || server.posts() == 1);
    s.kill9();
    let (v1, e1) = common::worker_result(a1);
    assert_eq!(v1["refreshed"], true, "{v1} {e1}");
    std::thread::sleep(Duration::from_millis(3500));
    s.restart();
    let (vb, eb) = common::worker_result(spawn_in(hb.path(), &cfg_b, 0));
    assert_eq!(vb["error"], "HAP_STATUS_REAUTH_REQUIRED", "{vb} {eb}");
    let msg = vb["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!(":{a1_pid} POSTed this refresh token")),
        "{msg}"
    );
    assert_eq!(server.stats()["invalid_grant"], 1);
    // The holder's host: its next process commits the journalled pair, no POST.
    let (v2, e2) = common::worker_result(spawn_in(ha.path(), &cfg_a, 0));
    assert_eq!(v2["token_sha256"], v1["token_sha256"], "{v2} {e2}");
    assert_eq!(
        store(&s, "refresher").read_pair().unwrap().unwrap().version,
        2
    );
    // And the other host is back on the login.
    let (vb2, eb2) = common::worker_result(spawn_in(hb.path(), &cfg_b, 0));
    assert_eq!(vb2["token_sha256"], v1["token_sha256"], "{vb2} {eb2}");
    assert_eq!(server.posts(), 2);
}

/// Redis stopped: a still-valid cached token goes on being served; once it expires the
/// answer is UNAVAILABLE, and no POST is made without the lease.
#[test]
fn redis_down_serves_a_valid_cached_token_then_fails_closed() {
    let mut s = server!();
    let server = FakeServer::start();
    let ha = host(&s);
    import_expired(&s, &server);
    // Valid for 2 more seconds.
    let soon = (common::now_ms() + 2000).to_string();
    s.cli(&["HSET", "hap:pair", "expires_at_ms", &soon]);
    s.cli(&["HSET", "hap:access", "expires_at_ms", &soon]);
    let cfg = fleet_cfg(&s, &server, ha.path(), json!({}));
    let (mut reader, out) = start_reader(ha.path(), &cfg, 4000, &["100"]);
    std::thread::sleep(Duration::from_millis(500));
    s.kill9();
    let mut lines = Vec::new();
    for l in std::io::BufRead::lines(out) {
        lines.push(serde_json::from_str::<Value>(&l.unwrap()).unwrap());
    }
    reader.wait().unwrap();
    let expiry: i64 = soon.parse().unwrap();
    let (before, after): (Vec<_>, Vec<_>) = lines
        .iter()
        .partition(|v| v["t_ms"].as_i64().unwrap() < expiry - 50);
    // Counts depend on load; each side needs a few resolves to say anything.
    assert!(before.len() >= 2 && after.len() >= 2, "{lines:?}");
    for v in &before {
        assert!(v["sha"].is_string(), "a valid cached token is served: {v}");
    }
    for v in after
        .iter()
        .filter(|v| v["t_ms"].as_i64().unwrap() > expiry + 50)
    {
        assert_eq!(v["error"], "HAP_STATUS_UNAVAILABLE", "{v}");
    }
    assert_eq!(server.posts(), 0, "no refresh without the lease");
}

/// A consumer host (an ACL user that can read the access token only) serves the token a
/// refresher committed, never refreshes, and answers UNAVAILABLE with a retry time once
/// that token has expired, until a refresher rotates it.
#[test]
fn a_consumer_host_serves_the_access_token_and_never_refreshes() {
    let s = server!();
    let server = FakeServer::start();
    let hc = tempfile::tempdir().unwrap();
    std::fs::copy(s.password_file("consumer"), hc.path().join("redis.pw")).unwrap();
    let mut cfg = fleet_cfg(&s, &server, hc.path(), json!({}));
    cfg["redis_url"] = json!(s.url("consumer"));
    import_expired(&s, &server);
    let (v, e) = common::worker_result(spawn_in(hc.path(), &cfg, 0));
    assert_eq!(v["error"], "HAP_STATUS_UNAVAILABLE", "{v} {e}");
    assert!(v["message"].as_str().unwrap().contains("consumer"), "{v}");
    assert_eq!(server.posts(), 0, "a consumer never POSTs");
    // A refresher host rotates; the consumer serves the new token.
    let hr = host(&s);
    let (vr, er) = common::worker_result(spawn_in(
        hr.path(),
        &fleet_cfg(&s, &server, hr.path(), json!({})),
        0,
    ));
    assert_eq!(vr["refreshed"], true, "{vr} {er}");
    let (v, e) = common::worker_result(spawn_in(hc.path(), &cfg, 0));
    assert_eq!(v["token_sha256"], vr["token_sha256"], "{v} {e}");
    assert_eq!(server.posts(), 1);
}

fn hap_cli(home: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hap"))
        .args(args)
        .env("HOME", home)
        .env_remove("HAP_CONFIG")
        .env_remove("XDG_STATE_HOME")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `hap fleet import` moves Claude Code's login into Redis once and says what the source
/// host must do; `status` shows version and lease without a secret; `export` moves it back
/// into a credentials file and out of Redis.
#[test]
fn hap_fleet_import_status_export() {
    let s = server!();
    let server = FakeServer::start();
    let h = host(&s);
    let creds = h.path().join(".claude/.credentials.json");
    std::fs::create_dir_all(creds.parent().unwrap()).unwrap();
    let login = json!({"claudeAiOauth": {"accessToken": A1, "refreshToken": R1,
        "expiresAt": common::now_ms() + 3_600_000, "scopes": ["user:inference"]},
        "mcpOAuth": {"keep": "me"}});
    std::fs::write(&creds, login.to_string()).unwrap();
    let cfg_file = h.path().join("fleet.json");
    let mut cfg = fleet_cfg(&s, &server, h.path(), json!({}));
    cfg["credentials_path"] = json!(creds);
    std::fs::write(&cfg_file, cfg.to_string()).unwrap();
    let c = cfg_file.to_str().unwrap();

    let (code, out, err) = hap_cli(h.path(), &["--config", c, "fleet", "import"]);
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.contains("hap exec --claude-code"), "{out}");
    let got = store(&s, "refresher").read_pair().unwrap().unwrap();
    assert_eq!((got.pair.access.expose(), got.version), (A1, 1));
    // Twice: refused, nothing overwritten.
    let (code, _, err) = hap_cli(h.path(), &["--config", c, "fleet", "import"]);
    assert_eq!(code, 11, "{err}");
    assert!(err.contains("holds a login already"), "{err}");

    let (code, out, err) = hap_cli(h.path(), &["--config", c, "fleet", "status", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["version"], 1);
    assert_eq!(v["role"], "refresher");
    for secret in [A1, R1, redis_server::REFRESHER_PW] {
        assert!(!out.contains(secret) && !err.contains(secret));
    }

    // `hap status` and `hap doctor` show the authority, its version and lease, no secret.
    let (code, out, err) = hap_cli(h.path(), &["--config", c, "status"]);
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.contains("fleet authority: redis://refresher@"), "{out}");
    assert!(out.contains("login version 1"), "{out}");
    let (_, out, err) = hap_cli(h.path(), &["--config", c, "doctor", "--json"]);
    assert!(
        out.contains("\"fleet\"") && out.contains("login version 1"),
        "{out} {err}"
    );
    for secret in [A1, R1, redis_server::REFRESHER_PW] {
        assert!(!out.contains(secret) && !err.contains(secret));
    }

    // Export into another host's credentials file.
    let h2 = host(&s);
    let creds2 = h2.path().join(".claude/.credentials.json");
    cfg["credentials_path"] = json!(creds2);
    let cfg2 = h2.path().join("fleet.json");
    std::fs::write(&cfg2, cfg.to_string()).unwrap();
    let (code, out, err) = hap_cli(
        h2.path(),
        &["--config", cfg2.to_str().unwrap(), "fleet", "export"],
    );
    assert_eq!(code, 0, "{out} {err}");
    let v = common::read_json(&creds2);
    assert_eq!(v["claudeAiOauth"]["refreshToken"], R1);
    assert!(store(&s, "refresher").read_pair().unwrap().is_none());
}

// ---------------------------------------------------------------------------------------
// Replicas and failover (docs/FLEET.md): `redis_wait_replicas` makes the possibly-spent
// marker and each commit count only once that many replicas acknowledged them (Redis
// WAIT on the connection that wrote). A failover is emulated as a client sees it: the
// replica is cut off (`partition`: a SIGSTOPped replica would apply what its socket buffer
// holds once resumed), the primary is SIGKILLed and the replica, promoted, takes over its
// address.

macro_rules! primary_and_replica {
    () => {{
        let s = server!();
        match RedisServer::start_replica_of(&s) {
            Some(r) => (s, r),
            None => return,
        }
    }};
}

/// `timeout_ms`: long enough for a live replica on a loaded CI machine (its fsyncs) where
/// the WAIT must succeed; short where it must fail (a WAIT always waits its full timeout).
fn wait_cfg(
    s: &RedisServer,
    server: &FakeServer,
    home: &Path,
    replicas: u64,
    timeout_ms: u64,
) -> Value {
    fleet_cfg(
        s,
        server,
        home,
        json!({"redis_wait_replicas": replicas, "redis_wait_timeout_ms": timeout_ms,
               "redis_lease_ms": 600}),
    )
}

/// The replica's view of a hash field (redis-cli on the replica itself).
fn on(r: &RedisServer, key: &str, field: &str) -> String {
    r.cli(&["HGET", key, field])
}

/// Imports an expired login and waits until the replica has it.
fn import_expired_replicated(s: &RedisServer, rep: &RedisServer, server: &FakeServer) {
    import_expired(s, server);
    wait_for("the import to reach the replica", 10, || {
        on(rep, "hap:pair", "version") == "1"
    });
}

#[test]
fn with_wait_a_refresh_counts_once_the_replica_has_it() {
    let (s, rep) = primary_and_replica!();
    let server = FakeServer::start();
    let ha = host(&s);
    import_expired_replicated(&s, &rep, &server);
    let (v, e) = common::worker_result(spawn_in(
        ha.path(),
        &wait_cfg(&s, &server, ha.path(), 1, 5000),
        0,
    ));
    assert_eq!(v["refreshed"], true, "{v} {e}");
    assert_eq!(server.posts(), 1);
    // Read from the replica at once, no polling: the commit was WAITed for.
    assert_eq!(on(&rep, "hap:pair", "version"), "2");
    assert_eq!(
        sha6(&on(&rep, "hap:pair", "access_token")),
        v["token_sha256"].as_str().unwrap()
    );
    assert_eq!(
        on(&rep, "hap:pair", "refresh_fp"),
        on(&s, "hap:pair", "refresh_fp")
    );
    // `hap fleet status` shows the setting and what the primary reports.
    let cfg_file = ha.path().join("fleet.json");
    std::fs::write(
        &cfg_file,
        wait_cfg(&s, &server, ha.path(), 1, 5000).to_string(),
    )
    .unwrap();
    let (code, out, err) = hap_cli(
        ha.path(),
        &[
            "--config",
            cfg_file.to_str().unwrap(),
            "fleet",
            "status",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{out} {err}");
    let st: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(st["redis_wait_replicas"], 1, "{st}");
    assert_eq!(st["connected_replicas"], 1, "{st}");
    let (_, out, err) = hap_cli(
        ha.path(),
        &["--config", cfg_file.to_str().unwrap(), "doctor", "--json"],
    );
    assert!(
        out.contains("1 replicas connected, redis_wait_replicas 1"),
        "{out} {err}"
    );
}

/// The marker did not reach the replica: nothing is POSTed (a failover would lose the only
/// record that the token may be spent), the marker is taken back, the token stays valid.
#[test]
fn with_wait_a_paused_replica_stops_the_refresh_before_the_post() {
    let (s, rep) = primary_and_replica!();
    let server = FakeServer::start();
    let ha = host(&s);
    import_expired_replicated(&s, &rep, &server);
    let cfg = wait_cfg(&s, &server, ha.path(), 1, 300);
    signal(rep.pid(), libc::SIGSTOP);
    let t0 = common::now_ms();
    let (v, e) = common::worker_result(spawn_in(ha.path(), &cfg, 0));
    assert_eq!(v["error"], "HAP_STATUS_UNAVAILABLE", "{v} {e}");
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.contains("0 of 1") && msg.contains("redis_wait_replicas"),
        "{msg}"
    );
    assert!(v["retry_at_ms"].as_i64().unwrap() > t0, "{v}");
    assert_eq!(server.posts(), 0, "no POST without the replicated marker");
    assert_eq!(s.cli(&["EXISTS", "hap:posting"]), "0", "marker left behind");
    assert_eq!(on(&s, "hap:pair", "version"), "1");
    signal(rep.pid(), libc::SIGCONT);
    let cfg = wait_cfg(&s, &server, ha.path(), 1, 5000);
    let (v, e) = common::worker_result(spawn_in(ha.path(), &cfg, 0));
    assert_eq!(v["refreshed"], true, "the token was not spent: {v} {e}");
    assert_eq!(server.posts(), 1);
    assert_eq!(server.stats()["invalid_grant"], 0);
    assert_eq!(on(&rep, "hap:pair", "version"), "2");
}

/// A commit the primary took but the replica did not acknowledge is an error to the
/// caller (not durable), a replay of it is harmless and WAITs again, on any connection.
#[test]
fn a_commit_the_replica_missed_is_not_durable_and_its_replay_waits_again() {
    let (s, rep) = primary_and_replica!();
    // A WAIT that must succeed gets long enough for a loaded CI disk; one that must fail
    // waits its full timeout, so a short one.
    let live = |st: RedisStore| st.with_wait(1, 5000);
    let w = |st: RedisStore| st.with_wait(1, 200);
    let r = w(store(&s, "refresher"));
    assert_eq!(
        live(store(&s, "refresher"))
            .commit(None, &pair(A1, R1), None)
            .unwrap(),
        Commit::Written(1)
    );
    assert_eq!(on(&rep, "hap:pair", "version"), "1");
    signal(rep.pid(), libc::SIGSTOP);
    let fp1 = Secret::new(R1).fingerprint();
    let e = r.commit(Some(&fp1), &pair(A2, R2), None).unwrap_err();
    assert_eq!(e.status, Status::Unavailable, "{e}");
    assert!(
        e.message.contains("primary only") && e.message.contains("0 of 1"),
        "{e}"
    );
    assert!(!e.message.contains(A2) && !e.message.contains(R2));
    assert_eq!(r.read_pair().unwrap().unwrap().version, 2, "on the primary");
    // The replay, from a new connection (as the host's next process): the same pair, so
    // nothing new is written, and its WAIT is not fooled by a connection with no write.
    let e = w(store(&s, "refresher"))
        .commit(Some(&fp1), &pair(A2, R2), None)
        .unwrap_err();
    assert!(e.message.contains("primary only"), "{e}");
    signal(rep.pid(), libc::SIGCONT);
    assert_eq!(
        live(store(&s, "refresher"))
            .commit(Some(&fp1), &pair(A2, R2), None)
            .unwrap(),
        Commit::Written(2),
        "a replay of what Redis holds is the same version"
    );
    assert_eq!(on(&rep, "hap:pair", "version"), "2");
    // Another pair from the spent token is still refused.
    assert_eq!(
        r.commit(Some(&fp1), &pair(A3, R3), None).unwrap(),
        Commit::Moved
    );
}

/// The `committed` flags of a host's fleet journal entries (no token is read out).
fn journal_committed(home: &Path) -> Vec<bool> {
    let dir = home.join(".local/state/hap");
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".hap-journal.json"))
        .expect("a fleet journal");
    common::read_json(&file)["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["committed"].as_bool().unwrap())
        .collect()
}

/// SIGKILL the primary, promote the (cut off) replica into its address.
fn fail_over(s: &mut RedisServer, rep: &mut RedisServer) {
    s.kill9();
    rep.promote_to(s.port);
}

/// The failover of docs/FLEET.md with `redis_wait_replicas: 1`: the replica is cut off while
/// the holder's POST is in flight (its marker was WAITed for before the POST), so the
/// holder's commit reaches the old primary only. After the failover the fleet holds the
/// spent token and the marker: another host finds the marker and watches instead of
/// POSTing; the holder's host replays its journal entry into the new primary, and the
/// watcher adopts it. One POST, no invalid_grant.
#[test]
fn a_failover_with_wait_keeps_the_marker_and_the_rotating_host_repairs_the_fleet() {
    let (mut s, mut rep) = primary_and_replica!();
    let server = FakeServer::start();
    let (ha, hb) = (host(&s), host(&s));
    import_expired_replicated(&s, &rep, &server);
    server.script(json!([{"delay_ms": 1500}]));
    let a = spawn_in(ha.path(), &wait_cfg(&s, &server, ha.path(), 1, 1500), 0);
    wait_for("the holder's POST", 20, || server.posts() == 1);
    assert!(
        !on(&rep, "hap:posting", "token").is_empty(),
        "marker WAITed"
    );
    rep.partition();
    let (va, ea) = common::worker_result(a);
    // The commit was not acknowledged by the replica: the pair is served all the same,
    // and the host's journal does not count it as committed.
    assert_eq!(va["refreshed"], true, "{va} {ea}");
    assert_eq!(
        on(&s, "hap:pair", "version"),
        "2",
        "on the old primary only"
    );
    assert_eq!(journal_committed(ha.path()), vec![false]);
    fail_over(&mut s, &mut rep);
    assert_eq!(on(&rep, "hap:pair", "version"), "1", "rolled back");
    assert!(
        !on(&rep, "hap:posting", "token").is_empty(),
        "the marker survived"
    );
    let b = spawn_in(hb.path(), &wait_cfg(&rep, &server, hb.path(), 1, 1500), 0);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(server.posts(), 1, "the other host POSTed a spent token");
    // The rotating host's next process replays its journal entry.
    let (va2, ea2) = common::worker_result(spawn_in(
        ha.path(),
        &wait_cfg(&rep, &server, ha.path(), 1, 1500),
        0,
    ));
    assert_eq!(va2["token_sha256"], va["token_sha256"], "{va2} {ea2}");
    assert_eq!(va2["refreshed"], false);
    let (vb, eb) = common::worker_result(b);
    assert_eq!(vb["token_sha256"], va["token_sha256"], "{vb} {eb}");
    assert_eq!(vb["refreshed"], false);
    assert_eq!(on(&rep, "hap:pair", "version"), "2");
    let stats = server.stats();
    assert_eq!(stats["posts"], 1, "{stats}");
    assert_eq!(stats["invalid_grant"], 0, "{stats}");
}

/// The same failover without WAIT (the limit docs/FLEET.md states): the replica is cut off
/// before the refresh and misses the marker and the commit, so after the failover the next host POSTs the spent token and
/// gets `invalid_grant` (REAUTH_REQUIRED after its watch). The rotating host's next process
/// still repairs the fleet from its journal (a committed entry that rotated the token the
/// store holds is replayed), and the other host then adopts that pair. A real token server
/// may treat the spent token presented again as reuse and revoke the family: that is what
/// WAIT is for.
#[test]
fn a_failover_without_wait_rolls_back_and_the_next_host_gets_invalid_grant() {
    let (mut s, mut rep) = primary_and_replica!();
    let server = FakeServer::start();
    let (ha, hb) = (host(&s), host(&s));
    import_expired_replicated(&s, &rep, &server);
    rep.partition();
    let (va, ea) = common::worker_result(spawn_in(
        ha.path(),
        &wait_cfg(&s, &server, ha.path(), 0, 1),
        0,
    ));
    assert_eq!(va["refreshed"], true, "{va} {ea}");
    fail_over(&mut s, &mut rep);
    assert_eq!(on(&rep, "hap:pair", "version"), "1", "rolled back");
    assert_eq!(rep.cli(&["EXISTS", "hap:posting"]), "0", "no marker");
    let cfg_b = wait_cfg(&rep, &server, hb.path(), 0, 1);
    let (vb, eb) = common::worker_result(spawn_in(hb.path(), &cfg_b, 0));
    assert_eq!(vb["error"], "HAP_STATUS_REAUTH_REQUIRED", "{vb} {eb}");
    let stats = server.stats();
    assert_eq!(
        (stats["posts"].as_u64(), stats["invalid_grant"].as_u64()),
        (Some(2), Some(1)),
        "{stats}"
    );
    let (va2, ea2) = common::worker_result(spawn_in(
        ha.path(),
        &wait_cfg(&rep, &server, ha.path(), 0, 1),
        0,
    ));
    assert_eq!(va2["token_sha256"], va["token_sha256"], "{va2} {ea2}");
    assert_eq!(va2["refreshed"], false);
    assert_eq!(
        on(&rep, "hap:pair", "version"),
        "2",
        "repaired by the replay"
    );
    let (vb2, eb2) = common::worker_result(spawn_in(hb.path(), &cfg_b, 0));
    assert_eq!(vb2["token_sha256"], va["token_sha256"], "{vb2} {eb2}");
    assert_eq!(server.posts(), 2);
}

// Redis Sentinel (docs/FLEET.md, "Sentinel"): a master, a replica and sentinels
// (tests/common/sentinel.rs); hosts reach the master through `redis_sentinels` and follow a
// failover without a restart.

#[path = "common/sentinel.rs"]
mod sentinel_set;

use sentinel_set::{SentinelSet, MASTER_NAME};

macro_rules! sentinel_set {
    ($n:expr) => {
        match SentinelSet::start($n) {
            Some(s) => s,
            None => return,
        }
    };
}

/// `redis_url` with Sentinel: the master's Sentinel name in place of host:port.
fn sentinel_url(user: &str) -> String {
    format!("redis://{user}@{MASTER_NAME}/")
}

fn sentinel_store(set: &SentinelSet, pw_file: &Path) -> RedisStore {
    RedisStore::new(
        RedisConfig::new(&sentinel_url("refresher"), Some(pw_file), None, None)
            .unwrap()
            .with_sentinels(&set.sentinel_addrs(), Some(MASTER_NAME))
            .unwrap(),
    )
}

/// A simulated host of a Sentinel fleet: its own HOME and password file.
fn sentinel_host() -> tempfile::TempDir {
    let h = tempfile::tempdir().unwrap();
    std::fs::write(
        h.path().join("redis.pw"),
        format!("{}\n", redis_server::REFRESHER_PW),
    )
    .unwrap();
    h
}

fn sentinel_cfg(set: &SentinelSet, server: &FakeServer, home: &Path) -> Value {
    json!({
        "redis_url": sentinel_url("refresher"),
        "redis_sentinels": set.sentinel_addrs(),
        "redis_sentinel_master": MASTER_NAME,
        "redis_password_file": home.join("redis.pw"),
        "token_urls": [server.token_url()],
        "pool_path": null,
        "credentials_path": null,
        "refresh_skew_ms": 0,
        "lock_timeout_ms": 30000,
        "http_timeout_ms": 8000,
    })
}

/// A login minted by the fake server, imported through the sentinels; `valid_ms` from now.
fn sentinel_import(r: &RedisStore, server: &FakeServer, valid_ms: i64) {
    let p = minted(server, valid_ms);
    assert_eq!(r.commit(None, &p, None).unwrap(), Commit::Written(1));
}

/// One rotation by `n` processes on each of `hosts`: exactly one POST, one refresher,
/// everyone on the token the master now holds. Returns that token's sha.
fn sentinel_round(
    set: &SentinelSet,
    server: &FakeServer,
    hosts: &[tempfile::TempDir],
    n: usize,
    what: &str,
) -> String {
    // The stored access token expires now, on whichever node is the master.
    let past = (common::now_ms() - 1000).to_string();
    let m = set.master();
    m.cli(&["HSET", "hap:pair", "expires_at_ms", &past]);
    m.cli(&["HSET", "hap:access", "expires_at_ms", &past]);
    let posts0 = server.posts();
    let start_at = common::now_ms() + 300 + 40 * (hosts.len() * n) as i64;
    let children: Vec<_> = hosts
        .iter()
        .flat_map(|h| {
            let cfg = sentinel_cfg(set, server, h.path());
            (0..n)
                .map(|_| spawn_in(h.path(), &cfg, start_at))
                .collect::<Vec<_>>()
        })
        .collect();
    let results: Vec<_> = children.into_iter().map(common::worker_result).collect();
    let want = sha6(&m.cli(&["HGET", "hap:access", "access_token"]));
    let mut refreshed = 0;
    for (v, err) in &results {
        assert_eq!(v["token_sha256"], want.as_str(), "{what}: {v} {err}");
        refreshed += usize::from(v["refreshed"] == true);
    }
    assert_eq!(server.posts() - posts0, 1, "{what}: one POST per rotation");
    assert_eq!(refreshed, 1, "{what}: one process refreshed");
    want
}

/// Hosts refresh through the sentinels; then `SENTINEL FAILOVER` (the replica becomes the
/// master, the old master its replica), and the next rotation is one POST whose pair is
/// written on the new master; then the new master is SIGKILLed (a real failover: the
/// sentinels notice it down and promote the other node) and the next rotation again.
/// Nothing lost (the replica had each pair before the failover), no `invalid_grant`, the
/// version continues.
#[test]
fn sentinel_hosts_follow_a_failover_one_post_per_rotation_nothing_lost() {
    let mut set = sentinel_set!(1);
    let server = FakeServer::start();
    let hosts = vec![sentinel_host(), sentinel_host()];
    let admin = sentinel_host();
    sentinel_import(
        &sentinel_store(&set, &admin.path().join("redis.pw")),
        &server,
        -1000,
    );
    let m0 = set.master_port();
    sentinel_round(&set, &server, &hosts, 2, "before the failover");
    set.wait_replicated();

    let m1 = set.failover();
    assert_ne!(m1, m0);
    let sha = sentinel_round(&set, &server, &hosts, 2, "after SENTINEL FAILOVER");
    let new = set.node(m1);
    assert_eq!(new.cli(&["HGET", "hap:pair", "version"]), "3");
    assert_eq!(sha6(&new.cli(&["HGET", "hap:access", "access_token"])), sha);

    // The real thing: the master dies; the sentinels promote the replica (the old master).
    set.wait_replicated();
    set.node_mut(m1).kill9();
    let m2 = set.wait_new_master(m1);
    assert_eq!(m2, m0);
    sentinel_round(&set, &server, &hosts, 2, "after the master was SIGKILLed");
    assert_eq!(set.node(m2).cli(&["HGET", "hap:pair", "version"]), "4");
    let stats = server.stats();
    assert_eq!(stats["invalid_grant"], 0, "{stats}");
    assert_eq!(stats["posts"], 3, "{stats}");
}

/// A long-lived process keeps serving its valid cached token across a failover, and its
/// subscription moves to the new master: a rotation committed there (by another host)
/// reaches it without a restart.
#[test]
fn sentinel_a_long_lived_process_keeps_serving_and_its_subscription_moves() {
    let set = sentinel_set!(1);
    let server = FakeServer::start();
    let (ha, hb) = (sentinel_host(), sentinel_host());
    let r = sentinel_store(&set, &ha.path().join("redis.pw"));
    sentinel_import(&r, &server, 3_600_000);
    let first = sha6(&set.master().cli(&["HGET", "hap:access", "access_token"]));
    let (mut reader, out) = start_reader(
        ha.path(),
        &sentinel_cfg(&set, &server, ha.path()),
        60_000,
        &["100"],
    );
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let collector = {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for l in std::io::BufRead::lines(out) {
                let Ok(l) = l else { break };
                lines
                    .lock()
                    .unwrap()
                    .push(serde_json::from_str(&l).unwrap());
            }
        })
    };
    let old = set.master_port();
    // Subscribed (from its second resolve on) on the old master.
    wait_for("the reader's subscription", 20, || {
        set.node(old)
            .cli(&["PUBSUB", "NUMSUB", "hap:rotated"])
            .ends_with('1')
    });
    set.wait_replicated();
    let new = set.failover();
    // Its subscription is on the new master now, and no longer on the old one.
    wait_for("the subscription to move to the new master", 20, || {
        set.node(new)
            .cli(&["PUBSUB", "NUMSUB", "hap:rotated"])
            .ends_with('1')
    });
    assert!(set
        .node(old)
        .cli(&["PUBSUB", "NUMSUB", "hap:rotated"])
        .ends_with('0'));
    // Another host commits a rotation on the new master (through the sentinels: a
    // compare-and-set on the refresh token the master holds, which publishes it).
    let n0 = lines.lock().unwrap().len();
    let rb = sentinel_store(&set, &hb.path().join("redis.pw"));
    let held = rb.read_pair().unwrap().unwrap();
    let spent = held.pair.refresh.as_ref().unwrap().fingerprint();
    assert_eq!(
        rb.commit(Some(&spent), &pair(A2, R2), None).unwrap(),
        Commit::Written(2)
    );
    let rotated = sha6(A2);
    wait_for("the reader to serve the rotated token", 20, || {
        lines.lock().unwrap()[n0..]
            .iter()
            .any(|v| v["sha"].as_str().is_some_and(|s| s.starts_with(&rotated)))
    });
    let _ = reader.kill();
    let _ = reader.wait();
    collector.join().unwrap();
    let lines = lines.lock().unwrap();
    // Served throughout: a failover with a valid cached token is no error.
    for v in lines.iter() {
        let sha = v["sha"].as_str().unwrap_or_else(|| panic!("{v}"));
        assert!(sha.starts_with(&first) || sha.starts_with(&rotated), "{v}");
    }
    assert_eq!(server.posts(), 0);
}

/// One stopped sentinel (SIGSTOP: it accepts connections and never answers) does not hang
/// hap: the next sentinel answers within the I/O timeout. The redis crate's own Sentinel
/// client has no timeout there and blocked forever.
#[test]
fn sentinel_a_stopped_sentinel_is_skipped_not_waited_for() {
    let set = sentinel_set!(2);
    let pw = sentinel_host();
    let master = format!("127.0.0.1:{}", set.master_port());
    signal(set.sentinels[0].pid(), libc::SIGSTOP);
    let r = sentinel_store(&set, &pw.path().join("redis.pw"));
    let t = Instant::now();
    assert!(r.read_pair().unwrap().is_none());
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(r.master_addr(), Some(master));
    signal(set.sentinels[0].pid(), libc::SIGCONT);
}

/// No sentinel reachable: UNAVAILABLE with a retry time, the password nowhere, and a host
/// with an expired token fails closed (no POST).
#[test]
fn sentinel_unreachable_sentinels_fail_closed() {
    let server = FakeServer::start();
    let h = sentinel_host();
    let dead: Vec<String> = (0..2)
        .map(|_| {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("127.0.0.1:{}", l.local_addr().unwrap().port())
        })
        .collect();
    let cfg = RedisConfig::new(
        &sentinel_url("refresher"),
        Some(&h.path().join("redis.pw")),
        None,
        None,
    )
    .unwrap()
    .with_sentinels(&dead, Some(MASTER_NAME))
    .unwrap();
    assert!(!format!("{cfg:?}").contains(redis_server::REFRESHER_PW));
    let e = RedisStore::new(cfg).read_pair().unwrap_err();
    assert_eq!(e.status, Status::Unavailable, "{e}");
    assert!(e.retry_at_ms.is_some());
    assert!(
        e.message.contains(&dead[0]) && e.message.contains(&dead[1]),
        "{e}"
    );
    assert!(!format!("{e} {e:?}").contains(redis_server::REFRESHER_PW));
    let mut c = json!({
        "redis_url": sentinel_url("refresher"),
        "redis_sentinels": dead,
        "redis_sentinel_master": MASTER_NAME,
        "redis_password_file": h.path().join("redis.pw"),
        "token_urls": [server.token_url()],
        "pool_path": null,
        "credentials_path": null,
    });
    let (v, err) = common::worker_result(spawn_in(h.path(), &c, 0));
    assert_eq!(v["error"], "HAP_STATUS_UNAVAILABLE", "{v} {err}");
    assert!(!format!("{v} {err}").contains(redis_server::REFRESHER_PW));
    assert_eq!(server.posts(), 0, "no refresh without the lease");
    // `hap fleet status` says so too, without the password.
    c["redis_sentinels"] = json!(["127.0.0.1:1"]);
    let f = h.path().join("fleet.json");
    std::fs::write(&f, c.to_string()).unwrap();
    let (code, out, err) = hap_cli(
        h.path(),
        &["--config", f.to_str().unwrap(), "fleet", "status"],
    );
    assert_ne!(code, 0, "{out} {err}");
    assert!(err.contains("127.0.0.1:1"), "{err}");
    assert!(!format!("{out}{err}").contains(redis_server::REFRESHER_PW));
}

/// Contradictory or half Sentinel configs are refused at open, with what to write.
#[test]
fn sentinel_config_errors_say_what_to_write() {
    let base = json!({
        "redis_url": sentinel_url("refresher"),
        "redis_sentinels": ["127.0.0.1:26379"],
        "redis_sentinel_master": MASTER_NAME,
        "pool_path": null,
        "credentials_path": null,
    });
    let open = |edit: &dyn Fn(&mut Value)| {
        let mut c = base.clone();
        edit(&mut c);
        let e = hap::Pool::open_json(Some(&c.to_string()))
            .err()
            .unwrap_or_else(|| panic!("{c} must be refused"));
        assert_eq!(e.status, Status::InvalidArgument, "{e}");
        e.message
    };
    let m = open(&|c| c["redis_url"] = json!("redis://refresher@127.0.0.1:6379/0"));
    assert!(m.contains("redis://refresher@hapm/0"), "{m}");
    let m = open(&|c| c["redis_url"] = json!("redis://refresher@hapm:6379/"));
    assert!(m.contains("without a port"), "{m}");
    let m = open(&|c| {
        c.as_object_mut().unwrap().remove("redis_sentinel_master");
    });
    assert!(m.contains("'redis_sentinel_master'"), "{m}");
    let m = open(&|c| {
        c.as_object_mut().unwrap().remove("redis_sentinels");
    });
    assert!(m.contains("'redis_sentinels'"), "{m}");
    let m = open(&|c| {
        c.as_object_mut().unwrap().remove("redis_url");
    });
    assert!(m.contains("'redis_url'"), "{m}");
    // An empty list is no Sentinel (what to_json writes): with a master name, a half config.
    let m = open(&|c| c["redis_sentinels"] = json!([]));
    assert!(m.contains("needs 'redis_sentinels'"), "{m}");
    for bad in [json!("127.0.0.1:26379"), json!(["nohost"]), json!(["h:0"])] {
        let m = open(&|c| c["redis_sentinels"] = bad.clone());
        assert!(m.contains("host:port"), "{m}");
    }
}

/// `hap fleet status` and `hap doctor` show the sentinels and the master they name now,
/// never a secret; after a failover, the new master.
#[test]
fn sentinel_status_and_doctor_show_the_sentinels_and_the_master() {
    let set = sentinel_set!(1);
    let server = FakeServer::start();
    let h = sentinel_host();
    sentinel_import(
        &sentinel_store(&set, &h.path().join("redis.pw")),
        &server,
        3_600_000,
    );
    let f = h.path().join("fleet.json");
    std::fs::write(&f, sentinel_cfg(&set, &server, h.path()).to_string()).unwrap();
    let c = f.to_str().unwrap();
    let status = || {
        let (code, out, err) = hap_cli(h.path(), &["--config", c, "fleet", "status", "--json"]);
        assert_eq!(code, 0, "{out} {err}");
        assert!(!format!("{out}{err}").contains(redis_server::REFRESHER_PW));
        serde_json::from_str::<Value>(out.trim()).unwrap()
    };
    // A consumer's ACL user (with +role) reaches the master through the sentinels too.
    let consumer_pw = h.path().join("consumer.pw");
    std::fs::write(&consumer_pw, format!("{}\n", redis_server::CONSUMER_PW)).unwrap();
    let consumer = RedisStore::new(
        RedisConfig::new(&sentinel_url("consumer"), Some(&consumer_pw), None, None)
            .unwrap()
            .with_sentinels(&set.sentinel_addrs(), Some(MASTER_NAME))
            .unwrap(),
    );
    assert_eq!(consumer.read_access().unwrap().unwrap().version, 1);
    let v = status();
    assert_eq!(v["redis_sentinels"], json!(set.sentinel_addrs()));
    assert_eq!(v["redis_sentinel_master"], MASTER_NAME);
    assert_eq!(v["master_addr"], format!("127.0.0.1:{}", set.master_port()));
    assert_eq!(v["version"], 1);
    let (_, out, err) = hap_cli(h.path(), &["--config", c, "fleet", "status"]);
    assert!(
        out.contains(&format!("sentinels: {}", set.sentinel_addrs()[0])),
        "{out} {err}"
    );
    let (_, out, err) = hap_cli(h.path(), &["--config", c, "doctor", "--json"]);
    assert!(out.contains("as master hapm"), "{out} {err}");
    assert!(!format!("{out}{err}").contains(redis_server::REFRESHER_PW));
    set.wait_replicated();
    let new = set.failover();
    assert_eq!(status()["master_addr"], format!("127.0.0.1:{new}"));
}

/// A node demoted behind a connection hap holds answers writes with READONLY: hap drops
/// that connection, asks the sentinels again and retries once. Sentinel's own failover
/// closes the clients of the nodes it reconfigures; an operator's switchover with Redis's
/// `FAILOVER` command does not, and neither does `REPLICAOF`.
#[test]
fn sentinel_a_write_on_a_demoted_master_is_retried_on_the_new_one() {
    let set = sentinel_set!(1);
    let h = sentinel_host();
    let r = sentinel_store(&set, &h.path().join("redis.pw"));
    // The store's connection is to the master now.
    assert_eq!(
        r.commit(None, &pair(A1, R1), None).unwrap(),
        Commit::Written(1)
    );
    let old = set.master_port();
    let new = set
        .nodes
        .iter()
        .map(|n| n.port)
        .find(|&p| p != old)
        .unwrap();
    set.wait_replicated();
    assert_eq!(
        set.node(old)
            .cli(&["FAILOVER", "TO", "127.0.0.1", &new.to_string()]),
        "OK"
    );
    wait_for("the switchover", 20, || {
        set.node(new).cli(&["ROLE"]).starts_with("master")
            && set.node(old).cli(&["ROLE"]).starts_with("slave")
    });
    // Until the sentinels know, they name the old master, a replica now: a new connection
    // checks ROLE and refuses it (fail closed) rather than read a node that takes no write.
    let fresh = sentinel_store(&set, &h.path().join("redis.pw"));
    let e = fresh.read_pair().unwrap_err();
    assert_eq!(e.status, Status::Unavailable, "{e}");
    assert!(e.message.contains("not a master"), "{e}");
    // The operator points the sentinels at the new master.
    let s = &set.sentinels[0];
    assert_eq!(s.cli(&["SENTINEL", "REMOVE", MASTER_NAME]), "OK");
    let port = new.to_string();
    let monitor = ["SENTINEL", "MONITOR", MASTER_NAME, "127.0.0.1", &port, "1"];
    assert_eq!(s.cli(&monitor), "OK");
    s.cli(&["SENTINEL", "SET", MASTER_NAME, "auth-user", "sentinel"]);
    s.cli(&[
        "SENTINEL",
        "SET",
        MASTER_NAME,
        "auth-pass",
        sentinel_set::SENTINEL_USER_PW,
    ]);
    assert_eq!(
        r.commit(Some(&Secret::new(R1).fingerprint()), &pair(A2, R2), None)
            .unwrap(),
        Commit::Written(2)
    );
    assert_eq!(set.node(new).cli(&["HGET", "hap:pair", "version"]), "2");
    assert_eq!(r.master_addr(), Some(format!("127.0.0.1:{new}")));
}
