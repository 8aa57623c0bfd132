//! `hap agent`, its socket, the library's `agent` config key, the SDK profile sink and
//! `hap exec` (issue 15), run for real: the `hap` binary, the fake token server, real
//! files, real signals.
//!
//! The tests marked `#[ignore]` need what only the `agent` suite of scripts/test provides:
//! a Python with the real `anthropic` SDK (`HAP_AGENT_PYTHON`), libhap built for the ctypes
//! binding, root (to create a throwaway user) and `systemd-analyze`. Run them with
//! `cargo test --features fault-injection --test agent -- --ignored`.

#[path = "common/agent.rs"]
mod agent_common;
mod common;

use agent_common::*;
use common::*;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const HOUR_MS: i64 = 3_600_000;

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
}

/// No refresh token, real or fake, in `text`.
fn assert_no_refresh_token(what: &str, text: &str) {
    for needle in ["ort01", "refresh_token", R1, R2] {
        assert!(!text.contains(needle), "{what} holds {needle}:\n{text}");
    }
}

/// A home whose Claude Code login expires in `expires_in_ms`; the config every process of
/// the test shares (the agent's has `user_agent` "hap-agent" so its POSTs can be told apart).
fn setup(server: &FakeServer, expires_in_ms: i64) -> (Home, Value) {
    let home = Home::new();
    home.write_creds(A1, R1, now_ms() + expires_in_ms);
    let cfg = home.config(server, "");
    (home, cfg)
}

fn agent_cfg(cfg: &Value) -> Value {
    let mut c = cfg.clone();
    c["user_agent"] = json!("hap-agent");
    c
}

fn with(cfg: &Value, key: &str, v: Value) -> Value {
    let mut c = cfg.clone();
    c[key] = v;
    c
}

