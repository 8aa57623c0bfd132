//! The `hap` binary, run for real against temporary homes and the fake token server.
//!
//! Every run checks that no token reaches stdout or stderr; only `hap token`'s own stdout
//! may carry one. The homes are found the way a user's are: through `HERMES_HOME` and
//! `CLAUDE_CONFIG_DIR` (docs/ABI.md's defaults), not through options.

mod common;
#[path = "common/policy.rs"]
mod policy;

use common::*;
use serde_json::{json, Value};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

const HOUR_MS: i64 = 3_600_000;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }

    fn expect(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "exit code; stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

fn assert_no_secret(what: &str, text: &str) {
    for needle in ["sk-ant-", "fake-a", "fake-r"] {
        assert!(
            !text.contains(needle),
            "{what} leaks a token ({needle}):\n{text}"
        );
    }
}

/// The binary with a home of its own; `url` (the fake server) is passed as `--token-url`.
struct Hap<'a> {
    home: &'a Home,
    url: Option<String>,
}

impl<'a> Hap<'a> {
    fn new(home: &'a Home, server: Option<&FakeServer>) -> Hap<'a> {
        Hap {
            home,
            url: server.map(FakeServer::token_url),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_hap"));
        let root = self.home.dir.path();
        c.args(args)
            .current_dir(root)
            .env("HOME", root)
            .env("HERMES_HOME", root.join("hermes"))
            .env("CLAUDE_CONFIG_DIR", root.join("claude"))
            .env_remove("HAP_LOG")
            .env_remove("NO_COLOR");
        if let Some(u) = &self.url {
            c.args(["--token-url", u]);
        }
        c
    }

    fn exec(&self, args: &[&str]) -> Run {
        let out = self.command(args).output().expect("hap runs");
        Run {
            code: out.status.code().expect("hap exits, not killed"),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        }
    }

    /// Any subcommand but `token`: nothing it prints may hold a token.
    fn run(&self, args: &[&str]) -> Run {
        let r = self.exec(args);
        assert_no_secret("stdout", &r.stdout);
        assert_no_secret("stderr", &r.stderr);
        r
    }

    /// `hap token`: its stdout is the token; stderr must still be clean.
    fn token(&self, args: &[&str]) -> Run {
        let mut full = vec!["token"];
        full.extend_from_slice(args);
        let r = self.exec(&full);
        assert_no_secret("stderr", &r.stderr);
        if r.code != 0 && !args.contains(&"--json") {
            assert_eq!(
                r.stdout, "",
                "a failed `hap token` prints nothing on stdout"
            );
        }
        r
    }
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

fn set_mtime(p: &Path, ago: Duration) {
    let f = fs::File::open(p).unwrap();
    f.set_modified(SystemTime::now() - ago).unwrap();
}

/// A home as a careful user keeps it: 0700 directories, a fresh 0600 credentials file.
fn tidy_home(expires_in_ms: i64) -> Home {
    let home = Home::new();
    home.write_creds(A1, R1, now_ms() + expires_in_ms);
    chmod(&home.creds_path(), 0o600);
    chmod(home.creds_path().parent().unwrap(), 0o700);
    fs::create_dir_all(home.dir.path().join("hermes")).unwrap();
    chmod(&home.dir.path().join("hermes"), 0o700);
    home
}

fn findings(r: &Run) -> Vec<Value> {
    r.json()["findings"].as_array().unwrap().clone()
}

/// The findings of one level whose text contains `needle`.
fn find<'f>(all: &'f [Value], level: &str, needle: &str) -> Vec<&'f Value> {
    all.iter()
        .filter(|f| f["level"] == level && f["what"].as_str().unwrap().contains(needle))
        .collect()
}

fn has(all: &[Value], level: &str, needle: &str) -> bool {
    !find(all, level, needle).is_empty()
}

mod token {
    //! `hap token`: the valid token printed without a POST, `--min-validity`, `--force-refresh`,
    //! `--json` failures.
    use super::*;

    #[test]
    fn token_prints_the_valid_token_without_a_post() {
        let server = FakeServer::start();
        let home = tidy_home(HOUR_MS);
        let hap = Hap::new(&home, Some(&server));

        let r = hap.token(&[]).expect(0);
        assert_eq!(r.stdout, format!("{A1}\n"));
        assert_eq!(r.stderr, "");

        let expires = home.creds()["claudeAiOauth"]["expiresAt"].as_i64().unwrap();
        let v = hap.token(&["--json"]).expect(0).json();
        assert_eq!(v["access_token"], A1);
        assert_eq!(v["expires_at"], expires);
        assert_eq!(v["expires_at_ms"], expires);
        assert_eq!(v["source"], "claude_code");
        assert_eq!(v["refreshed"], false);
        let id = v["credential_id"].as_str().unwrap();
        // The login was adopted into the pool found through HERMES_HOME.
        assert_eq!(home.rows("")[0]["id"], id);
        assert_eq!(server.posts(), 0);
    }

