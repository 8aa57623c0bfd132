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
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

pub const REFRESH_LOCK_STALE: Duration = Duration::from_secs(60);
/// Every ≤ 5 s: fresh for 2.1.112-era Claude Code too, which calls `~/.claude.lock` stale
/// after 10 s, and for 2.1.328, which calls an unbeaten lock dead after 7.5 s
/// (interop/claude-code/FINDINGS.md §3, §3b).
pub const REFRESH_LOCK_TOUCH: Duration = Duration::from_secs(5);
/// Claude Code's `<dir>/.storage-write.lock`, taken around every write of the credentials
/// file: stale after 15 s (FINDINGS.md §3).
pub const STORAGE_WRITE_STALE: Duration = Duration::from_secs(15);

/// Sleeps before the next try: 1 ms doubling to 8 ms, each with up to 50% jitter, never
/// past the deadline. Returns false when the deadline has passed. The cap is low on
/// purpose: when a refresh finishes, every waiter should see it within a few ms (with a
/// 64 ms cap, the 8-process race measured ~70 ms of tail behind a 108 ms refresh), and a
/// try is one cheap system call.
fn backoff(attempt: &mut u32, deadline: Instant) -> bool {
    backoff_to(attempt, deadline, 3)
}

/// [`backoff`] doubling up to `2^max_shift` ms.
fn backoff_to(attempt: &mut u32, deadline: Instant, max_shift: u32) -> bool {
    let now = Instant::now();
    if now >= deadline {
        return false;
    }
    let base = 1u64 << (*attempt).min(max_shift);
    *attempt += 1;
    let jitter = crate::rng::below(base * 500 + 1);
    let wait = Duration::from_micros(base * 1000 + jitter).min(deadline - now);
    thread::sleep(wait);
    true
}

/// One or more `flock`s, released together in reverse order of taking.
#[derive(Debug)]
pub struct FileLock {
    files: Vec<File>,
}

