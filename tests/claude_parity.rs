//! Issue 12: hap beside every release of the real Claude Code. What each test mirrors is in
//! interop/claude-code/FINDINGS.md (the section named); the race against the real client is
//! interop/claude-code/run.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

fn cfg(h: &Home, s: &FakeServer, extra: Value) -> Value {
    let mut c = h.config(s, "");
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

/// `<realpath(dir)>.lock` of the home's Claude Code directory: `<tmp>/claude.lock`.
fn claude_lock(h: &Home) -> PathBuf {
    let dir = std::fs::canonicalize(h.creds_path().parent().unwrap()).unwrap();
    dir.with_file_name("claude.lock")
}

fn mtime(p: &Path) -> SystemTime {
    std::fs::metadata(p).unwrap().modified().unwrap()
}

// --- Item 1: every release's locks (FINDINGS.md §3, §3b, §11) -------------------------------

/// 2.1.126 and older take only `<realpath(dir)>.lock`: held, hap must not POST.
#[test]
fn a_held_claude_dir_lock_means_no_post() {
    let s = FakeServer::start();
    let h = Home::new();
    h.write_creds(A1, R1, now_ms() - 1000);
    let lock = claude_lock(&h);
    std::fs::create_dir(&lock).unwrap();
    let pool = open_with(cfg(&h, &s, json!({"lock_timeout_ms": 400})));
    let e = resolve(&pool).unwrap_err();
    assert_eq!(e.status, hap::Status::LockTimeout, "{e}");
    assert_eq!(s.posts(), 0);
    assert!(lock.is_dir(), "someone else's lock is never removed");
    assert_eq!(h.creds_access(), A1);
}

/// Both directories are held, in Claude Code's order, for the whole POST, touched every
/// ≤ 5 s (2.1.112 calls `~/.claude.lock` stale after 10 s), and released after it.
#[test]
fn both_claude_locks_are_held_and_heartbeaten_through_a_slow_post() {
    let s = FakeServer::start();
    let h = Home::new();
    h.write_creds(A1, R1, now_ms() - 1000);
    s.script(json!([{"delay_ms": 6500}]));
    let lock = claude_lock(&h);
    let refresh_lock = h.creds_path().with_file_name(".oauth_refresh.lock");
    let storage = h.creds_path().with_file_name(".storage-write.lock");
    let c = cfg(&h, &s, json!({"http_timeout_ms": 15000}));
    let t = std::thread::spawn(move || resolve(&open_with(c)).map(|t| t.refreshed));
    let t0 = Instant::now();
    while s.posts() == 0 {
        assert!(t0.elapsed() < Duration::from_secs(10), "no POST");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        lock.is_dir() && refresh_lock.is_dir(),
        "both held while POSTing"
    );
    assert!(
        !storage.exists(),
        "the storage-write lock only around the write"
    );
    let first = mtime(&lock);
    std::thread::sleep(Duration::from_millis(5600));
    assert!(lock.is_dir(), "still held");
    assert!(mtime(&lock) > first, "heartbeat within 5 s");
    assert!(
        SystemTime::now().duration_since(mtime(&lock)).unwrap() < Duration::from_secs(6),
        "fresh by 2.1.112's 10 s rule"
    );
    assert!(t.join().unwrap().unwrap());
    assert!(!lock.exists() && !refresh_lock.exists(), "released");
    assert!(!storage.exists());
    assert_eq!(s.posts(), 1);
}

/// `<realpath(dir)>.lock`: a config directory reached through a symlink is locked where
/// Claude Code locks it, beside the directory the link resolves to.
#[test]
fn the_claude_dir_lock_is_beside_the_resolved_directory() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("real")).unwrap();
    std::os::unix::fs::symlink("real", d.path().join("link")).unwrap();
    let f =
        hap::internals::credentials::CredentialsFile::new(d.path().join("link/.credentials.json"));
    let real = std::fs::canonicalize(d.path()).unwrap();
    assert_eq!(
        f.refresh_lock_dirs(),
        [
            d.path().join("link/.oauth_refresh.lock"),
            real.join("real.lock")
        ]
    );
}

/// Claude Code's save after its POST runs under `.storage-write.lock`: hap's write waits
/// for it, and the pair it got is kept and written once the lock is free.
#[test]
fn the_credentials_write_waits_for_the_storage_write_lock() {
    let s = FakeServer::start();
    let h = Home::new();
    h.write_creds(A1, R1, now_ms() - 1000);
    let storage = h.creds_path().with_file_name(".storage-write.lock");
    std::fs::create_dir(&storage).unwrap();
    let c = cfg(&h, &s, json!({}));
    let t = std::thread::spawn(move || resolve(&open_with(c)).map(|t| t.access_token));
    let t0 = Instant::now();
    while s.posts() == 0 {
        assert!(t0.elapsed() < Duration::from_secs(10), "no POST");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(h.creds_access(), A1, "not written while the lock is held");
    std::fs::remove_dir(&storage).unwrap();
    let served = t.join().unwrap().unwrap();
    assert_ne!(served.expose(), A1);
    assert_eq!(
        h.creds_access(),
        served.expose(),
        "written after the release"
    );
    assert!(!storage.exists());
    assert_eq!(h.creds()["claudeAiOauth"]["subscriptionType"], "max");
}

/// A `.storage-write.lock` left by a killed writer is stale after 15 s, not 60.
#[test]
fn a_stale_storage_write_lock_is_taken_over() {
    let s = FakeServer::start();
    let h = Home::new();
    h.write_creds(A1, R1, now_ms() - 1000);
    let storage = h.creds_path().with_file_name(".storage-write.lock");
    std::fs::create_dir(&storage).unwrap();
    std::fs::File::open(&storage)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(20))
        .unwrap();
    let t = resolve(&open_with(cfg(&h, &s, json!({})))).unwrap();
    assert!(t.refreshed);
    assert_eq!(h.creds_access(), t.access_token.expose());
    assert!(!storage.exists());
}

