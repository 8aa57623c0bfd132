//! A fleet's authority and refresh lease in Redis (issue 16, docs/FLEET.md).
//!
//! File locks stop at the machine's edge; hosts that share one login need one authority for
//! the pair and one lock for the refresh. This module is that store and nothing more: what
//! a refresh does with it is `refresh/`'s business, as for the files.
//!
//! Keys, under the configured prefix (default `hap:`):
//!
//! * `{p}pair`: hash `access_token refresh_token refresh_fp expires_at_ms scopes version`. Only the
//!   refreshers' ACL user may read it: the refresh token is the login.
//! * `{p}access`: hash `access_token expires_at_ms version`, readable by consumers, who
//!   serve the access token and never refresh.
//! * `{p}lease`: the refresh lease, `SET NX PX` with a random owner, renewed by a thread while
//!   it is held (so a POST that takes long keeps it), released by compare-and-delete. A
//!   holder paused past it loses it; its late commit is still safe (next point).
//! * Every write of the pair is a compare-and-set on the refresh token it replaces (Lua), as
//!   Claude Code's own save checks that the file still holds the token it posted: a version
//!   number only orders writes, it cannot say whether the pair a late holder brings is the
//!   successor of what Redis holds. The script bumps `version`, rewrites `{p}access`, clears
//!   the possibly-spent marker of the token it replaced and publishes the new version.
//! * `{p}posting`: the "possibly spent" marker, written before a POST (the journal's `posts`
//!   record, fleet-wide): a taker that finds it for the token it would spend watches for the
//!   pair before POSTing.
//! * channel `{p}rotated`: the new version after every commit (never a token), so each
//!   process's cache learns of a rotation without polling.
//!
//! Replicas (docs/FLEET.md, Replicas and failover): replication is asynchronous, so a
//! failover can lose what the old primary acknowledged. With `redis_wait_replicas` N > 0
//! ([`RedisStore::with_wait`]) the marker and every commit are followed by `WAIT N timeout`
//! on the connection that wrote them: a marker fewer than N replicas have is taken back
//! and nothing is POSTed (`UNAVAILABLE`); a commit they lack is written on the primary but
//! reported as an error, so the caller's journal keeps it (the commit script is idempotent
//! for a replay). With N = 0 no `WAIT` is sent. Sentinel and Cluster are not handled: the
//! URL must follow the primary (DNS or a virtual IP).
//!
//! The password never sits in the URL (refused), a config value, an argv or a message: it
//! comes from the file `redis_password_file` names or from `HAP_REDIS_PASSWORD`, and lives
//! in a [`Secret`]. Messages name the URL without it.
//!
//! Layering: like the rest of `store/`, nothing here imports `pool`, `refresh` or `ffi`.

use crate::credentials::TokenPair;
use crate::error::{Error, Result, Status};
use crate::secret::Secret;
use redis::{Client, Connection, ConnectionAddr, ConnectionInfo, IntoConnectionInfo};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The environment variable that may hold the ACL user's password.
pub const PASSWORD_ENV: &str = "HAP_REDIS_PASSWORD";
pub const DEFAULT_PREFIX: &str = "hap:";

/// Connect, read and write timeouts of every Redis call: a Redis that does not answer is
/// "unreachable" fast, and the caller fails closed (serves a valid cached token or
/// `UNAVAILABLE`), never refreshes without the lease.
const IO_TIMEOUT: Duration = Duration::from_millis(1500);

/// Where the fleet's authority is and how to log in to it.
#[derive(Clone)]
pub struct RedisConfig {
    /// The URL without a password (refused at parse time): safe to show.
    url: String,
    password: Option<Secret>,
    prefix: String,
    ca_file: Option<PathBuf>,
    /// Redis Sentinel: the sentinels asked for the master at every (re)connect, and the
    /// name they monitor it under. Empty: `url`'s host is the Redis.
    sentinels: Vec<(String, u16)>,
    sentinel_master: String,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.url)
            .field("password", &self.password.as_ref().map(|_| "[set]"))
            .field("prefix", &self.prefix)
            .field("sentinels", &self.sentinels)
            .field("sentinel_master", &self.sentinel_master)
            .finish()
    }
}

fn unavailable(what: &str, e: &redis::RedisError) -> Error {
    // A retry soon: Redis down is a wait, not a verdict on the login.
    Error::new(
        Status::Unavailable,
        crate::secret::redact_tokens(&format!("redis {what}: {e}")),
    )
    .with_retry_at(Some(crate::clock::now_ms().saturating_add(1000)))
}

