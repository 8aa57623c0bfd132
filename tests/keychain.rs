//! The macOS Keychain store (`src/store/keychain.rs`, issue 12 item 4) against a fake
//! `security` program (`testing/fake_security.py`: a keychain in a JSON file, the real exit
//! statuses 44 and 36, every run's argv and standard input logged), on Linux: no Mac ran
//! these. The refresh goes to the real fake token server.

mod common;

use common::*;
use hap::internals::authority::{Authority, Written};
use hap::internals::credentials::{CredentialsFile, Issued, TokenPair};
use hap::internals::keychain::KeychainStore;
use hap::internals::lock::Held;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;

const SERVICE: &str = "Claude Code-credentials";

/// A temporary home with a fake `security` (`<dir>/kc/security`, a symlink to the fake, which
/// keeps its state beside it).
struct Mac {
    home: Home,
}

impl Mac {
    fn new() -> Mac {
        let home = Home::new();
        let kc = home.dir.path().join("kc");
        std::fs::create_dir_all(&kc).unwrap();
        std::os::unix::fs::symlink(repo().join("testing/fake_security.py"), kc.join("security"))
            .unwrap();
        Mac { home }
    }

    fn kc(&self, name: &str) -> PathBuf {
        self.home.dir.path().join("kc").join(name)
    }

    fn security(&self) -> PathBuf {
        self.kc("security")
    }

    fn account() -> String {
        hap::internals::keychain::account_name_from_env()
    }

    /// Claude Code's storage JSON, as it keeps it in the item (compact, beside `mcpOAuth`).
    fn login(access: &str, refresh: &str, expires_at_ms: i64) -> Value {
        json!({
            "claudeAiOauth": {
                "accessToken": access,
                "refreshToken": refresh,
                "expiresAt": expires_at_ms,
                "scopes": ["user:inference", "user:profile"],
                "subscriptionType": "max",
                "rateLimitTier": "default_claude_max_20x"
            },
            "mcpOAuth": {"keep": "me"}
        })
    }

    fn put_item(&self, service: &str, v: &Value) {
        let kc = json!({"items": [
            {"account": Mac::account(), "service": service, "password": v.to_string()}
        ]});
        std::fs::write(self.kc("keychain.json"), kc.to_string()).unwrap();
    }

    fn item(&self, service: &str) -> Option<Value> {
        if !self.kc("keychain.json").exists() {
            return None;
        }
        let kc = read_json(&self.kc("keychain.json"));
        kc["items"].as_array().unwrap().iter().find_map(|i| {
            (i["service"] == service && i["account"] == Mac::account().as_str())
                .then(|| serde_json::from_str(i["password"].as_str().unwrap()).unwrap())
        })
    }

    /// Every run of the fake: (argv, stdin).
    fn log(&self) -> Vec<(Vec<String>, String)> {
        let Ok(text) = std::fs::read_to_string(self.kc("log.jsonl")) else {
            return Vec::new();
        };
        text.lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                let argv = v["argv"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap().to_string())
                    .collect();
                (argv, v["stdin"].as_str().unwrap().to_string())
            })
            .collect()
    }

    fn config(&self, server: &FakeServer) -> Value {
        json!({
            "pool_path": null,
            "credentials_path": self.home.creds_path(),
            "credentials_store": "keychain",
            "security_program": self.security(),
            "token_urls": [server.token_url()],
            "lock_timeout_ms": 20000,
            "http_timeout_ms": 5000,
        })
    }
}