/// 2.1.126 and older write the file in place (truncate, then write): a read between the two
/// is not a corrupt file (one hap process in 168 got `STORE_CORRUPT` in the race).
#[test]
fn a_file_being_rewritten_in_place_is_read_once_it_is_whole() {
    let s = FakeServer::start();
    let h = Home::new();
    h.write_creds(A1, R1, now_ms() + 3_600_000);
    let whole = std::fs::read(h.creds_path()).unwrap();
    let path = h.creds_path();
    // Truncated, and half written: what a reader sees mid-writeFileSync.
    std::fs::write(&path, &whole[..whole.len() / 2]).unwrap();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        std::fs::write(&path, &whole).unwrap();
    });
    let t = resolve(&open_with(cfg(&h, &s, json!({}))));
    writer.join().unwrap();
    assert_eq!(t.unwrap().access_token.expose(), A1);
    assert_eq!(s.posts(), 0);
}

/// A file that stays unparseable is still reported, and left exactly as it was.
#[test]
fn a_truly_corrupt_file_is_reported_and_left_alone() {
    let s = FakeServer::start();
    let h = Home::new();
    std::fs::create_dir_all(h.creds_path().parent().unwrap()).unwrap();
    let bytes = b"{\"claudeAiOauth\": {\"accessToken\": \"sk-ant-oat01-fa";
    std::fs::write(h.creds_path(), bytes).unwrap();
    let c = cfg(&h, &s, json!({})).to_string();
    let e = hap::Pool::open_json(Some(&c))
        .and_then(|p| resolve(&p))
        .unwrap_err();
    assert_eq!(e.status, hap::Status::StoreCorrupt, "{e}");
    assert_eq!(std::fs::read(h.creds_path()).unwrap(), bytes);
    assert_eq!(s.posts(), 0);
}

// --- Item 2: never release a lock while a token may be spent (FINDINGS.md §7, §11) ---------

/// Claude Code's timings: POST timeout 30 s, refresh 5 minutes before expiry, and a lock wait
/// past its longest legitimate hold (~40 s).
#[test]
fn defaults_match_claude_codes_timings() {
    let c = hap::Config::from_json_str(Some(r#"{"pool_path": null}"#)).unwrap();
    assert!(c.http_timeout_ms >= 30_000, "{}", c.http_timeout_ms);
    assert_eq!(c.refresh_skew_ms, 300_000);
    assert!(c.lock_timeout_ms >= 40_000, "{}", c.lock_timeout_ms);
    assert!(c.lock_timeout_ms > c.http_timeout_ms);
}

/// A POST that timed out after it went out may have spent the token: no process POSTs that
/// token again (each answers `UNAVAILABLE` with `retry_at_ms`, the locks released), and the
/// pair another writer (Claude Code) saves is adopted as soon as it is in the store.
#[test]
fn a_post_timed_out_after_sending_is_possibly_spent() {
    let s = FakeServer::start();
    let h = Home::new();
    h.write_creds(A1, R1, now_ms() - 1000);
    s.script(json!([{"delay_ms": 2500}]));
    let c = cfg(&h, &s, json!({"http_timeout_ms": 500}));
    let e = resolve(&open_with(c.clone())).unwrap_err();
    assert_eq!(e.status, hap::Status::Unavailable, "{e}");
    assert!(e.message.contains("may have spent"), "{}", e.message);
    assert!(e.retry_at_ms.is_some());
    assert_eq!(s.posts(), 1);
    // Other processes, while the late answer is still on its way and after it came.
    for _ in 0..2 {
        let e = resolve(&open_with(c.clone())).unwrap_err();
        assert_eq!(e.status, hap::Status::Unavailable, "{e}");
        assert!(e.retry_at_ms.is_some());
        std::thread::sleep(Duration::from_millis(1500));
    }
    assert_eq!(s.posts(), 1, "the possibly spent token was not POSTed again");
    assert_eq!(h.creds_access(), A1, "nothing blanked");
    // Claude Code saves the pair it got: adopted at once, no POST.
    let mut v = h.creds();
    v["claudeAiOauth"]["accessToken"] = A2.into();
    v["claudeAiOauth"]["refreshToken"] = R2.into();
    v["claudeAiOauth"]["expiresAt"] = (now_ms() + 3_600_000).into();
    write_json(&h.creds_path(), &v);
    let t = resolve(&open_with(c)).unwrap();
    assert_eq!(t.access_token.expose(), A2);
    assert!(!t.refreshed);
    assert_eq!(s.posts(), 1);
}
