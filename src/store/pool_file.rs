//! Hermes Agent's credential pool file (`~/.hermes/auth.json`, one per profile).
//!
//! Shape: `{"version": 1, "providers": {...}, "credential_pool": {"<provider>": [row, ...]},
//! "updated_at": "...", ...}`. hap reads and writes the rows of its own provider and keeps
//! every other byte of meaning: unknown keys at every level survive, in order, and a row
//! field is rewritten only when its value changes. Writes are read-modify-write under
//! `auth.lock`, so a sibling's change made a millisecond earlier is never undone.

use crate::authority::{Authority, PairRead, Stamp, Written};
use crate::credentials::{json_ms, serialize_like, TokenPair};
use crate::error::{Error, Result};
use crate::fsio::{self, FileStamp};
use crate::journal::Journal;
use crate::lock::{FileLock, Held, LockSpec};
use crate::secret::Secret;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// Where a row's tokens live, decided by its `source`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `claude_code`: the credentials file is the only authority; the row holds status and
    /// a fingerprint, never a token.
    Borrowed,
    /// `manual`, `manual:*`: the row owns its tokens and hap refreshes them in place.
    Owned,
    /// Anything else: used as it is, never refreshed.
    Foreign,
}

pub const SOURCE_CLAUDE_CODE: &str = "claude_code";

/// Row keys hap owns beyond Hermes' own: `hap_rejected_fingerprint` marks the access token a
/// caller reported a 401 for (the next resolve refreshes instead of serving it again).
pub const KEY_REJECTED: &str = "hap_rejected_fingerprint";
/// `hap_retried_fingerprint` marks the access token a refresh produced in answer to such a
/// 401: a 401 on that token benches the row instead of refreshing once more.
pub const KEY_RETRIED: &str = "hap_retried_fingerprint";

#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub id: String,
    pub label: String,
    pub auth_type: String,
    pub priority: i64,
    pub source: String,
    pub access_token: Option<Secret>,
    pub refresh_token: Option<Secret>,
    pub expires_at_ms: Option<i64>,
    pub last_status: Option<String>,
    pub last_status_at: Option<f64>,
    pub last_error_code: Option<i64>,
    pub last_error_reason: Option<String>,
    pub last_error_message: Option<String>,
    pub last_error_reset_at: Option<f64>,
    pub request_count: u64,
    pub secret_fingerprint: Option<String>,
    pub rejected_fingerprint: Option<String>,
    pub retried_fingerprint: Option<String>,
}

impl Row {
    pub fn kind(&self) -> Kind {
        if self.source == SOURCE_CLAUDE_CODE {
            Kind::Borrowed
        } else if self.source == "manual" || self.source.starts_with("manual:") {
            Kind::Owned
        } else {
            Kind::Foreign
        }
    }

    pub fn is_oauth(&self) -> bool {
        self.auth_type == "oauth"
    }

    /// A row for a login found in the credentials file (`adopt_external_logins`).
    pub fn new_borrowed(id: String, priority: i64) -> Row {
        Row {
            id,
            label: SOURCE_CLAUDE_CODE.into(),
            auth_type: "oauth".into(),
            priority,
            source: SOURCE_CLAUDE_CODE.into(),
            access_token: None,
            refresh_token: None,
            expires_at_ms: None,
            last_status: None,
            last_status_at: None,
            last_error_code: None,
            last_error_reason: None,
            last_error_message: None,
            last_error_reset_at: None,
            request_count: 0,
            secret_fingerprint: None,
            rejected_fingerprint: None,
            retried_fingerprint: None,
        }
    }

    pub fn clear_status(&mut self) {
        self.last_status = None;
        self.last_status_at = None;
        self.last_error_code = None;
        self.last_error_reason = None;
        self.last_error_message = None;
        self.last_error_reset_at = None;
    }

