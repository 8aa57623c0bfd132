//! Change notification for the stores, so the hot resolve makes no system call at all.
//!
//! Why: `stat` costs about 1 µs per call on a virtualised machine (measured 1.07 µs here),
//! and a resolve must notice two files. An inotify watch on each store's directory, read by
//! one small thread per pool, flips an atomic flag when either file is replaced, changed or
//! removed; the hot path only loads that flag.
//!
//! The flag is trusted for one thing only: serving a cached token that is still valid.
//! Every other outcome (a token to refresh, a bench, nothing usable) re-checks with `stat`,
//! and the refresh transaction re-reads its store under the lock whatever any cache says.
//! So the thread's wake-up latency can at worst serve a still-valid access token a sibling
//! replaced microseconds ago, never a stale decision.
//!
//! Anything unusual (inotify unavailable or out of watches, a missing directory, a
//! symlinked store, an event queue overflow) falls back to `stat` on every call: slower,
//! never wrong.

use std::ffi::{CString, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub struct StoreWatch {
    /// Set by the watcher when a store may have changed; cleared by the reader before it
    /// looks, so a change during the look sets it again.
    dirty: Arc<AtomicBool>,
    /// Cleared for good when the watch can no longer be trusted.
    healthy: Arc<AtomicBool>,
    stop_fd: libc::c_int,
}

struct Watched {
    wd: libc::c_int,
    names: Vec<OsString>,
}

const MASK: u32 = libc::IN_MODIFY
    | libc::IN_ATTRIB
    | libc::IN_CLOSE_WRITE
    | libc::IN_MOVED_TO
    | libc::IN_MOVED_FROM
    | libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF;

impl StoreWatch {
    /// Watches the directories of `files`. `None` when any of them cannot be watched
    /// exactly; the caller then stats on every call.
    pub fn start(files: &[&Path]) -> Option<StoreWatch> {
        if files.is_empty() {
            return None;
        }
        // SAFETY: plain syscalls on descriptors this function owns.
        unsafe {
            let fd = libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK);
            if fd < 0 {
                return None;
            }
            let mut watched: Vec<Watched> = Vec::new();
            for f in files {
                // A symlinked store changes where its target lives; keep it simple there.
                if std::fs::symlink_metadata(f).is_ok_and(|m| m.file_type().is_symlink()) {
                    libc::close(fd);
                    return None;
                }
                let (Some(dir), Some(name)) = (f.parent(), f.file_name()) else {
                    libc::close(fd);
                    return None;
                };
                let Ok(cdir) = CString::new(dir.as_os_str().as_bytes()) else {
                    libc::close(fd);
                    return None;
                };
                let wd = libc::inotify_add_watch(fd, cdir.as_ptr(), MASK | libc::IN_ONLYDIR);
                if wd < 0 {
                    libc::close(fd);
                    return None;
                }
                match watched.iter_mut().find(|w| w.wd == wd) {
                    Some(w) => w.names.push(name.to_os_string()),
                    None => watched.push(Watched {
                        wd,
                        names: vec![name.to_os_string()],
                    }),
                }
            }
            let mut pipe = [0; 2];
            if libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
                libc::close(fd);
                return None;
            }
            let dirty = Arc::new(AtomicBool::new(true));
            let healthy = Arc::new(AtomicBool::new(true));
            let (d, h) = (dirty.clone(), healthy.clone());
            let stop_read = pipe[0];
            let thread = std::thread::Builder::new()
                .name("hap-store-watch".into())
                .spawn(move || {
                    run(fd, stop_read, &watched, &d, &h);
                    crate::fault::pause("watch_teardown");
                    libc::close(fd);
                    libc::close(stop_read);
                });
            // Detached (the handle is dropped): see `Drop` below.
            match thread {
                Ok(_) => Some(StoreWatch {
                    dirty,
                    healthy,
                    stop_fd: pipe[1],
                }),
                Err(_) => {
                    libc::close(fd);
                    libc::close(pipe[0]);
                    libc::close(pipe[1]);
                    None
                }
            }
        }
    }

    /// True when nothing has changed since the last [`StoreWatch::begin_look`]: the cached
    /// view may serve a still-valid token without a system call.
    #[inline]
    pub fn unchanged(&self) -> bool {
        self.healthy.load(Ordering::Acquire) && !self.dirty.load(Ordering::Acquire)
    }

    /// Called before stat-ing and reading the stores.
    #[inline]
    pub fn begin_look(&self) {
        self.dirty.store(false, Ordering::Release);
    }
}

impl Drop for StoreWatch {
    /// Tells the thread to end and returns at once. Not joined: the thread then closes its
    /// inotify descriptor, and the kernel's teardown of one takes milliseconds (it waits for
    /// an RCU grace period); joining spent them on the caller's thread in every
    /// `hap_pool_free` (80-90 % of a 12-16 ms `hap token`: issue 10). The thread touches
    /// only what it owns (its descriptors and two `Arc`s), so outliving the pool is safe.
    /// (It runs library code until it ends: a host must not unload libhap right after
    /// `hap_pool_free`. None of the bindings unloads it, and a Rust cdylib with thread-local
    /// destructors cannot be unloaded safely anyway.)
    fn drop(&mut self) {
        // SAFETY: closing the write end wakes the thread's poll with POLLHUP.
        unsafe {
            libc::close(self.stop_fd);
        }
    }
}

/// The watcher thread: poll the inotify descriptor and the stop pipe; flag changes.
///
/// # Safety
/// `fd` is an inotify descriptor and `stop` the read end of a pipe, both open until this
/// returns.
unsafe fn run(
    fd: libc::c_int,
    stop: libc::c_int,
    watched: &[Watched],
    dirty: &AtomicBool,
    healthy: &AtomicBool,
) {
    let mut buf = [0u8; 4096];
    loop {
        let mut fds = [
            libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: stop,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is two initialised pollfd on this stack frame; both descriptors are
        // open (the caller's contract).
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if rc < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            healthy.store(false, Ordering::Release);
            return;
        }
        if fds[1].revents != 0 {
            return;
        }
        loop {
            // SAFETY: `buf` is writable for `buf.len()` bytes; `fd` is open.
            let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            let mut off = 0usize;
            let n = n as usize;
            let header = std::mem::size_of::<libc::inotify_event>();
            while off + header <= n {
                // SAFETY: `off + header <= n <= buf.len()`: the event header lies inside the
                // bytes the kernel wrote; read_unaligned because they carry no alignment.
                let ev: libc::inotify_event =
                    unsafe { std::ptr::read_unaligned(buf.as_ptr().add(off).cast()) };
                let name_bytes = &buf[off + header..(off + header + ev.len as usize).min(n)];
                let name_end = name_bytes
                    .iter()
                    .position(|&b| b == 0)
                    .unwrap_or(name_bytes.len());
                let name = OsString::from_vec(name_bytes[..name_end].to_vec());
                off += header + ev.len as usize;
                if ev.mask
                    & (libc::IN_Q_OVERFLOW
                        | libc::IN_IGNORED
                        | libc::IN_DELETE_SELF
                        | libc::IN_MOVE_SELF)
                    != 0
                {
                    // The directory went away or events were lost: stop trusting the flag.
                    healthy.store(false, Ordering::Release);
                    dirty.store(true, Ordering::Release);
                    continue;
                }
                if watched
                    .iter()
                    .any(|w| w.wd == ev.wd && w.names.contains(&name))
                {
                    dirty.store(true, Ordering::Release);
                }
            }
        }
    }
}
