//! Scenario tests: real files, the real fake token server, real processes.
//! Each reads as: stores on disk, the server's script, one action, the exact outcome.

mod common;
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

const HOUR: i64 = 3_600_000;

mod pr_test_plan {
    //! The pull request's test plan: a stale or exhausted pool row next to a newer Claude Code
    //! login, write-back that keeps every key, one profile's refresh seen by the others.
    use super::*;

    #[test]
    fn stale_pool_row_recovers_from_newer_credentials_file() {
        let s = FakeServer::start();
        let h = Home::new();
        // Hermes wrote a claude_code row holding an old pair and benched it for 24 h.
        write_json(
            &h.pool_path(""),
            &json!({"version": 1, "credential_pool": {"anthropic": [{
            "id": "c0ffee", "label": "claude_code", "auth_type": "oauth", "priority": 0,
            "source": "claude_code", "access_token": "sk-ant-oat01-fake-old", "refresh_token": "sk-ant-ort01-fake-old",
            "expires_at_ms": now_ms() - HOUR, "last_status": "exhausted",
            "last_status_at": now_ms() as f64 / 1000.0, "last_error_code": 400,
            "last_error_reason": "invalid_grant", "last_error_message": null,
            "last_error_reset_at": (now_ms() / 1000 + 86400), "request_count": 7}]}}),
        );
        h.write_creds(A2, R2, now_ms() + HOUR);
        let pool = h.open(&s, "");
        let t = resolve(&pool).unwrap();
        assert_eq!(t.access_token.expose(), A2);
        assert_eq!(t.credential_id, "c0ffee");
        assert!(!t.refreshed);
        assert_eq!(s.posts(), 0);
        let row = &h.rows("")[0];
        assert_eq!(
            row["last_status"],
            json!(null),
            "the bench is lifted at once"
        );
        assert_eq!(row["request_count"], 7);
    }

    #[test]
    fn refresh_writes_back_to_credentials_file_keeping_every_key() {
        let s = FakeServer::start();
        let h = Home::new();
        h.write_creds(A1, R1, now_ms() - 1000);
        let pool = h.open(&s, "");
        let t = resolve(&pool).unwrap();
        assert!(t.refreshed);
        assert_eq!(s.posts(), 1);
        let c = h.creds();
        let o = &c["claudeAiOauth"];
        assert_eq!(o["accessToken"], t.access_token.expose());
        assert_ne!(o["refreshToken"], R1);
        assert!(o["expiresAt"].as_i64().unwrap() > now_ms() + HOUR - 60_000);
        assert_eq!(o["subscriptionType"], "max");
        assert_eq!(o["rateLimitTier"], "default_claude_max_20x");
        assert_eq!(o["scopes"], json!(["user:inference", "user:profile"]));
        assert_eq!(c["mcpOAuth"], json!({"keep": "me"}));
        let keys: Vec<_> = o.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            [
                "accessToken",
                "refreshToken",
                "expiresAt",
                "scopes",
                "subscriptionType",
                "rateLimitTier"
            ]
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(h.creds_path())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        // The seeded borrowed row holds a fingerprint, never a token.
        let pool_text = std::fs::read_to_string(h.pool_path("")).unwrap();
        assert!(!pool_text.contains("fake-"), "{pool_text}");
        let row = &h.rows("")[0];
        assert_eq!(row["source"], "claude_code");
        assert_eq!(row["last_status"], "ok");
        assert_eq!(
            row["secret_fingerprint"],
            hap::internals::secret::fingerprint(t.access_token.expose())
        );
        // A second resolve is served from the cache: no POST.
        assert_eq!(resolve(&pool).unwrap().access_token, t.access_token);
        assert_eq!(s.posts(), 1);
    }

