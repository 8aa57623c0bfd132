//! A pool handle's counters (`hap_pool_status`'s `counters`), bumped by the pool and by the
//! refresh transaction alike.

use std::sync::atomic::AtomicU64;

#[derive(Default)]
pub(crate) struct Counters {
    pub resolves: AtomicU64,
    pub refresh_posts: AtomicU64,
    pub refresh_adopted: AtomicU64,
    pub journal_recoveries: AtomicU64,
    pub lock_waits: AtomicU64,
    pub store_reads: AtomicU64,
    pub store_writes: AtomicU64,
}
