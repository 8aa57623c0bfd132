//! Files, locks and paths under hostile conditions (issue 10, items 6-9 and 11-13): what a
//! planted FIFO, a huge file, a lock nobody can remove, a takeover while stopped, a planted
//! symlink, a second spelling of one file or a relative `HOME` used to do to hap, each run
//! against the real `hap` binary or real worker processes. A hang is a failure: every run
//! has a deadline and is killed past it.
//!
//! The permission repros run as an unprivileged throwaway user (root bypasses permissions);
//! they create it when run as root, as CI is, and say SKIPPED loudly otherwise.

#[path = "../common/hostile.rs"]
mod hostile;

use crate::common::*;
use hostile::*;
use serde_json::{json, Value};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// No test here talks to a token server unless it starts one: a refresh that got this far
/// would fail with UNAVAILABLE, never pass.
const NO_SERVER: &str = "http://127.0.0.1:9/v1/oauth/token";
/// Past this a run counts as hung.
const HANG: Duration = Duration::from_secs(15);

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hap"))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A Claude Code login at `path`.
fn write_login(path: &Path, access: &str, refresh: &str, expires_at_ms: i64) {
    write_json(
        path,
        &json!({"claudeAiOauth": {"accessToken": access, "refreshToken": refresh,
                "expiresAt": expires_at_ms, "subscriptionType": "max"}}),
    );
}

/// `hap --no-pool --credentials CREDS --lock-timeout 1s ARGS` as root, in `home`.
fn hap_creds(home: &Path, creds: &Path, url: &str, args: &[&str]) -> Run {
    let mut full = vec![
        "--no-pool",
        "--credentials",
        s(creds),
        "--token-url",
        url,
        "--lock-timeout",
        "1s",
    ];
    full.extend_from_slice(args);
    hap(&bin(), home, None, &full, &[], HANG)
}

mod stale_lock {
    //! Item 6: a stale refresh lock that cannot be removed is a held lock.
    use super::*;

    fn assert_unremovable_lock_times_out(r: &Run, lock: &Path) {
        r.expect(15);
        assert!(
            r.stderr.contains("cannot remove") && r.stderr.contains(&format!("rm -r {}", s(lock))),
            "the message says what to remove: {}",
            r.stderr
        );
    }

    #[test]
    fn stale_refresh_lock_that_cannot_be_removed_times_out_and_names_it() {
        let h = Home::new();
        h.write_creds(A1, R1, now_ms() - 1000);
        let lock = h.creds_path().with_file_name(".oauth_refresh.lock");

        // A regular file where Claude Code's lock directory belongs, untouched for 2 minutes.
        fs::write(&lock, b"").unwrap();
        backdate(&lock, Duration::from_secs(120));
        let r = hap_creds(h.dir.path(), &h.creds_path(), NO_SERVER, &["token"]);
        assert_unremovable_lock_times_out(&r, &lock);
        assert!(lock.is_file(), "left as it was");

        // A stale directory that is not empty.
        fs::remove_file(&lock).unwrap();
        fs::create_dir(&lock).unwrap();
        fs::write(lock.join("left-behind"), b"").unwrap();
        backdate(&lock, Duration::from_secs(120));
        let r = hap_creds(h.dir.path(), &h.creds_path(), NO_SERVER, &["token"]);
        assert_unremovable_lock_times_out(&r, &lock);
        assert!(lock.join("left-behind").exists(), "left as it was");
        assert_eq!(
            h.creds_access(),
            A1,
            "no refresh ran without Claude Code's lock"
        );
        // And doctor calls it an error with the same fix, not a lock that clears by itself.
        let r = hap_creds(
            h.dir.path(),
            &h.creds_path(),
            NO_SERVER,
            &["doctor", "--json"],
        );
        r.expect(1);
        let doc: Value = serde_json::from_str(&r.stdout).unwrap();
        assert!(
            doc["findings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["level"] == "error"
                    && f["what"].as_str().unwrap().contains("stale but not empty")
                    && f["fix"] == format!("rm -r {}", s(&lock))),
            "{doc:#}"
        );
    }