    #[test]
    fn token_refreshes_for_min_validity_and_force_refresh() {
        let server = FakeServer::start();
        let home = tidy_home(30 * 60_000);
        let hap = Hap::new(&home, Some(&server));

        assert_eq!(
            hap.token(&["--min-validity", "10m"]).expect(0).stdout,
            format!("{A1}\n")
        );
        assert_eq!(server.posts(), 0);

        let v = hap
            .token(&["--json", "--min-validity", "1h"])
            .expect(0)
            .json();
        assert_eq!(v["refreshed"], true);
        assert_ne!(v["access_token"], A1);
        assert_eq!(server.posts(), 1);
        assert_eq!(home.creds_access(), v["access_token"].as_str().unwrap());
        assert_eq!(home.creds()["mcpOAuth"]["keep"], "me", "other keys survive");

        let id = v["credential_id"].as_str().unwrap().to_string();
        let f = hap
            .token(&["--json", "--force-refresh", "--credential", &id])
            .expect(0)
            .json();
        assert_eq!(f["refreshed"], true);
        assert_ne!(f["access_token"], v["access_token"]);
        assert_eq!(server.posts(), 2);

        let plain = hap.token(&["--credential", &id]).expect(0);
        assert_eq!(plain.stdout.trim(), f["access_token"].as_str().unwrap());
        assert_eq!(server.posts(), 2);
    }

    #[test]
    fn token_failure_with_json_prints_the_error_object() {
        let home = Home::new();
        let hap = Hap::new(&home, None);
        let r = hap.token(&["--json"]).expect(12);
        let e = r.json();
        assert_eq!(e["status"], 2);
        assert_eq!(e["name"], "HAP_STATUS_NO_CREDENTIAL");
        assert!(
            r.stderr.contains("HAP_STATUS_NO_CREDENTIAL"),
            "{}",
            r.stderr
        );
    }
}

mod status {
    //! `hap status`: the pool as a table and as JSON, without secrets.
    use super::*;

    #[test]
    fn status_table_and_json_show_the_pool_without_secrets() {
        let server = FakeServer::start();
        let home = tidy_home(HOUR_MS);
        let hap = Hap::new(&home, Some(&server));

        // Before any resolve: an empty pool, and a note about the login waiting to be adopted.
        let before = hap.run(&["status"]).expect(0);
        assert!(
            before.stdout.contains("No credentials in the pool"),
            "{}",
            before.stdout
        );
        assert!(
            before.stdout.contains("first `hap token` adopts it"),
            "{}",
            before.stdout
        );

        let id = hap.token(&["--json"]).expect(0).json()["credential_id"]
            .as_str()
            .unwrap()
            .to_string();
        let t = hap.run(&["status"]).expect(0);
        for col in [
            "ID",
            "LABEL",
            "SOURCE",
            "STATUS",
            "EXPIRES IN",
            "AVAILABLE IN",
            "LAST ERROR",
        ] {
            assert!(t.stdout.contains(col), "{col} missing:\n{}", t.stdout);
        }
        let line = t.stdout.lines().find(|l| l.starts_with(&id)).unwrap();
        assert!(line.contains("claude_code"), "{line}");
        assert!(line.contains(" ok "), "{line}");
        assert!(line.contains("59m") || line.contains("1h00m"), "{line}");
        assert!(line.contains("now"), "{line}");
        assert!(
            !t.stdout.contains('\x1b'),
            "no colour when stdout is not a terminal"
        );
        assert!(!t.stdout.contains("adopts it"));

        let c = hap.run(&["status", "--color", "always"]).expect(0);
        assert!(c.stdout.contains("\x1b[32mok"), "{:?}", c.stdout);

        let doc = hap.run(&["status", "--json"]).expect(0).json();
        assert_eq!(doc["provider"], "anthropic");
        assert_eq!(doc["pool_path"], home.pool_path("").to_str().unwrap());
        assert_eq!(doc["credentials_path"], home.creds_path().to_str().unwrap());
        assert_eq!(doc["credentials"][0]["credential_id"], id.as_str());
        assert_eq!(doc["credentials"][0]["available"], true);
        assert!(doc["counters"].is_object());
    }

    #[test]
    fn status_shows_owned_rows_and_their_failures() {
        let home = tidy_home(HOUR_MS);
        let now = now_ms();
        write_json(
            &home.pool_path(""),
            &json!({"version": 1, "providers": {}, "credential_pool": {"anthropic": [
                {"id": "aaa111", "label": "work", "auth_type": "oauth", "priority": 0,
                 "source": "manual", "access_token": A2, "refresh_token": R2,
                 "expires_at_ms": now - 60_000, "last_status": "dead",
                 "last_status_at": now as f64 / 1000.0, "last_error_code": 400,
                 "last_error_reason": "invalid_grant"},
                {"id": "bbb222", "label": "spare", "auth_type": "api_key", "priority": 1,
                 "source": "manual", "access_token": "sk-ant-api03-fake-k1"}
            ]}}),
        );
        let hap = Hap::new(&home, None);
        let t = hap.run(&["status"]).expect(0);
        let dead = t.stdout.lines().find(|l| l.starts_with("aaa111")).unwrap();
        assert!(dead.contains("dead"), "{dead}");
        assert!(dead.contains("expired 1m ago"), "{dead}");
        assert!(dead.contains("never (log in again)"), "{dead}");
        assert!(dead.contains("400 invalid_grant"), "{dead}");
        let key = t.stdout.lines().find(|l| l.starts_with("bbb222")).unwrap();
        assert!(key.contains("never"), "an API key does not expire: {key}");
        assert!(key.contains("now"), "{key}");
    }
}

mod report {
    //! `hap report`: benching a credential, outcomes of 401s and terminal reasons.
    use super::*;