    fn parse(obj: &Map<String, Value>) -> Option<Row> {
        let s = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_string);
        let secret = |k: &str| {
            obj.get(k)
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .map(|t| Secret::new(t.to_string()))
        };
        // Epoch seconds; Hermes' own to_dict() may have written an ISO-8601 string.
        let f = |k: &str| match obj.get(k) {
            Some(Value::String(t)) => {
                crate::clock::parse_iso8601_ms(t).map(|ms| ms as f64 / 1000.0)
            }
            Some(v) => v.as_f64().filter(|x| x.is_finite()),
            None => None,
        };
        let id = s("id").filter(|i| !i.is_empty())?;
        let source = s("source").unwrap_or_else(|| "manual".into());
        let access_token = secret("access_token");
        let auth_type = s("auth_type").unwrap_or_else(|| {
            if access_token
                .as_ref()
                .is_some_and(|t| crate::secret::is_oauth_token(t.expose()))
            {
                "oauth".into()
            } else {
                "api_key".into()
            }
        });
        Some(Row {
            label: s("label").unwrap_or_else(|| source.clone()),
            priority: obj.get("priority").and_then(json_ms).unwrap_or(0),
            refresh_token: secret("refresh_token"),
            expires_at_ms: obj.get("expires_at_ms").and_then(json_ms),
            last_status: s("last_status"),
            last_status_at: f("last_status_at"),
            last_error_code: obj.get("last_error_code").and_then(json_ms),
            last_error_reason: s("last_error_reason"),
            last_error_message: s("last_error_message"),
            last_error_reset_at: f("last_error_reset_at"),
            // Python writes 3, but a row another tool rewrote may say 3.0: both are 3 (the
            // float once read as 0, and hap's next write-back reset the count).
            request_count: obj
                .get("request_count")
                .and_then(|v| {
                    v.as_u64()
                        .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f as u64))
                })
                .unwrap_or(0),
            secret_fingerprint: s("secret_fingerprint"),
            rejected_fingerprint: s(KEY_REJECTED),
            retried_fingerprint: s(KEY_RETRIED),
            id,
            source,
            access_token,
            auth_type,
        })
    }

    /// Writes this row's fields into its JSON object, touching a key only when its value
    /// changes; unknown keys stay where they were.
    fn write_into(&self, obj: &mut Map<String, Value>) {
        fn set(obj: &mut Map<String, Value>, key: &str, v: Value) {
            if obj.get(key) != Some(&v) {
                obj.insert(key.to_string(), v);
            }
        }
        let opt_s = |v: &Option<String>| v.clone().map_or(Value::Null, Value::String);
        let opt_f = |v: Option<f64>| v.map_or(Value::Null, Value::from);
        set(obj, "id", self.id.clone().into());
        set(obj, "label", self.label.clone().into());
        set(obj, "auth_type", self.auth_type.clone().into());
        set(obj, "priority", self.priority.into());
        set(obj, "source", self.source.clone().into());
        if self.kind() == Kind::Owned {
            if let Some(t) = &self.access_token {
                set(obj, "access_token", t.expose().into());
            }
            if let Some(t) = &self.refresh_token {
                set(obj, "refresh_token", t.expose().into());
            }
        }
        set(
            obj,
            "expires_at_ms",
            self.expires_at_ms.map_or(Value::Null, Value::from),
        );
        set(obj, "last_status", opt_s(&self.last_status));
        set(obj, "last_status_at", opt_f(self.last_status_at));
        set(
            obj,
            "last_error_code",
            self.last_error_code.map_or(Value::Null, Value::from),
        );
        set(obj, "last_error_reason", opt_s(&self.last_error_reason));
        set(obj, "last_error_message", opt_s(&self.last_error_message));
        set(obj, "last_error_reset_at", opt_f(self.last_error_reset_at));
        set(obj, "request_count", self.request_count.into());
        if self.secret_fingerprint.is_some() || obj.contains_key("secret_fingerprint") {
            set(obj, "secret_fingerprint", opt_s(&self.secret_fingerprint));
        }
        for (key, fp) in [
            (KEY_REJECTED, &self.rejected_fingerprint),
            (KEY_RETRIED, &self.retried_fingerprint),
        ] {
            match fp {
                Some(fp) => set(obj, key, fp.clone().into()),
                None => {
                    obj.shift_remove(key);
                }
            }
        }
    }
}

/// One parsed read of the pool file.
#[derive(Clone, Debug)]
pub struct PoolRead {
    /// `None` when the file does not exist (an empty pool).
    pub stamp: Option<FileStamp>,
    pub rows: Vec<Row>,
}

#[derive(Clone, Debug)]
pub struct PoolFile {
    path: PathBuf,
    provider: String,
}

fn parse_doc(path: &Path, bytes: &[u8]) -> Result<Map<String, Value>> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| Error::corrupt(path, e))?;
    let Value::Object(root) = v else {
        return Err(Error::corrupt(path, "top level is not an object"));
    };
    match root.get("credential_pool") {
        None | Some(Value::Null) | Some(Value::Object(_)) => Ok(root),
        Some(_) => Err(Error::corrupt(path, "credential_pool is not an object")),
    }
}