    #[test]
    fn another_users_stale_lock_in_a_sticky_dir_times_out_for_an_unprivileged_user() {
        let Some(user) = throwaway_user("another_users_stale_lock_in_a_sticky_dir") else {
            return;
        };
        let top = tempfile::tempdir().unwrap();
        chmod(top.path(), 0o755);
        // Like /tmp: world-writable and sticky, so only a file's owner may remove it.
        let dir = top.path().join("shared");
        fs::create_dir(&dir).unwrap();
        chmod(&dir, 0o1777);
        let creds = dir.join(".credentials.json");
        write_login(&creds, A1, R1, now_ms() - 1000);
        chown(&creds, user);
        chmod(&creds, 0o600);
        let lock = dir.join(".oauth_refresh.lock");
        fs::create_dir(&lock).unwrap(); // root's
        backdate(&lock, Duration::from_secs(120));

        let bin = hap_in(top.path());
        let r = hap(
            &bin,
            top.path(),
            Some(user),
            &[
                "--no-pool",
                "--credentials",
                s(&creds),
                "--token-url",
                NO_SERVER,
                "--lock-timeout",
                "1s",
                "token",
            ],
            &[],
            HANG,
        );
        assert_unremovable_lock_times_out(&r, &lock);
        assert!(lock.is_dir());
    }
}

mod fifo {
    //! Item 7: a FIFO where hap expects a file.
    use super::*;

    fn assert_not_regular(r: &Run, what: &Path) {
        r.expect(17);
        assert!(
            r.stderr.contains(s(what)) && r.stderr.contains("not a regular file"),
            "{}",
            r.stderr
        );
    }

    #[test]
    fn a_fifo_at_a_store_path_is_refused_not_waited_on() {
        let h = Home::new();
        fs::create_dir_all(h.creds_path().parent().unwrap()).unwrap();
        mkfifo(&h.creds_path());
        let r = hap_creds(h.dir.path(), &h.creds_path(), NO_SERVER, &["status"]);
        assert_not_regular(&r, &h.creds_path());

        let pool = h.pool_path("");
        fs::create_dir_all(pool.parent().unwrap()).unwrap();
        mkfifo(&pool);
        let r = hap(
            &bin(),
            h.dir.path(),
            None,
            &["--no-credentials", "--pool", s(&pool), "status"],
            &[],
            HANG,
        );
        assert_not_regular(&r, &pool);
    }

    #[test]
    fn a_fifo_at_the_journal_or_a_lock_file_is_refused_not_waited_on() {
        let h = Home::new();
        h.write_creds(A1, R1, now_ms() - 1000);
        let journal = h
            .creds_path()
            .with_file_name(".credentials.hap-journal.json");
        mkfifo(&journal);
        let r = hap_creds(h.dir.path(), &h.creds_path(), NO_SERVER, &["token"]);
        assert_not_regular(&r, &journal);
        fs::remove_file(&journal).unwrap();

        let lock = h.creds_path().with_file_name(".credentials.lock");
        let _ = fs::remove_file(&lock); // made by the run above
        mkfifo(&lock);
        let r = hap_creds(h.dir.path(), &h.creds_path(), NO_SERVER, &["token"]);
        assert_not_regular(&r, &lock);
        assert_eq!(h.creds_access(), A1);
    }

    #[test]
    fn a_fifo_at_the_lock_owner_file_is_replaced_not_written_through() {
        let server = FakeServer::start();
        let h = Home::new();
        h.write_creds(A1, R1, now_ms() - 1000);
        let owner = h
            .creds_path()
            .with_file_name(".oauth_refresh.lock.hap-owner");
        mkfifo(&owner);
        let r = hap_creds(
            h.dir.path(),
            &h.creds_path(),
            &server.token_url(),
            &["token"],
        );
        r.expect(0);
        assert_eq!(server.posts(), 1);
        assert!(!owner.exists(), "released with the lock");
        assert!(!h
            .creds_path()
            .with_file_name(".oauth_refresh.lock")
            .exists());
    }
}

mod huge_store {
    //! Item 8: a huge store.
    use super::*;