/// Opens (creating 0600) a lock file, refusing anything but a regular file: `O_NOFOLLOW`,
/// because a symlink planted at `auth.lock` in a shared directory made hap, as root, create
/// a file in a root-only directory (issue 10, item 11); `O_NONBLOCK`, because opening a
/// planted FIFO would otherwise block.
fn open_lock_file(path: &Path) -> Result<File> {
    crate::fsio::ensure_parent(path)?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                Error::new(
                    crate::Status::Io,
                    format!(
                        "lock file {} is a symbolic link: hap never follows a link there (one \
                         planted in a shared directory would redirect it); remove it",
                        path.display()
                    ),
                )
                .with_path(path)
            } else {
                Error::io(path, "cannot open lock file", &e)
            }
        })?;
    let meta = file
        .metadata()
        .map_err(|e| Error::io(path, "cannot stat lock file", &e))?;
    if !meta.is_file() {
        return Err(Error::new(
            crate::Status::Io,
            format!(
                "lock file {} is not a regular file: move it aside",
                path.display()
            ),
        )
        .with_path(path));
    }
    Ok(file)
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
        FileLock::acquire_all(&[path.to_path_buf()], deadline, timeout_ms, waited)
    }

    /// Takes the `flock` of every path, in the order given, all by one `deadline`. Two
    /// spellings of one lock file (a directory reached through a symlink) are locked once:
    /// a second `flock` on another descriptor of the same file would wait on ourselves.
    pub fn acquire_all(
        paths: &[PathBuf],
        deadline: Instant,
        timeout_ms: u64,
        waited: &mut bool,
    ) -> Result<FileLock> {
        let mut held = FileLock { files: Vec::new() };
        let mut seen: Vec<(u64, u64)> = Vec::new();
        for path in paths {
            let file = open_lock_file(path)?;
            let m = file
                .metadata()
                .map_err(|e| Error::io(path, "cannot stat lock file", &e))?;
            if seen.contains(&(m.dev(), m.ino())) {
                continue;
            }
            seen.push((m.dev(), m.ino()));
            let mut attempt = 0;
            loop {
                // SAFETY: the descriptor is open for the life of `file`.
                let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
                if rc == 0 {
                    held.files.push(file);
                    break;
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
        Ok(held)
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Closing would release it too; unlocking first makes the release independent of
        // any descriptor a forked child may have inherited.
        while let Some(file) = self.files.pop() {
            // SAFETY: the descriptor is open for the life of `file`.
            unsafe {
                libc::flock(file.as_raw_fd(), libc::LOCK_UN);
            }
        }
    }
}

/// The directory this process made, held open.
///
/// Why open: a holder stopped for more than 60 s (SIGSTOP, a suspended laptop) finds on
/// resume that Claude Code has removed its stale directory and made its own; re-touching
/// and removing "the path" then breaks Claude Code's valid lock (issue 10, item 9). So the
/// holder touches only through this descriptor (`futimens` on its own inode, whoever now
/// owns the name), and writes the owner file or removes the directory only while the path
/// still is this directory: same (device, inode) as the descriptor (an inode cannot be
/// reused while a descriptor keeps it alive, unlike after a close: tmpfs and ext4 hand a
/// freed number out again at once) and the mtime this process last wrote (so a filesystem
/// with unstable inode numbers cannot fool it). Not ctime: our own touch changes it.
#[derive(Debug)]
struct Mine {
    path: PathBuf,
    dir: File,
    /// The mtime (ns) this process last wrote, as the filesystem stored it.
    mtime_ns: Mutex<i128>,
}

fn mtime_ns(m: &fs::Metadata) -> i128 {
    m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128
}

impl Mine {
    fn still_ours(&self) -> bool {
        let (Ok(at_path), Ok(ours)) = (fs::symlink_metadata(&self.path), self.dir.metadata())
        else {
            return false;
        };
        let last = *self.mtime_ns.lock().unwrap_or_else(|p| p.into_inner());
        at_path.dev() == ours.dev() && at_path.ino() == ours.ino() && mtime_ns(&at_path) == last
    }

    /// Keeps the lock fresh, and the owner file current, while it is still ours. False
    /// once it is not (the toucher stops then).
    fn touch(&self) -> bool {
        if !self.still_ours() {
            crate::log::debug(format_args!(
                "{} was taken over while this process held it; left alone",
                self.path.display()
            ));
            return false;
        }
        let _ = self.dir.set_modified(SystemTime::now());
        if let Ok(m) = self.dir.metadata() {
            *self.mtime_ns.lock().unwrap_or_else(|p| p.into_inner()) = mtime_ns(&m);
        }
        write_owner(&self.path, &self.dir);
        true
    }
}

/// Claude Code's `.oauth_refresh.lock` directory, held until dropped.
#[derive(Debug)]
pub struct RefreshLockDir {
    mine: Arc<Mine>,
    stop: Option<mpsc::Sender<()>>,
    toucher: Option<thread::JoinHandle<()>>,
}

fn owner_path(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".hap-owner");
    dir.with_file_name(name)
}

/// `(inode, ctime ns)` of a directory: what identifies it to another process, which holds
/// no descriptor on it (see `left_by_dead_hap`).
fn identity(m: &fs::Metadata) -> (u64, i128) {
    (
        m.ino(),
        m.ctime() as i128 * 1_000_000_000 + m.ctime_nsec() as i128,
    )
}

/// Writes `<dir>.hap-owner` ("pid inode ctime") for the directory open as `dir`: a new 0600
/// file created exclusively (`O_EXCL` never follows a link at its name) and renamed over
/// the old one (a rename replaces a planted symlink, never its target). As root, a plain
/// write once truncated and overwrote the root-only file a planted link pointed to, with
/// mode 0666 under umask 000 (issue 10, item 11).
fn write_owner(path: &Path, dir: &File) {
    let Ok(m) = dir.metadata() else { return };
    let (ino, ctime) = identity(&m);
    let owner = owner_path(path);
    let mut name = owner.file_name().unwrap_or_default().to_os_string();
    name.push(format!(
        ".{}-{:016x}.tmp",
        std::process::id(),
        crate::rng::next_u64()
    ));
    let tmp = owner.with_file_name(name);
    let written = (|| -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
        f.write_all(format!("{} {ino} {ctime}\n", std::process::id()).as_bytes())?;
        fs::rename(&tmp, &owner)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
}

/// The owner file's fields, read without following a link, blocking on a FIFO or reading
/// more than a line's worth.
fn read_owner(dir: &Path) -> Option<(i32, u64, i128)> {
    let path = owner_path(dir);
    let (f, meta) = crate::fsio::open_regular(&path, true).ok()??;
    let bytes = crate::fsio::read_capped(f, &meta, &path, 256).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let mut it = text.split_whitespace();
    Some((
        it.next()?.parse::<i32>().ok().filter(|p| *p > 0)?,
        it.next()?.parse::<u64>().ok()?,
        it.next()?.parse::<i128>().ok()?,
    ))
}

/// The pid named by `<dir>.hap-owner`, when hap left one beside this lock directory.
pub fn owner_pid(dir: &Path) -> Option<i32> {
    read_owner(dir).map(|(pid, _, _)| pid)
}

/// Whether a process with this pid exists (signal 0). A pid we may not signal exists.
pub fn pid_alive(pid: i32) -> bool {
    // SAFETY: signal 0 sends nothing; it only asks whether the pid exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// The hap process `<dir>.hap-owner` names beside a Claude Code lock directory, for tools.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockOwner {
    pub pid: i32,
    pub alive: bool,
}

/// Who holds the lock directory `dir`, when hap left an owner file beside it.
pub fn lock_owner(dir: &Path) -> Option<LockOwner> {
    owner_pid(dir).map(|pid| LockOwner {
        pid,
        alive: pid_alive(pid),
    })
}

/// One non-blocking try at a lock file's `flock`, released at once: `Ok(true)` when it was
/// free, `Ok(false)` when a running process holds it. Never waits, never creates more than
/// the lock file itself (as any hap process would).
pub fn flock_is_free(path: &Path) -> Result<bool> {
    let mut waited = false;
    match FileLock::acquire(path, Instant::now(), 0, &mut waited) {
        Ok(held) => {
            drop(held);
            Ok(true)
        }
        Err(e) if e.status == crate::Status::LockTimeout => Ok(false),
        Err(e) => Err(e),
    }
}

/// True when the directory was left by a hap process that has since died.
fn left_by_dead_hap(dir: &Path) -> bool {
    let Some((pid, ino, ctime)) = read_owner(dir) else {
        return false;
    };
    if fs::symlink_metadata(dir).ok().map(|m| identity(&m)) != Some((ino, ctime)) {
        return false;
    }
    !pid_alive(pid)
}

/// Removes a stale lock directory (and the owner file that described it). `Err` says why
/// it cannot be removed: then it is as good as held.
fn remove_stale(path: &Path) -> std::result::Result<(), String> {
    let before = read_owner(path);
    let old = fs::symlink_metadata(path).ok().map(|m| identity(&m));
    match fs::remove_dir(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.to_string()),
    }
    // Only the owner file of the directory just removed: a sibling may already have made
    // a new directory and written its own.
    if let (Some((_, ino, ctime)), Some(old)) = (before, old) {
        if (ino, ctime) == old && read_owner(path) == before {
            let _ = fs::remove_file(owner_path(path));
        }
    }
    Ok(())
}

impl RefreshLockDir {
    pub fn acquire(
        path: &Path,
        deadline: Instant,
        timeout_ms: u64,
        waited: &mut bool,
    ) -> Result<RefreshLockDir> {
        Self::acquire_stale_after(path, REFRESH_LOCK_STALE, deadline, timeout_ms, waited)
    }

    /// [`acquire`](Self::acquire) for a lock directory its other takers call stale after
    /// `stale` (Claude Code's `.storage-write.lock`: 15 s).
    pub fn acquire_stale_after(
        path: &Path,
        stale: Duration,
        deadline: Instant,
        timeout_ms: u64,
        waited: &mut bool,
    ) -> Result<RefreshLockDir> {
        crate::fsio::ensure_parent(path)?;
        let mut attempt = 0;
        let (dir, m) = loop {
            let made = Instant::now();
            match fs::DirBuilder::new().mode(0o700).create(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    *waited = true;
                    // Why a stale lock could not be removed. A lock nobody can remove is a
                    // held lock: a regular file at the path, a non-empty directory, another
                    // user's directory in a sticky one once made `acquire` retry at 100% CPU
                    // forever, past its deadline, holding `.credentials.lock` (issue 10,
                    // item 6).
                    let mut stuck = None;
                    if Self::is_stale(path, stale) || left_by_dead_hap(path) {
                        // The holder died without releasing. Remove and retake; if a
                        // sibling beat us to it, mkdir fails again and we wait on theirs.
                        crate::log::debug(format_args!("taking over stale {}", path.display()));
                        match remove_stale(path) {
                            Ok(()) => continue,
                            Err(why) => stuck = Some(why),
                        }
                    }
                    let waiting = if stuck.is_some() {
                        backoff_to(&mut attempt, deadline, 6)
                    } else {
                        backoff(&mut attempt, deadline)
                    };
                    if !waiting {
                        return Err(Self::timeout(path, timeout_ms, stuck));
                    }
                    continue;
                }
                Err(e) => return Err(Error::io(path, "cannot create lock directory", &e)),
            }
            let dir = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_CLOEXEC | libc::O_DIRECTORY | libc::O_NOFOLLOW)
                .open(path)
                .and_then(|d| d.metadata().map(|m| (d, m)));
            let (dir, m) = match dir {
                Ok(d) => d,
                Err(e) => {
                    let _ = fs::remove_dir(path);
                    return Err(Error::io(path, "cannot open lock directory", &e));
                }
            };
            // Stopped between mkdir and open for long enough that the directory could have
            // gone stale and been taken over (SIGSTOP, a suspended machine): the one just
            // opened may be someone else's, and identity taken from it would let us touch and
            // remove their lock (issue 10, item 9). Take nothing from it; start over, which
            // waits on the directory like any other holder's.
            if made.elapsed() >= stale / 2 {
                crate::log::debug(format_args!(
                    "{}: stopped between mkdir and open; not trusting the directory",
                    path.display()
                ));
                continue;
            }
            break (dir, m);
        };
        let mine = Arc::new(Mine {
            path: path.to_path_buf(),
            dir,
            mtime_ns: Mutex::new(mtime_ns(&m)),
        });
        write_owner(path, &mine.dir);
        let (tx, rx) = mpsc::channel::<()>();
        let m2 = mine.clone();
        let toucher = thread::Builder::new()
            .name("hap-refresh-lock".into())
            .spawn(move || {
                // Keeps the lock fresh while a slow refresh runs, so nobody takes it over.
                while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(REFRESH_LOCK_TOUCH)
                {
                    if !m2.touch() {
                        break;
                    }
                }
            })
            .ok();
        Ok(RefreshLockDir {
            mine,
            stop: Some(tx),
            toucher,
        })
    }

    fn timeout(path: &Path, timeout_ms: u64, stuck: Option<String>) -> Error {
        let mut e = Error::lock_timeout(path, timeout_ms);
        let not_dir = fs::symlink_metadata(path).is_ok_and(|m| !m.is_dir());
        if let Some(why) = stuck {
            e.message = format!(
                "{} is a stale lock (its holder is gone) that hap cannot remove ({why}); no \
                 refresh can run until it is gone: remove it (rm -r {})",
                path.display(),
                path.display()
            );
        } else if not_dir {
            e.message = format!(
                "{} is not a directory, so Claude Code's refresh lock cannot be taken: \
                 remove it (rm {})",
                path.display(),
                path.display()
            );
        }
        e
    }

    /// Stale once its mtime is older than `stale`: only the mtime is judged, so a test
    /// makes a lock stale by backdating it (`utimes`) instead of waiting 60 s.
    fn is_stale(path: &Path, stale: Duration) -> bool {
        match fs::symlink_metadata(path).and_then(|m| m.modified()) {
            Ok(mtime) => SystemTime::now()
                .duration_since(mtime)
                .is_ok_and(|age| age > stale),
            // Vanished between mkdir and stat: not stale, just retry.
            Err(_) => false,
        }
    }
}

