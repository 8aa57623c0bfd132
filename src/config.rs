//! `hap_pool_open`'s configuration: every key of docs/ABI.md, its default, and validation that
//! names the offending key. Unknown or ill-typed keys are refused rather than ignored, so a
//! typo cannot silently point a process at another store.

use crate::error::{Error, Result};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// The default provider's facts (`provider/anthropic.rs`), under the names config uses.
pub const DEFAULT_CLIENT_ID: &str = crate::provider::ANTHROPIC.client_id;
pub const DEFAULT_TOKEN_URLS: &[&str] = crate::provider::ANTHROPIC.token_urls;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    FillFirst,
    RoundRobin,
    LeastUsed,
    Random,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::FillFirst => "fill_first",
            Strategy::RoundRobin => "round_robin",
            Strategy::LeastUsed => "least_used",
            Strategy::Random => "random",
        }
    }
}

/// Where Claude Code's login is read and written (`credentials_store`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialsStore {
    /// The credentials file only.
    File,
    /// The macOS Keychain item through `security_program`, the file as fallback (Claude
    /// Code's order on macOS: `store/keychain.rs`).
    Keychain,
    /// `Keychain` on macOS, `File` elsewhere: where Claude Code itself keeps the login.
    Auto,
}

impl CredentialsStore {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialsStore::File => "file",
            CredentialsStore::Keychain => "keychain",
            CredentialsStore::Auto => "auto",
        }
    }

    /// Whether the Keychain is read: `Auto` means it only on macOS, as Claude Code does
    /// (its Linux build has no Keychain store at all).
    pub fn uses_keychain(self) -> bool {
        match self {
            CredentialsStore::File => false,
            CredentialsStore::Keychain => true,
            CredentialsStore::Auto => cfg!(target_os = "macos"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub provider: String,
    pub pool_path: Option<PathBuf>,
    /// True when `pool_path` was filled in from `HERMES_HOME` / `HOME`, not given. Only a
    /// default pool file is skipped when its directory does not exist (no Hermes installed:
    /// hap creates nothing under `~/.hermes`); a path the caller named is always used, even
    /// when it happens to equal the default.
    pub pool_path_from_default: bool,
    pub credentials_path: Option<PathBuf>,
    /// Where the login lives: the file, the macOS Keychain (file as fallback), or `auto`.
    pub credentials_store: CredentialsStore,
    /// The `security` program the Keychain store runs (tests point it at a fake).
    pub security_program: PathBuf,
    pub token_urls: Vec<String>,
    pub client_id: String,
    pub user_agent: String,
    pub refresh_skew_ms: u64,
    pub strategy: Strategy,
    pub lock_timeout_ms: u64,
    pub http_timeout_ms: u64,
    pub claude_code_lock: bool,
    pub adopt_external_logins: bool,
    /// Claude Code owns its login (issue 12, item 5): hap never POSTs on it, serves it while
    /// it is valid and adopts Claude Code's rotations, else answers `UNAVAILABLE`.
    pub defer_refresh_to_claude_code: bool,
    /// hap agent (issue 15): defer to a running `hap agent` (docs/AGENT.md).
    pub agent: crate::agent::AgentMode,
    /// The fleet authority (issue 16, docs/FLEET.md): `redis://` / `rediss://` URL with an
    /// ACL user and no password. With it, the login lives in Redis, not in a file.
    pub redis_url: Option<String>,
    /// The file holding the ACL user's password (else `$HAP_REDIS_PASSWORD`).
    pub redis_password_file: Option<PathBuf>,
    /// Key prefix of the fleet's keys (default `hap:`).
    pub redis_prefix: Option<String>,
    /// PEM CA certificate for a `rediss://` server that a private CA signed.
    pub redis_ca_file: Option<PathBuf>,
    /// The fleet's refresh lease, ms: renewed while held, so only a holder that stops
    /// (paused, killed, cut off) loses it after this long.
    pub redis_lease_ms: u64,
    /// Replicas that must acknowledge the possibly-spent marker and each commit of the pair
    /// (Redis `WAIT`) before they count; 0 (the default): no `WAIT`, a failover may lose
    /// what only the old primary had (docs/FLEET.md, Replicas and failover).
    pub redis_wait_replicas: u64,
    /// How long one `WAIT` waits for those replicas, ms.
    pub redis_wait_timeout_ms: u64,
    /// Redis Sentinel (docs/FLEET.md, "Sentinel"): the sentinels, `host:port` each, asked
    /// for the current master at every (re)connect; empty without Sentinel.
    pub redis_sentinels: Vec<String>,
    /// The name the sentinels monitor the master under (`sentinel monitor <name> ...`).
    pub redis_sentinel_master: Option<String>,
}

/// A directory named by an environment variable, when set and non-empty. A relative one
/// is refused as a relative store path is: `HOME=relhome hap status` read stores relative
/// to each process's working directory, splitting the session (issue 10, item 13).
fn env_dir(var: &str) -> Result<Option<PathBuf>> {
    match std::env::var_os(var).filter(|v| !v.is_empty()) {
        Some(v) if !Path::new(&v).is_absolute() => Err(Error::invalid(format!(
            "{var} is a relative path ('{}'): set {var} to an absolute path, or give \
             pool_path and credentials_path explicitly",
            crate::error::shown(&v.to_string_lossy())
        ))),
        v => Ok(v.map(PathBuf::from)),
    }
}

fn home() -> Result<Option<PathBuf>> {
    env_dir("HOME")
}

/// `$HERMES_HOME/auth.json`, else `~/.hermes/auth.json`.
fn default_pool_path() -> Result<Option<PathBuf>> {
    let dir = match env_dir("HERMES_HOME")? {
        Some(d) => Some(d),
        None => home()?.map(|h| h.join(".hermes")),
    };
    Ok(dir.map(|d| d.join("auth.json")))
}

/// `<dir>/.credentials.json` where Claude Code keeps it: `<dir>` is
/// `$CLAUDE_SECURESTORAGE_CONFIG_DIR` (Claude Code 2.1.128 and later; set but empty means
/// `~/.claude`), else `$CLAUDE_CONFIG_DIR`, else `~/.claude` (interop/claude-code/FINDINGS.md
/// §1). A hap reading another directory than Claude Code's would refresh a second copy.
fn default_credentials_path() -> Result<Option<PathBuf>> {
    let claude_home = || Ok::<_, Error>(home()?.map(|h| h.join(".claude")));
    let dir = match std::env::var_os("CLAUDE_SECURESTORAGE_CONFIG_DIR") {
        Some(v) if v.is_empty() => claude_home()?,
        Some(_) => env_dir("CLAUDE_SECURESTORAGE_CONFIG_DIR")?,
        None => match env_dir("CLAUDE_CONFIG_DIR")? {
            Some(d) => Some(d),
            None => claude_home()?,
        },
    };
    Ok(dir.map(|d| d.join(".credentials.json")))
}

impl Default for Config {
    fn default() -> Config {
        Config {
            provider: "anthropic".into(),
            // Unusable variables (relative) give no default here; `from_map` reports them
            // when the default is actually needed.
            pool_path: default_pool_path().ok().flatten(),
            pool_path_from_default: true,
            credentials_path: default_credentials_path().ok().flatten(),
            credentials_store: CredentialsStore::Auto,
            security_program: PathBuf::from(crate::store::keychain::SECURITY_PROGRAM),
            token_urls: DEFAULT_TOKEN_URLS.iter().map(|s| s.to_string()).collect(),
            client_id: DEFAULT_CLIENT_ID.into(),
            user_agent: format!("hap/{}", env!("CARGO_PKG_VERSION")),
            // Claude Code's own: it refreshes 5 minutes before expiry (FINDINGS.md §2).
            refresh_skew_ms: 300_000,
            strategy: Strategy::FillFirst,
            // Past Claude Code's longest legitimate hold of its refresh locks: POST (30 s),
            // profile fetch (10 s), save (FINDINGS.md §3). At 25 s hap gave up on a lock
            // Claude Code still rightly held.
            lock_timeout_ms: 45_000,
            // Claude Code's own POST timeout (FINDINGS.md §4). At 10 s hap abandoned its POST
            // and released the locks while the token might be spent; Claude Code then POSTed
            // the same refresh token (the `hap-first-12s` rounds, BENCHMARKS.md §9).
            http_timeout_ms: 30_000,
            claude_code_lock: true,
            adopt_external_logins: true,
            defer_refresh_to_claude_code: false,
            agent: crate::agent::AgentMode::Off,
            redis_url: None,
            redis_password_file: None,
            redis_prefix: None,
            redis_ca_file: None,
            redis_lease_ms: 10_000,
            redis_wait_replicas: 0,
            redis_wait_timeout_ms: 1000,
            redis_sentinels: Vec::new(),
            redis_sentinel_master: None,
        }
    }
}

fn want_str<'a>(key: &str, v: &'a Value) -> Result<&'a str> {
    v.as_str()
        .ok_or_else(|| Error::invalid(format!("config key '{key}' must be a string")))
}