impl RedisConfig {
    /// `url`: `redis://user@host:port/db` or `rediss://...`; the password from
    /// `password_file` (first line) or else `$HAP_REDIS_PASSWORD`.
    pub fn new(
        url: &str,
        password_file: Option<&Path>,
        prefix: Option<&str>,
        ca_file: Option<&Path>,
    ) -> Result<RedisConfig> {
        let parsed = url::Url::parse(url).map_err(|_| {
            Error::invalid("config key 'redis_url' must be a redis:// or rediss:// URL")
        })?;
        if !matches!(parsed.scheme(), "redis" | "rediss") {
            return Err(Error::invalid(
                "config key 'redis_url' must be a redis:// or rediss:// URL",
            ));
        }
        if parsed.password().is_some() {
            // Config values are shown by status and end up in argv and logs.
            return Err(Error::invalid(format!(
                "config key 'redis_url' must not hold a password: put it in the file \
                 'redis_password_file' names, or in ${PASSWORD_ENV}"
            )));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(Error::invalid("config key 'redis_url' names no host"));
        }
        let password = match password_file {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| Error::io(p, "reading the Redis password file", &e))?;
                let line = text.lines().next().unwrap_or("").trim_end();
                if line.is_empty() {
                    return Err(Error::invalid(format!(
                        "the Redis password file {} is empty",
                        p.display()
                    ))
                    .with_path(p));
                }
                Some(Secret::new(line))
            }
            None => std::env::var(PASSWORD_ENV)
                .ok()
                .filter(|v| !v.is_empty())
                .map(Secret::new),
        };
        let prefix = prefix.unwrap_or(DEFAULT_PREFIX);
        if prefix.is_empty() || prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::invalid(
                "config key 'redis_prefix' must be non-empty, without spaces",
            ));
        }
        Ok(RedisConfig {
            url: url.to_string(),
            password,
            prefix: prefix.to_string(),
            ca_file: ca_file.map(Path::to_path_buf),
            sentinels: Vec::new(),
            sentinel_master: String::new(),
        })
    }

    /// Redis Sentinel (docs/FLEET.md, "Sentinel"): every connection asks `sentinels`
    /// (`host:port` each) for the master they monitor as `master`. `redis_url` then names
    /// that master by its Sentinel name, without a port (`redis://refresher@mymaster/0`):
    /// it still carries the scheme (a `rediss://` fleet reaches the sentinels and the master
    /// over TLS, with `redis_ca_file`), the ACL user and the db, while an address in it would
    /// be one hap never connects to. Nothing (an empty list): no Sentinel.
    pub fn with_sentinels(mut self, sentinels: &[String], master: Option<&str>) -> Result<Self> {
        let Some(master) = master.filter(|_| !sentinels.is_empty()) else {
            return Ok(self);
        };
        let parsed = url::Url::parse(&self.url).map_err(|_| Error::internal("url re-parse"))?;
        if parsed.host_str() != Some(master) || parsed.port().is_some() {
            return Err(Error::invalid(format!(
                "config key 'redis_url' ({}): with 'redis_sentinels', the sentinels say where \
                 the master is, so the URL names it by its Sentinel name, without a port: \
                 write \"{}://{}@{master}{}\" (docs/FLEET.md, Sentinel)",
                crate::secret::redact_tokens(&self.url),
                parsed.scheme(),
                if parsed.username().is_empty() {
                    "USER"
                } else {
                    parsed.username()
                },
                parsed.path()
            )));
        }
        self.sentinels = sentinels
            .iter()
            .map(|s| {
                let (h, p) = s.rsplit_once(':').unwrap_or((s, ""));
                let h = h.trim_start_matches('[').trim_end_matches(']');
                match p.parse::<u16>() {
                    Ok(p) => Ok((h.to_string(), p)),
                    Err(_) => Err(Error::invalid(format!(
                        "config key 'redis_sentinels': {s:?} is not host:port"
                    ))),
                }
            })
            .collect::<Result<_>>()?;
        self.sentinel_master = master.to_string();
        Ok(self)
    }

    /// The sentinels as status shows them (`host:port`, no secret); empty without Sentinel.
    pub fn sentinels(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|(h, p)| format!("{h}:{p}"))
            .collect()
    }

    pub fn sentinel_master(&self) -> Option<&str> {
        (!self.sentinels.is_empty()).then_some(self.sentinel_master.as_str())
    }

    /// The URL as status and doctor show it (it never holds the password).
    pub fn shown_url(&self) -> &str {
        &self.url
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    pub fn channel(&self) -> String {
        self.key("rotated")
    }

    /// A client for the URL's Redis, or, with `at`, for that address with the URL's
    /// scheme, ACL user, password and db (the master a sentinel named).
    fn client(&self, at: Option<(&str, u16)>) -> Result<Client> {
        let bad = |e: redis::RedisError| {
            Error::invalid(format!(
                "config key 'redis_url' ({}): {e}",
                crate::secret::redact_tokens(&self.url)
            ))
        };
        let mut info: ConnectionInfo = self.url.as_str().into_connection_info().map_err(bad)?;
        if let Some(pw) = &self.password {
            let settings = info.redis_settings().clone().set_password(pw.expose());
            info = info.set_redis_settings(settings);
        }
        if let Some((host, port)) = at {
            let addr = match info.addr().clone() {
                ConnectionAddr::TcpTls {
                    insecure,
                    tls_params,
                    ..
                } => ConnectionAddr::TcpTls {
                    host: host.to_string(),
                    port,
                    insecure,
                    tls_params,
                },
                _ => ConnectionAddr::Tcp(host.to_string(), port),
            };
            info = info.set_addr(addr);
        }
        self.open_client(info).map_err(bad)
    }

    /// `info` with the CA of `redis_ca_file` for a TLS address.
    fn open_client(&self, info: ConnectionInfo) -> Result<Client, redis::RedisError> {
        match (&self.ca_file, info.addr()) {
            (Some(ca), ConnectionAddr::TcpTls { .. }) => {
                let pem = std::fs::read(ca).map_err(|e| {
                    redis::RedisError::from((
                        redis::ErrorKind::InvalidClientConfig,
                        "reading the Redis CA certificate",
                        format!("{}: {e}", ca.display()),
                    ))
                })?;
                Client::build_with_tls(
                    info,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem),
                    },
                )
            }
            _ => Client::open(info),
        }
    }

    /// A connection with hap's timeouts. `Unavailable` when Redis does not answer. With
    /// Sentinel, to the master the sentinels name now (a failover moves it).
    pub fn connect(&self) -> Result<Connection> {
        self.connect_at().map(|(c, _)| c)
    }

    /// [`connect`](Self::connect), and with Sentinel the master's `host:port` it reached.
    fn connect_at(&self) -> Result<(Connection, Option<String>)> {
        if !self.sentinels.is_empty() {
            return self.connect_via_sentinels();
        }
        let c = self.client(None)?;
        let con = with_timeouts(&c).map_err(|e| unavailable("connect", &e))?;
        Ok((con, None))
    }

    /// The Sentinel client protocol (redis.io, "Sentinel client spec"): ask each sentinel
    /// in turn for the master's address (`SENTINEL GET-MASTER-ADDR-BY-NAME`), connect, and
    /// keep the connection only if the node says `ROLE` master: right after a failover a
    /// sentinel can still name the old master, which then answers as a replica.
    ///
    /// Not the redis crate's `sentinel` feature: its blocking client opens its sentinel and
    /// role-check connections without any timeout (`Client::get_connection`), so one
    /// stopped sentinel (SIGSTOP, a hung VM) blocked every hap call forever instead of
    /// failing over to the next sentinel or failing closed within `IO_TIMEOUT`; and it would
    /// add rand, rand_core, chacha20 and a second cpufeatures to every process that loads
    /// hap, for a random replica choice hap never makes.
    fn connect_via_sentinels(&self) -> Result<(Connection, Option<String>)> {
        let master = &self.sentinel_master;
        let mut why = Vec::new();
        for (host, port) in &self.sentinels {
            let at = format!("sentinel {host}:{port}");
            let addr = match self.ask_sentinel(host, *port) {
                Ok(Some(a)) => a,
                Ok(None) => {
                    why.push(format!("{at} monitors no master named {master}"));
                    continue;
                }
                Err(e) => {
                    why.push(format!("{at}: {e}"));
                    continue;
                }
            };
            let mut con = match self
                .client(Some((&addr.0, addr.1)))
                .and_then(|c| with_timeouts(&c).map_err(|e| unavailable("connect", &e)))
            {
                Ok(c) => c,
                Err(e) => {
                    why.push(format!(
                        "{at} names {}:{}, which does not answer ({})",
                        addr.0, addr.1, e.message
                    ));
                    continue;
                }
            };
            match redis::cmd("ROLE").query::<redis::Value>(&mut con) {
                Ok(redis::Value::Array(v)) if is_master(v.first()) => {
                    return Ok((con, Some(format!("{}:{}", addr.0, addr.1))))
                }
                Ok(_) => why.push(format!(
                    "{at} names {}:{}, which is not a master (yet): a failover in progress",
                    addr.0, addr.1
                )),
                Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoPerm) => {
                    return Err(Error::new(
                        Status::InvalidArgument,
                        format!(
                            "redis: this ACL user may not run ROLE, which hap needs with \
                             Sentinel to check it reached the master: add +role to it \
                             (docs/FLEET.md, Sentinel) ({e})"
                        ),
                    ))
                }
                Err(e) => why.push(format!("{at}: ROLE on {}:{}: {e}", addr.0, addr.1)),
            }
        }
        Err(Error::new(
            Status::Unavailable,
            crate::secret::redact_tokens(&format!(
                "redis: no sentinel of {} named a reachable master {master}: {}",
                self.sentinels().join(", "),
                why.join("; ")
            )),
        )
        .with_retry_at(Some(crate::clock::now_ms().saturating_add(1000))))
    }

    /// The master's address one sentinel gives, `None` when it monitors no such name.
    /// Sentinels are reached over the URL's transport (TLS with `redis_ca_file` for
    /// `rediss://`) and without a password (docs/FLEET.md: a private network).
    fn ask_sentinel(&self, host: &str, port: u16) -> redis::RedisResult<Option<(String, u16)>> {
        let addr = match url::Url::parse(&self.url).map(|u| u.scheme() == "rediss") {
            Ok(true) => ConnectionAddr::TcpTls {
                host: host.to_string(),
                port,
                insecure: false,
                tls_params: None,
            },
            _ => ConnectionAddr::Tcp(host.to_string(), port),
        };
        let c = self.open_client(addr.into_connection_info()?)?;
        let mut con = with_timeouts(&c)?;
        let got: Option<(String, u16)> = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(&self.sentinel_master)
            .query(&mut con)?;
        Ok(got)
    }
}

