//! Generates the C header from `src/ffi/` into `$OUT_DIR/hap.h` on every build.
//! `tests/header.rs` fails when the committed `include/hap.h` differs from it; refresh the
//! committed copy with `HAP_UPDATE_HEADER=1 cargo build` (a build script does not write into
//! the source tree unless asked: that keeps `cargo package` and read-only checkouts working).

fn main() {
    // cbindgen reads the whole crate (a pub const anywhere can reach the header).
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=HAP_UPDATE_HEADER");
    soname();
    let crate_dir = std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo");
    let out_dir = std::env::var("OUT_DIR").expect("set by cargo");
    let config = cbindgen::Config::from_file(format!("{crate_dir}/cbindgen.toml"))
        .expect("cbindgen.toml parses");
    match cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
    {
        Ok(bindings) => {
            bindings.write_to_file(format!("{out_dir}/hap.h"));
            if std::env::var_os("HAP_UPDATE_HEADER").is_some_and(|v| v != "0") {
                bindings.write_to_file(format!("{crate_dir}/include/hap.h"));
            }
        }
        // A half-edited source tree must still let `cargo check` report the real error.
        Err(e) => println!("cargo:warning=cbindgen could not generate the header: {e}"),
    }
}

/// `HAP_SONAME=libhap.so.<ABI major>` (set by scripts/dist) gives the cdylib that SONAME, so a
/// program linked against the installed `libhap.so` records `libhap.so.0` and keeps working
/// across compatible (same ABI major) upgrades. Only the packaging build sets it, as cargo-c
/// does for librsvg and rav1e: an everyday `target/release/libhap.so` has no SONAME, so the
/// in-tree programs linked with `-Ltarget/release -lhap` (C smoke test, stress, bench) find it
/// under its own name without a `libhap.so.0` beside it.
fn soname() {
    println!("cargo:rerun-if-env-changed=HAP_SONAME");
    let Ok(name) = std::env::var("HAP_SONAME") else {
        return;
    };
    let major = name.strip_prefix("libhap.so.").unwrap_or("");
    assert!(
        !major.is_empty() && major.bytes().all(|b| b.is_ascii_digit()),
        "HAP_SONAME must be libhap.so.<ABI major>, got {name:?}"
    );
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{name}");
    }
}
