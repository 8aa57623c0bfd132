//! The hap agent (issue 15): one long-running process per user that keeps the credentials
//! fresh a lead time ahead of expiry and answers resolve, report and status on a Unix
//! socket, so that every other process can defer to it.
//!
//! - [`dir`]: where the socket lives, and the ownership and mode checks both sides make.
//! - [`proto`]: the newline-delimited JSON spoken on the socket (the ABI's keys and results).
//! - [`client`]: the library side. A pool whose config says `"agent": "prefer"` or
//!   `"require"` asks the agent first and then never reads a store, so it never holds a
//!   refresh token. That is hygiene, not a security boundary: the socket serves only its
//!   own uid, and that uid can read the stores anyway.
//! - [`server`]: the agent itself (`hap agent`): the refresh schedule, the socket server,
//!   the state file beside the socket and the Anthropic SDK profile sink.
//!
//! The agent refreshes through the same `Pool` and refresh transaction as every other
//! process (locks, journal, adoption), so it coexists with library users, Claude Code and a
//! second agent on the same login: still one POST per rotation.

pub mod client;
pub mod dir;
pub mod proto;
pub mod server;

use crate::error::{Error, Result};
use serde_json::Value;

/// The config key `agent`: whether a pool defers to a running `hap agent`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AgentMode {
    /// Do the work in this process (the default, and ABI 0.1's behaviour).
    #[default]
    Off,
    /// Ask the agent; when none answers, do the work in this process.
    Prefer,
    /// Ask the agent; when none answers, fail with `UNAVAILABLE` and read no store.
    Require,
}

impl AgentMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentMode::Off => "off",
            AgentMode::Prefer => "prefer",
            AgentMode::Require => "require",
        }
    }

    /// The value of the config key, validated as every key is: a clear error naming it.
    pub fn from_json(v: &Value) -> Result<AgentMode> {
        match v.as_str() {
            Some("off") => Ok(AgentMode::Off),
            Some("prefer") => Ok(AgentMode::Prefer),
            Some("require") => Ok(AgentMode::Require),
            _ => Err(Error::invalid(
                "config key 'agent' must be \"off\", \"prefer\" or \"require\"",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn mode_values() {
        for m in [AgentMode::Off, AgentMode::Prefer, AgentMode::Require] {
            assert_eq!(AgentMode::from_json(&json!(m.as_str())).unwrap(), m);
        }
        for bad in [json!("on"), json!(true), json!(null), json!(1)] {
            let e = AgentMode::from_json(&bad).unwrap_err();
            assert!(e.message.contains("'agent'"), "{}", e.message);
        }
    }
}
