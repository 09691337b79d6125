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
//! The hot path reads a const-initialised thread-local without destructor (a plain TLS load). A second
//! thread-local with a destructor is touched once per thread, on its first allocation, to release the
//! shard at exit; Rust ≥ 1.92 allows that inside a global allocator (rust-lang/rust#144465: the TLS
//! machinery allocates through `System`, never re-entering this allocator).

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
    /// Owned by an agent thread ([`mark_agent_thread`]): counted in [`agent_alloc_stats`], not in
    /// [`alloc_stats`].
    agent: AtomicBool,
}

impl Shard {
    const fn new() -> Self {
        Self {
            allocations: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            bytes_allocated: AtomicU64::new(0),
            bytes_freed: AtomicU64::new(0),
            claimed: AtomicBool::new(false),
            agent: AtomicBool::new(false),
        }
    }
}

static SHARD_TABLE: [Shard; SHARDS] = [const { Shard::new() }; SHARDS];
/// Counts moved out of shards when they changed hands: what host threads counted in a shard an agent
/// thread then took over, and what agent threads counted before they exited.
static HOST_RETIRED: Shard = Shard::new();
static AGENT_RETIRED: Shard = Shard::new();
/// A sequence lock over every move between shards and the retired totals (rare: an agent thread
/// starting or exiting): odd while a move is under way, so readers never see counts twice or not at
/// all. The allocation hot path never touches it.
static MOVES: AtomicU64 = AtomicU64::new(0);
static NEXT_HINT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // This thread's shard, null until its first allocation. Const-initialised and without a destructor,
    // so the hot path is one thread-pointer-relative load: no lazy-initialisation state, no destructor
    // registration.
    static SHARD: Cell<*const Shard> = const { Cell::new(std::ptr::null()) };
    // Touched once per thread, on its first allocation, only to release the shard when the thread exits.
    static RELEASE_ON_EXIT: ReleaseOnExit = const { ReleaseOnExit };
}

fn overflow() -> &'static Shard {
    &SHARD_TABLE[OVERFLOW]
}

struct ReleaseOnExit;

impl Drop for ReleaseOnExit {
    fn drop(&mut self) {
        // Later allocations on this exiting thread (other destructors) go to the overflow shard.
        let own = SHARD
            .try_with(|s| s.replace(overflow()))
            .unwrap_or(overflow());
        if !std::ptr::eq(own, overflow()) && !own.is_null() {
            // SAFETY: SHARD only ever holds null or a pointer into the static SHARD_TABLE.
            let shard = unsafe { &*own };
            if shard.agent.load(Relaxed) {
                // An agent thread's counts stay the agent's when a host thread reuses the shard.
                move_counts(shard, &AGENT_RETIRED, false);
            }
            // Release: the next owner's Acquire claim sees our last stores.
            shard.claimed.store(false, Release);
        }
    }
}

#[cold]
#[inline(never)]
fn claim() -> &'static Shard {
    let start = NEXT_HINT.fetch_add(1, Relaxed);
    let mut shard = overflow();
    for i in 0..OVERFLOW {
        let candidate = &SHARD_TABLE[(start + i) % OVERFLOW];
        if candidate
            .claimed
            .compare_exchange(false, true, Acquire, Relaxed)
            .is_ok()
        {
            shard = candidate;
            break;
        }
    }
    // Register the release; if the thread is already exiting, give the shard straight back.
    if !std::ptr::eq(shard, overflow()) && RELEASE_ON_EXIT.try_with(|_| ()).is_err() {
        shard.claimed.store(false, Release);
        shard = overflow();
    }
    let _ = SHARD.try_with(|s| s.set(shard));
    shard
}

/// Moves `shard`'s counts into `to`, zeroes them and sets the shard's agent flag to `agent`, under the
/// [`MOVES`] sequence lock.
fn move_counts(shard: &Shard, to: &Shard, agent: bool) {
    // Take the lock: from even to odd.
    loop {
        let v = MOVES.load(Relaxed);
        if v.is_multiple_of(2) && MOVES.compare_exchange(v, v + 1, Acquire, Relaxed).is_ok() {
            break;
        }
        std::hint::spin_loop();
    }
    std::sync::atomic::fence(Release);
    for (from, into) in [
        (&shard.allocations, &to.allocations),
        (&shard.frees, &to.frees),
        (&shard.bytes_allocated, &to.bytes_allocated),
        (&shard.bytes_freed, &to.bytes_freed),
    ] {
        into.fetch_add(from.swap(0, Relaxed), Relaxed);
    }
    shard.agent.store(agent, Relaxed);
    MOVES.fetch_add(1, Release);
}

