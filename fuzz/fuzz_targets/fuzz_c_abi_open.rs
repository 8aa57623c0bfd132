#![no_main]
//! See ../README.md; the properties live in ../src/lib.rs (check_c_abi_open).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hap_fuzz::check_c_abi_open(data, hap_fuzz::strict_from_env());
});
