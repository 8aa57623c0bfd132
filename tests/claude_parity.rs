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
    assert_eq!(
        s.posts(),
        1,
        "the possibly spent token was not POSTed again"
    );
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

// --- Item 3: request parity and write-back (FINDINGS.md §4, §5) -----------------------------

/// The fake token server with `--log-bodies`: each POST's raw body in `/_admin/stats`.
struct BodyServer {
    child: std::process::Child,
    base: String,
}

impl BodyServer {
    fn start() -> BodyServer {
        use std::io::BufRead;
        let mut child = std::process::Command::new("python3")
            .arg(repo().join("testing/fake_token_server.py"))
            .args(["--exit-on-stdin-eof", "--log-bodies"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs the fake token server");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        BodyServer {
            child,
            base: line.trim().to_string(),
        }
    }

    fn bodies(&self) -> Vec<String> {
        let v: Value = ureq::get(&format!("{}/_admin/stats", self.base))
            .call()
            .unwrap()
            .into_json()
            .unwrap();
        v["log"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["body"].as_str().map(str::to_string))
            .collect()
    }
}

impl Drop for BodyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// hap's POST body for each login shape equals, byte for byte, the one Claude Code 2.1.328
/// sent for it (captured by `interop/claude-code/run --capture-dir`); headers (User-Agent:
/// hap's own) aside.
#[test]
fn the_refresh_body_equals_claude_codes_for_every_captured_login() {
    let dir = repo().join("interop/claude-code/fixtures");
    let mut compared = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.starts_with("2.1.328-") {
            continue;
        }
        let fixture = read_json(&path);
        let s = BodyServer::start();
        let h = Home::new();
        write_json(&h.creds_path(), &fixture["login"]);
        let c = json!({
            "pool_path": null,
            "credentials_path": h.creds_path(),
            "token_urls": [format!("{}/v1/oauth/token", s.base)],
        });
        let t = resolve(&open_with(c)).unwrap();
        assert!(t.refreshed, "{name}");
        let bodies = s.bodies();
        assert_eq!(bodies.len(), 1, "{name}");
        assert_eq!(
            bodies[0],
            fixture["claude_code_request"]["body"].as_str().unwrap(),
            "{name}"
        );
        compared += 1;
    }
    assert_eq!(compared, 5, "the five captured login shapes");
}

/// What the answer says besides the pair is kept where Claude Code keeps it; `expiresAt`
/// and `scopes` are written back; every other key survives.
#[test]
fn the_answer_is_written_back_where_claude_code_keeps_it() {
    let s = FakeServer::start();
    let h = Home::new();
    h.write_creds(A1, R1, now_ms() - 1000);
    s.script(json!([{"status": 200, "body": {
        "token_type": "Bearer",
        "access_token": A2,
        "refresh_token": R2,
        "expires_in": 28800,
        "refresh_token_expires_in": 2_592_000,
        "scope": "user:inference user:profile user:sessions:claude_code",
        "account": {"uuid": "00000000-0000-4000-8000-0000000000a1", "email_address": "fake@example.invalid"},
        "organization": {"uuid": "00000000-0000-4000-8000-0000000000b2"}
    }}]));
    let before = now_ms();
    let t = resolve(&open_with(cfg(&h, &s, json!({})))).unwrap();
    assert_eq!(t.access_token.expose(), A2);
    let o = &h.creds()["claudeAiOauth"];
    assert_eq!(o["refreshToken"], R2);
    let at = o["expiresAt"].as_i64().unwrap();
    assert!(
        at >= before + 28_800_000 && at <= now_ms() + 28_800_000,
        "{at}"
    );
    assert_eq!(
        o["scopes"],
        json!([
            "user:inference",
            "user:profile",
            "user:sessions:claude_code"
        ])
    );
    let rt = o["refreshTokenExpiresAt"].as_i64().unwrap();
    assert!(
        rt >= before + 2_592_000_000 && rt <= now_ms() + 2_592_000_000,
        "{rt}"
    );
    assert_eq!(o["accountUuid"], "00000000-0000-4000-8000-0000000000a1");
    assert_eq!(
        o["organizationUuid"],
        "00000000-0000-4000-8000-0000000000b2"
    );
    assert_eq!(o["subscriptionType"], "max");
    assert_eq!(o["rateLimitTier"], "default_claude_max_20x");
    assert_eq!(h.creds()["mcpOAuth"], json!({"keep": "me"}));
    assert!(
        !h.creds().to_string().contains("fake@example"),
        "no email in the file"
    );
}