/// `examples/hap_worker` (one resolve) in this test's home and runtime directory.
fn spawn_worker_in(h: &Home, cfg: &Value, xdg: Option<&Path>) -> std::process::Child {
    let mut c = Command::new(worker_bin());
    c.arg(cfg.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    home_env(&mut c, h, xdg);
    c.spawn().unwrap()
}

mod socket {
    //! The socket: what `hap agent` serves, to whom (its directory's and socket's modes, the
    //! peer's uid), one agent per directory, SIGTERM's clean-up.
    use super::*;

    #[test]
    fn socket_serves_the_abi_privately_and_never_a_refresh_token() {
        let s = FakeServer::start();
        let (h, cfg) = setup(&s, HOUR_MS);
        let xdg = runtime_dir(&h, "xdg");
        let a = AgentProc::start(&h, &agent_cfg(&cfg), Some(&xdg), &[], &[]);
        let dir = xdg.join("hap");
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("agent.sock")), 0o600);
        assert!(fs::symlink_metadata(dir.join("agent.sock"))
            .unwrap()
            .file_type()
            .is_socket());
        assert_eq!(mode(&dir.join("agent.json")), 0o600);

        let t = a.ask(r#"{"op": "resolve", "id": 1, "min_validity_ms": 60000}"#);
        assert_eq!(t["ok"], true, "{t}");
        assert_eq!(t["id"], 1);
        assert_eq!(t["result"]["access_token"], A1);
        assert_eq!(t["result"]["refreshed"], false);
        let id = t["result"]["credential_id"].as_str().unwrap().to_string();
        let keys: HashSet<&str> = t["result"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            HashSet::from([
                "access_token",
                "credential_id",
                "label",
                "source",
                "auth_type",
                "expires_at_ms",
                "refreshed"
            ])
        );
        // The ABI's own validation, naming the key.
        let bad = a.ask(r#"{"op": "resolve", "force": true}"#);
        assert_eq!(bad["ok"], false);
        assert_eq!(bad["error"]["name"], "HAP_STATUS_INVALID_ARGUMENT");
        assert!(bad["error"]["message"].as_str().unwrap().contains("force"));
        let unknown = a.ask(r#"{"op": "resolve", "credential_id": "zzz999"}"#);
        assert_eq!(unknown["error"]["name"], "HAP_STATUS_UNKNOWN_CREDENTIAL");
        let op = a.ask(r#"{"op": "refresh_everything"}"#);
        assert!(op["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown op"));
        let garbage = a.ask("not json");
        assert_eq!(garbage["error"]["status"], 1);

        let st = a.ask(r#"{"op": "status"}"#);
        assert_eq!(st["result"]["credentials"][0]["credential_id"], id.as_str());
        assert_eq!(st["result"]["pool_path"], json!(h.pool_path("")));
        let r = a.ask(&format!(
        r#"{{"op": "report", "credential_id": "{id}", "status_code": 429, "retry_after_s": 30}}"#
    ));
        assert_eq!(r["result"]["last_status"], "exhausted", "{r}");
        let info = a.ask(r#"{"op": "agent"}"#);
        assert_eq!(info["result"]["pid"], a.child.id());
        assert_eq!(info["result"]["socket"], json!(dir.join("agent.sock")));
        for v in [&t, &bad, &st, &r, &info] {
            assert_no_refresh_token("a socket answer", &v.to_string());
        }
        let mut without_token = t.clone();
        without_token["result"]["access_token"] = json!("");
        assert_no_refresh_token("the resolve answer", &without_token.to_string());
        // Never a token in the agent's own log or state file.
        assert!(!a.log().contains("sk-ant-"), "{}", a.log());
        assert!(!fs::read_to_string(dir.join("agent.json"))
            .unwrap()
            .contains("sk-ant-"));

        // hap status and hap doctor show it.
        let mut st = Command::new(hap_bin());
        home_env(&mut st, &h, Some(&xdg));
        let out = st.args(["status"]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("running (pid {}", a.child.id())),
            "{text}"
        );
        assert!(text.contains("next refresh in"), "{text}");
        let mut dr = Command::new(hap_bin());
        home_env(&mut dr, &h, Some(&xdg));
        let doc: Value =
            serde_json::from_slice(&dr.args(["doctor", "--json"]).output().unwrap().stdout)
                .unwrap();
        let f = doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["check"] == "agent")
            .cloned()
            .unwrap();
        assert_eq!(f["level"], "ok", "{f}");
        assert!(f["what"].as_str().unwrap().contains("hap agent running"));
    }

    #[test]
    fn a_second_agent_for_the_same_directory_is_refused_and_sigterm_cleans_up() {
        let s = FakeServer::start();
        let (h, cfg) = setup(&s, HOUR_MS);
        let xdg = runtime_dir(&h, "xdg");
        let mut a = AgentProc::start(&h, &agent_cfg(&cfg), Some(&xdg), &[], &[]);
        let mut second = Command::new(hap_bin());
        home_env(&mut second, &h, Some(&xdg));
        let out = second
            .args(["agent", "--token-url", &s.token_url()])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(15), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("another hap agent already serves")
                && err.contains(&format!("pid {}", a.child.id())),
            "{err}"
        );
        // The first is untouched; SIGINT (Ctrl-C in a terminal) stops it as SIGTERM does.
        assert_eq!(a.ask(r#"{"op": "agent"}"#)["ok"], true);
        a.signal(libc::SIGINT);
        let st = a.wait(Duration::from_secs(60));
        assert!(st.success(), "{st}: {}", a.log());
        assert!(!xdg.join("hap/agent.sock").exists());
        let state = read_json(&xdg.join("hap/agent.json"));
        assert!(state["stopped_at_ms"].is_i64(), "{state}");
        assert_eq!(a.events("stopped").len(), 1);
        assert_eq!(a.events("stopping")[0]["signal"], "SIGINT");
    }

    #[test]
    fn a_directory_another_user_could_have_made_is_refused() {
        let s = FakeServer::start();
        let (h, cfg) = setup(&s, HOUR_MS);
        let xdg = runtime_dir(&h, "xdg");
        fs::create_dir(xdg.join("hap")).unwrap();
        fs::set_permissions(xdg.join("hap"), fs::Permissions::from_mode(0o777)).unwrap();
        let mut c = Command::new(hap_bin());
        home_env(&mut c, &h, Some(&xdg));
        let out = c
            .args(["agent", "--token-url", &s.token_url()])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(17), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("has mode 0777") && err.contains("rm -rf"),
            "{err}"
        );
        // A client does not connect through it either: `require` refuses, naming why.
        let (v, _) = worker_result(spawn_worker_in(
            &h,
            &with(&cfg, "agent", json!("require")),
            Some(&xdg),
        ));
        assert_eq!(v["error"], "HAP_STATUS_UNAVAILABLE", "{v}");
        assert!(v["message"].as_str().unwrap().contains("mode 0777"), "{v}");
    }
}

mod agent_key {
    //! The library's `agent` config key: `require`, `prefer`, and a pool that defers to the agent
    //! and never opens a store.
    use super::*;

    /// inotify on the store directories: which of `names` were opened while `f` ran.
    fn opened_during(dirs: &[&Path], names: &[&str], f: impl FnOnce()) -> Vec<String> {
        // SAFETY: plain inotify calls on a descriptor this function owns and closes.
        unsafe {
            let fd = libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC);
            assert!(fd >= 0);
            for d in dirs {
                let c = std::ffi::CString::new(d.to_str().unwrap()).unwrap();
                assert!(libc::inotify_add_watch(fd, c.as_ptr(), libc::IN_OPEN) >= 0);
            }
            f();
            let mut seen = Vec::new();
            let mut buf = [0u8; 65536];
            loop {
                let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
                if n <= 0 {
                    break;
                }
                let mut off = 0usize;
                while off < n as usize {
                    let ev = &*(buf.as_ptr().add(off) as *const libc::inotify_event);
                    let name_len = ev.len as usize;
                    let name = &buf[off + 16..off + 16 + name_len];
                    let name = String::from_utf8_lossy(name)
                        .trim_end_matches('\0')
                        .to_string();
                    if names.contains(&name.as_str()) {
                        seen.push(name);
                    }
                    off += 16 + name_len;
                }
            }
            libc::close(fd);
            seen
        }
    }

    #[test]
    fn a_pool_that_defers_to_the_agent_never_opens_a_store() {
        let s = FakeServer::start();
        let (h, cfg) = setup(&s, HOUR_MS);
        let xdg = runtime_dir(&h, "xdg");
        let a = AgentProc::start(&h, &agent_cfg(&cfg), Some(&xdg), &[], &[]);
        // Let the agent adopt the login into the pool file and settle.
        assert_eq!(a.ask(r#"{"op": "resolve"}"#)["ok"], true);
        let claude = h.creds_path().parent().unwrap().to_path_buf();
        let hermes = h.pool_path("").parent().unwrap().to_path_buf();
        let stores = [".credentials.json", "auth.json"];
        for (mode_name, expect_opened) in [("require", false), ("prefer", false), ("off", true)] {
            let c = with(&cfg, "agent", json!(mode_name));
            let mut result = Value::Null;
            let opened = opened_during(&[&claude, &hermes], &stores, || {
                result = worker_result(spawn_worker_in(&h, &c, Some(&xdg))).0;
            });
            assert!(result["token_sha256"].is_string(), "{mode_name}: {result}");
            assert_eq!(
                !opened.is_empty(),
                expect_opened,
                "agent={mode_name}: stores opened: {opened:?}"
            );
        }
    }

    #[test]
    fn without_an_agent_require_refuses_and_prefer_does_the_work() {
        let s = FakeServer::start();
        let (h, cfg) = setup(&s, -1000);
        let xdg = runtime_dir(&h, "xdg");
        let (v, _) = worker_result(spawn_worker_in(
            &h,
            &with(&cfg, "agent", json!("require")),
            Some(&xdg),
        ));
        assert_eq!(v["error"], "HAP_STATUS_UNAVAILABLE", "{v}");
        let msg = v["message"].as_str().unwrap();
        assert!(
            msg.contains("\"require\"") && msg.contains("hap agent") && msg.contains("agent.sock"),
            "{msg}"
        );
        assert_eq!(s.posts(), 0, "require never refreshes by itself");
        let (v, e) = worker_result(spawn_worker_in(
            &h,
            &with(&cfg, "agent", json!("prefer")),
            Some(&xdg),
        ));
        assert_eq!(v["refreshed"], true, "{v} {e}");
        assert_eq!(s.posts(), 1);
    }

    #[test]
    fn a_401_through_the_agent_is_judged_against_the_callers_token() {
        // Two clients of one agent: A got the old token, the login rotated, B got the new one.
        // A's 401 for the old token must not mark the new one rejected.
        let s = FakeServer::start();
        let (h, cfg) = setup(&s, HOUR_MS);
        let xdg = runtime_dir(&h, "xdg");
        let a = AgentProc::start(
            &h,
            &agent_cfg(&cfg),
            Some(&xdg),
            &["--lead", "1s", "--jitter", "0s"],
            &[],
        );
        let mut old = a.ask(r#"{"op": "resolve"}"#)["result"].clone();
        let id = old["credential_id"].as_str().unwrap().to_string();
        let fp = format!("sha256:{}", sha16(old["access_token"].as_str().unwrap()));
        old["access_token"] = json!("");
        let new = a.ask(r#"{"op": "resolve", "force_refresh": true}"#);
        assert_eq!(new["result"]["refreshed"], true, "{new}");
        let r = a.ask(&format!(
        r#"{{"op": "report", "credential_id": "{id}", "status_code": 401, "token_fingerprint": "{fp}"}}"#
    ));
        assert_eq!(r["result"]["last_status"], "ok", "{r}");
        let st = a.ask(r#"{"op": "status"}"#);
        assert_eq!(st["result"]["credentials"][0]["last_status"], "ok", "{st}");
        // The same report about the token the store holds now asks for a refresh.
        let now_fp = format!(
            "sha256:{}",
            sha16(new["result"]["access_token"].as_str().unwrap())
        );
        let r = a.ask(&format!(
        r#"{{"op": "report", "credential_id": "{id}", "status_code": 401, "token_fingerprint": "{now_fp}"}}"#
    ));
        // A first 401 on a token gets one refresh, even right after a refresh that no 401 asked
        // for (issue 10, item 5; docs/ABI.md, the failure result): only a 401 on the token a
        // 401-triggered refresh produced benches the credential.
        assert_eq!(r["result"]["last_status"], "refresh_pending", "{r}");
    }
}

mod schedule {
    //! The agent's refresh schedule: one POST per rotation between agents, SIGTERM mid-POST.
    use super::*;

    #[test]
    fn two_agents_on_one_login_make_one_post_per_rotation() {
        let s = FakeServer::start();
        s.set_expires_in(3);
        let (h, cfg) = setup(&s, 1500);
        let x1 = runtime_dir(&h, "xdg1");
        let x2 = runtime_dir(&h, "xdg2");
        let args = ["--lead", "2s", "--jitter", "300ms", "--poll", "100ms"];
        let mut a1 = AgentProc::start(&h, &agent_cfg(&cfg), Some(&x1), &args, &[]);
        let mut a2 = AgentProc::start(&h, &agent_cfg(&cfg), Some(&x2), &args, &[]);
        assert!(
            wait_until(Duration::from_secs(40), || s.posts() >= 5),
            "{}\n{}",
            a1.log(),
            a2.log()
        );
        assert!(a1.term().success());
        assert!(a2.term().success());
        let stats = s.stats();
        let log = stats["log"].as_array().unwrap();
        assert_eq!(stats["invalid_grant"], 0, "{stats}");
        assert!(log.iter().all(|p| p["status"] == 200), "{stats}");
        // One POST per rotation: every POST spent a different refresh token.
        let spent: HashSet<&str> = log
            .iter()
            .map(|p| p["refresh_token_sha256"].as_str().unwrap())
            .collect();
        assert_eq!(spent.len(), log.len(), "{stats}");
        let posts = |a: &AgentProc| a.events("refreshed").len();
        assert_eq!(posts(&a1) + posts(&a2), log.len());
        // The other agent saw a rotation and did not repeat it: at a status poll
        // (`rotated_elsewhere`) or, when its own due time came first (a loaded machine), by
        // adopting it in the refresh transaction (`adopted`).
        let saw = |a: &AgentProc| a.events("rotated_elsewhere").len() + a.events("adopted").len();
        assert!(saw(&a1) + saw(&a2) > 0, "{}\n{}", a1.log(), a2.log());
        // Every pair reached the store.
        let journal = journalled_tokens(&h);
        assert!(journal.iter().all(|(_, _, committed)| *committed));
        assert_eq!(journal.last().unwrap().0, h.creds_access());
    }

    #[test]
    fn sigterm_while_the_post_is_in_flight_finishes_and_journals_then_releases_every_lock() {
        let s = FakeServer::start();
        let (h, cfg) = setup(&s, 1000);
        s.script(json!([{"delay_ms": 2000}]));
        let xdg = runtime_dir(&h, "xdg");
        let mut a = AgentProc::start(&h, &agent_cfg(&cfg), Some(&xdg), &["--lead", "10s"], &[]);
        assert!(wait_until(Duration::from_secs(20), || s.posts() == 1));
        a.signal(libc::SIGTERM);
        let st = a.wait(Duration::from_secs(60));
        assert!(st.success(), "{st}\n{}", a.log());
        // The answer was not dropped: journalled, committed, in the store.
        assert_ne!(h.creds_access(), A1);
        let journal = journalled_tokens(&h);
        assert_eq!(journal.len(), 1);
        assert!(journal[0].2, "committed");
        assert_eq!(journal[0].0, h.creds_access());
        let stopping = a.events("stopping");
        let refreshed = a.events("refreshed");
        assert_eq!(refreshed.len(), 1, "{}", a.log());
        assert!(
            stopping[0]["ts"].as_str() < refreshed[0]["ts"].as_str()
                || stopping[0]["ts"] == refreshed[0]["ts"],
            "the signal came while the POST was in flight:\n{}",
            a.log()
        );
        // Every lock released: Claude Code's directory is gone, the flock is free.
        assert!(!h
            .creds_path()
            .with_file_name(".oauth_refresh.lock")
            .exists());
        let lock = fs::File::open(h.creds_path().with_file_name(".credentials.lock")).unwrap();
        // SAFETY: flock on a descriptor this test owns.
        let rc = unsafe {
            libc::flock(
                std::os::fd::AsRawFd::as_raw_fd(&lock),
                libc::LOCK_EX | libc::LOCK_NB,
            )
        };
        assert_eq!(rc, 0, "the credentials lock is free");
        assert_eq!(s.posts(), 1);
    }
}

mod crashes {
    //! Crashes (HAP_FAULT, feature fault-injection): the agent SIGKILLed at each point of its
    //! refresh, then restarted.
    use super::*;

    #[cfg(feature = "fault-injection")]
    fn killed_at(point: &str) -> (FakeServer, Home, Value, PathBuf, AgentProc) {
        let s = FakeServer::start();
        let (h, cfg) = setup(&s, 1000);
        let xdg = runtime_dir(&h, "xdg");
        // Not waited for: it may die at its first refresh before the socket is ever asked.
        let argv: Vec<String> = ["agent", "--log-format", "json", "--lead", "10s"]
            .map(String::from)
            .to_vec();
        let mut dying = AgentProc::spawn(
            &h,
            &agent_cfg(&cfg),
            Some(&xdg),
            &hap_bin(),
            &argv,
            &[("HAP_FAULT", point)],
            false,
        );
        let st = dying.wait(Duration::from_secs(30));
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(st.signal(), Some(libc::SIGKILL), "{st}: {}", dying.log());
        // Whatever instant it died at, the store parses and kept every foreign key.
        let c = h.creds();
        assert_eq!(c["claudeAiOauth"]["subscriptionType"], "max");
        assert_eq!(c["mcpOAuth"], json!({"keep": "me"}));
        // Restarted: the stale socket is replaced, the lock directory taken over.
        let again = AgentProc::start(&h, &agent_cfg(&cfg), Some(&xdg), &["--lead", "10s"], &[]);
        // A token other than A1: while A1 has not expired, a resolve whose refresh must wait
        // (the dead agent's journal record says its POST may have gone out) still serves A1,
        // which is no evidence that the restarted agent recovered anything.
        assert!(
            wait_until(Duration::from_secs(20), || {
                let r = again.ask(r#"{"op": "resolve", "min_validity_ms": 10000}"#);
                r["ok"] == true && r["result"]["access_token"] != A1
            }),
            "{}",
            again.log()
        );
        (s, h, cfg, xdg, again)
    }

    #[cfg(feature = "fault-injection")]
    #[test]
    fn agent_killed_before_its_post_then_restarted_loses_nothing() {
        let (s, h, _, _, again) = killed_at("before_post");
        assert_eq!(s.posts(), 1, "the restarted agent made the one POST");
        // The socket answers as soon as the refresh is done; the scheduler that did it logs
        // "refreshed" a moment later (20 ms seen under load): wait for the line, then count.
        wait_until(Duration::from_secs(10), || {
            !again.events("refreshed").is_empty()
        });
        assert_eq!(again.events("refreshed").len(), 1, "{}", again.log());
        assert_ne!(h.creds_access(), A1);
    }

    #[cfg(feature = "fault-injection")]
    #[test]
    fn agent_killed_after_the_journal_fsync_then_restarted_commits_the_pair() {
        let (s, h, _, _, again) = killed_at("after_journal");
        assert_eq!(
            s.posts(),
            1,
            "no second POST: the journalled pair was committed"
        );
        assert!(again.events("refreshed").is_empty(), "{}", again.log());
        // The pair is in the store first, then the entry is marked committed.
        assert!(wait_until(Duration::from_secs(10), || journalled_tokens(
            &h
        )
        .iter()
        .all(|e| e.2)));
        let journal = journalled_tokens(&h);
        assert_eq!(journal.len(), 1);
        assert_eq!(h.creds_access(), journal[0].0);
    }

    #[cfg(feature = "fault-injection")]
    #[test]
    fn agent_killed_after_the_commit_then_restarted_takes_the_lock_over() {
        let (s, h, _, _, again) = killed_at("after_commit");
        assert_eq!(s.posts(), 1);
        assert!(again.events("refreshed").is_empty(), "{}", again.log());
        // The dead agent never released Claude Code's lock directory; its owner file says so,
        // and the next refresh takes it over at once instead of waiting 60 s for it to go stale.
        let lock_dir = h.creds_path().with_file_name(".oauth_refresh.lock");
        assert!(lock_dir.exists());
        let t0 = std::time::Instant::now();
        let r = again.ask(r#"{"op": "resolve", "force_refresh": true}"#);
        assert_eq!(r["result"]["refreshed"], true, "{r}");
        assert!(t0.elapsed() < Duration::from_secs(10));
        assert!(!lock_dir.exists());
        assert_eq!(s.posts(), 2);
    }

    #[test]
    fn agent_killed_while_its_post_is_in_flight_loses_the_login_and_says_so() {
        // docs/AGENT.md, "Stopping and crashes": the one window nothing covers. The server
        // spends the refresh token and answers a process that is gone; nothing reached the
        // journal. The restarted agent finds the token refused, leaves the store as it was,
        // marks the credential dead and logs REAUTH_REQUIRED: log in again.
        let s = FakeServer::start();
        let (h, cfg) = setup(&s, 1000);
        s.script(json!([{"delay_ms": 1500}]));
        let xdg = runtime_dir(&h, "xdg");
        let mut a = AgentProc::start(&h, &agent_cfg(&cfg), Some(&xdg), &["--lead", "10s"], &[]);
        assert!(wait_until(Duration::from_secs(20), || s.posts() == 1));
        a.signal(libc::SIGKILL);
        a.wait(Duration::from_secs(10));
        // The server finishes the request it holds: the token is spent.
        assert!(wait_until(Duration::from_secs(10), || s.stats()["issued"] == 1));
        let before = fs::read(h.creds_path()).unwrap();
        let again = AgentProc::start(&h, &agent_cfg(&cfg), Some(&xdg), &["--lead", "10s"], &[]);
        assert!(
            wait_until(Duration::from_secs(30), || !again
                .events("refresh_failed")
                .is_empty()),
            "{}",
            again.log()
        );
        let failed = &again.events("refresh_failed")[0];
        assert_eq!(failed["status"], "HAP_STATUS_REAUTH_REQUIRED", "{failed}");
        assert_eq!(
            fs::read(h.creds_path()).unwrap(),
            before,
            "the store is left as it was"
        );
        assert_eq!(s.stats()["invalid_grant"], 1);
        let st = again.ask(r#"{"op": "status"}"#);
        assert_eq!(
            st["result"]["credentials"][0]["last_status"], "dead",
            "{st}"
        );
        assert_eq!(
            again.ask(r#"{"op": "agent"}"#)["result"]["last_error"]["status"],
            "HAP_STATUS_REAUTH_REQUIRED"
        );
    }
}

mod sdk_profile {
    //! The SDK profile sink: the file the agent keeps current for the Anthropic SDKs.
    use super::*;

    #[test]
    fn the_sdk_profile_follows_every_rotation_and_touches_no_other_profile() {
        let s = FakeServer::start();
        let (h, cfg) = setup(&s, HOUR_MS);
        let anthropic = h.dir.path().join("anthropic");
        // Another profile, and the active-profile pointer: never touched.
        write_json(
            &anthropic.join("configs/default.json"),
            &json!({"authentication": {"type": "user_oauth", "client_id": "x"}}),
        );
        write_json(
            &anthropic.join("credentials/default.json"),
            &json!({"access_token": "other", "refresh_token": "other-r"}),
        );
        fs::write(anthropic.join("active_config"), "default\n").unwrap();
        let others = [
            "configs/default.json",
            "credentials/default.json",
            "active_config",
        ]
        .map(|p| (p, fs::read(anthropic.join(p)).unwrap()));
        let xdg = runtime_dir(&h, "xdg");
        let a = AgentProc::start(
            &h,
            &agent_cfg(&cfg),
            Some(&xdg),
            &["--sdk-profile", "--poll", "100ms"],
            &[],
        );
        let creds = anthropic.join("credentials/hap.json");
        assert!(wait_until(Duration::from_secs(10), || creds.exists()));
        let read = || read_json(&creds);
        assert_eq!(read()["access_token"], A1);
        // Another process rotates the login (here: a library user forcing a refresh).
        let (v, _) = worker_result(spawn_worker_in(&h, &cfg, Some(&xdg)));
        assert!(v["token_sha256"].is_string());
        let mut w = Command::new(hap_bin());
        home_env(&mut w, &h, Some(&xdg));
        let out = w
            .args(["token", "--force-refresh", "--token-url", &s.token_url()])
            .output()
            .unwrap();
        assert!(out.status.success());
        let rotated = String::from_utf8(out.stdout).unwrap().trim().to_string();
        assert!(
            wait_until(Duration::from_secs(10), || read()["access_token"]
                == rotated.as_str()),
            "{}",
            a.log()
        );
        let c = read();
        let exp_ms = h.creds()["claudeAiOauth"]["expiresAt"].as_i64().unwrap();
        assert_eq!(
            c,
            json!({"version": "1.0", "type": "oauth_token", "access_token": rotated,
               "expires_at": exp_ms / 1000})
        );
        assert_no_refresh_token("the profile", &fs::read_to_string(&creds).unwrap());
        for f in [&creds, &anthropic.join("configs/hap.json")] {
            assert_eq!(mode(f), 0o600, "{f:?}");
            assert!(fs::symlink_metadata(f).unwrap().is_file());
        }
        assert_eq!(
            read_json(&anthropic.join("configs/hap.json"))["authentication"],
            json!({"type": "user_oauth"})
        );
        for (p, bytes) in &others {
            assert_eq!(
                &fs::read(anthropic.join(p)).unwrap(),
                bytes,
                "{p} was touched"
            );
        }
        assert!(!a.events("rotated_elsewhere").is_empty(), "{}", a.log());
    }
}

mod exec {
    //! `hap exec`: a child started with a current token, never in its argv.
    use super::*;

    /// A stand-in child: prints what it received (argv, the variables, the descriptor's
    /// content) as JSON. Named `claude` when it stands in for Claude Code.
    fn stand_in(h: &Home, name: &str) -> PathBuf {
        let p = h.dir.path().join("bin").join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(
            &p,
            r#"#!/usr/bin/env python3
import json, os, sys
fd = os.environ.get("CLAUDE_CODE_OAUTH_TOKEN_FILE_DESCRIPTOR")
via_fd = open("/proc/self/fd/" + fd).read() if fd else None
print(json.dumps({"argv": sys.argv, "fd": fd, "via_fd": via_fd,
                  "MY_TOKEN": os.environ.get("MY_TOKEN"),
                  "ANTHROPIC_AUTH_TOKEN": os.environ.get("ANTHROPIC_AUTH_TOKEN"),
                  "CLAUDE_CODE_OAUTH_TOKEN": os.environ.get("CLAUDE_CODE_OAUTH_TOKEN"),
                  "expires": os.environ.get("HAP_TOKEN_EXPIRES_AT_MS")}))
sys.exit(7)
"#,
        )
        .unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn hap_exec(h: &Home, xdg: &Path, s: &FakeServer, args: &[&str]) -> (i32, Value, String) {
        let mut c = Command::new(hap_bin());
        home_env(&mut c, h, Some(xdg));
        c.args(["--token-url", &s.token_url(), "exec"]).args(args);
        c.env("ANTHROPIC_AUTH_TOKEN", "shadowing-value")
            .env("CLAUDE_CODE_OAUTH_TOKEN", "shadowing-value");
        let out = c.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let v = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
        (
            out.status.code().unwrap_or(-1),
            v,
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    }

    #[test]
    fn hap_exec_hands_a_current_token_over_and_never_in_argv() {
        let s = FakeServer::start();
        let (h, cfg) = setup(&s, -1000);
        let xdg = runtime_dir(&h, "xdg");
        let child = stand_in(&h, "printer");
        // An expired login: exec refreshes first, then hands the new token over in --env.
        let (code, v, err) = hap_exec(
            &h,
            &xdg,
            &s,
            &[
                "--env",
                "MY_TOKEN",
                "--",
                child.to_str().unwrap(),
                "--flag",
                "x",
            ],
        );
        assert_eq!(code, 7, "the child's own exit status; {err}");
        let current = h.creds_access();
        assert_ne!(current, A1);
        assert_eq!(v["MY_TOKEN"], current.as_str(), "{v}");
        assert_eq!(
            v["argv"].as_array().unwrap()[1..],
            [json!("--flag"), json!("x")]
        );
        assert!(!v["argv"].to_string().contains("sk-ant-"));
        assert_eq!(
            v["expires"].as_str().unwrap().parse::<i64>().unwrap(),
            h.creds()["claudeAiOauth"]["expiresAt"].as_i64().unwrap()
        );
        assert!(!err.contains("sk-ant-"), "{err}");

        // Claude Code's way: a descriptor named by CLAUDE_CODE_OAUTH_TOKEN_FILE_DESCRIPTOR, and
        // the variables Claude Code would prefer over it removed.
        let claude = stand_in(&h, "claude");
        let (code, v, err) = hap_exec(&h, &xdg, &s, &["--", claude.to_str().unwrap(), "-p", "hi"]);
        assert_eq!(code, 7, "{err}");
        assert_eq!(v["via_fd"], current.as_str(), "{v}");
        assert!(v["fd"].as_str().unwrap().parse::<i32>().unwrap() > 2);
        assert_eq!(v["ANTHROPIC_AUTH_TOKEN"], Value::Null);
        assert_eq!(v["CLAUDE_CODE_OAUTH_TOKEN"], Value::Null);
        assert!(!v["argv"].to_string().contains("sk-ant-"));
        // --claude-code for a program with another name.
        let (_, v, _) = hap_exec(
            &h,
            &xdg,
            &s,
            &["--claude-code", "--", child.to_str().unwrap()],
        );
        assert_eq!(v["via_fd"], current.as_str());
        assert_eq!(s.posts(), 1, "one refresh for all three");

        // Without a way to hand it over: a usage error, no token resolved.
        let (code, _, err) = hap_exec(&h, &xdg, &s, &["--", child.to_str().unwrap()]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("--env NAME"), "{err}");
        let (code, _, _) = hap_exec(
            &h,
            &xdg,
            &s,
            &["--env", "1BAD", "--", child.to_str().unwrap()],
        );
        assert_eq!(code, 2);
        let (code, _, err) = hap_exec(&h, &xdg, &s, &["--env", "T", "--", "/nonexistent/prog"]);
        assert_eq!(code, 127, "{err}");

        // Through the agent: the token the agent serves.
        let a = AgentProc::start(&h, &agent_cfg(&cfg), Some(&xdg), &[], &[]);
        let cfg_file = config_file(&h, "require.json", &with(&cfg, "agent", json!("require")));
        let (code, v, err) = hap_exec(
            &h,
            &xdg,
            &s,
            &[
                "--config",
                cfg_file.to_str().unwrap(),
                "--env",
                "MY_TOKEN",
                "--",
                child.to_str().unwrap(),
            ],
        );
        assert_eq!(code, 7, "{err}");
        assert_eq!(
            v["MY_TOKEN"],
            a.ask(r#"{"op":"resolve"}"#)["result"]["access_token"]
        );
    }
}

mod no_xdg_runtime_dir {
    //! Without XDG_RUNTIME_DIR: the agent and its clients meet in the fallback directory.
    use super::*;

    #[test]
    fn without_xdg_runtime_dir_agent_and_clients_meet_in_the_fallback_directory() {
        // The only test that uses the machine-wide fallback directory.
        let dir = fallback_dir();
        if dir.starts_with("/tmp")
            && std::os::unix::net::UnixStream::connect(dir.join("agent.sock")).is_err()
        {
            // A leftover of an earlier run of this very test, with no agent in it.
            let _ = fs::remove_dir_all(&dir);
        }
        let s = FakeServer::start();
        let (h, cfg) = setup(&s, HOUR_MS);
        let mut a = AgentProc::start(&h, &agent_cfg(&cfg), None, &[], &[]);
        assert_eq!(a.socket, dir.join("agent.sock"));
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(fs::metadata(&dir).unwrap().uid(), unsafe {
            libc::geteuid()
        });
        assert_eq!(mode(&a.socket), 0o600);
        let info = a.ask(r#"{"op": "agent"}"#);
        assert_eq!(info["result"]["pid"], a.child.id());
        // A library client without XDG_RUNTIME_DIR finds it (require: it must).
        let (v, e) = worker_result(spawn_worker_in(
            &h,
            &with(&cfg, "agent", json!("require")),
            None,
        ));
        assert!(v["token_sha256"].is_string(), "{v} {e}");
        assert!(a.term().success());
        if dir.starts_with("/tmp") {
            let _ = fs::remove_dir_all(&dir);
        }
    }
}

mod suite_only {
    //! The suite-only tests (#[ignore], run by tests/agent/ci.sh): another uid, the systemd unit,
    //! the 20 readers in three languages.
    use super::*;

    fn require_root() -> bool {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            return true;
        }
        assert!(
            std::env::var_os("HAP_TEST_REQUIRE_ROOT").is_none(),
            "HAP_TEST_REQUIRE_ROOT is set but this test does not run as root"
        );
        eprintln!("skipped: needs root (useradd, setpriv)");
        false
    }

    /// A throwaway user for this test run: (name, uid, gid).
    fn throwaway_user() -> (String, u32, u32) {
        let name = format!("hapt{}", std::process::id() % 100_000);
        let _ = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                &name,
            ])
            .status();
        let id = |flag: &str| -> u32 {
            let out = Command::new("id").args([flag, &name]).output().unwrap();
            assert!(out.status.success(), "useradd {name} failed");
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        };
        (name.clone(), id("-u"), id("-g"))
    }

    struct UserGone(String);
    impl Drop for UserGone {
        fn drop(&mut self) {
            let _ = Command::new("userdel").arg(&self.0).status();
        }
    }

    #[test]
    #[ignore = "needs root: run by scripts/test's agent suite"]
    fn another_uid_is_refused() {
        if !require_root() {
            return;
        }
        let (user, uid, gid) = throwaway_user();
        let _gone = UserGone(user.clone());
        let s = FakeServer::start();
        let (h, cfg) = setup(&s, HOUR_MS);
        // 1. The agent runs as root: the other user cannot even reach the socket (0700 dir).
        let xdg = runtime_dir(&h, "xdg");
        let a = AgentProc::start(&h, &agent_cfg(&cfg), Some(&xdg), &[], &[]);
        fs::set_permissions(h.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let probe = format!(
        "import socket\ns = socket.socket(socket.AF_UNIX)\ntry:\n    s.connect({:?})\n    s.sendall(b'{{\"op\":\"resolve\"}}\\n')\n    print(s.recv(65536).decode())\nexcept OSError as e:\n    print('refused', e.errno)\n",
        a.socket.to_str().unwrap()
    );
        // The system's python: a per-user interpreter (pyenv) may be closed to other users.
        let out = Command::new("setpriv")
            .args([
                &format!("--reuid={uid}"),
                &format!("--regid={gid}"),
                "--clear-groups",
                "/usr/bin/python3",
                "-c",
                &probe,
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.starts_with("refused 13"),
            "{text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        drop(a);

        // 2. The agent runs as that user (with its own runtime directory and copies of the
        //    stores); root can pass any directory mode, so SO_PEERCRED is what refuses it.
        let theirs = Home::new();
        fs::set_permissions(theirs.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        theirs.write_creds(A1, R1, now_ms() + HOUR_MS);
        let txdg = runtime_dir(&theirs, "xdg");
        for p in [
            theirs.dir.path().to_path_buf(),
            txdg.clone(),
            theirs.creds_path().parent().unwrap().to_path_buf(),
            theirs.creds_path(),
        ] {
            std::os::unix::fs::chown(&p, Some(uid), Some(gid)).unwrap();
        }
        let tcfg = json!({"pool_path": null, "credentials_path": theirs.creds_path(),
                      "token_urls": [s.token_url()]});
        let cfg_path = config_file(&theirs, "cfg.json", &tcfg);
        std::os::unix::fs::chown(&cfg_path, Some(uid), Some(gid)).unwrap();
        let mut c = Command::new("setpriv");
        c.args([
            &format!("--reuid={uid}"),
            &format!("--regid={gid}"),
            "--clear-groups",
        ])
        .arg(hap_bin())
        .args(["agent", "--log-format", "json", "--config"])
        .arg(&cfg_path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        home_env(&mut c, &theirs, Some(&txdg));
        let mut child = c.spawn().unwrap();
        let sock = txdg.join("hap/agent.sock");
        assert!(wait_until(Duration::from_secs(20), || {
            std::os::unix::net::UnixStream::connect(&sock).is_ok()
        }));
        let answer = ask(&sock, r#"{"op": "resolve"}"#);
        assert_eq!(answer["ok"], false, "{answer}");
        let msg = answer["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains("permission denied") && msg.contains(&format!("serves uid {uid} only")),
            "{msg}"
        );
        assert_no_refresh_token("a refusal", &answer.to_string());
        assert!(!answer.to_string().contains("sk-ant-"));
        // A library pool of root's does not talk to another uid's agent either.
        let mut w = Command::new(worker_bin());
        w.arg(
            json!({"pool_path": null, "credentials_path": theirs.creds_path(), "agent": "require"})
                .to_string(),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        home_env(&mut w, &theirs, Some(&txdg));
        let (v, _) = worker_result(w.spawn().unwrap());
        assert_eq!(v["error"], "HAP_STATUS_UNAVAILABLE", "{v}");
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let st = child.wait().unwrap();
        let mut log = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut log).unwrap();
        assert!(st.success(), "{st} {log}");
        assert!(
            log.contains("peer_refused") && log.contains("uid 0"),
            "{log}"
        );
    }

    /// contrib/systemd/hap-agent.service's ExecStart, split into words, `%h` expanded.
    fn unit_exec_start(home: &Path) -> Vec<String> {
        let unit = fs::read_to_string(repo().join("contrib/systemd/hap-agent.service")).unwrap();
        let line = unit
            .lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .expect("the unit has an ExecStart");
        line.split_whitespace()
            .map(|w| w.replace("%h", home.to_str().unwrap()))
            .collect()
    }

    #[test]
    #[ignore = "needs systemd-analyze: run by scripts/test's agent suite"]
    fn the_systemd_unit_verifies_and_its_command_runs_the_agent() {
        let s = FakeServer::start();
        let (h, cfg) = setup(&s, -1000);
        let argv = unit_exec_start(h.dir.path());
        // Installed where the unit looks for it (`cargo install` puts it there).
        let installed = PathBuf::from(&argv[0]);
        fs::create_dir_all(installed.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(hap_bin(), &installed).unwrap();
        let out = Command::new("systemd-analyze")
            .args(["verify"])
            .arg(repo().join("contrib/systemd/hap-agent.service"))
            .env("HOME", h.dir.path())
            .output()
            .expect("systemd-analyze runs");
        assert!(
            out.status.success(),
            "systemd-analyze verify: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // The unit's own command line, plus --config (the test's token URL), with
        // XDG_RUNTIME_DIR set as a systemd user manager sets it.
        let xdg = runtime_dir(&h, "xdg");
        let mut a = AgentProc::spawn(
            &h,
            &agent_cfg(&cfg),
            Some(&xdg),
            &installed,
            &argv[1..],
            &[],
            true,
        );
        assert!(
            wait_until(Duration::from_secs(20), || !a
                .events("refreshed")
                .is_empty()),
            "{}",
            a.log()
        );
        let creds = h.dir.path().join("anthropic/credentials/hap.json");
        assert!(wait_until(Duration::from_secs(10), || creds.exists()
            && read_json(&creds)["access_token"]
                == h.creds_access().as_str()));
        // Every line is JSON (the unit asks for --log-format json) and holds no token.
        for l in a.log().lines() {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            assert!(v["event"].is_string());
            assert!(!l.contains("sk-ant-"), "{l}");
        }
        assert!(a.term().success(), "{}", a.log());
    }

    fn agent_python() -> String {
        std::env::var("HAP_AGENT_PYTHON").expect(
        "HAP_AGENT_PYTHON: a python with `anthropic` installed (scripts/test's agent suite makes one)",
    )
    }

    fn libhap_path() -> PathBuf {
        if let Some(p) = std::env::var_os("HAP_LIBRARY_PATH") {
            return PathBuf::from(p);
        }
        let p = worker_bin()
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("libhap.so");
        assert!(p.exists(), "{} missing: cargo build --lib", p.display());
        p
    }

    #[test]
    #[ignore = "needs HAP_AGENT_PYTHON with the anthropic SDK: run by scripts/test's agent suite"]
    fn twenty_readers_in_three_languages_never_see_an_expired_token_across_rotations() {
        // docs/AGENT.md's numbers scaled by 1/10, ratios kept: tokens live 9 s (90 s), the agent
        // refreshes 6 s (60 s) ahead with up to 0.5 s of jitter, readers' refresh_skew_ms is 1 s
        // (10 s), so the agent and not they refresh.
        const LIFETIME_S: i64 = 9;
        const LEAD: &str = "6s";
        const SKEW_MS: u64 = 1000;
        const RUN_MS: u64 = 16_000;
        let python = agent_python();
        let s = FakeServer::start();
        s.set_expires_in(LIFETIME_S);
        let (h, cfg) = setup(&s, 4000);
        let first_exp = h.creds()["claudeAiOauth"]["expiresAt"].as_i64().unwrap();
        let api = FakeMessagesApi::start();
        let xdg = runtime_dir(&h, "xdg");
        let argv = unit_exec_start(h.dir.path());
        // The systemd unit's command (flags after the program name), scaled.
        let mut args: Vec<String> = argv[1..].to_vec();
        args.extend(["--lead", LEAD, "--jitter", "500ms", "--poll", "100ms"].map(String::from));
        let mut agent = AgentProc::spawn(
            &h,
            &agent_cfg(&cfg),
            Some(&xdg),
            &hap_bin(),
            &args,
            &[],
            true,
        );
        let profile = h.dir.path().join("anthropic/credentials/hap.json");
        assert!(
            wait_until(Duration::from_secs(20), || profile.exists()),
            "{}",
            agent.log()
        );

        let reader_cfg = with(&cfg, "refresh_skew_ms", json!(SKEW_MS));
        let readers_py = repo().join("tests/agent/readers.py");
        let go = h.dir.path().join("go");
        let go_s = go.to_str().unwrap().to_string();
        let mut children = Vec::new();
        for i in 0..20 {
            let mut c;
            match i {
                0..=4 => {
                    c = Command::new(&python);
                    c.arg(&readers_py).args([
                        "socket",
                        agent.socket.to_str().unwrap(),
                        &SKEW_MS.to_string(),
                        &go_s,
                        "150",
                    ]);
                }
                5..=10 => {
                    let (c2, kind) = if i <= 8 {
                        (reader_cfg.clone(), "rust")
                    } else {
                        (with(&reader_cfg, "agent", json!("require")), "rust-agent")
                    };
                    c = Command::new(reader_bin());
                    c.args([c2.to_string(), go_s.clone(), "150".into(), kind.into()]);
                }
                11..=15 => {
                    let c2 = if i <= 13 {
                        reader_cfg.clone()
                    } else {
                        with(&reader_cfg, "agent", json!("prefer"))
                    };
                    c = Command::new(&python);
                    c.arg(&readers_py)
                        .args(["binding", &c2.to_string(), &go_s, "150"]);
                }
                _ => {
                    c = Command::new(&python);
                    c.arg(&readers_py)
                        .args(["sdk", "hap", &api.base, &go_s, "150"]);
                }
            }
            home_env(&mut c, &h, Some(&xdg));
            c.env("HAP_LIBRARY_PATH", libhap_path())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            children.push(c.spawn().unwrap());
        }
        // Each reader's lines, as they come; `ready` counts readers set up.
        let ready = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut collectors = Vec::new();
        for ch in &mut children {
            let out = ch.stdout.take().unwrap();
            let ready = ready.clone();
            collectors.push(std::thread::spawn(move || {
                use std::io::BufRead;
                let mut lines = Vec::new();
                for l in std::io::BufReader::new(out).lines() {
                    let l = l.unwrap();
                    let v: Value = serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l}"));
                    if v["ready"] == true {
                        ready.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    } else {
                        lines.push(v);
                    }
                }
                lines
            }));
        }
        assert!(
            wait_until(Duration::from_secs(120), || ready
                .load(std::sync::atomic::Ordering::SeqCst)
                == 20),
            "readers never got ready"
        );
        // Every token ever issued and when it expires: the first login, and the journal, read
        // throughout (it keeps only the 16 newest entries).
        let mut expiry: HashMap<String, i64> = HashMap::from([(sha16(A1), first_exp)]);
        let snapshot = |expiry: &mut HashMap<String, i64>| {
            for (t, exp, _) in journalled_tokens(&h) {
                expiry.insert(sha16(&t), exp);
            }
        };
        let end_at = now_ms() + RUN_MS as i64;
        fs::write(h.dir.path().join("go.tmp"), end_at.to_string()).unwrap();
        fs::rename(h.dir.path().join("go.tmp"), &go).unwrap();
        while now_ms() < end_at + 1000 {
            snapshot(&mut expiry);
            std::thread::sleep(Duration::from_millis(200));
        }
        let mut records = Vec::new();
        for (ch, col) in children.into_iter().zip(collectors) {
            let out = ch.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr).to_string();
            assert!(out.status.success(), "a reader failed: {stderr}");
            assert!(!stderr.contains("sk-ant-"));
            records.extend(col.join().unwrap());
        }
        assert!(agent.term().success(), "{}", agent.log());
        snapshot(&mut expiry);
        let stats = s.stats();
        let posts = stats["log"].as_array().unwrap();
        assert!(posts.len() >= 3, "at least 3 rotations: {stats}");
        assert_eq!(stats["invalid_grant"], 0, "{stats}");
        // Exactly one POST per rotation, and all of them the agent's.
        let spent: HashSet<&str> = posts
            .iter()
            .map(|p| p["refresh_token_sha256"].as_str().unwrap())
            .collect();
        assert_eq!(spent.len(), posts.len(), "{stats}");
        assert!(
            posts
                .iter()
                .all(|p| p["user_agent"] == "hap-agent" && p["status"] == 200),
            "{stats}"
        );
        assert_eq!(
            expiry.len(),
            posts.len() + 1,
            "every rotation was journalled"
        );

        // No reader saw an expired token, or an error.
        let mut by_kind: HashMap<String, (usize, HashSet<String>)> = HashMap::new();
        for r in &records {
            let kind = r["kind"].as_str().unwrap().to_string();
            assert!(r.get("error").is_none(), "{r}");
            if kind == "sdk" {
                assert_eq!(r["ok"], true, "{r}");
                by_kind.entry(kind).or_default().0 += 1;
                continue;
            }
            let sha = r["sha"].as_str().unwrap();
            let exp = *expiry
                .get(sha)
                .unwrap_or_else(|| panic!("a token hap never issued: {r}"));
            let t = r["t_ms"].as_i64().unwrap();
            assert!(
                t < exp,
                "{kind} used a token {} ms after it expired: {r}",
                t - exp
            );
            assert!(
                r["refreshed"] != true,
                "a reader refreshed instead of the agent: {r}"
            );
            let e = by_kind.entry(kind).or_default();
            e.0 += 1;
            e.1.insert(sha.to_string());
        }
        // What the SDK readers really sent, as the fake Messages API saw it.
        let api_log = api.stats()["log"].as_array().unwrap().clone();
        assert!(!api_log.is_empty());
        let mut sdk_tokens = HashSet::new();
        for e in &api_log {
            assert_eq!(e["authorization_scheme"], "Bearer", "{e}");
            assert_eq!(e["x_api_key"], false);
            assert!(
                e["anthropic_beta"]
                    .as_str()
                    .unwrap()
                    .contains("oauth-2025-04-20"),
                "{e}"
            );
            let sha = e["bearer_sha256"].as_str().unwrap();
            let exp = *expiry
                .get(sha)
                .unwrap_or_else(|| panic!("the SDK sent a token hap never issued: {e}"));
            assert!(
                e["t_ms"].as_i64().unwrap() < exp,
                "the SDK sent an expired token: {e}"
            );
            sdk_tokens.insert(sha.to_string());
        }
        for kind in ["socket", "rust", "rust-agent", "python", "python-agent"] {
            let (n, seen) = by_kind.get(kind).cloned().unwrap_or_default();
            assert!(n > 0, "no {kind} reader reported");
            assert!(
                seen.len() >= 2,
                "{kind} readers followed the rotations: saw {} tokens",
                seen.len()
            );
        }
        assert!(by_kind["sdk"].0 > 0);
        assert!(
            sdk_tokens.len() >= 2,
            "the SDK followed the rotations: {sdk_tokens:?}"
        );
        assert_no_refresh_token("the profile", &fs::read_to_string(&profile).unwrap());
        assert_eq!(mode(&profile), 0o600);
        let counts: HashMap<&String, usize> = by_kind.iter().map(|(k, v)| (k, v.0)).collect();
        eprintln!(
            "rotations (POSTs): {}, invalid_grant: 0, uses per reader kind: {counts:?}, \
         SDK requests seen by the fake Messages API: {} with {} distinct tokens",
            posts.len(),
            api_log.len(),
            sdk_tokens.len()
        );
    }

    /// `testing/fake_messages_api.py`, started for one test.
    struct FakeMessagesApi {
        child: std::process::Child,
        base: String,
    }

    impl FakeMessagesApi {
        fn start() -> FakeMessagesApi {
            use std::io::BufRead;
            let mut child = Command::new("python3")
                .arg(repo().join("testing/fake_messages_api.py"))
                .arg("--exit-on-stdin-eof")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let mut line = String::new();
            std::io::BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            FakeMessagesApi {
                child,
                base: line.trim().to_string(),
            }
        }

        fn stats(&self) -> Value {
            ureq::get(&format!("{}/_admin/stats", self.base))
                .call()
                .unwrap()
                .into_json()
                .unwrap()
        }
    }

    impl Drop for FakeMessagesApi {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
