//! `hap agent` (issue 15), and the agent's lines in `hap status` and `hap doctor`.
//!
//! The agent itself is `hap::agent::server`; this file parses its options, turns SIGTERM
//! and SIGINT into an orderly stop, and reports on a running agent from its socket (or,
//! when it does not answer, from the state file it leaves beside the socket).

use crate::doctor::{Finding, Level};
use crate::ui::{human_ms, instant, parse_duration_ms, relative, Paint};
use clap::{Args, ValueEnum};
use hap::agent::dir::{locate, RuntimeDir};
use hap::agent::server::{Agent, LogFormat, Options};
use hap::agent::AgentMode;
use hap::{Config, Error};
use serde_json::Value;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
}

#[derive(Args, Debug)]
pub struct AgentArgs {
    /// Refresh this long before a token expires, e.g. 10m. Longer than Claude Code's own
    /// 5 minutes, so a Claude Code running beside the agent never needs to refresh.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration_ms)]
    lead: u64,
    /// Plus a random extra of up to this per expiry, so agents on one login (or many hosts)
    /// do not all wake at once.
    #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = parse_duration_ms)]
    jitter: u64,
    /// Look at the stores at least this often (how soon another process's rotation
    /// reaches the SDK profile).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration_ms)]
    poll: u64,
    /// Keep the Anthropic SDK profile NAME current (default name: hap) in
    /// $ANTHROPIC_CONFIG_DIR, else ~/.config/anthropic: an externally rotated user_oauth
    /// profile with the access token and its expiry only. Anthropic's terms limit
    /// subscription credentials to one person's own use of Claude Code and Anthropic's
    /// apps; the profile is for that person's own processes on this machine.
    #[arg(long, value_name = "NAME", num_args = 0..=1, default_missing_value = "hap")]
    sdk_profile: Option<String>,
    /// Log lines as text or as one JSON object per line (stderr; never a token).
    #[arg(long, value_enum, default_value_t = LogFormatArg::Text)]
    log_format: LogFormatArg,
}

static SIGNAL_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = SIGNAL_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        let b = sig as u8;
        // SAFETY: write(2) is async-signal-safe; `b` lives for the call.
        unsafe {
            libc::write(fd, (&b as *const u8).cast(), 1);
        }
    }
}

/// SIGTERM and SIGINT write their number to a pipe the main thread waits on: the stop runs
/// on an ordinary thread, never inside a signal handler.
fn signal_pipe() -> Result<OwnedFd, Error> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Error::internal("cannot create the signal pipe"));
    }
    // SAFETY: both descriptors were just opened and are owned here; the write end lives
    // for the rest of the process (the handler may run at any time).
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    SIGNAL_FD.store(write.as_raw_fd(), Ordering::Relaxed);
    std::mem::forget(write);
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: a zeroed sigaction with a handler that only calls write(2).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
    Ok(read)
}

fn wait_for_signal(fd: &OwnedFd) -> &'static str {
    let mut b = 0u8;
    loop {
        // SAFETY: reads one byte into `b` from the pipe this function owns.
        let n = unsafe { libc::read(fd.as_raw_fd(), (&mut b as *mut u8).cast(), 1) };
        if n == 1 {
            return if b as i32 == libc::SIGINT {
                "SIGINT"
            } else {
                "SIGTERM"
            };
        }
        if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        return "EOF";
    }
}

pub fn run(cfg: Config, a: AgentArgs) -> Result<ExitCode, Error> {
    if a.lead == 0 {
        return Err(Error::invalid("--lead must be more than 0"));
    }
    if a.poll < 10 {
        return Err(Error::invalid("--poll must be at least 10ms"));
    }
    let signals = signal_pipe()?;
    let agent = Agent::start(Options {
        config: cfg,
        lead_ms: a.lead,
        jitter_ms: a.jitter,
        poll_ms: a.poll,
        sdk_profile: a.sdk_profile,
        log_format: match a.log_format {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        },
    })?;
    let why = wait_for_signal(&signals);
    agent.stop(why);
    Ok(ExitCode::SUCCESS)
}

/// What a running agent says about itself, or what its state file last said.
enum Seen {
    Running(Value),
    Gone(Option<Value>),
}

fn look(dir: &RuntimeDir) -> Seen {
    match hap::agent::client::probe(dir) {
        Ok(v) => Seen::Running(v),
        Err(_) => Seen::Gone(
            std::fs::read(dir.state())
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok()),
        ),
    }
}

