//! Regenerates `include/hap.h` from `src/ffi/` on every build, so the committed header can
//! only be stale if someone forgot to commit it (`tests/header.rs` catches that).

fn main() {
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    let crate_dir = std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo");
    let config = cbindgen::Config::from_file(format!("{crate_dir}/cbindgen.toml"))
        .expect("cbindgen.toml parses");
    match cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
    {
        Ok(bindings) => {
            bindings.write_to_file(format!("{crate_dir}/include/hap.h"));
        }
        // A half-edited source tree must still let `cargo check` report the real error.
        Err(e) => println!("cargo:warning=cbindgen could not generate include/hap.h: {e}"),
    }
}
