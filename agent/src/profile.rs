//! CPU profiles of the host process: on request (`GET /debug/pprof/profile?seconds=N`, like Go's
//! net/http/pprof) and automatically when an anomaly event opens (kept in the store with the event).
//!
//! Sampling is pprof-rs: `setitimer(ITIMER_PROF)` delivers SIGPROF to whichever thread is on a CPU,
//! 99 times a second of process CPU time, and the signal handler records that thread's stack. The
//! stack is walked with pprof-rs's **frame-pointer** unwinder: it follows the chain of saved frame
//! pointers, checks every address before reading it (a `write(2)` of the candidate to a pipe, which
//! fails with `EFAULT` instead of faulting) and takes no locks and calls nothing that allocates. The
//! default unwinder (libgcc's `_Unwind_Backtrace`) is known to crash and deadlock inside a signal
//! handler (pprof-rs #203, #219, #36), and pprof-rs's framehop unwinder builds its module list lazily
//! *inside the handler* on the first sample (allocating there) and never sees libraries loaded
//! later (libnvidia-ml is `dlopen`ed). The price of frame pointers: code built without them gives
//! short stacks, so the host should build with `-C force-frame-pointers=yes` (this repository does,
//! in `.cargo/config.toml`); and the function a sample interrupted is not itself recorded, only its
//! callers (the unwinder starts from the interrupted frame's return address), so a profile's
//! self time lands on the caller of the hottest function. See `docs/ARCHITECTURE.md`.
//!
//! One profile runs at a time in the whole process (SIGPROF and its timer are process-wide): a
//! second request is refused with 409 and `Retry-After`. Sampling and symbolisation run on their own
//! short-lived thread (`vigil-profile`, lowest CPU priority, its allocations counted as the
//! agent's), never on the host's workers or the agent's tick.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::metrics as m;

/// Sampling frequency (Hz). Not a round number, so sampling does not run in lockstep with periodic
/// work; above ~250 Hz of process CPU the interval timer undercounts anyway.
pub const PROFILE_HZ: u32 = 99;
/// Length of a requested profile without `seconds`.
pub const DEFAULT_PROFILE_SECONDS: u64 = 30;
/// Longest profile a request may ask for.
pub const MAX_PROFILE_SECONDS: u64 = 60;
/// Length of the profile taken when an event opens (`VIGIL_PROFILE_ON_EVENT`).
pub const DEFAULT_EVENT_PROFILE: Duration = Duration::from_secs(10);
/// Least time between two automatic profiles (`VIGIL_PROFILE_COOLDOWN`).
pub const DEFAULT_EVENT_PROFILE_COOLDOWN: Duration = Duration::from_secs(600);
/// Accepted lengths of the automatic profile.
pub(crate) const EVENT_PROFILE_RANGE: (Duration, Duration) = (
    Duration::from_secs(1),
    Duration::from_secs(MAX_PROFILE_SECONDS),
);
/// How long the agent's start waits for the profiler's memory to be reserved.
pub(crate) const RESERVE_WAIT: Duration = Duration::from_secs(10);
/// Accepted cooldowns.
pub(crate) const COOLDOWN_RANGE: (Duration, Duration) =
    (Duration::from_secs(0), Duration::from_secs(7 * 86_400));

/// True when this build can take CPU profiles (the `profiling` feature, on Linux).
pub fn profiling_available() -> bool {
    cfg!(all(feature = "profiling", target_os = "linux"))
}

/// When the agent takes a profile by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EventProfiles {
    /// Length of the profile taken when an event opens; `None` = never.
    pub(crate) length: Option<Duration>,
    /// Least time between two automatic profiles.
    pub(crate) cooldown: Duration,
}

impl Default for EventProfiles {
    fn default() -> Self {
        Self {
            length: Some(DEFAULT_EVENT_PROFILE),
            cooldown: DEFAULT_EVENT_PROFILE_COOLDOWN,
        }
    }
}

