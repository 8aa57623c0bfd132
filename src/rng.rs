//! A tiny non-cryptographic generator for backoff jitter, the `random` strategy and row ids.
//! Seeded per process from the std hasher's random keys, so siblings started in the same
//! instant still spread out.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

thread_local! {
    static STATE: Cell<u64> = Cell::new({
        let mut h = RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.write_u128(std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0));
        h.finish() | 1
    });
}

pub fn next_u64() -> u64 {
    STATE.with(|s| {
        // xorshift64*
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

/// Uniform-ish in `0..n` (n > 0).
pub fn below(n: u64) -> u64 {
    next_u64() % n.max(1)
}
