//! No token copy survives in a host's memory once hap has handed it over and been freed
//! (issue 10, item 14: a scan of a C host after `hap_free` and `hap_pool_free` found the new
//! access token 5 times, the new refresh token twice and the spent one once).
//!
//! A C host (tests/c/memory_scan.c) refreshes an expired login and frees the result, says
//! "open" and waits; frees the pool, says "ready" and waits. At each stop this process reads
//! every readable-writable mapping of the host through /proc/<pid>/maps and /proc/<pid>/mem
//! (heap, malloc arenas, thread stacks, the writable data of every library) and counts:
//! * while the pool is open: the token endpoint's answer anywhere (a kept connection's
//!   buffer), and any token on the main thread's stack (the request body hap sent);
//! * after `hap_pool_free`: any token anywhere.
//!
//! The tokens are long and new on every run, so no stale copy of an earlier run and no
//! constant in a binary can match. The host never sees one except through hap: the test
//! writes the credentials file, the config carries paths and a URL only, and the host checks
//! the result in place and prints nothing but its two words.
//!
//! Stack residue depends on the build: in a debug libhap the frames after the POST are big
//! enough to overwrite what the POST left, in a release one they are not. So the scenario
//! runs against the libhap.so of this `cargo test` and, when `HAP_LIBRARY_PATH` names one
//! (scripts/test points it at target/release/libhap.so, built just before), against that.

mod common;
use common::*;
use serde_json::json;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

/// `sk-ant-<kind>01-fake-memscan-<role>-<96 random hex>`: unmistakably fake, unique to the run.
fn token(kind: &str, role: &str) -> String {
    let mut raw = [0u8; 48];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut raw)
        .unwrap();
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    format!("sk-ant-{kind}01-fake-memscan-{role}-{hex}")
}

/// Compiles the host against the libhap.so in `lib_dir`, with an rpath to it.
fn build_host(out: &Path, lib_dir: &Path) -> PathBuf {
    assert!(
        lib_dir.join("libhap.so").exists(),
        "{} has no libhap.so",
        lib_dir.display()
    );
    let exe = out.join("memory_scan");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    // No sanitizers: ASan's allocator keeps freed blocks in a quarantine of its own; this
    // host must use the allocator real hosts use.
    let status = Command::new(&cc)
        .args([
            "-std=c11",
            "-D_DEFAULT_SOURCE",
            "-Wall",
            "-Wextra",
            "-Werror",
        ])
        .args(["-O1", "-g"])
        .arg(format!("-I{}", repo().join("include").display()))
        .arg(repo().join("tests/c/memory_scan.c"))
        .arg(format!("-L{}", lib_dir.display()))
        .arg("-lhap")
        .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
        .arg("-o")
        .arg(&exe)
        .status()
        .expect("a C compiler");
    assert!(status.success(), "tests/c/memory_scan.c does not compile");
    exe
}

/// One readable-writable mapping of the host: where it is and what /proc calls it.
struct Region {
    start: u64,
    end: u64,
    name: String,
}

fn writable_regions(maps: &str) -> Vec<Region> {
    let mut regions = Vec::new();
    for line in maps.lines() {
        // start-end perms offset dev inode [name]
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        let name = fields.nth(3).unwrap_or("anonymous").to_string();
        if !perms.starts_with("rw") || name.starts_with("[vvar") || name == "[vsyscall]" {
            continue;
        }
        let (s, e) = range.split_once('-').unwrap();
        regions.push(Region {
            start: u64::from_str_radix(s, 16).unwrap(),
            end: u64::from_str_radix(e, 16).unwrap(),
            name,
        });
    }
    regions
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    let mut n = 0;
    let mut rest = haystack;
    loop {
        // glibc's memmem: a byte loop in a debug build takes about a second per needle here.
        // SAFETY: both pointers and lengths come from live slices, which memmem only reads.
        let hit = unsafe {
            libc::memmem(
                rest.as_ptr().cast(),
                rest.len(),
                needle.as_ptr().cast(),
                needle.len(),
            )
        };
        if hit.is_null() {
            return n;
        }
        n += 1;
        let at = hit as usize - rest.as_ptr() as usize;
        rest = &rest[at + 1..];
    }
}

/// Where one needle was found in the host's writable memory.
struct Found {
    what: &'static str,
    total: usize,
    /// On the main thread's stack (`[stack]`).
    on_stack: usize,
    places: Vec<String>,
}

impl std::fmt::Debug for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} ({} on the main stack) {:?}",
            self.what, self.total, self.on_stack, self.places
        )
    }
}