impl PoolFile {
    pub fn new(path: PathBuf, provider: String) -> PoolFile {
        PoolFile { path, provider }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn lock_path(&self) -> PathBuf {
        crate::config::Config::pool_lock_path(&self.path)
    }

    /// Every `auth.lock` a writer of this file takes, nearest the symlink target first,
    /// ending with [`lock_path`](Self::lock_path) (Hermes'); see
    /// `CredentialsFile::lock_paths`.
    pub fn lock_paths(&self) -> Result<Vec<PathBuf>> {
        Ok(fsio::link_chain(&self.path)?
            .iter()
            .rev()
            .map(|p| crate::config::Config::pool_lock_path(p))
            .collect())
    }

    /// The file the path resolves to, which hap's journal is keyed on.
    pub fn target(&self) -> Result<PathBuf> {
        Ok(fsio::link_chain(&self.path)?.pop().expect("never empty"))
    }

    /// The journal of the rows that own their tokens: beside the file the path resolves to.
    pub fn journal(&self) -> Result<Journal> {
        Ok(Journal::for_store(&self.target()?))
    }

    pub fn stamp(&self) -> Result<Option<FileStamp>> {
        fsio::stamp(&self.path)
    }

    fn rows_of(&self, root: &Map<String, Value>) -> Result<Vec<Row>> {
        let list = root
            .get("credential_pool")
            .and_then(|p| p.get(&self.provider));
        match list {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => Ok(items
                .iter()
                .filter_map(|it| it.as_object().and_then(Row::parse))
                .collect()),
            Some(_) => Err(Error::corrupt(
                &self.path,
                format!("credential_pool.{} is not a list", self.provider),
            )),
        }
    }

    pub fn read(&self) -> Result<PoolRead> {
        match fsio::read_with_stamp(&self.path)? {
            None => Ok(PoolRead {
                stamp: None,
                rows: Vec::new(),
            }),
            Some((bytes, stamp)) => {
                let root = parse_doc(&self.path, &bytes)?;
                Ok(PoolRead {
                    stamp: Some(stamp),
                    rows: self.rows_of(&root)?,
                })
            }
        }
    }

    /// Read-modify-write of this provider's rows. The caller holds the pool lock (`_lock`
    /// proves it). `change` returns whether it changed anything; nothing is written when it
    /// did not. Rows removed from the vector are left in the file (hap never deletes a row).
    pub fn update<T>(
        &self,
        _lock: &FileLock,
        change: impl FnOnce(&mut Vec<Row>) -> Result<(bool, T)>,
    ) -> Result<(PoolRead, T)> {
        let (original, mut root) = match fsio::read_with_stamp(&self.path)? {
            Some((bytes, _)) => {
                let root = parse_doc(&self.path, &bytes)?;
                (bytes, root)
            }
            None => {
                let mut root = Map::new();
                root.insert("version".into(), 1.into());
                root.insert("providers".into(), Value::Object(Map::new()));
                (b"{\n".to_vec(), root)
            }
        };
        let mut rows = self.rows_of(&root)?;
        let (changed, out) = change(&mut rows)?;
        let stamp_before = fsio::stamp(&self.path)?;
        if !changed {
            return Ok((
                PoolRead {
                    stamp: stamp_before,
                    rows: self.rows_of(&root)?,
                },
                out,
            ));
        }
        let pool = root
            .entry("credential_pool")
            .or_insert_with(|| Value::Object(Map::new()));
        if !pool.is_object() {
            *pool = Value::Object(Map::new());
        }
        let list = pool
            .as_object_mut()
            .expect("object")
            .entry(self.provider.clone())
            .or_insert_with(|| Value::Array(Vec::new()));
        if !list.is_array() {
            *list = Value::Array(Vec::new());
        }
        let items = list.as_array_mut().expect("array");
        for row in &rows {
            let existing = items.iter_mut().find_map(|it| match it {
                Value::Object(o)
                    if o.get("id").and_then(Value::as_str) == Some(row.id.as_str()) =>
                {
                    Some(o)
                }
                _ => None,
            });
            match existing {
                Some(obj) => row.write_into(obj),
                None => {
                    let mut obj = Map::new();
                    row.write_into(&mut obj);
                    items.push(Value::Object(obj));
                }
            }
        }
        root.insert(
            "updated_at".into(),
            crate::clock::iso8601_utc(crate::clock::now_ms()).into(),
        );
        let bytes = zeroize::Zeroizing::new(serialize_like(&original, &Value::Object(root)));
        let stamp = fsio::write_atomic(&self.path, &bytes)?;
        Ok((
            PoolRead {
                stamp: Some(stamp),
                rows,
            },
            out,
        ))
    }
}

/// One row of a pool file that owns its tokens (`Kind::Owned`) as a store: the pool file's
/// stamp and `auth.lock`, and a write that changes only that row's pair.
#[derive(Clone, Debug)]
pub struct PoolRow {
    file: PoolFile,
    id: String,
}

impl PoolRow {
    pub fn new(file: PoolFile, id: String) -> PoolRow {
        PoolRow { file, id }
    }

