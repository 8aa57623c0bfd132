//! File primitives every store shares: change detection by `stat`, and the one atomic write.
//!
//! The write is the classic durable replace: temp file in the same directory created
//! `O_EXCL` with mode 0600, write, fsync, rename over the target, fsync the directory. A
//! crash at any instant leaves the old file or the new one, never a torn one. Symlinks are
//! resolved first and the real target is replaced, so a symlinked credentials file (dotfile
//! managers do this) stays a symlink.

use crate::error::{Error, Result};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// What `stat` says about a file: enough to notice any replace or in-place edit. A rename
/// changes the inode; an in-place edit changes size or mtime (nanoseconds). Not ctime: the
/// rename that publishes our own write changes it, and the writer knows its own stamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

impl FileStamp {
    pub fn of(m: &fs::Metadata) -> FileStamp {
        FileStamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
        }
    }
}

/// `None` when the file does not exist. Follows symlinks, as readers do.
pub fn stamp(path: &Path) -> Result<Option<FileStamp>> {
    match fs::metadata(path) {
        Ok(m) => Ok(Some(FileStamp::of(&m))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, "cannot stat", &e)),
    }
}

/// The largest store hap reads. Stores are a few KiB of JSON; without a cap a 6 GiB sparse
/// credentials file made the host abort on allocation failure (issue 10, item 8), and 2 GiB
/// cost 2 GiB of memory and 9-15 s per read.
pub(crate) const MAX_STORE_BYTES: u64 = 16 << 20;

fn not_regular(path: &Path) -> Error {
    Error::new(
        crate::Status::Io,
        format!(
            "{} is not a regular file (a FIFO, device, socket or directory): move it aside",
            path.display()
        ),
    )
    .with_path(path)
}

/// Opens `path` for reading without ever blocking, and only if it is a regular file.
///
/// `O_NONBLOCK`: a FIFO planted at a store path hung `hap_pool_open` forever in `open`
/// (issue 10, item 7); with it the open returns at once and the `fstat` of the descriptor
/// (not a `stat` before the open, which a swap could race) refuses it. The flag is then
/// cleared so a filesystem that honours it for regular files cannot return `EAGAIN`.
/// `nofollow`: for hap's own files (lock owner files), where a symlink can only be planted.
/// `None` when the file does not exist.
pub fn open_regular(path: &Path, nofollow: bool) -> Result<Option<(File, fs::Metadata)>> {
    let mut flags = libc::O_CLOEXEC | libc::O_NONBLOCK;
    if nofollow {
        flags |= libc::O_NOFOLLOW;
    }
    let f = match OpenOptions::new().read(true).custom_flags(flags).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if nofollow && e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(Error::new(
                crate::Status::Io,
                format!(
                    "{} is a symbolic link where hap keeps a file of its own: remove it",
                    path.display()
                ),
            )
            .with_path(path))
        }
        Err(e) => return Err(Error::io(path, "cannot open", &e)),
    };
    let meta = f
        .metadata()
        .map_err(|e| Error::io(path, "cannot stat", &e))?;
    if !meta.is_file() {
        return Err(not_regular(path));
    }
    // SAFETY: F_SETFL on a descriptor `f` owns; 0 clears O_NONBLOCK (the only status flag
    // it was opened with).
    if unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETFL, 0) } != 0 {
        return Err(Error::io(
            path,
            "cannot clear O_NONBLOCK on",
            &std::io::Error::last_os_error(),
        ));
    }
    Ok(Some((f, meta)))
}

/// Reads an open regular file whole, refusing more than `cap` bytes: by its size before any
/// allocation, and by what was actually read (a file growing while it is read). The buffer
/// is reserved fallibly, so a failed allocation is an error, never an abort of the host.
pub fn read_capped(mut f: File, meta: &fs::Metadata, path: &Path, cap: u64) -> Result<Vec<u8>> {
    let too_large = |size: u64| {
        Error::new(
            crate::Status::Io,
            format!(
                "{} is too large ({size} bytes; hap reads stores of at most {} MiB): it is not a \
                 store hap or Claude Code wrote; move it aside",
                path.display(),
                cap >> 20
            ),
        )
        .with_path(path)
    };
    if meta.len() > cap {
        return Err(too_large(meta.len()));
    }
    let mut buf = Vec::new();
    buf.try_reserve_exact(meta.len() as usize + 1)
        .map_err(|_| {
            Error::new(
                crate::Status::Io,
                format!(
                    "cannot allocate {} bytes to read {}",
                    meta.len(),
                    path.display()
                ),
            )
            .with_path(path)
        })?;
    (&mut f)
        .take(cap + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Error::io(path, "cannot read", &e))?;
    if buf.len() as u64 > cap {
        return Err(too_large(buf.len() as u64));
    }
    Ok(buf)
}

