//! The refresh transaction under attack (issue 10, items 1-4 and 18): full disks, planted
//! files, unwritable directories, stopped and killed processes, servers that do not rotate
//! or answer with hostile bodies. Real files, real processes, the real fake token server.
//! The rule every test checks from its side: once the token server has answered, the new
//! pair is never dropped, and no expired or malformed token is served as valid.

use crate::common::*;
#[path = "../common/durability.rs"]
mod durability;
use durability::*;

use serde_json::{json, Value};
use std::time::{Duration, Instant};

const HOUR: i64 = 3_600_000;

/// Claude Code's login alone (no pool file), short timeouts.
fn creds_only(h: &Home, s: &FakeServer) -> Value {
    json!({
        "pool_path": null,
        "credentials_path": h.creds_path(),
        "token_urls": [s.token_url()],
        "lock_timeout_ms": 5000,
        "http_timeout_ms": 3000,
    })
}

mod after_post {
    //! Item 1: a failure after the POST must not drop the pair.
    use super::*;

    #[test]
    fn a_full_disk_stops_the_refresh_before_the_token_is_spent() {
        let s = FakeServer::start();
        let h = Home::new();
        let Some(fs) = Tmpfs::mount(h.creds_path().parent().unwrap()) else {
            return;
        };
        h.write_creds(A1, R1, now_ms() - 1000);
        let cfg = creds_only(&h, &s);
        let pool = open_with(cfg.clone());
        fs.fill();
        let e = resolve(&pool).unwrap_err();
        assert_eq!(e.status, hap::Status::Io, "{e}");
        assert!(e.message.contains(".credentials.hap-journal.json"), "{e}");
        assert_eq!(
            s.posts(),
            0,
            "no POST: the journal could not take the new pair"
        );
        fs.free();
        let t = resolve(&open_with(cfg)).unwrap();
        assert!(t.refreshed);
        assert_eq!(h.creds_access(), t.access_token.expose());
        assert_eq!(s.stats()["invalid_grant"], 0);
    }

    #[test]
    fn a_disk_that_fills_during_the_post_keeps_the_pair_in_memory_until_it_can_be_saved() {
        let s = FakeServer::start();
        let h = Home::new();
        let Some(fs) = Tmpfs::mount(h.creds_path().parent().unwrap()) else {
            return;
        };
        h.write_creds(A1, R1, now_ms() - 1000);
        let cfg = creds_only(&h, &s);
        s.script(json!([{"delay_ms": 1000}]));
        let pool = open_with(cfg.clone());
        let t = std::thread::scope(|sc| {
            let r = sc.spawn(|| resolve(&pool));
            wait_for_posts(&s, 1);
            fs.fill();
            r.join().unwrap()
        })
        .expect("the answered refresh is served even though nothing could be written");
        assert!(t.refreshed);
        assert!(t.expires_at_ms.unwrap() > now_ms() + HOUR / 2);
        assert_eq!(
            h.creds_access(),
            A1,
            "the disk is full: the store is unchanged"
        );
        // Served from memory, not POSTed again.
        assert_eq!(resolve(&pool).unwrap().access_token, t.access_token);
        assert_eq!(s.posts(), 1);
        fs.free();
        // The next call saves it.
        assert_eq!(resolve(&pool).unwrap().access_token, t.access_token);
        assert_eq!(h.creds_access(), t.access_token.expose());
        let other = resolve(&open_with(cfg)).unwrap();
        assert_eq!(other.access_token, t.access_token);
        assert!(!other.refreshed);
        assert_eq!(s.posts(), 1);
        assert_eq!(s.stats()["invalid_grant"], 0);
    }

