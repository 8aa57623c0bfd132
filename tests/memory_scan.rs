//! No token copy survives in a host's memory once hap has handed it over and been freed
//! (issue 10, item 14: a scan of a C host after `hap_free` and `hap_pool_free` found the new
//! access token 5 times, the new refresh token twice and the spent one once).
//!
//! A C host (tests/c/memory_scan.c, linked against the libhap.so this `cargo test` built)
//! refreshes an expired login, frees the result and the pool, says "ready" and waits. This
//! process then reads every readable-writable mapping of the host through
//! /proc/<pid>/maps and /proc/<pid>/mem (heap, anonymous mappings, thread stacks, the
//! writable data of every library) and counts the tokens in it.
//!
//! The tokens are long and new on every run, so no stale copy of an earlier run and no
//! constant in a binary can match. The host never sees one except through hap: the test
//! writes the credentials file, the config carries paths and a URL only, and the host checks
//! the result in place and prints nothing but "ready".

mod common;
use common::*;
use serde_json::json;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
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

/// The libhap.so of this very `cargo test` build: `deps/`, beside the test binary.
/// (`target/debug/libhap.so` is only refreshed by `cargo build`, so it may be stale.)
fn lib_dir() -> PathBuf {
    let dir = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    assert!(
        dir.join("libhap.so").exists(),
        "{} has no libhap.so",
        dir.display()
    );
    dir
}

fn build_host(out: &std::path::Path) -> PathBuf {
    let exe = out.join("memory_scan");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let lib = lib_dir();
    // No sanitizers: ASan's allocator would keep freed blocks in its own quarantine and add
    // its own copies of nothing useful; this host must use the allocator real hosts use.
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
        .arg(format!("-L{}", lib.display()))
        .arg("-lhap")
        .arg(format!("-Wl,-rpath,{}", lib.display()))
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

fn writable_regions(pid: u32) -> Vec<Region> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut regions = Vec::new();
    for line in maps.lines() {
        // start-end perms offset dev inode [name]
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        let name = fields.nth(3).unwrap_or("").to_string();
        if !perms.starts_with("rw") || name.starts_with("[vvar") || name == "[vsyscall]" {
            continue;
        }
        let (s, e) = range.split_once('-').unwrap();
        regions.push(Region {
            start: u64::from_str_radix(s, 16).unwrap(),
            end: u64::from_str_radix(e, 16).unwrap(),
            name: if name.is_empty() {
                "anonymous".into()
            } else {
                name
            },
        });
    }
    regions
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    let mut n = 0;
    let mut rest = haystack;
    loop {
        // glibc's memmem: a debug build of a byte loop would take seconds per MiB here.
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

/// Occurrences of each needle in the host's writable memory, with where they were found.
fn scan(pid: u32, needles: &[(&str, &str)]) -> Vec<(String, usize, Vec<String>)> {
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let regions = writable_regions(pid);
    assert!(
        regions.iter().any(|r| r.name == "[heap]") || regions.len() > 3,
        "no writable mapping found in /proc/{pid}/maps"
    );
    let mut found: Vec<(String, usize, Vec<String>)> = needles
        .iter()
        .map(|(role, _)| (role.to_string(), 0, Vec::new()))
        .collect();
    let mut scanned = 0u64;
    for r in &regions {
        let mut buf = vec![0u8; (r.end - r.start) as usize];
        // A mapping can vanish or be unreadable (a guard page); skip what the kernel refuses.
        if mem.read_exact_at(&mut buf, r.start).is_err() {
            continue;
        }
        scanned += buf.len() as u64;
        for (i, (_, needle)) in needles.iter().enumerate() {
            let c = count(&buf, needle.as_bytes());
            if c > 0 {
                found[i].1 += c;
                found[i].2.push(format!("{}x {} @{:x}", c, r.name, r.start));
            }
        }
    }
    assert!(scanned > 0, "could not read the host's memory");
    eprintln!(
        "scanned {} KiB of {} mappings",
        scanned / 1024,
        regions.len()
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

fn report(found: &[(String, usize, Vec<String>)]) -> Vec<String> {
    found
        .iter()
        .map(|(role, n, r#where)| format!("{role}: {n} {where:?}"))
        .collect()
}

#[test]
fn no_token_copy_survives_hap_free_and_hap_pool_free() {
    let dir = tempfile::tempdir().unwrap();
    let host = build_host(dir.path());

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
        // build` refreshes; it would win over the host's rpath. Load this build's library.
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

    // 1. The pool is open and holds its tokens, as it must; a copy of the endpoint's answer
    // (a keep-alive connection's read buffer) is of no use to anyone.
    expect_line(&mut child, &mut out, "open\n");
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", child.id())).unwrap();
    let loaded = lib_dir().join("libhap.so");
    assert!(
        maps.contains(loaded.to_str().unwrap()),
        "the host did not load {}:\n{maps}",
        loaded.display()
    );
    let open = scan(child.id(), &needles);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"c").unwrap();

    // 2. After hap_pool_free: nothing.
    expect_line(&mut child, &mut out, "ready\n");
    let freed = scan(child.id(), &needles);
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(status.success(), "host: {status:?}");
    // The refresh really happened through hap, with this run's tokens.
    assert_eq!(s.posts(), 1);
    assert_eq!(home.creds_access(), new_access);

    for found in [&open, &freed] {
        let control = found.last().unwrap();
        assert!(
            control.2.iter().any(|w| w.contains("[stack]")),
            "the scan did not find the host's argv on its stack: {control:?}"
        );
    }
    eprintln!(
        "memory scan of the C host, pool open: {:#?}\nafter hap_free and hap_pool_free: {:#?}",
        report(&open),
        report(&freed)
    );
    assert_eq!(
        open[4].1,
        0,
        "the token endpoint's answer is still in memory after the refresh: {:#?}",
        report(&open)
    );
    let (_, tokens) = freed.split_last().unwrap();
    assert!(
        tokens.iter().all(|(_, n, _)| *n == 0),
        "token copies left in the host's memory after hap_free and hap_pool_free: {:#?}",
        report(&freed)
    );
}
