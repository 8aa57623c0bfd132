//! Issue 10, the policy half: numbers that wrap, 401s right after a refresh, and the store
//! watch of a one-shot process. Real files and the real fake token server throughout; the
//! tests that look at this process's threads run in a child process of their own so that
//! the other tests' pools cannot be seen.

use crate::common::*;
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};

const HOUR: i64 = 3_600_000;

fn expect_invalid<T>(r: hap::Result<T>, needles: &[&str]) {
    let Err(e) = r else {
        panic!("INVALID_ARGUMENT expected, got a success");
    };
    assert_eq!(e.status, hap::Status::InvalidArgument, "{e}");
    for n in needles {
        assert!(e.message.contains(n), "{n:?} missing from: {}", e.message);
    }
}

fn failure(v: serde_json::Value) -> hap::Failure {
    hap::Failure::from_json(Some(&v.to_string())).unwrap()
}

mod numbers {
    //! Item 4: out-of-range numbers.
    use super::*;

    #[test]
    fn config_numbers_out_of_range_are_refused_naming_key_and_range() {
        let h = Home::new();
        h.write_creds(A1, R1, now_ms() + HOUR);
        let base = json!({"pool_path": h.pool_path(""), "credentials_path": h.creds_path()});
        let with = |key: &str, v: serde_json::Value| {
            let mut c = base.clone();
            c[key] = v;
            hap::Pool::open_json(Some(&c.to_string()))
        };
        // 2^63 turned into a negative skew: every expired token looked fresh.
        expect_invalid(
            with("refresh_skew_ms", json!(9_223_372_036_854_775_808u64)),
            &["refresh_skew_ms", "0 to 86400000"],
        );
        expect_invalid(
            with("refresh_skew_ms", json!(86_400_001)),
            &["refresh_skew_ms"],
        );
        expect_invalid(
            with("lock_timeout_ms", json!(u64::MAX)),
            &["lock_timeout_ms", "0 to 3600000"],
        );
        expect_invalid(
            with("http_timeout_ms", json!(0)),
            &["http_timeout_ms", "1 to 3600000"],
        );
        expect_invalid(with("http_timeout_ms", json!(1e300)), &["http_timeout_ms"]);
        // The bounds themselves are accepted.
        with("refresh_skew_ms", json!(86_400_000)).unwrap();
        with("lock_timeout_ms", json!(3_600_000)).unwrap();

        // A Config built in Rust (as the CLI builds one) is held to the same ranges.
        let cfg = hap::Config {
            refresh_skew_ms: 1 << 63,
            ..hap::Config::from_json_str(Some(&base.to_string())).unwrap()
        };
        expect_invalid(hap::Pool::open(cfg), &["refresh_skew_ms"]);
    }

