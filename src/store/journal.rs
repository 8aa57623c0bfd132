//! hap's own write-ahead journal, a 0600 file beside the authority it protects
//! (`.credentials.hap-journal.json` next to Claude Code's file, `<pool>.hap-journal.json`
//! next to a pool file).
//!
//! Why it exists: a refresh spends the old refresh token the moment the server answers. If
//! the process dies before the new pair reaches the store, the store holds a spent token and
//! the session is gone. So the new pair is made durable here *before* any shared store is
//! touched, and marked committed after. The next hap process that would refresh finds the
//! entry covering the store's (spent) refresh token and commits that pair instead of
//! POSTing. The journal also remembers fingerprints of spent refresh tokens, so no process
//! replays one, the shared refresh back-off, so no process POSTs during it, and each POST
//! whose answer was never read (`posts`: written *before* the POST, so a journal that
//! cannot be written stops the refresh before the token is spent; see "possibly spent" in
//! `refresh.rs`).
//!
//! Format: version 2 added `posts`; a version-1 reader ignores the key (and drops it when it
//! rewrites the file, which only loses that marker). Always read and written under the
//! authority's lock; written with the same atomic replace as the stores.

use crate::credentials::TokenPair;
use crate::error::{Error, Result};
use crate::fsio;
use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const KEEP_ENTRIES: usize = 16;
const KEEP_SPENT: usize = 64;
const KEEP_POSTS: usize = 16;
const VERSION: u32 = 2;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub id: String,
    pub grant: String,
    /// Fingerprint of the refresh token this pair replaced (spent by the POST).
    pub spent: String,
    pub access_token: String,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub expires_at_ms: Option<i64>,
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    pub committed: bool,
    pub at_ms: i64,
}

impl Entry {
    /// The server answered with a refresh token other than the one it was sent: only then
    /// is the old one spent (a server that does not rotate keeps it valid).
    pub fn rotated(&self) -> bool {
        self.refresh_token
            .as_deref()
            .is_some_and(|r| crate::secret::fingerprint(r) != self.spent)
    }

