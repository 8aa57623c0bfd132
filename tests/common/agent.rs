//! Scaffolding for tests/agent.rs (issue 15): a real `hap agent` process and its socket.
#![allow(dead_code)]

use super::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn hap_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hap"))
}

/// Polls `f` every 20 ms until it is true; false after `timeout`.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A private runtime directory, as `XDG_RUNTIME_DIR` is (0700).
pub fn runtime_dir(home: &Home, name: &str) -> PathBuf {
    let d = home.dir.path().join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
    d
}

/// The environment every process of a test gets: its home, its stores, its runtime dir
/// (`None`: no `XDG_RUNTIME_DIR`, so the fallback directory).
pub fn home_env(cmd: &mut Command, home: &Home, xdg: Option<&Path>) {
    let root = home.dir.path();
    cmd.env("HOME", root)
        .env("HERMES_HOME", root.join("hermes"))
        .env("CLAUDE_CONFIG_DIR", root.join("claude"))
        .env("ANTHROPIC_CONFIG_DIR", root.join("anthropic"))
        .env_remove("HAP_LOG")
        .env_remove("HAP_CONFIG")
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("ANTHROPIC_AUTH_TOKEN")
        .env_remove("ANTHROPIC_PROFILE");
    match xdg {
        Some(x) => cmd.env("XDG_RUNTIME_DIR", x),
        None => cmd.env_remove("XDG_RUNTIME_DIR"),
    };
}

/// A running `hap agent`; its stderr (JSON log lines) is collected as it comes.
pub struct AgentProc {
    pub child: Child,
    pub socket: PathBuf,
    log: Arc<Mutex<String>>,
}

/// Writes `cfg` as the agent's `--config` file.
pub fn config_file(home: &Home, name: &str, cfg: &Value) -> PathBuf {
    let p = home.dir.path().join(name);
    write_json(&p, cfg);
    p
}

impl AgentProc {
    /// `hap --config CFG agent --log-format json ARGS`, started in `home` with `xdg` as its
    /// runtime directory; returns once the socket answers (panics if the agent exits).
    pub fn start(
        home: &Home,
        cfg: &Value,
        xdg: Option<&Path>,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> AgentProc {
        let mut argv: Vec<String> = vec!["agent".into(), "--log-format".into(), "json".into()];
        argv.extend(args.iter().map(|s| s.to_string()));
        AgentProc::spawn(home, cfg, xdg, &hap_bin(), &argv, envs, true)
    }

    /// The same with an explicit program and argv (the systemd unit's ExecStart).
    pub fn spawn(
        home: &Home,
        cfg: &Value,
        xdg: Option<&Path>,
        program: &Path,
        argv: &[String],
        envs: &[(&str, &str)],
        wait_ready: bool,
    ) -> AgentProc {
        let cfg_path = config_file(home, &format!("agent-{}.json", now_ms()), cfg);
        let mut c = Command::new(program);
        c.args(argv)
            .arg("--config")
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        home_env(&mut c, home, xdg);
        for (k, v) in envs {
            c.env(k, v);
        }
        let mut child = c.spawn().expect("hap agent starts");
        let log = Arc::new(Mutex::new(String::new()));
        let l2 = log.clone();
        let mut err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                l2.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let socket = match xdg {
            Some(x) => x.join("hap/agent.sock"),
            None => fallback_dir().join("agent.sock"),
        };
        let mut a = AgentProc { child, socket, log };
        if wait_ready {
            let ok = wait_until(Duration::from_secs(30), || {
                if let Ok(Some(st)) = a.child.try_wait() {
                    panic!("hap agent exited ({st}):\n{}", a.log());
                }
                UnixStream::connect(&a.socket).is_ok()
            });
            assert!(ok, "hap agent never listened:\n{}", a.log());
        }
        a
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The log's JSON lines whose `event` is `event`.
    pub fn events(&self, event: &str) -> Vec<Value> {
        self.log()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["event"] == event)
            .collect()
    }

    pub fn ask(&self, line: &str) -> Value {
        ask(&self.socket, line)
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: sends a signal to the child this test started.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// SIGTERM, then the exit status (panics after 60 s).
    pub fn term(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait(Duration::from_secs(60))
    }

    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let mut st = None;
        let ok = wait_until(timeout, || {
            st = self.child.try_wait().unwrap();
            st.is_some()
        });
        assert!(ok, "hap agent did not exit:\n{}", self.log());
        st.unwrap()
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `/run/user/<uid>/hap` when that runtime directory exists, else `/tmp/hap-<uid>`: where
/// an agent and its clients meet without `XDG_RUNTIME_DIR`.
pub fn fallback_dir() -> PathBuf {
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    let run_user = PathBuf::from(format!("/run/user/{uid}"));
    if run_user.is_dir() {
        run_user.join("hap")
    } else {
        PathBuf::from(format!("/tmp/hap-{uid}"))
    }
}

/// One request line on a new connection, its answer parsed.
pub fn ask(socket: &Path, line: &str) -> Value {
    let mut s = UnixStream::connect(socket).expect("the agent's socket accepts");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    // An agent that refuses the peer (another uid) answers and closes before reading the
    // request: the write may then fail with EPIPE, and the answer is still there to read.
    let _ = s.write_all(line.as_bytes());
    let _ = s.write_all(b"\n");
    let mut answer = String::new();
    BufReader::new(s).read_line(&mut answer).unwrap();
    serde_json::from_str(&answer).unwrap_or_else(|e| panic!("answer {answer:?}: {e}"))
}

/// sha256 of a token, 16 hex digits: how readers and the fake Messages API name tokens.
pub fn sha16(token: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(token.as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every access token the journal beside the credentials file knows, with its expiry.
pub fn journalled_tokens(home: &Home) -> Vec<(String, i64, bool)> {
    let p = home
        .creds_path()
        .with_file_name(".credentials.hap-journal.json");
    let j = read_json(&p);
    j["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["access_token"].as_str().unwrap().to_string(),
                e["expires_at_ms"].as_i64().unwrap(),
                e["committed"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// The example reader (`examples/hap_reader.rs`), built by `cargo test`.
pub fn reader_bin() -> PathBuf {
    let w = worker_bin();
    w.with_file_name("hap_reader")
}
