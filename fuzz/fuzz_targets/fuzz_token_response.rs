#![no_main]
//! See ../README.md; the properties live in ../src/lib.rs (check_token_response).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hap_fuzz::check_token_response(data, hap_fuzz::strict_from_env());
});