    #[test]
    fn hap_token_that_cannot_save_the_new_pair_fails_loudly_naming_the_paths() {
        let s = FakeServer::start();
        let h = Home::new();
        let Some(fs) = Tmpfs::mount(h.creds_path().parent().unwrap()) else {
            return;
        };
        h.write_creds(A1, R1, now_ms() - 1000);
        s.script(json!([{"delay_ms": 1000}]));
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_hap"))
            .args(["--no-pool", "--credentials"])
            .arg(h.creds_path())
            .args(["--token-url", &s.token_url(), "token"])
            .env("HOME", h.dir.path())
            .env_remove("HAP_LOG")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        wait_for_posts(&s, 1);
        fs.fill();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(17), "HAP_STATUS_IO: {stderr}");
        assert_eq!(stdout, "", "no token for a login that is about to be lost");
        let journal = h
            .creds_path()
            .with_file_name(".credentials.hap-journal.json");
        for p in [journal, h.creds_path()] {
            assert!(
                stderr.contains(&p.display().to_string()),
                "{} not named: {stderr}",
                p.display()
            );
        }
        assert!(
            !stderr.contains("sk-ant-"),
            "a token in the error: {stderr}"
        );
    }

    #[test]
    fn a_file_planted_at_the_old_predictable_temp_name_does_not_lose_the_pair() {
        let s = FakeServer::start();
        let h = Home::new();
        h.write_creds(A1, R1, now_ms() - 1000);
        // The names a counter would give the journal's temp file in this process.
        let dir = h.creds_path().parent().unwrap().to_path_buf();
        let pid = std::process::id();
        for n in 0..4096 {
            let name = format!("..credentials.hap-journal.json.hap-{pid}-{n}.tmp");
            std::fs::write(dir.join(name), b"planted").unwrap();
        }
        let t = resolve(&h.open(&s, "")).expect("the refresh is not dropped");
        assert!(t.refreshed);
        assert_eq!(h.creds_access(), t.access_token.expose());
        let again = resolve(&h.open(&s, "")).unwrap();
        assert_eq!(again.access_token, t.access_token);
        assert_eq!(s.stats()["invalid_grant"], 0);
        let planted = format!("..credentials.hap-journal.json.hap-{pid}-7.tmp");
        assert_eq!(std::fs::read(dir.join(planted)).unwrap(), b"planted");
    }

    #[test]
    fn an_owned_row_in_a_directory_hap_cannot_write_is_not_refreshed_into_the_void() {
        let s = FakeServer::start();
        let h = Home::new();
        let pool_path = h.pool_path("");
        write_json(
            &pool_path,
            &json!({"version": 1, "credential_pool": {"anthropic": [{
            "id": "0ace01", "label": "work", "auth_type": "oauth", "priority": 0,
            "source": "manual", "access_token": A1, "refresh_token": R1,
            "expires_at_ms": now_ms() - 1000, "request_count": 0}]}}),
        );
        let dir = pool_path.parent().unwrap().to_path_buf();
        std::fs::write(dir.join("auth.lock"), b"").unwrap();
        give_to_throwaway_user(h.dir.path());
        chmod(&dir, 0o500);
        let cfg = json!({
            "pool_path": pool_path,
            "credentials_path": null,
            "token_urls": [s.token_url()],
            "lock_timeout_ms": 5000,
            "http_timeout_ms": 3000,
        });
        let (v, err) = worker_result(spawn_worker_unprivileged(&cfg));
        assert_eq!(v["error"], "HAP_STATUS_IO", "{v} {err}");
        assert_eq!(
            s.posts(),
            0,
            "no POST into a directory nothing can be written to"
        );
        chmod(&dir, 0o700);
        let (v, err) = worker_result(spawn_worker_unprivileged(&cfg));
        assert_eq!(v["refreshed"], true, "{v} {err}");
        let row = &read_json(&pool_path)["credential_pool"]["anthropic"][0];
        assert_eq!(
            v["token_sha256"],
            worker_sha(row["access_token"].as_str().unwrap())
        );
        assert_eq!(s.stats()["invalid_grant"], 0);
    }
}

mod stopped_processes {
    //! Item 2: stopped processes and answers nobody read.
    use super::*;

    #[test]
    fn a_process_stopped_during_the_post_reads_the_answer_waiting_for_it() {
        let s = FakeServer::start();
        let h = Home::new();
        h.write_creds(A1, R1, now_ms() - 1000);
        let mut cfg = h.config(&s, "");
        cfg["http_timeout_ms"] = json!(1000);
        s.script(json!([{"delay_ms": 300}]));
        let child = spawn_worker(&cfg, 0, &[]);
        wait_for_posts(&s, 1);
        signal(&child, libc::SIGSTOP);
        // The answer arrives 0.3 s in; the process sleeps through its 1 s deadline.
        std::thread::sleep(Duration::from_millis(1800));
        signal(&child, libc::SIGCONT);
        let (v, err) = worker_result(child);
        assert_eq!(v["refreshed"], true, "{v} {err}");
        assert_eq!(v["token_sha256"], worker_sha(&h.creds_access()));
        assert_eq!(s.posts(), 1);
    }