/// A connection with hap's connect, read and write timeouts.
fn with_timeouts(c: &Client) -> redis::RedisResult<Connection> {
    let con = c.get_connection_with_timeout(IO_TIMEOUT)?;
    con.set_read_timeout(Some(IO_TIMEOUT))?;
    con.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(con)
}

/// `ROLE`'s first element: "master" on a master.
fn is_master(first: Option<&redis::Value>) -> bool {
    match first {
        Some(redis::Value::BulkString(b)) => b == b"master",
        Some(redis::Value::SimpleString(s)) => s == "master",
        _ => false,
    }
}

/// The pair as Redis holds it, with its version (1 for the first write, +1 per commit).
#[derive(Clone, Debug)]
pub struct Stored {
    pub pair: TokenPair,
    pub scopes: Option<Vec<String>>,
    pub version: u64,
}

/// What a consumer reads: the access token only.
#[derive(Clone, Debug)]
pub struct Access {
    pub access: Secret,
    pub expires_at_ms: Option<i64>,
    pub version: u64,
}

/// The possibly-spent marker: a POST of the token with this fingerprint went out at `at_ms`
/// from `host` and its answer is not committed yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Posting {
    pub token_fp: String,
    pub at_ms: i64,
    /// The host label of the process that POSTed (its answer, if any, is in that host's
    /// journal); `None` in a marker written before hap recorded it.
    pub host: Option<String>,
}