fn times(v: &Value, now: i64) -> String {
    let at = |k: &str| v[k].as_i64();
    let last = match at("last_refresh_at_ms") {
        Some(t) => format!("last refresh {} ({})", instant(t), relative(t, now)),
        None => "no refresh by it yet".to_string(),
    };
    let next = match at("next_refresh_at_ms") {
        Some(t) if t > now => format!("next refresh in {}", human_ms(t - now)),
        Some(_) => "next refresh due now".to_string(),
        None => "no refresh scheduled".to_string(),
    };
    format!("{last}; {next}")
}

/// The agent's line under `hap status`'s table.
pub fn status_line(paint: Paint) -> String {
    let dir = locate();
    let now = hap::inspect::now_ms();
    let text = match look(&dir) {
        Seen::Running(v) => format!(
            "{} (pid {}, {}); {}",
            paint.green("running"),
            v["pid"],
            dir.socket().display(),
            times(&v, now)
        ),
        Seen::Gone(Some(v)) => format!(
            "{} (last seen: pid {}, {}{})",
            paint.yellow("not running"),
            v["pid"],
            times(&v, now),
            v["stopped_at_ms"]
                .as_i64()
                .map(|t| format!("; stopped {}", relative(t, now)))
                .unwrap_or_default()
        ),
        Seen::Gone(None) => "not running (`hap agent` starts one; docs/AGENT.md)".to_string(),
    };
    format!("\n{}       {text}\n", paint.dim("agent"))
}

/// `hap doctor`'s findings about the agent.
pub fn findings(cfg: &Config) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut add = |level, what: String, fix: Option<&str>| {
        out.push(Finding {
            level,
            check: "agent",
            what,
            fix: fix.map(str::to_string),
        })
    };
    let dir = locate();
    let now = hap::inspect::now_ms();
    let wanted = cfg.agent != AgentMode::Off;
    if let Err(e) = dir.check() {
        if dir.path.exists() {
            add(
                Level::Error,
                e.message,
                Some("remove the directory; hap recreates it with mode 0700"),
            );
            return out;
        }
    }
    match look(&dir) {
        Seen::Running(v) => {
            let same = v["pool_path"].as_str() == cfg.pool_path.as_deref().and_then(|p| p.to_str())
                && v["credentials_path"].as_str()
                    == cfg.credentials_path.as_deref().and_then(|p| p.to_str())
                && v["provider"].as_str() == Some(cfg.provider.as_str());
            let what = format!(
                "hap agent running (pid {}, {}); {}",
                v["pid"],
                dir.socket().display(),
                times(&v, now)
            );
            if !same {
                add(
                    if wanted { Level::Warn } else { Level::Info },
                    format!(
                        "{what}; it serves other stores (pool {}, credentials {})",
                        v["pool_path"], v["credentials_path"]
                    ),
                    wanted.then_some(
                        "run the agent with the same --config as this process, or set 'agent' to \"off\"",
                    ),
                );
            } else {
                add(Level::Ok, what, None);
            }
            if let Some(err) = v["last_error"].as_object() {
                add(
                    Level::Warn,
                    format!(
                        "the agent's last error: {} {} ({})",
                        err.get("status").and_then(Value::as_str).unwrap_or(""),
                        err.get("message").and_then(Value::as_str).unwrap_or(""),
                        err.get("at_ms")
                            .and_then(Value::as_i64)
                            .map(|t| relative(t, now))
                            .unwrap_or_default()
                    ),
                    Some("see the agent's log (journalctl --user -u hap-agent)"),
                );
            }
        }
        Seen::Gone(last) => {
            let what = match last {
                Some(v) => format!(
                    "no hap agent answers at {} (last seen: pid {})",
                    dir.socket().display(),
                    v["pid"]
                ),
                None => format!("no hap agent answers at {}", dir.socket().display()),
            };
            match cfg.agent {
                AgentMode::Require => add(
                    Level::Error,
                    format!("{what}, and config key 'agent' is \"require\": every call fails"),
                    Some("start it: `hap agent` or `systemctl --user start hap-agent`"),
                ),
                AgentMode::Prefer => add(
                    Level::Info,
                    format!("{what}; 'agent' is \"prefer\", so processes do the work themselves"),
                    None,
                ),
                AgentMode::Off => add(Level::Info, what, None),
            }
        }
    }
    out
}