/// Marks the calling thread as one of the agent's own (its tick thread, probe, training): from now on
/// its allocations count in [`agent_alloc_stats`] (exported as the agent's own cost) and not in
/// [`alloc_stats`], so the host's allocation signals do not show the agent's work. Cheap; call it once,
/// first thing on the thread. A thread that could not get a shard of its own (more than
/// [`SHARDS`]` - 1` threads alive) stays counted with the host.
pub fn mark_agent_thread() {
    if let (shard, true) = my_shard()
        && !shard.agent.load(Relaxed)
    {
        // What earlier owners of this shard counted stays the host's.
        move_counts(shard, &HOST_RETIRED, true);
    }
}

#[inline(always)]
fn add_owned(c: &AtomicU64, v: u64) {
    // Only the owning thread writes this shard, so load + store loses nothing and avoids a locked RMW.
    c.store(c.load(Relaxed).wrapping_add(v), Relaxed);
}

/// This thread's shard and whether it owns it exclusively.
#[inline(always)]
fn my_shard() -> (&'static Shard, bool) {
    let ptr = SHARD.try_with(Cell::get).unwrap_or(std::ptr::null());
    let shard = if ptr.is_null() {
        claim()
    } else {
        // SAFETY: SHARD only ever holds null or a pointer into the static SHARD_TABLE.
        unsafe { &*ptr }
    };
    (shard, !std::ptr::eq(shard, overflow()))
}

#[inline(always)]
fn record_alloc(bytes: u64) {
    match my_shard() {
        (s, true) => {
            add_owned(&s.allocations, 1);
            add_owned(&s.bytes_allocated, bytes);
        }
        (s, false) => {
            s.allocations.fetch_add(1, Relaxed);
            s.bytes_allocated.fetch_add(bytes, Relaxed);
        }
    }
}

#[inline(always)]
fn record_free(bytes: u64) {
    match my_shard() {
        (s, true) => {
            add_owned(&s.frees, 1);
            add_owned(&s.bytes_freed, bytes);
        }
        (s, false) => {
            s.frees.fetch_add(1, Relaxed);
            s.bytes_freed.fetch_add(bytes, Relaxed);
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

/// Reads the host's totals: every allocation since the process started except those made on the
/// agent's own threads (see [`mark_agent_thread`]). All zero when no [`CountingAlloc`] is the global
/// allocator.
///
/// Shards are read one by one while other threads keep allocating, so the result is a close, not
/// atomic, snapshot; `live_bytes` saturates at zero rather than going negative. Totals never go back.
pub fn alloc_stats() -> AllocStats {
    read_totals().0
}

/// The agent's own allocations (its tick, probe and training threads): what the agent costs the host.
pub fn agent_alloc_stats() -> AllocStats {
    read_totals().1
}

fn add(s: &mut AllocStats, shard: &Shard) {
    s.allocations = s.allocations.wrapping_add(shard.allocations.load(Relaxed));
    s.frees = s.frees.wrapping_add(shard.frees.load(Relaxed));
    s.bytes_allocated = s
        .bytes_allocated
        .wrapping_add(shard.bytes_allocated.load(Relaxed));
    s.bytes_freed = s.bytes_freed.wrapping_add(shard.bytes_freed.load(Relaxed));
}

/// (host, agent) totals, consistent with respect to moves between shards.
fn read_totals() -> (AllocStats, AllocStats) {
    loop {
        let before = MOVES.load(Acquire);
        if !before.is_multiple_of(2) {
            std::hint::spin_loop();
            continue;
        }
        let (mut host, mut agent) = (AllocStats::default(), AllocStats::default());
        for shard in &SHARD_TABLE {
            if shard.agent.load(Relaxed) {
                add(&mut agent, shard);
            } else {
                add(&mut host, shard);
            }
        }
        add(&mut host, &HOST_RETIRED);
        add(&mut agent, &AGENT_RETIRED);
        std::sync::atomic::fence(Acquire);
        if MOVES.load(Relaxed) == before {
            return (host, agent);
        }
    }
}

/// True when a [`CountingAlloc`] has counted at least one allocation, i.e. it is installed as the global
/// allocator (any Rust program allocates before `main`).
pub fn alloc_tracking_enabled() -> bool {
    SHARD_TABLE
        .iter()
        .chain([&HOST_RETIRED, &AGENT_RETIRED])
        .any(|s| s.allocations.load(Relaxed) != 0)
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
    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { self.inner.alloc(layout) };
        if !p.is_null() {
            record_alloc(layout.size() as u64);
        }
        p
    }

    #[inline(always)]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { self.inner.alloc_zeroed(layout) };
        if !p.is_null() {
            record_alloc(layout.size() as u64);
        }
        p
    }

    #[inline(always)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { self.inner.dealloc(ptr, layout) };
        record_free(layout.size() as u64);
    }

    #[inline(always)]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { self.inner.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            record_alloc(new_size as u64);
            record_free(layout.size() as u64);
        }
        p
    }
}