    #[test]
    fn a_dripping_answer_still_fails_on_time() {
        let s = FakeServer::start();
        let h = Home::new();
        h.write_creds(A1, R1, now_ms() - 1000);
        let mut cfg = creds_only(&h, &s);
        cfg["http_timeout_ms"] = json!(500);
        // ~400 bytes at 100 ms each: 40 s to send it all.
        s.script(json!([{"drip_ms": 100}]));
        let t0 = Instant::now();
        let e = resolve(&open_with(cfg)).unwrap_err();
        assert_eq!(e.status, hap::Status::Unavailable, "{e}");
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{:?}: the deadline held",
            t0.elapsed()
        );
        assert!(e.message.contains("may have spent"), "{e}");
    }

    #[test]
    fn siblings_of_a_post_killed_mid_answer_watch_the_store_instead_of_posting() {
        let s = FakeServer::start();
        let h = Home::new();
        h.write_creds(A1, R1, now_ms() - 1000);
        let cfg = h.config(&s, "");
        s.script(json!([{"delay_ms": 1500}]));
        let mut a = spawn_worker(&cfg, 0, &[]);
        wait_for_posts(&s, 1);
        a.kill().unwrap();
        a.wait().unwrap();
        // A sibling starts while the server may still be spending R1 for the dead process.
        let b = spawn_worker(&cfg, 0, &[]);
        std::thread::sleep(Duration::from_millis(700));
        // Someone (Claude Code, say) writes the pair the lost answer would have carried.
        let mut c = h.creds();
        c["claudeAiOauth"]["accessToken"] = json!(A2);
        c["claudeAiOauth"]["refreshToken"] = json!(R2);
        c["claudeAiOauth"]["expiresAt"] = json!(now_ms() + HOUR);
        let tmp = h.creds_path().with_file_name("new.json");
        write_json(&tmp, &c);
        std::fs::rename(&tmp, h.creds_path()).unwrap();
        let (v, err) = worker_result(b);
        assert_eq!(v["refreshed"], false, "{v} {err}");
        assert_eq!(v["token_sha256"], worker_sha(A2));
        assert_eq!(s.posts(), 1, "R1 was not POSTed again inside the window");
    }

    #[test]
    fn after_the_window_one_retry_post_is_allowed_and_ends_the_marker() {
        let s = FakeServer::start();
        let h = Home::new();
        h.write_creds(A1, R1, now_ms() - 1000);
        let cfg = h.config(&s, "");
        // The server reads the request and never answers (R1 stays valid).
        s.script(json!([{"hang_ms": 2000}]));
        let mut a = spawn_worker(&cfg, 0, &[]);
        wait_for_posts(&s, 1);
        a.kill().unwrap();
        a.wait().unwrap();
        let (v, err) = worker_result(spawn_worker(&cfg, 0, &[]));
        assert_eq!(v["refreshed"], true, "{v} {err}");
        let log = s.stats()["log"].as_array().unwrap().clone();
        assert_eq!(log.len(), 2);
        let gap = log[1]["t_ms"].as_i64().unwrap() - log[0]["t_ms"].as_i64().unwrap();
        assert!(
            gap >= 2500,
            "the retry came {gap} ms after the unanswered POST"
        );
        let j = creds_journal(&h);
        assert_eq!(
            j["posts"],
            json!([]),
            "the retry's answer ended the marker: {j}"
        );
    }
}

mod no_rotation {
    //! Item 3: servers that do not rotate the refresh token.
    use super::*;