    #[test]
    fn report_benches_a_credential_for_everyone() {
        let server = FakeServer::start();
        let home = tidy_home(HOUR_MS);
        let hap = Hap::new(&home, Some(&server));
        let id = hap.token(&["--json"]).expect(0).json()["credential_id"]
            .as_str()
            .unwrap()
            .to_string();

        let r = hap
            .run(&[
                "report",
                "--credential",
                &id,
                "--status",
                "429",
                "--reason",
                "rate_limit_error",
                "--message",
                &format!("quota hit for {A1}"),
                "--reset-at",
                "+10m",
            ])
            .expect(0);
        assert!(
            r.stdout.starts_with(&format!("{id}: exhausted")),
            "{}",
            r.stdout
        );
        // The caller's message is stored without the token it quoted.
        let row = &home.rows("")[0];
        assert_eq!(row["last_status"], "exhausted");
        assert_eq!(row["last_error_code"], 429);
        let msg = row["last_error_message"].as_str().unwrap();
        assert!(
            !msg.contains("sk-ant-") && msg.contains("[redacted]"),
            "{msg}"
        );

        let line = hap
            .run(&["status"])
            .expect(0)
            .stdout
            .lines()
            .find(|l| l.starts_with(&id))
            .unwrap()
            .to_string();
        assert!(
            line.contains("exhausted") && line.contains("429 rate_limit_error"),
            "{line}"
        );

        // The only credential is benched: a new process gets NO_CREDENTIAL and a retry time.
        let t = hap.token(&[]).expect(12);
        assert!(
            t.stderr.contains("HAP_STATUS_NO_CREDENTIAL"),
            "{}",
            t.stderr
        );
        assert!(t.stderr.contains("retry at"), "{}", t.stderr);
        let e = hap.token(&["--json"]).expect(12).json();
        assert!(e["retry_at_ms"].as_i64().unwrap() > now_ms());
    }

    #[test]
    fn report_json_outcomes_401_and_terminal_reasons() {
        let server = FakeServer::start();
        let home = tidy_home(HOUR_MS);
        let hap = Hap::new(&home, Some(&server));
        let id = hap.token(&["--json"]).expect(0).json()["credential_id"]
            .as_str()
            .unwrap()
            .to_string();

        let o = hap
            .run(&["report", "--credential", &id, "--status", "401", "--json"])
            .expect(0)
            .json();
        assert_eq!(
            o,
            json!({"credential_id": id, "last_status": "refresh_pending", "available_at_ms": null})
        );
        // The next resolve refreshes instead of serving the refused token.
        let t = hap.token(&[]).expect(0);
        assert_ne!(t.stdout.trim(), A1);
        assert_eq!(server.posts(), 1);

        let o = hap
            .run(&[
                "report",
                "--credential",
                &id,
                "--status",
                "403",
                "--reason",
                "token_revoked",
                "--json",
            ])
            .expect(0)
            .json();
        assert_eq!(o["last_status"], "dead");
        let h = hap
            .run(&[
                "report",
                "--credential",
                &id,
                "--status",
                "429",
                "--retry-after",
                "30",
            ])
            .expect(0);
        assert!(h.stdout.contains("exhausted"), "{}", h.stdout);
    }
}

mod exit_codes {
    //! Exit codes: every one the CLI documents that a test can provoke, and `--help` listing them.
    use super::*;

    #[test]
    fn exit_2_for_usage_errors() {
        let home = Home::new();
        let hap = Hap::new(&home, None);
        for args in [
            &["token", "--min-validity", "banana"][..],
            &["report", "--credential", "abc"][..],
            &["report", "--credential", "abc", "--status", "42"][..],
            &[
                "report",
                "--credential",
                "abc",
                "--status",
                "429",
                "--reset-at",
                "soon",
            ][..],
            &["frobnicate"][..],
            &["status", "--pool", "/a", "--no-pool"][..],
            &[][..],
        ] {
            let r = hap.run(args);
            assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
            assert_eq!(r.stdout, "");
        }
    }

    #[test]
    fn help_documents_every_exit_code() {
        let home = Home::new();
        let hap = Hap::new(&home, None);
        let top = hap.run(&["--help"]).expect(0).stdout;
        for sub in ["status", "token", "report", "doctor"] {
            assert!(top.contains(sub));
            let h = hap.run(&[sub, "--help"]).expect(0).stdout;
            assert!(h.contains("Usage: hap"), "{h}");
            assert!(h.contains("Exit codes:"), "{h}");
        }
        for code in [
            "  0 ", "  1 ", "  2 ", " 11 ", " 12 ", " 13 ", " 14 ", " 15 ", " 16 ", " 17 ", " 18 ",
            " 110 ",
        ] {
            assert!(top.contains(code), "{code:?} missing from --help");
        }
        let docs = fs::read_to_string(repo().join("docs/CLI.md")).unwrap();
        for name in [
            "HAP_STATUS_INVALID_ARGUMENT",
            "HAP_STATUS_NO_CREDENTIAL",
            "HAP_STATUS_REAUTH_REQUIRED",
            "HAP_STATUS_UNAVAILABLE",
            "HAP_STATUS_LOCK_TIMEOUT",
            "HAP_STATUS_STORE_CORRUPT",
            "HAP_STATUS_IO",
            "HAP_STATUS_UNKNOWN_CREDENTIAL",
            "HAP_STATUS_INTERNAL",
        ] {
            assert!(top.contains(name) && docs.contains(name), "{name}");
        }
        let v = hap.run(&["--version"]).expect(0).stdout;
        assert_eq!(v.trim(), hap::VERSION_STRING);
    }