/// Every refresh lock directory Claude Code's releases take, held together and released in
/// reverse order of taking: `<dir>/.oauth_refresh.lock` (2.1.128 and later), then
/// `<realpath(dir)>.lock`, i.e. `~/.claude.lock` (every release; the only one 2.1.126 and
/// older take). With only the first, 2.1.112 double-POSTed in 30 of 34 overlapping rounds of
/// the interop race (issue 12).
#[derive(Debug)]
pub struct ClaudeLocks {
    held: Vec<RefreshLockDir>,
}

impl ClaudeLocks {
    /// Takes each directory of `paths` in order, all by one `deadline`.
    pub fn acquire(
        paths: &[PathBuf],
        deadline: Instant,
        timeout_ms: u64,
        waited: &mut bool,
    ) -> Result<ClaudeLocks> {
        let mut held = ClaudeLocks { held: Vec::new() };
        for p in paths {
            held.held
                .push(RefreshLockDir::acquire(p, deadline, timeout_ms, waited)?);
        }
        Ok(held)
    }
}

impl Drop for ClaudeLocks {
    fn drop(&mut self) {
        while let Some(l) = self.held.pop() {
            drop(l);
        }
    }
}

impl Drop for RefreshLockDir {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.toucher.take() {
            let _ = t.join();
        }
        let path = &self.mine.path;
        // The owner file only if it describes our directory (a hap that took over wrote
        // its own), and the directory only while it is ours: after a takeover the path is
        // another holder's lock.
        let ours = self.mine.dir.metadata().ok().map(|m| m.ino());
        if let Some((pid, ino, _)) = read_owner(path) {
            if pid == std::process::id() as i32 && Some(ino) == ours {
                let _ = fs::remove_file(owner_path(path));
            }
        }
        if self.mine.still_ours() {
            let _ = fs::remove_dir(path);
        } else {
            crate::log::debug(format_args!(
                "{} is no longer this process's lock (taken over while it was stale); left alone",
                path.display()
            ));
        }
    }
}