    #[test]
    fn exhausted_row_with_valid_credentials_is_usable_at_once() {
        let s = FakeServer::start();
        let h = Home::new();
        h.write_creds(A1, R1, now_ms() + HOUR);
        let pool = h.open(&s, "");
        let t = resolve(&pool).unwrap();
        let out = pool
            .report_failure(
                &hap::Failure::from_json(Some(
                    &json!({"credential_id": t.credential_id, "status_code": 429}).to_string(),
                ))
                .unwrap(),
            )
            .unwrap();
        assert_eq!(out.last_status, "exhausted");
        // The only credential: benched at most 60 s.
        let avail = out.available_at_ms.unwrap();
        assert!(avail <= now_ms() + 60_500, "{avail}");
        assert_eq!(
            resolve(&pool).unwrap_err().status,
            hap::Status::NoCredential
        );
        // Claude Code logs in again / rotates: the bench lifts without waiting.
        h.write_creds(A2, R2, now_ms() + HOUR);
        let t2 = resolve(&pool).unwrap();
        assert_eq!(t2.access_token.expose(), A2);
        assert_eq!(s.posts(), 0);
    }

    #[test]
    fn one_profile_refreshes_and_the_others_pick_it_up() {
        let s = FakeServer::start();
        let h = Home::new();
        h.write_creds(A1, R1, now_ms() - 1000);
        let a = h.open(&s, "alpha");
        let b = h.open(&s, "beta");
        let ta = resolve(&a).unwrap();
        assert!(ta.refreshed);
        let tb = resolve(&b).unwrap();
        assert!(!tb.refreshed);
        assert_eq!(ta.access_token, tb.access_token);
        assert_eq!(s.posts(), 1);
    }
}

mod one_post {
    //! Exactly one POST: processes or threads that need the same refresh make one between
    //! them.
    use super::*;

    #[test]
    fn eight_processes_with_separate_profiles_make_one_post() {
        let s = FakeServer::start();
        s.script(json!([{"delay_ms": 300}]));
        let h = Home::new();
        h.write_creds(A1, R1, now_ms() - 1000);
        let start = now_ms() + 1500;
        let kids: Vec<_> = (0..8)
            .map(|i| spawn_worker(&h.config(&s, &format!("p{i}")), start, &[]))
            .collect();
        let results: Vec<_> = kids.into_iter().map(worker_result).collect();
        let tokens: std::collections::HashSet<_> = results
            .iter()
            .map(|(v, e)| {
                v["token_sha256"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{v} {e}"))
                    .to_string()
            })
            .collect();
        assert_eq!(s.posts(), 1);
        assert_eq!(tokens.len(), 1, "every process got the same token");
        assert_eq!(
            results
                .iter()
                .filter(|(v, _)| v["refreshed"] == true)
                .count(),
            1
        );
    }

    #[test]
    fn sixteen_threads_on_one_pool_make_one_post() {
        let s = FakeServer::start();
        s.script(json!([{"delay_ms": 300}]));
        let h = Home::new();
        h.write_creds(A1, R1, now_ms() - 1000);
        let pool = std::sync::Arc::new(h.open(&s, ""));
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(16));
        let handles: Vec<_> = (0..16)
            .map(|_| {
                let (p, b) = (pool.clone(), barrier.clone());
                std::thread::spawn(move || {
                    b.wait();
                    resolve(&p).unwrap().access_token
                })
            })
            .collect();
        let tokens: std::collections::HashSet<_> = handles
            .into_iter()
            .map(|h| h.join().unwrap().expose().to_string())
            .collect();
        assert_eq!(tokens.len(), 1);
        assert_eq!(s.posts(), 1);
    }
}

mod outside_writers {
    //! Outside writers, revoked grants, back-off: a writer that takes no lock, a refused grant
    //! and a re-login, 429s with and without a valid token to serve.
    use super::*;