    fn sparse(path: &Path, len: u64) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::File::create(path).unwrap().set_len(len).unwrap();
    }

    fn assert_too_large(r: &Run, path: &Path) {
        r.expect(17);
        assert!(
            r.stderr.contains("too large")
                && r.stderr.contains(s(path))
                && r.stderr.contains("16 MiB"),
            "{}",
            r.stderr
        );
    }

    #[test]
    fn a_store_above_16_mib_is_refused_as_too_large_not_loaded() {
        let h = Home::new();
        // 6 GiB (sparse) in a process limited to 3 GiB of address space: reading it whole
        // aborted the process (allocation failure) instead of returning an error.
        sparse(&h.creds_path(), 6 << 30);
        let hap_bin = bin();
        let r = hap(
            Path::new("/bin/sh"),
            h.dir.path(),
            None,
            &[
                "-c",
                "ulimit -v 3145728; exec \"$0\" \"$@\"",
                s(&hap_bin),
                "--no-pool",
                "--credentials",
                s(&h.creds_path()),
                "status",
            ],
            &[],
            HANG,
        );
        assert_too_large(&r, &h.creds_path());

        // One byte over the cap is refused too, and called too large, not corrupt.
        let pool = h.pool_path("");
        sparse(&pool, (16 << 20) + 1);
        let r = hap(
            &bin(),
            h.dir.path(),
            None,
            &["--no-credentials", "--pool", s(&pool), "status"],
            &[],
            HANG,
        );
        assert_too_large(&r, &pool);
        assert_eq!(fs::metadata(&pool).unwrap().len(), (16 << 20) + 1);
    }
}

mod resumed_holder {
    //! Item 9: a holder resumed after a takeover leaves the new holder's lock alone.
    use super::*;

    #[test]
    fn a_holder_resumed_after_a_takeover_leaves_the_new_lock_alone() {
        let server = FakeServer::start();
        server.script(json!([{"delay_ms": 1500}]));
        let h = Home::new();
        h.write_creds(A1, R1, now_ms() - 1000);
        let lock = h.creds_path().with_file_name(".oauth_refresh.lock");
        let child = spawn_hap(
            &bin(),
            h.dir.path(),
            None,
            &[
                "--no-pool",
                "--credentials",
                s(&h.creds_path()),
                "--token-url",
                &server.token_url(),
                "token",
            ],
            &[],
        );
        let pid = child.id() as i32;
        let t0 = Instant::now();
        // Held: the directory exists and hap has written its owner file, which it does after
        // taking the directory's identity. (Stopping it between its mkdir and that moment is the
        // other window: `RefreshLockDir::acquire` distrusts a directory it was that slow to open.
        // Stopping it there made this test flaky on a loaded machine.)
        let owner = h
            .creds_path()
            .with_file_name(".oauth_refresh.lock.hap-owner");
        while !(lock.is_dir() && owner.exists()) {
            assert!(t0.elapsed() < HANG, "hap never took the lock");
            std::thread::sleep(Duration::from_millis(2));
        }
        // SAFETY: signalling our own child.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
        // Stopped for "more than 60 s": its lock is stale...
        backdate(&lock, Duration::from_secs(70));
        // ...and Claude Code, another process, takes it over as proper-lockfile does.
        let st = std::process::Command::new("sh")
            .arg("-c")
            .arg("rmdir \"$0\" && mkdir \"$0\"")
            .arg(&lock)
            .status()
            .unwrap();
        assert!(st.success());
        let theirs = fs::metadata(&lock).unwrap();
        // SAFETY: as above.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
        let r = finish(child, HANG);
        r.expect(0);
        let now = fs::metadata(&lock).expect("Claude Code's lock survives hap's release");
        assert_eq!(
            (now.ino(), now.mtime(), now.mtime_nsec()),
            (theirs.ino(), theirs.mtime(), theirs.mtime_nsec()),
            "the very same directory, untouched"
        );
        assert!(
            !h.creds_path()
                .with_file_name(".oauth_refresh.lock.hap-owner")
                .exists(),
            "hap's own owner file goes with its own lock"
        );
    }
}

mod planted_paths {
    //! Item 11: planted symlinks and directories others can write.
    use super::*;

    /// A root-only file and a root-only directory a planted link points at.
    struct Victims {
        _dir: tempfile::TempDir,
        file: PathBuf,
        would_create: PathBuf,
    }

    fn victims() -> Victims {
        let dir = tempfile::tempdir().unwrap();
        chmod(dir.path(), 0o700);
        let file = dir.path().join("precious");
        fs::write(&file, b"precious\n").unwrap();
        chmod(&file, 0o600);
        Victims {
            file,
            would_create: dir.path().join("created-by-hap"),
            _dir: dir,
        }
    }

