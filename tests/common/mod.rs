//! Shared scaffolding for the integration tests: the real fake token server, a temporary
//! home with Hermes and Claude Code stores, and the worker process used for races.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub const A1: &str = "sk-ant-oat01-fake-a1";
pub const R1: &str = "sk-ant-ort01-fake-r1";
pub const A2: &str = "sk-ant-oat01-fake-a2";
pub const R2: &str = "sk-ant-ort01-fake-r2";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn now_ms() -> i64 {
    hap::internals::clock::now_ms()
}

/// `testing/fake_token_server.py`, started for one test and gone with it.
pub struct FakeServer {
    child: Child,
    pub base: String,
    agent: ureq::Agent,
}

impl FakeServer {
    pub fn start() -> FakeServer {
        let mut child = Command::new("python3")
            .arg(repo().join("testing/fake_token_server.py"))
            .arg("--exit-on-stdin-eof")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the fake token server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line.trim().to_string();
        assert!(
            base.starts_with("http://127.0.0.1:"),
            "server said {base:?}"
        );
        FakeServer {
            child,
            base,
            agent: ureq::AgentBuilder::new().build(),
        }
    }

    pub fn token_url(&self) -> String {
        format!("{}/v1/oauth/token", self.base)
    }

    fn admin(&self, path: &str, body: Value) -> Value {
        self.agent
            .post(&format!("{}/_admin/{path}", self.base))
            .send_json(body)
            .unwrap()
            .into_json()
            .unwrap()
    }

    pub fn stats(&self) -> Value {
        self.agent
            .get(&format!("{}/_admin/stats", self.base))
            .call()
            .unwrap()
            .into_json()
            .unwrap()
    }

    pub fn posts(&self) -> u64 {
        self.stats()["posts"].as_u64().unwrap()
    }

    pub fn script(&self, faults: Value) {
        self.admin("script", json!({ "faults": faults }));
    }

    pub fn revoke(&self, refresh_token: &str) {
        self.admin("revoke", json!({ "refresh_token": refresh_token }));
    }

    pub fn set_expires_in(&self, s: i64) {
        self.admin("config", json!({ "expires_in": s }));
    }

    /// Spends a refresh token as another client would (an older Claude Code, say).
    pub fn spend(&self, refresh_token: &str) -> Value {
        self.agent
            .post(&self.token_url())
            .send_json(json!({"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": "other"}))
            .unwrap()
            .into_json()
            .unwrap()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temporary home: `hermes/auth.json` (and profiles), `claude/.credentials.json`.
pub struct Home {
    pub dir: tempfile::TempDir,
}

impl Home {
    pub fn new() -> Home {
        Home {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn creds_path(&self) -> PathBuf {
        self.dir.path().join("claude/.credentials.json")
    }

    pub fn pool_path(&self, profile: &str) -> PathBuf {
        if profile.is_empty() {
            self.dir.path().join("hermes/auth.json")
        } else {
            self.dir
                .path()
                .join(format!("hermes/profiles/{profile}/auth.json"))
        }
    }

    /// A Claude Code credentials file with keys hap must never drop.
    pub fn write_creds(&self, access: &str, refresh: &str, expires_at_ms: i64) {
        let v = json!({
            "claudeAiOauth": {
                "accessToken": access,
                "refreshToken": refresh,
                "expiresAt": expires_at_ms,
                "scopes": ["user:inference", "user:profile"],
                "subscriptionType": "max",
                "rateLimitTier": "default_claude_max_20x"
            },
            "mcpOAuth": {"keep": "me"}
        });
        write_json(&self.creds_path(), &v);
    }

    pub fn creds(&self) -> Value {
        read_json(&self.creds_path())
    }

    pub fn creds_access(&self) -> String {
        self.creds()["claudeAiOauth"]["accessToken"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub fn pool(&self, profile: &str) -> Value {
        read_json(&self.pool_path(profile))
    }

    pub fn rows(&self, profile: &str) -> Vec<Value> {
        self.pool(profile)["credential_pool"]["anthropic"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn config(&self, server: &FakeServer, profile: &str) -> Value {
        json!({
            "pool_path": self.pool_path(profile),
            "credentials_path": self.creds_path(),
            "token_urls": [server.token_url()],
            "lock_timeout_ms": 20000,
            "http_timeout_ms": 5000,
        })
    }

    pub fn open(&self, server: &FakeServer, profile: &str) -> hap::Pool {
        open_with(self.config(server, profile))
    }
}

pub fn open_with(cfg: Value) -> hap::Pool {
    hap::Pool::open_json(Some(&cfg.to_string())).expect("pool opens")
}

pub fn write_json(path: &Path, v: &Value) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, serde_json::to_vec_pretty(v).unwrap()).unwrap();
}

pub fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

pub fn resolve(pool: &hap::Pool) -> hap::Result<hap::Token> {
    pool.resolve(&hap::ResolveRequest::default())
}

/// The example worker binary (`examples/hap_worker.rs`), built by `cargo test`.
pub fn worker_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir.join("examples/hap_worker");
    assert!(
        bin.exists(),
        "{} missing: run via cargo test",
        bin.display()
    );
    bin
}

/// Starts a worker that resolves once with `cfg` at `start_at_ms`.
pub fn spawn_worker(cfg: &Value, start_at_ms: i64, envs: &[(&str, &str)]) -> Child {
    let mut c = Command::new(worker_bin());
    c.arg(cfg.to_string())
        .env("HAP_DEMO_START_AT_MS", start_at_ms.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        c.env(k, v);
    }
    c.spawn().unwrap()
}

/// Waits for a worker and parses its one JSON line.
pub fn worker_result(child: Child) -> (Value, String) {
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let v = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null);
    (v, stderr)
}