/// Result of a compare-and-set write of the pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Commit {
    /// Written; the new version.
    Written(u64),
    /// Redis holds another refresh token than the one the write replaces: someone else's
    /// rotation (or a new login) is the authority now; nothing was written.
    Moved,
}

fn field<'a>(fields: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_slice())
}

fn field_str(fields: &[(String, Vec<u8>)], name: &str) -> Option<String> {
    field(fields, name).and_then(|v| String::from_utf8(v.to_vec()).ok())
}

fn field_num<T: std::str::FromStr>(fields: &[(String, Vec<u8>)], name: &str) -> Option<T> {
    field_str(fields, name).and_then(|s| s.parse().ok())
}

/// `HGETALL` as (field, bytes) pairs; empty when the key does not exist.
fn hgetall(con: &mut Connection, key: &str) -> redis::RedisResult<Vec<(String, Vec<u8>)>> {
    redis::cmd("HGETALL").arg(key).query(con)
}

// Lua, run atomically by Redis.

/// KEYS: pair, access, posting, channel. ARGV: fingerprint of the replaced refresh token
/// ("" = only if no pair is stored: an import), access, refresh, expires_at_ms ("" =
/// unknown), scopes JSON ("" = none), fingerprint of the new refresh token. The compare is
/// on fingerprints (`Secret::fingerprint`), which the journal and the marker use too.
///
/// Idempotent: when Redis holds this very pair already (a journal entry replayed after a
/// commit that reached the primary but not enough replicas, or a retry after a connection
/// lost with the answer), it writes nothing new and returns the current version. It still
/// rewrites the version field unchanged, so a write is replicated after the original one
/// and a `WAIT` on this connection covers both. A new connection that wrote nothing has
/// nothing for `WAIT` to count and passes at once (checked on 7.0.15 with a paused
/// replica); 7.0.15 also counts from a read-only script, but that is not a documented
/// promise, a write is.
const COMMIT_LUA: &str = r#"
local cur = redis.call('HGET', KEYS[1], 'refresh_fp')
if ARGV[1] == '' then
  if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
elseif cur == ARGV[6] and redis.call('HGET', KEYS[1], 'access_token') == ARGV[2] then
  local same = redis.call('HGET', KEYS[1], 'version')
  redis.call('HSET', KEYS[1], 'version', same)
  if redis.call('HGET', KEYS[3], 'token') == ARGV[1] then redis.call('DEL', KEYS[3]) end
  return tonumber(same)
elseif cur ~= ARGV[1] then
  return -1
end
local v = tonumber(redis.call('HGET', KEYS[1], 'version') or '0') + 1
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[1], 'access_token', ARGV[2], 'refresh_token', ARGV[3],
  'refresh_fp', ARGV[6], 'version', v)
redis.call('HSET', KEYS[2], 'access_token', ARGV[2], 'version', v)
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[1], 'expires_at_ms', ARGV[4])
  redis.call('HSET', KEYS[2], 'expires_at_ms', ARGV[4])
end
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'scopes', ARGV[5]) end
if ARGV[1] ~= '' and redis.call('HGET', KEYS[3], 'token') == ARGV[1] then
  redis.call('DEL', KEYS[3])
end
redis.call('PUBLISH', KEYS[4], v)
return v
"#;

/// KEYS: lease. ARGV: owner, ttl ms. Extends the lease only while we still own it.
const RENEW_LUA: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"#;

/// KEYS: lease. ARGV: owner. Deletes the lease only if it is still ours: a holder paused
/// past its lease must not release its successor's.
const RELEASE_LUA: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// KEYS: posting. ARGV: fingerprint. Clears the marker of that token only.
const CLEAR_POSTING_LUA: &str = r#"
if redis.call('HGET', KEYS[1], 'token') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// One process's handle on the fleet authority: a connection for commands, opened lazily
/// and dropped after any error so the next call reconnects.
pub struct RedisStore {
    cfg: RedisConfig,
    con: Mutex<Option<Connection>>,
    wait: Option<Wait>,
    /// With Sentinel: the master `con` reached (status shows it).
    master: Mutex<Option<String>>,
}