    #[test]
    fn as_root_a_store_dir_others_can_write_is_refused_and_planted_links_are_not_followed() {
        if !is_root() {
            eprintln!("SKIPPED as_root_a_store_dir_others_can_write: needs root (CI runs as root)");
            return;
        }
        let server = FakeServer::start();
        let h = Home::new();
        h.write_creds(A1, R1, now_ms() - 1000);
        let dir = h.creds_path().parent().unwrap().to_path_buf();
        chmod(&dir, 0o777);
        let v = victims();
        // What another user could plant in a world-writable, non-sticky directory.
        std::os::unix::fs::symlink(&v.file, dir.join(".oauth_refresh.lock.hap-owner")).unwrap();
        std::os::unix::fs::symlink(&v.would_create, dir.join(".credentials.lock")).unwrap();

        let r = hap_creds(
            h.dir.path(),
            &h.creds_path(),
            &server.token_url(),
            &["token"],
        );
        r.expect(17);
        assert!(
            r.stderr.contains("writable by other users")
                && r.stderr.contains(&format!("chmod go-w {}", s(&dir))),
            "{}",
            r.stderr
        );
        assert_eq!(fs::read(&v.file).unwrap(), b"precious\n");
        assert!(!v.would_create.exists());
        assert_eq!(server.posts(), 0);
        // `status` reads the same directory: refused too, with the same words.
        let r = hap_creds(h.dir.path(), &h.creds_path(), NO_SERVER, &["status"]);
        r.expect(17);
        assert!(r.stderr.contains("writable by other users"), "{}", r.stderr);
    }

    #[test]
    fn a_symlink_at_a_lock_file_is_refused_even_in_a_private_dir() {
        let h = Home::new();
        h.write_creds(A1, R1, now_ms() - 1000);
        let v = victims();
        let lock = h.creds_path().with_file_name(".credentials.lock");
        std::os::unix::fs::symlink(&v.would_create, &lock).unwrap();
        let r = hap_creds(h.dir.path(), &h.creds_path(), NO_SERVER, &["token"]);
        r.expect(17);
        assert!(
            r.stderr.contains(s(&lock)) && r.stderr.contains("symbolic link"),
            "{}",
            r.stderr
        );
        assert!(!v.would_create.exists());
    }