/// Upper bound of `refresh_skew_ms` and of a request's `min_validity_ms`: a day, longer
/// than any access token lives. Bounds exist because a value of 2^63 or more turned
/// negative in the freshness test and served an expired token as valid (issue 10).
pub(crate) const MAX_VALIDITY_MS: u64 = 86_400_000;
/// Upper bound of `lock_timeout_ms` and `http_timeout_ms`: an hour. A timeout near
/// `u64::MAX` overflowed the deadline it is added to.
pub(crate) const MAX_TIMEOUT_MS: u64 = 3_600_000;

/// An integer key in `min..=max`, or an error that names the key and the range.
pub(crate) fn ms_in_range(key: &str, what: &str, v: &Value, min: u64, max: u64) -> Result<u64> {
    v.as_u64()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| range_error(key, what, min, max))
}

/// More replicas than any deployment has is a typo: a WAIT for them would fail every refresh.
const MAX_WAIT_REPLICAS: u64 = 64;
/// A WAIT runs with the refresh's locks held: every process of the fleet waits behind it.
const MAX_WAIT_TIMEOUT_MS: u64 = 60_000;

fn wait_replicas_error() -> Error {
    Error::invalid(format!(
        "config key 'redis_wait_replicas' must be an integer from 0 (no WAIT) to \
         {MAX_WAIT_REPLICAS}: the number of Redis replicas that must acknowledge each write; \
         keep it below the number of replicas you run, or every refresh waits for one that \
         is down (docs/FLEET.md)"
    ))
}