fn scan(pid: u32, needles: &[(&'static str, &str)]) -> Vec<Found> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let regions = writable_regions(&maps);
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap_or_else(|e| {
        panic!("cannot open /proc/{pid}/mem ({e}): a parent may read its child's memory unless kernel.yama.ptrace_scope is 2 or 3")
    });
    let mut found: Vec<Found> = needles
        .iter()
        .map(|(what, _)| Found {
            what,
            total: 0,
            on_stack: 0,
            places: Vec::new(),
        })
        .collect();
    let mut scanned = 0u64;
    for r in &regions {
        let mut buf = vec![0u8; (r.end - r.start) as usize];
        // A mapping the kernel refuses to read holds nothing anyone could read either.
        if mem.read_exact_at(&mut buf, r.start).is_err() {
            continue;
        }
        scanned += buf.len() as u64;
        for (f, (_, needle)) in found.iter_mut().zip(needles) {
            let c = count(&buf, needle.as_bytes());
            if c > 0 {
                f.total += c;
                if r.name == "[stack]" {
                    f.on_stack += c;
                }
                f.places.push(format!("{c}x {} @{:x}", r.name, r.start));
            }
        }
    }
    assert!(
        scanned > 0 && regions.iter().any(|r| r.name == "[stack]"),
        "could not read the host's memory:\n{maps}"
    );
    found
}

/// The host's next line on stdout; its stderr in the panic when it died instead.
fn expect_line(child: &mut Child, out: &mut BufReader<ChildStdout>, want: &str) {
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    if line != want {
        let _ = child.kill();
        let mut err = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut err);
        panic!(
            "the host said {line:?}, not {want:?} ({:?}): {err}",
            child.wait()
        );
    }
}

fn scenario(lib_dir: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let host = build_host(dir.path(), lib_dir);

    let old_access = token("oat", "old-access");
    let spent = token("ort", "spent-refresh");
    let new_access = token("oat", "new-access");
    let new_refresh = token("ort", "new-refresh");
    // Only the token endpoint's answer carries this: a copy of it is a copy of that answer.
    let answer_marker = token("answer", "marker");

    let s = FakeServer::start();
    // The server's own tokens are short; script one answer that carries this run's long ones.
    s.script(json!([{ "status": 200, "body": {
        "token_type": "Bearer",
        "access_token": new_access,
        "refresh_token": new_refresh,
        "expires_in": 3600,
        "scope": "user:inference user:profile",
        "memscan": answer_marker
    }}]));
    let home = Home::new();
    home.write_creds(&old_access, &spent, now_ms() - 60_000);
    let cfg = home.config(&s, "");
    let canary = home.creds_path().to_str().unwrap().to_string();

    let mut child = Command::new(&host)
        .arg(cfg.to_string())
        // cargo's LD_LIBRARY_PATH names target/debug first, whose libhap.so only `cargo
        // build` refreshes; it would win over the host's rpath.
        .env_remove("LD_LIBRARY_PATH")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let needles = [
        ("new access token", new_access.as_str()),
        ("new refresh token", &new_refresh),
        ("spent refresh token", &spent),
        ("old access token", &old_access),
        ("token endpoint's answer", &answer_marker),
        // Positive control: the host's argv (on its main stack) holds the config, so a
        // scan that reads the stack finds the credentials path there.
        ("control: credentials path in argv", &canary),
    ];
    let tokens = 0..4;
    let answer = 4;
    let control = 5;

    expect_line(&mut child, &mut out, "open\n");
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", child.id())).unwrap();
    let loaded = lib_dir.join("libhap.so");
    assert!(
        maps.contains(loaded.to_str().unwrap()),
        "the host did not load {}:\n{maps}",
        loaded.display()
    );
    let open = scan(child.id(), &needles);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"c").unwrap();

    expect_line(&mut child, &mut out, "ready\n");
    let freed = scan(child.id(), &needles);
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(status.success(), "host: {status:?}");
    // The refresh really happened through hap, with this run's tokens.
    assert_eq!(s.posts(), 1);
    assert_eq!(home.creds_access(), new_access);

    eprintln!(
        "memory scan of the C host on {}\npool open: {open:#?}\nafter hap_free and hap_pool_free: {freed:#?}",
        loaded.display()
    );
    for scan in [&open, &freed] {
        assert!(
            scan[control].on_stack > 0,
            "the scan did not find the host's argv on its stack: {:?}",
            scan[control]
        );
    }
    // While the pool is open it holds its pair, as it must; but no copy of the answer
    // (a kept connection's read buffer) and nothing in the host thread's dead frames.
    assert_eq!(
        open[answer].total, 0,
        "the token endpoint's answer is still in memory after the refresh: {open:#?}"
    );
    assert!(
        open[tokens.clone()].iter().all(|f| f.on_stack == 0),
        "token copies on the stack of the host's thread that called hap: {open:#?}"
    );
    assert!(
        freed[tokens].iter().all(|f| f.total == 0) && freed[answer].total == 0,
        "token copies left in the host's memory after hap_free and hap_pool_free: {freed:#?}"
    );
}

#[test]
fn no_token_copy_survives_in_the_host_this_build() {
    // deps/, beside this test binary: the libhap.so of this very build.
    let exe = std::env::current_exe().unwrap();
    scenario(exe.parent().unwrap());
}

#[test]
fn no_token_copy_survives_in_the_host_hap_library_path() {
    let Some(lib) = std::env::var_os("HAP_LIBRARY_PATH") else {
        eprintln!("HAP_LIBRARY_PATH is not set: only this build's libhap.so was scanned");
        return;
    };
    let lib = PathBuf::from(lib);
    assert_eq!(
        lib.file_name().and_then(|n| n.to_str()),
        Some("libhap.so"),
        "HAP_LIBRARY_PATH must name a libhap.so"
    );
    scenario(lib.parent().unwrap());
}
