//! Scaffolding for `tests/hostile/files.rs`: the `hap` binary run with a deadline (a hang
//! is a failure, not a stuck suite), and an unprivileged throwaway user for the repros that
//! root would bypass (permissions, sticky directories).
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

pub struct Run {
    /// `None` when the process was killed at the deadline (it hung) or by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    pub hung: bool,
}

impl Run {
    pub fn expect(&self, code: i32) -> &Run {
        assert!(
            !self.hung,
            "hap hung and was killed after {:?}; stderr:\n{}",
            self.elapsed, self.stderr
        );
        assert_eq!(
            self.code,
            Some(code),
            "exit code; stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// A user with no privileges, made once (CI runs as root): `hap-hostile`.
#[derive(Clone, Copy, Debug)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
}

pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The throwaway user, or `None` (said loudly) when the test does not run as root and so
/// can neither create one nor switch to it.
pub fn throwaway_user(test: &str) -> Option<User> {
    if !is_root() {
        eprintln!(
            "SKIPPED {test}: needs root to create and switch to an unprivileged user (CI runs as root)"
        );
        return None;
    }
    static USER: OnceLock<User> = OnceLock::new();
    Some(*USER.get_or_init(|| {
        const NAME: &str = "hap-hostile";
        let id = |flag: &str| -> Option<u32> {
            let out = Command::new("id").args([flag, NAME]).output().ok()?;
            String::from_utf8(out.stdout).ok()?.trim().parse().ok()
        };
        if id("-u").is_none() {
            let st = Command::new("useradd")
                .args([
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    NAME,
                ])
                .status()
                .expect("useradd runs");
            // Another test binary may have made it a moment earlier.
            assert!(st.success() || id("-u").is_some(), "useradd {NAME} failed");
        }
        User {
            uid: id("-u").expect("uid"),
            gid: id("-g").expect("gid"),
        }
    }))
}

pub fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

pub fn chown(p: &Path, u: User) {
    std::os::unix::fs::chown(p, Some(u.uid), Some(u.gid)).unwrap();
}

/// Sets a file's or directory's mtime `ago` in the past: how a test makes a lock stale
/// without waiting 60 s.
pub fn backdate(p: &Path, ago: Duration) {
    let f = fs::File::open(p).unwrap();
    f.set_modified(SystemTime::now() - ago).unwrap();
}

pub fn mode_of(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

pub fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

/// The `hap` binary where `dir`'s users can run it: a hard link (or copy) inside `dir`,
/// since the build directory may not be reachable by the throwaway user.
pub fn hap_in(dir: &Path) -> PathBuf {
    let bin = dir.join("hap");
    if !bin.exists() {
        let src = env!("CARGO_BIN_EXE_hap");
        if fs::hard_link(src, &bin).is_err() {
            fs::copy(src, &bin).unwrap();
        }
        chmod(&bin, 0o755);
    }
    bin
}

/// `hap ARGS` with a clean environment (HOME = `home`), as `user` when given, killed after
/// `deadline`.
pub fn hap(
    bin: &Path,
    home: &Path,
    user: Option<User>,
    args: &[&str],
    envs: &[(&str, &str)],
    deadline: Duration,
) -> Run {
    let child = spawn_hap(bin, home, user, args, envs);
    finish(child, deadline)
}

pub fn spawn_hap(
    bin: &Path,
    home: &Path,
    user: Option<User>,
    args: &[&str],
    envs: &[(&str, &str)],
) -> Child {
    let mut c = match user {
        Some(u) => {
            let mut c = Command::new("setpriv");
            c.args([
                &format!("--reuid={}", u.uid),
                &format!("--regid={}", u.gid),
                "--clear-groups",
                "--",
            ])
            .arg(bin);
            c
        }
        None => Command::new(bin),
    };
    c.args(args)
        .current_dir(home)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        c.env(k, v);
    }
    c.spawn().expect("hap starts")
}

/// Waits for `child` until `deadline`, killing it then.
pub fn finish(mut child: Child, deadline: Duration) -> Run {
    let t0 = Instant::now();
    let mut hung = false;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if t0.elapsed() > deadline {
            hung = true;
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    Run {
        code: if hung { None } else { out.status.code() },
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: t0.elapsed(),
        hung,
    }
}