    #[test]
    fn exit_11_for_a_bad_config() {
        let home = Home::new();
        let hap = Hap::new(&home, None);
        let cfg = home.dir.path().join("hap.json");
        fs::write(&cfg, r#"{"pool_pth": "/tmp/x.json"}"#).unwrap();
        let r = hap
            .run(&["--config", cfg.to_str().unwrap(), "status"])
            .expect(11);
        assert!(
            r.stderr.contains("pool_pth"),
            "the key is named: {}",
            r.stderr
        );

        let r = hap
            .run(&["status", "--config", "/nonexistent/hap.json"])
            .expect(11);
        assert!(
            r.stderr.contains("HAP_STATUS_INVALID_ARGUMENT"),
            "{}",
            r.stderr
        );

        fs::write(&cfg, "[1, 2]").unwrap();
        hap.run(&["--config", cfg.to_str().unwrap(), "status"])
            .expect(11);

        let r = hap
            .run(&[
                "token",
                "--json",
                "--token-url",
                "http://example.com/v1/oauth/token",
            ])
            .expect(11);
        assert_eq!(r.json()["name"], "HAP_STATUS_INVALID_ARGUMENT");
    }

    #[test]
    fn exit_12_when_there_is_no_credential() {
        let home = Home::new();
        let r = Hap::new(&home, None).token(&[]).expect(12);
        assert!(
            r.stderr.contains("HAP_STATUS_NO_CREDENTIAL"),
            "{}",
            r.stderr
        );
    }

    #[test]
    fn exit_13_when_the_grant_is_refused() {
        let server = FakeServer::start();
        let home = tidy_home(-60_000);
        server.revoke(R1);
        let r = Hap::new(&home, Some(&server)).token(&[]).expect(13);
        assert!(
            r.stderr.contains("HAP_STATUS_REAUTH_REQUIRED"),
            "{}",
            r.stderr
        );
        assert!(r.stderr.contains("log in again"), "{}", r.stderr);
        assert_eq!(home.creds_access(), A1, "nothing was blanked");
    }

    #[test]
    fn exit_14_when_the_endpoint_fails() {
        let server = FakeServer::start();
        let home = tidy_home(-60_000);
        server.script(json!([{"status": 503}]));
        let r = Hap::new(&home, Some(&server)).token(&["--json"]).expect(14);
        let e = r.json();
        assert_eq!(e["name"], "HAP_STATUS_UNAVAILABLE");
        assert!(e["retry_at_ms"].as_i64().unwrap() > now_ms());
        assert!(r.stderr.contains("retry at"), "{}", r.stderr);
    }

    #[test]
    fn exit_15_when_a_lock_is_held_too_long() {
        let server = FakeServer::start();
        let home = tidy_home(-60_000);
        let lock = home.creds_path().with_file_name(".credentials.lock");
        let mut waited = false;
        let held = hap::internals::lock::FileLock::acquire(
            &lock,
            Instant::now() + Duration::from_secs(1),
            1000,
            &mut waited,
        )
        .unwrap();
        let hap = Hap::new(&home, Some(&server));
        let r = hap.token(&["--lock-timeout", "300ms"]).expect(15);
        assert!(r.stderr.contains("HAP_STATUS_LOCK_TIMEOUT"), "{}", r.stderr);
        // doctor sees who holds it, without waiting for it.
        let d = hap.run(&["doctor", "--json"]);
        assert!(
            has(&findings(&d), "info", "held by a running process"),
            "{}",
            d.stdout
        );
        drop(held);
        assert_eq!(server.posts(), 0);
    }

    #[test]
    fn exit_16_for_a_corrupt_store_left_unchanged() {
        let home = tidy_home(HOUR_MS);
        let garbage = b"{\"claudeAiOauth\": {\"accessToken\": \"sk-ant-oat01-fa";
        fs::write(home.creds_path(), garbage).unwrap();
        let hap = Hap::new(&home, None);
        let r = hap.token(&[]).expect(16);
        assert!(
            r.stderr.contains("HAP_STATUS_STORE_CORRUPT"),
            "{}",
            r.stderr
        );
        hap.run(&["status"]).expect(16);
        let d = hap.run(&["doctor", "--json"]).expect(1);
        assert!(
            has(&findings(&d), "error", "cannot be parsed"),
            "{}",
            d.stdout
        );
        assert_eq!(fs::read(home.creds_path()).unwrap(), garbage);
    }

    #[test]
    fn exit_17_for_an_operating_system_error() {
        let home = Home::new();
        let file = home.dir.path().join("not-a-dir");
        fs::write(&file, b"x").unwrap();
        let pool = file.join("auth.json");
        let r = Hap::new(&home, None)
            .run(&["status", "--pool", pool.to_str().unwrap()])
            .expect(17);
        assert!(r.stderr.contains("HAP_STATUS_IO"), "{}", r.stderr);
    }

    #[test]
    fn exit_18_for_an_unknown_credential() {
        let server = FakeServer::start();
        let home = tidy_home(HOUR_MS);
        let hap = Hap::new(&home, Some(&server));
        let r = hap
            .run(&["report", "--credential", "ffffff", "--status", "429"])
            .expect(18);
        assert!(
            r.stderr.contains("HAP_STATUS_UNKNOWN_CREDENTIAL"),
            "{}",
            r.stderr
        );
        hap.token(&["--credential", "ffffff"]).expect(18);
    }
}

mod options {
    //! Options: --config, overrides, relative paths, --no-pool.
    use super::*;

