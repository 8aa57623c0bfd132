//! `hap`: the library's behaviour for shells and for people.
//!
//! Any program that can run a command (but cannot load a shared library) shares the session
//! through `hap token`, the way AWS's `credential_process` hands out credentials; operators
//! see the pool with `hap status` and find what is wrong with `hap doctor`. Every subcommand
//! goes through the library's Rust API: there is no second implementation here.

// hap agent and hap exec (issue 15).
#[path = "hap/agent.rs"]
mod agent;
#[path = "hap/doctor.rs"]
mod doctor;
#[path = "hap/exec.rs"]
mod exec;
// hap fleet (issue 16).
#[path = "hap/fleet.rs"]
mod fleet;
#[path = "hap/generate.rs"]
mod generate;
#[path = "hap/status.rs"]
mod status;
#[path = "hap/ui.rs"]
mod ui;

use clap::{Args, Parser, Subcommand};
use hap::{Config, Error, Failure, Pool, ResolveRequest, Status};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use ui::{instant, outln, parse_duration_ms, relative, ColorChoice};

const EXIT_CODES: &str = "\
Exit codes:
   0  success (doctor: no error found)
   1  doctor found at least one error; or output could not be written
   2  usage error: unknown option, missing or malformed argument
  11  HAP_STATUS_INVALID_ARGUMENT   bad --config or HAP_CONFIG file, or config value
  12  HAP_STATUS_NO_CREDENTIAL      nothing usable now (retry_at_ms says when)
  13  HAP_STATUS_REAUTH_REQUIRED    the grant was refused: log in again
  14  HAP_STATUS_UNAVAILABLE        token endpoint failing; retry later
  15  HAP_STATUS_LOCK_TIMEOUT       another process held a lock too long
  16  HAP_STATUS_STORE_CORRUPT      a store file cannot be parsed (left unchanged)
  17  HAP_STATUS_IO                 an operating-system error on a store
  18  HAP_STATUS_UNKNOWN_CREDENTIAL no credential with that id
 110  HAP_STATUS_INTERNAL           a bug in hap
A library status s maps to exit code 10 + s. See docs/CLI.md.";