/// `redis_wait_replicas` and `redis_wait_timeout_ms`: how many replicas must acknowledge
/// a write before it counts (docs/FLEET.md, Replicas and failover).
#[derive(Clone, Copy, Debug)]
struct Wait {
    replicas: u64,
    timeout_ms: u64,
}

/// `WAIT replicas timeout` on `con`, the connection that made the write: Redis counts the
/// replicas that acknowledged every write this connection made before it, so a WAIT on
/// another connection (or on a new one after a reconnect) proves nothing. The read timeout
/// covers the wait.
fn wait_for_replicas(con: &mut Connection, w: Wait) -> redis::RedisResult<u64> {
    con.set_read_timeout(Some(IO_TIMEOUT + Duration::from_millis(w.timeout_ms)))?;
    let acked = redis::cmd("WAIT")
        .arg(w.replicas)
        .arg(w.timeout_ms)
        .query::<u64>(con);
    con.set_read_timeout(Some(IO_TIMEOUT))?;
    acked
}

impl RedisStore {
    pub fn new(cfg: RedisConfig) -> RedisStore {
        RedisStore {
            cfg,
            con: Mutex::new(None),
            wait: None,
            master: Mutex::new(None),
        }
    }

    /// With `replicas > 0`, the possibly-spent marker and every commit of the pair count
    /// only once that many replicas acknowledged them within `timeout_ms` (Redis `WAIT`).
    /// With 0, no `WAIT` is sent at all.
    pub fn with_wait(mut self, replicas: u64, timeout_ms: u64) -> RedisStore {
        self.wait = (replicas > 0).then_some(Wait {
            replicas,
            timeout_ms,
        });
        self
    }

    /// Another handle on the same authority, with the same `WAIT` rule and a connection of
    /// its own (a thread's: the subscription's re-commit).
    pub fn another(&self) -> RedisStore {
        RedisStore {
            cfg: self.cfg.clone(),
            con: Mutex::new(None),
            wait: self.wait,
            master: Mutex::new(None),
        }
    }