/// A lock a store needs held around a refresh of its pair, as data (the store's
/// `Authority::locks` lists them; [`Held::take`] takes them). Two kinds exist because two
/// protocols exist on disk; a store that needs another (a Redis `SET NX`) adds a variant here
/// and its taking in [`Held::take`], so every lock is still taken in one place, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockSpec {
    /// An exclusive `flock` on each file, in the order given (one per spelling of a
    /// symlinked store path, nearest the target first: see `CredentialsFile::lock_paths`).
    Flock(Vec<PathBuf>),
    /// Claude Code's refresh lock directories ([`RefreshLockDir`], `proper-lockfile`), in
    /// the order its releases take them, held together as [`ClaudeLocks`]:
    /// `<dir>/.oauth_refresh.lock`, then `<realpath(dir)>.lock` (see
    /// `CredentialsFile::refresh_lock_dirs`).
    ClaudeCodeDirs(Vec<PathBuf>),
    /// A lease in a network service: the fleet's Redis `SET NX PX` (issue 16,
    /// `store/redis.rs`), taken by the store's own code, released when dropped.
    Lease(LeaseSource),
}

/// Takes a network lease by a deadline; the returned guard holds it until dropped.
pub trait TakeLease: Send + Sync {
    fn take(&self, deadline: Instant) -> Result<Box<dyn Send>>;
    /// For messages and `Debug`: where the lease lives, never a secret.
    fn name(&self) -> String;
}

