//! The store seam: where one login's token pair lives, as the refresh transaction and the
//! pool see it.
//!
//! Two implementations today: Claude Code's credentials file
//! ([`CredentialsFile`](crate::credentials::CredentialsFile), the authority of every
//! `claude_code` row) and one row of a Hermes pool that owns its tokens
//! ([`PoolRow`](crate::pool_file::PoolRow)). A store whose changes no file stamp can see (a
//! macOS Keychain item read through `/usr/bin/security`, a key in a network service) fits the
//! same trait: its [`Authority::stamp`] answers [`Stamp::Unknown`] and every reader then
//! re-reads it at every decision. Adding one is CONTRIBUTING.md's "Adding a store".

use crate::credentials::{Issued, RequestShape, TokenPair};
use crate::error::Result;
use crate::fsio::FileStamp;
use crate::journal::Journal;
use crate::lock::{Held, LockSpec};
use crate::secret::Secret;
use std::path::PathBuf;

/// How a reader tells whether a store may have changed since it last read it.
///
/// Equality is "certainly unchanged": `Unknown` equals nothing, itself included, so a view
/// that compares stamps re-reads such a store every time without a special case.
#[derive(Clone, Copy, Debug, Default)]
pub enum Stamp {
    /// A file's identity and change time (see [`FileStamp`]); `None` when the file does not
    /// exist. Equal stamps mean the same bytes.
    File(Option<FileStamp>),
    /// A version a store learns of without reading the pair (the fleet's rotation
    /// subscription, issue 16): equal versions mean nothing was published in between.
    Version(u64),
    /// No cheap stamp exists: re-read the store at every decision. (Also "not read yet".)
    #[default]
    Unknown,
}

impl PartialEq for Stamp {
    fn eq(&self, other: &Stamp) -> bool {
        match (self, other) {
            (Stamp::File(a), Stamp::File(b)) => a == b,
            (Stamp::Version(a), Stamp::Version(b)) => a == b,
            _ => false,
        }
    }
}

/// One read of a store: the pair (`None` when it holds no usable login) and the stamp of
/// what was read.
#[derive(Clone, Debug)]
pub struct PairRead {
    /// The stamp of the bytes the pair came from, or one taken before the read (never
    /// after: a change between the two must show as a different stamp next time).
    pub stamp: Stamp,
    pub pair: Option<TokenPair>,
}

/// What [`Authority::write_pair`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// The store held the refresh token the write replaces, and now holds the new pair.
    Stored,
    /// The store no longer held that refresh token (another writer saved a pair, or the
    /// user logged in again): nothing was written, and the store's pair stands.
    Moved,
}

/// Who refreshes a store whose refresh is not hap's ([`Authority::refresh_deferred`]), in
/// the words its errors use.
#[derive(Clone, Debug)]
pub struct Deferred {
    /// Why hap does not refresh, and what refreshes it instead: "Claude Code owns this
    /// login (defer_refresh_to_claude_code): hap does not refresh it. Run `claude` ...".
    pub refresher: &'static str,
    /// What to do when the store holds no login at all.
    pub when_gone: &'static str,
    /// When a caller should look again, in ms.
    pub retry_ms: i64,
}

/// Where one login's token pair lives: the contract between a store and hap's refresh
/// transaction (`src/refresh/mod.rs`) and pool (`src/pool/mod.rs`), which use nothing else
/// of it.
///
/// The rules an implementation keeps:
///
/// * **No secret leaves in text.** Errors, [`name`](Self::name) and logs never contain a
///   token; parse failures are `Status::StoreCorrupt` naming where, not what.
/// * **A store it cannot parse is reported, never overwritten**: `read_pair` and
///   `write_pair` both fail with `StoreCorrupt` and leave it as it was.
/// * **Everything it does not own survives a write**: only the pair (and what the token
///   answer said of the login, [`Issued`], where the store keeps it) change.
/// * **The write is a compare-and-set** on the refresh token it replaces (Claude Code's own
///   save writes only while the store still holds the refresh token it posted): a pair
///   someone else saved in the meantime is never overwritten.
/// * **Locks are data**: [`locks`](Self::locks) lists what must be held around a refresh;
///   `lock.rs` takes them, in the global order every hap process uses (credentials lock,
///   Claude Code's lock directory, pool lock), so no two processes deadlock.
/// * Object safe, `Send + Sync`: the pool keeps `Arc<dyn Authority>` and may call it from any
///   thread; calls are blocking and bounded (a network store applies its own timeout).
pub trait Authority: Send + Sync {
    /// The grant this pair belongs to: keys the in-process single flight (one refresh per
    /// grant at a time), and the journal's entries, POST markers and shared back-off. Stable
    /// across processes and releases (it is written into the journal), unique among the
    /// authorities one pool uses. Claude Code's file: `credentials`; a pool row:
    /// `<provider>/<row id>`.
    fn grant_key(&self) -> String;