/// `Pool::open`'s error (the pool reads its login store at open).
fn open_err(cfg: &Value) -> hap::Error {
    match hap::Pool::open_json(Some(&cfg.to_string())) {
        Ok(_) => panic!("the pool opened"),
        Err(e) => e,
    }
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// No secret, nor its hex, in any argv the fake saw.
fn assert_no_secret_in_argv(mac: &Mac, secrets: &[&str]) {
    let log = mac.log();
    assert!(!log.is_empty());
    for (argv, _) in &log {
        let line = argv.join(" ");
        for s in secrets {
            assert!(!line.contains(s), "a token in argv: {argv:?}");
            assert!(!line.contains(&hex(s)), "a token's hex in argv: {argv:?}");
        }
        assert!(!line.contains("sk-ant-"), "{argv:?}");
        assert!(!line.contains(&hex("sk-ant-")), "{argv:?}");
    }
}

mod read {
    use super::*;

    #[test]
    fn the_item_is_read_with_find_generic_password_and_wins_over_the_file() {
        let s = FakeServer::start();
        let mac = Mac::new();
        mac.put_item(SERVICE, &Mac::login(A1, R1, now_ms() + 3_600_000));
        // A stale file beside it: Claude Code reads the Keychain first, so does hap.
        mac.home.write_creds(A2, R2, now_ms() + 3_600_000);
        let pool = open_with(mac.config(&s));
        let t = resolve(&pool).unwrap();
        assert_eq!(t.access_token.expose(), A1);
        assert!(!t.refreshed);
        assert_eq!(s.posts(), 0);
        let (argv, _) = &mac.log()[0];
        assert_eq!(
            argv,
            &[
                "find-generic-password",
                "-a",
                &Mac::account(),
                "-w",
                "-s",
                SERVICE
            ]
        );
        assert_no_secret_in_argv(&mac, &[A1, R1]);
    }

    #[test]
    fn no_item_falls_back_to_the_credentials_file() {
        let s = FakeServer::start();
        let mac = Mac::new();
        mac.home.write_creds(A1, R1, now_ms() + 3_600_000);
        let pool = open_with(mac.config(&s));
        assert_eq!(resolve(&pool).unwrap().access_token.expose(), A1);
        // The fake answered 44 (no item) and hap read the file.
        assert!(mac
            .log()
            .iter()
            .all(|(a, _)| a[0] == "find-generic-password"));
        // The item appears (Claude Code logged in again): it is read at the next call,
        // with no file change to notice (Stamp::Unknown).
        mac.put_item(SERVICE, &Mac::login(A2, R2, now_ms() + 3_600_000));
        assert_eq!(resolve(&pool).unwrap().access_token.expose(), A2);
    }

    #[test]
    fn a_locked_keychain_is_a_clear_error_without_a_token_and_no_fallback() {
        let s = FakeServer::start();
        let mac = Mac::new();
        mac.put_item(SERVICE, &Mac::login(A1, R1, now_ms() + 3_600_000));
        mac.home.write_creds(A2, R2, now_ms() + 3_600_000);
        std::fs::write(mac.kc("locked"), b"").unwrap();
        let e = open_err(&mac.config(&s));
        assert_eq!(e.status, hap::Status::Io, "{e}");
        assert!(e.message.contains("locked"), "{}", e.message);
        assert!(e.message.contains("unlock"), "{}", e.message);
        assert!(e.message.contains(SERVICE), "{}", e.message);
        assert!(!e.message.contains("sk-ant-"), "{}", e.message);
        assert_eq!(s.posts(), 0);
    }

    #[test]
    fn an_item_that_is_not_json_is_store_corrupt_naming_the_item_not_its_text() {
        let s = FakeServer::start();
        let mac = Mac::new();
        let kc = json!({"items": [{"account": Mac::account(), "service": SERVICE,
            "password": "{\"claudeAiOauth\": {\"accessToken\": \"sk-ant-oat01-fake-cut"}]});
        std::fs::write(mac.kc("keychain.json"), kc.to_string()).unwrap();
        let e = open_err(&mac.config(&s));
        assert_eq!(e.status, hap::Status::StoreCorrupt, "{e}");
        assert!(e.message.contains("Keychain"), "{}", e.message);
        assert!(!e.message.contains("sk-ant-"), "{}", e.message);
    }
}

mod write {
    use super::*;

    #[test]
    fn a_refresh_is_written_back_to_the_item_through_stdin_only() {
        let s = FakeServer::start();
        let mac = Mac::new();
        mac.put_item(SERVICE, &Mac::login(A1, R1, now_ms() - 1000));
        let pool = open_with(mac.config(&s));
        let t = resolve(&pool).unwrap();
        assert!(t.refreshed);
        assert_eq!(s.posts(), 1);
        let item = mac.item(SERVICE).unwrap();
        let o = &item["claudeAiOauth"];
        assert_eq!(o["accessToken"], t.access_token.expose());
        let new_refresh = o["refreshToken"].as_str().unwrap().to_string();
        assert_ne!(new_refresh, R1);
        assert!(o["expiresAt"].as_i64().unwrap() > now_ms());
        // Everything else survives, in order.
        assert_eq!(o["subscriptionType"], "max");
        assert_eq!(o["rateLimitTier"], "default_claude_max_20x");
        assert_eq!(item["mcpOAuth"], json!({"keep": "me"}));
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
        // Claude Code's exact command, on standard input, the hex of the compact JSON.
        let log = mac.log();
        let writes: Vec<_> = log.iter().filter(|(a, _)| a == &["-i"]).collect();
        assert_eq!(writes.len(), 1, "{log:?}");
        let stdin = &writes[0].1;
        let prefix = format!(
            "add-generic-password -U -a \"{}\" -s \"{SERVICE}\" -X \"",
            Mac::account()
        );
        assert!(stdin.starts_with(&prefix), "{stdin}");
        assert!(stdin.ends_with("\"\n"));
        let stored = mac.kc("keychain.json");
        let kc = read_json(&stored);
        let password = kc["items"][0]["password"].as_str().unwrap();
        assert_eq!(
            stdin[prefix.len()..stdin.len() - 2],
            hex(password),
            "the hex of what the item holds"
        );
        assert!(!password.contains(": "), "compact JSON: {password}");
        // The file was not created, and nothing was deleted.
        assert!(!mac.home.creds_path().exists());
        assert!(!log.iter().any(|(a, _)| a[0] == "delete-generic-password"));
        assert_no_secret_in_argv(&mac, &[A1, R1, t.access_token.expose(), &new_refresh]);
        // The journal sits beside the credentials file.
        assert!(mac
            .home
            .creds_path()
            .with_file_name(".credentials.hap-journal.json")
            .exists());
    }

    #[test]
    fn with_no_item_the_refresh_is_written_to_the_file_and_no_item_is_made() {
        let s = FakeServer::start();
        let mac = Mac::new();
        mac.home.write_creds(A1, R1, now_ms() - 1000);
        let pool = open_with(mac.config(&s));
        let t = resolve(&pool).unwrap();
        assert!(t.refreshed);
        let c = mac.home.creds();
        assert_eq!(c["claudeAiOauth"]["accessToken"], t.access_token.expose());
        assert_eq!(c["claudeAiOauth"]["subscriptionType"], "max");
        assert_eq!(mac.item(SERVICE), None);
        assert!(!mac
            .log()
            .iter()
            .any(|(a, _)| a[0] != "find-generic-password"));
    }

    /// The store itself, as the refresh transaction calls it (`Authority::write_pair`).
    fn store(mac: &Mac) -> KeychainStore {
        KeychainStore::with_item(
            mac.security(),
            SERVICE.into(),
            Mac::account(),
            CredentialsFile::new(mac.home.creds_path()),
        )
    }

    fn new_pair() -> TokenPair {
        TokenPair {
            access: hap::Secret::new(A2),
            refresh: Some(hap::Secret::new(R2)),
            expires_at_ms: Some(4_102_444_800_000),
        }
    }

    fn journal(mac: &Mac) -> String {
        std::fs::read_to_string(
            mac.home
                .creds_path()
                .with_file_name(".credentials.hap-journal.json"),
        )
        .unwrap()
    }

    #[test]
    fn a_login_too_long_for_one_stdin_line_is_refused_never_put_in_argv() {
        let mac = Mac::new();
        let mut login = Mac::login(A1, R1, now_ms() - 1000);
        // Claude Code keeps MCP servers' OAuth beside the login; enough of it passes
        // 4032 bytes of hex.
        login["mcpOAuth"] = json!({"servers": "x".repeat(2100)});
        mac.put_item(SERVICE, &login);
        let e = Authority::write_pair(
            &store(&mac),
            &Held::default(),
            Some(&hap::Secret::new(R1)),
            &new_pair(),
            &Issued::default(),
        )
        .unwrap_err();
        assert!(e.message.contains("4032"), "{}", e.message);
        assert!(e.message.contains("argv"), "{}", e.message);
        assert!(!e.message.contains("sk-ant-"), "{}", e.message);
        assert_eq!(mac.item(SERVICE).unwrap(), login);
        // `security` never ran with an add, in argv or on stdin.
        assert!(mac
            .log()
            .iter()
            .all(|(a, _)| a[0] == "find-generic-password"));

        // The same through a real refresh: the token server has answered, so the new pair
        // is served and kept in hap's journal, never dropped; the item stays as it was.
        let s = FakeServer::start();
        let pool = open_with(mac.config(&s));
        let t = resolve(&pool).unwrap();
        assert!(t.refreshed);
        assert_eq!(s.posts(), 1);
        assert!(journal(&mac).contains(t.access_token.expose()));
        assert_eq!(mac.item(SERVICE).unwrap(), login);
        assert!(mac
            .log()
            .iter()
            .all(|(a, _)| a[0] == "find-generic-password"));
        assert_no_secret_in_argv(&mac, &[A1, R1, t.access_token.expose()]);
    }

    #[test]
    fn a_swallowed_add_is_not_called_stored() {
        let mac = Mac::new();
        mac.put_item(SERVICE, &Mac::login(A1, R1, now_ms() - 1000));
        std::fs::write(mac.kc("fail_add"), b"").unwrap();
        let e = Authority::write_pair(
            &store(&mac),
            &Held::default(),
            Some(&hap::Secret::new(R1)),
            &new_pair(),
            &Issued::default(),
        )
        .unwrap_err();
        assert!(
            e.message.contains("does not hold the new pair"),
            "{}",
            e.message
        );
        assert!(!e.message.contains("sk-ant-"), "{}", e.message);
        assert_eq!(
            mac.item(SERVICE).unwrap()["claudeAiOauth"]["refreshToken"],
            R1
        );
    }

    #[test]
    fn a_keychain_locked_for_the_write_writes_nothing_anywhere() {
        let mac = Mac::new();
        let login = Mac::login(A1, R1, now_ms() - 1000);
        mac.put_item(SERVICE, &login);
        std::fs::write(mac.kc("locked_add"), b"").unwrap();
        let e = Authority::write_pair(
            &store(&mac),
            &Held::default(),
            Some(&hap::Secret::new(R1)),
            &new_pair(),
            &Issued::default(),
        )
        .unwrap_err();
        assert!(e.message.contains("locked"), "{}", e.message);
        assert!(!e.message.contains("sk-ant-"), "{}", e.message);
        // Claude Code's transient case: the item is kept, and no file appears beside it.
        assert_eq!(mac.item(SERVICE).unwrap(), login);
        assert!(!mac.home.creds_path().exists());
    }

    #[test]
    fn the_write_is_a_compare_and_set_on_the_refresh_token() {
        let mac = Mac::new();
        let login = Mac::login(A1, R1, now_ms() - 1000);
        mac.put_item(SERVICE, &login);
        let k = store(&mac);
        let stale = hap::Secret::new("sk-ant-ort01-fake-r0");
        let w = Authority::write_pair(
            &k,
            &Held::default(),
            Some(&stale),
            &new_pair(),
            &Issued::default(),
        );
        assert_eq!(w.unwrap(), Written::Moved);
        assert_eq!(mac.item(SERVICE).unwrap(), login);
        let holds = hap::Secret::new(R1);
        let w = Authority::write_pair(
            &k,
            &Held::default(),
            Some(&holds),
            &new_pair(),
            &Issued::default(),
        );
        assert_eq!(w.unwrap(), Written::Stored);
        assert_eq!(Authority::read_pair(&k).unwrap().pair.unwrap(), new_pair());
        assert!(matches!(
            Authority::stamp(&k).unwrap(),
            hap::internals::authority::Stamp::Unknown
        ));
        assert_eq!(Authority::file(&k), None);
        // The credentials file's locks and journal.
        let file = CredentialsFile::new(mac.home.creds_path());
        assert_eq!(
            Authority::locks(&k).unwrap(),
            Authority::locks(&file).unwrap()
        );
        assert_eq!(
            Authority::journal(&k).unwrap().path(),
            Authority::journal(&file).unwrap().path()
        );
    }
}

/// The item's name from the environment, through the `hap` program (the environment is the
/// process's own, so each case is a process).
mod item_name {
    use super::*;

    fn sha8(s: &str) -> String {
        use sha2::Digest;
        let d = sha2::Sha256::digest(s.as_bytes());
        d[..4].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Runs `hap status` with `env`; answers the `-a` and `-s` the fake was asked for.
    fn asked(env: &[(&str, Option<&str>)]) -> (String, String) {
        let s = FakeServer::start();
        let mac = Mac::new();
        let cfg = mac.home.dir.path().join("cfg.json");
        write_json(&cfg, &mac.config(&s));
        let mut c = Command::new(env!("CARGO_BIN_EXE_hap"));
        c.args(["--config", cfg.to_str().unwrap(), "status", "--json"])
            .env("HOME", mac.home.dir.path())
            .env_remove("HAP_CONFIG")
            .env_remove("CLAUDE_CONFIG_DIR")
            .env_remove("CLAUDE_SECURESTORAGE_CONFIG_DIR");
        for (k, v) in env {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        let out = c.output().unwrap();
        let log = mac.log();
        let (argv, _) = log
            .first()
            .unwrap_or_else(|| panic!("security never ran: {out:?}"));
        assert_eq!(argv[0], "find-generic-password");
        (argv[2].clone(), argv[5].clone())
    }

    #[test]
    fn claude_config_dir_hashes_into_the_service_name() {
        let (_, service) = asked(&[("CLAUDE_CONFIG_DIR", Some("/tmp/hap-cc"))]);
        assert_eq!(service, format!("{SERVICE}-{}", sha8("/tmp/hap-cc")));
        // As given: no trailing-slash trimming, no realpath.
        let (_, service) = asked(&[("CLAUDE_CONFIG_DIR", Some("/tmp/hap-cc/"))]);
        assert_eq!(service, format!("{SERVICE}-{}", sha8("/tmp/hap-cc/")));
        let (_, service) = asked(&[]);
        assert_eq!(service, SERVICE);
    }

    #[test]
    fn securestorage_config_dir_wins_and_set_but_empty_means_no_hash() {
        let (_, service) = asked(&[
            ("CLAUDE_SECURESTORAGE_CONFIG_DIR", Some("/tmp/hap-secure")),
            ("CLAUDE_CONFIG_DIR", Some("/tmp/hap-cc")),
        ]);
        assert_eq!(service, format!("{SERVICE}-{}", sha8("/tmp/hap-secure")));
        let (_, service) = asked(&[
            ("CLAUDE_SECURESTORAGE_CONFIG_DIR", Some("")),
            ("CLAUDE_CONFIG_DIR", Some("/tmp/hap-cc")),
        ]);
        assert_eq!(service, SERVICE);
    }

    #[test]
    fn the_account_is_user_else_the_password_database_else_a_safe_name() {
        let (account, _) = asked(&[("USER", Some("alice.b-1"))]);
        assert_eq!(account, "alice.b-1");
        let (account, _) = asked(&[("USER", Some("not ok"))]);
        assert_eq!(account, "claude-code-user");
        let who = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string();
        let (account, _) = asked(&[("USER", None)]);
        let plain = who
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        assert_eq!(
            account,
            if plain {
                who
            } else {
                "claude-code-user".into()
            }
        );
    }
}

#[test]
fn a_security_that_hangs_is_stopped_and_reported() {
    let s = FakeServer::start();
    let mac = Mac::new();
    mac.put_item(SERVICE, &Mac::login(A1, R1, now_ms() + 3_600_000));
    std::fs::write(mac.kc("sleep"), b"30").unwrap();
    let started = std::time::Instant::now();
    let e = open_err(&mac.config(&s));
    assert!(e.message.contains("did not answer"), "{}", e.message);
    // Stopped at hap's bound, not after the fake's 30 s.
    assert!(started.elapsed() < std::time::Duration::from_secs(25));
}

mod reports {
    //! `hap doctor` and `hap status` read the login where the config does: on a Mac, Claude
    //! Code keeps it in the Keychain item and may have no credentials file at all. Before,
    //! doctor warned "does not exist: no Claude Code login" there, and status missed the
    //! refresh token's expiry.
    use super::*;

    fn hap_cli(mac: &Mac, cfg: &Value, args: &[&str]) -> (i32, String) {
        let file = mac.home.dir.path().join("hap-config.json");
        std::fs::write(&file, cfg.to_string()).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_hap"))
            .arg("--config")
            .arg(&file)
            .args(args)
            .env("HOME", mac.home.dir.path())
            .env_remove("HAP_CONFIG")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        for text in [&stdout, &stderr] {
            assert!(!text.contains("sk-ant-oat01-kc"), "a token in the output");
            assert!(!text.contains("sk-ant-ort01-kc"), "a token in the output");
        }
        (out.status.code().unwrap_or(-1), stdout + &stderr)
    }

    fn credentials_findings(out: &str) -> Vec<Value> {
        let doc: Value = serde_json::Deserializer::from_str(out)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("{out}"))
            .unwrap_or_else(|e| panic!("{e}: {out}"));
        doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["check"] == "credentials" || f["check"] == "refresh expiry")
            .cloned()
            .collect()
    }

    #[test]
    fn doctor_reads_the_login_from_the_keychain_item_when_there_is_no_file() {
        let server = FakeServer::start();
        let mac = Mac::new();
        let mut login = Mac::login(
            "sk-ant-oat01-kc-fake-a1",
            "sk-ant-ort01-kc-fake-r1",
            now_ms() + 3_600_000,
        );
        // The refresh token itself runs out in two days: a warning either store must give.
        login["claudeAiOauth"]["refreshTokenExpiresAt"] = json!(now_ms() + 2 * 86_400_000);
        mac.put_item(SERVICE, &login);
        assert!(!mac.home.creds_path().exists());
        let cfg = mac.config(&server);
        let (_, out) = hap_cli(&mac, &cfg, &["doctor", "--json"]);
        let found = credentials_findings(&out);
        let text = |level: &str| -> Vec<String> {
            found
                .iter()
                .filter(|f| f["level"] == level)
                .map(|f| f["what"].as_str().unwrap().to_string())
                .collect()
        };
        assert!(
            text("ok")
                .iter()
                .any(|w| w.contains("Keychain item 'Claude Code-credentials'")
                    && w.contains("parses; the login's access token expires in")),
            "{found:#?}"
        );
        assert!(
            !text("warn").iter().any(|w| w.contains("does not exist")),
            "{found:#?}"
        );
        assert!(
            text("warn")
                .iter()
                .any(|w| w.contains("Keychain item") && w.contains("refresh token itself expires")),
            "{found:#?}"
        );
        // hap status says the same of the refresh token, and names the item.
        let (code, out) = hap_cli(&mac, &cfg, &["status"]);
        assert_eq!(code, 0, "{out}");
        assert!(
            out.contains("The refresh token in macOS Keychain item 'Claude Code-credentials'"),
            "{out}"
        );
        assert_eq!(server.posts(), 0);
    }

    #[test]
    fn doctor_says_a_locked_keychain_is_locked_not_that_there_is_no_login() {
        let server = FakeServer::start();
        let mac = Mac::new();
        mac.put_item(
            SERVICE,
            &Mac::login(
                "sk-ant-oat01-kc-fake-a1",
                "sk-ant-ort01-kc-fake-r1",
                now_ms() + 3_600_000,
            ),
        );
        std::fs::write(mac.kc("locked"), "").unwrap();
        let (_, out) = hap_cli(&mac, &mac.config(&server), &["doctor", "--json"]);
        let found = credentials_findings(&out);
        let errors: Vec<&Value> = found.iter().filter(|f| f["level"] == "error").collect();
        assert_eq!(errors.len(), 1, "{found:#?}");
        assert!(
            errors[0]["what"]
                .as_str()
                .unwrap()
                .contains("the keychain is locked"),
            "{found:#?}"
        );
        assert!(
            errors[0]["fix"]
                .as_str()
                .unwrap()
                .contains("credentials_store"),
            "{found:#?}"
        );
    }

    #[test]
    fn with_no_keychain_item_doctor_checks_the_file_as_claude_code_reads_it() {
        let server = FakeServer::start();
        let mac = Mac::new();
        mac.home.write_creds(
            "sk-ant-oat01-kc-fake-a1",
            "sk-ant-ort01-kc-fake-r1",
            now_ms() + 3_600_000,
        );
        let (_, out) = hap_cli(&mac, &mac.config(&server), &["doctor", "--json"]);
        let found = credentials_findings(&out);
        assert!(
            found.iter().any(|f| f["level"] == "info"
                && f["what"]
                    .as_str()
                    .unwrap()
                    .contains("no macOS Keychain item")),
            "{found:#?}"
        );
        let file = mac.home.creds_path().display().to_string();
        assert!(
            found
                .iter()
                .any(|f| f["level"] == "ok" && f["what"].as_str().unwrap().starts_with(&file)),
            "{found:#?}"
        );
    }
}
