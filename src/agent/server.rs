//! `hap agent`: the refresh schedule, the socket server, the state file and the SDK profile.
//!
//! Threads: one refresher, one acceptor, one per connection. None holds a lock of its own
//! across a refresh: every refresh is `Pool::resolve` on the agent's one pool, so the
//! in-process single flight, the cross-process locks, the journal and the adoption of a
//! sibling's rotation are exactly those of every other hap process.
//!
//! **Schedule.** Each tick reads the pool's status (two `stat` calls) and, for every
//! credential hap can refresh, resolves it with `min_validity_ms = lead + jitter` once it is
//! within that of its expiry: the refresh transaction POSTs, or adopts what another process
//! already rotated. The jitter is drawn anew for every expiry, so two agents on one login,
//! or many hosts, do not all wake at the same instant (and when they do, the locks make it
//! one POST). Ticks come at the next due time, and at least every `poll_ms`, which is also
//! how soon a rotation made by another process reaches the SDK profile.
//!
//! **Stopping.** `stop` (SIGTERM/SIGINT in `hap agent`) first removes the socket, so new
//! clients fall back at once; then every request in progress and the refresher's current
//! tick run to their end: a refresh whose POST was sent is answered, journalled and
//! committed before the process exits, and its locks are released by the transaction
//! itself. Only then is the state file marked stopped and `agent.lock` released.

use super::client::{peer_uid, send_all};
use super::dir::{euid, locate, RuntimeDir};
use super::proto::{self, Line, LineReader, Op};
use super::AgentMode;
use crate::clock::{iso8601_utc, now_ms};
use crate::config::Config;
use crate::error::{Error, Result, Status};
use crate::pool::{FailureOutcome, Pool};
use crate::request::ResolveRequest;
use crate::sdk_profile::SdkProfile;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;
use zeroize::Zeroizing;

/// Connections served at once; more are answered "busy" and closed.
const MAX_CONNECTIONS: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug)]
pub struct Options {
    /// The pool the agent keeps fresh (its `agent` key is ignored: the agent is the agent).
    pub config: Config,
    /// Refresh this long before expiry.
    pub lead_ms: u64,
    /// Plus a random extra of up to this, drawn per expiry.
    pub jitter_ms: u64,
    /// Look at the stores at least this often.
    pub poll_ms: u64,
    /// Keep this Anthropic SDK profile current (see `sdk_profile.rs`).
    pub sdk_profile: Option<String>,
    pub log_format: LogFormat,
}

/// Structured log lines on stderr: ids, paths, times and statuses, never a token.
pub struct Logger {
    format: LogFormat,
}

impl Logger {
    pub fn new(format: LogFormat) -> Logger {
        Logger { format }
    }

