//! Replays every committed fuzz input (`fuzz/seeds/<target>/` and the minimised
//! `fuzz/corpus/<target>/`) through the same checks the cargo-fuzz targets run
//! (`fuzz/src/lib.rs`), so plain `cargo test` on stable runs the corpus as regression
//! tests: no fuzzer, no nightly. See fuzz/README.md.

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod checks;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// A target's check: input bytes, strict mode.
type Check = fn(&[u8], bool);

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// Runs `check` on every seed and corpus file of `target`; fails with the names of the
/// inputs whose check panicked.
fn replay(target: &str, check: Check) {
    let mut inputs = files_in(&fuzz_dir().join("seeds").join(target));
    assert!(!inputs.is_empty(), "no seeds for {target}");
    inputs.extend(files_in(&fuzz_dir().join("corpus").join(target)));
    let mut failed = Vec::new();
    for p in &inputs {
        let data = match std::fs::read(p) {
            Ok(d) => d,
            // A fuzzer running on this tree replaces corpus files as it reduces them.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("{}: {e}", p.display()),
        };
        if catch_unwind(AssertUnwindSafe(|| check(&data, false))).is_err() {
            failed.push(p.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} {target} inputs failed (run `fuzz/target/.../{target} <file>` or this test \
         with --nocapture for the panic): {failed:#?}",
        failed.len(),
        inputs.len()
    );
    eprintln!("{target}: {} inputs replayed", inputs.len());
}

#[test]
fn fuzz_config() {
    replay("fuzz_config", checks::check_config);
}

#[test]
fn fuzz_requests() {
    replay("fuzz_requests", checks::check_requests);
}

#[test]
fn fuzz_credentials_file() {
    replay("fuzz_credentials_file", checks::check_credentials_file);
}

#[test]
fn fuzz_pool_file() {
    replay("fuzz_pool_file", checks::check_pool_file);
}

#[test]
fn fuzz_token_response() {
    replay("fuzz_token_response", checks::check_token_response);
}

#[test]
fn fuzz_token_body() {
    replay("fuzz_token_body", checks::check_token_body);
}

#[test]
fn fuzz_c_abi_open() {
    replay("fuzz_c_abi_open", checks::check_c_abi_open);
}

/// Inputs the fuzzers flagged (fuzz/artifacts-found/<target>/), checked with the strict
/// properties: the regression tests of the findings in fuzz/artifacts-found/README.md.
#[test]
fn fuzz_findings_strict() {
    let targets: [(&str, Check); 7] = [
        ("fuzz_config", checks::check_config),
        ("fuzz_requests", checks::check_requests),
        ("fuzz_credentials_file", checks::check_credentials_file),
        ("fuzz_pool_file", checks::check_pool_file),
        ("fuzz_token_response", checks::check_token_response),
        ("fuzz_token_body", checks::check_token_body),
        ("fuzz_c_abi_open", checks::check_c_abi_open),
    ];
    let mut failed = Vec::new();
    for (target, check) in targets {
        for p in files_in(&fuzz_dir().join("artifacts-found").join(target)) {
            let data = std::fs::read(&p).unwrap();
            if catch_unwind(AssertUnwindSafe(|| check(&data, true))).is_err() {
                failed.push(p.display().to_string());
            }
        }
    }
    assert!(failed.is_empty(), "findings still reproduce: {failed:#?}");
}
