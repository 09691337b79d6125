//! The clock annotated calls are timed with: the CPU's time-stamp counter where the kernel itself
//! trusts it, calibrated against the monotonic clock without ever waiting; `Instant` everywhere else.
//!
//! Why: two `Instant::now` reads (vDSO `clock_gettime`) were most of an annotated call's cost; two
//! `rdtsc` reads cost about a third of that (docs/BENCHMARKS.md).
//!
//! When the counter is used: x86_64 Linux whose current clocksource is `tsc`. The kernel picks that
//! only after checking the counter is invariant (constant rate, running in every power state) and
//! synchronised across CPUs, so a call that starts on one core and ends on another reads one clock.
//! Anything else (another architecture, another clocksource, a sysfs that cannot be read) uses
//! `Instant`.
//!
//! No clock work ever runs on a host's call: calls read `MODE` and then either the counter or
//! `Instant`. Deciding (one read of a sysfs file) and calibrating happen in [`tend`], which the
//! readers of the series run: the agent's tick (through `totals`) and every scrape (through the
//! encoders). The first of them records an anchor (counter, `Instant`); calls are timed with
//! `Instant` until a later one, at least [`CALIBRATION_SPAN`] after the anchor, computes the
//! counter's rate over the span; from then on calls read the counter. A process whose series are
//! never read keeps `Instant` (its durations are never looked at). The two reads of each pair
//! bracket each other, and a pair whose reads are far apart (the thread was preempted between them)
//! is not used.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// How long after the anchor the rate is measured: long enough that a few microseconds of error in
/// either end are below 0.01 % of it.
pub(crate) const CALIBRATION_SPAN: Duration = Duration::from_millis(50);

const UNDECIDED: u8 = 0;
const CALIBRATING: u8 = 1;
const COUNTER: u8 = 2;
const MONOTONIC: u8 = 3;

static MODE: AtomicU8 = AtomicU8::new(UNDECIDED);
/// Nanoseconds per counter tick, as `f64` bits (valid once `MODE` is `COUNTER`).
static NANOS_PER_TICK: AtomicU64 = AtomicU64::new(0);
static ANCHOR: OnceLock<Option<(u64, Instant)>> = OnceLock::new();

/// When a call started, on the clock in use then.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stamp {
    /// Time-stamp counter ticks.
    Counter(u64),
    /// The monotonic clock.
    Monotonic(Instant),
}

/// The time now.
#[inline]
pub(crate) fn now() -> Stamp {
    // Acquire: a thread that sees `COUNTER` sees the rate stored before it.
    match MODE.load(std::sync::atomic::Ordering::Acquire) {
        COUNTER => Stamp::Counter(counter::read()),
        _ => Stamp::Monotonic(Instant::now()),
    }
}

/// Nanoseconds since `start`.
#[inline]
pub(crate) fn elapsed_nanos(start: Stamp) -> u64 {
    match start {
        Stamp::Counter(t0) => {
            let ticks = counter::read().saturating_sub(t0);
            let rate = f64::from_bits(NANOS_PER_TICK.load(Relaxed));
            // `as` saturates: a negative or huge product cannot wrap.
            (ticks as f64 * rate) as u64
        }
        Stamp::Monotonic(t0) => u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX),
    }
}

/// Moves the clock on, off the host's calls: decides it the first time (is the kernel's clock the
/// counter? one sysfs read), then calibrates once the span since the anchor has passed. One atomic
/// load once decided. Run by the series' readers (the agent's tick, scrapes).
#[inline]
pub(crate) fn tend() {
    match MODE.load(Relaxed) {
        UNDECIDED => decide(),
        CALIBRATING => calibrate(),
        _ => {}
    }
}

/// Reads the kernel's clocksource and takes the anchor.
#[cold]
fn decide() {
    let anchor = ANCHOR.get_or_init(|| {
        if counter::trusted() {
            counter::pair()
        } else {
            None
        }
    });
    let _ = MODE.compare_exchange(
        UNDECIDED,
        if anchor.is_some() {
            CALIBRATING
        } else {
            MONOTONIC
        },
        Relaxed,
        Relaxed,
    );
}