/// Share one Anthropic OAuth session between every process on this machine.
#[derive(Parser, Debug)]
#[command(
    name = "hap",
    version = hap::VERSION_STRING.trim_start_matches("hap "),
    propagate_version = true,
    after_long_help = EXIT_CODES,
    long_about = "Share one Anthropic OAuth session between every process on this machine.\n\n\
        Reads Hermes' credential pool ($HERMES_HOME/auth.json, else ~/.hermes/auth.json) and \
        Claude Code's credentials ($CLAUDE_CONFIG_DIR/.credentials.json, else \
        ~/.claude/.credentials.json), refreshing the token once per rotation machine-wide."
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug)]
struct Global {
    /// JSON file with hap_pool_open config keys (docs/ABI.md), over $HAP_CONFIG's; the
    /// options below override it.
    #[arg(long, value_name = "FILE.json", global = true)]
    config: Option<PathBuf>,
    /// The credential pool file [default: $HERMES_HOME/auth.json, else ~/.hermes/auth.json].
    #[arg(long, value_name = "PATH", global = true, conflicts_with = "no_pool")]
    pool: Option<PathBuf>,
    /// Use no pool file: only the credentials file.
    #[arg(long, global = true)]
    no_pool: bool,
    /// Claude Code's credentials file [default: $CLAUDE_CONFIG_DIR/.credentials.json, else
    /// ~/.claude/.credentials.json].
    #[arg(
        long,
        value_name = "PATH",
        global = true,
        conflicts_with = "no_credentials"
    )]
    credentials: Option<PathBuf>,
    /// Use no credentials file: only the pool file.
    #[arg(long, global = true)]
    no_credentials: bool,
    /// Pool key inside the pool file (credential_pool.<PROVIDER>) [default: anthropic].
    #[arg(long, value_name = "PROVIDER", global = true)]
    provider: Option<String>,
    /// Token endpoint, tried in order; repeat for fallbacks. https://, or http:// to loopback.
    #[arg(long = "token-url", value_name = "URL", global = true)]
    token_urls: Vec<String>,
    /// Longest wait for any lock, e.g. 25s [default: 25s].
    #[arg(long, value_name = "DURATION", global = true, value_parser = parse_duration_ms)]
    lock_timeout: Option<u64>,
    /// Colour: auto paints only when stdout is a terminal and NO_COLOR is unset.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true)]
    color: ColorChoice,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show every credential of the pool: status, expiry, cooldown, last error. No secrets.
    #[command(after_long_help = EXIT_CODES)]
    Status {
        /// Print hap_pool_status's JSON document instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Print a valid access token (refreshing it if needed) for scripts.
    #[command(
        long_about = "Print a valid access token on stdout (one line), refreshing it first if \
            it expires within --min-validity. With --json, print {access_token, expires_at \
            (epoch ms), credential_id, label, source, auth_type, expires_at_ms, refreshed}. \
            On failure nothing goes to stdout (with --json: the error object), a message goes \
            to stderr, and the exit code says why.",
        after_long_help = EXIT_CODES
    )]
    Token {
        /// Print a JSON object instead of the bare token.
        #[arg(long)]
        json: bool,
        /// Refresh when the token expires within this, e.g. 10m [default: 2m, refresh_skew_ms].
        #[arg(long, value_name = "DURATION", value_parser = parse_duration_ms)]
        min_validity: Option<u64>,
        /// Use only this credential id.
        #[arg(long, value_name = "ID")]
        credential: Option<String>,
        /// Refresh even if the token is still valid.
        #[arg(long)]
        force_refresh: bool,
    },
    /// Tell the pool what a request with one of its tokens got back (e.g. a 429).
    #[command(
        long_about = "Tell the pool what a request made with one of its tokens got back, as \
            hap_report_failure does: the credential is benched (exhausted) until its reset time, \
            marked dead for terminal reasons (invalid_grant, token_revoked, ...), or, for an \
            OAuth 401, refreshed at the next resolve. Sibling processes see it at once.",
        after_long_help = EXIT_CODES
    )]
    Report {
        /// The credential id (from `hap token --json` or `hap status`).
        #[arg(long, value_name = "ID")]
        credential: String,
        /// The HTTP status the request got, e.g. 429.
        #[arg(long, value_name = "CODE", value_parser = clap::value_parser!(u16).range(100..=599))]
        status: u16,
        /// The error type, e.g. rate_limit_error, token_revoked.
        #[arg(long, value_name = "REASON")]
        reason: Option<String>,
        /// The error message (tokens in it are redacted before it is stored).
        #[arg(long, value_name = "TEXT")]
        message: Option<String>,
        /// When it may be used again: epoch seconds, epoch ms, ISO-8601, or +DURATION from now.
        #[arg(long, value_name = "WHEN", value_parser = parse_reset_at_s)]
        reset_at: Option<f64>,
        /// Retry-After as the server sent it: seconds, or a DURATION like 90s.
        #[arg(long, value_name = "SECONDS", value_parser = parse_duration_ms)]
        retry_after: Option<u64>,
        /// Print the outcome as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check the stores, locks, journal and clock; say what is wrong and how to fix it.
    #[command(
        long_about = "Check what goes wrong in real setups: missing or unparseable files, \
            permissions wider than 0600 (files) or 0700 (directories), symlinked credentials, \
            stale locks and temp files, expired tokens, an auth.json Hermes and hap would read \
            differently, a journal with an uncommitted pair, clock skew. Each finding has a \
            level (ok, info, warn, error) and, when something is off, a fix. Exits 1 when an \
            error is found. Changes nothing and never refreshes.",
        after_long_help = EXIT_CODES
    )]
    Doctor {
        /// Also check that each token endpoint answers (a GET; no refresh) and compare clocks.
        #[arg(long)]
        online: bool,
        /// Print the findings as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Keep the credentials fresh ahead of expiry and serve other processes on a socket.
    #[command(
        long_about = "Run in the foreground until SIGTERM or SIGINT: refresh every credential \
            --lead (plus up to --jitter) before it expires, through the same locks and journal \
            as every other process; answer resolve, report and status on a Unix socket \
            ($XDG_RUNTIME_DIR/hap/agent.sock, else /run/user/<uid>/hap/, else /tmp/hap-<uid>/) \
            for processes whose config says \"agent\": \"prefer\" or \"require\"; optionally keep \
            an Anthropic SDK profile current. On a signal, a refresh in progress is finished \
            and journalled before it exits. See docs/AGENT.md.",
        after_long_help = EXIT_CODES
    )]
    Agent(agent::AgentArgs),
    /// Run a program with a current access token in its environment or on a descriptor.
    #[command(
        long_about = "Resolve a token (through the agent when the config says so), then replace \
            this process with COMMAND, handing the token over the way it accepts one: for \
            Claude Code (--claude-code, or a COMMAND named `claude`) on a pipe named by \
            CLAUDE_CODE_OAUTH_TOKEN_FILE_DESCRIPTOR; otherwise in the variable --env NAME. \
            Never in argv. HAP_TOKEN_EXPIRES_AT_MS says when it expires: a child that outlives \
            it must be restarted (docs/AGENT.md). Exit status: COMMAND's own; 127/126 when \
            it cannot be run; 2 for a usage error; 10 + status when no token could be had.",
        after_long_help = EXIT_CODES
    )]
    Exec(exec::ExecArgs),
    /// A login shared by several hosts through Redis: import, export, status (docs/FLEET.md).
    #[command(subcommand, after_long_help = EXIT_CODES)]
    Fleet(fleet::FleetCmd),
}

