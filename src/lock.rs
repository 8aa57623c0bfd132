//! Cross-process locks, all bounded by `lock_timeout_ms` and retried with jittered backoff.
//!
//! * [`FileLock`]: advisory `flock` on a sibling lock file: `auth.lock` for a Hermes pool,
//!   `.credentials.lock` for Claude Code's credentials (the files Hermes itself locks).
//!   `flock` belongs to the open file description, so two threads of one process exclude
//!   each other as two processes do, and the kernel drops it when a process dies.
//! * [`RefreshLockDir`]: Claude Code's own refresh lock, the node `proper-lockfile`
//!   protocol: a directory created with `mkdir`, stale once its mtime is older than 60 s,
//!   touched every 5 s by its holder, removed on release. A dead holder cannot release it,
//!   which is why staleness exists. hap adds one refinement that keeps the protocol: beside
//!   the directory it holds, it writes `<dir>.hap-owner` (pid, inode, ctime). A hap process
//!   that finds the directory, while holding `.credentials.lock`, and sees that the owner
//!   file names a dead pid and the very same directory (inode and ctime unchanged), knows
//!   the holder was a hap process killed mid-refresh and takes over at once instead of
//!   waiting 60 s. A directory Claude Code made never matches, so it is never touched.

use crate::error::{Error, Result};
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

pub const REFRESH_LOCK_STALE: Duration = Duration::from_secs(60);
pub const REFRESH_LOCK_TOUCH: Duration = Duration::from_secs(5);

/// Sleeps before the next try: 1 ms doubling to 8 ms, each with up to 50% jitter, never
/// past the deadline. Returns false when the deadline has passed. The cap is low on
/// purpose: when a refresh finishes, every waiter should see it within a few ms (with a
/// 64 ms cap, the 8-process race measured ~70 ms of tail behind a 108 ms refresh), and a
/// try is one cheap system call.
fn backoff(attempt: &mut u32, deadline: Instant) -> bool {
    let now = Instant::now();
    if now >= deadline {
        return false;
    }
    let base = 1u64 << (*attempt).min(3);
    *attempt += 1;
    let jitter = crate::rng::below(base * 500 + 1);
    let wait = Duration::from_micros(base * 1000 + jitter).min(deadline - now);
    thread::sleep(wait);
    true
}

#[derive(Debug)]
pub struct FileLock {
    file: File,
}

