//! Helpers of tests/hostile/refresh.rs: a tiny tmpfs to fill, a throwaway user, signals,
//! and waiting for the fake server to have seen a POST.

//!
//! Included with `#[path]` by the test file (tests/common/mod.rs is shared with other areas).

use crate::common::{worker_bin, FakeServer, Home};
use serde_json::Value;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A 64 KiB tmpfs mounted for one test, unmounted when dropped.
pub struct Tmpfs {
    pub dir: PathBuf,
}

impl Tmpfs {
    /// Mounts it at `dir` (created). `None` when this process may not mount (not root):
    /// the caller says it skipped.
    pub fn mount(dir: &Path) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs"])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!(
                "SKIPPED: cannot mount a tmpfs at {} (needs root)",
                dir.display()
            );
        }
        ok.then(|| Tmpfs {
            dir: dir.to_path_buf(),
        })
    }

    /// Fills it to the last page.
    pub fn fill(&self) {
        let mut f = std::fs::File::create(self.dir.join("filler")).unwrap();
        let chunk = [0u8; 4096];
        while f.write(&chunk).is_ok_and(|n| n > 0) {}
        while f.write(&chunk[..1]).is_ok_and(|n| n > 0) {}
        let _ = f.sync_all();
    }

    pub fn free(&self) {
        std::fs::remove_file(self.dir.join("filler")).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `nobody`: permission checks only bite an unprivileged user (root bypasses them).
pub const THROWAWAY_UID: u32 = 65534;

/// `spawn_worker`, as the throwaway user when running as root.
pub fn spawn_worker_unprivileged(cfg: &Value) -> Child {
    let mut c = Command::new(worker_bin());
    c.arg(cfg.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if is_root() {
        c.uid(THROWAWAY_UID).gid(THROWAWAY_UID);
    }
    c.spawn().unwrap()
}

/// Gives `path` and everything under it to the throwaway user (when running as root).
pub fn give_to_throwaway_user(path: &Path) {
    if is_root() {
        let ok = Command::new("chown")
            .args(["-R", &format!("{THROWAWAY_UID}:{THROWAWAY_UID}")])
            .arg(path)
            .status()
            .unwrap()
            .success();
        assert!(ok, "chown {}", path.display());
    }
}

pub fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

pub fn signal(child: &Child, sig: i32) {
    // SAFETY: kill with a pid we spawned and have not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

/// Waits (up to 10 s) until the fake server has received `n` token POSTs.
pub fn wait_for_posts(s: &FakeServer, n: u64) {
    let t0 = Instant::now();
    while s.posts() < n {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the server never saw POST {n}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// What `examples/hap_worker` prints as `token_sha256` for a token.
pub fn worker_sha(token: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(token.as_bytes());
    d[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// hap's journal beside the credentials file, parsed (`null` when there is none).
pub fn creds_journal(h: &Home) -> Value {
    let p = h
        .creds_path()
        .with_file_name(".credentials.hap-journal.json");
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b).unwrap(),
        Err(_) => Value::Null,
    }
}
