//! hap: one correct implementation of Anthropic OAuth token sync, refresh, write-back and
//! retry, shared by every process on a machine through a C ABI (see `include/hap.h`).
//!
//! The safe core is plain Rust; raw pointers live only in [`ffi`] and the allocator ([`alloc`]).

pub mod alloc;
pub mod clock;
pub mod config;
pub mod config_env;
pub mod credentials;
pub mod error;
mod fault;
pub mod fsio;
pub mod journal;
pub mod lock;
pub(crate) mod log;
pub mod oauth;
pub mod policy;
pub mod pool;
pub mod pool_file;
pub mod refresh;
pub mod request;
pub(crate) mod rng;
pub mod secret;
pub(crate) mod watch;

pub mod ffi;

pub use config::{Config, Strategy};
pub use error::{Error, Result, Status};
pub use pool::{FailureOutcome, Pool, Token};
pub use request::{Failure, ResolveRequest};
pub use secret::Secret;

/// `"hap 0.1.0 (abi 0.1)"`.
pub const VERSION_STRING: &str = concat!("hap ", env!("CARGO_PKG_VERSION"), " (abi 0.1)");
