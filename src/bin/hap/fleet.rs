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
    use crate::ui::outln;
    use hap::internals::credentials::CredentialsFile;
    use hap::internals::pool_file::PoolFile;
    use hap::internals::redis::{Commit, RedisConfig, RedisStore};
    use hap::Status;
    use std::time::{Duration, Instant};

    fn store(cfg: &Config) -> Result<RedisStore, Error> {
        let url = cfg.redis_url.as_deref().ok_or_else(|| {
            Error::invalid(
                "no fleet configured: set redis_url (and redis_password_file) in --config or \
                 the HAP_CONFIG file (docs/FLEET.md)",
            )
        })?;
        Ok(RedisStore::new(RedisConfig::new(
            url,
            cfg.redis_password_file.as_deref(),
            cfg.redis_prefix.as_deref(),
            cfg.redis_ca_file.as_deref(),
        )?))
    }

    pub fn run(cfg: Config, cmd: FleetCmd) -> Result<ExitCode, Error> {
        let redis = store(&cfg)?;
        let where_ = format!(
            "{} (prefix {})",
            redis.config().shown_url(),
            redis.config().prefix()
        );
        let deadline = Instant::now() + Duration::from_millis(cfg.lock_timeout_ms);
        match cmd {
            FleetCmd::Import { row } => {
                let (pair, source) = match &row {
                    Some(id) => {
                        let path = cfg.pool_path.clone().ok_or_else(|| {
                            Error::invalid("--row needs a pool file (--pool or pool_path)")
                        })?;
                        let read = PoolFile::new(path.clone(), cfg.provider.clone()).read()?;
                        let r = read
                            .rows
                            .iter()
                            .find(|r| &r.id == id)
                            .ok_or_else(|| Error::unknown_credential(id))?;
                        let pair = match (&r.access_token, &r.refresh_token) {
                            (Some(a), Some(rt)) => hap::internals::credentials::TokenPair {
                                access: a.clone(),
                                refresh: Some(rt.clone()),
                                expires_at_ms: r.expires_at_ms,
                            },
                            _ => {
                                return Err(Error::invalid(format!(
                                    "pool row {id} holds no OAuth pair of its own (a \
                                     claude_code row borrows Claude Code's: import without \
                                     --row)"
                                )))
                            }
                        };
                        (pair, format!("pool row {id} of {}", path.display()))
                    }
                    None => {
                        let path = cfg.credentials_path.clone().ok_or_else(|| {
                            Error::invalid(
                                "no credentials file (--credentials or credentials_path)",
                            )
                        })?;
                        let pair = CredentialsFile::new(path.clone())
                            .read()?
                            .and_then(|r| r.pair)
                            .filter(|p| p.refresh.is_some())
                            .ok_or_else(|| {
                                Error::new(
                                    Status::NoCredential,
                                    format!("{} holds no login to import", path.display()),
                                )
                            })?;
                        (pair, format!("Claude Code's login in {}", path.display()))
                    }
                };
                let _lease = redis.acquire_lease(cfg.redis_lease_ms, deadline, "hap-fleet")?;
                match redis.commit(None, &pair, None)? {
                    Commit::Written(v) => {
                        outln(&format!("imported {source} into {where_} as version {v}."));
                        outln(
                            "Now, on this host, nothing but hap through the fleet may refresh \
                             that login, or the token family forks and every other host is \
                             logged out at the first rotation:",
                        );
                        match row {
                            Some(_) => outln(
                                "  remove the row from the pool file (Hermes would refresh it \
                                 itself), and give this host's processes the fleet config.",
                            ),
                            None => outln(
                                "  run Claude Code through `hap exec --claude-code -- claude` \
                                 with the fleet config (HAP_CONFIG), or log it out here \
                                 (/logout in Claude Code).",
                            ),
                        }
                        Ok(ExitCode::SUCCESS)
                    }
                    Commit::Moved => Err(Error::invalid(format!(
                        "{where_} holds a login already: nothing imported (`hap fleet export` \
                         moves it out first)"
                    ))),
                }
            }
            FleetCmd::Export => {
                let path = cfg.credentials_path.clone().ok_or_else(|| {
                    Error::invalid("no credentials file (--credentials or credentials_path)")
                })?;
                let _lease = redis.acquire_lease(cfg.redis_lease_ms, deadline, "hap-fleet")?;
                let stored = redis.read_pair()?.ok_or_else(|| {
                    Error::new(Status::NoCredential, format!("{where_} holds no login"))
                })?;
                CredentialsFile::new(path.clone())
                    .write_pair(&stored.pair, stored.scopes.as_deref())?;
                if let Err(e) = redis.remove() {
                    return Err(Error::new(
                        e.status,
                        format!(
                            "the login is in {} now, but it could not be deleted from \
                             {where_} ({}): delete it there before any fleet host refreshes, \
                             or the family forks",
                            path.display(),
                            e.message
                        ),
                    ));
                }
                outln(&format!(
                    "exported version {} from {where_} into {}; Redis holds no login now.",
                    stored.version,
                    path.display()
                ));
                Ok(ExitCode::SUCCESS)
            }
            FleetCmd::Status { json } => {
                let pair = redis.read_pair();
                let (version, expires) = match &pair {
                    Ok(Some(s)) => (Some(s.version), s.pair.expires_at_ms),
                    Ok(None) => (None, None),
                    // A consumer's ACL user: what it can see.
                    Err(e) if e.status == Status::InvalidArgument => match redis.read_access()? {
                        Some(a) => (Some(a.version), a.expires_at_ms),
                        None => (None, None),
                    },
                    Err(e) => return Err(e.clone()),
                };
                let lease = redis.lease_holder().ok().flatten();
                let posting = redis.posting().ok().flatten();
                let doc = serde_json::json!({
                    "redis_url": redis.config().shown_url(),
                    "redis_prefix": redis.config().prefix(),
                    "role": if pair.is_ok() { "refresher" } else { "consumer" },
                    "version": version,
                    "expires_at_ms": expires,
                    "lease_holder": lease.as_ref().map(|l| &l.0),
                    "lease_ttl_ms": lease.as_ref().map(|l| l.1),
                    "possibly_spent_since_ms": posting.map(|p| p.at_ms),
                });
                if json {
                    outln(&doc.to_string());
                } else {
                    outln(&format!("fleet authority: {where_}"));
                    outln(&format!(
                        "  role of this ACL user: {}",
                        doc["role"].as_str().unwrap_or("?")
                    ));
                    match version {
                        Some(v) => outln(&format!(
                            "  login: version {v}, expires {}",
                            expires.map_or("?".into(), crate::ui::instant)
                        )),
                        None => outln("  login: none (hap fleet import)"),
                    }
                    match lease {
                        Some((owner, ttl)) => {
                            outln(&format!("  refresh lease: held by {owner}, {ttl} ms left"))
                        }
                        None => outln("  refresh lease: free"),
                    }
                    if let Some(at) = doc["possibly_spent_since_ms"].as_i64() {
                        outln(&format!(
                            "  a POST went out at {} and its answer is not committed yet",
                            crate::ui::instant(at)
                        ));
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}
