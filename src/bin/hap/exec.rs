//! `hap exec -- COMMAND`: runs a program with a current access token handed over the way it
//! accepts one, so that it never becomes a second refresher (issue 15).
//!
//! - Claude Code (`--claude-code`, or a COMMAND named `claude`): the token goes into a pipe
//!   whose read end the child inherits, named by `CLAUDE_CODE_OAUTH_TOKEN_FILE_DESCRIPTOR`.
//!   Claude Code (2.1.112 `cli.js`: `GMq({envVar: "CLAUDE_CODE_OAUTH_TOKEN_FILE_DESCRIPTOR"})`)
//!   reads `/proc/self/fd/<n>` once at start, caches it, and then does not refresh. It
//!   prefers `ANTHROPIC_AUTH_TOKEN` and `CLAUDE_CODE_OAUTH_TOKEN` over the descriptor, so
//!   both are removed from the child's environment.
//! - Anything else: `--env NAME`, e.g. `ANTHROPIC_AUTH_TOKEN` for the official SDKs.
//!
//! Never in argv (any user can read another's `/proc/<pid>/cmdline`). `HAP_TOKEN_EXPIRES_AT_MS`
//! tells the child when the token it got expires: a child that outlives it gets 401s and
//! must be restarted under `hap exec` (or read the agent's SDK profile, which stays current).
//! hap replaces itself with the child (`execvp`), so signals and the exit status are the
//! child's own and no hap process lingers holding the token.

use crate::ui::parse_duration_ms;
use clap::Args;
use hap::{Config, Error, Pool, ResolveRequest};
use std::ffi::OsString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitCode};

/// Claude Code's names (2.1.112 `cli.js`), in the order it prefers them.
pub const CLAUDE_CODE_FD_VAR: &str = "CLAUDE_CODE_OAUTH_TOKEN_FILE_DESCRIPTOR";
const CLAUDE_CODE_SHADOWING: [&str; 2] = ["ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN"];

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Hand the token to COMMAND in this environment variable (the official SDKs read
    /// ANTHROPIC_AUTH_TOKEN; they then also need the header anthropic-beta: oauth-2025-04-20).
    #[arg(long, value_name = "NAME", conflicts_with = "claude_code")]
    env: Option<String>,
    /// Hand the token over as Claude Code takes it: a pipe named by
    /// CLAUDE_CODE_OAUTH_TOKEN_FILE_DESCRIPTOR. The default when COMMAND is named `claude`.
    #[arg(long)]
    claude_code: bool,
    /// The token must stay valid this long, e.g. 1h [default: 2m, refresh_skew_ms].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_ms)]
    min_validity: Option<u64>,
    /// Use only this credential id.
    #[arg(long, value_name = "ID")]
    credential: Option<String>,
    /// The program to run and its arguments (after `--`).
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    command: Vec<OsString>,
}

fn valid_env_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("hap exec: {msg}");
    ExitCode::from(2)
}

/// A pipe holding `bytes`, write end closed; the read end is inherited across exec.
fn token_pipe(bytes: &[u8]) -> Result<OwnedFd, Error> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Error::internal("cannot create a pipe for the token"));
    }
    // SAFETY: pipe2 succeeded; both descriptors are ours alone.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let mut rest = bytes;
    while !rest.is_empty() {
        // SAFETY: `rest` is valid for its length. A token is far below the pipe's 64 KiB
        // buffer, so this never blocks.
        let n = unsafe { libc::write(write.as_raw_fd(), rest.as_ptr().cast(), rest.len()) };
        if n <= 0 {
            return Err(Error::internal("cannot write the token into its pipe"));
        }
        rest = &rest[n as usize..];
    }
    drop(write);
    // SAFETY: clears FD_CLOEXEC on a descriptor we own, so the child inherits it.
    if unsafe { libc::fcntl(read.as_raw_fd(), libc::F_SETFD, 0) } != 0 {
        return Err(Error::internal("cannot pass the token's pipe to the child"));
    }
    Ok(read)
}

pub fn run(cfg: Config, a: ExecArgs) -> Result<ExitCode, Error> {
    let program = a.command[0].clone();
    let is_claude = Path::new(&program)
        .file_name()
        .is_some_and(|n| n == "claude");
    let claude_code = a.claude_code || (a.env.is_none() && is_claude);
    if let Some(name) = &a.env {
        if !valid_env_name(name) {
            return Ok(usage(&format!(
                "--env {name:?} is not an environment variable name"
            )));
        }
    } else if !claude_code {
        return Ok(usage(
            "say how the program takes the token: --env NAME (the official SDKs read \
             ANTHROPIC_AUTH_TOKEN) or --claude-code (docs/AGENT.md)",
        ));
    }
    let pool = Pool::open(cfg)?;
    let t = pool.resolve(&ResolveRequest {
        min_validity_ms: a.min_validity,
        credential_id: a.credential,
        force_refresh: false,
    })?;
    drop(pool);
    let mut cmd = Command::new(&program);
    cmd.args(&a.command[1..]);
    match t.expires_at_ms {
        Some(at) => cmd.env("HAP_TOKEN_EXPIRES_AT_MS", at.to_string()),
        None => cmd.env_remove("HAP_TOKEN_EXPIRES_AT_MS"),
    };
    // Kept open until exec, which hands it to the child.
    let _pipe = if claude_code {
        let fd = token_pipe(t.access_token.expose().as_bytes())?;
        cmd.env(CLAUDE_CODE_FD_VAR, fd.as_raw_fd().to_string());
        for v in CLAUDE_CODE_SHADOWING {
            cmd.env_remove(v);
        }
        Some(fd)
    } else {
        let name = a.env.as_deref().expect("checked above");
        cmd.env(name, t.access_token.expose());
        None
    };
    drop(t);
    let err = cmd.exec();
    eprintln!(
        "hap exec: cannot run {}: {err}",
        Path::new(&program).display()
    );
    Ok(ExitCode::from(
        if err.kind() == std::io::ErrorKind::NotFound {
            127
        } else {
            126
        },
    ))
}