    pub fn log(&self, level: &str, event: &str, fields: Value) {
        let now = now_ms();
        let fields = match fields {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        let line = match self.format {
            LogFormat::Json => {
                let mut m = Map::new();
                m.insert("ts".into(), format!("{}Z", &iso8601_utc(now)[..23]).into());
                m.insert("level".into(), level.into());
                m.insert("event".into(), event.into());
                m.insert("pid".into(), std::process::id().into());
                m.extend(fields);
                Value::Object(m).to_string()
            }
            LogFormat::Text => {
                let mut s = format!(
                    "hap agent[{}] {}Z {level} {event}",
                    std::process::id(),
                    &iso8601_utc(now)[..23]
                );
                for (k, v) in fields {
                    let v = match v {
                        Value::String(s)
                            if !s.is_empty()
                                && !s.contains(|c: char| c.is_whitespace() || c == '"') =>
                        {
                            s
                        }
                        v => v.to_string(),
                    };
                    s.push_str(&format!(" {k}={v}"));
                }
                s
            }
        };
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{line}");
    }
}

#[derive(Default)]
struct State {
    started_at_ms: i64,
    last_refresh_at_ms: Option<i64>,
    last_rotation_at_ms: Option<i64>,
    next_refresh_at_ms: Option<i64>,
    refresh_posts: u64,
    rotations_seen: u64,
    last_error: Option<Value>,
    profile_written_at_ms: Option<i64>,
    stopped_at_ms: Option<i64>,
}

/// What the refresher remembers between ticks, per credential.
#[derive(Default)]
struct Schedule {
    /// The jitter drawn for an expiry: (expires_at_ms, jitter_ms).
    jitter: HashMap<String, (i64, u64)>,
    /// No attempt before this (epoch ms) while the credential still expires at the second
    /// value: after a failure, or a refresh that did not happen.
    retry: HashMap<String, (i64, i64)>,
    /// Expiry last seen, to notice rotations made by other processes.
    seen: HashMap<String, i64>,
    /// Last profile error logged, to log each cause once.
    profile_error: Option<String>,
}

struct Shared {
    pool: Pool,
    opts: Options,
    dir: RuntimeDir,
    log: Logger,
    stopping: AtomicBool,
    /// Wakes the refresher early (stop).
    wake: (Mutex<bool>, Condvar),
    state: Mutex<State>,
    schedule: Mutex<Schedule>,
    profile: Mutex<Option<SdkProfile>>,
    /// Live connections (a clone of each stream), to end their reads at stop.
    conns: (Mutex<HashMap<u64, UnixStream>>, Condvar),
    next_conn: AtomicU64,
    /// The state document last written to `agent.json`.
    state_written: Mutex<String>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A refreshing thread's random draw, without a dependency: the std hasher's random keys.
fn random_below(n: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    if n == 0 {
        return 0;
    }
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_i64(now_ms());
    h.finish() % (n + 1)
}

/// A credential hap refreshes (docs/SPEC.md, "Where a row's tokens live"): OAuth, with a
/// token and an expiry, borrowed from Claude Code or owned by the pool, not dead.
fn refreshable(c: &Value) -> Option<(&str, i64)> {
    let source = c["source"].as_str()?;
    let ours = source == "claude_code" || source == "manual" || source.starts_with("manual:");
    if !ours || c["auth_type"] != "oauth" || c["has_token"] != true || c["last_status"] == "dead" {
        return None;
    }
    Some((c["credential_id"].as_str()?, c["expires_at_ms"].as_i64()?))
}

impl Shared {
    fn state_json(&self) -> Value {
        let s = lock(&self.state);
        let cfg = &self.opts.config;
        let path = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.display().to_string());
        let profile = lock(&self.profile).as_ref().map(|p| {
            json!({
                "name": p.name,
                "config_path": p.config_path(),
                "credentials_path": p.credentials_path(),
                "written_at_ms": s.profile_written_at_ms,
            })
        });
        json!({
            "version": 1,
            "protocol": proto::PROTOCOL,
            "pid": std::process::id(),
            "uid": euid(),
            "hap_version": crate::VERSION_STRING,
            "started_at_ms": s.started_at_ms,
            "stopped_at_ms": s.stopped_at_ms,
            "socket": self.dir.socket(),
            "provider": cfg.provider,
            "pool_path": path(&cfg.pool_path),
            "credentials_path": path(&cfg.credentials_path),
            "lead_ms": self.opts.lead_ms,
            "jitter_ms": self.opts.jitter_ms,
            "poll_ms": self.opts.poll_ms,
            "last_refresh_at_ms": s.last_refresh_at_ms,
            "last_rotation_at_ms": s.last_rotation_at_ms,
            "next_refresh_at_ms": s.next_refresh_at_ms,
            "refresh_posts": s.refresh_posts,
            "rotations_seen": s.rotations_seen,
            "last_error": s.last_error,
            "sdk_profile": profile,
        })
    }

    /// `agent.json` beside the socket, rewritten only when it changes.
    fn write_state(&self) {
        let text = serde_json::to_string_pretty(&self.state_json()).expect("serializes");
        let mut last = lock(&self.state_written);
        if *last == text {
            return;
        }
        match crate::sdk_profile::write_private(&self.dir.state(), text.as_bytes()) {
            Ok(_) => *last = text,
            Err(e) => self.log.log(
                "warn",
                "state_not_written",
                json!({"path": self.dir.state(), "error": e.message}),
            ),
        }
    }

