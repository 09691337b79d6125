//! The SIGPROF sampler: a fixed stack table of our own, allocated when a profile starts and freed
//! when it ends, so a profile costs about a megabyte while it runs and nothing before or after
//! (pprof-rs, which this replaces, kept a ~70 MB sample table for the life of the process once a
//! profile had run).
//!
//! `setitimer(ITIMER_PROF)` delivers SIGPROF to whichever thread is on a CPU, [`super::PROFILE_HZ`]
//! times a second of process CPU time. The handler:
//! - takes the table's flag with one compare-and-swap and never waits for it: a signal that finds it
//!   taken (another thread's handler, or the profiling thread stopping) drops its sample and counts it;
//! - records the interrupted instruction itself (read from the signal's `ucontext`, so the function
//!   a sample interrupted is its first frame), then walks the stack: on x86_64 with each frame's
//!   DWARF call-frame information ([`super::unwind`]: code built without frame pointers, the usual
//!   release build and most C and C++ libraries, unwinds whole), taking a frame-pointer step where a
//!   frame has none; elsewhere through the saved frame pointers alone. Every word of the stack is
//!   copied through a pipe with `write(2)` and `read(2)`, which fail with `EFAULT` on an address that
//!   is not mapped instead of faulting; the walk stops where no frame above the current one is
//!   found, or at [`MAX_DEPTH`];
//! - adds the stack to an open-addressing table of [`BUCKETS`] stacks (equal stacks share a bucket);
//!   a stack that finds no free bucket within [`PROBES`] is counted as lost, not silently dropped;
//! - allocates nothing, takes no lock it can wait on, and keeps `errno` as it found it. Everything
//!   it calls is async-signal-safe (`write`, `read`, atomics).
//!
//! Without DWARF unwinding (aarch64), code built without frame pointers gives short stacks (the host
//! should build with `-C force-frame-pointers=yes`; this repository does).

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU64, Ordering};
use std::time::Duration;

/// Frames kept per stack (the innermost ones).
pub(crate) const MAX_DEPTH: usize = 64;
/// Distinct stacks one profile can hold (about 1 MB: touched only as stacks arrive).
pub(crate) const BUCKETS: usize = 2048;
/// Buckets a new stack may try before it counts as lost.
const PROBES: usize = 32;
/// Largest step between two frame pointers that the walk believes (a corrupt chain otherwise
/// reads far away).
const MAX_FRAME: u64 = 1 << 24;

/// One distinct stack and how many samples had it.
#[repr(C)]
pub(crate) struct Bucket {
    pub(crate) count: u64,
    hash: u64,
    pub(crate) depth: u64,
    /// The kernel thread id the samples interrupted (equal stacks on two threads are two buckets).
    pub(crate) tid: u64,
    /// Innermost first: the interrupted instruction, then return addresses.
    pub(crate) frames: [u64; MAX_DEPTH],
}

impl Bucket {
    /// The stack, innermost first.
    pub(crate) fn stack(&self) -> &[u64] {
        let depth = usize::try_from(self.depth)
            .unwrap_or(MAX_DEPTH)
            .min(MAX_DEPTH);
        &self.frames[..depth]
    }
}

/// The stacks of one profile, in pages mapped for it alone: untouched pages are not resident, and
/// unmapping them at the end gives every page back to the system (freed to the allocator instead,
/// a megabyte would stay in the process's heap, and `alloc_zeroed` there writes every byte).
pub(crate) struct Table {
    buckets: std::ptr::NonNull<Bucket>,
    /// Samples whose stack found no free bucket.
    pub(crate) lost: u64,
}

impl Table {
    const BYTES: usize = BUCKETS * std::mem::size_of::<Bucket>();