    #[test]
    fn the_lock_owner_file_is_0600_whatever_the_umask_and_replaces_a_planted_link() {
        let server = FakeServer::start();
        server.script(json!([{"delay_ms": 800}]));
        let h = Home::new();
        h.write_creds(A1, R1, now_ms() - 1000);
        let owner = h
            .creds_path()
            .with_file_name(".oauth_refresh.lock.hap-owner");
        let hap_bin = bin();
        let url = server.token_url();
        let creds = h.creds_path();
        let args = [
            "-c",
            "umask 000; exec \"$0\" \"$@\"",
            s(&hap_bin),
            "--no-pool",
            "--credentials",
            s(&creds),
            "--token-url",
            &url,
            "token",
            "--force-refresh",
        ];
        let child = spawn_hap(Path::new("/bin/sh"), h.dir.path(), None, &args, &[]);
        let t0 = Instant::now();
        // While hap holds the lock (the server answers after 800 ms).
        let held = loop {
            if let Ok(m) = fs::symlink_metadata(&owner) {
                break m;
            }
            assert!(t0.elapsed() < HANG, "no owner file written");
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!(held.mode() & 0o777, 0o600, "umask 000 made it 0666");
        finish(child, HANG).expect(0);

        // A link planted at its name is replaced, not written through.
        let v = victims();
        std::os::unix::fs::symlink(&v.file, &owner).unwrap();
        let r = hap(Path::new("/bin/sh"), h.dir.path(), None, &args, &[], HANG);
        r.expect(0);
        assert_eq!(fs::read(&v.file).unwrap(), b"precious\n");
        assert_eq!(mode_of(&v.file), 0o600);
    }

    fn user_home(
        user: User,
        dir_mode: u32,
        dir_owner: Option<User>,
    ) -> (tempfile::TempDir, PathBuf) {
        let top = tempfile::tempdir().unwrap();
        chmod(top.path(), 0o755);
        let dir = top.path().join("claude");
        fs::create_dir(&dir).unwrap();
        if let Some(o) = dir_owner {
            chown(&dir, o);
        }
        chmod(&dir, dir_mode);
        let creds = dir.join(".credentials.json");
        write_login(&creds, A1, R1, now_ms() + 3_600_000);
        chown(&creds, user);
        chmod(&creds, 0o600);
        (top, creds)
    }

    fn run_as(user: User, top: &Path, creds: &Path) -> Run {
        let bin = hap_in(top);
        hap(
            &bin,
            top,
            Some(user),
            &[
                "--no-pool",
                "--credentials",
                s(creds),
                "--token-url",
                NO_SERVER,
                "token",
            ],
            &[],
            HANG,
        )
    }

    #[test]
    fn a_world_writable_store_dir_owned_by_someone_else_is_refused() {
        let Some(user) = throwaway_user("a_world_writable_store_dir_owned_by_someone_else") else {
            return;
        };
        let (top, creds) = user_home(user, 0o777, None); // root's directory
        let r = run_as(user, top.path(), &creds);
        r.expect(17);
        assert!(
            r.stderr.contains("writable by other users") && r.stderr.contains("does not own it"),
            "{}",
            r.stderr
        );
    }

    #[test]
    fn a_world_writable_store_dir_of_ones_own_is_used_with_a_warning() {
        let Some(user) = throwaway_user("a_world_writable_store_dir_of_ones_own") else {
            return;
        };
        let (top, creds) = user_home(user, 0o777, Some(user));
        let r = run_as(user, top.path(), &creds);
        r.expect(0);
        assert_eq!(r.stdout.trim(), A1);
        let dir = creds.parent().unwrap();
        assert!(
            r.stderr.contains("warning") && r.stderr.contains(&format!("chmod go-w {}", s(dir))),
            "{}",
            r.stderr
        );
        // Said once per process, not once per read.
        assert_eq!(r.stderr.matches("warning").count(), 1, "{}", r.stderr);
    }
}

mod two_spellings {
    //! Item 12: one file, two spellings.
    use super::*;