pub(crate) fn range_error(key: &str, what: &str, min: u64, max: u64) -> Error {
    Error::invalid(format!(
        "{what}'{key}' must be an integer from {min} to {max} (milliseconds)"
    ))
}

/// `redis_sentinels`: a list of `host:port` (an IPv6 host in brackets); `[]` or `null`:
/// no Sentinel (what `to_json` writes then).
fn sentinel_list(key: &str, v: &Value) -> Result<Vec<String>> {
    let bad = || {
        Error::invalid(format!(
            "config key '{key}' must be a list of \"host:port\" strings, e.g. \
             [\"10.0.0.1:26379\", \"10.0.0.2:26379\"]"
        ))
    };
    let list = match v {
        Value::Null => return Ok(Vec::new()),
        Value::Array(a) => a,
        _ => return Err(bad()),
    };
    list.iter()
        .map(|e| {
            let s = e.as_str().ok_or_else(bad)?;
            let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if host.is_empty()
                || s.chars().any(|c| c.is_whitespace() || c == '/' || c == '@')
                || !port.parse::<u16>().is_ok_and(|p| p > 0)
            {
                return Err(bad());
            }
            Ok(s.to_string())
        })
        .collect()
}

fn want_bool(key: &str, v: &Value) -> Result<bool> {
    v.as_bool()
        .ok_or_else(|| Error::invalid(format!("config key '{key}' must be true or false")))
}

/// Expands a leading `~` and insists on an absolute result: a relative store path would
/// depend on each host process's working directory and split the session.
pub fn store_path(key: &str, raw: &str) -> Result<PathBuf> {
    if raw.is_empty() {
        return Err(Error::invalid(format!(
            "config key '{key}' is an empty path"
        )));
    }
    let path = if raw == "~" || raw.starts_with("~/") {
        let h = home()?.ok_or_else(|| {
            Error::invalid(format!(
                "config key '{key}' starts with ~ but HOME is not set"
            ))
        })?;
        h.join(raw.trim_start_matches('~').trim_start_matches('/'))
    } else {
        PathBuf::from(raw)
    };
    if !path.is_absolute() {
        return Err(Error::invalid(format!(
            "config key '{key}' must be an absolute path (or start with ~/)"
        )));
    }
    if path.file_name().is_none() {
        return Err(Error::invalid(format!(
            "config key '{key}' must name a file"
        )));
    }
    Ok(path)
}