    fn note_error(&self, e: &Error, credential_id: Option<&str>) {
        lock(&self.state).last_error = Some(json!({
            "at_ms": now_ms(),
            "credential_id": credential_id,
            "status": e.status.name(),
            "message": e.message,
        }));
    }

    /// One pass of the schedule; returns when the next one is due (epoch ms).
    fn tick(&self) -> i64 {
        let poll = self.opts.poll_ms as i64;
        let lead = self.opts.lead_ms as i64;
        let now = now_ms();
        let mut next = now + poll;
        let status = || match self.pool.status() {
            Ok(d) => Some(d),
            Err(e) => {
                self.log.log(
                    "error",
                    "status_failed",
                    json!({"status": e.status.name(), "message": e.message, "path": e.path}),
                );
                self.note_error(&e, None);
                None
            }
        };
        let Some(mut doc) = status() else {
            return next;
        };
        if self.unadopted(&doc) {
            // A resolve brings Claude Code's login into the pool file (docs/SPEC.md,
            // "Adopting Claude Code's login"); a status never writes. Without this an agent
            // on a fresh pool file would see no credential to keep fresh.
            if let Ok(t) = self.pool.resolve(&ResolveRequest {
                min_validity_ms: Some(0),
                ..ResolveRequest::default()
            }) {
                if t.refreshed {
                    self.note_refreshed(&t.credential_id, t.expires_at_ms);
                }
            }
            let Some(d) = status() else {
                return next;
            };
            doc = d;
        }
        let creds = doc["credentials"].as_array().cloned().unwrap_or_default();
        let mut next_refresh: Option<i64> = None;
        for c in &creds {
            let Some((id, exp)) = refreshable(c) else {
                continue;
            };
            let mut sch = lock(&self.schedule);
            if let Some(old) = sch.seen.insert(id.to_string(), exp) {
                if old != exp {
                    // Rotated by another process (our own refreshes update `seen` below).
                    let mut s = lock(&self.state);
                    s.last_rotation_at_ms = Some(now);
                    s.rotations_seen += 1;
                    drop(s);
                    self.log.log(
                        "info",
                        "rotated_elsewhere",
                        json!({"credential_id": id, "expires_at_ms": exp}),
                    );
                }
            }
            let jitter = match sch.jitter.get(id) {
                Some(&(e, j)) if e == exp => j,
                _ => {
                    let j = random_below(self.opts.jitter_ms);
                    sch.jitter.insert(id.to_string(), (exp, j));
                    j
                }
            };
            let due = exp - lead - jitter as i64;
            let retry_at = match sch.retry.get(id) {
                Some(&(until, at_exp)) if at_exp == exp && until > now => Some(until),
                _ => None,
            };
            drop(sch);
            let when = retry_at.unwrap_or(due);
            if now < when {
                next = next.min(when);
                next_refresh = Some(next_refresh.map_or(when, |n: i64| n.min(when)));
                continue;
            }
            self.refresh_one(id, exp, lead as u64 + jitter);
            // The next due time comes from the next tick's fresh status.
            next = now;
        }
        self.sync_profile();
        lock(&self.state).next_refresh_at_ms = next_refresh;
        self.write_state();
        // Straight on after a refresh (the next due time needs a fresh status), but never a
        // busy loop: a failed or deferred refresh has set its retry time.
        next.max(now_ms() + 10)
    }

    /// A login in the credentials file that the pool file has no row for yet.
    fn unadopted(&self, doc: &Value) -> bool {
        let cfg = &self.opts.config;
        cfg.pool_path.is_some()
            && cfg.credentials_path.is_some()
            && cfg.adopt_external_logins
            && !doc["credentials"]
                .as_array()
                .is_some_and(|c| c.iter().any(|r| r["source"] == "claude_code"))
    }