    /// The row's own pair, as a store holds it (`None` without an access token).
    pub fn pair_of(row: &Row) -> Option<TokenPair> {
        row.access_token.clone().map(|access| TokenPair {
            access,
            refresh: row.refresh_token.clone(),
            expires_at_ms: row.expires_at_ms,
        })
    }
}

impl Authority for PoolRow {
    fn grant_key(&self) -> String {
        format!("{}/{}", self.file.provider, self.id)
    }

    fn name(&self) -> String {
        format!("{} (row {})", self.file.path.display(), self.id)
    }

    fn file(&self) -> Option<PathBuf> {
        Some(self.file.path.clone())
    }

    fn stamp(&self) -> Result<Stamp> {
        Ok(Stamp::File(self.file.stamp()?))
    }

    fn read_pair(&self) -> Result<PairRead> {
        let read = self.file.read()?;
        Ok(PairRead {
            stamp: Stamp::File(read.stamp),
            pair: read
                .rows
                .iter()
                .find(|r| r.id == self.id)
                .and_then(PoolRow::pair_of),
        })
    }

    fn write_pair(
        &self,
        held: &Held,
        replaces: Option<&Secret>,
        pair: &TokenPair,
        _issued: &crate::credentials::Issued,
    ) -> Result<Written> {
        let lock = held
            .flock(&self.file.lock_paths()?)
            .ok_or_else(|| Error::internal("a pool row's pair written without the pool lock"))?;
        let (_, written) = self.file.update(lock, |rows| {
            let Some(r) = rows.iter_mut().find(|r| r.id == self.id) else {
                return Ok((false, Written::Moved));
            };
            if r.refresh_token.as_ref() != replaces {
                return Ok((false, Written::Moved));
            }
            r.access_token = Some(pair.access.clone());
            r.refresh_token = pair.refresh.clone();
            r.expires_at_ms = pair.expires_at_ms;
            Ok((true, Written::Stored))
        })?;
        Ok(written)
    }

    fn locks(&self) -> Result<Vec<LockSpec>> {
        Ok(vec![LockSpec::Flock(self.file.lock_paths()?)])
    }