fn parse_reset_at_s(text: &str) -> Result<f64, String> {
    if let Some(rel) = text.trim().strip_prefix('+') {
        // Checked: `+99999999999999d` wrapped to a time before 1970.
        let at = i64::try_from(parse_duration_ms(rel)?)
            .ok()
            .and_then(|ms| hap::inspect::now_ms().checked_add(ms))
            .ok_or_else(|| format!("'{text}' is too far ahead"))?;
        return Ok(at as f64 / 1000.0);
    }
    hap::inspect::parse_reset_at_s(&Value::String(text.to_string()))
        .ok_or_else(|| format!("'{text}' is not epoch seconds, epoch ms, ISO-8601 or +DURATION"))
}

/// A library status `s` exits with `10 + s`, so no status collides with clap's usage error
/// (2) or doctor's "errors found" (1).
fn exit_code(status: Status) -> u8 {
    match status {
        Status::Ok => 0,
        Status::Internal => 110,
        s => 10 + s.code() as u8,
    }
}

fn hint(status: Status) -> Option<&'static str> {
    match status {
        Status::NoCredential => Some("`hap status` shows each credential and when it comes back"),
        Status::ReauthRequired => Some("log in again with Claude Code (`claude`, then /login)"),
        Status::Unavailable => Some("retry later; `hap doctor --online` checks the endpoint"),
        Status::LockTimeout | Status::StoreCorrupt | Status::Io => {
            Some("`hap doctor` checks the stores and their locks")
        }
        Status::UnknownCredential => Some("`hap status` lists the credential ids"),
        _ => None,
    }
}

/// A relative path typed in a shell means "from here"; the library wants absolute paths.
fn absolute(p: &Path) -> String {
    let s = p.to_string_lossy();
    if p.is_absolute() || s.starts_with('~') {
        return s.into_owned();
    }
    match std::env::current_dir() {
        Ok(cwd) => cwd.join(p).to_string_lossy().into_owned(),
        Err(_) => s.into_owned(),
    }
}

/// `--config FILE.json`, then the options on top, validated by the library itself.
fn load_config(g: &Global) -> Result<Config, Error> {
    let mut map = match &g.config {
        None => Map::new(),
        Some(file) => {
            let text = std::fs::read_to_string(file).map_err(|e| {
                Error::invalid(format!("cannot read --config {}: {e}", file.display()))
            })?;
            match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(m)) => m,
                Ok(_) => {
                    return Err(Error::invalid(format!(
                        "--config {} must hold a JSON object",
                        file.display()
                    )))
                }
                Err(e) => {
                    return Err(Error::invalid(format!(
                        "--config {} is not valid JSON: {e}",
                        file.display()
                    )))
                }
            }
        }
    };
    if let Some(p) = &g.provider {
        map.insert("provider".into(), p.clone().into());
    }
    if let Some(p) = &g.pool {
        map.insert("pool_path".into(), absolute(p).into());
    }
    if g.no_pool {
        map.insert("pool_path".into(), Value::Null);
    }
    if let Some(p) = &g.credentials {
        map.insert("credentials_path".into(), absolute(p).into());
    }
    if g.no_credentials {
        map.insert("credentials_path".into(), Value::Null);
    }
    if !g.token_urls.is_empty() {
        map.insert("token_urls".into(), g.token_urls.clone().into());
    }
    if let Some(ms) = g.lock_timeout {
        map.insert("lock_timeout_ms".into(), ms.into());
    }
    Config::from_map_layered(&map)
}

fn print_error(e: &Error, json: bool) -> ExitCode {
    if json {
        outln(&e.to_json().to_string());
    }
    let mut line = format!("hap: {} ({})", e.message, e.status.name());
    if let Some(id) = &e.credential_id {
        line.push_str(&format!(" [credential {id}]"));
    }
    eprintln!("{line}");
    if let Some(at) = e.retry_at_ms {
        eprintln!(
            "hap: retry at {} ({})",
            instant(at),
            relative(at, hap::inspect::now_ms())
        );
    }
    if let Some(h) = hint(e.status) {
        eprintln!("hap: hint: {h}");
    }
    ExitCode::from(exit_code(e.status))
}

/// `hap token --json`: hap_resolve_token's result, led by the two keys scripts look for.
/// `expires_at` (epoch ms) is the conventional name; `expires_at_ms` is the library's own.
#[derive(serde::Serialize)]
struct TokenOut<'a> {
    access_token: &'a str,
    expires_at: Option<i64>,
    credential_id: &'a str,
    label: &'a str,
    source: &'a str,
    auth_type: &'a str,
    expires_at_ms: Option<i64>,
    refreshed: bool,
}