    #[test]
    fn lockless_writer_that_spent_the_token_is_adopted() {
        let s = FakeServer::start();
        let h = Home::new();
        h.write_creds(A1, R1, now_ms() - 1000);
        // An older Claude Code: spends R1 now, writes its pair a second later, takes no lock.
        let body = s.spend(R1);
        let creds_path = h.creds_path();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1000));
            let mut v = read_json(&creds_path);
            v["claudeAiOauth"]["accessToken"] = body["access_token"].clone();
            v["claudeAiOauth"]["refreshToken"] = body["refresh_token"].clone();
            v["claudeAiOauth"]["expiresAt"] = json!(now_ms() + HOUR);
            write_json(&creds_path, &v);
            body["access_token"].as_str().unwrap().to_string()
        });
        let pool = h.open(&s, "");
        let t = resolve(&pool).unwrap();
        let theirs = writer.join().unwrap();
        assert_eq!(t.access_token.expose(), theirs);
        assert!(!t.refreshed);
        assert_eq!(
            s.stats()["invalid_grant"],
            1,
            "hap's one POST met invalid_grant, then adopted"
        );
        assert_ne!(h.rows("")[0]["last_status"], "dead");
    }

    #[test]
    fn revoked_grant_needs_reauth_leaves_file_untouched_and_relogin_lifts_it() {
        let s = FakeServer::start();
        let h = Home::new();
        h.write_creds(A1, R1, now_ms() - 1000);
        s.revoke(R1);
        let before = std::fs::read(h.creds_path()).unwrap();
        let pool = h.open(&s, "");
        let t0 = Instant::now();
        let e = resolve(&pool).unwrap_err();
        assert_eq!(e.status, hap::Status::ReauthRequired);
        assert!(
            t0.elapsed() >= Duration::from_secs(3),
            "watched the store for 3 s"
        );
        assert_eq!(
            std::fs::read(h.creds_path()).unwrap(),
            before,
            "credentials file untouched"
        );
        assert_eq!(h.rows("")[0]["last_status"], "dead");
        assert_eq!(s.posts(), 1);
        // Still dead on the next resolve, without another POST.
        assert!(resolve(&pool).is_err());
        assert_eq!(s.posts(), 1);
        // The user logs in again: picked up at once.
        h.write_creds(A2, R2, now_ms() + HOUR);
        assert_eq!(resolve(&pool).unwrap().access_token.expose(), A2);
        assert_eq!(s.posts(), 1);
    }

    #[test]
    fn rate_limited_refresh_serves_the_valid_token_and_backs_off() {
        let s = FakeServer::start();
        s.script(json!([{"status": 429, "headers": {"retry-after": "120"}}]));
        let h = Home::new();
        // Valid for 60 s more: inside the 120 s skew, so hap wants to refresh.
        h.write_creds(A1, R1, now_ms() + 60_000);
        let pool = h.open(&s, "");
        assert_eq!(resolve(&pool).unwrap().access_token.expose(), A1);
        assert_eq!(s.posts(), 1);
        for _ in 0..5 {
            assert_eq!(resolve(&pool).unwrap().access_token.expose(), A1);
        }
        // Another process (another profile) also respects the shared back-off.
        let other = h.open(&s, "other");
        assert_eq!(resolve(&other).unwrap().access_token.expose(), A1);
        assert_eq!(s.posts(), 1, "no POST repeated inside the back-off");
    }

    #[test]
    fn expired_token_and_429_is_unavailable_with_retry_at() {
        let s = FakeServer::start();
        s.script(json!([{"status": 429}]));
        let h = Home::new();
        h.write_creds(A1, R1, now_ms() - 1000);
        let pool = h.open(&s, "");
        let e = resolve(&pool).unwrap_err();
        assert_eq!(e.status, hap::Status::Unavailable);
        let at = e.retry_at_ms.unwrap();
        assert!(at >= now_ms() + 50_000, "{at}");
        assert_eq!(resolve(&pool).unwrap_err().status, hap::Status::Unavailable);
        assert_eq!(s.posts(), 1);
        assert_eq!(h.creds_access(), A1, "nothing blanked");
    }
}