    /// The replicas the primary reports connected (`INFO replication`, `connected_slaves`),
    /// for status and doctor.
    pub fn connected_replicas(&self) -> Result<u64> {
        let info: String = self.with_con("INFO replication", |c| {
            redis::cmd("INFO").arg("replication").query(c)
        })?;
        info.lines()
            .find_map(|l| l.trim().strip_prefix("connected_slaves:"))
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| Error::internal("INFO replication names no connected_slaves"))
    }

    pub fn config(&self) -> &RedisConfig {
        &self.cfg
    }

    /// Runs `f` on the shared connection; on an I/O error, drops it and tries once more on a
    /// new one (a server restart closes every connection).
    fn with_con<T>(
        &self,
        what: &str,
        f: impl Fn(&mut Connection) -> redis::RedisResult<T>,
    ) -> Result<T> {
        let mut slot = self.con.lock().unwrap_or_else(|p| p.into_inner());
        for attempt in 0..2 {
            if slot.is_none() {
                let (con, master) = self.cfg.connect_at()?;
                *slot = Some(con);
                *self.master.lock().unwrap_or_else(|p| p.into_inner()) = master;
            }
            let con = slot.as_mut().expect("connected");
            match f(con) {
                Ok(v) => return Ok(v),
                Err(e) => {
                    *slot = None;
                    // READONLY: a failover demoted the node this connection reached
                    // (with Sentinel, a new connection asks the sentinels for the new
                    // master); the write was not done, so once more is safe.
                    let retry = attempt == 0
                        && (e.is_io_error()
                            || e.is_connection_dropped()
                            || e.is_connection_refusal()
                            || e.kind()
                                == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly));
                    if !retry {
                        return Err(
                            if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoPerm)
                            {
                                Error::new(
                                    Status::InvalidArgument,
                                    format!(
                                        "redis {what}: this ACL user may not do that ({e}): a \
                                     consumer reads {}access only; refreshing needs a \
                                     refresher's ACL user (docs/FLEET.md)",
                                        self.cfg.prefix
                                    ),
                                )
                            } else {
                                unavailable(what, &e)
                            },
                        );
                    }
                }
            }
        }
        unreachable!("the second attempt returns")
    }

    /// With Sentinel, the `host:port` of the master the sentinels named and this handle
    /// reached (status, doctor); `None` without Sentinel or when it is unreachable.
    pub fn master_addr(&self) -> Option<String> {
        self.ping().ok()?;
        self.master
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Checks that Redis answers (doctor, `hap fleet`).
    pub fn ping(&self) -> Result<()> {
        self.with_con("PING", |c| redis::cmd("PING").query::<String>(c))
            .map(|_| ())
    }

    /// The pair (refreshers' ACL user). `None`: no login imported.
    pub fn read_pair(&self) -> Result<Option<Stored>> {
        let key = self.cfg.key("pair");
        let fields = self.with_con("read of the pair", |c| hgetall(c, &key))?;
        if fields.is_empty() {
            return Ok(None);
        }
        let (Some(access), Some(refresh), Some(version)) = (
            field_str(&fields, "access_token"),
            field_str(&fields, "refresh_token"),
            field_num::<u64>(&fields, "version"),
        ) else {
            return Err(Error::new(
                Status::StoreCorrupt,
                format!(
                    "redis key {key} is not a pair hap wrote (a field is missing): \
                     `hap fleet import` writes it again"
                ),
            ));
        };
        let scopes = field_str(&fields, "scopes").and_then(|s| serde_json::from_str(&s).ok());
        Ok(Some(Stored {
            pair: TokenPair {
                access: Secret::new(access),
                refresh: Some(Secret::new(refresh)),
                expires_at_ms: field_num(&fields, "expires_at_ms"),
            },
            scopes,
            version,
        }))
    }

    /// The access token (consumers' ACL user suffices).
    pub fn read_access(&self) -> Result<Option<Access>> {
        let key = self.cfg.key("access");
        let fields = self.with_con("read of the access token", |c| hgetall(c, &key))?;
        if fields.is_empty() {
            return Ok(None);
        }
        let (Some(access), Some(version)) = (
            field_str(&fields, "access_token"),
            field_num::<u64>(&fields, "version"),
        ) else {
            return Err(Error::new(
                Status::StoreCorrupt,
                format!("redis key {key} is not an access token hap wrote"),
            ));
        };
        Ok(Some(Access {
            access: Secret::new(access),
            expires_at_ms: field_num(&fields, "expires_at_ms"),
            version,
        }))
    }

    /// Writes `pair` if Redis still holds the refresh token whose fingerprint is
    /// `replaced_fp` (the token the POST spent), or, with `None`, only if Redis holds no pair
    /// at all (an import).
    pub fn commit(
        &self,
        replaced_fp: Option<&str>,
        pair: &TokenPair,
        scopes: Option<&[String]>,
    ) -> Result<Commit> {
        let refresh = pair
            .refresh
            .as_ref()
            .ok_or_else(|| Error::internal("a pair without a refresh token"))?;
        let keys = [
            self.cfg.key("pair"),
            self.cfg.key("access"),
            self.cfg.key("posting"),
            self.cfg.channel(),
        ];
        let replaced_fp = replaced_fp.unwrap_or("");
        let new_fp = refresh.fingerprint();
        let expires = pair
            .expires_at_ms
            .map(|e| e.to_string())
            .unwrap_or_default();
        let scopes = scopes
            .map(|s| serde_json::to_string(s).unwrap_or_default())
            .unwrap_or_default();
        let wait = self.wait;
        // The script and its WAIT on one connection (`wait_for_replicas`). A retry after a
        // lost connection runs both again: the script finds its own pair and only touches
        // it, so the new connection's WAIT covers it (COMMIT_LUA).
        let (v, acked): (i64, Option<u64>) = self.with_con("write of the pair", |c| {
            let v: i64 = redis::cmd("EVAL")
                .arg(COMMIT_LUA)
                .arg(keys.len())
                .arg(&keys[..])
                .arg(replaced_fp)
                .arg(pair.access.expose())
                .arg(refresh.expose())
                .arg(&expires)
                .arg(&scopes)
                .arg(&new_fp)
                .query(c)?;
            match wait {
                Some(w) if v >= 0 => Ok((v, Some(wait_for_replicas(c, w)?))),
                _ => Ok((v, None)),
            }
        })?;
        if let (Some(w), Some(k)) = (wait, acked) {
            if k < w.replicas {
                // Written on the primary, but a failover now would roll the fleet back to
                // the token the POST spent: not durable. The caller keeps its journal
                // entry uncommitted (refresh step 7 still serves the pair); see
                // `Fleet::write_pair` for how it is settled.
                return Err(Error::new(
                    Status::Unavailable,
                    format!(
                        "the pair is committed on the Redis primary only: {k} of {} replicas \
                         acknowledged it within {} ms (redis_wait_replicas), so a failover \
                         now would lose it. Check the replicas (INFO replication on {}), or \
                         lower redis_wait_replicas",
                        w.replicas,
                        w.timeout_ms,
                        self.cfg.shown_url()
                    ),
                )
                .with_retry_at(Some(crate::clock::now_ms().saturating_add(1000))));
            }
        }
        Ok(if v < 0 {
            Commit::Moved
        } else {
            Commit::Written(v as u64)
        })
    }

    /// Deletes the pair and the access token (`hap fleet export --remove`): the login leaves
    /// the fleet.
    pub fn remove(&self) -> Result<()> {
        let keys = [self.cfg.key("pair"), self.cfg.key("access")];
        self.with_con("delete of the pair", |c| {
            redis::cmd("DEL").arg(&keys[..]).query::<i64>(c)
        })
        .map(|_| ())
    }

    /// Records that a POST of the token with fingerprint `token_fp` is about to go out from
    /// `host`. An error means the marker is not there: do not POST.
    pub fn mark_posting(&self, token_fp: &str, at_ms: i64, host: &str) -> Result<()> {
        let key = self.cfg.key("posting");
        let wait = self.wait;
        let acked = self.with_con("write of the possibly-spent marker", |c| {
            redis::pipe()
                .atomic()
                .cmd("DEL")
                .arg(&key)
                .ignore()
                .cmd("HSET")
                .arg(&key)
                .arg("token")
                .arg(token_fp)
                .arg("at_ms")
                .arg(at_ms)
                .arg("host")
                .arg(host)
                .ignore()
                // A marker outlives any watch: a day, so a forgotten one cannot stay forever.
                .cmd("PEXPIRE")
                .arg(&key)
                .arg(86_400_000)
                .ignore()
                .query::<()>(c)?;
            // On the connection that wrote it (`wait_for_replicas`).
            wait.map(|w| wait_for_replicas(c, w)).transpose()
        })?;
        if let (Some(w), Some(k)) = (wait, acked) {
            if k < w.replicas {
                // A marker on the primary only is lost by a failover, and with it the only
                // record that the token may be spent: another host would POST it again.
                // So no POST: take the marker back (best effort; a marker left behind only
                // makes takers wait its window).
                let _ = self.clear_posting(token_fp);
                return Err(Error::new(
                    Status::Unavailable,
                    format!(
                        "the possibly-spent marker reached {k} of {} Redis replicas within {} \
                         ms; not refreshing (the refresh token is not spent). Check the \
                         replicas (INFO replication on {}), or lower redis_wait_replicas",
                        w.replicas,
                        w.timeout_ms,
                        self.cfg.shown_url()
                    ),
                )
                .with_retry_at(Some(
                    crate::clock::now_ms().saturating_add(w.timeout_ms.max(1000) as i64),
                )));
            }
        }
        Ok(())
    }

    /// The marker, if any.
    pub fn posting(&self) -> Result<Option<Posting>> {
        let key = self.cfg.key("posting");
        let fields = self.with_con("read of the possibly-spent marker", |c| hgetall(c, &key))?;
        Ok(
            match (field_str(&fields, "token"), field_num(&fields, "at_ms")) {
                (Some(token_fp), Some(at_ms)) => Some(Posting {
                    token_fp,
                    at_ms,
                    host: field_str(&fields, "host"),
                }),
                _ => None,
            },
        )
    }

    /// Ends the marker of `token_fp` (the server answered without spending it).
    pub fn clear_posting(&self, token_fp: &str) -> Result<()> {
        let key = self.cfg.key("posting");
        self.with_con("clear of the possibly-spent marker", |c| {
            redis::cmd("EVAL")
                .arg(CLEAR_POSTING_LUA)
                .arg(1)
                .arg(&key)
                .arg(token_fp)
                .query::<i64>(c)
        })
        .map(|_| ())
    }

    /// Who holds the lease now (status, doctor), and for how many more ms.
    pub fn lease_holder(&self) -> Result<Option<(String, i64)>> {
        let key = self.cfg.key("lease");
        let (owner, ttl): (Option<String>, i64) = self.with_con("read of the lease", |c| {
            redis::pipe()
                .cmd("GET")
                .arg(&key)
                .cmd("PTTL")
                .arg(&key)
                .query(c)
        })?;
        Ok(owner.map(|o| (o, ttl)))
    }

    /// Takes the refresh lease: `SET lease owner NX PX ttl`, retried until `deadline`. The
    /// returned [`Lease`] renews itself every `ttl / 3` until dropped, then releases it by
    /// compare-and-delete. `LOCK_TIMEOUT` when another owner holds it past the deadline;
    /// `UNAVAILABLE` when Redis does not answer (fail closed: no refresh without it).
    pub fn acquire_lease(&self, ttl_ms: u64, deadline: Instant, label: &str) -> Result<Lease> {
        let key = self.cfg.key("lease");
        let owner = format!(
            "{label}:{}:{:016x}{:016x}",
            std::process::id(),
            crate::rng::next_u64(),
            crate::rng::next_u64()
        );
        let started = Instant::now();
        let mut wait = Duration::from_millis(5);
        loop {
            let got: Option<String> = self.with_con("take of the lease", |c| {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(&owner)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl_ms)
                    .query(c)
            })?;
            if got.is_some() {
                return Lease::start(self.cfg.clone(), key, owner, ttl_ms);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::new(
                    Status::LockTimeout,
                    format!(
                        "another host holds the fleet's refresh lease ({key} on {}); waited \
                         {} ms",
                        self.cfg.shown_url(),
                        started.elapsed().as_millis()
                    ),
                ));
            }
            std::thread::sleep(wait.min(deadline - now));
            wait = (wait * 2).min(Duration::from_millis(50));
        }
    }
}