/// A finished profile.
#[derive(Debug, Clone)]
pub(crate) struct Captured {
    /// When sampling began, Unix seconds.
    pub(crate) started_unix: f64,
    /// How long it sampled.
    pub(crate) seconds: f64,
    /// How long symbolising the stacks took after sampling.
    pub(crate) symbolise_seconds: f64,
    /// Stack samples in it.
    pub(crate) samples: u64,
    /// gzip'd pprof protobuf.
    pub(crate) pprof_gz: Vec<u8>,
}

/// Why no profile was started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Another profile is running; it ends in about this long.
    Busy(Duration),
    /// This build cannot profile.
    Unavailable,
    /// The profiling thread could not be started.
    Spawn(String),
}

/// The end of the profile running now, process-wide (SIGPROF is per process, whatever the number
/// of agents in it).
static RUNNING: Mutex<Option<Instant>> = Mutex::new(None);

/// Clears [`RUNNING`] when the profiling thread ends, however it ends.
struct Slot;

impl Drop for Slot {
    fn drop(&mut self) {
        *RUNNING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    trigger: &'static str,
    outcome: &'static str,
}

/// Who asked for a profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// `GET /debug/pprof/profile`.
    Request,
    /// An event opened.
    Event,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Request => "request",
            Trigger::Event => "event",
        }
    }
}

/// Starts profiles and keeps their counts; cloned into the HTTP state and the tick loop.
#[derive(Clone)]
pub(crate) struct Profiler {
    events: EventProfiles,
    /// When the last automatic profile started.
    last_event: std::sync::Arc<Mutex<Option<Instant>>>,
    /// Finished event profiles the tick loop has not taken yet (one at a time runs, so at most one
    /// waits; bounded anyway).
    finished: std::sync::Arc<Mutex<Vec<vigil_store::ProfileRecord>>>,
    outcomes: Family<OutcomeLabels, Counter>,
    running: Gauge,
    reserved: crate::metrics::FGauge,
}

impl Profiler {
    pub(crate) fn new(events: EventProfiles, registry: &mut Registry) -> Self {
        let p = Self {
            events,
            last_event: std::sync::Arc::new(Mutex::new(None)),
            finished: std::sync::Arc::new(Mutex::new(Vec::new())),
            outcomes: Family::default(),
            running: Gauge::default(),
            reserved: crate::metrics::FGauge::default(),
        };
        m::PROFILES.register(registry, p.outcomes.clone());
        m::PROFILE_RUNNING.register(registry, p.running.clone());
        m::PROFILE_RESERVED.register(registry, p.reserved.clone());
        for trigger in [Trigger::Request, Trigger::Event] {
            for outcome in ["ok", "busy", "error"] {
                let _ = p.outcomes.get_or_create(&OutcomeLabels {
                    trigger: trigger.as_str(),
                    outcome,
                });
            }
        }
        let _ = p.outcomes.get_or_create(&OutcomeLabels {
            trigger: Trigger::Event.as_str(),
            outcome: "cooldown",
        });
        p
    }

    fn count(&self, trigger: Trigger, outcome: &'static str) {
        self.outcomes
            .get_or_create(&OutcomeLabels {
                trigger: trigger.as_str(),
                outcome,
            })
            .inc();
    }

