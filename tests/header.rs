//! The committed `include/hap.h` must be exactly what cbindgen makes from `src/ffi/` now,
//! and must carry what docs/ABI.md promises. (rustls-ffi's one header bug was a hand-written
//! macro nobody checked.)

#[test]
fn committed_header_is_fresh() {
    let generated = std::fs::read_to_string(concat!(env!("OUT_DIR"), "/hap.h")).unwrap();
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/hap.h")).unwrap();
    assert!(
        generated == committed,
        "include/hap.h is stale: run `HAP_UPDATE_HEADER=1 cargo build` and commit it"
    );
}

#[test]
fn header_declares_the_abi() {
    let h = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/hap.h")).unwrap();
    for needle in [
        "typedef struct hap_pool hap_pool;",
        "typedef int32_t hap_status;",
        "uint32_t hap_abi_version(void);",
        "const char *hap_version(void);",
        "const char *hap_status_name(hap_status s);",
        "hap_status hap_pool_open(const char *config_json, hap_pool **pool_out, char **error_out);",
        "hap_status hap_pool_status(const hap_pool *pool, char **status_json_out, char **error_out);",
        "void hap_pool_free(hap_pool *pool);",
        "void hap_free(char *s);",
        "#define HAP_ABI_VERSION_MAJOR 0",
        "#define HAP_ABI_VERSION_MINOR 1",
        "#define HAP_STATUS_INTERNAL 100",
        "OWNERSHIP",
        "THREADS",
    ] {
        assert!(h.contains(needle), "include/hap.h lacks {needle:?}");
    }
    let resolve = h.split("hap_status hap_resolve_token(").nth(1).unwrap();
    let args: String = resolve
        .split(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(
        args,
        "const hap_pool *pool, const char *request_json, char **result_json_out, char **error_out"
    );
    assert_eq!(hap::ffi::HAP_ABI_VERSION, 0x0000_0001);
    assert_eq!(hap::ffi::hap_abi_version(), 0x0000_0001);
}

/// The statuses live in one Rust list (`hap::Status`); the header's `#define HAP_STATUS_*`
/// lines (written in src/ffi/exports.rs for cbindgen) must name exactly those, value for
/// value, and `hap_status_name` must agree with both.
#[test]
fn header_statuses_are_the_rust_list() {
    let h = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/hap.h")).unwrap();
    let mut in_header: Vec<(String, i32)> = h
        .lines()
        .filter(|l| l.starts_with("#define HAP_STATUS_"))
        .map(|l| {
            let mut words = l.split_whitespace().skip(1);
            let name = words.next().unwrap().to_string();
            let value = words.next().unwrap().parse().unwrap();
            (name, value)
        })
        .collect();
    let mut in_rust: Vec<(String, i32)> = hap::Status::all()
        .iter()
        .map(|s| (s.name().to_string(), s.code()))
        .collect();
    in_header.sort();
    in_rust.sort();
    assert_eq!(in_header, in_rust);
    for (name, value) in &in_rust {
        let c = unsafe { std::ffi::CStr::from_ptr(hap::ffi::hap_status_name(*value)) };
        assert_eq!(c.to_str().unwrap(), name);
    }
}

/// The version text is written once (`version_string!` in src/lib.rs): the C and Rust
/// spellings cannot drift.
#[test]
fn version_is_one_literal() {
    let c = unsafe { std::ffi::CStr::from_ptr(hap::ffi::hap_version()) };
    assert_eq!(c.to_str().unwrap(), hap::VERSION_STRING);
    let abi = hap::ffi::hap_abi_version();
    assert!(hap::VERSION_STRING.ends_with(&format!("(abi {}.{})", abi >> 16, abi & 0xffff)));
}