mod claude_code_lock {
    //! Claude Code's own refresh lock: held means wait, stale means take over.
    use super::*;

    #[test]
    fn claude_code_lock_held_means_no_post_until_released() {
        let s = FakeServer::start();
        let h = Home::new();
        h.write_creds(A1, R1, now_ms() - 1000);
        let lockdir = h.creds_path().with_file_name(".oauth_refresh.lock");
        std::fs::create_dir(&lockdir).unwrap();
        let ld = lockdir.clone();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1500));
            std::fs::remove_dir(&ld).unwrap();
        });
        let pool = h.open(&s, "");
        let t0 = Instant::now();
        let t = resolve(&pool).unwrap();
        assert!(t0.elapsed() >= Duration::from_millis(1400));
        assert!(t.refreshed);
        assert_eq!(s.posts(), 1);
        releaser.join().unwrap();
        assert!(!lockdir.exists(), "released after the refresh");
    }

    #[test]
    fn stale_claude_code_lock_is_taken_over_and_removed() {
        let s = FakeServer::start();
        let h = Home::new();
        h.write_creds(A1, R1, now_ms() - 1000);
        let lockdir = h.creds_path().with_file_name(".oauth_refresh.lock");
        std::fs::create_dir(&lockdir).unwrap();
        std::fs::File::open(&lockdir)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - Duration::from_secs(90))
            .unwrap();
        let pool = h.open(&s, "");
        let t0 = Instant::now();
        assert!(resolve(&pool).unwrap().refreshed);
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert!(!lockdir.exists());
    }
}

mod owned_rows {
    //! Tokens that own their pool row (manual rows): refreshed in place, URL fallback, what a
    //! token server's answer may and may not do.
    use super::*;

    #[test]
    fn manual_row_refreshes_in_place_and_keeps_foreign_keys() {
        let s = FakeServer::start();
        let h = Home::new();
        write_json(
            &h.pool_path(""),
            &json!({"version": 1, "providers": {"x": {"y": 1}}, "credential_pool": {"anthropic": [{
            "id": "aaaaaa", "label": "mine", "auth_type": "oauth", "priority": 0, "source": "manual",
            "access_token": A1, "refresh_token": R1, "expires_at_ms": now_ms() - 1000,
            "last_status": null, "last_status_at": null, "last_error_code": null,
            "last_error_reason": null, "last_error_message": null, "last_error_reset_at": null,
            "request_count": 0, "tool_specific": [1, 2, 3]}]}, "zz_unknown": true}),
        );
        let cfg = json!({"pool_path": h.pool_path(""), "credentials_path": null, "token_urls": [s.token_url()]});
        let pool = open_with(cfg);
        let t = resolve(&pool).unwrap();
        assert!(t.refreshed);
        let p = h.pool("");
        let row = &p["credential_pool"]["anthropic"][0];
        assert_eq!(row["access_token"], t.access_token.expose());
        assert_ne!(row["refresh_token"], R1);
        assert_eq!(row["tool_specific"], json!([1, 2, 3]));
        assert_eq!(row["last_status"], "ok");
        assert_eq!(p["zz_unknown"], true);
        assert_eq!(p["providers"]["x"]["y"], 1);
        assert_eq!(s.posts(), 1);
    }

    #[test]
    fn url_fallback_only_on_404() {
        let s = FakeServer::start();
        let h = Home::new();
        h.write_creds(A1, R1, now_ms() - 1000);
        let mut cfg = h.config(&s, "");
        cfg["token_urls"] = json!([format!("{}/missing", s.base), s.token_url()]);
        let pool = open_with(cfg);
        assert!(resolve(&pool).unwrap().refreshed);
        // A 500 on the first URL is not a reason to try the second: the token may be spent.
        let h2 = Home::new();
        h2.write_creds(A1, "sk-ant-ort01-fake-r9", now_ms() - 1000);
        let mut cfg2 = h2.config(&s, "");
        cfg2["token_urls"] = json!([s.token_url(), s.token_url()]);
        s.script(json!([{"status": 500}]));
        let before = s.posts();
        assert_eq!(
            resolve(&open_with(cfg2)).unwrap_err().status,
            hap::Status::Unavailable
        );
        assert_eq!(s.posts(), before + 1);
    }

