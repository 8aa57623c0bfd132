//! `hap fleet import|export|status` (issue 16, docs/FLEET.md): moving a login into the
//! fleet's Redis and out of it, and what the fleet's authority looks like now. The Redis
//! keys come from the config (`redis_url`, ...), as for every other command.

use clap::Subcommand;
use hap::{Config, Error};
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum FleetCmd {
    /// Move this host's login (Claude Code's, or a pool row's) into the fleet's Redis.
    #[command(
        long_about = "Copy this host's login into the fleet's Redis (config redis_url), under \
            the fleet's refresh lease, only if Redis holds no login yet. The source keeps its \
            copy: from now on nothing on this host may refresh it but hap through the fleet, \
            or the token family forks (the first rotation logs the other copy out). The \
            command says what to do about it."
    )]
    Import {
        /// Import this pool row (an owned row of the pool file) instead of Claude Code's login.
        #[arg(long, value_name = "ID")]
        row: Option<String>,
    },
    /// Move the fleet's login out of Redis into this host's Claude Code credentials file.
    #[command(
        long_about = "Under the fleet's refresh lease, write the login Redis holds into this \
            host's Claude Code credentials file (other keys of the file kept), then delete it \
            from Redis: the fleet's hosts have no login afterwards (NO_CREDENTIAL), and this \
            host's Claude Code owns it again."
    )]
    Export,
    /// The fleet's authority: where, which version, its expiry, the lease holder. No secrets.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[cfg(not(feature = "redis"))]
pub fn run(_cfg: Config, _cmd: FleetCmd) -> Result<ExitCode, Error> {
    Err(Error::invalid(
        "this hap was built without the 'redis' feature: `hap fleet` needs it \
         (cargo build --features redis; scripts/dist builds include it)",
    ))
}

#[cfg(feature = "redis")]
pub fn run(cfg: Config, cmd: FleetCmd) -> Result<ExitCode, Error> {
    imp::run(cfg, cmd)
}

#[cfg(feature = "redis")]
mod imp {
    use super::*;
    use crate::ui::{instant, outln};