/// The refresh lease, held until dropped.
pub struct Lease {
    owner: String,
    key: String,
    cfg: RedisConfig,
    lost: Arc<AtomicBool>,
    stop: Arc<(Mutex<bool>, std::sync::Condvar)>,
    renewer: Option<JoinHandle<()>>,
    renewals: Arc<AtomicU64>,
}

impl Lease {
    fn start(cfg: RedisConfig, key: String, owner: String, ttl_ms: u64) -> Result<Lease> {
        let lost = Arc::new(AtomicBool::new(false));
        let stop = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let renewals = Arc::new(AtomicU64::new(0));
        let renewer = {
            let (cfg, key, owner) = (cfg.clone(), key.clone(), owner.clone());
            let (lost, stop, renewals) = (lost.clone(), stop.clone(), renewals.clone());
            std::thread::Builder::new()
                .name("hap-lease".into())
                .spawn(move || {
                    let period = Duration::from_millis((ttl_ms / 3).max(10));
                    let mut con: Option<Connection> = None;
                    loop {
                        {
                            let (m, cv) = &*stop;
                            let g = m.lock().unwrap_or_else(|p| p.into_inner());
                            let (g, _) = cv
                                .wait_timeout_while(g, period, |s| !*s)
                                .unwrap_or_else(|p| p.into_inner());
                            if *g {
                                return;
                            }
                        }
                        if con.is_none() {
                            con = cfg.connect().ok();
                        }
                        let Some(c) = con.as_mut() else { continue };
                        match redis::cmd("EVAL")
                            .arg(RENEW_LUA)
                            .arg(1)
                            .arg(&key)
                            .arg(&owner)
                            .arg(ttl_ms)
                            .query::<i64>(c)
                        {
                            Ok(1) => {
                                renewals.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(_) => {
                                // Expired and maybe taken: our late commit is still guarded
                                // by the compare-and-set; stop renewing someone else's.
                                lost.store(true, Ordering::Relaxed);
                                return;
                            }
                            Err(_) => con = None,
                        }
                    }
                })
                .map_err(|e| Error::internal(format!("lease renewal thread: {e}")))?
        };
        Ok(Lease {
            owner,
            key,
            cfg,
            lost,
            stop,
            renewer: Some(renewer),
            renewals,
        })
    }

    /// The owner string (status shows it: it names the process, no secret).
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// True once a renewal found the lease gone or another owner's.
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }

