//! The library side of the agent: what a `Pool` does when its config's `agent` key is
//! `prefer` or `require`.
//!
//! Every resolve, report and status goes to the agent over its socket. When the agent
//! answers, that answer (a token or an error) is the call's answer, and this process never
//! reads a store, so it never holds a refresh token. When no agent answers (no socket, a
//! refused connection, a broken one, or an agent serving other stores), `prefer` does the
//! work in this process, as with `off`, and `require` fails with `UNAVAILABLE`.
//!
//! Before trusting a socket the client checks what the agent checks: the directory is its
//! own and closed to others, the socket file is its own, and the process at the other end
//! runs as its uid (`SO_PEERCRED`). A new connection first asks `{"op": "agent"}` and is
//! used only when the agent serves the same provider, pool file and credentials file as
//! this pool's config.

use super::dir::{euid, locate, RuntimeDir};
use super::proto::{self, Line, LineReader};
use super::AgentMode;
use crate::clock::now_ms;
use crate::config::Config;
use crate::error::{Error, Result, Status};
use crate::pool::{FailureOutcome, Token};
use crate::request::{Failure, ResolveRequest};
use crate::secret::Secret;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// After the agent did not answer, `prefer` does not try again for this long: a process
/// whose agent is down pays one failed `connect` a second, not one per resolve.
const QUIET_AFTER_FAILURE_MS: i64 = 1000;
/// Idle connections kept per pool, for callers on several threads.
const MAX_IDLE: usize = 8;

/// The uid of the process at the other end of a Unix socket.
pub fn peer_uid(s: &UnixStream) -> std::io::Result<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: SO_PEERCRED fills a `ucred` of `len` bytes on a socket `s` owns.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cred.uid)
}

/// Writes all of `bytes` with `MSG_NOSIGNAL`: a library must not raise SIGPIPE in a host
/// process (a C program dies of it) when the agent went away.
pub fn send_all(s: &UnixStream, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a valid slice for its length; the socket is owned by `s`.
        let n = unsafe {
            libc::send(
                s.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        bytes = &bytes[n as usize..];
    }
    Ok(())
}

struct Conn {
    stream: UnixStream,
    reader: LineReader,
}

impl Conn {
    /// One request, one answer, parsed before the buffer is reused.
    fn exchange<T>(
        &mut self,
        line: &str,
        parse: impl FnOnce(&[u8]) -> T,
    ) -> std::result::Result<T, String> {
        send_all(&self.stream, line.as_bytes()).map_err(|e| format!("cannot send: {e}"))?;
        match self.reader.next(&mut &self.stream) {
            Ok(Line::Line(l)) => Ok(parse(l)),
            Ok(Line::Eof) => Err("the agent closed the connection".into()),
            Ok(Line::TooLong) => Err("the agent's answer is too long".into()),
            Err(e) => Err(format!("no answer: {e}")),
        }
    }
}

/// Connects to the agent in `dir` after checking the directory, the socket file and the
/// peer's uid.
fn connect(dir: &RuntimeDir, timeout: Duration) -> std::result::Result<Conn, String> {
    dir.check().map_err(|e| e.message)?;
    let sock = dir.socket();
    let m = fs::symlink_metadata(&sock).map_err(|e| format!("{}: {e}", sock.display()))?;
    if !m.file_type().is_socket() || m.uid() != euid() {
        return Err(format!(
            "{} is not a socket owned by uid {}",
            sock.display(),
            euid()
        ));
    }
    let stream = UnixStream::connect(&sock).map_err(|e| format!("{}: {e}", sock.display()))?;
    let uid = peer_uid(&stream).map_err(|e| format!("SO_PEERCRED: {e}"))?;
    if uid != euid() {
        return Err(format!(
            "the process listening on {} runs as uid {uid}, not {}",
            sock.display(),
            euid()
        ));
    }
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(Duration::from_secs(5))))
        .map_err(|e| format!("cannot set timeouts: {e}"))?;
    Ok(Conn {
        stream,
        reader: LineReader::default(),
    })
}

/// `{"op": "agent"}` to the agent in `dir`: its state document (pid, stores, last and next
/// refresh), for `hap status` and `hap doctor`.
pub fn probe(dir: &RuntimeDir) -> Result<Value> {
    let unavailable = |why: String| {
        Error::new(Status::Unavailable, format!("no hap agent answers: {why}"))
            .with_path(&dir.socket())
    };
    let mut c = connect(dir, Duration::from_secs(5)).map_err(unavailable)?;
    c.exchange("{\"op\":\"agent\"}\n", proto::parse_answer)
        .map_err(unavailable)?
}