    pub fn run(cfg: Config, cmd: FleetCmd) -> Result<ExitCode, Error> {
        match cmd {
            FleetCmd::Import { row } => {
                let source = match row {
                    Some(id) => hap::fleet::Source::PoolRow(id),
                    None => hap::fleet::Source::ClaudeCode,
                };
                let done = hap::fleet::import(&cfg, &source)?;
                outln(&format!(
                    "imported {} into {} as version {}.",
                    done.source, done.authority, done.version
                ));
                outln(
                    "Now, on this host, nothing but hap through the fleet may refresh that \
                     login, or the token family forks and every other host is logged out at \
                     the first rotation:",
                );
                match source {
                    hap::fleet::Source::PoolRow(_) => outln(
                        "  remove the row from the pool file (Hermes would refresh it itself), \
                         and give this host's processes the fleet config.",
                    ),
                    hap::fleet::Source::ClaudeCode => outln(
                        "  run Claude Code through `hap exec --claude-code -- claude` with the \
                         fleet config (HAP_CONFIG), or log it out here (/logout in Claude Code).",
                    ),
                }
                Ok(ExitCode::SUCCESS)
            }
            FleetCmd::Export => {
                let done = hap::fleet::export(&cfg)?;
                outln(&format!(
                    "exported version {} from {} into {}; Redis holds no login now.",
                    done.version,
                    done.authority,
                    done.path.display()
                ));
                Ok(ExitCode::SUCCESS)
            }
            FleetCmd::Status { json } => {
                let doc = hap::fleet::status(&cfg)?;
                if json {
                    outln(&doc.to_string());
                    return Ok(ExitCode::SUCCESS);
                }
                outln(&format!(
                    "fleet authority: {} (prefix {})",
                    doc["redis_url"].as_str().unwrap_or("?"),
                    doc["redis_prefix"].as_str().unwrap_or("?")
                ));
                if let Some(name) = doc["redis_sentinel_master"].as_str() {
                    outln(&format!(
                        "  sentinels: {}; master {name} is at {}",
                        sentinel_list(&doc),
                        doc["master_addr"].as_str().unwrap_or("?")
                    ));
                }
                outln(&format!(
                    "  role of this ACL user: {}",
                    doc["role"].as_str().unwrap_or("?")
                ));
                match doc["version"].as_u64() {
                    Some(v) => outln(&format!(
                        "  login: version {v}, expires {}",
                        doc["expires_at_ms"].as_i64().map_or("?".into(), instant)
                    )),
                    None => outln("  login: none (hap fleet import)"),
                }
                match (doc["lease_holder"].as_str(), doc["lease_ttl_ms"].as_i64()) {
                    (Some(owner), Some(ttl)) => {
                        outln(&format!("  refresh lease: held by {owner}, {ttl} ms left"))
                    }
                    _ => outln("  refresh lease: free"),
                }
                if let Some(at) = doc["possibly_spent_since_ms"].as_i64() {
                    outln(&format!(
                        "  a POST went out at {}{} and its answer is not committed yet",
                        instant(at),
                        doc["possibly_spent_by"]
                            .as_str()
                            .map(|h| format!(" from {h}"))
                            .unwrap_or_default()
                    ));
                }
                outln(&format!(
                    "  replicas: {} connected; redis_wait_replicas {}",
                    doc["connected_replicas"]
                        .as_u64()
                        .map_or("?".into(), |n| n.to_string()),
                    doc["redis_wait_replicas"].as_u64().unwrap_or(0)
                ));
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}

/// `redis_sentinels` of a status document, comma-separated.
#[cfg(feature = "redis")]
fn sentinel_list(doc: &serde_json::Value) -> String {
    doc["redis_sentinels"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// `hap doctor`'s `fleet` check (issue 16): with `redis_url`, is the authority reachable,
/// what may this ACL user do, is there a login, who holds the lease. Never a secret.
pub fn findings(cfg: &Config) -> Vec<crate::doctor::Finding> {
    use crate::doctor::{Finding, Level};
    let mut out = Vec::new();
    if cfg.redis_url.is_none() {
        return out;
    }
    let mut add = |level, what: String, fix: Option<&str>| {
        out.push(Finding {
            level,
            check: "fleet",
            what,
            fix: fix.map(str::to_string),
        })
    };
    #[cfg(not(feature = "redis"))]
    add(
        Level::Error,
        "redis_url is set but this hap was built without the 'redis' feature".into(),
        Some("use a hap built with --features redis (scripts/dist builds include it)"),
    );
    #[cfg(feature = "redis")]
    match hap::fleet::status(cfg) {
        Err(e) => add(
            Level::Error,
            format!("the fleet authority does not answer: {}", e.message),
            Some(
                "check redis_url, the ACL user and its password (redis_password_file or \
                 HAP_REDIS_PASSWORD); `hap fleet status` retries",
            ),
        ),
        Ok(doc) => {
            let url = doc["redis_url"].as_str().unwrap_or("?").to_string();
            let role = doc["role"].as_str().unwrap_or("?").to_string();
            if let Some(name) = doc["redis_sentinel_master"].as_str() {
                add(
                    Level::Info,
                    format!(
                        "sentinels {} name {} as master {name}",
                        sentinel_list(&doc),
                        doc["master_addr"].as_str().unwrap_or("?")
                    ),
                    None,
                );
            }
            match doc["version"].as_u64() {
                Some(v) => add(
                    Level::Ok,
                    format!("{url}: login version {v}; this ACL user is a {role}"),
                    None,
                ),
                None => add(
                    Level::Warn,
                    format!("{url}: no login in Redis; this ACL user is a {role}"),
                    Some("`hap fleet import` on the host that holds the login"),
                ),
            }
            if let (Some(owner), Some(ttl)) =
                (doc["lease_holder"].as_str(), doc["lease_ttl_ms"].as_i64())
            {
                add(
                    Level::Info,
                    format!("refresh lease held by {owner}, {ttl} ms left"),
                    None,
                );
            }
            let wait = doc["redis_wait_replicas"].as_u64().unwrap_or(0);
            match doc["connected_replicas"].as_u64() {
                Some(k) if wait > k => add(
                    Level::Error,
                    format!(
                        "redis_wait_replicas is {wait} but the primary reports {k} connected \
                         replicas: every refresh is refused"
                    ),
                    Some("start the replicas, or lower redis_wait_replicas (docs/FLEET.md)"),
                ),
                Some(k) if k > 0 && wait == 0 => add(
                    Level::Info,
                    format!(
                        "{k} replicas connected, redis_wait_replicas 0: a failover may lose \
                         the last commit"
                    ),
                    Some("set redis_wait_replicas (docs/FLEET.md, Replicas and failover)"),
                ),
                Some(k) if wait > 0 => add(
                    Level::Ok,
                    format!("{k} replicas connected, redis_wait_replicas {wait}"),
                    None,
                ),
                _ => {}
            }
        }
    }
    out
}

/// `hap status`'s fleet lines, when `redis_url` is set.
#[cfg(feature = "redis")]
pub fn status_lines(cfg: &Config) -> String {
    if cfg.redis_url.is_none() {
        return String::new();
    }
    match hap::fleet::status(cfg) {
        Err(e) => format!("fleet authority: not answering ({})\n", e.message),
        Ok(doc) => {
            let mut s = format!(
                "fleet authority: {} (prefix {}), this ACL user a {}",
                doc["redis_url"].as_str().unwrap_or("?"),
                doc["redis_prefix"].as_str().unwrap_or("?"),
                doc["role"].as_str().unwrap_or("?")
            );
            if doc["redis_sentinel_master"].is_string() {
                s.push_str(&format!(
                    " (via sentinels {}: master at {})",
                    sentinel_list(&doc),
                    doc["master_addr"].as_str().unwrap_or("?")
                ));
            }
            match doc["version"].as_u64() {
                Some(v) => s.push_str(&format!(", login version {v}")),
                None => s.push_str(", no login (hap fleet import)"),
            }
            match doc["lease_holder"].as_str() {
                Some(owner) => s.push_str(&format!(", lease held by {owner}\n")),
                None => s.push_str(", lease free\n"),
            }
            s
        }
    }
}

#[cfg(not(feature = "redis"))]
pub fn status_lines(_cfg: &Config) -> String {
    String::new()
}