    fn note_refreshed(&self, id: &str, expires_at_ms: Option<i64>) {
        let mut s = lock(&self.state);
        s.last_refresh_at_ms = Some(now_ms());
        s.last_rotation_at_ms = Some(now_ms());
        s.refresh_posts += 1;
        s.rotations_seen += 1;
        drop(s);
        if let Some(e) = expires_at_ms {
            lock(&self.schedule).seen.insert(id.to_string(), e);
        }
        self.log.log(
            "info",
            "refreshed",
            json!({"credential_id": id, "expires_at_ms": expires_at_ms}),
        );
    }

    /// Resolves one credential with the lead as its minimum validity: the refresh
    /// transaction POSTs, adopts another process's rotation, or fails.
    fn refresh_one(&self, id: &str, exp: i64, min_validity_ms: u64) {
        let req = ResolveRequest {
            min_validity_ms: Some(min_validity_ms),
            credential_id: Some(id.to_string()),
            force_refresh: false,
        };
        let retry_ms = (self.opts.lead_ms as i64 / 4).clamp(1_000, 60_000);
        let now = now_ms();
        match self.pool.resolve(&req) {
            Ok(t) => {
                let new_exp = t.expires_at_ms;
                if t.refreshed {
                    self.note_refreshed(id, new_exp);
                } else if new_exp != Some(exp) {
                    let mut s = lock(&self.state);
                    s.last_rotation_at_ms = Some(now_ms());
                    s.rotations_seen += 1;
                    drop(s);
                    self.log.log(
                        "info",
                        "adopted",
                        json!({"credential_id": id, "expires_at_ms": new_exp}),
                    );
                }
                let mut sch = lock(&self.schedule);
                if let Some(e) = new_exp {
                    sch.seen.insert(id.to_string(), e);
                }
                // Served but not renewed: the refresh failed and the token is still valid
                // (docs/SPEC.md, "Resolve" step 5). Try again in a while, not at once.
                if new_exp.is_some_and(|e| e - now_ms() <= min_validity_ms as i64) {
                    sch.retry.insert(id.to_string(), (now + retry_ms, exp));
                    drop(sch);
                    self.log.log(
                        "warn",
                        "not_refreshed",
                        json!({"credential_id": id, "expires_at_ms": new_exp,
                               "retry_in_ms": retry_ms}),
                    );
                } else {
                    sch.retry.remove(id);
                }
            }
            Err(e) => {
                let until = e.retry_at_ms.unwrap_or(now + retry_ms).max(now + 1_000);
                lock(&self.schedule)
                    .retry
                    .insert(id.to_string(), (until, exp));
                let level = if e.status == Status::ReauthRequired {
                    "error"
                } else {
                    "warn"
                };
                self.log.log(
                    level,
                    "refresh_failed",
                    json!({"credential_id": id, "status": e.status.name(),
                           "message": e.message, "retry_at_ms": until}),
                );
                self.note_error(&e, Some(id));
            }
        }
    }

    /// Writes the SDK profile when the token a resolve would hand out has changed.
    fn sync_profile(&self) {
        let mut guard = lock(&self.profile);
        let Some(profile) = guard.as_mut() else {
            return;
        };
        let any = ResolveRequest {
            min_validity_ms: Some(0),
            ..ResolveRequest::default()
        };
        let pinned = profile.credential_id().map(|id| ResolveRequest {
            credential_id: Some(id.to_string()),
            ..any.clone()
        });
        let resolved = match &pinned {
            Some(p) => self.pool.resolve(p).or_else(|_| self.pool.resolve(&any)),
            None => self.pool.resolve(&any),
        };
        if let Ok(t) = &resolved {
            if t.refreshed {
                self.note_refreshed(&t.credential_id, t.expires_at_ms);
            }
        }
        let result = resolved.and_then(|t| {
            let wrote = profile.sync(&t)?;
            Ok((t, wrote))
        });
        match result {
            Ok((t, wrote)) => {
                lock(&self.schedule).profile_error = None;
                if wrote {
                    lock(&self.state).profile_written_at_ms = Some(now_ms());
                    self.log.log(
                        "info",
                        "profile_written",
                        json!({"profile": profile.name, "path": profile.credentials_path(),
                               "credential_id": t.credential_id, "expires_at_ms": t.expires_at_ms}),
                    );
                }
            }
            Err(e) => {
                let cause = format!("{}: {}", e.status.name(), e.message);
                let mut sch = lock(&self.schedule);
                if sch.profile_error.as_deref() != Some(cause.as_str()) {
                    sch.profile_error = Some(cause);
                    drop(sch);
                    self.log.log(
                        "warn",
                        "profile_not_written",
                        json!({"profile": profile.name, "status": e.status.name(),
                               "message": e.message}),
                    );
                }
            }
        }
    }