impl FileLock {
    /// Takes an exclusive `flock` on `path` (created 0600 if missing), waiting until
    /// `deadline`. `waited` is set when the lock was not free at the first try.
    pub fn acquire(
        path: &Path,
        deadline: Instant,
        timeout_ms: u64,
        waited: &mut bool,
    ) -> Result<FileLock> {
        crate::fsio::ensure_parent(path)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| Error::io(path, "cannot open lock file", &e))?;
        let mut attempt = 0;
        loop {
            // SAFETY: the descriptor is open for the life of `file`.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                return Ok(FileLock { file });
            }
            let err = std::io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EWOULDBLOCK) | Some(libc::EINTR) => {
                    *waited = true;
                    if !backoff(&mut attempt, deadline) {
                        return Err(Error::lock_timeout(path, timeout_ms));
                    }
                }
                _ => return Err(Error::io(path, "cannot lock", &err)),
            }
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // SAFETY: as above. Closing would release it too; unlocking first makes the
        // release independent of any descriptor a forked child may have inherited.
        unsafe {
            libc::flock(self.file.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

/// Claude Code's `.oauth_refresh.lock` directory, held until dropped.
#[derive(Debug)]
pub struct RefreshLockDir {
    path: PathBuf,
    stop: Option<mpsc::Sender<()>>,
    toucher: Option<thread::JoinHandle<()>>,
}

fn touch(path: &Path) {
    let now = SystemTime::now();
    if let Ok(f) = File::open(path) {
        let _ = f.set_modified(now);
    }
}

fn owner_path(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".hap-owner");
    dir.with_file_name(name)
}

/// `(inode, ctime ns)` of the directory: what identifies this very directory.
fn dir_identity(dir: &Path) -> Option<(u64, i128)> {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(dir).ok()?;
    Some((
        m.ino(),
        m.ctime() as i128 * 1_000_000_000 + m.ctime_nsec() as i128,
    ))
}

fn write_owner(dir: &Path) {
    if let Some((ino, ctime)) = dir_identity(dir) {
        let _ = fs::write(
            owner_path(dir),
            format!("{} {ino} {ctime}\n", std::process::id()),
        );
    }
}

/// True when the directory was left by a hap process that has since died.
fn left_by_dead_hap(dir: &Path) -> bool {
    let Ok(text) = fs::read_to_string(owner_path(dir)) else {
        return false;
    };
    let mut it = text.split_whitespace();
    let (Some(pid), Some(ino), Some(ctime)) = (
        it.next().and_then(|p| p.parse::<i32>().ok()),
        it.next().and_then(|i| i.parse::<u64>().ok()),
        it.next().and_then(|c| c.parse::<i128>().ok()),
    ) else {
        return false;
    };
    if dir_identity(dir) != Some((ino, ctime)) || pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only asks whether the pid exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

impl RefreshLockDir {
    pub fn acquire(
        path: &Path,
        deadline: Instant,
        timeout_ms: u64,
        waited: &mut bool,
    ) -> Result<RefreshLockDir> {
        crate::fsio::ensure_parent(path)?;
        let mut attempt = 0;
        loop {
            match fs::DirBuilder::new().mode(0o700).create(path) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    *waited = true;
                    if Self::is_stale(path) || left_by_dead_hap(path) {
                        // The holder died without releasing. Remove and retake; if a
                        // sibling beat us to it, mkdir fails again and we wait on theirs.
                        crate::log::debug(format_args!("taking over stale {}", path.display()));
                        let _ = fs::remove_file(owner_path(path));
                        let _ = fs::remove_dir(path);
                        continue;
                    }
                    if !backoff(&mut attempt, deadline) {
                        return Err(Error::lock_timeout(path, timeout_ms));
                    }
                }
                Err(e) => return Err(Error::io(path, "cannot create lock directory", &e)),
            }
        }
        write_owner(path);
        let (tx, rx) = mpsc::channel::<()>();
        let p = path.to_path_buf();
        let toucher = thread::Builder::new()
            .name("hap-refresh-lock".into())
            .spawn(move || {
                // Keeps the lock fresh while a slow refresh runs, so nobody takes it over.
                while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(REFRESH_LOCK_TOUCH)
                {
                    touch(&p);
                    write_owner(&p);
                }
            })
            .ok();
        Ok(RefreshLockDir {
            path: path.to_path_buf(),
            stop: Some(tx),
            toucher,
        })
    }

    fn is_stale(path: &Path) -> bool {
        match fs::metadata(path).and_then(|m| m.modified()) {
            Ok(mtime) => SystemTime::now()
                .duration_since(mtime)
                .is_ok_and(|age| age > REFRESH_LOCK_STALE),
            // Vanished between mkdir and stat: not stale, just retry.
            Err(_) => false,
        }
    }
}

impl Drop for RefreshLockDir {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.toucher.take() {
            let _ = t.join();
        }
        let _ = fs::remove_file(owner_path(&self.path));
        let _ = fs::remove_dir(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flock_excludes_threads_and_times_out() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("auth.lock");
        let mut w = false;
        let held =
            FileLock::acquire(&p, Instant::now() + Duration::from_secs(1), 1000, &mut w).unwrap();
        assert!(!w);
        let e = FileLock::acquire(&p, Instant::now() + Duration::from_millis(50), 50, &mut w)
            .unwrap_err();
        assert_eq!(e.status, crate::Status::LockTimeout);
        assert!(w);
        drop(held);
        FileLock::acquire(&p, Instant::now() + Duration::from_secs(1), 1000, &mut w).unwrap();
    }

    #[test]
    fn stale_lock_dir_is_taken_over_and_removed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(".oauth_refresh.lock");
        fs::create_dir(&p).unwrap();
        let old = SystemTime::now() - Duration::from_secs(120);
        File::open(&p).unwrap().set_modified(old).unwrap();
        let mut w = false;
        let l = RefreshLockDir::acquire(&p, Instant::now() + Duration::from_secs(1), 1000, &mut w)
            .unwrap();
        assert!(p.is_dir());
        drop(l);
        assert!(!p.exists());
    }

    #[test]
    fn fresh_lock_dir_blocks() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(".oauth_refresh.lock");
        fs::create_dir(&p).unwrap();
        let mut w = false;
        let e =
            RefreshLockDir::acquire(&p, Instant::now() + Duration::from_millis(100), 100, &mut w)
                .unwrap_err();
        assert_eq!(e.status, crate::Status::LockTimeout);
        assert!(p.exists(), "someone else's lock is never removed");
    }
}
