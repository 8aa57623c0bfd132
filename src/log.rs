//! `HAP_LOG=debug` writes one line per event to stderr. Lines name credentials by id and
//! files by path; callers never pass token material here.

use std::sync::OnceLock;

fn level() -> &'static str {
    static LEVEL: OnceLock<String> = OnceLock::new();
    LEVEL.get_or_init(|| {
        std::env::var("HAP_LOG")
            .unwrap_or_default()
            .to_ascii_lowercase()
    })
}

fn enabled() -> bool {
    matches!(level(), "debug" | "trace")
}

pub fn debug(args: std::fmt::Arguments<'_>) {
    if enabled() {
        eprintln!("hap[{}] {}", std::process::id(), args);
    }
}

/// Something unsafe the user should fix and hap works around (a store directory other users
/// can write to): written whatever `HAP_LOG` says, except `HAP_LOG=off`. Callers write each
/// cause once per process.
pub fn warn(args: std::fmt::Arguments<'_>) {
    if level() != "off" {
        eprintln!("hap[{}] warning: {}", std::process::id(), args);
    }
}
