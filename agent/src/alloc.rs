//! `CountingAlloc`: a global allocator wrapper that counts allocations cheaply enough to leave on in
//! production.
//!
//! Why sharded: one global atomic counter costs about 3x a plain `malloc`/`free` pair once two threads
//! allocate at the same time (every update bounces one cache line between cores). Here every thread
//! claims its own cache-padded shard on first use and updates it with plain relaxed load + store (no
//! locked read-modify-write: only the owning thread writes a claimed shard). The agent sums the shards
//! when it samples. A shard is released when its thread exits (its counts stay in it, so totals never go
//! back) and reused by the next new thread. Threads beyond [`SHARDS`]` - 1` live at once, and allocations
//! made while a thread is being torn down, share one overflow shard updated with atomic adds.
//!
//! Rust ≥ 1.92 lets a global allocator use `thread_local!` with a destructor (rust-lang/rust#144465):
//! the TLS machinery allocates through `System`, never re-entering this allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};

/// Number of shards: one per live thread up to `SHARDS - 1`, plus the shared overflow shard.
pub const SHARDS: usize = 128;
const OVERFLOW: usize = SHARDS - 1;

#[repr(align(128))] // two cache lines: adjacent-line prefetch must not couple neighbours either
struct Shard {
    allocations: AtomicU64,
    frees: AtomicU64,
    bytes_allocated: AtomicU64,
    bytes_freed: AtomicU64,
    claimed: AtomicBool,
}

impl Shard {
    const fn new() -> Self {
        Self {
            allocations: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            bytes_allocated: AtomicU64::new(0),
            bytes_freed: AtomicU64::new(0),
            claimed: AtomicBool::new(false),
        }
    }
}

static SHARD_TABLE: [Shard; SHARDS] = [const { Shard::new() }; SHARDS];
static NEXT_HINT: AtomicUsize = AtomicUsize::new(0);

/// This thread's claim on a shard; releasing it on thread exit lets a new thread reuse the slot.
struct Claim(Cell<usize>);

impl Claim {
    fn new() -> Self {
        let start = NEXT_HINT.fetch_add(1, Relaxed);
        for i in 0..OVERFLOW {
            let idx = (start + i) % OVERFLOW;
            if SHARD_TABLE[idx]
                .claimed
                .compare_exchange(false, true, Acquire, Relaxed)
                .is_ok()
            {
                return Self(Cell::new(idx));
            }
        }
        Self(Cell::new(OVERFLOW))
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let idx = self.0.replace(OVERFLOW);
        if idx != OVERFLOW {
            // Release: the next owner's Acquire claim sees our last stores.
            SHARD_TABLE[idx].claimed.store(false, Release);
        }
    }
}

thread_local! {
    static CLAIM: Claim = Claim::new();
}

#[inline(always)]
fn add_owned(c: &AtomicU64, v: u64) {
    // Only the owning thread writes this shard, so load + store loses nothing and avoids a locked RMW.
    c.store(c.load(Relaxed).wrapping_add(v), Relaxed);
}

#[inline(always)]
fn record(allocs: u64, frees: u64, bytes_alloc: u64, bytes_freed: u64) {
    let idx = CLAIM.try_with(|c| c.0.get()).unwrap_or(OVERFLOW);
    let s = &SHARD_TABLE[idx];
    if idx == OVERFLOW {
        s.allocations.fetch_add(allocs, Relaxed);
        s.frees.fetch_add(frees, Relaxed);
        s.bytes_allocated.fetch_add(bytes_alloc, Relaxed);
        s.bytes_freed.fetch_add(bytes_freed, Relaxed);
    } else {
        if allocs != 0 {
            add_owned(&s.allocations, allocs);
            add_owned(&s.bytes_allocated, bytes_alloc);
        }
        if frees != 0 {
            add_owned(&s.frees, frees);
            add_owned(&s.bytes_freed, bytes_freed);
        }
    }
}

/// Totals since the process started, summed over all shards.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AllocStats {
    /// Allocations (`alloc`, `alloc_zeroed`, and each `realloc` counts one allocation and one free).
    pub allocations: u64,
    /// Deallocations.
    pub frees: u64,
    /// Bytes requested by allocations.
    pub bytes_allocated: u64,
    /// Bytes released by deallocations.
    pub bytes_freed: u64,
}

impl AllocStats {
    /// Bytes allocated and not yet freed (what the program holds, excluding allocator overhead).
    pub fn live_bytes(&self) -> u64 {
        self.bytes_allocated.saturating_sub(self.bytes_freed)
    }

    /// Allocations not yet freed.
    pub fn live_allocations(&self) -> u64 {
        self.allocations.saturating_sub(self.frees)
    }
}

/// Reads the process-wide totals. All zero when no [`CountingAlloc`] is the global allocator.
///
/// Shards are read one by one while other threads keep allocating, so the result is a close, not
/// atomic, snapshot; `live_bytes` saturates at zero rather than going negative.
pub fn alloc_stats() -> AllocStats {
    let mut s = AllocStats::default();
    for shard in &SHARD_TABLE {
        s.allocations = s.allocations.wrapping_add(shard.allocations.load(Relaxed));
        s.frees = s.frees.wrapping_add(shard.frees.load(Relaxed));
        s.bytes_allocated = s
            .bytes_allocated
            .wrapping_add(shard.bytes_allocated.load(Relaxed));
        s.bytes_freed = s.bytes_freed.wrapping_add(shard.bytes_freed.load(Relaxed));
    }
    s
}

/// True when a [`CountingAlloc`] has counted at least one allocation, i.e. it is installed as the global
/// allocator (any Rust program allocates before `main`).
pub fn alloc_tracking_enabled() -> bool {
    SHARD_TABLE.iter().any(|s| s.allocations.load(Relaxed) != 0)
}

/// A [`GlobalAlloc`] that forwards to `A` (default [`System`]) and counts allocations, frees and bytes.
///
/// ```no_run
/// #[global_allocator]
/// static ALLOC: vigil_agent::CountingAlloc = vigil_agent::CountingAlloc::system();
/// ```
///
/// Wrapping another allocator works the same way: `CountingAlloc::new(mimalloc::MiMalloc)`.
#[derive(Debug, Default, Clone, Copy)]
pub struct CountingAlloc<A = System> {
    inner: A,
}

impl CountingAlloc<System> {
    /// Counting on top of the system allocator.
    pub const fn system() -> Self {
        Self { inner: System }
    }
}

impl<A> CountingAlloc<A> {
    /// Counting on top of `inner`.
    pub const fn new(inner: A) -> Self {
        Self { inner }
    }
}

// SAFETY: every method forwards to `inner` unchanged; counting touches only atomics and a thread-local
// that never allocates through this allocator and never unwinds.
unsafe impl<A: GlobalAlloc> GlobalAlloc for CountingAlloc<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { self.inner.alloc(layout) };
        if !p.is_null() {
            record(1, 0, layout.size() as u64, 0);
        }
        p
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { self.inner.alloc_zeroed(layout) };
        if !p.is_null() {
            record(1, 0, layout.size() as u64, 0);
        }
        p
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { self.inner.dealloc(ptr, layout) };
        record(0, 1, 0, layout.size() as u64);
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { self.inner.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            record(1, 1, new_size as u64, layout.size() as u64);
        }
        p
    }
}