/// Whether two configured paths name the same file (a symlinked spelling included).
fn same_path(a: Option<&Path>, b: Option<&str>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            let b = Path::new(b);
            if a == b {
                return true;
            }
            let canon = |p: &Path| -> Option<PathBuf> {
                fs::canonicalize(p)
                    .ok()
                    .or_else(|| Some(fs::canonicalize(p.parent()?).ok()?.join(p.file_name()?)))
            };
            canon(a).is_some() && canon(a) == canon(b)
        }
        _ => false,
    }
}

#[derive(serde::Deserialize)]
struct TokenWire {
    access_token: String,
    credential_id: String,
    label: String,
    source: String,
    auth_type: String,
    expires_at_ms: Option<i64>,
    refreshed: bool,
}

#[derive(serde::Deserialize)]
struct TokenAnswer {
    ok: bool,
    result: Option<TokenWire>,
    error: Option<Value>,
}

fn parse_token(line: &[u8]) -> Result<Token> {
    // Straight into typed fields: the token is copied once, into a `Secret`.
    let a: TokenAnswer = serde_json::from_slice(line)
        .map_err(|e| Error::internal(format!("the agent's answer is malformed: {e}")))?;
    match (a.ok, a.result, a.error) {
        (true, Some(t), _) => Ok(Token {
            access_token: Secret::new(t.access_token),
            credential_id: t.credential_id,
            label: t.label,
            source: t.source,
            auth_type: t.auth_type,
            expires_at_ms: t.expires_at_ms,
            refreshed: t.refreshed,
        }),
        (false, _, Some(e)) => Err(proto::error_from_json(&e)),
        _ => Err(Error::internal("the agent's answer is malformed")),
    }
}

fn last_status(s: &str) -> Option<&'static str> {
    ["ok", "refresh_pending", "exhausted", "dead"]
        .into_iter()
        .find(|k| *k == s)
}

pub(crate) struct Link {
    mode: AgentMode,
    dir: RuntimeDir,
    provider: String,
    pool_path: Option<PathBuf>,
    credentials_path: Option<PathBuf>,
    timeout: Duration,
    idle: Mutex<Vec<Conn>>,
    /// Fingerprint of the token the agent last handed this pool, per credential: a 401
    /// report is about that token (see `proto`).
    served: Mutex<HashMap<String, String>>,
    quiet_until_ms: AtomicI64,
}