/// Reads a whole store with the stamp of exactly the bytes read (fstat on the open file),
/// or `None` when it does not exist. Never blocks on a FIFO, never reads past
/// [`MAX_STORE_BYTES`], refuses a directory anyone could plant files in (see
/// [`check_dir_trust`]).
pub fn read_with_stamp(path: &Path) -> Result<Option<(Vec<u8>, FileStamp)>> {
    if let Some(dir) = path.parent() {
        check_dir_trust(dir)?;
    }
    let Some((f, meta)) = open_regular(path, false)? else {
        return Ok(None);
    };
    let buf = read_capped(f, &meta, path, MAX_STORE_BYTES)?;
    Ok(Some((buf, FileStamp::of(&meta))))
}

/// Refuses a directory other users can create files in (group- or world-writable without
/// the sticky bit) when that matters: hap running as root, or a directory the caller does
/// not own. Such a user could plant a symlink at a store or lock name that hap would
/// follow: as root, `.oauth_refresh.lock.hap-owner` -> a root-only file got truncated and
/// overwritten (issue 10, item 11). A directory of the caller's own gets a warning, once.
/// A directory that does not exist is not judged: hap creates it 0700.
pub fn check_dir_trust(dir: &Path) -> Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Ok(m) = fs::metadata(dir) else {
        return Ok(());
    };
    let mode = m.mode();
    if mode & 0o022 == 0 || mode & libc::S_ISVTX != 0 {
        return Ok(());
    }
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    let who = if euid == 0 {
        "hap runs as root"
    } else if m.uid() != euid {
        "hap's user does not own it"
    } else {
        static WARNED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
        let mut warned = WARNED.lock().unwrap_or_else(|p| p.into_inner());
        if !warned.iter().any(|d| d == dir) {
            warned.push(dir.to_path_buf());
            crate::log::warn(format_args!(
                "{} is mode {:04o}: other users can plant files and links beside your \
                 tokens; fix: chmod go-w {}",
                dir.display(),
                mode & 0o7777,
                dir.display()
            ));
        }
        return Ok(());
    };
    Err(Error::new(
        crate::Status::Io,
        format!(
            "refusing {}: it is writable by other users (mode {:04o}, no sticky bit) and {who}, \
             so a planted link could redirect hap's writes; fix: chmod go-w {}",
            dir.display(),
            mode & 0o7777,
            dir.display()
        ),
    )
    .with_path(dir))
}

/// The file a write must replace: the final target of a symlink chain, or the path itself.
pub fn write_target(path: &Path) -> Result<PathBuf> {
    let mut cur = path.to_path_buf();
    for _ in 0..40 {
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                let link =
                    fs::read_link(&cur).map_err(|e| Error::io(&cur, "cannot read link", &e))?;
                cur = if link.is_absolute() {
                    link
                } else {
                    cur.parent().unwrap_or(Path::new("/")).join(link)
                };
            }
            Ok(_) => return Ok(cur),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(cur),
            Err(e) => return Err(Error::io(&cur, "cannot stat", &e)),
        }
    }
    Err(Error::new(
        crate::Status::Io,
        format!("{}: too many levels of symbolic links", path.display()),
    )
    .with_path(path))
}

/// The path and every symlink hop after it, ending with the file it finally resolves to
/// (the path alone when it is no link). Two processes configured with two spellings of one
/// file (`~/.claude/.credentials.json`, a link, and its target) must share its locks and
/// journal: keyed on the configured path they made two POSTs with one refresh token
/// (issue 10, item 12).
pub fn link_chain(path: &Path) -> Result<Vec<PathBuf>> {
    let mut chain = vec![path.to_path_buf()];
    for _ in 0..40 {
        let cur = chain.last().expect("never empty");
        match fs::symlink_metadata(cur) {
            Ok(m) if m.file_type().is_symlink() => {
                let link =
                    fs::read_link(cur).map_err(|e| Error::io(cur, "cannot read link", &e))?;
                let next = if link.is_absolute() {
                    link
                } else {
                    cur.parent().unwrap_or(Path::new("/")).join(link)
                };
                chain.push(next);
            }
            Ok(_) => return Ok(chain),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(chain),
            Err(e) => return Err(Error::io(cur, "cannot stat", &e)),
        }
    }
    Err(Error::new(
        crate::Status::Io,
        format!("{}: too many levels of symbolic links", path.display()),
    )
    .with_path(path))
}

