//! `HAP_CONFIG`: a JSON file of `hap_pool_open` keys under whatever the caller passes.
//!
//! Every case runs a real process with the variable in its own environment (never
//! `set_var` in this test process, where tests run in parallel): the example worker for the
//! library (`Pool::open_json`, the path `hap_pool_open` takes) and the `hap` binary for the
//! CLI, both against the fake token server.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

/// Runs the worker once with `cfg` and the given environment; its one JSON line.
fn worker(cfg: &Value, envs: &[(&str, &str)]) -> Value {
    let (v, stderr) = worker_result(spawn_worker(cfg, 0, envs));
    assert!(!v.is_null(), "worker printed nothing; stderr:\n{stderr}");
    v
}

fn expired_home() -> Home {
    let home = Home::new();
    home.write_creds(A1, R1, now_ms() - 60_000);
    home
}

fn write_file(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn paths_only(home: &Home) -> Value {
    json!({"pool_path": home.pool_path(""), "credentials_path": home.creds_path()})
}

#[test]
fn the_file_is_the_base_layer_of_hap_pool_open() {
    let server = FakeServer::start();
    let home = expired_home();
    let file = home.dir.path().join("hap-config.json");
    write_json(
        &file,
        &json!({"token_urls": [server.token_url()], "lock_timeout_ms": 20000}),
    );
    let file_s = file.to_str().unwrap();

    // The caller passes only paths, as the Python binding or a plugin would; the endpoint
    // comes from the file.
    let v = worker(&paths_only(&home), &[("HAP_CONFIG", file_s)]);
    assert_eq!(v["refreshed"], true, "{v}");
    assert_eq!(server.posts(), 1);
    assert_ne!(home.creds_access(), A1);

    // An empty variable is no variable: the caller's full config alone.
    let home2 = Home::new();
    home2.write_creds(A2, R2, now_ms() - 60_000);
    let mut cfg = paths_only(&home2);
    cfg["token_urls"] = json!([server.token_url()]);
    let v = worker(&cfg, &[("HAP_CONFIG", "")]);
    assert_eq!(v["refreshed"], true, "{v}");
    assert_eq!(server.posts(), 2);
}

#[test]
fn an_empty_caller_config_takes_everything_from_the_file() {
    let server = FakeServer::start();
    let home = expired_home();
    let file = home.dir.path().join("hap-config.json");
    write_json(
        &file,
        &json!({"pool_path": home.pool_path(""), "credentials_path": home.creds_path(),
                "token_urls": [server.token_url()]}),
    );
    // HOME points nowhere useful: the stores can only come from the file.
    let v = worker(
        &json!({}),
        &[
            ("HAP_CONFIG", file.to_str().unwrap()),
            ("HOME", "/nonexistent-hap-home"),
        ],
    );
    assert_eq!(v["refreshed"], true, "{v}");
    assert_eq!(server.posts(), 1);
    assert!(!home.rows("").is_empty(), "the file's pool_path was used");
}

#[test]
fn caller_keys_win_over_the_file() {
    let server = FakeServer::start();
    let home = expired_home();
    let file = home.dir.path().join("hap-config.json");
    // Port 9 (discard) on loopback: nothing answers there.
    write_json(
        &file,
        &json!({"token_urls": ["http://127.0.0.1:9/v1/oauth/token"], "http_timeout_ms": 500}),
    );
    let mut cfg = paths_only(&home);
    cfg["token_urls"] = json!([server.token_url()]);
    let v = worker(&cfg, &[("HAP_CONFIG", file.to_str().unwrap())]);
    assert_eq!(v["refreshed"], true, "{v}");
    assert_eq!(server.posts(), 1);
}

/// Each bad file: the error is INVALID_ARGUMENT and names the file and, where there is one,
/// the key; nothing is refreshed and the credentials file is untouched.
#[test]
fn a_bad_file_is_invalid_argument_naming_file_and_key() {
    let server = FakeServer::start();
    let home = expired_home();
    let before = std::fs::read(home.creds_path()).unwrap();
    let dir = home.dir.path();
    let cases: Vec<(&str, Option<&str>, Option<&str>)> = vec![
        // (file content, the key the message must name, other text it must hold)
        (r#"{"token_urls": ["#, None, Some("not valid JSON")),
        (r#"["not", "an object"]"#, None, Some("JSON object")),
        (
            r#"{"token_url": ["https://x"]}"#,
            Some("token_url"),
            Some("unknown"),
        ),
        (
            r#"{"lock_timeout_ms": "25s"}"#,
            Some("lock_timeout_ms"),
            None,
        ),
        (
            r#"{"token_urls": ["http://example.com/v1/oauth/token"]}"#,
            Some("token_urls"),
            None,
        ),
        (
            r#"{"pool_path": "relative/auth.json"}"#,
            Some("pool_path"),
            None,
        ),
    ];
    for (i, (content, key, extra)) in cases.into_iter().enumerate() {
        let file = dir.join(format!("bad-{i}.json"));
        write_file(&file, content);
        let mut cfg = paths_only(&home);
        cfg["token_urls"] = json!([server.token_url()]);
        // The caller overriding a bad key does not hide it: the file is still wrong.
        if key == Some("lock_timeout_ms") {
            cfg["lock_timeout_ms"] = json!(5000);
        }
        let v = worker(&cfg, &[("HAP_CONFIG", file.to_str().unwrap())]);
        assert_eq!(v["error"], "HAP_STATUS_INVALID_ARGUMENT", "case {i}: {v}");
        let msg = v["message"].as_str().unwrap();
        assert!(msg.contains(file.to_str().unwrap()), "case {i}: {msg}");
        assert!(msg.contains("HAP_CONFIG"), "case {i}: {msg}");
        if let Some(k) = key {
            assert!(msg.contains(&format!("'{k}'")), "case {i}: {msg}");
        }
        if let Some(x) = extra {
            assert!(msg.contains(x), "case {i}: {msg}");
        }
    }
    // A file that does not exist, and a relative name.
    let missing = dir.join("missing.json");
    let v = worker(
        &paths_only(&home),
        &[("HAP_CONFIG", missing.to_str().unwrap())],
    );
    assert_eq!(v["error"], "HAP_STATUS_INVALID_ARGUMENT", "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("cannot read"),
        "{v}"
    );
    let v = worker(&paths_only(&home), &[("HAP_CONFIG", "hap-config.json")]);
    assert_eq!(v["error"], "HAP_STATUS_INVALID_ARGUMENT", "{v}");
    assert!(v["message"].as_str().unwrap().contains("absolute"), "{v}");

    assert_eq!(server.posts(), 0);
    assert_eq!(std::fs::read(home.creds_path()).unwrap(), before);
}

fn hap_cli(home: &Home, hap_config: &str, args: &[&str]) -> (i32, String, String) {
    let root = home.dir.path();
    let out = Command::new(env!("CARGO_BIN_EXE_hap"))
        .args(args)
        .current_dir(root)
        .env("HOME", root)
        .env("HERMES_HOME", root.join("hermes"))
        .env("CLAUDE_CONFIG_DIR", root.join("claude"))
        .env("HAP_CONFIG", hap_config)
        .env_remove("HAP_LOG")
        .output()
        .expect("hap runs");
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn the_cli_honours_hap_config_under_its_options() {
    let server = FakeServer::start();
    let home = expired_home();
    let file = home.dir.path().join("hap-config.json");
    write_json(&file, &json!({"token_urls": [server.token_url()]}));
    let file_s = file.to_str().unwrap();

    let (code, out, err) = hap_cli(&home, file_s, &["token", "--json"]);
    assert_eq!(code, 0, "{err}");
    let t: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(t["refreshed"], true);
    assert_eq!(server.posts(), 1);

    // --token-url wins over the file: a dead endpoint in the file is never tried.
    write_json(
        &file,
        &json!({"token_urls": ["http://127.0.0.1:9/v1/oauth/token"], "http_timeout_ms": 500}),
    );
    let url = server.token_url();
    let (code, _, err) = hap_cli(
        &home,
        file_s,
        &["token", "--force-refresh", "--token-url", &url],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(server.posts(), 2);
    // --config wins over the file too.
    let over = home.dir.path().join("over.json");
    write_json(&over, &json!({"token_urls": [url]}));
    let (code, _, err) = hap_cli(
        &home,
        file_s,
        &[
            "token",
            "--force-refresh",
            "--config",
            over.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(server.posts(), 3);
}

#[test]
fn the_cli_refuses_a_bad_hap_config() {
    let server = FakeServer::start();
    let home = expired_home();
    let file = home.dir.path().join("hap-config.json");
    let file_s = file.to_str().unwrap();
    let url = server.token_url();
    // A bad file: exit 11 (INVALID_ARGUMENT), stderr names the file and the key.
    write_file(&file, r#"{"strategy": "fastest"}"#);
    for args in [
        &["status"][..],
        &["doctor"][..],
        &["token", "--token-url", &url][..],
    ] {
        let (code, out, err) = hap_cli(&home, file_s, args);
        assert_eq!(code, 11, "{args:?}: {out}{err}");
        assert!(err.contains(file_s) && err.contains("'strategy'"), "{err}");
        assert!(!err.contains("sk-ant-"), "{err}");
    }
    assert_eq!(server.posts(), 0);
}
