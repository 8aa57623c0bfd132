//! `HAP_LOG=debug` writes one line per event to stderr. Lines name credentials by id and
//! files by path; callers never pass token material here.

use std::sync::OnceLock;

fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        std::env::var("HAP_LOG")
            .is_ok_and(|v| v.eq_ignore_ascii_case("debug") || v.eq_ignore_ascii_case("trace"))
    })
}

pub fn debug(args: std::fmt::Arguments<'_>) {
    if enabled() {
        eprintln!("hap[{}] {}", std::process::id(), args);
    }
}
