//! Where token pairs live, and the files hap keeps beside them.
//!
//! * [`authority`]: the store seam, `trait Authority`, which both stores below implement.
//! * [`credentials`]: Claude Code's `~/.claude/.credentials.json` (borrowed rows' authority).
//! * [`pool_file`]: Hermes' `~/.hermes/auth.json` (the pool; owned rows are their own authority).
//! * [`keychain`]: Claude Code's login in the macOS Keychain (through `security`), else its file.
//! * [`journal`]: hap's write-ahead journal beside each store (issue 10's durability rules).
//! * [`fsio`]: reads with a stamp, atomic same-directory replace, symlink-aware targets.
//! * `redis` (feature `redis`): a fleet's authority and refresh lease in Redis (issue 16).
//! * [`watch`]: inotify on the store directories, the hot path's stand-in for `stat`.
//!
//! Layering (checked by `tests/layering.rs`): nothing here imports `pool`, `refresh` or `ffi`.

pub mod authority;
pub mod credentials;
pub mod fsio;
pub mod journal;
pub mod keychain;
/// An in-memory store for unit tests (test code only).
#[cfg(test)]
pub mod memory;
pub mod pool_file;
#[cfg(feature = "redis")]
pub mod redis;
pub mod watch;