    #[test]
    fn config_file_then_options_override_it() {
        let server = FakeServer::start();
        let home = tidy_home(HOUR_MS);
        let cfg = home.dir.path().join("hap.json");
        let other_pool = home.dir.path().join("other/auth.json");
        write_json(
            &cfg,
            &json!({"pool_path": other_pool, "token_urls": [server.token_url()],
                "strategy": "round_robin", "lock_timeout_ms": 5000}),
        );
        let hap = Hap::new(&home, None);
        let c = cfg.to_str().unwrap();

        let doc = hap
            .run(&["--config", c, "status", "--json"])
            .expect(0)
            .json();
        assert_eq!(doc["pool_path"], other_pool.to_str().unwrap());
        assert_eq!(doc["strategy"], "round_robin");

        // A relative --pool is taken from the working directory (here: the home).
        let doc = hap
            .run(&["--config", c, "status", "--json", "--pool", "rel/auth.json"])
            .expect(0)
            .json();
        assert_eq!(
            doc["pool_path"],
            home.dir.path().join("rel/auth.json").to_str().unwrap()
        );

        let doc = hap
            .run(&["status", "--json", "--no-pool", "--provider", "other"])
            .expect(0)
            .json();
        assert_eq!(doc["pool_path"], Value::Null);
        assert_eq!(doc["provider"], "other");
        assert_eq!(
            doc["credentials"].as_array().unwrap().len(),
            1,
            "the login, in memory"
        );

        // Only the credentials file, from an explicit path; the token comes from the config's URL.
        let t = hap.token(&[
            "--config",
            c,
            "--no-pool",
            "--credentials",
            home.creds_path().to_str().unwrap(),
        ]);
        assert_eq!(t.expect(0).stdout.trim(), A1);
        assert!(!other_pool.exists(), "--no-pool writes no pool file");
        let none = hap
            .run(&["status", "--json", "--no-credentials"])
            .expect(0)
            .json();
        assert_eq!(none["credentials_path"], Value::Null);
    }
}

mod doctor {
    //! `hap doctor`: what it passes, warns about and calls an error, offline and `--online`; and
    //! the debug log of a refresh.
    use super::*;

    #[test]
    fn doctor_passes_a_tidy_home() {
        let server = FakeServer::start();
        let home = tidy_home(HOUR_MS);
        let hap = Hap::new(&home, Some(&server));
        hap.token(&[]).expect(0);
        let r = hap.run(&["doctor", "--json"]).expect(0);
        let all = findings(&r);
        let bad: Vec<&Value> = all
            .iter()
            .filter(|f| f["level"] == "warn" || f["level"] == "error")
            .collect();
        assert!(bad.is_empty(), "{bad:#?}");
        assert!(has(
            &all,
            "ok",
            "parses; the login's access token expires in"
        ));
        assert!(has(&all, "ok", "1 credential(s), 1 available now"));
        assert_eq!(r.json()["errors"], 0);

        let text = hap.run(&["doctor"]).expect(0);
        assert!(
            text.stdout.contains("0 error(s), 0 warning(s)"),
            "{}",
            text.stdout
        );
        assert_eq!(server.posts(), 0, "doctor never refreshes");
    }

    #[test]
    fn doctor_warns_about_permissions_symlinks_locks_and_expiry() {
        let home = Home::new();
        // The real credentials file lives elsewhere (a dotfile manager), 0644 in a 0755 dir.
        let real = home.dir.path().join("dotfiles/claude-credentials.json");
        fs::create_dir_all(real.parent().unwrap()).unwrap();
        chmod(real.parent().unwrap(), 0o755);
        fs::create_dir_all(home.creds_path().parent().unwrap()).unwrap();
        chmod(home.creds_path().parent().unwrap(), 0o700);
        write_json(
            &real,
            &json!({"claudeAiOauth": {"accessToken": A1, "refreshToken": R1,
                "expiresAt": now_ms() - 5 * 60_000}}),
        );
        chmod(&real, 0o644);
        std::os::unix::fs::symlink(&real, home.creds_path()).unwrap();
        // Claude Code died mid-refresh two minutes ago; a hap write was interrupted.
        let lock_dir = home.creds_path().with_file_name(".oauth_refresh.lock");
        fs::create_dir(&lock_dir).unwrap();
        set_mtime(&lock_dir, Duration::from_secs(120));
        let tmp = real.with_file_name(".claude-credentials.json.hap-99999-0.tmp");
        fs::write(&tmp, b"{}").unwrap();
        set_mtime(&tmp, Duration::from_secs(300));

        let r = Hap::new(&home, None).run(&["doctor", "--json"]).expect(0);
        let all = findings(&r);
        assert!(has(&all, "warn", "is a symlink to"), "{all:#?}");
        assert!(
            has(&all, "warn", "is mode 0644, wider than 0600"),
            "{all:#?}"
        );
        assert!(
            has(&all, "warn", "is mode 0755, wider than 0700"),
            "{all:#?}"
        );
        assert!(has(&all, "warn", "subscriptionType is missing"), "{all:#?}");
        assert!(has(&all, "warn", "access token expired 5m ago"), "{all:#?}");
        assert!(
            has(&all, "warn", ".oauth_refresh.lock is stale"),
            "{all:#?}"
        );
        assert!(
            has(&all, "warn", "temp file left by an interrupted write"),
            "{all:#?}"
        );
        let perm = &find(&all, "warn", "wider than 0600")[0];
        assert_eq!(
            perm["fix"],
            format!("chmod 600 {}", fs::canonicalize(&real).unwrap().display())
        );
        assert_eq!(r.json()["errors"], 0);
        // Read-only: nothing was removed or rewritten.
        assert!(lock_dir.exists() && tmp.exists());
        assert_eq!(
            fs::metadata(&real).unwrap().permissions().mode() & 0o777,
            0o644
        );

        // The human form carries the same, each with its fix.
        let text = Hap::new(&home, None).run(&["doctor"]).expect(0).stdout;
        assert!(text.contains("fix: chmod 600"), "{text}");
        assert!(text.contains("warn"), "{text}");
    }