/// `https://` anywhere; `http://` only to a loopback host, so a token never crosses a
/// network in clear text.
pub fn check_token_url(url: &str) -> Result<()> {
    // Parsed by the WHATWG URL parser the POST uses too (`url`), never by splitting text:
    // `http://localhost:1@0.0.0.0/...` is host 0.0.0.0 with a user name, and splitting on
    // ':' read it as localhost (issue 10, item 10). The refresh token goes in the body, so
    // where it goes is decided here, by the parsed host.
    let parsed = url::Url::parse(url)
        .map_err(|_| Error::invalid("config key 'token_urls' holds a URL that does not parse"))?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(Error::invalid(
            "config key 'token_urls' holds a URL with a user name or password; remove the part before '@'",
        ));
    }
    let Some(host) = parsed.host() else {
        return Err(Error::invalid(
            "config key 'token_urls' has a URL without a host",
        ));
    };
    match parsed.scheme() {
        "https" => Ok(()),
        "http" => {
            let loopback = match host {
                url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
                url::Host::Ipv4(ip) => ip.is_loopback(),
                url::Host::Ipv6(ip) => ip.is_loopback(),
            };
            if loopback {
                Ok(())
            } else {
                Err(Error::invalid(
                    "config key 'token_urls': http:// is allowed only for loopback hosts; use https://",
                ))
            }
        }
        _ => Err(Error::invalid(
            "config key 'token_urls' must hold https:// URLs",
        )),
    }
}

impl Config {
    pub fn from_json_str(json: Option<&str>) -> Result<Config> {
        let json = match json {
            None => return Config::from_map_layered(&Map::new()),
            Some(j) => j,
        };
        let value: Value = serde_json::from_str(json)
            .map_err(|e| Error::invalid(format!("config is not valid JSON: {e}")))?;
        match value {
            Value::Object(m) => Config::from_map_layered(&m),
            _ => Err(Error::invalid("config must be a JSON object")),
        }
    }