    #[test]
    fn a_symlinked_credentials_file_and_its_target_make_one_post() {
        let server = FakeServer::start();
        server.script(json!([{"delay_ms": 300}]));
        let h = Home::new();
        let target = h.dir.path().join("dotfiles/claude-credentials.json");
        write_login(&target, A1, R1, now_ms() - 1000);
        fs::create_dir_all(h.creds_path().parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&target, h.creds_path()).unwrap();
        let cfg = |creds: &Path| {
            json!({"pool_path": null, "credentials_path": creds, "token_urls": [server.token_url()],
               "lock_timeout_ms": 20000, "http_timeout_ms": 5000})
        };
        let start = now_ms() + 1500;
        let kids: Vec<_> = (0..8)
            .map(|i| {
                let c = if i % 2 == 0 {
                    cfg(&h.creds_path())
                } else {
                    cfg(&target)
                };
                spawn_worker(&c, start, &[])
            })
            .collect();
        let results: Vec<(Value, String)> = kids.into_iter().map(worker_result).collect();
        let tokens: std::collections::HashSet<String> = results
            .iter()
            .map(|(v, e)| {
                v["token_sha256"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{v} {e}"))
                    .to_string()
            })
            .collect();
        assert_eq!(server.posts(), 1, "{:?}", server.stats()["log"]);
        assert_eq!(tokens.len(), 1, "every process got the same token");
        assert!(fs::symlink_metadata(h.creds_path())
            .unwrap()
            .file_type()
            .is_symlink());
        // One journal, beside the file both spellings name.
        assert!(target
            .with_file_name(".claude-credentials.hap-journal.json")
            .exists());
        assert!(!h
            .creds_path()
            .with_file_name(".credentials.hap-journal.json")
            .exists());
    }

    #[test]
    fn writers_through_a_symlink_also_take_the_lock_beside_the_target() {
        let h = Home::new();
        let dot = h.dir.path().join("dotfiles");
        let target = dot.join("claude-credentials.json");
        write_login(&target, A1, R1, now_ms() - 1000);
        fs::create_dir_all(h.creds_path().parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&target, h.creds_path()).unwrap();
        let pool_target = dot.join("hermes-auth.json");
        write_json(
            &pool_target,
            &json!({"credential_pool": {"anthropic": [{"id": "a1b2c3", "source": "manual",
                "auth_type": "api_key", "access_token": "sk-ant-api03-fake-k1"}]}}),
        );
        let pool = h.pool_path("");
        fs::create_dir_all(pool.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&pool_target, &pool).unwrap();

        // A process configured with the targets holds their locks; the locks beside the links
        // (the ones Hermes takes) are free.
        let take = |p: PathBuf| {
            let mut w = false;
            hap::internals::lock::FileLock::acquire(
                &p,
                Instant::now() + Duration::from_secs(5),
                5000,
                &mut w,
            )
            .unwrap()
        };
        let creds_lock = dot.join(".credentials.lock");
        let pool_lock = dot.join("hermes-auth.lock");
        let _held = (take(creds_lock.clone()), take(pool_lock.clone()));

        let r = hap_creds(h.dir.path(), &h.creds_path(), NO_SERVER, &["token"]);
        r.expect(15);
        assert!(r.stderr.contains(s(&creds_lock)), "{}", r.stderr);

        let r = hap(
            &bin(),
            h.dir.path(),
            None,
            &[
                "--no-credentials",
                "--pool",
                s(&pool),
                "--lock-timeout",
                "300ms",
                "report",
                "--credential",
                "a1b2c3",
                "--status",
                "429",
            ],
            &[],
            HANG,
        );
        r.expect(15);
        assert!(r.stderr.contains(s(&pool_lock)), "{}", r.stderr);
        assert_eq!(
            read_json(&pool_target)["credential_pool"]["anthropic"][0]["last_status"],
            Value::Null,
            "nothing written without the target's lock"
        );
    }

    #[test]
    fn doctor_warns_that_a_symlinked_credentials_file_strands_the_target() {
        let h = Home::new();
        let target = h.dir.path().join("dotfiles/claude-credentials.json");
        write_login(&target, A1, R1, now_ms() + 3_600_000);
        fs::create_dir_all(h.creds_path().parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&target, h.creds_path()).unwrap();
        let r = hap(
            &bin(),
            h.dir.path(),
            None,
            &[
                "--no-pool",
                "--credentials",
                s(&h.creds_path()),
                "doctor",
                "--json",
            ],
            &[],
            HANG,
        );
        r.expect(0);
        let doc: Value = serde_json::from_str(&r.stdout).unwrap();
        let warn = doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| {
                f["level"] == "warn" && f["what"].as_str().unwrap().contains("is a symlink to")
            })
            .unwrap_or_else(|| panic!("{doc:#}"));
        assert!(
            warn["what"]
                .as_str()
                .unwrap()
                .contains("replaces it with a regular file"),
            "{warn}"
        );
    }
}

mod relative_homes {
    //! Item 13: relative HOME, HERMES_HOME, CLAUDE_CONFIG_DIR.
    use super::*;

    #[test]
    fn relative_home_variables_are_refused_naming_the_variable() {
        let h = Home::new();
        let abs = h.dir.path().to_str().unwrap().to_string();
        for (var, others) in [
            ("HOME", vec![]),
            ("HERMES_HOME", vec![("CLAUDE_CONFIG_DIR", abs.as_str())]),
            ("CLAUDE_CONFIG_DIR", vec![("HERMES_HOME", abs.as_str())]),
        ] {
            let mut envs = others.clone();
            envs.push((var, "relhome"));
            let r = hap(
                &bin(),
                h.dir.path(),
                None,
                &["status", "--json"],
                &envs,
                HANG,
            );
            r.expect(11);
            let e: Value = serde_json::from_str(&r.stdout).unwrap();
            assert_eq!(e["name"], "HAP_STATUS_INVALID_ARGUMENT");
            assert!(
                e["message"].as_str().unwrap().contains(var)
                    && e["message"].as_str().unwrap().contains("relative"),
                "{e}"
            );
        }
        // Explicit absolute paths need no HOME at all.
        let creds = h.creds_path();
        write_login(&creds, A1, R1, now_ms() + 3_600_000);
        hap(
            &bin(),
            h.dir.path(),
            None,
            &["--no-pool", "--credentials", s(&creds), "token"],
            &[("HOME", "relhome")],
            HANG,
        )
        .expect(0);
    }
}
