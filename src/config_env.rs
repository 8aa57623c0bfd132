//! `HAP_CONFIG`: configuration for programs that do not call hap themselves.
//!
//! A Hermes plugin, `hap` run from another tool or an agent cannot be handed config keys by
//! the person who runs them, and today the Python binding always passes `{}` while the CLI
//! always builds a map, so "only when no config is passed" would reach neither. So
//! `HAP_CONFIG` names a JSON file of `hap_pool_open` keys that is the *base layer*: every key
//! the caller passes wins over the file's. A bad file is refused with `INVALID_ARGUMENT`
//! naming the file (and the key), never skipped: a silently ignored `token_urls` would send
//! a refresh token somewhere the user did not mean.

use crate::config::Config;
use crate::error::{Error, Result};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// The environment variable naming the base-layer config file.
pub const HAP_CONFIG: &str = "HAP_CONFIG";

fn file_error(path: &Path, what: impl std::fmt::Display) -> Error {
    let mut e = Error::invalid(format!(
        "{HAP_CONFIG} file {}: {what} (fix the file or unset {HAP_CONFIG})",
        path.display()
    ));
    e.path = Some(path.to_path_buf());
    e
}

/// The keys of the file `HAP_CONFIG` names, each checked on its own so that an error names
/// the file even when the caller overrides the key; an empty map when the variable is unset
/// or empty.
pub fn env_layer() -> Result<Map<String, Value>> {
    let raw = match std::env::var_os(HAP_CONFIG) {
        Some(v) if !v.is_empty() => v,
        _ => return Ok(Map::new()),
    };
    let text = raw.to_string_lossy().into_owned();
    // Same rule as the store paths: a relative name would read a different file in each
    // host process's working directory.
    let path = if text == "~" || text.starts_with("~/") {
        match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            Some(h) => PathBuf::from(h).join(text.trim_start_matches('~').trim_start_matches('/')),
            None => {
                return Err(Error::invalid(format!(
                    "{HAP_CONFIG}={text} starts with ~ but HOME is not set"
                )))
            }
        }
    } else {
        PathBuf::from(&raw)
    };
    if !path.is_absolute() {
        return Err(Error::invalid(format!(
            "{HAP_CONFIG}={text} must be an absolute path (or start with ~/)"
        )));
    }
    let bytes = std::fs::read(&path).map_err(|e| file_error(&path, format!("cannot read: {e}")))?;
    let map = match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return Err(file_error(&path, "must hold a JSON object")),
        Err(e) => return Err(file_error(&path, format!("is not valid JSON: {e}"))),
    };
    for (key, v) in &map {
        // One key at a time through the library's own validation. `pool_path: null` keeps
        // the "HOME is not set" check (a whole-config rule, not this key's) out of the way.
        let mut probe = Map::new();
        probe.insert(key.clone(), v.clone());
        if key != "pool_path" {
            probe.insert("pool_path".into(), Value::Null);
        }
        Config::from_map(&probe).map_err(|e| file_error(&path, e.message))?;
    }
    Ok(map)
}

impl Config {
    /// `HAP_CONFIG`'s keys, then `m`'s on top: what `hap_pool_open` and the CLI build.
    pub fn from_map_layered(m: &Map<String, Value>) -> Result<Config> {
        let mut merged = env_layer()?;
        if merged.is_empty() {
            return Config::from_map(m);
        }
        for (k, v) in m {
            merged.insert(k.clone(), v.clone());
        }
        Config::from_map(&merged)
    }
}
