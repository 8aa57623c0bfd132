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

/// Reads a whole file with the stamp of exactly the bytes read (fstat on the open file),
/// or `None` when it does not exist.
pub fn read_with_stamp(path: &Path) -> Result<Option<(Vec<u8>, FileStamp)>> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, "cannot open", &e)),
    };
    let meta = f
        .metadata()
        .map_err(|e| Error::io(path, "cannot stat", &e))?;
    if !meta.is_file() {
        return Err(Error::new(
            crate::Status::Io,
            format!("{} is not a regular file", path.display()),
        )
        .with_path(path));
    }
    let mut buf = Vec::with_capacity(meta.len() as usize + 1);
    f.read_to_end(&mut buf)
        .map_err(|e| Error::io(path, "cannot read", &e))?;
    Ok(Some((buf, FileStamp::of(&meta))))
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

/// Creates missing parent directories with mode 0700 (they will hold secrets).
pub fn ensure_parent(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| Error::io(dir, "cannot create directory", &e))?;
        }
    }
    Ok(())
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