    /// One request line in, one answer line out.
    fn answer(&self, line: &[u8]) -> Zeroizing<String> {
        let req = proto::parse_request(line);
        let id = req.id;
        let op = match req.op {
            Ok(op) => op,
            Err(e) => return proto::err_line(&id, &e),
        };
        match op {
            Op::Resolve(r) => match self.pool.resolve(&r) {
                Ok(t) => {
                    if t.refreshed {
                        // A client asked for more validity than the schedule keeps.
                        self.note_refreshed(&t.credential_id, t.expires_at_ms);
                    }
                    proto::ok_line(&id, &Zeroizing::new(t.to_json_string()))
                }
                Err(e) => proto::err_line(&id, &e),
            },
            Op::Report {
                failure,
                token_fingerprint,
            } => {
                // A 401 for a token the store no longer holds: another process rotated it
                // already. Judged against the caller's token, not the agent's last one.
                if let (Some(fp), 401) = (&token_fingerprint, failure.status_code) {
                    let terminal = failure
                        .reason
                        .as_deref()
                        .is_some_and(|r| crate::policy::is_terminal_reason(r.trim()));
                    let current = self.pool.resolve(&ResolveRequest {
                        min_validity_ms: Some(0),
                        credential_id: Some(failure.credential_id.clone()),
                        force_refresh: false,
                    });
                    if let (false, Ok(t)) = (terminal, current) {
                        if &t.access_token.fingerprint() != fp {
                            let o = FailureOutcome {
                                credential_id: t.credential_id,
                                last_status: "ok",
                                available_at_ms: None,
                            };
                            return proto::ok_line(&id, &o.to_json().to_string());
                        }
                    }
                }
                match self.pool.report_failure(&failure) {
                    Ok(o) => proto::ok_line(&id, &o.to_json().to_string()),
                    Err(e) => proto::err_line(&id, &e),
                }
            }
            Op::Status => match self.pool.status() {
                Ok(doc) => proto::ok_line(&id, &doc.to_string()),
                Err(e) => proto::err_line(&id, &e),
            },
            Op::Agent => proto::ok_line(&id, &self.state_json().to_string()),
        }
    }

    fn serve(&self, stream: UnixStream) {
        match peer_uid(&stream) {
            Ok(uid) if uid == euid() => {}
            other => {
                let who = match other {
                    Ok(uid) => format!("uid {uid}"),
                    Err(e) => format!("an unknown peer ({e})"),
                };
                self.log.log(
                    "warn",
                    "peer_refused",
                    json!({"peer": who, "serves_uid": euid()}),
                );
                let e = Error::new(
                    Status::Io,
                    format!(
                        "permission denied: this hap agent serves uid {} only, not {who}",
                        euid()
                    ),
                );
                let _ = send_all(&stream, proto::err_line(&None, &e).as_bytes());
                return;
            }
        }
        let mut reader = LineReader::default();
        loop {
            let answer = match reader.next(&mut &stream) {
                Ok(Line::Line(l)) => self.answer(l),
                Ok(Line::TooLong) => {
                    let e = Error::invalid("request line longer than 64 KiB");
                    let _ = send_all(&stream, proto::err_line(&None, &e).as_bytes());
                    return;
                }
                Ok(Line::Eof) | Err(_) => return,
            };
            if send_all(&stream, answer.as_bytes()).is_err() {
                return;
            }
        }
    }
}

/// A running agent. [`Agent::stop`] ends it in order; dropping it without `stop` leaves its
/// threads running until the process exits.
pub struct Agent {
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
    refresher: Option<JoinHandle<()>>,
    wake_write: OwnedFd,
    _lock: File,
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Error::new(
            Status::Io,
            format!("cannot create a pipe: {}", std::io::Error::last_os_error()),
        ));
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Takes `agent.lock` so that one agent serves a directory: a second one fails at once,
/// naming the first.
fn take_lock(dir: &RuntimeDir) -> Result<File> {
    let path = dir.lock();
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|e| Error::io(&path, "cannot open", &e))?;
    // SAFETY: flock on a descriptor `f` owns.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let pid = fs::read(dir.state())
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|v| v["pid"].as_i64());
        return Err(Error::new(
            Status::LockTimeout,
            format!(
                "another hap agent already serves {}{}: stop it first (one agent per user)",
                dir.path.display(),
                pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
            ),
        )
        .with_path(&path));
    }
    Ok(f)
}