    #[test]
    fn doctor_finds_rows_hermes_and_hap_read_differently() {
        let home = tidy_home(HOUR_MS);
        let now = now_ms();
        write_json(
            &home.pool_path(""),
            &json!({"version": 1, "credential_pool": {"anthropic": [
                // Hermes' format: a claude_code row with a (stale) copy of the token.
                {"id": "c0c0c0", "label": "claude_code", "source": "claude_code",
                 "auth_type": "oauth", "access_token": A2, "refresh_token": R2},
                {"label": "no id here", "source": "manual", "access_token": A2},
                {"id": "dddddd", "label": "dup1", "source": "manual", "auth_type": "api_key",
                 "access_token": "sk-ant-api03-fake-k1"},
                {"id": "dddddd", "label": "dup2", "source": "manual", "auth_type": "api_key",
                 "access_token": "sk-ant-api03-fake-k2"},
                {"id": "eeeeee", "label": "odd", "source": "manual", "auth_type": "oauth",
                 "access_token": A2, "refresh_token": R2, "expires_at_ms": now + HOUR_MS,
                 "last_status": "benched"},
                "not a row"
            ]}}),
        );
        chmod(&home.pool_path(""), 0o600);
        let r = Hap::new(&home, None).run(&["doctor", "--json"]).expect(0);
        let all = findings(&r);
        assert!(
            has(&all, "warn", "differs from the credentials file's"),
            "{all:#?}"
        );
        assert!(
            has(&all, "warn", "has no id: hap ignores the row"),
            "{all:#?}"
        );
        assert!(has(&all, "warn", "id dddddd appears 2 times"), "{all:#?}");
        assert!(has(&all, "warn", "last_status \"benched\""), "{all:#?}");
        assert!(has(&all, "warn", "[5] is not an object"), "{all:#?}");
        assert!(
            find(&all, "warn", "has no id")
                .iter()
                .all(|f| f["check"] == "hermes-compat"),
            "{all:#?}"
        );
    }

    #[test]
    fn doctor_errors_exit_1() {
        // expiresAt written in seconds.
        let home = tidy_home(HOUR_MS);
        let mut creds = home.creds();
        creds["claudeAiOauth"]["expiresAt"] = json!(now_ms() / 1000 + 3600);
        write_json(&home.creds_path(), &creds);
        chmod(&home.creds_path(), 0o600);
        let r = Hap::new(&home, None).run(&["doctor", "--json"]).expect(1);
        assert!(
            has(&findings(&r), "error", "looks like epoch seconds"),
            "{}",
            r.stdout
        );

        // credential_pool.anthropic is not a list.
        let home = tidy_home(HOUR_MS);
        write_json(
            &home.pool_path(""),
            &json!({"version": 1, "credential_pool": {"anthropic": {"id": "abcdef"}}}),
        );
        let r = Hap::new(&home, None).run(&["doctor"]).expect(1);
        assert!(
            r.stdout.contains("credential_pool.anthropic is not a list"),
            "{}",
            r.stdout
        );
        assert!(r.stdout.contains("error"), "{}", r.stdout);

        // An unparseable pool file.
        let home = tidy_home(HOUR_MS);
        fs::write(home.pool_path(""), b"{\"version\": 1,").unwrap();
        let r = Hap::new(&home, None).run(&["doctor", "--json"]).expect(1);
        assert!(
            has(&findings(&r), "error", "cannot be parsed"),
            "{}",
            r.stdout
        );

        // Nothing at all.
        let home = Home::new();
        let r = Hap::new(&home, None).run(&["doctor", "--json"]).expect(1);
        assert!(
            has(&findings(&r), "error", "no credential at all"),
            "{}",
            r.stdout
        );
        assert!(has(&findings(&r), "warn", "does not exist"), "{}", r.stdout);
    }

