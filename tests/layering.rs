//! The layering rules of docs/ARCHITECTURE.md, checked on the source text: a rule that is only
//! written down is broken by the first hurried change.
//!
//! * `src/store/` (where token pairs live) imports nothing of `pool`, `refresh` or `ffi`;
//! * `src/pool/` and `src/refresh/` import nothing of `ffi`;
//! * `src/refresh/` knows nothing of the pool (no `impl Pool`, no `crate::pool`): it takes a
//!   store (`dyn Authority`) and the pool only as a `RowLedger`, so refresh and pool form no
//!   cycle and the transaction runs in a unit test with an in-memory store;
//! * the CLI (`src/bin/`) imports nothing of `hap::ffi` nor `hap::internals`: it uses the Rust
//!   API and `hap::inspect`.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Every `(file, line number, line)` under `src/<dir>` that mentions one of `forbidden`
/// outside a comment.
fn offences(dir: &str, forbidden: &[&str]) -> Vec<String> {
    offences_in(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir),
        forbidden,
    )
}

fn offences_in(root: &Path, forbidden: &[&str]) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(root, &mut files);
    assert!(!files.is_empty(), "no Rust files under {}", root.display());
    let mut found = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for bad in forbidden {
                if code.contains(bad) {
                    found.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
                }
            }
        }
    }
    found
}

#[test]
fn stores_know_nothing_of_pool_refresh_or_ffi() {
    let found = offences(
        "store",
        &[
            "crate::pool",
            "crate::refresh",
            "crate::ffi",
            "crate::policy",
            "crate::oauth",
            "super::super",
        ],
    );
    assert!(
        found.is_empty(),
        "store/ reaches up a layer:\n{}",
        found.join("\n")
    );
}

#[test]
fn pool_and_refresh_know_nothing_of_ffi() {
    for dir in ["pool", "refresh"] {
        let found = offences(dir, &["crate::ffi", "hap_pool", "extern \"C\""]);
        assert!(
            found.is_empty(),
            "{dir}/ reaches the C boundary:\n{}",
            found.join("\n")
        );
    }
}

#[test]
fn refresh_knows_stores_and_locks_but_not_the_pool() {
    // `crate::policy` (pure rules, no pool state) and `crate::pool_file` (a store) are allowed.
    let found = offences(
        "refresh",
        &[
            "crate::pool::",
            "crate::pool;",
            "crate::pool}",
            "impl Pool",
            "Pool::",
            "&Pool",
            // A row's store is found once, by the pool (`Pool::authority`); refresh sees only
            // `dyn Authority`, never which kind of row it serves.
            "Kind::Borrowed",
            "Kind::Owned",
            "Kind::Foreign",
        ],
    );
    assert!(
        found.is_empty(),
        "refresh/ reaches into the pool:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_cli_uses_the_api_and_inspect_only() {
    // Not `extern "C"` here: the agent's signal handler is one, and it is not the C ABI.
    let found = offences("bin", &["hap::ffi", "hap::internals", "hap_pool"]);
    assert!(
        found.is_empty(),
        "the CLI reaches past the Rust API:\n{}",
        found.join("\n")
    );
}

/// The check itself can fail: an import that breaks a rule is found, the same words in a
/// comment are not.
#[test]
fn a_broken_rule_is_found() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.rs"),
        "// crate::refresh in a comment is fine\nuse crate::refresh::Flights;\n",
    )
    .unwrap();
    let found = offences_in(dir.path(), &["crate::refresh"]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].ends_with("bad.rs:2: use crate::refresh::Flights;"),
        "{found:?}"
    );
}