    fn new() -> Option<Self> {
        // SAFETY: an anonymous private mapping; the kernel fills it with zeros, a valid `Bucket`
        // (integers only), and it stays ours until `drop` unmaps it.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                Self::BYTES,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return None;
        }
        Some(Self {
            buckets: std::ptr::NonNull::new(p.cast())?,
            lost: 0,
        })
    }

    fn buckets(&self) -> &[Bucket] {
        // SAFETY: BUCKETS buckets, mapped for the table's life.
        unsafe { std::slice::from_raw_parts(self.buckets.as_ptr(), BUCKETS) }
    }

    fn buckets_mut(&mut self) -> &mut [Bucket] {
        // SAFETY: as in `buckets`, and `&mut self` is the only access.
        unsafe { std::slice::from_raw_parts_mut(self.buckets.as_ptr(), BUCKETS) }
    }

    /// The stacks recorded, with their counts.
    pub(crate) fn stacks(&self) -> impl Iterator<Item = &Bucket> {
        self.buckets().iter().filter(|b| b.count > 0)
    }

    /// Adds one sample of `stack`. Plain code (no allocation, no lock): the signal handler calls it
    /// while it holds [`BUSY`].
    fn add(&mut self, tid: u64, stack: &[u64]) {
        let hash = stack
            .iter()
            .chain(std::iter::once(&tid))
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, &a| {
                (h ^ a).wrapping_mul(0x0000_0100_0000_01b3)
            });
        let buckets = self.buckets_mut();
        let n = buckets.len();
        let start = usize::try_from(hash % n as u64).unwrap_or(0);
        for i in 0..PROBES.min(n) {
            let b = &mut buckets[(start + i) % n];
            if b.count == 0 {
                b.hash = hash;
                b.depth = stack.len() as u64;
                b.tid = tid;
                b.frames[..stack.len()].copy_from_slice(stack);
                b.count = 1;
                return;
            }
            if b.hash == hash && b.tid == tid && b.stack() == stack {
                b.count += 1;
                return;
            }
        }
        self.lost += 1;
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe {
            libc::munmap(self.buckets.as_ptr().cast(), Self::BYTES);
        }
    }
}

/// The table of the profile running now; null when none runs.
static TABLE: AtomicPtr<Table> = AtomicPtr::new(std::ptr::null_mut());
/// The loaded objects' unwind tables while a profile runs (x86_64); null otherwise. Used under
/// [`BUSY`], like the table.
#[cfg(target_arch = "x86_64")]
static UNWINDER: AtomicPtr<super::unwind::Unwinder> = AtomicPtr::new(std::ptr::null_mut());
/// Held by whoever touches [`TABLE`]'s table or the pipe: one signal handler, or the stopping thread.
static BUSY: AtomicBool = AtomicBool::new(false);
/// Samples dropped because another handler held [`BUSY`].
static BUSY_DROPS: AtomicU64 = AtomicU64::new(0);
/// The pipe frame records are copied through (write end, read end); -1 when none.
static PIPE: [AtomicI32; 2] = [AtomicI32::new(-1), AtomicI32::new(-1)];
/// True from `start` until `stop`: one sampler per process (SIGPROF is per process).
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// A running sampler; [`Running::stop`] ends it and returns what it recorded. Dropped without
/// `stop`, it stops and discards.
pub(crate) struct Running {
    previous: Option<libc::sigaction>,
    stopped: bool,
}

/// What a stopped sampler recorded.
pub(crate) struct Recorded {
    pub(crate) table: Table,
    /// Samples dropped because another thread's handler was recording at that instant.
    pub(crate) busy_drops: u64,
}

/// Why the host's own use of SIGPROF rules a profile out, if it does: a SIGPROF handler the host
/// installed (anything but the default action, "ignore", or ours), or an `ITIMER_PROF` timer it armed
/// (another profiler: gperftools, a language runtime). Taking them over would silence the host's
/// profiler and, at stop, disarm its timer.
pub(crate) fn host_owns_sigprof() -> Option<String> {
    // SAFETY: a null new action only reads the current one into `current`.
    let current = unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGPROF, std::ptr::null(), &mut current) != 0 {
            return None;
        }
        current
    };
    let ours = on_sigprof as *const () as usize;
    if ![libc::SIG_DFL, libc::SIG_IGN, ours].contains(&current.sa_sigaction) {
        return Some(
            "the host installed its own SIGPROF handler (another profiler); the agent does not take it over: profile with that profiler, or remove its handler".to_owned(),
        );
    }
    if !ACTIVE.load(Ordering::Acquire) {
        // SAFETY: `timer` receives the current value of ITIMER_PROF.
        let timer = unsafe {
            let mut timer: libc::itimerval = std::mem::zeroed();
            if libc::getitimer(libc::ITIMER_PROF, &mut timer) != 0 {
                return None;
            }
            timer
        };
        if timer.it_value.tv_sec != 0 || timer.it_value.tv_usec != 0 {
            return Some(
                "the host armed its own ITIMER_PROF timer (another profiler); the agent does not take it over".to_owned(),
            );
        }
    }
    None
}