    #[test]
    fn doctor_finds_an_uncommitted_journal_pair_and_token_commits_it() {
        let server = FakeServer::start();
        let home = tidy_home(HOUR_MS);
        // A process refreshed (R1 spent, A2/R2 issued), journalled the pair, and died before
        // writing the credentials file.
        let journal = hap::internals::journal::Journal::for_store(&home.creds_path());
        write_json(
            journal.path(),
            &json!({"version": 1, "entries": [{
            "id": "j1", "grant": "credentials", "spent": hap::internals::secret::fingerprint(R1),
            "access_token": A2, "refresh_token": R2, "expires_at_ms": now_ms() + 2 * HOUR_MS,
            "committed": false, "at_ms": now_ms() - 1000}],
            "spent": [], "backoff": {"credentials": {"until_ms": now_ms() + 600_000,
            "failures": 2, "code": 503}}}),
        );
        chmod(journal.path(), 0o600);
        let hap = Hap::new(&home, Some(&server));
        let all = findings(&hap.run(&["doctor", "--json"]).expect(0));
        assert!(has(&all, "warn", "never reached"), "{all:#?}");
        assert!(has(&all, "warn", "backing off until"), "{all:#?}");
        let w = &find(&all, "warn", "never reached")[0];
        assert!(w["fix"]
            .as_str()
            .unwrap()
            .contains("hap token --force-refresh"));

        // Following the fix commits the journalled pair: no POST.
        let t = hap.token(&["--force-refresh"]).expect(0);
        assert_eq!(t.stdout.trim(), A2);
        assert_eq!(server.posts(), 0);
        assert_eq!(home.creds_access(), A2);
        let all = findings(&hap.run(&["doctor", "--json"]).expect(0));
        assert!(!has(&all, "warn", "never reached"), "{all:#?}");
    }

    #[test]
    fn doctor_online_reaches_the_endpoint_without_refreshing() {
        let server = FakeServer::start();
        let home = tidy_home(-60_000);
        let hap = Hap::new(&home, Some(&server));
        let all = findings(&hap.run(&["doctor", "--online", "--json"]).expect(0));
        assert!(
            has(&all, "ok", "is reachable (HTTP 404 to a GET"),
            "{all:#?}"
        );
        assert!(
            has(&all, "ok", "of the token endpoint's"),
            "the clock is compared: {all:#?}"
        );
        assert_eq!(server.posts(), 0, "--online never POSTs");
        assert_eq!(home.creds_access(), A1);

        // A closed port: nothing answers.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dead = format!("http://127.0.0.1:{port}/v1/oauth/token");
        let r = Hap::new(&home, None)
            .run(&["doctor", "--online", "--json", "--token-url", &dead])
            .expect(1);
        let all = findings(&r);
        assert!(has(&all, "warn", "is not reachable"), "{all:#?}");
        assert!(
            has(&all, "error", "no token endpoint is reachable"),
            "{all:#?}"
        );

        // A dead first URL with a live fallback is only a warning.
        let r = Hap::new(&home, None)
            .run(&[
                "doctor",
                "--online",
                "--json",
                "--token-url",
                &dead,
                "--token-url",
                &server.token_url(),
            ])
            .expect(0);
        assert!(has(&findings(&r), "warn", "is not reachable"));
    }

    #[test]
    fn doctor_names_the_holder_of_claude_codes_refresh_lock() {
        let home = tidy_home(HOUR_MS);
        let lock_dir = home.creds_path().with_file_name(".oauth_refresh.lock");
        let owner = home
            .creds_path()
            .with_file_name(".oauth_refresh.lock.hap-owner");
        fs::create_dir(&lock_dir).unwrap();
        let hap = Hap::new(&home, None);

        // Fresh, no owner file: Claude Code is refreshing.
        let all = findings(&hap.run(&["doctor", "--json"]).expect(0));
        assert!(
            has(&all, "info", "in Claude Code or another tool"),
            "{all:#?}"
        );

        // A live hap process (this test) holds it.
        fs::write(&owner, format!("{} 1 1\n", std::process::id())).unwrap();
        let all = findings(&hap.run(&["doctor", "--json"]).expect(0));
        assert!(
            has(
                &all,
                "info",
                &format!("in hap process {}", std::process::id())
            ),
            "{all:#?}"
        );

        // A hap process that has exited: taken over at once by the next hap.
        let mut child = Command::new("true").spawn().unwrap();
        let gone = child.id();
        child.wait().unwrap();
        fs::write(&owner, format!("{gone} 1 1\n")).unwrap();
        let all = findings(&hap.run(&["doctor", "--json"]).expect(0));
        assert!(
            has(
                &all,
                "warn",
                &format!("left by hap process {gone}, which has exited")
            ),
            "{all:#?}"
        );
    }

    #[test]
    fn debug_log_of_a_refresh_never_shows_a_token() {
        let server = FakeServer::start();
        let home = tidy_home(-60_000);
        let hap = Hap::new(&home, Some(&server));
        let out = hap
            .command(&["token"])
            .env("HAP_LOG", "debug")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.contains("hap["), "debug lines expected: {stderr}");
        assert_no_secret("HAP_LOG=debug stderr", &stderr);
        assert_eq!(server.posts(), 1);
    }
}

mod first_runs {
    //! Issue 10: a new user's first runs (items 15 and 16), with only HOME set.
    use super::*;

    /// `hap` with only HOME set (no HERMES_HOME, no CLAUDE_CONFIG_DIR): the defaults a new user
    /// gets, `~/.hermes/auth.json` and `~/.claude/.credentials.json`.
    fn hap_at_home(bin: &Path, home: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(bin);
        c.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home)
            .current_dir(home);
        c
    }

    fn run_cmd(mut c: Command) -> Run {
        let out = c.output().expect("hap runs");
        Run {
            code: out.status.code().expect("hap exits, not killed"),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        }
    }