    #[test]
    fn redirects_and_oversize_and_malformed_bodies_are_refused() {
        let s = FakeServer::start();
        for fault in [
            json!({"redirect": "http://127.0.0.1:9/x"}),
            json!({"oversize": true}),
            json!({"malformed": true}),
        ] {
            let h = Home::new();
            h.write_creds(A1, R1, now_ms() - 1000);
            s.script(json!([fault]));
            let e = resolve(&h.open(&s, "")).unwrap_err();
            assert_eq!(e.status, hap::Status::Unavailable, "{fault}");
            assert_eq!(h.creds_access(), A1);
        }
    }

    #[test]
    fn response_without_refresh_token_keeps_the_old_one() {
        let s = FakeServer::start();
        s.script(json!([{"omit_refresh_token": true}]));
        let h = Home::new();
        h.write_creds(A1, R1, now_ms() - 1000);
        let t = resolve(&h.open(&s, "")).unwrap();
        assert!(t.refreshed);
        assert_eq!(h.creds()["claudeAiOauth"]["refreshToken"], R1);
    }
}

mod reported_failures {
    //! Reported failures (`hap_report`: 401s, terminal reasons, cooldowns), then the rest of
    //! the pool's behaviour: strategies, the hot path, the journal, stray temp files, tokens
    //! in caller-supplied strings. A new scenario with no better home goes here.
    use super::*;

    #[test]
    fn oauth_401_adopts_a_rotated_token_or_marks_refresh_pending() {
        let s = FakeServer::start();
        let h = Home::new();
        h.write_creds(A1, R1, now_ms() + HOUR);
        let pool = h.open(&s, "");
        let t = resolve(&pool).unwrap();
        let f = |code: u16| {
            hap::Failure::from_json(Some(
                &json!({"credential_id": t.credential_id, "status_code": code}).to_string(),
            ))
            .unwrap()
        };
        // No sibling rotated: the next resolve refreshes.
        let out = pool.report_failure(&f(401)).unwrap();
        assert_eq!(out.last_status, "refresh_pending");
        let t2 = resolve(&pool).unwrap();
        assert!(t2.refreshed);
        assert_eq!(s.posts(), 1);
        // A second 401 within 60 s of that refresh: benched.
        assert_eq!(
            pool.report_failure(&f(401)).unwrap().last_status,
            "exhausted"
        );
        // A sibling rotated meanwhile: adopted, nothing benched.
        h.write_creds(A2, R2, now_ms() + HOUR);
        let pool2 = h.open(&s, "two");
        let t3 = resolve(&pool2).unwrap();
        h.write_creds(
            "sk-ant-oat01-fake-a3",
            "sk-ant-ort01-fake-r3",
            now_ms() + HOUR,
        );
        let out = pool2
            .report_failure(
                &hap::Failure::from_json(Some(
                    &json!({"credential_id": t3.credential_id, "status_code": 401}).to_string(),
                ))
                .unwrap(),
            )
            .unwrap();
        assert_eq!(out.last_status, "ok");
    }

