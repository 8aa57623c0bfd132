//! hap under hostile conditions (issue 10), one test binary with a module per area (one
//! link instead of three):
//!
//! - `files`: files, locks and paths others planted or broke (FIFOs, huge stores, stale
//!   locks, symlinks, a second spelling of one file, relative `HOME`), run against the real
//!   `hap` binary.
//! - `refresh`: the refresh transaction under attack (full disks, stopped or killed
//!   processes, servers that do not rotate or answer with hostile bodies).
//! - `policy`: numbers that wrap, 401s right after a refresh, the store watch of a one-shot
//!   process, `bench/race.py` on its own.
//!
//! A new hostile-condition test goes in the module whose area it attacks; a new area gets a
//! new file here and a `mod` line below.

#[path = "../common/mod.rs"]
mod common;

mod files;
mod policy;
mod refresh;