    pub fn pair(&self) -> TokenPair {
        TokenPair {
            access: Secret::new(self.access_token.clone()),
            refresh: self.refresh_token.clone().map(Secret::new),
            expires_at_ms: self.expires_at_ms,
        }
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.access_token.zeroize();
        if let Some(r) = &mut self.refresh_token {
            r.zeroize();
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Backoff {
    pub until_ms: i64,
    pub failures: u32,
    #[serde(default)]
    pub code: Option<i64>,
}

/// A refresh POST that went out, or was about to, with no answer read: the server may have
/// spent `token`. Written before every POST and removed once its answer is read.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Post {
    pub grant: String,
    /// Fingerprint of the refresh token sent.
    pub token: String,
    /// When it was written, or when its answer was given up on.
    pub at_ms: i64,
    #[serde(default)]
    pub pid: u32,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct JournalDoc {
    #[serde(default)]
    pub version: u32,
    #[serde(default)]
    pub entries: Vec<Entry>,
    #[serde(default)]
    pub spent: Vec<String>,
    #[serde(default)]
    pub backoff: BTreeMap<String, Backoff>,
    #[serde(default)]
    pub posts: Vec<Post>,
}

impl JournalDoc {
    /// The newest entry holding a pair the store lacks and should hold: it replaced the
    /// store's refresh token, its access token is not the store's, and either it was never
    /// committed (a crash between journal and store) or it rotated the refresh token (the
    /// store was rolled back to a spent one). A committed entry of a server that does not
    /// rotate says nothing the store does not know: "replaying" one served an expired token
    /// with status OK forever (issue 10, item 3). The caller still checks its freshness.
    pub fn replayable(&self, grant: &str, store: &TokenPair) -> Option<&Entry> {
        let spent_fp = store.refresh.as_ref()?.fingerprint();
        self.entries.iter().rev().find(|e| {
            e.grant == grant
                && e.spent == spent_fp
                && e.access_token != store.access.expose()
                && (!e.committed || e.rotated())
        })
    }

    /// Marks committed every entry whose pair the store already holds (a crash between the
    /// store write and the commit mark), so it is neither replayed nor reported.
    pub fn settle(&mut self, grant: &str, store: &TokenPair) -> bool {
        let mut changed = false;
        for e in self.entries.iter_mut() {
            if e.grant == grant && !e.committed && e.access_token == store.access.expose() {
                e.committed = true;
                changed = true;
            }
        }
        changed
    }

    /// The unanswered POST of this refresh token, if one is recorded.
    pub fn possibly_spent(&self, grant: &str, token_fp: &str) -> Option<&Post> {
        self.posts
            .iter()
            .find(|p| p.grant == grant && p.token == token_fp)
    }

    pub fn is_spent(&self, fp: &str) -> bool {
        self.spent.iter().any(|s| s == fp)
    }

    pub fn uncommitted(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| !e.committed)
    }

    /// What a tool may know of the journal: no token, only fingerprints and times.
    pub fn summary(&self) -> JournalSummary {
        JournalSummary {
            uncommitted: self
                .uncommitted()
                .map(|e| Uncommitted {
                    grant: e.grant.clone(),
                    spent: e.spent.clone(),
                    at_ms: e.at_ms,
                })
                .collect(),
            backoff: self.backoff.clone(),
            possibly_spent: self.posts.clone(),
        }
    }

    fn trim(&mut self) {
        let n = self.entries.len();
        if n > KEEP_ENTRIES {
            // Keep every uncommitted entry whatever its age; drop the oldest committed.
            let mut excess = n - KEEP_ENTRIES;
            self.entries.retain(|e| {
                if excess > 0 && e.committed {
                    excess -= 1;
                    false
                } else {
                    true
                }
            });
        }
        let s = self.spent.len();
        if s > KEEP_SPENT {
            self.spent.drain(..s - KEEP_SPENT);
        }
        let p = self.posts.len();
        if p > KEEP_POSTS {
            self.posts.drain(..p - KEEP_POSTS);
        }
    }
}

/// A journal as a tool (`hap doctor`) sees it, read-only and without a token.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JournalSummary {
    /// Pairs written to the journal that no store took yet (or that were superseded).
    pub uncommitted: Vec<Uncommitted>,
    /// The shared refresh back-off, per grant.
    pub backoff: BTreeMap<String, Backoff>,
    /// POSTs whose answer was never read (docs/SPEC.md, "Possibly spent").
    pub possibly_spent: Vec<Post>,
}

/// One uncommitted journal entry, without its tokens.
#[derive(Clone, Debug, PartialEq)]
pub struct Uncommitted {
    pub grant: String,
    /// Fingerprint of the refresh token the entry's POST spent: while a store still holds
    /// it, the entry holds the only valid pair.
    pub spent: String,
    pub at_ms: i64,
}

#[derive(Clone, Debug)]
pub struct Journal {
    path: PathBuf,
}

impl Journal {
    /// The journal protecting the store at `store`: `<dir>/<store stem>.hap-journal.json`,
    /// hidden like the credentials file it sits beside.
    pub fn for_store(store: &Path) -> Journal {
        let name = store
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stem = name.strip_suffix(".json").unwrap_or(&name);
        let hidden = if stem.starts_with('.') { "" } else { "." };
        Journal {
            path: store.with_file_name(format!("{hidden}{stem}.hap-journal.json")),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The journal file at `path` itself (for tools that were given its path).
    pub fn at(path: &Path) -> Journal {
        Journal {
            path: path.to_path_buf(),
        }
    }

    /// The journal as it is, for tools: an unparseable one is `STORE_CORRUPT`, and stays
    /// where it is (`read` sets it aside so refreshes can go on; a report must not).
    pub fn read_only(&self) -> Result<JournalDoc> {
        match fsio::read_with_stamp(&self.path)? {
            None => Ok(JournalDoc::default()),
            Some((bytes, _)) => {
                let bytes = zeroize::Zeroizing::new(bytes);
                serde_json::from_slice(&bytes).map_err(|e| Error::corrupt(&self.path, e))
            }
        }
    }

    pub fn read(&self) -> Result<JournalDoc> {
        match fsio::read_with_stamp(&self.path)? {
            None => Ok(JournalDoc::default()),
            Some((bytes, _)) => {
                let bytes = zeroize::Zeroizing::new(bytes);
                match serde_json::from_slice(&bytes) {
                    Ok(doc) => Ok(doc),
                    Err(e) => {
                        // hap's own file, written only by atomic replace: unparseable means
                        // someone else wrote it. Refusing to refresh over it would lock the
                        // user out, so set it aside byte-for-byte and start a new one.
                        let aside = self
                            .path
                            .with_extension(format!("corrupt-{}", crate::clock::now_ms()));
                        std::fs::rename(&self.path, &aside)
                            .map_err(|_| Error::corrupt(&self.path, &e))?;
                        crate::log::debug(format_args!(
                            "journal {} unparseable ({e}); moved to {}",
                            self.path.display(),
                            aside.display()
                        ));
                        Ok(JournalDoc::default())
                    }
                }
            }
        }
    }

    pub fn write(&self, doc: &mut JournalDoc) -> Result<()> {
        doc.version = VERSION;
        doc.trim();
        let bytes = zeroize::Zeroizing::new(
            serde_json::to_vec_pretty(doc).map_err(|e| Error::internal(e.to_string()))?,
        );
        fsio::write_atomic(&self.path, &bytes)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::{fingerprint, Secret};

    fn entry(id: &str, spent: &str, access: &str, refresh: &str, committed: bool) -> Entry {
        Entry {
            id: id.into(),
            grant: "credentials".into(),
            spent: fingerprint(spent),
            access_token: access.into(),
            refresh_token: Some(refresh.into()),
            expires_at_ms: Some(1),
            scopes: None,
            committed,
            at_ms: 0,
        }
    }

    fn store(access: &str, refresh: &str) -> TokenPair {
        TokenPair {
            access: Secret::new(access),
            refresh: Some(Secret::new(refresh)),
            expires_at_ms: Some(1),
        }
    }

    /// Issue 10, item 3: the committed entry of a server that does not rotate was
    /// "replayed" forever. Only an uncommitted entry, or one that rotated past the store's
    /// (spent) token, holds a pair the store should have.
    #[test]
    fn replays_only_what_the_store_lacks() {
        let mut doc = JournalDoc::default();
        doc.entries.push(entry("1", "r1", "a2", "r1", true));
        assert!(!doc.entries[0].rotated());
        assert_eq!(doc.replayable("credentials", &store("a1", "r1")), None);
        doc.entries[0].committed = false;
        assert_eq!(
            doc.replayable("credentials", &store("a1", "r1"))
                .map(|e| &e.id[..]),
            Some("1")
        );
        // The store already holds it: nothing to replay, and settle marks it committed.
        assert_eq!(doc.replayable("credentials", &store("a2", "r1")), None);
        assert!(doc.settle("credentials", &store("a2", "r1")));
        assert!(doc.entries[0].committed);
        // A rotation the store was rolled back from is replayed even when committed.
        doc.entries.push(entry("2", "r1", "a3", "r3", true));
        assert!(doc.entries[1].rotated());
        assert_eq!(
            doc.replayable("credentials", &store("a1", "r1"))
                .map(|e| &e.id[..]),
            Some("2")
        );
        assert_eq!(doc.replayable("anthropic/x", &store("a1", "r1")), None);
        assert_eq!(doc.replayable("credentials", &store("a1", "r9")), None);
    }

    #[test]
    fn a_version_1_journal_reads_and_posts_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::for_store(&d.path().join(".credentials.json"));
        std::fs::write(
            j.path(),
            br#"{"version": 1, "entries": [], "spent": ["sha256:0000000000000000"], "backoff": {}}"#,
        )
        .unwrap();
        let mut doc = j.read().unwrap();
        assert!(doc.posts.is_empty() && doc.is_spent("sha256:0000000000000000"));
        doc.posts.push(Post {
            grant: "credentials".into(),
            token: fingerprint("r1"),
            at_ms: 5,
            pid: 7,
        });
        j.write(&mut doc).unwrap();
        let back = j.read().unwrap();
        assert_eq!(back.version, VERSION);
        assert_eq!(
            back.possibly_spent("credentials", &fingerprint("r1")),
            Some(&doc.posts[0])
        );
        assert_eq!(back.possibly_spent("credentials", &fingerprint("r2")), None);
    }
}