/// Starts sampling the whole process at `hz` (of process CPU time).
pub(crate) fn start(hz: u32) -> Result<Running, String> {
    if ACTIVE.swap(true, Ordering::AcqRel) {
        return Err(
            "another CPU profile is running in this process (SIGPROF is process-wide)".to_owned(),
        );
    }
    let mut running = Running {
        previous: None,
        stopped: false,
    };
    let Some(table) = Table::new() else {
        return Err("cannot allocate the profile's stack table".to_owned());
    };
    let mut fds = [-1; 2];
    // SAFETY: `fds` is a two-int array, as pipe2 requires.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(format!(
            "cannot create the profiler's pipe: {}",
            std::io::Error::last_os_error()
        ));
    }
    PIPE[0].store(fds[1], Ordering::Release);
    PIPE[1].store(fds[0], Ordering::Release);
    BUSY_DROPS.store(0, Ordering::Relaxed);
    #[cfg(target_arch = "x86_64")]
    UNWINDER.store(
        Box::into_raw(Box::new(super::unwind::Unwinder::new())),
        Ordering::Release,
    );
    TABLE.store(Box::into_raw(Box::new(table)), Ordering::Release);

    // SAFETY: a zeroed sigaction is a valid value; the handler has the SA_SIGINFO signature and is
    // async-signal-safe (see the module's notes); `previous` receives the old action.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigprof as *const () as usize;
        // SA_ONSTACK: on a thread that set an alternate signal stack (a small or guarded main
        // stack), the handler runs there; elsewhere it runs on the interrupted stack as before.
        action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART | libc::SA_ONSTACK;
        libc::sigemptyset(&mut action.sa_mask);
        let mut previous: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGPROF, &action, &mut previous) != 0 {
            return Err(format!(
                "cannot install the SIGPROF handler: {}",
                std::io::Error::last_os_error()
            ));
        }
        running.previous = Some(previous);
    }
    let interval = Duration::from_secs(1) / hz.max(1);
    set_timer(interval).map_err(|e| format!("cannot start the profiling timer: {e}"))?;
    Ok(running)
}