    fn journal(&self) -> Result<Journal> {
        self.file.journal()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn update_keeps_unknown_keys_and_other_providers() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("auth.json");
        let before = r#"{"version": 1, "providers": {"nous": {"x": 1}}, "credential_pool": {"openrouter": [{"id": "ffffff"}], "anthropic": [{"id": "a1b2c3", "label": "mine", "auth_type": "oauth", "priority": 0, "source": "manual", "access_token": "sk-ant-oat01-fake-a1", "refresh_token": "sk-ant-ort01-fake-r1", "expires_at_ms": 5, "last_status": null, "last_status_at": null, "last_error_code": null, "last_error_reason": null, "last_error_message": null, "last_error_reset_at": null, "request_count": 3, "custom_field": {"keep": [1, 2]}}]}, "active_provider": "anthropic"}"#;
        std::fs::write(&p, before).unwrap();
        let f = PoolFile::new(p.clone(), "anthropic".into());
        let mut w = false;
        let l = FileLock::acquire(
            &f.lock_path(),
            Instant::now() + Duration::from_secs(1),
            1000,
            &mut w,
        )
        .unwrap();
        f.update(&l, |rows| {
            rows[0].last_status = Some("exhausted".into());
            rows[0].last_error_code = Some(429);
            Ok((true, ()))
        })
        .unwrap();
        let after: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        let row = &after["credential_pool"]["anthropic"][0];
        assert_eq!(row["custom_field"], serde_json::json!({"keep": [1, 2]}));
        assert_eq!(row["last_status"], "exhausted");
        assert_eq!(row["access_token"], "sk-ant-oat01-fake-a1");
        assert_eq!(after["credential_pool"]["openrouter"][0]["id"], "ffffff");
        assert_eq!(after["providers"]["nous"]["x"], 1);
        assert_eq!(after["active_provider"], "anthropic");
        let keys: Vec<&String> = after.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "version",
                "providers",
                "credential_pool",
                "active_provider",
                "updated_at"
            ]
        );
    }

    #[test]
    fn hermes_iso_timestamps_are_read() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("auth.json");
        std::fs::write(&p, r#"{"credential_pool": {"anthropic": [{"id": "a1b2c3", "source": "manual",
            "last_status": "exhausted", "last_status_at": "1970-01-01T00:01:40+00:00", "last_error_reset_at": 200.5}]}}"#).unwrap();
        let rows = PoolFile::new(p, "anthropic".into()).read().unwrap().rows;
        assert_eq!(rows[0].last_status_at, Some(100.0));
        assert_eq!(rows[0].last_error_reset_at, Some(200.5));
    }

    #[test]
    fn a_request_count_written_as_a_float_keeps_its_value() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("auth.json");
        std::fs::write(&p, r#"{"credential_pool": {"anthropic": [{"id": "a1b2c3", "source": "manual", "request_count": 7.0},
            {"id": "d4e5f6", "source": "manual", "request_count": 5}]}}"#).unwrap();
        let rows = PoolFile::new(p, "anthropic".into()).read().unwrap().rows;
        assert_eq!((rows[0].request_count, rows[1].request_count), (7, 5));
    }

    #[test]
    fn borrowed_rows_never_hold_tokens() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("auth.json");
        let f = PoolFile::new(p.clone(), "anthropic".into());
        let mut w = false;
        let l = FileLock::acquire(
            &f.lock_path(),
            Instant::now() + Duration::from_secs(1),
            1000,
            &mut w,
        )
        .unwrap();
        f.update(&l, |rows| {
            let mut r = Row::new_borrowed("abcdef".into(), 0);
            r.access_token = Some(Secret::new("sk-ant-oat01-fake-a1"));
            r.secret_fingerprint = Some(crate::secret::fingerprint("sk-ant-oat01-fake-a1"));
            rows.push(r);
            Ok((true, ()))
        })
        .unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(!text.contains("fake-a1"), "{text}");
        assert!(text.contains("secret_fingerprint"));
        assert!(text.contains("\"last_error_reset_at\": null"));
    }

    #[test]
    fn an_owned_row_writes_only_its_pair_and_only_over_the_token_it_replaces() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("auth.json");
        std::fs::write(
            &p,
            r#"{"credential_pool": {"anthropic": [
            {"id": "a1b2c3", "source": "manual", "auth_type": "oauth", "last_status": "exhausted",
             "access_token": "sk-ant-oat01-fake-a1", "refresh_token": "sk-ant-ort01-fake-r1"}]}}"#,
        )
        .unwrap();
        let f = PoolFile::new(p.clone(), "anthropic".into());
        let row = PoolRow::new(f.clone(), "a1b2c3".into());
        assert_eq!(row.grant_key(), "anthropic/a1b2c3");
        let pair = TokenPair {
            access: Secret::new("sk-ant-oat01-fake-a2"),
            refresh: Some(Secret::new("sk-ant-ort01-fake-r2")),
            expires_at_ms: Some(5),
        };
        let r1 = Secret::new("sk-ant-ort01-fake-r1");
        // Without the pool lock the write refuses.
        let unlocked = Held::default();
        assert!(row
            .write_pair(&unlocked, Some(&r1), &pair, &Default::default())
            .is_err());
        let mut w = false;
        let held = Held::take(
            &row.locks().unwrap(),
            Instant::now() + Duration::from_secs(1),
            1000,
            &mut w,
        )
        .unwrap();
        let other = Secret::new("sk-ant-ort01-fake-r0");
        assert_eq!(
            row.write_pair(&held, Some(&other), &pair, &Default::default())
                .unwrap(),
            Written::Moved
        );
        assert_eq!(
            row.write_pair(&held, Some(&r1), &pair, &Default::default())
                .unwrap(),
            Written::Stored
        );
        assert_eq!(row.read_pair().unwrap().pair.unwrap(), pair);
        // The row's status is the pool's business, not the store's.
        assert_eq!(
            f.read().unwrap().rows[0].last_status.as_deref(),
            Some("exhausted")
        );
    }
}