impl Link {
    /// `None` when the config does not ask for the agent.
    pub(crate) fn new(cfg: &Config) -> Option<Link> {
        if cfg.agent == AgentMode::Off {
            return None;
        }
        // Long enough for the agent's own slowest resolve: a lock wait, a POST to every
        // token URL, the 3 s watch after invalid_grant, and slack.
        let timeout_ms =
            cfg.lock_timeout_ms + cfg.http_timeout_ms * cfg.token_urls.len().max(1) as u64 + 8_000;
        Some(Link {
            mode: cfg.agent,
            dir: locate(),
            provider: cfg.provider.clone(),
            pool_path: cfg.pool_path.clone(),
            credentials_path: cfg.credentials_path.clone(),
            timeout: Duration::from_millis(timeout_ms),
            idle: Mutex::new(Vec::new()),
            served: Mutex::new(HashMap::new()),
            quiet_until_ms: AtomicI64::new(0),
        })
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Conn>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new connection to an agent that serves this pool's stores.
    fn open(&self) -> std::result::Result<Conn, String> {
        let mut c = connect(&self.dir, self.timeout)?;
        let info = c
            .exchange("{\"op\":\"agent\"}\n", proto::parse_answer)?
            .map_err(|e| format!("the agent refused: {}", e.message))?;
        let same = info["provider"].as_str() == Some(self.provider.as_str())
            && same_path(self.pool_path.as_deref(), info["pool_path"].as_str())
            && same_path(
                self.credentials_path.as_deref(),
                info["credentials_path"].as_str(),
            );
        if !same {
            return Err(format!(
                "the agent at {} serves other stores (provider {}, pool {}, credentials {})",
                self.dir.socket().display(),
                info["provider"],
                info["pool_path"],
                info["credentials_path"]
            ));
        }
        Ok(c)
    }

    /// One exchange, on an idle connection or a new one. A reused connection that fails
    /// (the agent restarted since) is replaced once.
    fn call<T>(&self, line: &str, parse: impl Fn(&[u8]) -> T) -> std::result::Result<T, String> {
        if self.mode == AgentMode::Prefer && now_ms() < self.quiet_until_ms.load(Ordering::Relaxed)
        {
            return Err("it did not answer a moment ago".into());
        }
        let reused = self.idle().pop();
        let attempt = |conn: Option<Conn>| -> std::result::Result<T, String> {
            let mut c = match conn {
                Some(c) => c,
                None => self.open()?,
            };
            let t = c.exchange(line, &parse)?;
            let mut idle = self.idle();
            if idle.len() < MAX_IDLE {
                idle.push(c);
            }
            Ok(t)
        };
        let result = match reused {
            Some(c) => attempt(Some(c)).or_else(|_| attempt(None)),
            None => attempt(None),
        };
        if result.is_err() {
            self.quiet_until_ms
                .store(now_ms() + QUIET_AFTER_FAILURE_MS, Ordering::Relaxed);
        }
        result
    }

    /// What a call does when no agent answered: `prefer` falls back (`None`), `require`
    /// refuses.
    fn unanswered<T>(&self, why: String) -> Option<Result<T>> {
        crate::log::debug(format_args!("agent: {why}"));
        match self.mode {
            AgentMode::Require => Some(Err(Error::new(
                Status::Unavailable,
                format!(
                    "config key 'agent' is \"require\", but no hap agent answers at {}: {why}; \
                     start one (`hap agent`) or set 'agent' to \"prefer\"",
                    self.dir.socket().display()
                ),
            )
            .with_path(&self.dir.socket()))),
            _ => None,
        }
    }

    /// At open: whether this pool may skip reading the stores. `require` never reads
    /// them; `prefer` skips them when an agent for these stores answers now.
    pub(crate) fn defers_open(&self) -> bool {
        match self.mode {
            AgentMode::Off => false,
            AgentMode::Require => true,
            AgentMode::Prefer => match self.open() {
                Ok(c) => {
                    self.idle().push(c);
                    true
                }
                Err(why) => {
                    crate::log::debug(format_args!("agent: {why}; reading the stores"));
                    self.quiet_until_ms
                        .store(now_ms() + QUIET_AFTER_FAILURE_MS, Ordering::Relaxed);
                    false
                }
            },
        }
    }

    pub(crate) fn resolve(
        &self,
        req: &ResolveRequest,
        default_min_validity_ms: u64,
    ) -> Option<Result<Token>> {
        // This pool's own refresh_skew_ms is the default, as in-process.
        let line = format!(
            "{}\n",
            json!({
                "op": "resolve",
                "min_validity_ms": req.min_validity_ms.unwrap_or(default_min_validity_ms),
                "credential_id": req.credential_id,
                "force_refresh": req.force_refresh,
            })
        );
        match self.call(&line, parse_token) {
            Ok(Ok(t)) => {
                let mut served = self.served.lock().unwrap_or_else(|p| p.into_inner());
                served.insert(t.credential_id.clone(), t.access_token.fingerprint());
                Some(Ok(t))
            }
            Ok(Err(e)) => Some(Err(e)),
            Err(why) => self.unanswered(why),
        }
    }

    pub(crate) fn report_failure(&self, f: &Failure) -> Option<Result<FailureOutcome>> {
        let fp = self
            .served
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&f.credential_id)
            .cloned();
        let line = format!(
            "{}\n",
            json!({
                "op": "report",
                "credential_id": f.credential_id,
                "status_code": f.status_code,
                "reason": f.reason,
                "message": f.message,
                "reset_at": f.reset_at_s,
                "retry_after_s": f.retry_after_s,
                "token_fingerprint": fp,
            })
        );
        let parse = |l: &[u8]| -> Result<FailureOutcome> {
            let v = proto::parse_answer(l)?;
            Ok(FailureOutcome {
                credential_id: v["credential_id"].as_str().unwrap_or_default().to_string(),
                last_status: v["last_status"]
                    .as_str()
                    .and_then(last_status)
                    .ok_or_else(|| Error::internal("the agent answered an unknown last_status"))?,
                available_at_ms: v["available_at_ms"].as_i64(),
            })
        };
        match self.call(&line, parse) {
            Ok(r) => Some(r),
            Err(why) => self.unanswered(why),
        }
    }

    pub(crate) fn status(&self) -> Option<Result<Value>> {
        match self.call("{\"op\":\"status\"}\n", proto::parse_answer) {
            Ok(r) => Some(r),
            Err(why) => self.unanswered(why),
        }
    }
}
