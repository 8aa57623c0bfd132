//! The global allocator of every artifact built from this crate: the system allocator,
//! except that a block is zeroed before it goes back to it.
//!
//! Why (issue 10, item 14): after `hap_free` and `hap_pool_free`, a scan of a C host found 4
//! copies of the new access token and 3 of the new refresh token in freed heap blocks.
//! [`crate::Secret`] and `Zeroizing` wipe the values hap owns, but not the old block a `Vec`
//! leaves behind when it grows, nor the buffers of the HTTP (ureq), TLS (rustls) and JSON
//! (serde_json) libraries. Wiping in the allocator covers every Rust allocation of the
//! library, whoever makes it. `tests/memory_scan.rs` is the proof; the cost on the hot path is
//! in BENCHMARKS.md.
//!
//! What `#[global_allocator]` in a library crate means here: it is chosen once per final
//! artifact, and it governs only the Rust code linked into that artifact.
//! * `libhap.so` (C, Python, Node) and `libhap.a` (Go, through cgo): every allocation of
//!   hap, std, ureq, rustls and serde_json in the library goes through it. The host's own
//!   `malloc` calls and its runtime's heap (Python `str`, JS strings, Go strings the bindings
//!   copy a token into) are the host's, untouched and not covered.
//! * the rlib: every Rust binary linking hap gets it too (the `hap` CLI, the tests, the
//!   benches, the fuzz targets). A Rust program with a `#[global_allocator]` of its own cannot
//!   link a second one: it builds hap with `default-features = false` (which drops the
//!   `zeroing-allocator` feature) and, to keep the guarantee, wraps its own allocator:
//!   `#[global_allocator] static A: hap::alloc::Zeroing<MyAlloc> = hap::alloc::Zeroing(MyAlloc);`
//!
//! What it cannot reach (the README's "What stays in memory" says it to users): stack
//! frames and registers, kernel socket buffers and the page cache, and memory anything
//! outside Rust allocates. For the stack, the token POST, whose frames hold the most (the
//! request body, TLS records, the answer being parsed), runs on a thread that zeroes its
//! stack with [`scrub_stack`] before it ends.

use std::alloc::{GlobalAlloc, Layout};
use std::mem::MaybeUninit;
use zeroize::Zeroize;

/// `A`, with every block zeroed before `A` gets it back.
pub struct Zeroing<A>(pub A);

#[cfg(feature = "zeroing-allocator")]
#[global_allocator]
static GLOBAL: Zeroing<std::alloc::System> = Zeroing(std::alloc::System);

/// Zeroes `len` bytes at `ptr`. A plain `write_bytes` before `free` is a dead store the
/// compiler may delete (it knows what `free` means); zeroize writes and then passes the
/// bytes through an optimisation barrier, so the writes stay. It neither allocates nor
/// panics, which an allocator must not do.
///
/// # Safety
/// `ptr` is valid for writes of `len` bytes, all inside one allocation nobody else uses.
unsafe fn wipe(ptr: *mut u8, len: usize) {
    // SAFETY: the caller gives exclusive access to `len` writable bytes at `ptr`, which is
    // non-null and (for u8) aligned; `len` fits in isize because it came from a `Layout`.
    // `MaybeUninit<u8>` because a block may hold bytes that were never initialised.
    let bytes = unsafe { std::slice::from_raw_parts_mut(ptr.cast::<MaybeUninit<u8>>(), len) };
    bytes.zeroize();
}

// SAFETY: every method upholds GlobalAlloc's contract by forwarding to `A`, which upholds
// it: the blocks `A` returns are what `Zeroing` returns, `Zeroing` gives back to `A` only
// blocks `A` allocated with the layout they were allocated with, and it neither panics nor
// allocates (wipe does neither).
unsafe impl<A: GlobalAlloc> GlobalAlloc for Zeroing<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's guarantees for `layout` (non-zero size) are `A::alloc`'s.
        unsafe { self.0.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        unsafe { self.0.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller guarantees `ptr` is a live block of `layout` from this
        // allocator, so it is `layout.size()` bytes we may write and then hand back to `A`,
        // which allocated it.
        unsafe {
            wipe(ptr, layout.size());
            self.0.dealloc(ptr, layout);
        }
    }

    /// Always allocate, copy, zero, free. `A::realloc` would be cheaper when it can grow or
    /// shrink in place, but when it moves the block it frees the old one as it is, token
    /// bytes included: that is how a growing `Vec` leaves copies behind.
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` is non-zero and, rounded up to
        // `layout.align()`, does not overflow isize, so `new_layout` is a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: `new_layout` has a non-zero size.
        let new = unsafe { self.0.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: `ptr` is a live block of `layout.size()` bytes, `new` a fresh one of
            // `new_size` bytes, so they do not overlap and both hold the bytes copied; `ptr`
            // is then released once, with its own layout, as realloc's contract says.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        // On failure the old block is left as it was, as the contract requires.
        new
    }
}

/// How much of its own stack a thread zeroes with [`scrub_stack`].
pub(crate) const SCRUB_STACK: usize = 128 * 1024;

/// Zeroes the [`SCRUB_STACK`] bytes below the caller's frame: the dead frames of whatever the
/// caller called last. Only for a thread whose stack is known to be larger than that plus
/// its frames so far (hap's own POST thread, `oauth.rs`); a host thread's may not be.
#[inline(never)]
pub(crate) fn scrub_stack() {
    let mut frame = [MaybeUninit::<u8>::uninit(); SCRUB_STACK];
    // The slice impl (one memset and a barrier), not the array one (a write per byte).
    frame.as_mut_slice().zeroize();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::System;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Records what the block holds at the moment it is handed back.
    struct Spy {
        freed_nonzero: AtomicUsize,
        frees: AtomicUsize,
    }

    // SAFETY: forwards to System; dealloc only reads the block it is given before freeing.
    unsafe impl GlobalAlloc for Spy {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: the caller's guarantees are System's.
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: `ptr` is a live block of `layout.size()` bytes; Zeroing initialised
            // all of them (wipe) before handing it here.
            let bytes = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
            let nonzero = bytes.iter().filter(|&&b| b != 0).count();
            self.freed_nonzero.fetch_add(nonzero, Ordering::Relaxed);
            self.frees.fetch_add(1, Ordering::Relaxed);
            // SAFETY: `ptr` came from System.alloc with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[test]
    fn dealloc_and_realloc_hand_back_only_zeroes() {
        let a = Zeroing(Spy {
            freed_nonzero: AtomicUsize::new(0),
            frees: AtomicUsize::new(0),
        });
        let layout = Layout::from_size_align(64, 8).unwrap();
        // SAFETY: a non-zero layout; every block is written within its size and freed once
        // with the layout it has.
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null());
            std::ptr::write_bytes(p, 0xAB, 64);
            // Grow: the old block is freed, zeroed; the new one keeps the bytes.
            let q = a.realloc(p, layout, 4096);
            assert!(!q.is_null());
            assert!(std::slice::from_raw_parts(q, 64).iter().all(|&b| b == 0xAB));
            std::ptr::write_bytes(q, 0xCD, 4096);
            // Shrink: the same.
            let r = a.realloc(q, Layout::from_size_align(4096, 8).unwrap(), 16);
            assert!(std::slice::from_raw_parts(r, 16).iter().all(|&b| b == 0xCD));
            a.dealloc(r, Layout::from_size_align(16, 8).unwrap());
        }
        assert_eq!(a.0.frees.load(Ordering::Relaxed), 3);
        assert_eq!(a.0.freed_nonzero.load(Ordering::Relaxed), 0);
    }
}
