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
//! replays one, and the shared refresh back-off, so no process POSTs during it.
//!
//! Always read and written under the authority's lock; written with the same atomic replace
//! as the stores.

use crate::credentials::TokenPair;
use crate::error::{Error, Result};
use crate::fsio;
use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const KEEP_ENTRIES: usize = 16;
const KEEP_SPENT: usize = 64;

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
}

impl JournalDoc {
    /// The newest entry whose pair replaced the refresh token with this fingerprint: the
    /// store still holding that token means the pair never reached it (or was rolled back).
    pub fn entry_replacing(&self, grant: &str, spent_fp: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.grant == grant && e.spent == spent_fp)
    }

    pub fn is_spent(&self, fp: &str) -> bool {
        self.spent.iter().any(|s| s == fp)
    }

    pub fn uncommitted(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| !e.committed)
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
    }
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
        doc.version = 1;
        doc.trim();
        let bytes = zeroize::Zeroizing::new(
            serde_json::to_vec_pretty(doc).map_err(|e| Error::internal(e.to_string()))?,
        );
        fsio::write_atomic(&self.path, &bytes)?;
        Ok(())
    }
}