    /// Starts a profile of `length` on its own thread; `done` receives the result there. Never
    /// blocks: a profile already running is [`Refused::Busy`].
    pub(crate) fn start(
        &self,
        length: Duration,
        trigger: Trigger,
        done: impl FnOnce(Result<Captured, String>) + Send + 'static,
    ) -> Result<(), Refused> {
        if !profiling_available() {
            return Err(Refused::Unavailable);
        }
        {
            let mut running = RUNNING
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = Instant::now();
            if let Some(end) = *running {
                self.count(trigger, "busy");
                return Err(Refused::Busy(end.saturating_duration_since(now)));
            }
            *running = Some(now + length);
        }
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name("vigil-profile".into())
            .spawn(move || {
                crate::alloc::mark_agent_thread();
                crate::scoring::lowest_priority();
                let r = {
                    // Freed before the result is handed on: whoever got it may start the next one.
                    let _slot = Slot;
                    me.running.set(1);
                    // A panic inside the profiler must not take the result (or the slot) with it.
                    let r =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| capture(length)))
                            .unwrap_or_else(|_| Err("the CPU profiler panicked".to_owned()));
                    me.running.set(0);
                    r
                };
                me.count(trigger, if r.is_ok() { "ok" } else { "error" });
                done(r);
            });
        match spawned {
            Ok(_) => Ok(()),
            Err(e) => {
                drop(Slot);
                self.count(trigger, "error");
                Err(Refused::Spawn(e.to_string()))
            }
        }
    }

    /// Reserves the profiler's memory now, on the profiling thread, when events will be profiled
    /// (`store_on` and automatic profiles on): pprof-rs allocates its sample table (tens of MB) the
    /// first time a profile starts and keeps it for the life of the process, and the symboliser keeps
    /// the binary's symbol tables. Taken mid-run, that step in resident memory looks like a memory leak
    /// to the detector — it once retyped the very event being profiled and opened a false one. Taken
    /// before the first tick, no window ever sees the step, and later profiles reuse the memory.
    /// Returns at once: the agent thread waits on the receiver, up to [`RESERVE_WAIT`] (a fraction
    /// of a second for a release binary; symbolising a large debug binary takes seconds), before its
    /// first tick, so the host's thread (`start`, a runtime worker in `#[tokio::main]`) never does.
    pub(crate) fn reserve_at_start(
        &self,
        store_on: bool,
    ) -> Option<tokio::sync::oneshot::Receiver<()>> {
        if !profiling_available() || self.events.length.is_none() || !store_on {
            self.reserved.set(0.0);
            return None;
        }
        self.reserved.set(f64::NAN);
        {
            let mut running = RUNNING
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if running.is_some() {
                // Another agent in this process is profiling: the memory is taken already.
                self.reserved.set(0.0);
                return None;
            }
            *running = Some(Instant::now() + Duration::from_secs(5));
        }
        let gauge = self.reserved.clone();
        let (done_tx, done) = tokio::sync::oneshot::channel::<()>();
        let started = Instant::now();
        let spawned = std::thread::Builder::new()
            .name("vigil-profile".into())
            .spawn(move || {
                crate::alloc::mark_agent_thread();
                crate::scoring::lowest_priority();
                let _slot = Slot;
                let before = resident_bytes();
                let reserved = std::panic::catch_unwind(reserve)
                    .unwrap_or_else(|_| Err("the CPU profiler panicked".to_owned()));
                if let Err(e) = reserved {
                    tracing::warn!("could not reserve the CPU profiler's memory at start: {e}");
                }
                let grew = match (before, resident_bytes()) {
                    (Some(b), Some(a)) => a.saturating_sub(b) as f64,
                    _ => f64::NAN,
                };
                gauge.set(grew);
                tracing::info!(
                    bytes = grew,
                    seconds = started.elapsed().as_secs_f64(),
                    "memory for CPU profiles reserved (VIGIL_PROFILE_ON_EVENT=off reserves none)"
                );
                let _ = done_tx.send(());
            });
        match spawned {
            Ok(_) => Some(done),
            Err(e) => {
                drop(Slot);
                self.reserved.set(0.0);
                tracing::warn!("cannot start the profiling thread to reserve its memory: {e}");
                None
            }
        }
    }

    /// Event profiles finished since the last call (the tick loop stores them).
    pub(crate) fn take_finished(&self) -> Vec<vigil_store::ProfileRecord> {
        std::mem::take(
            &mut *self
                .finished
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// An event opened: profiles the next seconds unless automatic profiles are off, the last one
    /// is too recent, or a profile is running; the result waits for [`Profiler::take_finished`].
    /// Never blocks.
    pub(crate) fn on_event(&self, event_id: u64) {
        let Some(length) = self.events.length else {
            return;
        };
        if !profiling_available() {
            return;
        }
        let mut last = self
            .last_event
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_some_and(|t| t.elapsed() < self.events.cooldown) {
            self.count(Trigger::Event, "cooldown");
            tracing::info!(
                event_id,
                "no CPU profile for this event: the last automatic profile was less than {:?} ago (VIGIL_PROFILE_COOLDOWN)",
                self.events.cooldown
            );
            return;
        }
        let finished = self.finished.clone();
        let started = self.start(length, Trigger::Event, move |r| match r {
            Ok(c) => {
                tracing::info!(
                    event_id,
                    samples = c.samples,
                    bytes = c.pprof_gz.len(),
                    symbolise_seconds = c.symbolise_seconds,
                    "CPU profile of the event's first {:.0} s taken",
                    c.seconds
                );
                let mut f = finished
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if f.len() < 4 {
                    f.push(vigil_store::ProfileRecord {
                        event_id,
                        started: c.started_unix,
                        seconds: c.seconds,
                        hz: PROFILE_HZ,
                        samples: c.samples,
                        pprof: c.pprof_gz,
                    });
                }
            }
            Err(e) => tracing::warn!(event_id, "CPU profile of the event failed: {e}"),
        });
        match started {
            Ok(()) => *last = Some(Instant::now()),
            Err(Refused::Busy(_)) => {
                tracing::info!(
                    event_id,
                    "no CPU profile for this event: another profile is running"
                );
            }
            Err(e) => tracing::warn!(event_id, "no CPU profile for this event: {e:?}"),
        }
    }
}

fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Samples the whole process for `length`, then symbolises and encodes the profile (gzip'd pprof
/// protobuf, as Go's net/http/pprof serves it).
#[cfg(all(feature = "profiling", target_os = "linux"))]
fn capture(length: Duration) -> Result<Captured, String> {
    use pprof::protos::Message;
    let started_unix = now_unix();
    let t0 = Instant::now();
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(i32::try_from(PROFILE_HZ).unwrap_or(99))
        .build()
        .map_err(|e| match e {
            pprof::Error::Running => {
                "another CPU profiler is running in this process (SIGPROF is process-wide)"
                    .to_owned()
            }
            e => format!("cannot start the CPU profiler: {e}"),
        })?;
    std::thread::sleep(length);
    let seconds = t0.elapsed().as_secs_f64();
    // Symbolisation holds the profiler's lock: signals meanwhile find it taken and return at once.
    let report = guard
        .report()
        .build()
        .map_err(|e| format!("cannot build the profile report: {e}"))?;
    drop(guard);
    let symbolise_seconds = t0.elapsed().as_secs_f64() - seconds;
    let profile = report
        .pprof()
        .map_err(|e| format!("cannot encode the profile: {e}"))?;
    let samples = profile
        .sample
        .iter()
        .filter_map(|s| s.value.first())
        .map(|&v| u64::try_from(v).unwrap_or(0))
        .sum();
    let mut raw = Vec::new();
    profile
        .encode(&mut raw)
        .map_err(|e| format!("cannot encode the profile: {e}"))?;
    Ok(Captured {
        started_unix,
        seconds,
        symbolise_seconds,
        samples,
        pprof_gz: gzip(&raw).map_err(|e| format!("cannot compress the profile: {e}"))?,
    })
}

/// Starts and stops a profile at once (pprof-rs allocates its sample table on first use and keeps
/// one), then resolves one address of this binary (the symboliser loads and keeps its symbol tables).
#[cfg(all(feature = "profiling", target_os = "linux"))]
fn reserve() -> Result<(), String> {
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(i32::try_from(PROFILE_HZ).unwrap_or(99))
        .build()
        .map_err(|e| e.to_string())?;
    drop(guard);
    backtrace::resolve(reserve as *mut std::ffi::c_void, |_| {});
    Ok(())
}

#[cfg(not(all(feature = "profiling", target_os = "linux")))]
fn reserve() -> Result<(), String> {
    Ok(())
}

/// This process's resident memory, bytes (`/proc/self/statm`).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf reads a constant of the system; no memory of ours is involved.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

#[cfg(not(all(feature = "profiling", target_os = "linux")))]
fn capture(_length: Duration) -> Result<Captured, String> {
    let _ = now_unix;
    Err("this build has no CPU profiler (the `profiling` feature, Linux only)".to_owned())
}

#[cfg(all(feature = "profiling", target_os = "linux"))]
fn gzip(raw: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(raw.len() / 2),
        flate2::Compression::default(),
    );
    enc.write_all(raw)?;
    enc.finish()
}

// The profiler exists only in builds with the `profiling` feature on Linux.
#[cfg(all(feature = "profiling", target_os = "linux"))]
#[cfg(test)]
mod tests {
    use super::*;

    /// The slot is process-wide: these tests take turns (they share a process under `cargo test`).
    static TURN: Mutex<()> = Mutex::new(());

    fn outcome(p: &Profiler, trigger: Trigger, outcome: &'static str) -> u64 {
        p.outcomes
            .get_or_create(&OutcomeLabels {
                trigger: trigger.as_str(),
                outcome,
            })
            .get()
    }

    #[test]
    fn one_profile_at_a_time_and_the_slot_frees_when_it_ends() {
        let _turn = TURN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let p = Profiler::new(EventProfiles::default(), &mut Registry::default());
        let (tx, rx) = std::sync::mpsc::channel();
        let first = tx.clone();
        p.start(Duration::from_millis(300), Trigger::Request, move |r| {
            let _ = first.send(r);
        })
        .unwrap();
        match p.start(Duration::from_secs(1), Trigger::Request, |_| {}) {
            Err(Refused::Busy(left)) => assert!(left <= Duration::from_millis(300), "{left:?}"),
            other => panic!("expected Busy, got {other:?}"),
        }
        let c = rx.recv_timeout(Duration::from_secs(10)).unwrap().unwrap();
        assert!(c.pprof_gz.starts_with(&[0x1f, 0x8b]));
        assert!(c.seconds >= 0.3, "{}", c.seconds);
        assert_eq!(outcome(&p, Trigger::Request, "busy"), 1);
        assert_eq!(outcome(&p, Trigger::Request, "ok"), 1);
        // Free again as soon as the result was handed on.
        p.start(Duration::from_millis(100), Trigger::Request, move |r| {
            let _ = tx.send(r);
        })
        .unwrap();
        assert!(rx.recv_timeout(Duration::from_secs(10)).unwrap().is_ok());
    }

    #[test]
    fn event_profiles_keep_their_cooldown_and_can_be_off() {
        let _turn = TURN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let p = Profiler::new(
            EventProfiles {
                length: Some(Duration::from_millis(200)),
                cooldown: Duration::from_secs(600),
            },
            &mut Registry::default(),
        );
        p.on_event(1);
        // Within the cooldown: not even tried.
        p.on_event(2);
        assert_eq!(outcome(&p, Trigger::Event, "cooldown"), 1);
        let deadline = Instant::now() + Duration::from_secs(10);
        let kept = loop {
            let f = p.take_finished();
            if !f.is_empty() || Instant::now() > deadline {
                break f;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].event_id, 1);
        assert_eq!(kept[0].hz, PROFILE_HZ);
        assert_eq!(outcome(&p, Trigger::Event, "ok"), 1);

        let off = Profiler::new(
            EventProfiles {
                length: None,
                cooldown: Duration::ZERO,
            },
            &mut Registry::default(),
        );
        off.on_event(3);
        std::thread::sleep(Duration::from_millis(300));
        assert!(off.take_finished().is_empty());
        assert_eq!(outcome(&off, Trigger::Event, "ok"), 0);
    }
}
