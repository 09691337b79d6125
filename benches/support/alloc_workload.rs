//! The allocation workload both allocator benches run: alloc + free pairs of mixed sizes, on one or
//! more threads started together.

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// Sizes cycled through, 16 B to 4 KiB.
pub(crate) const SIZES: [usize; 8] = [16, 48, 128, 512, 1024, 4096, 64, 256];

/// `iters` alloc + free pairs through `a`.
pub(crate) fn pairs<A: GlobalAlloc>(a: &A, iters: u64) {
    for i in 0..iters {
        let layout = Layout::from_size_align(SIZES[(i % 8) as usize], 8).unwrap();
        unsafe {
            let p = a.alloc(layout);
            p.write_volatile(i as u8);
            a.dealloc(black_box(p), layout);
        }
    }
}

/// Wall time for `threads` threads each doing `iters` pairs, released together after a warm-up (which
/// claims the thread's shard and warms the allocator's thread cache).
pub(crate) fn run<A: GlobalAlloc + Sync>(a: &'static A, threads: usize, iters: u64) -> Duration {
    if threads == 1 {
        pairs(a, 64);
        let t = Instant::now();
        pairs(a, iters);
        return t.elapsed();
    }
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let b = barrier.clone();
            std::thread::spawn(move || {
                pairs(a, 10_000);
                b.wait();
                pairs(a, iters);
            })
        })
        .collect();
    barrier.wait();
    let t = Instant::now();
    for h in handles {
        h.join().unwrap();
    }
    t.elapsed()
}
