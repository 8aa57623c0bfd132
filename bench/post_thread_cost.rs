//! What the token POST's own thread adds to a refresh (src/refresh/oauth.rs): starting and joining a
//! thread with a 512 KiB stack, and zeroing 128 KiB of that stack before it ends
//! (src/alloc.rs, scrub_stack). Medians of 2000 rounds, in microseconds.
//!
//!   rustc -O -o bench/build/post_thread_cost bench/post_thread_cost.rs
//!   bench/build/post_thread_cost
//!
//! hap zeroes with zeroize (a memset the compiler cannot drop); write_bytes + black_box here
//! is the same memset, without the dependency.

use std::mem::MaybeUninit;
use std::time::Instant;

const POST_STACK: usize = 512 * 1024;

#[inline(never)]
fn scrub_stack() {
    let mut frame = [MaybeUninit::<u8>::uninit(); 128 * 1024];
    // SAFETY: writes within the array, which is ours.
    unsafe { std::ptr::write_bytes(frame.as_mut_ptr(), 0, frame.len()) };
    std::hint::black_box(&mut frame);
}

fn on_thread(scrub: bool) {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(POST_STACK)
            .spawn_scoped(s, || {
                if scrub {
                    scrub_stack();
                }
            })
            .unwrap()
            .join()
            .unwrap()
    });
}

fn median_us(mut v: Vec<u128>) -> f64 {
    v.sort_unstable();
    v[v.len() / 2] as f64 / 1000.0
}

fn main() {
    let (mut thread, mut thread_scrub, mut scrub) = (vec![], vec![], vec![]);
    for _ in 0..2000 {
        let t = Instant::now();
        on_thread(false);
        thread.push(t.elapsed().as_nanos());
        let t = Instant::now();
        on_thread(true);
        thread_scrub.push(t.elapsed().as_nanos());
        let t = Instant::now();
        scrub_stack();
        scrub.push(t.elapsed().as_nanos());
    }
    println!(
        "{{\"thread_us\": {:.1}, \"thread_and_scrub_us\": {:.1}, \"scrub_on_warm_stack_us\": {:.1}}}",
        median_us(thread),
        median_us(thread_scrub),
        median_us(scrub)
    );
}