fn set_timer(interval: Duration) -> std::io::Result<()> {
    let tv = libc::timeval {
        tv_sec: libc::time_t::try_from(interval.as_secs()).unwrap_or(0),
        tv_usec: libc::suseconds_t::from(interval.subsec_micros()),
    };
    let timer = libc::itimerval {
        it_interval: tv,
        it_value: tv,
    };
    // SAFETY: plain values in, no old value asked for.
    if unsafe { libc::setitimer(libc::ITIMER_PROF, &timer, std::ptr::null_mut()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl Running {
    /// Stops the timer, puts the previous SIGPROF action back (ignoring the signal where that was
    /// the default action, which would end the process on a signal still pending), waits for a
    /// handler that is recording right now, and returns the table.
    pub(crate) fn stop(mut self) -> Option<Recorded> {
        self.finish()
    }

    fn finish(&mut self) -> Option<Recorded> {
        if self.stopped {
            return None;
        }
        self.stopped = true;
        let _ = set_timer(Duration::ZERO);
        if let Some(mut previous) = self.previous.take() {
            if previous.sa_sigaction == libc::SIG_DFL {
                previous.sa_sigaction = libc::SIG_IGN;
            }
            // SAFETY: `previous` is the action sigaction returned at start (or SIG_IGN).
            unsafe {
                libc::sigaction(libc::SIGPROF, &previous, std::ptr::null_mut());
            }
        }
        // A handler holds BUSY for the length of one stack walk (microseconds).
        while BUSY
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::thread::yield_now();
        }
        let table = TABLE.swap(std::ptr::null_mut(), Ordering::AcqRel);
        #[cfg(target_arch = "x86_64")]
        {
            let unwinder = UNWINDER.swap(std::ptr::null_mut(), Ordering::AcqRel);
            if !unwinder.is_null() {
                // SAFETY: from Box::into_raw at start; no handler can reach it now (BUSY is ours
                // and the pointer is out of UNWINDER). Dropping it releases the libraries' pins.
                drop(unsafe { Box::from_raw(unwinder) });
            }
        }
        for end in &PIPE {
            let fd = end.swap(-1, Ordering::AcqRel);
            if fd >= 0 {
                // SAFETY: the descriptor is ours (from pipe2 at start) and closed once.
                unsafe {
                    libc::close(fd);
                }
            }
        }
        BUSY.store(false, Ordering::Release);
        ACTIVE.store(false, Ordering::Release);
        if table.is_null() {
            return None;
        }
        // SAFETY: the pointer came from Box::into_raw at start and no handler can reach it now
        // (TABLE is null and BUSY was ours when it was taken out).
        let table = unsafe { Box::from_raw(table) };
        Some(Recorded {
            table: *table,
            busy_drops: BUSY_DROPS.swap(0, Ordering::Relaxed),
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// The interrupted thread's instruction, stack and frame pointers.
///
/// # Safety
/// `ctx` is the `ucontext_t` the kernel passed to an SA_SIGINFO handler.
#[cfg(target_arch = "x86_64")]
unsafe fn registers(ctx: *mut libc::c_void) -> Regs {
    // SAFETY: see the function's contract.
    let uc = unsafe { &*ctx.cast::<libc::ucontext_t>() };
    let g = &uc.uc_mcontext.gregs;
    Regs {
        pc: g[libc::REG_RIP as usize] as u64,
        sp: g[libc::REG_RSP as usize] as u64,
        fp: g[libc::REG_RBP as usize] as u64,
    }
}

/// The interrupted thread's instruction, stack and frame pointers (x29).
///
/// # Safety
/// `ctx` is the `ucontext_t` the kernel passed to an SA_SIGINFO handler.
#[cfg(target_arch = "aarch64")]
unsafe fn registers(ctx: *mut libc::c_void) -> Regs {
    // SAFETY: see the function's contract.
    let uc = unsafe { &*ctx.cast::<libc::ucontext_t>() };
    Regs {
        pc: uc.uc_mcontext.pc,
        sp: uc.uc_mcontext.sp,
        fp: uc.uc_mcontext.regs[29],
    }
}

/// The registers a walk carries from frame to frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Regs {
    /// The instruction (the interrupted one, then return addresses).
    pub(crate) pc: u64,
    /// The stack pointer.
    pub(crate) sp: u64,
    /// The frame pointer, which frame records chain through.
    pub(crate) fp: u64,
}

/// Copies the 8-byte word at `at` through the pipe; `None` where it is not readable.
pub(crate) fn read_word(at: u64, pipe: (i32, i32)) -> Option<u64> {
    let mut word = 0u64;
    // SAFETY: write(2) reads 8 bytes at `at` in the kernel, which returns EFAULT instead of
    // faulting when they are not mapped; read(2) fills `word`, 8 bytes of ours.
    unsafe {
        if libc::write(pipe.0, at as *const libc::c_void, 8) != 8 {
            return None;
        }
        if libc::read(pipe.1, (&raw mut word).cast(), 8) != 8 {
            return None;
        }
    }
    Some(word)
}

/// One step through the frame record (saved frame pointer, return address) at `r.fp`, if it lies
/// above the stack pointer and within [`MAX_FRAME`] of it.
pub(crate) fn frame_pointer_step(r: Regs, read: &impl Fn(u64) -> Option<u64>) -> Option<Regs> {
    if r.fp == 0 || !r.fp.is_multiple_of(8) || r.fp < r.sp || r.fp - r.sp > MAX_FRAME {
        return None;
    }
    Some(Regs {
        fp: read(r.fp)?,
        pc: read(r.fp.wrapping_add(8))?,
        sp: r.fp.wrapping_add(16),
    })
}

/// Walks the stack through frame records alone into `out` (innermost first); returns the depth.
pub(crate) fn frame_pointer_walk(
    r: Regs,
    read: impl Fn(u64) -> Option<u64>,
    out: &mut [u64],
) -> usize {
    walk_with(r, out, |_, r| frame_pointer_step(r, &read))
}

/// Walks the stack from `r` into `out` (innermost first: `r.pc`, then return addresses), one
/// `step` per frame; returns the depth. `step` gets the address to look the frame up by (the
/// interrupted instruction, then each return address less one: the instruction after a call belongs
/// to the call's frame) and the frame's registers, and gives its caller's. The walk stops where it
/// gives none, or a caller that is not above the frame (the stack grows down), or at `out`'s length.
pub(crate) fn walk_with(
    mut r: Regs,
    out: &mut [u64],
    mut step: impl FnMut(u64, Regs) -> Option<Regs>,
) -> usize {
    let Some(first) = out.first_mut() else {
        return 0;
    };
    *first = r.pc;
    let mut depth = 1;
    while depth < out.len() {
        let at = if depth == 1 {
            r.pc
        } else {
            r.pc.wrapping_sub(1)
        };
        let Some(next) = step(at, r) else {
            break;
        };
        if next.pc == 0 || next.sp <= r.sp {
            break;
        }
        out[depth] = next.pc;
        depth += 1;
        r = next;
    }
    depth
}

extern "C" fn on_sigprof(_sig: libc::c_int, _info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: __errno_location returns this thread's errno, which the handler puts back as it was.
    let errno = unsafe { *libc::__errno_location() };
    if BUSY
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        BUSY_DROPS.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let table = TABLE.load(Ordering::Acquire);
    let pipe = (
        PIPE[0].load(Ordering::Acquire),
        PIPE[1].load(Ordering::Acquire),
    );
    if !table.is_null() && !ctx.is_null() && pipe.0 >= 0 && pipe.1 >= 0 {
        let mut stack = [0u64; MAX_DEPTH];
        // SAFETY: the kernel passed `ctx` to this SA_SIGINFO handler.
        let regs = unsafe { registers(ctx) };
        #[cfg(target_arch = "x86_64")]
        let depth = {
            let unwinder = UNWINDER.load(Ordering::Acquire);
            if unwinder.is_null() {
                frame_pointer_walk(regs, |at| read_word(at, pipe), &mut stack)
            } else {
                // SAFETY: BUSY is ours, so no other handler uses the unwinder (or its stack), and
                // the stopping thread frees it only once it holds BUSY and has taken it out of
                // UNWINDER.
                unsafe { (*unwinder).walk_on_own_stack(regs, pipe, &mut stack) }
            }
        };
        #[cfg(not(target_arch = "x86_64"))]
        let depth = frame_pointer_walk(regs, |at| read_word(at, pipe), &mut stack);
        // SAFETY: gettid is a plain system call (async-signal-safe), no errno on success.
        let tid = unsafe { libc::syscall(libc::SYS_gettid) } as u64;
        // SAFETY: BUSY is ours, so no other handler and not the stopping thread touches the table,
        // which stays alive until the stopping thread has taken BUSY and swapped TABLE out.
        unsafe { (*table).add(tid, &stack[..depth]) };
    }
    BUSY.store(false, Ordering::Release);
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn equal_stacks_share_a_bucket_and_a_full_table_counts_what_it_loses() {
        let mut t = Table::new().unwrap();
        t.add(7, &[1, 2, 3]);
        t.add(7, &[1, 2, 3]);
        t.add(7, &[1, 2]);
        // The same stack on another thread is its own bucket.
        t.add(8, &[1, 2]);
        let mut got: Vec<(u64, Vec<u64>, u64)> = t
            .stacks()
            .map(|b| (b.tid, b.stack().to_vec(), b.count))
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                (7, vec![1, 2], 1),
                (7, vec![1, 2, 3], 2),
                (8, vec![1, 2], 1)
            ]
        );
        assert_eq!(t.lost, 0);
        for i in 0..(BUCKETS as u64 + 100) {
            t.add(7, &[i + 10, 7]);
        }
        let kept: u64 = t.stacks().map(|b| b.count).sum();
        assert_eq!(kept + t.lost, 4 + BUCKETS as u64 + 100);
        assert!(t.lost >= 100, "{}", t.lost);
        assert_eq!(t.stacks().count(), BUCKETS);
    }

    #[test]
    fn a_word_is_read_through_the_pipe_and_a_bad_address_is_refused() {
        let mut fds = [-1; 2];
        assert_eq!(
            unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) },
            0
        );
        let record = [0x1234_u64, 0x5678];
        let at = record.as_ptr() as u64;
        let pipe = (fds[1], fds[0]);
        assert_eq!(read_word(at, pipe), Some(0x1234));
        assert_eq!(read_word(at + 8, pipe), Some(0x5678));
        assert_eq!(read_word(8, pipe), None);
        // The pipe is empty again after each word.
        assert_eq!(read_word(at, pipe), Some(0x1234));
        // A frame record chains to the next; one below the stack pointer or far above it does not.
        let read = |a: u64| read_word(a, pipe);
        let r = Regs {
            pc: 1,
            sp: at - 64,
            fp: at,
        };
        assert_eq!(
            frame_pointer_step(r, &read),
            Some(Regs {
                pc: 0x5678,
                sp: at + 16,
                fp: 0x1234
            })
        );
        assert_eq!(frame_pointer_step(Regs { sp: at + 8, ..r }, &read), None);
        assert_eq!(
            frame_pointer_step(
                Regs {
                    sp: at - MAX_FRAME - 8,
                    ..r
                },
                &read
            ),
            None
        );
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
    }
}
