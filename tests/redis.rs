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
        r.commit(Some(&Secret::new(R1)), &pair(A2, R2), Some(&scopes))
            .unwrap(),
        Commit::Written(2)
    );
    // A late holder that also spent R1 (it cannot have: single-use) or a stale writer:
    // refused, and the stored pair is untouched.
    assert_eq!(
        r.commit(Some(&Secret::new(R1)), &pair(A3, R3), None)
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
        .commit(Some(&Secret::new(R1)), &pair(A2, R2), None)
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
    r.mark_posting(&fp1, 1234).unwrap();
    let p = r.posting().unwrap().unwrap();
    assert_eq!((p.token_fp.as_str(), p.at_ms), (fp1.as_str(), 1234));
    // Clearing another token's marker leaves it.
    r.clear_posting("sha256:0000000000000000").unwrap();
    assert!(r.posting().unwrap().is_some());
    // The commit of the pair that replaced R1 ends it.
    r.commit(Some(&Secret::new(R1)), &pair(A2, R2), None)
        .unwrap();
    assert!(r.posting().unwrap().is_none());
    // A refused commit does not.
    r.mark_posting(&Secret::new(R2).fingerprint(), 1).unwrap();
    assert_eq!(
        r.commit(Some(&Secret::new(R1)), &pair(A3, R3), None)
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
    let sub = Subscription::start(cfg).unwrap();
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
            Some(&Secret::new(from)),
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
    r.commit(Some(&Secret::new(R1)), &pair(A2, R2), None)
        .unwrap();
    s.restart(); // SIGKILL, then start on the same directory
                 // The store reconnects by itself after the server closed its connection.
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