    pub fn renewals(&self) -> u64 {
        self.renewals.load(Ordering::Relaxed)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        {
            let (m, cv) = &*self.stop;
            *m.lock().unwrap_or_else(|p| p.into_inner()) = true;
            cv.notify_all();
        }
        if let Some(t) = self.renewer.take() {
            let _ = t.join();
        }
        // Best effort: a release that fails leaves a lease that expires by itself.
        if let Ok(mut c) = self.cfg.connect() {
            let _ = redis::cmd("EVAL")
                .arg(RELEASE_LUA)
                .arg(1)
                .arg(&self.key)
                .arg(&self.owner)
                .query::<i64>(&mut c);
        }
    }
}

/// A subscription to the rotation channel: a thread that bumps `generation` at every
/// published version and whenever its connection is lost or restored (a rotation may have
/// been missed meanwhile). The hot path compares generations: no network call.
///
/// `on_connect` runs on that thread each time the subscription is (re)established: Redis
/// is reachable again, the moment a pair this host could not commit while it was down (or
/// lost in a failover) must go in, before another host spends the token it replaced.
pub struct Subscription {
    generation: Arc<AtomicU64>,
    connected: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Subscription {
    pub fn start(
        cfg: RedisConfig,
        on_connect: Box<dyn Fn() + Send + 'static>,
    ) -> Result<Subscription> {
        let generation = Arc::new(AtomicU64::new(0));
        let connected = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (generation, connected, stop) =
                (generation.clone(), connected.clone(), stop.clone());
            std::thread::Builder::new()
                .name("hap-fleet-sub".into())
                .spawn(move || subscriber(cfg, generation, connected, stop, on_connect))
                .map_err(|e| Error::internal(format!("subscription thread: {e}")))?
        };
        Ok(Subscription {
            generation,
            connected,
            stop,
            thread: Some(thread),
        })
    }

    /// Changes whenever the authority may have changed (a rotation published, or the
    /// subscription lost or regained).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// While false, no rotation can be learnt of: the cache is trusted only for a token
    /// that is still valid, and re-read at every look.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }
}

fn subscriber(
    cfg: RedisConfig,
    generation: Arc<AtomicU64>,
    connected: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    on_connect: Box<dyn Fn() + Send + 'static>,
) {
    let channel = cfg.channel();
    let mut backoff = Duration::from_millis(50);
    while !stop.load(Ordering::Relaxed) {
        let mut con = match cfg.connect() {
            Ok(c) => c,
            Err(_) => {
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        let mut ps = con.as_pubsub();
        if ps.subscribe(&channel).is_err() {
            std::thread::sleep(backoff);
            continue;
        }
        // A short read timeout so `stop` is seen; a timeout is not a lost connection.
        let _ = ps.set_read_timeout(Some(Duration::from_millis(200)));
        backoff = Duration::from_millis(50);
        connected.store(true, Ordering::Release);
        // Subscribed now: anything published before is re-read once.
        generation.fetch_add(1, Ordering::AcqRel);
        // After subscribing, so a rotation it commits is seen as one by this process too.
        on_connect();
        while !stop.load(Ordering::Relaxed) {
            match ps.get_message() {
                Ok(_) => {
                    generation.fetch_add(1, Ordering::AcqRel);
                }
                Err(e) if e.is_timeout() => {}
                Err(_) => break,
            }
        }
        connected.store(false, Ordering::Release);
        generation.fetch_add(1, Ordering::AcqRel);
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