/// A stored `refreshTokenExpiresAt` is only ever brought forward (Claude Code's `oco()`),
/// and stored account ids are carried over, never replaced.
#[test]
fn stored_refresh_expiry_and_account_ids_are_kept() {
    let s = FakeServer::start();
    let h = Home::new();
    h.write_creds(A1, R1, now_ms() - 1000);
    let mut v = h.creds();
    let soon = now_ms() + 86_400_000;
    v["claudeAiOauth"]["refreshTokenExpiresAt"] = soon.into();
    v["claudeAiOauth"]["accountUuid"] = "stored-account".into();
    write_json(&h.creds_path(), &v);
    s.script(json!([{"status": 200, "body": {
        "access_token": A2, "refresh_token": R2, "expires_in": 3600,
        "refresh_token_expires_in": 2_592_000,
        "account": {"uuid": "00000000-0000-4000-8000-0000000000a1"}
    }}]));
    resolve(&open_with(cfg(&h, &s, json!({})))).unwrap();
    let o = &h.creds()["claudeAiOauth"];
    assert_eq!(o["refreshTokenExpiresAt"], soon);
    assert_eq!(o["accountUuid"], "stored-account");
}

/// A login without `expiresAt` is served as is and refreshed on its first 401, never taken
/// for logged out (Claude Code's `DD()` compares `undefined` as not expired).
#[test]
fn a_login_without_expires_at_is_served_and_refreshed_on_a_401() {
    let s = FakeServer::start();
    let h = Home::new();
    h.write_creds(A1, R1, 0);
    let mut v = h.creds();
    v["claudeAiOauth"]
        .as_object_mut()
        .unwrap()
        .remove("expiresAt");
    write_json(&h.creds_path(), &v);
    let pool = open_with(cfg(&h, &s, json!({})));
    let t = resolve(&pool).unwrap();
    assert_eq!(t.access_token.expose(), A1);
    assert_eq!(s.posts(), 0);
    let f = hap::Failure::from_json(Some(
        &json!({"credential_id": t.credential_id, "status_code": 401}).to_string(),
    ))
    .unwrap();
    pool.report_failure(&f).unwrap();
    let t2 = resolve(&pool).unwrap();
    assert!(t2.refreshed);
    assert_eq!(s.posts(), 1);
    assert_eq!(h.creds_access(), t2.access_token.expose());
}

/// `hap status` and `hap doctor` warn ahead of the refresh token's own expiry.
#[test]
fn status_and_doctor_warn_ahead_of_the_refresh_tokens_expiry() {
    let h = Home::new();
    h.write_creds(A1, R1, now_ms() + 3_600_000);
    let hap = |args: &[&str]| {
        let root = h.dir.path();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hap"))
            .args(args)
            .current_dir(root)
            .env("HOME", root)
            .env("HERMES_HOME", root.join("hermes"))
            .env("CLAUDE_CONFIG_DIR", root.join("claude"))
            .env("NO_COLOR", "1")
            .env_remove("HAP_LOG")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!text.contains("sk-ant-"), "{text}");
        text
    };
    for (left_ms, status_says, doctor_says) in [
        (
            2 * 86_400_000,
            "itself expires in",
            "the refresh token itself expires",
        ),
        (-3_600_000, "expired", "the refresh token expired"),
    ] {
        let mut v = h.creds();
        v["claudeAiOauth"]["refreshTokenExpiresAt"] = (now_ms() + left_ms).into();
        write_json(&h.creds_path(), &v);
        let status = hap(&["status"]);
        assert!(
            status.contains("The refresh token in") && status.contains(status_says),
            "{status}"
        );
        let doctor = hap(&["doctor"]);
        assert!(doctor.contains(doctor_says), "{doctor}");
    }
    // A month away: nothing to say in status.
    let mut v = h.creds();
    v["claudeAiOauth"]["refreshTokenExpiresAt"] = (now_ms() + 30 * 86_400_000).into();
    write_json(&h.creds_path(), &v);
    assert!(!hap(&["status"]).contains("The refresh token in"));
}

// --- Item 5: the ownership switch ----------------------------------------------------------