/// Creates missing parent directories with mode 0700 (they will hold secrets), and refuses
/// a parent other users could plant links in ([`check_dir_trust`]): every file hap creates
/// (stores, temp files, journal, lock files, Claude Code's lock directory) goes through here.
pub fn ensure_parent(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| Error::io(dir, "cannot create directory", &e))?;
        }
        check_dir_trust(dir)?;
    }
    Ok(())
}

/// Whether a directory entry is a temp file hap makes: a write's `.<name>.hap-<pid>-<random>.tmp`
/// (below) or the lock owner file's `.<dir>.hap-owner.<pid>-<random>.tmp` (`lock.rs`). One left
/// behind by an interrupted write may hold tokens.
pub fn is_temp_file_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(".hap-") && name.ends_with(".tmp")
}

/// Creates the temp file of a write: `.<name>.hap-<pid>-<random>.tmp`, `O_EXCL`, 0600.
/// The name must not be predictable: with a counter, a file planted at the next name made
/// the journal write after a refresh fail and dropped the new pair (issue 10, item 1). The
/// pid stays in the name so that `remove_orphaned_temps` can tell a dead writer's file.
/// `EEXIST` (a planted file, or a chance collision) just means: try another name.
fn create_temp(dir: &Path, name: &str, mut random: impl FnMut() -> u64) -> Result<(File, PathBuf)> {
    let mut last = None;
    for _ in 0..16 {
        let tmp = dir.join(format!(
            ".{name}.hap-{}-{:016x}.tmp",
            std::process::id(),
            random()
        ));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&tmp)
        {
            Ok(f) => return Ok((f, tmp)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some((tmp, e)),
            Err(e) => return Err(Error::io(&tmp, "cannot create", &e)),
        }
    }
    let (tmp, e) = last.expect("the loop ran");
    Err(Error::io(&tmp, "cannot create", &e))
}

