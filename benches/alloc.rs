//! CountingAlloc against plain System: alloc + free pairs of mixed sizes on 1 and 2 threads.
//!
//! Every variant calls the allocator through `GlobalAlloc` directly, in the same binary and run, so the
//! only difference is the counting. `global-atomic` is the naive design (one shared set of atomic
//! counters) kept as a reference for why CountingAlloc shards per thread.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
#[path = "support/quick.rs"]
mod quick;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use criterion::{BenchmarkId, Criterion};
use vigil::CountingAlloc;

#[path = "support/alloc_workload.rs"]
mod alloc_workload;
use alloc_workload::run;

/// The naive design: every thread updates the same four atomics.
struct GlobalAtomic {
    allocs: AtomicU64,
    frees: AtomicU64,
    bytes: AtomicU64,
    freed: AtomicU64,
}

static GLOBAL_ATOMIC: GlobalAtomic = GlobalAtomic {
    allocs: AtomicU64::new(0),
    frees: AtomicU64::new(0),
    bytes: AtomicU64::new(0),
    freed: AtomicU64::new(0),
};

unsafe impl GlobalAlloc for GlobalAtomic {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.allocs.fetch_add(1, Relaxed);
        self.bytes.fetch_add(layout.size() as u64, Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.frees.fetch_add(1, Relaxed);
        self.freed.fetch_add(layout.size() as u64, Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

static COUNTING: CountingAlloc = CountingAlloc::system();

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("alloc_free_pair");
    for threads in [1usize, 2] {
        g.bench_with_input(BenchmarkId::new("system", threads), &threads, |b, &t| {
            b.iter_custom(|iters| run(&System, t, iters))
        });
        g.bench_with_input(BenchmarkId::new("counting", threads), &threads, |b, &t| {
            b.iter_custom(|iters| run(&COUNTING, t, iters))
        });
        g.bench_with_input(
            BenchmarkId::new("global-atomic", threads),
            &threads,
            |b, &t| b.iter_custom(|iters| run(&GLOBAL_ATOMIC, t, iters)),
        );
    }
    g.finish();
}

quick_criterion_main!(bench);