/// Measures the counter's rate once the span since the anchor is long enough.
#[cold]
fn calibrate() {
    let Some(Some((c0, i0))) = ANCHOR.get().copied() else {
        return;
    };
    if i0.elapsed() < CALIBRATION_SPAN {
        return;
    }
    let Some((c1, i1)) = counter::pair() else {
        return;
    };
    let nanos = i1.duration_since(i0).as_nanos() as f64;
    let ticks = c1.saturating_sub(c0) as f64;
    let rate = nanos / ticks;
    // A counter that did not advance, or a rate outside 0.01 to 100 GHz, is not a clock to trust.
    if !(0.01..=100.0).contains(&rate) {
        MODE.store(MONOTONIC, Relaxed);
        return;
    }
    NANOS_PER_TICK.store(rate.to_bits(), Relaxed);
    MODE.store(COUNTER, std::sync::atomic::Ordering::Release);
}

/// Which clock calls are timed with now: `"tsc"` or `"monotonic"` (`"undecided"` until the series are
/// first read — by the agent's tick or a scrape — and `"calibrating"` from then until the first read
/// at least 50 ms later; calls use the monotonic clock in both).
pub fn clock_source() -> &'static str {
    match MODE.load(Relaxed) {
        COUNTER => "tsc",
        CALIBRATING => "calibrating",
        MONOTONIC => "monotonic",
        _ => "undecided",
    }
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod counter {
    use std::time::Instant;

    /// The counter now. `rdtsc` is not serialising: it may be read a few instructions early or late,
    /// nanoseconds against calls that last microseconds at least.
    #[inline]
    pub(super) fn read() -> u64 {
        // SAFETY: `rdtsc` exists on every x86_64 CPU and has no preconditions; `trusted` decided
        // that the kernel itself uses it as its clock.
        unsafe { core::arch::x86_64::_rdtsc() }
    }

    /// The kernel's clock is the counter (it checked invariance and synchronisation first).
    pub(super) fn trusted() -> bool {
        std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
            .is_ok_and(|s| s.trim() == "tsc")
    }

    /// A (counter, `Instant`) pair read back to back, or `None` when the thread was preempted between
    /// the reads (more than 100,000 ticks, 10 µs even at 10 GHz, bracketed the `Instant` read).
    pub(super) fn pair() -> Option<(u64, Instant)> {
        for _ in 0..3 {
            let a = read();
            let i = Instant::now();
            let b = read();
            if b.wrapping_sub(a) < 100_000 {
                return Some((a / 2 + b / 2, i));
            }
        }
        None
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
mod counter {
    use std::time::Instant;

    pub(super) fn read() -> u64 {
        0
    }

    pub(super) fn trusted() -> bool {
        false
    }

    pub(super) fn pair() -> Option<(u64, Instant)> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_decides_calibrates_and_then_agrees_with_instant() {
        // Calls alone never decide: they keep the monotonic clock until a reader tends it.
        if clock_source() == "undecided" {
            let s = now();
            let _ = elapsed_nanos(s);
            assert!(
                matches!(s, Stamp::Monotonic(_)),
                "no counter before calibration"
            );
            assert_eq!(clock_source(), "undecided", "a call decided the clock");
        }
        tend();
        assert_ne!(clock_source(), "undecided");
        // Readers keep tending until the span has passed; one of them calibrates.
        let deadline = Instant::now() + CALIBRATION_SPAN * 4;
        while Instant::now() < deadline && clock_source() == "calibrating" {
            assert!(matches!(now(), Stamp::Monotonic(_)));
            std::thread::sleep(Duration::from_millis(5));
            tend();
        }
        let expect_counter = counter::trusted();
        assert_eq!(
            clock_source(),
            if expect_counter { "tsc" } else { "monotonic" }
        );
        // Both clocks measure the same sleep within 2 % (or 2 ms, for a loaded machine's wake-up).
        for _ in 0..3 {
            let s = now();
            let i = Instant::now();
            std::thread::sleep(Duration::from_millis(100));
            let ours = elapsed_nanos(s) as f64;
            let theirs = i.elapsed().as_nanos() as f64;
            assert!(
                (ours - theirs).abs() < (theirs * 0.02).max(2e6),
                "{} measured {ours} ns, Instant {theirs} ns",
                clock_source()
            );
            if expect_counter {
                assert!(matches!(s, Stamp::Counter(_)));
            }
        }
    }

    #[test]
    fn a_stamp_from_the_monotonic_clock_stays_monotonic_whatever_the_mode() {
        let s = Stamp::Monotonic(Instant::now());
        std::thread::sleep(Duration::from_millis(2));
        let n = elapsed_nanos(s);
        assert!(n >= 2_000_000, "{n}");
    }
}