/// Atomically replaces `path` (through symlinks) with `bytes`, mode 0600. Returns the stamp
/// the new file has, so the writer's cache knows its own write without another stat.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<FileStamp> {
    let target = write_target(path)?;
    ensure_parent(&target)?;
    let dir = target.parent().unwrap_or(Path::new("/")).to_path_buf();
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (mut f, tmp) = create_temp(&dir, &name, crate::rng::next_u64)?;
    let result = (|| -> Result<FileStamp> {
        // The umask may only narrow 0600; make it exact whatever the umask is.
        f.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io(&tmp, "cannot chmod", &e))?;
        crate::fault::point_mid_write(&mut f, bytes, &name);
        f.write_all(bytes)
            .map_err(|e| Error::io(&tmp, "cannot write", &e))?;
        f.sync_all()
            .map_err(|e| Error::io(&tmp, "cannot fsync", &e))?;
        let stamp = FileStamp::of(
            &f.metadata()
                .map_err(|e| Error::io(&tmp, "cannot stat", &e))?,
        );
        fs::rename(&tmp, &target).map_err(|e| Error::io(&target, "cannot replace", &e))?;
        if let Ok(d) = File::open(&dir) {
            // Makes the rename itself durable. Some filesystems refuse fsync on a
            // directory; the data is already safe then, so that is not an error.
            let _ = d.sync_all();
        }
        remove_orphaned_temps(&dir, &name);
        Ok(stamp)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes temp files of this store left by hap processes that died mid-write (they hold
/// half a store, tokens included). Only files named by our own pattern whose writer pid is
/// gone; a live writer's temp file is never touched.
fn remove_orphaned_temps(dir: &Path, name: &str) {
    let prefix = format!(".{name}.hap-");
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(rest) = file_name.to_str().and_then(|f| f.strip_prefix(&prefix)) else {
            continue;
        };
        let Some(pid) = rest
            .strip_suffix(".tmp")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: signal 0 only asks whether the pid exists.
        let gone = pid > 0
            && unsafe { libc::kill(pid, 0) } != 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_through_symlink_keeps_the_link() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().join("real.json");
        fs::write(&real, b"old").unwrap();
        let link = d.path().join("link.json");
        std::os::unix::fs::symlink("real.json", &link).unwrap();
        write_atomic(&link, b"new").unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read(&real).unwrap(), b"new");
        assert_eq!(
            fs::metadata(&real).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // No temp files left behind.
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 2);
    }

    #[test]
    fn creates_parents_0700() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a/b/auth.json");
        let st = write_atomic(&p, b"{}").unwrap();
        assert_eq!(stamp(&p).unwrap(), Some(st));
        let m = fs::metadata(d.path().join("a/b")).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o700);
    }

    #[test]
    fn reads_refuse_fifos_and_huge_files_without_blocking_or_loading() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo.json");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read_with_stamp(&fifo).unwrap_err();
        assert_eq!(e.status, crate::Status::Io);
        assert!(e.message.contains("not a regular file"), "{}", e.message);

        let big = d.path().join("big.json");
        File::create(&big)
            .unwrap()
            .set_len(MAX_STORE_BYTES + 1)
            .unwrap();
        let e = read_with_stamp(&big).unwrap_err();
        assert_eq!(e.status, crate::Status::Io);
        assert!(
            e.message.contains("too large") && e.message.contains("16 MiB"),
            "{}",
            e.message
        );

        // The cap is what was read, too, not only what fstat said.
        let small = d.path().join("small.json");
        fs::write(&small, b"0123456789").unwrap();
        let (f, meta) = open_regular(&small, false).unwrap().unwrap();
        assert!(read_capped(f, &meta, &small, 9).is_err());
        let (f, meta) = open_regular(&small, false).unwrap().unwrap();
        assert_eq!(read_capped(f, &meta, &small, 10).unwrap(), b"0123456789");
    }

    #[test]
    fn link_chain_ends_at_the_target() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("real.json"), b"{}").unwrap();
        std::os::unix::fs::symlink("real.json", d.path().join("hop.json")).unwrap();
        std::os::unix::fs::symlink(d.path().join("hop.json"), d.path().join("link.json")).unwrap();
        assert_eq!(
            link_chain(&d.path().join("link.json")).unwrap(),
            [
                d.path().join("link.json"),
                d.path().join("hop.json"),
                d.path().join("real.json")
            ]
        );
        assert_eq!(
            link_chain(&d.path().join("none.json")).unwrap(),
            [d.path().join("none.json")]
        );
    }

    #[test]
    fn directories_others_can_write_are_judged_by_who_runs_hap() {
        let d = tempfile::tempdir().unwrap();
        for (mode, ok) in [(0o700, true), (0o755, true), (0o1777, true), (0o777, false)] {
            fs::set_permissions(d.path(), fs::Permissions::from_mode(mode)).unwrap();
            // As root a non-sticky writable directory is refused; a user's own one only
            // warns.
            // SAFETY: geteuid cannot fail.
            let root = unsafe { libc::geteuid() } == 0;
            let r = check_dir_trust(d.path());
            assert_eq!(r.is_ok(), ok || !root, "mode {mode:o}");
            if let Err(e) = r {
                assert!(e.message.contains("chmod go-w"), "{}", e.message);
            }
        }
    }

    #[test]
    fn a_file_at_the_temp_name_is_stepped_around_not_an_error() {
        let d = tempfile::tempdir().unwrap();
        let pid = std::process::id();
        let planted = d.path().join(format!(".j.json.hap-{pid}-{:016x}.tmp", 7));
        fs::write(&planted, b"planted").unwrap();
        let mut draws = [7u64, 7, 8].into_iter();
        let (_, tmp) = create_temp(d.path(), "j.json", || draws.next().unwrap()).unwrap();
        assert_eq!(
            tmp,
            d.path().join(format!(".j.json.hap-{pid}-{:016x}.tmp", 8))
        );
        assert_eq!(fs::read(&planted).unwrap(), b"planted");
        // A name that is always taken ends in an error naming it, not a loop.
        let err = create_temp(d.path(), "j.json", || 7).unwrap_err();
        assert_eq!(err.path.as_deref(), Some(planted.as_path()));
    }

    #[test]
    fn temp_names_are_not_predictable() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("j.json");
        // The old names were `.j.json.hap-<pid>-<n>.tmp` with a counter from 0.
        for n in 0..64 {
            let name = format!(".j.json.hap-{}-{n}.tmp", std::process::id());
            fs::write(d.path().join(name), b"planted").unwrap();
        }
        write_atomic(&p, b"{}").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"{}");
    }
}
