//! A throwaway unprivileged user for permission tests: root passes every mode check, so a
//! "Permission denied" can only be reproduced as someone else. CI runs as root; the user is
//! created with `useradd` for one test and removed when it is dropped.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

pub struct Throwaway {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

fn id(flag: &str, name: &str) -> u32 {
    let out = Command::new("id").args([flag, name]).output().unwrap();
    assert!(out.status.success(), "id {flag} {name}");
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

impl Throwaway {
    /// `None` only when this process is not root (it cannot create users then); the
    /// caller says loudly that it skipped. As root, failing to create one fails the test.
    pub fn create() -> Option<Throwaway> {
        // SAFETY: a plain query of this process's effective user.
        if unsafe { libc::geteuid() } != 0 {
            return None;
        }
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "haptest{}x{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let st = Command::new("useradd")
            .args(["--system", "--no-create-home", "--shell", "/bin/false"])
            .arg(&name)
            .status()
            .expect("useradd runs (CI runs as root)");
        assert!(st.success(), "useradd {name} failed");
        Some(Throwaway {
            uid: id("-u", &name),
            gid: id("-g", &name),
            name,
        })
    }

    /// `program` run as this user, with no supplementary groups.
    pub fn command(&self, program: &Path) -> Command {
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .arg("--clear-groups")
            .arg("--")
            .arg(program);
        c
    }

    /// Gives `path` to this user (not recursively).
    pub fn own(&self, path: &Path) {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid)).unwrap();
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).status();
    }
}

/// Says loudly that a permission test did not run.
pub fn skipped(test: &str) {
    eprintln!(
        "SKIPPED {test}: not root, so no throwaway user can be created and root-free \
         permission checks cannot be reproduced here (CI runs as root)"
    );
}