    #[test]
    fn terminal_reason_is_dead_and_unknown_id_is_reported() {
        let s = FakeServer::start();
        let h = Home::new();
        h.write_creds(A1, R1, now_ms() + HOUR);
        let pool = h.open(&s, "");
        let t = resolve(&pool).unwrap();
        let out = pool
        .report_failure(&hap::Failure::from_json(Some(&json!({"credential_id": t.credential_id, "status_code": 403, "reason": "Token_Revoked"}).to_string())).unwrap())
        .unwrap();
        assert_eq!(out.last_status, "dead");
        assert_eq!(out.available_at_ms, None);
        let e = pool
            .report_failure(
                &hap::Failure::from_json(Some(
                    r#"{"credential_id": "zzzzzz", "status_code": 429}"#,
                ))
                .unwrap(),
            )
            .unwrap_err();
        assert_eq!(e.status, hap::Status::UnknownCredential);
    }

    #[test]
    fn cooldown_honours_reset_at_and_spreads_over_the_pool() {
        let s = FakeServer::start();
        let h = Home::new();
        let row = |id: &str, prio: i64, tok: &str| {
            json!({"id": id, "label": id, "auth_type": "oauth", "priority": prio,
        "source": "manual", "access_token": tok, "refresh_token": "sk-ant-ort01-fake-x", "expires_at_ms": now_ms() + HOUR})
        };
        write_json(
            &h.pool_path(""),
            &json!({"credential_pool": {"anthropic": [row("aaaaaa", 0, A1), row("bbbbbb", 1, A2)]}}),
        );
        let pool = open_with(
            json!({"pool_path": h.pool_path(""), "credentials_path": null, "token_urls": [s.token_url()]}),
        );
        assert_eq!(resolve(&pool).unwrap().credential_id, "aaaaaa");
        let reset = now_ms() / 1000 + 600;
        let out = pool
            .report_failure(
                &hap::Failure::from_json(Some(
                    &json!({"credential_id": "aaaaaa", "status_code": 429, "reset_at": reset})
                        .to_string(),
                ))
                .unwrap(),
            )
            .unwrap();
        assert_eq!(out.available_at_ms, Some(reset * 1000));
        assert_eq!(resolve(&pool).unwrap().credential_id, "bbbbbb");
        // A sibling process sees the bench through the file.
        let other = open_with(
            json!({"pool_path": h.pool_path(""), "credentials_path": null, "token_urls": [s.token_url()]}),
        );
        assert_eq!(resolve(&other).unwrap().credential_id, "bbbbbb");
        let st = other.status().unwrap();
        assert_eq!(st["credentials"][0]["available"], false);
        assert_eq!(st["credentials"][0]["available_at_ms"], reset * 1000);
    }