fn token(cfg: Config, req: ResolveRequest, json: bool) -> Result<ExitCode, Error> {
    let pool = Pool::open(cfg)?;
    let t = pool.resolve(&req)?;
    // A one-shot process has no later call to save a refreshed pair that no file took (a
    // full disk): it fails loudly, naming the paths, instead of exiting with it in memory.
    pool.save_unsaved()?;
    // Built straight into a buffer that is zeroed when dropped: the token is copied once.
    let mut line = zeroize::Zeroizing::new(if json {
        serde_json::to_string(&TokenOut {
            access_token: t.access_token.expose(),
            expires_at: t.expires_at_ms,
            credential_id: &t.credential_id,
            label: &t.label,
            source: &t.source,
            auth_type: &t.auth_type,
            expires_at_ms: t.expires_at_ms,
            refreshed: t.refreshed,
        })
        .expect("plain strings and numbers serialize")
    } else {
        t.access_token.expose().to_string()
    });
    line.push('\n');
    ui::out(&line);
    Ok(ExitCode::SUCCESS)
}

fn report(cfg: Config, f: Failure, json: bool) -> Result<ExitCode, Error> {
    let pool = Pool::open(cfg)?;
    let o = pool.report_failure(&f)?;
    if pool.config().pool_path.is_none() {
        // No pool file (--no-pool, or no Hermes directory): the verdict lives in this
        // process's memory and ends with it.
        eprintln!(
            "hap: note: no pool file, so no other process sees this verdict (it ends with this \
             process); `hap doctor` explains"
        );
    }
    if json {
        outln(&o.to_json().to_string());
        return Ok(ExitCode::SUCCESS);
    }
    let now = hap::inspect::now_ms();
    let what = match (o.last_status, o.available_at_ms) {
        ("ok", _) => "ok: the store already holds a newer token; nothing benched".to_string(),
        ("refresh_pending", _) => {
            "refresh_pending: the next `hap token` refreshes this credential".to_string()
        }
        ("dead", _) => "dead: not used again until someone logs in again".to_string(),
        (s, Some(at)) => format!("{s}: benched until {} ({})", instant(at), relative(at, now)),
        (s, None) => s.to_string(),
    };
    outln(&format!("{}: {what}", o.credential_id));
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    if let Some(code) = generate::from_args() {
        return code;
    }
    let cli = Cli::parse();
    let json = match &cli.command {
        Command::Status { json }
        | Command::Token { json, .. }
        | Command::Report { json, .. }
        | Command::Doctor { json, .. } => *json,
        Command::Fleet(fleet::FleetCmd::Status { json }) => *json,
        Command::Agent(_) | Command::Exec(_) | Command::Fleet(_) => false,
    };
    let paint = ui::Paint::for_stdout(cli.global.color);
    let cfg = match load_config(&cli.global) {
        Ok(c) => c,
        Err(e) => return print_error(&e, json),
    };
    let result = match cli.command {
        Command::Status { json } => status::run(cfg, json, paint),
        Command::Token {
            json,
            min_validity,
            credential,
            force_refresh,
        } => token(
            cfg,
            ResolveRequest {
                min_validity_ms: min_validity,
                credential_id: credential,
                force_refresh,
            },
            json,
        ),
        Command::Report {
            credential,
            status,
            reason,
            message,
            reset_at,
            retry_after,
            json,
        } => report(
            cfg,
            Failure {
                credential_id: credential,
                status_code: status,
                reason,
                message,
                reset_at_s: reset_at,
                retry_after_s: retry_after.map(|ms| ms as f64 / 1000.0),
            },
            json,
        ),
        Command::Doctor { online, json } => Ok(doctor::run(&cfg, online, json, paint)),
        Command::Agent(a) => agent::run(cfg, a),
        Command::Exec(a) => exec::run(cfg, a),
        Command::Fleet(c) => fleet::run(cfg, c),
    };
    match result {
        Ok(code) => code,
        Err(e) => print_error(&e, json),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn exit_codes_are_distinct() {
        let all: Vec<Status> = Status::all()
            .into_iter()
            .filter(|s| *s != Status::Ok)
            .collect();
        let mut codes: Vec<u8> = all.iter().map(|s| exit_code(*s)).collect();
        codes.extend([0, 1, 2]);
        let n = codes.len();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), n);
        for s in all {
            assert!(EXIT_CODES.contains(s.name()), "{}", s.name());
            assert!(EXIT_CODES.contains(&format!(" {}  {}", exit_code(s), s.name())));
        }
    }
}