    fn non_rotating(fault: &str) {
        let s = FakeServer::start();
        let h = Home::new();
        h.write_creds(A1, R1, now_ms() - 1000);
        let mut cfg = h.config(&s, "");
        cfg["refresh_skew_ms"] = json!(0);
        s.script(Value::Array(vec![json!({fault: true, "expires_in": 1}); 4]));
        let pool = open_with(cfg.clone());
        let wait_out = |t: &hap::Token| {
            let left = t.expires_at_ms.unwrap() + 50 - now_ms();
            std::thread::sleep(Duration::from_millis(left.max(0) as u64));
        };
        let t1 = resolve(&pool).unwrap();
        assert!(t1.refreshed);
        wait_out(&t1);
        let t2 = resolve(&pool).unwrap();
        // The replay bug served t1's expired pair again; a token of 1 s may have run out
        // by now on a loaded machine, so the check is against t1's expiry, not the clock.
        assert!(
            t2.expires_at_ms.unwrap() > t1.expires_at_ms.unwrap(),
            "{fault}: an expired token served as valid"
        );
        assert!(t2.refreshed, "{fault}");
        assert_ne!(t2.access_token, t1.access_token);
        wait_out(&t2);
        // From a new handle, and forced: a POST each, never a replay nor REAUTH_REQUIRED.
        let t3 = resolve(&open_with(cfg.clone())).unwrap();
        assert!(
            t3.refreshed && t3.expires_at_ms.unwrap() > t2.expires_at_ms.unwrap(),
            "{fault}"
        );
        let force = hap::ResolveRequest {
            force_refresh: true,
            ..Default::default()
        };
        let t4 = open_with(cfg).resolve(&force).unwrap();
        assert!(
            t4.refreshed && t4.access_token != t3.access_token,
            "{fault}"
        );
        assert_eq!(s.posts(), 4);
        assert_eq!(h.creds()["claudeAiOauth"]["refreshToken"], R1);
        assert_eq!(s.stats()["invalid_grant"], 0);
    }

    #[test]
    fn a_server_that_omits_the_refresh_token_is_refreshed_again_not_replayed() {
        non_rotating("omit_refresh_token");
    }

    #[test]
    fn a_server_that_echoes_the_refresh_token_is_refreshed_again_not_replayed() {
        non_rotating("echo_refresh_token");
    }
}

mod hostile_answers {
    //! Item 4 (expires_in) and item 18: hostile token answers.
    use super::*;

    #[test]
    fn an_expires_in_beyond_a_year_is_clamped_not_wrapped() {
        let s = FakeServer::start();
        s.set_expires_in(9_300_000_000_000_000);
        let h = Home::new();
        h.write_creds(A1, R1, now_ms() - 1000);
        let t = resolve(&h.open(&s, "")).unwrap();
        assert!(t.refreshed);
        let at = h.creds()["claudeAiOauth"]["expiresAt"].as_i64().unwrap();
        assert_eq!(t.expires_at_ms, Some(at));
        let year = 365 * 24 * HOUR;
        assert!(at > now_ms() + year - HOUR && at <= now_ms() + year, "{at}");
    }

    #[test]
    fn a_token_with_control_characters_is_never_stored_or_served() {
        let s = FakeServer::start();
        let bad = [
            ("sk-ant-oat01-fake-nl\n", "sk-ant-ort01-fake-ok"),
            ("sk-ant-oat01-fake\u{0}nul", "sk-ant-ort01-fake-ok"),
            ("sk-ant-oat01-fake-ok", "\rsk-ant-ort01-fake-cr"),
            ("sk-ant-oat01-fake-ok", "sk-ant-ort01-fake-\u{7f}"),
        ];
        for (access, refresh) in bad {
            let h = Home::new();
            h.write_creds(A1, R1, now_ms() - 1000);
            let before = std::fs::read(h.creds_path()).unwrap();
            let body =
                json!({"access_token": access, "refresh_token": refresh, "expires_in": 3600});
            s.script(json!([{"status": 200, "body": body.to_string()}]));
            let e = resolve(&h.open(&s, "")).unwrap_err();
            assert_eq!(
                e.status,
                hap::Status::Unavailable,
                "{access:?} {refresh:?}: {e}"
            );
            assert!(!e.to_string().contains("fake-"), "{e}");
            assert_eq!(std::fs::read(h.creds_path()).unwrap(), before);
            let journal = creds_journal(&h).to_string();
            assert!(!journal.contains("fake-ok"), "{journal}");
        }
    }
}