    #[test]
    fn hot_path_notices_a_sibling_rotation_without_stat() {
        // A valid token is cached; another process replaces it with a different valid one.
        // The cached view must give way (through the store watch) within moments.
        let s = FakeServer::start();
        let h = Home::new();
        h.write_creds(A1, R1, now_ms() + HOUR);
        let pool = h.open(&s, "");
        assert_eq!(resolve(&pool).unwrap().access_token.expose(), A1);
        h.write_creds(A2, R2, now_ms() + HOUR);
        let t0 = Instant::now();
        loop {
            if resolve(&pool).unwrap().access_token.expose() == A2 {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(2),
                "the rotation was never noticed"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        // Unchanged files: a thousand resolves read nothing.
        let reads = pool.status().unwrap()["counters"]["store_reads"]
            .as_u64()
            .unwrap();
        for _ in 0..1000 {
            resolve(&pool).unwrap();
        }
        assert_eq!(
            pool.status().unwrap()["counters"]["store_reads"]
                .as_u64()
                .unwrap(),
            reads
        );
        assert_eq!(s.posts(), 0);
    }

    #[test]
    fn unparseable_journal_is_set_aside_not_a_lockout() {
        let s = FakeServer::start();
        let h = Home::new();
        h.write_creds(A1, R1, now_ms() - 1000);
        let journal = h
            .creds_path()
            .with_file_name(".credentials.hap-journal.json");
        std::fs::write(&journal, b"{torn").unwrap();
        let t = resolve(&h.open(&s, "")).unwrap();
        assert!(t.refreshed);
        let aside: Vec<_> = std::fs::read_dir(journal.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains(".hap-journal.corrupt-"))
            .collect();
        assert_eq!(aside.len(), 1, "kept byte-for-byte beside the new journal");
        assert_eq!(std::fs::read(&aside[0]).unwrap(), b"{torn");
    }

    #[test]
    fn strategies_pick_as_named() {
        let s = FakeServer::start();
        let h = Home::new();
        let row = |id: &str, prio: i64, used: u64| {
            json!({"id": id, "label": id, "auth_type": "oauth", "priority": prio,
        "source": "manual", "access_token": format!("sk-ant-oat01-fake-{id}"), "refresh_token": "sk-ant-ort01-fake-x",
        "expires_at_ms": now_ms() + HOUR, "request_count": used})
        };
        write_json(
            &h.pool_path(""),
            &json!({"credential_pool": {"anthropic": [row("cccccc", 2, 0), row("aaaaaa", 0, 10), row("bbbbbb", 1, 5)]}}),
        );
        let picks = |strategy: &str, n: usize| -> Vec<String> {
            let pool = open_with(
                json!({"pool_path": h.pool_path(""), "credentials_path": null,
            "token_urls": [s.token_url()], "strategy": strategy}),
            );
            (0..n)
                .map(|_| resolve(&pool).unwrap().credential_id)
                .collect()
        };
        assert!(picks("fill_first", 5).iter().all(|id| id == "aaaaaa"));
        let rr = picks("round_robin", 6);
        assert_eq!(
            rr[..3]
                .iter()
                .collect::<std::collections::HashSet<_>>()
                .len(),
            3,
            "{rr:?}"
        );
        assert_eq!(rr[..3], rr[3..]);
        // least_used: c (0 uses) first, until it catches up with b (5), then they alternate.
        let lu = picks("least_used", 12);
        assert!(lu[..5].iter().all(|id| id == "cccccc"), "{lu:?}");
        assert_eq!(lu.iter().filter(|id| *id == "aaaaaa").count(), 0, "{lu:?}");
        let rnd = picks("random", 300);
        for id in ["aaaaaa", "bbbbbb", "cccccc"] {
            assert!(rnd.iter().filter(|x| *x == id).count() > 30, "{id} {rnd:?}");
        }
        assert_eq!(s.posts(), 0);
        let text = std::fs::read_to_string(h.pool_path("")).unwrap();
        assert!(text.contains("\"request_count\": 10"), "no write per pick");
    }

    #[test]
    fn a_refused_refresh_token_is_not_posted_again_by_siblings() {
        let s = FakeServer::start();
        let h = Home::new();
        h.write_creds(A1, R1, now_ms() - 1000);
        s.spend(R1); // an outside writer spent it and has not written its pair
        let first = h.open(&s, "one");
        assert_eq!(
            resolve(&first).unwrap_err().status,
            hap::Status::ReauthRequired
        );
        let posts = s.posts();
        let second = h.open(&s, "two");
        assert_eq!(
            resolve(&second).unwrap_err().status,
            hap::Status::ReauthRequired
        );
        assert_eq!(
            s.posts(),
            posts,
            "the journal said the token was refused: no second POST"
        );
    }

    #[test]
    fn store_rewritten_in_place_does_not_fail_a_valid_cached_token() {
        let s = FakeServer::start();
        let h = Home::new();
        h.write_creds(A1, R1, now_ms() + HOUR);
        let pool = h.open(&s, "");
        assert_eq!(resolve(&pool).unwrap().access_token.expose(), A1);
        let good = std::fs::read(h.creds_path()).unwrap();
        // Another tool truncates and is half-way through rewriting the file in place.
        std::fs::write(h.creds_path(), &good[..good.len() / 2]).unwrap();
        assert_eq!(resolve(&pool).unwrap().access_token.expose(), A1);
        // A refresh must read the file under its lock: it cannot, so it neither POSTs nor
        // writes, and (docs/SPEC.md, "Resolve" step 5) the unexpired token is still served.
        let force = hap::ResolveRequest {
            force_refresh: true,
            ..Default::default()
        };
        assert_eq!(pool.resolve(&force).unwrap().access_token.expose(), A1);
        assert_eq!(
            std::fs::read(h.creds_path()).unwrap(),
            &good[..good.len() / 2]
        );
        assert_eq!(s.posts(), 0);
        // A new handle cannot start from it.
        assert_eq!(
            hap::Pool::open_json(Some(&h.config(&s, "x").to_string()))
                .err()
                .unwrap()
                .status,
            hap::Status::StoreCorrupt
        );
    }

    #[test]
    fn temp_files_of_dead_writers_are_removed() {
        let s = FakeServer::start();
        let h = Home::new();
        h.write_creds(A1, R1, now_ms() - 1000);
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let dir = h.creds_path().parent().unwrap().to_path_buf();
        // hap's temp names: "." + file name + ".hap-<pid>-<n>.tmp".
        let orphan = dir.join(format!("..credentials.json.hap-{dead}-0.tmp"));
        let live = dir.join(format!(
            "..credentials.json.hap-{}-0.tmp",
            std::process::id()
        ));
        std::fs::write(&orphan, b"{\"half").unwrap();
        std::fs::write(&live, b"{\"half").unwrap();
        assert!(resolve(&h.open(&s, "")).unwrap().refreshed);
        assert!(!orphan.exists(), "a dead writer's temp file is cleaned up");
        assert!(live.exists(), "a live writer's temp file is never touched");
    }

    /// A caller that swaps arguments (a token where an id, reason or message goes) must not get
    /// the token back from an error, the status document or the pool file, even with control
    /// characters inside it.
    #[test]
    fn tokens_in_caller_supplied_strings_never_come_back() {
        let s = FakeServer::start();
        let h = Home::new();
        h.write_creds(A1, R1, now_ms() + HOUR);
        let pool = h.open(&s, "");
        let t = resolve(&pool).unwrap();
        let leaks = |what: &str, text: &str| {
            let visible: String = text.chars().filter(|c| !c.is_control()).collect();
            assert!(
                !visible.contains("sk-ant-"),
                "{what} shows a token: {text:?}"
            );
        };
        let swapped = "sk-ant-oat01-swapped\u{7f}";
        for id in [swapped, "s\u{7f}k-ant-oat01-swapped"] {
            let req = hap::ResolveRequest {
                credential_id: Some(id.to_string()),
                ..Default::default()
            };
            let e = pool.resolve(&req).unwrap_err();
            assert_eq!(e.status, hap::Status::UnknownCredential);
            assert_eq!(e.credential_id, None);
            leaks("resolve error", &e.to_json().to_string());
            leaks("resolve error", &e.to_string());
            let f = json!({"credential_id": id, "status_code": 429});
            let e = pool
                .report_failure(&hap::Failure::from_json(Some(&f.to_string())).unwrap())
                .unwrap_err();
            assert_eq!(e.status, hap::Status::UnknownCredential);
            leaks("report error", &e.to_json().to_string());
        }
        let f = json!({"credential_id": t.credential_id, "status_code": 429,
                   "reason": "s\u{7f}k-ant-ort01-in-reason",
                   "message": "upstream said s\u{7f}k-ant-oat01-in-message\nand sk-ant-oat01-plain"});
        pool.report_failure(&hap::Failure::from_json(Some(&f.to_string())).unwrap())
            .unwrap();
        let status = pool.status().unwrap();
        leaks("status", &status.to_string());
        let row = &status["credentials"][0];
        assert_eq!(row["last_error_reason"], "[redacted]");
        leaks(
            "pool file",
            &std::fs::read_to_string(h.pool_path("")).unwrap(),
        );
    }
}
