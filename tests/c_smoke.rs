//! Compiles tests/c/smoke.c against include/hap.h with -Wall -Wextra -Werror under
//! AddressSanitizer and UBSan, links the libhap this `cargo test` built, and runs it
//! against the fake token server.

mod common;
use common::*;
use std::process::Command;

#[test]
fn c_program_under_sanitizers() {
    let lib_dir = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    assert!(
        lib_dir.join("libhap.so").exists(),
        "{} has no libhap.so",
        lib_dir.display()
    );
    let out = tempfile::tempdir().unwrap();
    let exe = out.path().join("smoke");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args([
            "-std=c11",
            "-D_DEFAULT_SOURCE",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-g",
            "-O1",
        ])
        .args([
            "-fsanitize=address,undefined",
            "-fno-omit-frame-pointer",
            "-fno-sanitize-recover=all",
        ])
        .arg(format!("-I{}", repo().join("include").display()))
        .arg(repo().join("tests/c/smoke.c"))
        .arg(format!("-L{}", lib_dir.display()))
        .arg("-lhap")
        .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
        .arg("-o")
        .arg(&exe)
        .status()
        .expect("a C compiler");
    assert!(
        status.success(),
        "the C smoke test does not compile cleanly"
    );

    let s = FakeServer::start();
    let home = tempfile::tempdir().unwrap();
    let run = Command::new(&exe)
        .arg(s.token_url())
        .arg(home.path())
        // Leak checking covers hap's allocations too: every string handed out is freed.
        .env(
            "ASAN_OPTIONS",
            "detect_leaks=1:abort_on_error=0:exitcode=23",
        )
        .env("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "C smoke test failed ({:?}):\n{stderr}",
        run.status
    );
    assert!(String::from_utf8_lossy(&run.stdout).contains("all checks passed"));
    assert_eq!(s.posts(), 1);
}