    /// A user who never installed Hermes: `hap token`, `hap report` and `hap doctor` work from
    /// Claude Code's login alone and create nothing under ~/.hermes; doctor says that 401/429
    /// verdicts then live only in each process's memory.
    #[test]
    fn without_hermes_nothing_is_created_under_dot_hermes() {
        let server = FakeServer::start();
        let home = Home::new();
        let root = home.dir.path();
        write_json(
            &root.join(".claude/.credentials.json"),
            &json!({"claudeAiOauth": {"accessToken": A1, "refreshToken": R1,
            "expiresAt": now_ms() - 1000, "scopes": ["user:inference"], "subscriptionType": "max"}}),
        );
        let bin = Path::new(env!("CARGO_BIN_EXE_hap"));
        let url = server.token_url();
        let t = run_cmd(hap_at_home(
            bin,
            root,
            &["token", "--json", "--token-url", &url],
        ))
        .expect(0);
        assert_eq!(
            t.json()["refreshed"],
            true,
            "refreshed from the login alone"
        );
        let id = t.json()["credential_id"].as_str().unwrap().to_string();
        let r = run_cmd(hap_at_home(
            bin,
            root,
            &["report", "--credential", &id, "--status", "429", "--json"],
        ))
        .expect(0);
        assert!(r.stderr.contains("no other process sees"), "{}", r.stderr);
        let d = run_cmd(hap_at_home(bin, root, &["doctor", "--json"])).expect(0);
        let all = findings(&d);
        assert!(
            has(&all, "info", "no Hermes directory") && has(&all, "info", "only in the memory"),
            "{}",
            d.stdout
        );
        assert!(
            !root.join(".hermes").exists(),
            "~/.hermes was created for a user without Hermes"
        );
    }

    /// A read-only ~/.hermes: `hap token` cannot adopt the login into the pool and fails with
    /// HAP_STATUS_IO; `hap doctor` must call that an error and say how to fix it (it reported
    /// "0 error(s)"). Run as an unprivileged throwaway user: root writes anywhere.
    #[test]
    fn an_unwritable_pool_is_a_doctor_error_with_its_fix() {
        let Some(user) = policy::Throwaway::create() else {
            policy::skipped("an_unwritable_pool_is_a_doctor_error_with_its_fix");
            return;
        };
        let home = Home::new();
        let root = home.dir.path();
        let creds = root.join(".claude/.credentials.json");
        write_json(
            &creds,
            &json!({"claudeAiOauth": {"accessToken": A1, "refreshToken": R1,
            "expiresAt": now_ms() + HOUR_MS, "scopes": ["user:inference"], "subscriptionType": "max"}}),
        );
        let hermes = root.join(".hermes");
        fs::create_dir(&hermes).unwrap();
        // The binary where the user can run it; everything in the home is the user's.
        let bin = root.join("hap");
        fs::copy(env!("CARGO_BIN_EXE_hap"), &bin).unwrap();
        for p in [root, &root.join(".claude"), &creds, &hermes, &bin] {
            user.own(p);
        }
        chmod(root, 0o700);
        chmod(&creds, 0o600);
        chmod(&hermes, 0o500);
        let as_user = |args: &[&str]| {
            let mut c = user.command(&bin);
            c.args(args).env_clear().env("HOME", root).current_dir(root);
            run_cmd(c)
        };
        let t = as_user(&["token", "--token-url", "http://127.0.0.1:9/v1/oauth/token"]).expect(17);
        assert!(t.stderr.contains("auth.lock"), "{}", t.stderr);
        assert!(t.stderr.contains("hap doctor"), "{}", t.stderr);

        let d = as_user(&["doctor", "--json"]).expect(1);
        let all = findings(&d);
        let errs = find(&all, "error", "cannot write");
        assert!(
            !errs.is_empty(),
            "no error for the unwritable pool:\n{}",
            d.stdout
        );
        assert!(errs[0]["what"].as_str().unwrap().contains(".hermes"));
        let fix = errs[0]["fix"].as_str().unwrap();
        assert!(
            fix.contains("chmod u+rwx") && fix.contains("--no-pool"),
            "{fix}"
        );

        // A pool file the user cannot write, in a directory the user can: an error too.
        chmod(&hermes, 0o700);
        let pool = hermes.join("auth.json");
        fs::write(&pool, b"{}").unwrap();
        user.own(&pool);
        chmod(&pool, 0o400);
        let d = as_user(&["doctor", "--json"]).expect(1);
        assert!(
            has(&findings(&d), "error", "auth.json"),
            "no error for the read-only pool file:\n{}",
            d.stdout
        );
    }

    /// `hap token` is a one-shot process: it starts no store watch (whose inotify teardown was
    /// 80-90 % of its run time).
    #[test]
    fn token_starts_no_store_watch() {
        let server = FakeServer::start();
        let home = tidy_home(HOUR_MS);
        let hap = Hap::new(&home, Some(&server));
        for args in [&["token"][..], &["token", "--min-validity", "2h"][..]] {
            let out = hap.command(args).env("HAP_LOG", "debug").output().unwrap();
            assert_eq!(out.status.code(), Some(0));
            let stderr = String::from_utf8(out.stderr).unwrap();
            assert!(stderr.contains("hap["), "debug lines expected: {stderr}");
            assert!(
                !stderr.contains("store watch started"),
                "`hap {}` started a watch: {stderr}",
                args.join(" ")
            );
        }
        assert_eq!(server.posts(), 1, "the second run refreshed (and wrote)");
    }
}
