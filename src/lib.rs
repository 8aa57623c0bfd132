//! hap: one correct implementation of Anthropic OAuth token sync, refresh, write-back and
//! retry, shared by every process on a machine through a C ABI (see `include/hap.h`).
//!
//! # The Rust API
//!
//! What a Rust program may use is re-exported here: [`Pool`] (open, resolve,
//! report_failure, status), [`Config`] and [`Strategy`], [`ResolveRequest`] and the
//! [`Token`] it returns, [`Failure`] and the [`FailureOutcome`] it returns, [`PoolStatus`]
//! and its [`CredentialStatus`] rows, [`Error`], [`Status`], [`Result`], [`Secret`] and
//! [`VERSION_STRING`]. [`inspect`] holds read-only facts about the files hap and Claude Code
//! keep (what `hap doctor` reports on). Every other module is private; `docs/ARCHITECTURE.md`
//! maps them.
//!
//! [`ffi`] is the C ABI (documented in `include/hap.h` and `docs/ABI.md`, not here) and
//! [`internals`] exists for hap's own fuzz targets and tests: neither is Rust API.
//!
//! Raw pointers live only in [`ffi`] and the allocator (`alloc.rs`); libc calls sit in
//! `lock.rs`, `store/fsio.rs`, `store/keychain.rs` (the password database) and
//! `store/watch.rs`. Every `unsafe` block has a `SAFETY:` line
//! (the lints below keep it so).

// Every unsafe operation, even inside an `unsafe fn`, sits in its own block with a
// `// SAFETY:` line saying why it holds (the C boundary, the allocator, libc calls).
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

// cbindgen reads `src/` for the header (build.rs); only `ffi` belongs to the C ABI, so every
// other module is hidden from it here instead of listing its constants in cbindgen.toml.

// hap agent (issue 15): the socket protocol, client and server.
/// cbindgen:ignore
pub mod agent;
/// cbindgen:ignore
pub mod alloc;
/// cbindgen:ignore
mod clock;
/// cbindgen:ignore
mod config;
/// cbindgen:ignore
mod config_env;
/// cbindgen:ignore
mod counters;
/// cbindgen:ignore
mod error;
/// cbindgen:ignore
mod fault;
/// cbindgen:ignore
pub mod inspect;
/// cbindgen:ignore
mod lock;
/// cbindgen:ignore
mod log;
/// cbindgen:ignore
mod pool;
/// cbindgen:ignore
mod provider;
/// cbindgen:ignore
mod refresh;
/// cbindgen:ignore
mod request;
/// cbindgen:ignore
mod rng;
// The Anthropic SDK profile sink the agent writes (issue 15).
/// cbindgen:ignore
pub mod sdk_profile;
/// cbindgen:ignore
mod secret;
/// cbindgen:ignore
mod store;

#[doc(hidden)]
pub mod ffi;

// The short paths the crate's modules use (`crate::credentials`, `crate::oauth`, ...): the
// files live in their part's folder (store/, refresh/, pool/), the names stay one word.
use pool::policy;
use refresh::oauth;
use store::{authority, credentials, fsio, journal, pool_file, watch};

/// `hap fleet import|export|status` as library calls (issue 16, docs/FLEET.md; feature
/// `redis`).
#[cfg(feature = "redis")]
pub mod fleet {
    pub use crate::pool::fleet::admin::*;
}
pub use config::{Config, CredentialsStore, Strategy};
pub use error::{Error, Result, Status};
pub use pool::{CredentialStatus, FailureOutcome, Pool, PoolCounters, PoolStatus, Token};
pub use request::{Failure, ResolveRequest};
pub use secret::Secret;

/// Expands to `"hap <crate version> (abi 0.1)"`: the one place the ABI version is spelled as
/// text ([`VERSION_STRING`] and the C `hap_version()` both come from it).
macro_rules! version_string {
    () => {
        concat!("hap ", env!("CARGO_PKG_VERSION"), " (abi 0.1)")
    };
}
pub(crate) use version_string;

/// `"hap 0.1.0 (abi 0.1)"`.
/// cbindgen:ignore
pub const VERSION_STRING: &str = version_string!();

/// Not API: every internal module, for hap's fuzz targets (`fuzz/src/lib.rs`, also compiled
/// into `tests/fuzz_corpus.rs`) and the few tests that must hold a lock or plant a journal
/// entry as another process would. Anything here may change in any release.
/// cbindgen:ignore
#[doc(hidden)]
pub mod internals {
    #![allow(missing_docs)]
    macro_rules! reexport {
        ($($name:ident => $path:path),* $(,)?) => {
            $(pub mod $name { pub use $path::*; })*
        };
    }
    reexport! {
        alloc => crate::alloc,
        authority => crate::store::authority,
        clock => crate::clock,
        config => crate::config,
        config_env => crate::config_env,
        credentials => crate::store::credentials,
        error => crate::error,
        fsio => crate::store::fsio,
        journal => crate::store::journal,
        keychain => crate::store::keychain,
        lock => crate::lock,
        oauth => crate::refresh::oauth,
        policy => crate::pool::policy,
        pool => crate::pool,
        pool_file => crate::store::pool_file,
        provider => crate::provider,
        refresh => crate::refresh,
        request => crate::request,
        secret => crate::secret,
    }
    /// The fleet authority (issue 16), for tests/redis.rs.
    #[cfg(feature = "redis")]
    pub mod redis {
        pub use crate::store::redis::*;
    }
}
