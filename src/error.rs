//! Status codes and the one error type every fallible operation returns.
//!
//! Messages are written for people and never carry a secret: code that builds an
//! [`Error`] passes credential ids and paths, never token material.

use std::path::{Path, PathBuf};

/// The C ABI's status values (docs/ABI.md). Values are fixed forever: a retired value stays
/// reserved as a comment, a new one is a minor ABI change.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    Ok = 0,
    InvalidArgument = 1,
    NoCredential = 2,
    ReauthRequired = 3,
    Unavailable = 4,
    LockTimeout = 5,
    StoreCorrupt = 6,
    Io = 7,
    UnknownCredential = 8,
    Internal = 100,
}

impl Status {
    const ALL: [Status; 10] = [
        Status::Ok,
        Status::InvalidArgument,
        Status::NoCredential,
        Status::ReauthRequired,
        Status::Unavailable,
        Status::LockTimeout,
        Status::StoreCorrupt,
        Status::Io,
        Status::UnknownCredential,
        Status::Internal,
    ];

    /// Every status, in value order. (A function, not a pub const: cbindgen would put a
    /// pub associated const into the C header.)
    pub fn all() -> [Status; 10] {
        Status::ALL
    }

    pub fn code(self) -> i32 {
        self as i32
    }

    pub fn from_code(code: i32) -> Option<Status> {
        Status::ALL.iter().copied().find(|s| s.code() == code)
    }

    /// The static name, NUL-terminated so the C ABI can hand it out without allocating.
    pub fn name_cstr(self) -> &'static std::ffi::CStr {
        match self {
            Status::Ok => c"HAP_STATUS_OK",
            Status::InvalidArgument => c"HAP_STATUS_INVALID_ARGUMENT",
            Status::NoCredential => c"HAP_STATUS_NO_CREDENTIAL",
            Status::ReauthRequired => c"HAP_STATUS_REAUTH_REQUIRED",
            Status::Unavailable => c"HAP_STATUS_UNAVAILABLE",
            Status::LockTimeout => c"HAP_STATUS_LOCK_TIMEOUT",
            Status::StoreCorrupt => c"HAP_STATUS_STORE_CORRUPT",
            Status::Io => c"HAP_STATUS_IO",
            Status::UnknownCredential => c"HAP_STATUS_UNKNOWN_CREDENTIAL",
            Status::Internal => c"HAP_STATUS_INTERNAL",
        }
    }

    pub fn name(self) -> &'static str {
        self.name_cstr().to_str().expect("status names are ASCII")
    }
}

/// An error with everything the C ABI's error JSON carries.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {message}", status.name())]
pub struct Error {
    pub status: Status,
    pub message: String,
    pub retry_at_ms: Option<i64>,
    pub credential_id: Option<String>,
    pub path: Option<PathBuf>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How a caller-supplied name (an unknown JSON key, say) appears in a message: whole when it
/// is short and cannot be a token, else cut and marked. A caller that swapped a map and put
/// a token in key position must not get it back in an error JSON its binding logs.
///
/// The token check runs on the text as it will be shown (control characters removed), not
/// on the raw name: `"s\x7fk-ant-…"` has no `sk-ant-` until the DEL is filtered out (a
/// fuzzer finding, `fuzz/artifacts-found/fuzz_config/key-echo-control-chars`).
pub fn shown(name: &str) -> String {
    let printable: String = name.chars().filter(|c| !c.is_control()).collect();
    if crate::secret::looks_like_token(&printable) {
        return "[redacted: looks like a token]".to_string();
    }
    let mut out: String = printable.chars().take(48).collect();
    if out.len() < name.len() {
        out.push('…');
    }
    out
}

impl Error {
    pub fn new(status: Status, message: impl Into<String>) -> Error {
        Error {
            status,
            message: message.into(),
            retry_at_ms: None,
            credential_id: None,
            path: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Error {
        Error::new(Status::InvalidArgument, message)
    }

    pub fn internal(message: impl Into<String>) -> Error {
        Error::new(Status::Internal, message)
    }

    pub fn io(path: &Path, what: &str, err: &std::io::Error) -> Error {
        Error::new(Status::Io, format!("{what} {}: {err}", path.display())).with_path(path)
    }

    pub fn corrupt(path: &Path, why: impl std::fmt::Display) -> Error {
        Error::new(
            Status::StoreCorrupt,
            format!(
                "{} cannot be parsed ({why}); it was left unchanged",
                path.display()
            ),
        )
        .with_path(path)
    }

    pub fn lock_timeout(path: &Path, waited_ms: u64) -> Error {
        Error::new(
            Status::LockTimeout,
            format!(
                "another process held {} for more than {waited_ms} ms",
                path.display()
            ),
        )
        .with_path(path)
    }

    pub fn with_path(mut self, path: &Path) -> Error {
        self.path = Some(path.to_path_buf());
        self
    }

    /// `UNKNOWN_CREDENTIAL` for a caller-supplied id. The id is named through `shown` and
    /// put in `credential_id` only when shown whole: a caller that swapped arguments and
    /// passed a token as the id must not get it back in an error its binding logs.
    pub fn unknown_credential(id: &str) -> Error {
        let name = shown(id);
        let e = Error::new(
            Status::UnknownCredential,
            format!("no credential '{name}' in this pool"),
        );
        if name == id {
            e.with_credential(id)
        } else {
            e
        }
    }

    pub fn with_credential(mut self, id: &str) -> Error {
        self.credential_id = Some(id.to_string());
        self
    }

    pub fn with_retry_at(mut self, at_ms: Option<i64>) -> Error {
        self.retry_at_ms = at_ms;
        self
    }

    /// The error object of docs/ABI.md.
    pub fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("status".into(), self.status.code().into());
        m.insert("name".into(), self.status.name().into());
        // One line, as the ABI promises.
        m.insert(
            "message".into(),
            self.message.replace(['\n', '\r'], " ").into(),
        );
        if let Some(at) = self.retry_at_ms {
            m.insert("retry_at_ms".into(), at.into());
        }
        if let Some(id) = &self.credential_id {
            m.insert("credential_id".into(), id.clone().into());
        }
        if let Some(p) = &self.path {
            m.insert("path".into(), p.to_string_lossy().into_owned().into());
        }
        serde_json::Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::shown;

    #[test]
    fn shown_keeps_short_plain_names() {
        assert_eq!(shown("pool_pth"), "pool_pth");
    }

    #[test]
    fn shown_cuts_long_names_and_marks_them() {
        let s = shown(&"x".repeat(100));
        assert_eq!(s, format!("{}…", "x".repeat(48)));
    }

    #[test]
    fn shown_redacts_tokens_hidden_by_control_characters() {
        for name in [
            "sk-ant-ort01-abc",
            "=ht&s\u{7f}\u{7f}k-ant-ort01-h_sknth",
            "s\nk-ant-oat01-x",
            "\u{0}sk-\u{1b}ant-oat01",
        ] {
            assert_eq!(shown(name), "[redacted: looks like a token]", "{name:?}");
        }
    }

    #[test]
    fn shown_marks_removed_control_characters() {
        assert_eq!(shown("a\u{7f}b"), "ab…");
    }
}