/// Binds the socket with mode 0600 (the umask is narrowed around `bind`, so it is never
/// wider, even for an instant), after removing a stale one: `agent.lock` is held, so no
/// other agent is using it.
fn bind(dir: &RuntimeDir) -> Result<UnixListener> {
    let sock = dir.socket();
    match fs::symlink_metadata(&sock) {
        Ok(m) if m.file_type().is_socket() || m.file_type().is_symlink() => {
            fs::remove_file(&sock).map_err(|e| Error::io(&sock, "cannot remove", &e))?
        }
        Ok(_) => {
            return Err(Error::new(
                Status::Io,
                format!("{} exists and is not a socket: remove it", sock.display()),
            )
            .with_path(&sock))
        }
        Err(_) => {}
    }
    // SAFETY: umask only swaps the process's file-creation mask.
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(&sock);
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    let l = bound.map_err(|e| Error::io(&sock, "cannot listen on", &e))?;
    fs::set_permissions(&sock, fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io(&sock, "cannot chmod", &e))?;
    Ok(l)
}

impl Agent {
    /// Opens the pool, takes the directory, binds the socket, writes the SDK profile's
    /// config and starts serving. Returns once the socket accepts connections.
    pub fn start(mut opts: Options) -> Result<Agent> {
        opts.config.agent = AgentMode::Off;
        let log = Logger::new(opts.log_format);
        let dir = locate();
        dir.create()?;
        let lock_file = take_lock(&dir)?;
        let pool = Pool::open(opts.config.clone())?;
        let profile = match &opts.sdk_profile {
            Some(name) => {
                let p = SdkProfile::new(name)?;
                p.prepare()?;
                Some(p)
            }
            None => None,
        };
        let (wake_read, wake_write) = pipe()?;
        let shared = Arc::new(Shared {
            pool,
            dir: dir.clone(),
            log,
            stopping: AtomicBool::new(false),
            wake: (Mutex::new(false), Condvar::new()),
            state: Mutex::new(State {
                started_at_ms: now_ms(),
                ..State::default()
            }),
            schedule: Mutex::new(Schedule::default()),
            profile: Mutex::new(profile),
            conns: (Mutex::new(HashMap::new()), Condvar::new()),
            next_conn: AtomicU64::new(0),
            state_written: Mutex::new(String::new()),
            opts,
        });
        // The state file exists before anyone can connect.
        shared.write_state();
        let listener = bind(&dir)?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::io(&dir.socket(), "cannot configure", &e))?;
        let cfg = &shared.opts.config;
        shared.log.log(
            "info",
            "started",
            json!({
                "socket": dir.socket(), "dir_origin": dir.origin.as_str(),
                "pool_path": cfg.pool_path, "credentials_path": cfg.credentials_path,
                "lead_ms": shared.opts.lead_ms, "jitter_ms": shared.opts.jitter_ms,
                "sdk_profile": shared.opts.sdk_profile, "version": crate::VERSION_STRING,
            }),
        );
        let s = shared.clone();
        let refresher = std::thread::Builder::new()
            .name("hap-agent-refresh".into())
            .spawn(move || loop {
                if s.stopping.load(Ordering::SeqCst) {
                    return;
                }
                let next = s.tick();
                let wait = Duration::from_millis((next - now_ms()).clamp(0, 3_600_000) as u64);
                let g = lock(&s.wake.0);
                let _ = s
                    .wake
                    .1
                    .wait_timeout_while(g, wait, |stop| !*stop)
                    .unwrap_or_else(|p| p.into_inner());
            })
            .map_err(|e| Error::internal(format!("cannot start a thread: {e}")))?;
        let s = shared.clone();
        let acceptor = std::thread::Builder::new()
            .name("hap-agent-accept".into())
            .spawn(move || accept_loop(&s, listener, wake_read))
            .map_err(|e| Error::internal(format!("cannot start a thread: {e}")))?;
        Ok(Agent {
            shared,
            acceptor: Some(acceptor),
            refresher: Some(refresher),
            wake_write,
            _lock: lock_file,
        })
    }

    pub fn dir(&self) -> &RuntimeDir {
        &self.shared.dir
    }

    /// Stops in order (module comment): socket gone, requests and the current refresh
    /// finished, state file marked stopped, `agent.lock` released.
    pub fn stop(mut self, why: &str) {
        let s = self.shared.clone();
        s.log.log("info", "stopping", json!({"signal": why}));
        s.stopping.store(true, Ordering::SeqCst);
        *lock(&s.wake.0) = true;
        s.wake.1.notify_all();
        // SAFETY: writes one byte from a valid buffer to the pipe this agent owns.
        let _ = unsafe { libc::write(self.wake_write.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        if let Some(r) = self.refresher.take() {
            let _ = r.join();
        }
        lock(&s.state).stopped_at_ms = Some(now_ms());
        s.write_state();
        s.log.log("info", "stopped", json!({}));
    }
}

fn accept_loop(s: &Arc<Shared>, listener: UnixListener, wake: OwnedFd) {
    loop {
        let mut fds = [
            libc::pollfd {
                fd: listener.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: wake.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a valid array of two pollfd for the duration of the call.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if rc < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            break;
        }
        if fds[1].revents != 0 || s.stopping.load(Ordering::SeqCst) {
            break;
        }
        let stream = match listener.accept() {
            Ok((st, _)) => st,
            Err(_) => continue,
        };
        if stream.set_nonblocking(false).is_err()
            || stream
                .set_write_timeout(Some(Duration::from_secs(5)))
                .is_err()
        {
            continue;
        }
        let id = s.next_conn.fetch_add(1, Ordering::Relaxed);
        {
            let mut conns = lock(&s.conns.0);
            if conns.len() >= MAX_CONNECTIONS {
                let e = Error::new(
                    Status::Unavailable,
                    "the hap agent is busy: too many connections",
                );
                let _ = send_all(&stream, proto::err_line(&None, &e).as_bytes());
                continue;
            }
            match stream.try_clone() {
                Ok(c) => {
                    conns.insert(id, c);
                }
                Err(_) => continue,
            }
        }
        let s2 = s.clone();
        let spawned = std::thread::Builder::new()
            .name("hap-agent-conn".into())
            .spawn(move || {
                s2.serve(stream);
                let mut conns = lock(&s2.conns.0);
                conns.remove(&id);
                s2.conns.1.notify_all();
            });
        if spawned.is_err() {
            lock(&s.conns.0).remove(&id);
        }
    }
    // New clients find no socket and fall back (or refuse) at once.
    let _ = fs::remove_file(s.dir.socket());
    drop(listener);
    // Requests in progress finish and are answered; idle connections see end of file.
    let mut conns = lock(&s.conns.0);
    for c in conns.values() {
        let _ = c.shutdown(std::net::Shutdown::Read);
    }
    while !conns.is_empty() {
        conns = s.conns.1.wait(conns).unwrap_or_else(|p| p.into_inner());
    }
}
