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
                        "  a POST went out at {} and its answer is not committed yet",
                        instant(at)
                    ));
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}