    #[test]
    fn min_validity_of_2_pow_63_is_refused_not_an_expired_token_served() {
        let s = FakeServer::start();
        let h = Home::new();
        h.write_creds(A1, R1, now_ms() - 1000);
        let pool = h.open(&s, "");
        // Through the C ABI's JSON and through the Rust API the CLI uses.
        expect_invalid(
            hap::ResolveRequest::from_json(Some(r#"{"min_validity_ms": 9223372036854775808}"#)),
            &["min_validity_ms", "0 to 86400000"],
        );
        let req = hap::ResolveRequest {
            min_validity_ms: Some(1 << 63),
            ..Default::default()
        };
        expect_invalid(pool.resolve(&req), &["min_validity_ms"]);
        assert_eq!(s.posts(), 0);
        // In range, the expired token is refreshed as always.
        let t = resolve(&pool).unwrap();
        assert!(t.refreshed);
        assert_ne!(t.access_token.expose(), A1);
    }

    #[test]
    fn an_expiry_near_i64_min_is_expired_not_fresh_for_ever() {
        // What a wrapped `now + expires_in * 1000` writes: `at - now` wrapped to a huge margin
        // (or panicked in a debug build) and the token was served as fresh for ever.
        for at in [i64::MIN, i64::MIN + 1, -9_223_370_240_849_679_090] {
            let s = FakeServer::start();
            let h = Home::new();
            h.write_creds(A1, R1, at);
            let t = resolve(&h.open(&s, "")).unwrap();
            assert!(t.refreshed, "expiresAt {at}");
            assert_ne!(t.access_token.expose(), A1);
            assert_eq!(s.posts(), 1);
        }
    }

    #[test]
    fn failure_times_out_of_range_are_refused() {
        let s = FakeServer::start();
        let h = Home::new();
        h.write_creds(A1, R1, now_ms() + HOUR);
        let pool = h.open(&s, "");
        let id = resolve(&pool).unwrap().credential_id;
        let from_json = |v: serde_json::Value| hap::Failure::from_json(Some(&v.to_string()));
        expect_invalid(
            from_json(json!({"credential_id": id, "status_code": 429, "retry_after_s": 1e300})),
            &["retry_after_s", "0 to 31536000"],
        );
        expect_invalid(
            from_json(json!({"credential_id": id, "status_code": 429, "reset_at": 1e300})),
            &["reset_at", "9999"],
        );
        expect_invalid(
            from_json(json!({"credential_id": id, "status_code": 429, "reset_at": -5})),
            &["reset_at"],
        );
        // Built in Rust, as `hap report` builds it.
        let mut f = failure(json!({"credential_id": id, "status_code": 429}));
        f.retry_after_s = Some(f64::INFINITY);
        expect_invalid(pool.report_failure(&f), &["retry_after_s"]);
        f.retry_after_s = None;
        f.reset_at_s = Some(f64::NAN);
        expect_invalid(pool.report_failure(&f), &["reset_at"]);
        // Nothing was benched by the refused reports.
        assert_eq!(h.rows("")[0]["last_status"], json!(null));
        // A reset a year ahead is accepted and capped at 24 h, as documented.
        f.reset_at_s = Some(now_ms() as f64 / 1000.0 + 365.0 * 86400.0);
        let mut other = h.rows("")[0].clone();
        other["id"] = json!("0f0f0f");
        other["source"] = json!("manual");
        other["access_token"] = json!("sk-ant-oat01-fake-other");
        let mut doc = h.pool("");
        doc["credential_pool"]["anthropic"]
            .as_array_mut()
            .unwrap()
            .push(other);
        write_json(&h.pool_path(""), &doc);
        let o = pool.report_failure(&f).unwrap();
        assert_eq!(o.last_status, "exhausted");
        let until = o.available_at_ms.unwrap();
        assert!(until <= now_ms() + 24 * HOUR + 5_000, "{until}");
    }

    /// A pool file another tool wrote with numbers at the edges of their types.
    #[test]
    fn hostile_row_numbers_neither_wrap_nor_bench_for_ever() {
        let s = FakeServer::start();
        let h = Home::new();
        h.write_creds(A1, R1, now_ms() + HOUR);
        let row = |id: &str, extra: serde_json::Value| {
            let mut r = json!({"id": id, "label": id, "auth_type": "oauth", "source": "manual",
            "access_token": format!("sk-ant-oat01-fake-{id}"), "refresh_token": format!("sk-ant-ort01-fake-{id}"),
            "expires_at_ms": now_ms() + HOUR});
            r.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            r
        };
        write_json(
            &h.pool_path(""),
            &json!({"credential_pool": {"anthropic": [
                // Seeding the login after this row took priority + 1: overflow.
                row("aaaaaa", json!({"priority": i64::MAX, "request_count": u64::MAX})),
                // Benched "since" 1e300 seconds: cooling until i64::MAX, i.e. for ever.
                row("bbbbbb", json!({"priority": 0, "last_status": "exhausted",
                    "last_status_at": 1e300, "last_error_code": 429})),
            ]}}),
        );
        let mut cfg = h.config(&s, "");
        cfg["strategy"] = json!("least_used");
        let pool = open_with(cfg);
        // least_used adds this handle's picks to request_count u64::MAX: overflow.
        for _ in 0..3 {
            resolve(&pool).unwrap();
        }
        let status = pool.status().unwrap();
        let creds = status["credentials"].as_array().unwrap();
        let b = creds
            .iter()
            .find(|c| c["credential_id"] == "bbbbbb")
            .unwrap();
        let until = b["available_at_ms"].as_i64().expect("still cooling");
        assert!(
            until <= now_ms() + HOUR + 5_000,
            "a bench 'since' the far future counts from now: {until}"
        );
        let a = creds
            .iter()
            .find(|c| c["credential_id"] == "aaaaaa")
            .unwrap();
        assert_eq!(a["request_count"], json!(u64::MAX));
        assert_eq!(s.posts(), 0);
    }
}

mod after_refresh_401 {
    //! Item 5: a 401 right after a refresh.
    use super::*;

    /// Expired login -> resolve refreshes -> the API refuses that new token (401). That is a
    /// first 401 on the token: one refresh, not a bench. Only a 401 on the token the 401's
    /// refresh produced benches the (only) credential, for at most 60 s, and when the bench
    /// ends the refused token is refreshed, not served again.
    fn first_401_after_an_expiry_refresh(profile_dir: bool) {
        let s = FakeServer::start();
        let h = Home::new();
        h.write_creds(A1, R1, now_ms() - 1000);
        let mut cfg = h.config(&s, "");
        if !profile_dir {
            cfg["pool_path"] = json!(null);
        }
        let pool = open_with(cfg.clone());
        let t1 = resolve(&pool).unwrap();
        assert!(t1.refreshed);
        assert_eq!(s.posts(), 1);
        let f = || failure(json!({"credential_id": t1.credential_id, "status_code": 401}));

        let o = pool.report_failure(&f()).unwrap();
        assert_eq!(
            o.last_status, "refresh_pending",
            "a first 401 on a freshly refreshed token gets its one refresh"
        );
        let t2 = resolve(&pool).expect("no NO_CREDENTIAL after a first 401");
        assert!(t2.refreshed);
        assert_ne!(t2.access_token, t1.access_token);
        assert_eq!(s.posts(), 2);

        // A 401 on the token that refresh produced: benched, sole credential, <= 60 s. With a
        // pool file, a new handle (another process) judges it the same way.
        let judge = if profile_dir {
            let p2 = open_with(cfg.clone());
            // The new handle served nothing yet: the report is about the store's token (t2).
            p2.report_failure(&f()).unwrap()
        } else {
            pool.report_failure(&f()).unwrap()
        };
        assert_eq!(judge.last_status, "exhausted");
        let until = judge.available_at_ms.unwrap();
        assert!(until <= now_ms() + 60_000, "sole credential: <= 60 s");
        if profile_dir {
            let e = resolve(&open_with(cfg.clone())).unwrap_err();
            assert_eq!(e.status, hap::Status::NoCredential);
            // After the bench, the refused token is refreshed rather than served again.
            let mut doc = h.pool("");
            doc["credential_pool"]["anthropic"][0]["last_status_at"] =
                json!(now_ms() as f64 / 1000.0 - 61.0);
            write_json(&h.pool_path(""), &doc);
            let t3 = resolve(&open_with(cfg)).unwrap();
            assert!(t3.refreshed);
            assert_ne!(t3.access_token, t2.access_token);
            assert_eq!(s.posts(), 3);
        } else {
            assert_eq!(
                resolve(&pool).unwrap_err().status,
                hap::Status::NoCredential
            );
        }
    }

    #[test]
    fn first_401_after_an_expiry_refresh_gets_a_refresh_with_a_pool_file() {
        first_401_after_an_expiry_refresh(true);
    }

    #[test]
    fn first_401_after_an_expiry_refresh_gets_a_refresh_without_a_pool_file() {
        first_401_after_an_expiry_refresh(false);
    }
}

mod store_watch {
    //! Item 16: the store watch of a one-shot process.
    use super::*;

    fn threads() -> Vec<String> {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .flatten()
            .map(|t| {
                std::fs::read_to_string(t.path().join("comm"))
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            })
            .collect()
    }

    /// Waits until `ok` holds for this process's threads (a new thread names itself a moment
    /// after it starts).
    fn until_threads(what: &str, ok: impl Fn(&[String]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let t = threads();
            if ok(&t) {
                return;
            }
            assert!(Instant::now() < deadline, "{what}: threads {t:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Runs one `#[ignore]`d test of this file in a child process (its own threads only).
    /// `name` is the test's name inside this module; the harness knows it by its module path
    /// (`policy::<name>`), and `--exact` wants that path.
    fn in_child(name: &str, envs: &[(&str, &str)]) {
        let path = module_path!().split_once("::").map_or("", |(_, m)| m);
        let full = format!("{path}::{name}");
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                &full,
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .envs(envs.iter().copied())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name} failed in its child:\n{text}");
        assert!(text.contains("1 passed"), "{name} did not run:\n{text}");
    }

    #[test]
    #[ignore = "run by one_shot_resolve_starts_no_watch_and_free_does_not_wait in a child"]
    fn child_watch_lifecycle() {
        let s = FakeServer::start();
        let h = Home::new();
        h.write_creds(A1, R1, now_ms() + HOUR);
        std::fs::create_dir_all(h.pool_path("").parent().unwrap()).unwrap();
        let before = threads().len();
        let pool = h.open(&s, "");
        resolve(&pool).unwrap();
        assert_eq!(
            threads().len(),
            before,
            "one resolve (a one-shot process) starts no thread: {:?}",
            threads()
        );
        resolve(&pool).unwrap();
        until_threads("a second resolve starts the watch", |t| {
            t.iter().any(|n| n == "hap-store-watch")
        });
        // HAP_FAULT=watch_teardown holds the watch thread 2 s before it closes its descriptor:
        // a drop that joined it would return only after the thread is gone.
        drop(pool);
        assert_eq!(
            threads().len(),
            before + 1,
            "the pool was dropped without waiting for the watch thread"
        );
        until_threads("the watch thread ends by itself", |t| t.len() == before);
    }

    #[test]
    fn one_shot_resolve_starts_no_watch_and_free_does_not_wait() {
        in_child("child_watch_lifecycle", &[("HAP_FAULT", "watch_teardown")]);
    }
}

mod race_py {
    //! Item 17: bench/race.py on its own.
    use super::*;

    /// Run on its own (no bench/run_all.sh before it), race.py died with a traceback about
    /// bench/build/race_worker. It now builds its C worker (here into a temp dir) against the
    /// libhap this `cargo test` built, and runs one race of one process.
    #[test]
    fn race_py_builds_its_worker_and_runs_on_its_own() {
        let exe = std::env::current_exe().unwrap();
        let lib = exe.parent().unwrap().parent().unwrap().join("libhap.so");
        assert!(
            lib.exists(),
            "{} missing: `cargo build --features fault-injection --lib` first (scripts/test does)",
            lib.display()
        );
        let build = tempfile::tempdir().unwrap();
        let out = Command::new("python3")
            .arg(repo().join("bench/race.py"))
            .args([
                "--tools",
                "hap-c",
                "--n",
                "1",
                "--reps",
                "1",
                "--latency-ms",
                "0",
            ])
            .env("HAP_BENCH_BUILD_DIR", build.path())
            .env("HAP_LIBRARY_PATH", &lib)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "race.py failed:\n{stdout}\n{stderr}");
        assert!(stderr.contains("race.py: building:"), "{stderr}");
        assert!(build.path().join("race_worker").exists());
        assert!(stdout.contains("hap-c"), "{stdout}");
    }
}
