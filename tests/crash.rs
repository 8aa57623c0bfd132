//! Crash recovery: a process SIGKILLed at each point of the refresh transaction, then a
//! fresh process. Needs `--features fault-injection` (the README's test command sets it).
#![cfg(feature = "fault-injection")]

mod common;
use common::*;
use serde_json::json;

fn killed_then_recovered(point: &str) -> (FakeServer, Home, serde_json::Value) {
    let s = FakeServer::start();
    let h = Home::new();
    h.write_creds(A1, R1, now_ms() - 1000);
    let cfg = h.config(&s, "");
    let (v, _) = worker_result(spawn_worker(&cfg, 0, &[("HAP_FAULT", point)]));
    assert_eq!(
        v,
        serde_json::Value::Null,
        "the worker died at {point} before printing"
    );
    assert_eq!(s.posts(), 1);
    // Whatever instant it died at, the store parses and kept every foreign key.
    let c = h.creds();
    assert_eq!(c["claudeAiOauth"]["subscriptionType"], "max");
    assert_eq!(c["mcpOAuth"], json!({"keep": "me"}));
    let (after, err) = worker_result(spawn_worker(&cfg, 0, &[]));
    assert!(after["token_sha256"].is_string(), "{after} {err}");
    (s, h, after)
}

#[test]
fn killed_after_journal_write_the_next_process_commits_the_pair() {
    let (s, h, after) = killed_then_recovered("after_journal");
    assert_eq!(
        s.posts(),
        1,
        "no second POST: the journalled pair was committed"
    );
    assert_eq!(after["refreshed"], false);
    assert_ne!(h.creds_access(), A1);
}

#[test]
fn killed_mid_write_of_the_credentials_file_leaves_the_old_file_and_recovers() {
    let (s, h, _) = killed_then_recovered("mid_write:.credentials.json");
    assert_eq!(s.posts(), 1);
    assert_ne!(h.creds_access(), A1);
}

#[test]
fn killed_after_the_store_write_nothing_is_lost() {
    let (s, _, after) = killed_then_recovered("after_store_write");
    assert_eq!(s.posts(), 1);
    assert_eq!(after["refreshed"], false);
}

#[test]
fn killed_after_commit_with_claude_code_lock_held_is_taken_over_at_once() {
    // The dead process never released .oauth_refresh.lock; its owner file says so.
    let s = FakeServer::start();
    let h = Home::new();
    h.write_creds(A1, R1, now_ms() - 1000);
    let cfg = h.config(&s, "");
    let (v, _) = worker_result(spawn_worker(&cfg, 0, &[("HAP_FAULT", "after_commit")]));
    assert_eq!(v, serde_json::Value::Null);
    assert!(h
        .creds_path()
        .with_file_name(".oauth_refresh.lock")
        .exists());
    h.write_creds(&h.creds_access(), R2, now_ms() - 1000);
    let t0 = std::time::Instant::now();
    let (after, err) = worker_result(spawn_worker(&cfg, 0, &[]));
    assert_eq!(after["refreshed"], true, "{after} {err}");
    assert!(t0.elapsed() < std::time::Duration::from_secs(10));
    assert!(!h
        .creds_path()
        .with_file_name(".oauth_refresh.lock")
        .exists());
}

#[test]
fn killed_before_the_journal_is_durable_loses_the_session_and_says_so() {
    // The one window nothing can cover: the server spent the token and the process died
    // before writing anything. hap must not blank or corrupt anything, and must report it.
    let s = FakeServer::start();
    let h = Home::new();
    h.write_creds(A1, R1, now_ms() - 1000);
    let cfg = h.config(&s, "");
    let (v, _) = worker_result(spawn_worker(
        &cfg,
        0,
        &[("HAP_FAULT", "after_token_response")],
    ));
    assert_eq!(v, serde_json::Value::Null);
    let before = std::fs::read(h.creds_path()).unwrap();
    let (after, _) = worker_result(spawn_worker(&cfg, 0, &[]));
    assert_eq!(after["error"], "HAP_STATUS_REAUTH_REQUIRED");
    assert_eq!(std::fs::read(h.creds_path()).unwrap(), before);
}
