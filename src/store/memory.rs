//! An in-memory store, test code only (`#[cfg(test)]`): a third implementation of
//! [`Authority`] beside Claude Code's file and the owned pool row, used by the unit tests of
//! the refresh transaction (`refresh/tests.rs`) and of the pool (`pool/mod.rs`). It is what a
//! store that is no file (a Keychain item, a network service) looks like to hap: no file, an
//! unknown stamp, and no lock beyond what its own write does.

use crate::authority::{Authority, PairRead, Stamp, Written};
use crate::credentials::TokenPair;
use crate::error::Result;
use crate::journal::Journal;
use crate::lock::{Held, LockSpec};
use crate::secret::Secret;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// A store that is no file: `Stamp::Unknown`, no lock, its journal in a temporary directory.
pub struct MemoryStore {
    pair: Mutex<Option<TokenPair>>,
    journal_at: PathBuf,
}

impl MemoryStore {
    pub fn new(dir: &tempfile::TempDir, pair: TokenPair) -> Arc<MemoryStore> {
        Arc::new(MemoryStore {
            pair: Mutex::new(Some(pair)),
            journal_at: dir.path().join("memory.json"),
        })
    }

    pub fn holds(&self) -> Option<TokenPair> {
        self.pair.lock().unwrap().clone()
    }

    pub fn set(&self, pair: TokenPair) {
        *self.pair.lock().unwrap() = Some(pair);
    }
}

impl Authority for MemoryStore {
    fn grant_key(&self) -> String {
        "memory".into()
    }
    fn name(&self) -> String {
        "memory".into()
    }
    fn file(&self) -> Option<PathBuf> {
        None
    }
    fn stamp(&self) -> Result<Stamp> {
        Ok(Stamp::Unknown)
    }
    fn read_pair(&self) -> Result<PairRead> {
        Ok(PairRead {
            stamp: Stamp::Unknown,
            pair: self.holds(),
        })
    }
    fn write_pair(
        &self,
        _held: &Held,
        replaces: Option<&Secret>,
        pair: &TokenPair,
        _issued: &crate::credentials::Issued,
    ) -> Result<Written> {
        let mut held = self.pair.lock().unwrap();
        if held.as_ref().and_then(|p| p.refresh.as_ref()) != replaces {
            return Ok(Written::Moved);
        }
        *held = Some(pair.clone());
        Ok(Written::Stored)
    }
    fn locks(&self) -> Result<Vec<LockSpec>> {
        Ok(Vec::new())
    }
    fn journal(&self) -> Result<Journal> {
        Ok(Journal::for_store(&self.journal_at))
    }
}

/// A pair with a refresh token.
pub fn pair(access: &str, refresh: &str, expires_at_ms: i64) -> TokenPair {
    TokenPair {
        access: Secret::new(access),
        refresh: Some(Secret::new(refresh)),
        expires_at_ms: Some(expires_at_ms),
    }
}
