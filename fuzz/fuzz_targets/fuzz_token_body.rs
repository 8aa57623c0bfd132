#![no_main]
//! See ../README.md; the properties live in ../src/lib.rs (check_token_body).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hap_fuzz::check_token_body(data, hap_fuzz::strict_from_env());
});