    pub fn from_map(m: &Map<String, Value>) -> Result<Config> {
        let mut c = Config::default();
        for (key, v) in m {
            match key.as_str() {
                "provider" => {
                    let p = want_str(key, v)?;
                    if p.is_empty() {
                        return Err(Error::invalid("config key 'provider' must not be empty"));
                    }
                    c.provider = p.to_string();
                }
                "pool_path" => {
                    c.pool_path = match v {
                        Value::Null => None,
                        _ => Some(store_path(key, want_str(key, v)?)?),
                    }
                }
                "credentials_path" => {
                    c.credentials_path = match v {
                        Value::Null => None,
                        _ => Some(store_path(key, want_str(key, v)?)?),
                    }
                }
                "credentials_store" => {
                    c.credentials_store = match want_str(key, v)? {
                        "file" => CredentialsStore::File,
                        "keychain" => CredentialsStore::Keychain,
                        "auto" => CredentialsStore::Auto,
                        _ => {
                            return Err(Error::invalid(
                                "config key 'credentials_store' must be file, keychain or auto",
                            ))
                        }
                    }
                }
                "security_program" => c.security_program = store_path(key, want_str(key, v)?)?,
                "token_urls" => {
                    let arr = v.as_array().ok_or_else(|| {
                        Error::invalid("config key 'token_urls' must be an array of strings")
                    })?;
                    if arr.is_empty() {
                        return Err(Error::invalid("config key 'token_urls' must not be empty"));
                    }
                    let mut urls = Vec::with_capacity(arr.len());
                    for u in arr {
                        let u = want_str(key, u)?;
                        check_token_url(u)?;
                        urls.push(u.to_string());
                    }
                    c.token_urls = urls;
                }
                "client_id" => c.client_id = want_str(key, v)?.to_string(),
                "user_agent" => c.user_agent = want_str(key, v)?.to_string(),
                "refresh_skew_ms" => {
                    c.refresh_skew_ms = ms_in_range(key, "config key ", v, 0, MAX_VALIDITY_MS)?
                }
                "strategy" => {
                    c.strategy = match want_str(key, v)? {
                        "fill_first" => Strategy::FillFirst,
                        "round_robin" => Strategy::RoundRobin,
                        "least_used" => Strategy::LeastUsed,
                        "random" => Strategy::Random,
                        _ => {
                            return Err(Error::invalid(
                                "config key 'strategy' must be fill_first, round_robin, least_used or random",
                            ))
                        }
                    }
                }
                "lock_timeout_ms" => {
                    c.lock_timeout_ms = ms_in_range(key, "config key ", v, 0, MAX_TIMEOUT_MS)?
                }
                "http_timeout_ms" => {
                    c.http_timeout_ms = ms_in_range(key, "config key ", v, 1, MAX_TIMEOUT_MS)?
                }
                "claude_code_lock" => c.claude_code_lock = want_bool(key, v)?,
                "adopt_external_logins" => c.adopt_external_logins = want_bool(key, v)?,
                "defer_refresh_to_claude_code" => {
                    c.defer_refresh_to_claude_code = want_bool(key, v)?
                }
                "agent" => c.agent = crate::agent::AgentMode::from_json(v)?,
                "redis_url" => {
                    c.redis_url = match v {
                        Value::Null => None,
                        _ => Some(want_str(key, v)?.to_string()),
                    }
                }
                "redis_password_file" => {
                    c.redis_password_file = match v {
                        Value::Null => None,
                        _ => Some(store_path(key, want_str(key, v)?)?),
                    }
                }
                "redis_prefix" => {
                    c.redis_prefix = match v {
                        Value::Null => None,
                        _ => Some(want_str(key, v)?.to_string()),
                    }
                }
                "redis_lease_ms" => {
                    c.redis_lease_ms = ms_in_range(key, "config key ", v, 100, MAX_TIMEOUT_MS)?
                }
                "redis_wait_replicas" => {
                    c.redis_wait_replicas = v
                        .as_u64()
                        .filter(|n| *n <= MAX_WAIT_REPLICAS)
                        .ok_or_else(wait_replicas_error)?
                }
                "redis_wait_timeout_ms" => {
                    c.redis_wait_timeout_ms =
                        ms_in_range(key, "config key ", v, 1, MAX_WAIT_TIMEOUT_MS)?
                }
                "redis_ca_file" => {
                    c.redis_ca_file = match v {
                        Value::Null => None,
                        _ => Some(store_path(key, want_str(key, v)?)?),
                    }
                }
                "redis_sentinels" => c.redis_sentinels = sentinel_list(key, v)?,
                "redis_sentinel_master" => {
                    c.redis_sentinel_master = match v {
                        Value::Null => None,
                        _ => Some(want_str(key, v)?.to_string()),
                    }
                }
                other => {
                    return Err(Error::invalid(format!(
                        "unknown config key '{}'",
                        crate::error::shown(other)
                    )));
                }
            }
        }
        if m.contains_key("pool_path") {
            c.pool_path_from_default = false;
        } else {
            c.pool_path = default_pool_path()?;
            c.pool_path_from_default = true;
        }
        if !m.contains_key("credentials_path") {
            c.credentials_path = default_credentials_path()?;
        }
        if c.pool_path.is_none() && c.credentials_path.is_none() {
            // Defaults resolve from HOME; without one and without explicit paths there is
            // nothing to serve.
            if !m.contains_key("pool_path") && !m.contains_key("credentials_path") {
                return Err(Error::invalid(
                    "HOME is not set: give pool_path or credentials_path explicitly",
                ));
            }
        }
        c.check_ranges()?;
        c.check_sentinel_keys()?;
        Ok(c)
    }

    /// The Sentinel keys come together and with `redis_url` (which still carries the scheme,
    /// the ACL user and the db): one without the other would silently mean "no Sentinel" or
    /// "no fleet", and a host that thinks it is in the fleet would refresh its own login.
    pub fn check_sentinel_keys(&self) -> Result<()> {
        let example = "\"redis_url\": \"redis://refresher@mymaster/0\", \"redis_sentinels\": \
                       [\"10.0.0.1:26379\", \"10.0.0.2:26379\"], \"redis_sentinel_master\": \
                       \"mymaster\" (docs/FLEET.md, Sentinel)";
        match (
            self.redis_sentinels.is_empty(),
            self.redis_sentinel_master.as_deref(),
        ) {
            (true, None) => return Ok(()),
            (false, None) => {
                return Err(Error::invalid(format!(
                    "config key 'redis_sentinels' needs 'redis_sentinel_master', the name the \
                     sentinels monitor the master under: {example}"
                )))
            }
            (true, Some(_)) => {
                return Err(Error::invalid(format!(
                    "config key 'redis_sentinel_master' needs 'redis_sentinels', the sentinels \
                     to ask for it: {example}"
                )))
            }
            (false, Some(m)) if m.is_empty() || m.chars().any(|c| c.is_whitespace()) => {
                return Err(Error::invalid(
                    "config key 'redis_sentinel_master' must be a non-empty name without spaces",
                ))
            }
            _ => {}
        }
        if self.redis_url.is_none() {
            return Err(Error::invalid(format!(
                "config key 'redis_sentinels' needs 'redis_url' for the scheme, the ACL user \
                 and the db: {example}"
            )));
        }
        Ok(())
    }

