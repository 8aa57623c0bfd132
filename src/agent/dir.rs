//! Where the agent's socket lives, and the checks both sides make before trusting it.
//!
//! The directory, in this order (the agent and its clients compute it alike):
//!
//! 1. `$XDG_RUNTIME_DIR/hap/` when `XDG_RUNTIME_DIR` is set to an absolute path (a desktop
//!    or `systemd --user` session);
//! 2. `/run/user/<uid>/hap/` when that runtime directory exists and belongs to this uid: a
//!    cron job or an ssh command has no `XDG_RUNTIME_DIR`, yet the agent of the same user
//!    runs under `systemd --user` and listens there;
//! 3. `/tmp/hap-<uid>/` otherwise (CI, containers).
//!
//! Each is created with mode 0700 and then checked: a directory (not a symlink) owned by
//! this uid and closed to group and others. `/tmp` is writable by everyone, so another user
//! can create `/tmp/hap-<uid>` first, or a symlink there; such a directory is refused with
//! what to do, never used. The socket inside is mode 0600, the state file `agent.json`
//! 0600, and `agent.lock` keeps a second agent of the same user from taking the socket over.

use crate::error::{Error, Result, Status};
use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

pub const SOCKET_NAME: &str = "agent.sock";
pub const STATE_NAME: &str = "agent.json";
pub const LOCK_NAME: &str = "agent.lock";

/// Which rule chose the directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    XdgRuntimeDir,
    RunUser,
    Fallback,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::XdgRuntimeDir => "XDG_RUNTIME_DIR",
            Origin::RunUser => "/run/user/<uid>",
            Origin::Fallback => "/tmp/hap-<uid>",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeDir {
    pub path: PathBuf,
    pub origin: Origin,
}

pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The agent's directory for this uid and environment (see the module comment).
pub fn locate() -> RuntimeDir {
    if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        let x = PathBuf::from(x);
        // The XDG spec requires an absolute path; a relative one would differ per cwd.
        if x.is_absolute() {
            return RuntimeDir {
                path: x.join("hap"),
                origin: Origin::XdgRuntimeDir,
            };
        }
    }
    let uid = euid();
    let run_user = PathBuf::from(format!("/run/user/{uid}"));
    if fs::symlink_metadata(&run_user).is_ok_and(|m| m.is_dir() && m.uid() == uid) {
        return RuntimeDir {
            path: run_user.join("hap"),
            origin: Origin::RunUser,
        };
    }
    RuntimeDir {
        path: PathBuf::from(format!("/tmp/hap-{uid}")),
        origin: Origin::Fallback,
    }
}

fn refused(path: &Path, why: String) -> Error {
    Error::new(
        Status::Io,
        format!(
            "{} {why}: the hap agent's directory must be a directory owned by uid {} with mode 0700; \
             remove it (`rm -rf {}`) or set XDG_RUNTIME_DIR",
            path.display(),
            euid(),
            path.display()
        ),
    )
    .with_path(path)
}

impl RuntimeDir {
    pub fn socket(&self) -> PathBuf {
        self.path.join(SOCKET_NAME)
    }

    pub fn state(&self) -> PathBuf {
        self.path.join(STATE_NAME)
    }

    pub fn lock(&self) -> PathBuf {
        self.path.join(LOCK_NAME)
    }

    /// The agent's side: creates the directory (mode 0700; only the last component, its
    /// parent must exist) and checks it.
    pub fn create(&self) -> Result<()> {
        match fs::DirBuilder::new().mode(0o700).create(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io(&self.path, "cannot create", &e)),
        }
        self.check()
    }

    /// Both sides: a directory, not a symlink, owned by this uid, closed to group and
    /// others. A client does not connect through a directory that fails this.
    pub fn check(&self) -> Result<()> {
        let m = fs::symlink_metadata(&self.path)
            .map_err(|e| Error::io(&self.path, "cannot stat", &e))?;
        if m.file_type().is_symlink() {
            return Err(refused(&self.path, "is a symbolic link".into()));
        }
        if !m.is_dir() {
            return Err(refused(&self.path, "is not a directory".into()));
        }
        if m.uid() != euid() {
            return Err(refused(&self.path, format!("belongs to uid {}", m.uid())));
        }
        let mode = m.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(refused(&self.path, format!("has mode {mode:04o}")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn checks_refuse_wrong_modes_and_links() {
        let t = tempfile::tempdir().unwrap();
        let d = RuntimeDir {
            path: t.path().join("hap"),
            origin: Origin::Fallback,
        };
        d.create().unwrap();
        assert_eq!(
            fs::metadata(&d.path).unwrap().permissions().mode() & 0o777,
            0o700
        );
        fs::set_permissions(&d.path, fs::Permissions::from_mode(0o755)).unwrap();
        let e = d.check().unwrap_err();
        assert!(e.message.contains("mode 0755"), "{}", e.message);
        fs::remove_dir(&d.path).unwrap();
        std::os::unix::fs::symlink(t.path(), &d.path).unwrap();
        let e = d.create().unwrap_err();
        assert!(e.message.contains("symbolic link"), "{}", e.message);
    }
}