    /// Where the pair lives, for people and for ids derived from it: a path, a Keychain
    /// service name, a URL without credentials. Stable; never a secret.
    fn name(&self) -> String;

    /// The file holding the pair, when the store is one: its directory is what hap's inotify
    /// watch covers, to skip [`stamp`](Self::stamp) on the hot path. `None` otherwise (then
    /// `stamp` must answer [`Stamp::Unknown`]).
    fn file(&self) -> Option<PathBuf>;

    /// The store's stamp now, as cheaply as possible (a `stat`): the hot path calls it.
    fn stamp(&self) -> Result<Stamp>;

    /// The pair the store holds now, read whatever any cache says.
    fn read_pair(&self) -> Result<PairRead>;

    /// Writes `pair` (and of `issued`, what the token response said of the login besides,
    /// whatever the store keeps: Claude Code's file keeps all of it, issue 12) if the store
    /// still holds `replaces` as its refresh token (`None`: holds none), else writes nothing
    /// and answers [`Written::Moved`]. Called with [`locks`](Self::locks) taken, as `held`.
    /// Durable when it returns `Stored` (atomic replace, or the service's acknowledgement).
    fn write_pair(
        &self,
        held: &Held,
        replaces: Option<&Secret>,
        pair: &TokenPair,
        issued: &Issued,
    ) -> Result<Written>;

    /// The locks a refresh of this pair holds from before its re-read to after its write,
    /// in the order to take them.
    fn locks(&self) -> Result<Vec<LockSpec>>;

    /// hap's write-ahead journal for this store (issue 10's durability rules): a file
    /// beside the store, keyed on the file a symlinked path resolves to, so every spelling
    /// of one store shares one journal. A store that is no file names a file of its own.
    fn journal(&self) -> Result<Journal>;

    /// The login-dependent part of the refresh POST's body. Default: the configured client
    /// id and no `scope` (a Hermes pool row, the fleet). Claude Code's file answers what
    /// Claude Code itself would send for its login (issue 12, request parity).
    fn request_shape(&self) -> Result<RequestShape> {
        Ok(RequestShape::default())
    }

    /// Someone else refreshes this pair and hap must never POST on it: Claude Code's file
    /// with `defer_refresh_to_claude_code` (issue 12, item 5), or the fleet's login on a
    /// consumer host (issue 16). The refresher then only serves the store's pair while it
    /// is valid, adopts a rotation at once, takes no lock and writes nothing; past that it
    /// answers `UNAVAILABLE` with what [`Deferred`] says.
    fn refresh_deferred(&self) -> Option<Deferred> {
        None
    }

    /// A store shared beyond this machine (the fleet's Redis, issue 16) keeps the
    /// possibly-spent marker where every host sees it: written before the POST (an error:
    /// do not POST), and the time left of the window another host's marker of `token_fp`
    /// imposes. A file store has only the journal's marker: these do nothing.
    fn mark_posting(&self, _token_fp: &str, _at_ms: i64) -> Result<()> {
        Ok(())
    }

    /// See [`mark_posting`](Self::mark_posting): `Some(ms left)` when such a marker exists.
    fn posting_left_ms(&self, _token_fp: &str, _now_ms: i64) -> Result<Option<i64>> {
        Ok(None)
    }

    /// The token endpoint answered without spending `token_fp`: its marker ends.
    fn clear_posting(&self, _token_fp: &str) {}

    /// After `invalid_grant` on `token_fp`: what the store knows of who spent it, for the
    /// error (the fleet names the host whose unanswered POST may hold the successor in its
    /// journal: running hap there restores the login, no new login needed).
    fn spent_hint(&self, _token_fp: &str) -> Option<String> {
        None
    }
}