    /// The numeric ranges `from_map` enforces, for a `Config` built in Rust (the CLI, or any
    /// Rust caller): `Pool::open` checks them too, so no path skips them.
    pub fn check_ranges(&self) -> Result<()> {
        let keys = [
            ("refresh_skew_ms", self.refresh_skew_ms, 0, MAX_VALIDITY_MS),
            ("lock_timeout_ms", self.lock_timeout_ms, 0, MAX_TIMEOUT_MS),
            ("http_timeout_ms", self.http_timeout_ms, 1, MAX_TIMEOUT_MS),
            ("redis_lease_ms", self.redis_lease_ms, 100, MAX_TIMEOUT_MS),
            (
                "redis_wait_timeout_ms",
                self.redis_wait_timeout_ms,
                1,
                MAX_WAIT_TIMEOUT_MS,
            ),
        ];
        for (key, v, min, max) in keys {
            if !(min..=max).contains(&v) {
                return Err(range_error(key, "config key ", min, max));
            }
        }
        if self.redis_wait_replicas > MAX_WAIT_REPLICAS {
            return Err(wait_replicas_error());
        }
        Ok(())
    }

    /// `auth.json` -> `auth.lock`: the sibling file Hermes itself locks.
    pub fn pool_lock_path(pool: &Path) -> PathBuf {
        let stem = pool
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stem = stem.strip_suffix(".json").unwrap_or(&stem).to_string();
        pool.with_file_name(format!("{stem}.lock"))
    }