/// A [`TakeLease`] as lock data: equal when it is the same source.
#[derive(Clone)]
pub struct LeaseSource(pub std::sync::Arc<dyn TakeLease>);

impl std::fmt::Debug for LeaseSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LeaseSource({})", self.0.name())
    }
}

impl PartialEq for LeaseSource {
    fn eq(&self, other: &LeaseSource) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for LeaseSource {}

enum HeldLock {
    Flock(Vec<PathBuf>, FileLock),
    Dirs { _held: ClaudeLocks },
    Lease { _held: Box<dyn Send> },
}

impl std::fmt::Debug for HeldLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeldLock::Flock(p, _) => write!(f, "Flock({p:?})"),
            HeldLock::Dirs { .. } => write!(f, "Dirs"),
            HeldLock::Lease { .. } => write!(f, "Lease"),
        }
    }
}

/// The locks of one transaction, taken in the order listed and released in reverse order
/// when dropped. A store's write proves it is inside them with [`Held::flock`].
#[derive(Debug, Default)]
pub struct Held {
    locks: Vec<HeldLock>,
}

impl Held {
    /// Takes every lock of `specs`, in order, all by one `deadline`; on failure the ones
    /// already taken are released. `waited` is set when any was not free at the first try.
    pub fn take(
        specs: &[LockSpec],
        deadline: Instant,
        timeout_ms: u64,
        waited: &mut bool,
    ) -> Result<Held> {
        let mut held = Held::default();
        for spec in specs {
            held.locks.push(match spec {
                LockSpec::Flock(paths) => HeldLock::Flock(
                    paths.clone(),
                    FileLock::acquire_all(paths, deadline, timeout_ms, waited)?,
                ),
                LockSpec::ClaudeCodeDirs(dirs) => HeldLock::Dirs {
                    _held: ClaudeLocks::acquire(dirs, deadline, timeout_ms, waited)?,
                },
                LockSpec::Lease(source) => HeldLock::Lease {
                    _held: source.0.take(deadline)?,
                },
            });
        }
        Ok(held)
    }