/// `defer_refresh_to_claude_code`: hap never POSTs on Claude Code's login; it serves it while
/// valid, adopts Claude Code's rotation at once, and otherwise says to run `claude`.
#[test]
fn with_claude_code_owning_the_login_hap_never_posts() {
    let s = FakeServer::start();
    let h = Home::new();
    let c = cfg(&h, &s, json!({"defer_refresh_to_claude_code": true}));
    // Valid but inside the refresh skew: served as is.
    h.write_creds(A1, R1, now_ms() + 60_000);
    let pool = open_with(c.clone());
    let t = resolve(&pool).unwrap();
    assert_eq!(t.access_token.expose(), A1);
    // Expired: UNAVAILABLE, with when to look again and what to do.
    h.write_creds(A1, R1, now_ms() - 1000);
    let before = now_ms();
    let e = resolve(&pool).unwrap_err();
    assert_eq!(e.status, hap::Status::Unavailable, "{e}");
    assert!(e.message.contains("`claude`"), "{}", e.message);
    assert!(e.retry_at_ms.unwrap() > before);
    assert!(
        !claude_lock(&h).exists()
            && !h
                .creds_path()
                .with_file_name(".oauth_refresh.lock")
                .exists()
    );
    // Claude Code (or its daemon) refreshes: adopted at the next call.
    h.write_creds(A2, R2, now_ms() + 3_600_000);
    let t = resolve(&pool).unwrap();
    assert_eq!(t.access_token.expose(), A2);
    assert!(!t.refreshed);
    // A 401 on it: no POST either; the next rotation is adopted.
    let f = hap::Failure::from_json(Some(
        &json!({"credential_id": t.credential_id, "status_code": 401}).to_string(),
    ))
    .unwrap();
    pool.report_failure(&f).unwrap();
    // (An unexpired token whose refresh failed is still served: SPEC.md, Resolve step 5.)
    let again = resolve(&pool).map(|t| t.access_token.expose().to_string());
    assert!(
        match &again {
            Ok(a) => a == A2,
            Err(e) => e.status == hap::Status::Unavailable,
        },
        "{again:?}"
    );
    assert_eq!(s.posts(), 0);
    let a3 = "sk-ant-oat01-fake-a3";
    h.write_creds(a3, "sk-ant-ort01-fake-r3", now_ms() + 3_600_000);
    assert_eq!(resolve(&pool).unwrap().access_token.expose(), a3);
    assert_eq!(s.posts(), 0);
    assert_eq!(h.creds()["claudeAiOauth"]["subscriptionType"], "max");
    // Off (the default): the same expired login is refreshed.
    h.write_creds(A1, R1, now_ms() - 1000);
    assert!(
        resolve(&open_with(cfg(&h, &s, json!({}))))
            .unwrap()
            .refreshed
    );
    assert_eq!(s.posts(), 1);
}

#[test]
fn the_ownership_switch_is_a_boolean() {
    let e =
        hap::Config::from_json_str(Some(r#"{"defer_refresh_to_claude_code": "yes"}"#)).unwrap_err();
    assert_eq!(e.status, hap::Status::InvalidArgument);
    assert!(
        e.message.contains("defer_refresh_to_claude_code"),
        "{}",
        e.message
    );
    let c = hap::Config::from_json_str(Some(r#"{"pool_path": null}"#)).unwrap();
    assert!(!c.defer_refresh_to_claude_code, "off by default");
}

/// `hap doctor` looks at `~/.claude.lock` as it does at `.oauth_refresh.lock`: a stale one
/// left by a dead 2.1.112-era Claude Code holds every refresh for 60 s.
#[test]
fn doctor_reports_a_stale_claude_dir_lock() {
    let h = Home::new();
    h.write_creds(A1, R1, now_ms() + 3_600_000);
    let lock = claude_lock(&h);
    std::fs::create_dir(&lock).unwrap();
    std::fs::File::open(&lock)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(300))
        .unwrap();
    let root = h.dir.path();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hap"))
        .arg("doctor")
        .current_dir(root)
        .env("HOME", root)
        .env("HERMES_HOME", root.join("hermes"))
        .env("CLAUDE_CONFIG_DIR", root.join("claude"))
        .env("NO_COLOR", "1")
        .env_remove("HAP_LOG")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("claude.lock is stale"), "{text}");
}

/// Claude Code 2.1.128 and later keep the login in `$CLAUDE_SECURESTORAGE_CONFIG_DIR` when it
/// is set (set but empty: `~/.claude`), before `$CLAUDE_CONFIG_DIR`: hap's default file
/// follows, or it would refresh a copy Claude Code no longer reads.
#[test]
fn the_default_credentials_file_follows_claude_secure_storage_config_dir() {
    let h = Home::new();
    let root = h.dir.path();
    let status = |secure: Option<&Path>| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_hap"));
        c.arg("status")
            .current_dir(root)
            .env("HOME", root)
            .env("HERMES_HOME", root.join("hermes"))
            .env("CLAUDE_CONFIG_DIR", root.join("claude"))
            .env("NO_COLOR", "1")
            .env_remove("HAP_LOG")
            .env_remove("HAP_CONFIG");
        match secure {
            Some(d) => c.env("CLAUDE_SECURESTORAGE_CONFIG_DIR", d),
            None => c.env_remove("CLAUDE_SECURESTORAGE_CONFIG_DIR"),
        };
        let out = c.output().unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let line = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("credentials"))
            .unwrap_or_default()
            .to_string()
    };
    let secure = root.join("secure");
    assert!(
        line(&status(None)).ends_with(&format!("{}/claude/.credentials.json", root.display())),
        "{}",
        status(None)
    );
    let t = status(Some(&secure));
    assert!(
        line(&t).ends_with(&format!("{}/.credentials.json", secure.display())),
        "{t}"
    );
    let t = status(Some(Path::new("")));
    assert!(
        line(&t).ends_with(&format!("{}/.claude/.credentials.json", root.display())),
        "{t}"
    );
}