    pub fn to_json(&self) -> Value {
        let p = |p: &Option<PathBuf>| match p {
            Some(p) => Value::String(p.to_string_lossy().into_owned()),
            None => Value::Null,
        };
        serde_json::json!({
            "provider": self.provider,
            "pool_path": p(&self.pool_path),
            "credentials_path": p(&self.credentials_path),
            "credentials_store": self.credentials_store.as_str(),
            "security_program": self.security_program.to_string_lossy(),
            "token_urls": self.token_urls,
            "client_id": self.client_id,
            "user_agent": self.user_agent,
            "refresh_skew_ms": self.refresh_skew_ms,
            "strategy": self.strategy.as_str(),
            "lock_timeout_ms": self.lock_timeout_ms,
            "http_timeout_ms": self.http_timeout_ms,
            "claude_code_lock": self.claude_code_lock,
            "adopt_external_logins": self.adopt_external_logins,
            "defer_refresh_to_claude_code": self.defer_refresh_to_claude_code,
            "agent": self.agent.as_str(),
            // The URL never holds the password (refused when the config is read).
            "redis_url": self.redis_url,
            "redis_password_file": p(&self.redis_password_file),
            "redis_prefix": self.redis_prefix,
            "redis_ca_file": p(&self.redis_ca_file),
            "redis_lease_ms": self.redis_lease_ms,
            "redis_wait_replicas": self.redis_wait_replicas,
            "redis_wait_timeout_ms": self.redis_wait_timeout_ms,
            "redis_sentinels": self.redis_sentinels,
            "redis_sentinel_master": self.redis_sentinel_master,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_store_and_security_program_are_validated() {
        let c = Config::from_json_str(Some(r#"{"pool_path": null}"#)).unwrap();
        assert_eq!(c.credentials_store, CredentialsStore::Auto);
        assert_eq!(
            c.credentials_store.uses_keychain(),
            cfg!(target_os = "macos")
        );
        assert_eq!(c.security_program, Path::new("/usr/bin/security"));
        let c = Config::from_json_str(Some(
            r#"{"pool_path": null, "credentials_store": "keychain", "security_program": "/opt/fake-security"}"#,
        ))
        .unwrap();
        assert!(c.credentials_store.uses_keychain());
        assert_eq!(c.security_program, Path::new("/opt/fake-security"));
        assert_eq!(c.to_json()["credentials_store"], "keychain");
        assert_eq!(c.to_json()["security_program"], "/opt/fake-security");
        for (bad, key) in [
            (r#"{"credentials_store": "keyring"}"#, "credentials_store"),
            (r#"{"credentials_store": true}"#, "credentials_store"),
            (r#"{"security_program": "security"}"#, "security_program"),
            (r#"{"security_program": 1}"#, "security_program"),
        ] {
            let e = Config::from_json_str(Some(bad)).unwrap_err();
            assert_eq!(e.status, crate::Status::InvalidArgument);
            assert!(e.message.contains(key), "{}", e.message);
        }
    }

    #[test]
    fn unknown_and_ill_typed_keys_are_named() {
        let e = Config::from_json_str(Some(r#"{"pool_pth": "/x"}"#)).unwrap_err();
        assert!(e.message.contains("pool_pth"), "{}", e.message);
        let e = Config::from_json_str(Some(r#"{"lock_timeout_ms": "5"}"#)).unwrap_err();
        assert!(e.message.contains("lock_timeout_ms"));
        let e = Config::from_json_str(Some(r#"{"pool_path": "rel/auth.json"}"#)).unwrap_err();
        assert!(e.message.contains("absolute"));
    }

    #[test]
    fn token_url_rules() {
        assert!(check_token_url("https://platform.claude.com/v1/oauth/token").is_ok());
        assert!(check_token_url("http://127.0.0.1:8080/v1/oauth/token").is_ok());
        assert!(check_token_url("http://localhost/x").is_ok());
        assert!(check_token_url("http://[::1]:9/x").is_ok());
        assert!(check_token_url("http://example.com/x").is_err());
        assert!(check_token_url("http://127.0.0.1.evil.com/x").is_err());
        assert!(check_token_url("ftp://x").is_err());
    }

    /// Issue 10, item 10: userinfo made `http://localhost:1@0.0.0.0/...` look like a
    /// loopback URL to a text split, and the refresh token went in clear text to 0.0.0.0.
    #[test]
    fn token_urls_with_userinfo_are_refused_and_the_parsed_host_decides() {
        for url in [
            "http://localhost:1@0.0.0.0/v1/oauth/token",
            "http://localhost@example.com/x",
            "http://127.0.0.1:80@10.0.0.1/x",
            "https://user:pw@platform.claude.com/v1/oauth/token",
        ] {
            let e = check_token_url(url).unwrap_err();
            assert_eq!(e.status, crate::Status::InvalidArgument, "{url}");
            assert!(
                !e.message.contains("0.0.0.0") && !e.message.contains("pw"),
                "{}",
                e.message
            );
        }
        assert!(check_token_url("http://0.0.0.0/x").is_err());
        assert!(check_token_url("http://LOCALHOST:8/x").is_ok());
        assert!(check_token_url("http://127.1.2.3/x").is_ok());
    }

    #[test]
    fn lock_path_is_hermes_sibling() {
        assert_eq!(
            Config::pool_lock_path(Path::new("/h/.hermes/auth.json")),
            PathBuf::from("/h/.hermes/auth.lock")
        );
    }

    #[test]
    fn redis_wait_keys_are_validated() {
        let c = Config::from_json_str(Some(r#"{"pool_path": null}"#)).unwrap();
        assert_eq!((c.redis_wait_replicas, c.redis_wait_timeout_ms), (0, 1000));
        let c = Config::from_json_str(Some(
            r#"{"pool_path": null, "redis_wait_replicas": 2, "redis_wait_timeout_ms": 250}"#,
        ))
        .unwrap();
        assert_eq!((c.redis_wait_replicas, c.redis_wait_timeout_ms), (2, 250));
        for bad in [
            r#"{"pool_path": null, "redis_wait_replicas": -1}"#,
            r#"{"pool_path": null, "redis_wait_replicas": 1.5}"#,
            r#"{"pool_path": null, "redis_wait_replicas": 65}"#,
        ] {
            let e = Config::from_json_str(Some(bad)).unwrap_err();
            assert!(e.message.contains("redis_wait_replicas"), "{e}");
        }
        for bad in [
            r#"{"pool_path": null, "redis_wait_timeout_ms": 0}"#,
            r#"{"pool_path": null, "redis_wait_timeout_ms": 60001}"#,
        ] {
            let e = Config::from_json_str(Some(bad)).unwrap_err();
            assert!(e.message.contains("redis_wait_timeout_ms"), "{e}");
        }
    }
}