    /// The `flock` held on exactly `paths` (as a [`LockSpec::Flock`] listed them), if it is
    /// one of these locks: the proof a read-modify-write of that file asks for.
    pub fn flock(&self, paths: &[PathBuf]) -> Option<&FileLock> {
        self.locks.iter().find_map(|l| match l {
            HeldLock::Flock(p, lock) if p.as_slice() == paths => Some(lock),
            _ => None,
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        while let Some(lock) = self.locks.pop() {
            drop(lock);
        }
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

    #[test]
    fn two_spellings_of_one_lock_file_are_locked_once() {
        // `real/` reached as `alias/` too: locking both spellings from one process must not
        // wait on itself (a second flock on another descriptor would, until the deadline).
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("real")).unwrap();
        std::os::unix::fs::symlink("real", d.path().join("alias")).unwrap();
        let paths = [
            d.path().join("real/.credentials.lock"),
            d.path().join("alias/.credentials.lock"),
        ];
        let mut w = false;
        let held = FileLock::acquire_all(
            &paths,
            Instant::now() + Duration::from_millis(200),
            200,
            &mut w,
        )
        .unwrap();
        assert!(!w);
        // And it is held: another taker of either spelling waits.
        let e = FileLock::acquire(&paths[1], Instant::now(), 0, &mut w).unwrap_err();
        assert_eq!(e.status, crate::Status::LockTimeout);
        drop(held);
        FileLock::acquire(&paths[1], Instant::now(), 0, &mut w).unwrap();
    }

    #[test]
    fn a_lock_taken_over_while_held_is_neither_touched_nor_removed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(".oauth_refresh.lock");
        let mut w = false;
        let l = RefreshLockDir::acquire(&p, Instant::now() + Duration::from_secs(1), 1000, &mut w)
            .unwrap();
        assert!(l.mine.touch(), "ours while nobody took it");
        // The holder was stopped past the stale age; another process took over, as Claude
        // Code does: remove the stale directory, make its own.
        File::open(&p)
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(70))
            .unwrap();
        fs::remove_dir(&p).unwrap();
        fs::create_dir(&p).unwrap();
        let old = SystemTime::now() - Duration::from_secs(3);
        File::open(&p).unwrap().set_modified(old).unwrap();
        assert!(!l.mine.touch(), "no longer ours");
        assert_eq!(fs::metadata(&p).unwrap().modified().unwrap(), old);
        drop(l);
        assert!(p.is_dir(), "the new holder's lock survives our release");
        assert_eq!(fs::metadata(&p).unwrap().modified().unwrap(), old);
    }

    #[test]
    fn an_unremovable_stale_lock_is_a_held_lock_until_the_deadline() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(".oauth_refresh.lock");
        fs::create_dir(&p).unwrap();
        fs::write(p.join("x"), b"").unwrap();
        File::open(&p)
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(120))
            .unwrap();
        let mut w = false;
        let t0 = Instant::now();
        let e =
            RefreshLockDir::acquire(&p, Instant::now() + Duration::from_millis(200), 200, &mut w)
                .unwrap_err();
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "honours the deadline"
        );
        assert_eq!(e.status, crate::Status::LockTimeout);
        assert!(e.message.contains("cannot remove"), "{}", e.message);
        assert!(p.join("x").exists());
    }

    #[test]
    fn the_owner_file_is_private_and_replaces_a_planted_link() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(".oauth_refresh.lock");
        let victim = d.path().join("victim");
        fs::write(&victim, b"keep").unwrap();
        std::os::unix::fs::symlink(&victim, owner_path(&p)).unwrap();
        let mut w = false;
        let l = RefreshLockDir::acquire(&p, Instant::now() + Duration::from_secs(1), 1000, &mut w)
            .unwrap();
        let m = fs::symlink_metadata(owner_path(&p)).unwrap();
        assert!(m.is_file());
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
        assert_eq!(owner_pid(&p), Some(std::process::id() as i32));
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        drop(l);
        assert!(!owner_path(&p).exists() && !p.exists());
        // No temp file left beside them.
        let left: Vec<_> = fs::read_dir(d.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("victim")]);
    }
}
