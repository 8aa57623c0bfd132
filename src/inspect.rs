//! Read-only facts about the files hap and Claude Code keep, for tools that report on them
//! (`hap doctor`, `hap status`) without re-deriving the formats.
//!
//! Each fact is defined next to the format it describes (store paths and parsers in
//! `store/`, lock owner records in `lock.rs`, the journal in `store/journal.rs`) and only
//! re-exported here, so a format changes in one place. Not yet done (issue 11, item 7): the
//! store types below still carry their write methods; a typed read-only view of each
//! (credentials, pool rows, lock owners, journal summary) is the next step. Until then a
//! tool must only call their read methods.

pub use crate::clock::{iso8601_utc, now_ms, parse_iso8601_ms};
pub use crate::lock::{owner_pid, FileLock, REFRESH_LOCK_STALE};
pub use crate::pool::default_pool_without_hermes;
pub use crate::pool::policy::parse_reset_at_s;
pub use crate::secret::{fingerprint, is_oauth_token};
pub use crate::store::credentials::{json_ms, CredentialsFile, TokenPair, REFRESH_EXPIRY_WARN_MS};
pub use crate::store::fsio::{read_with_stamp, write_target};
pub use crate::store::journal::Journal;
pub use crate::store::pool_file::PoolFile;
