//! Fault injection for the crash tests (cargo feature `fault-injection`, never in a build a
//! user loads). `HAP_FAULT=<point>` makes the process die with SIGKILL at that point of the
//! refresh transaction, exactly as an OOM kill or a power cut would stop it.

#[cfg(feature = "fault-injection")]
fn armed(point: &str) -> bool {
    std::env::var("HAP_FAULT").is_ok_and(|v| v.split(',').any(|p| p == point))
}

#[cfg(feature = "fault-injection")]
fn die() -> ! {
    // SAFETY: getpid cannot fail; SIGKILL to ourselves is the point (a test-only build).
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    loop {
        std::thread::park();
    }
}

/// Dies here when `HAP_FAULT` names `point`.
#[inline]
pub fn point(_point: &str) {
    #[cfg(feature = "fault-injection")]
    if armed(_point) {
        die();
    }
}

/// Sleeps 2 s here when `HAP_FAULT` names `point`: a slow background thread, so a test can
/// see that the caller does not wait for it.
#[inline]
pub fn pause(_point: &str) {
    #[cfg(feature = "fault-injection")]
    if armed(_point) {
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
}

/// `HAP_FAULT=mid_write:<file name>` writes half the bytes of that file's temp file, syncs
/// them, and dies: the torn temp file must never become the store.
#[inline]
pub fn point_mid_write(_f: &mut std::fs::File, _bytes: &[u8], _name: &str) {
    #[cfg(feature = "fault-injection")]
    if armed(&format!("mid_write:{_name}")) {
        use std::io::Write;
        let _ = _f.write_all(&_bytes[.._bytes.len() / 2]);
        let _ = _f.sync_all();
        die();
    }
}
