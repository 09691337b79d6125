//! CPU profiles of the host process: on request (`GET /debug/pprof/profile?seconds=N`, like Go's
//! net/http/pprof) and automatically when an anomaly event opens (kept in the store with the event).
//!
//! Sampling is our own (`sampler`): `setitimer(ITIMER_PROF)` delivers SIGPROF to whichever thread is
//! on a CPU, 99 times a second of process CPU time, and the signal handler records that thread's
//! stack — the interrupted instruction, then its callers, unwound by the DWARF call-frame
//! information of the loaded objects (`unwind`, x86_64) or by saved frame pointers (aarch64), each
//! word read through a pipe (`write(2)` fails with `EFAULT` instead of faulting on a bad address) — in a
//! fixed table of distinct stacks allocated when the profile starts and freed when it ends. The
//! handler takes no lock it can wait on and allocates nothing. Names come from the loaded objects'
//! ELF symbol tables, streamed from their files after sampling (`symbols`), and the pprof protobuf
//! is written by hand (`proto`). A profile therefore holds about a megabyte while it runs and
//! nothing afterwards: no reservation at start, no step in the resident memory the detector watches.
//! On x86_64 a host built the ordinary way (no frame pointers) gets whole stacks; on aarch64 it
//! should build with `-C force-frame-pointers=yes` (this repository does, in `.cargo/config.toml`).
//! See `docs/ARCHITECTURE.md`.
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
/// Accepted cooldowns.
pub(crate) const COOLDOWN_RANGE: (Duration, Duration) =
    (Duration::from_secs(0), Duration::from_secs(7 * 86_400));

#[cfg(profiler)]
mod proto;
#[cfg(profiler)]
mod sampler;
#[cfg(profiler)]
mod symbols;
#[cfg(all(profiler, target_arch = "x86_64"))]
mod unwind;

/// True when this build can take CPU profiles (the `profiling` feature, on Linux with glibc, x86_64
/// or aarch64).
pub fn profiling_available() -> bool {
    cfg!(profiler)
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
    /// What the reader should know about it (stacks cut short), also in the profile's comments.
    pub(crate) warning: Option<String>,
}

/// The warning a profile carries when most of its samples are one or two frames deep: the frame
/// pointer walk stopped at code built without frame pointers (`None` for fewer than
/// [`CUT_STACK_MIN_SAMPLES`] samples, which say too little).
#[cfg_attr(not(profiler), allow(dead_code))]
pub(crate) fn cut_stacks_warning(depths: impl IntoIterator<Item = (usize, u64)>) -> Option<String> {
    let (mut shallow, mut total) = (0u64, 0u64);
    for (depth, count) in depths {
        total += count;
        if depth <= 2 {
            shallow += count;
        }
    }
    (total >= CUT_STACK_MIN_SAMPLES && shallow * 2 > total).then(|| {
        format!(
            "{shallow} of {total} samples are one or two frames deep: stacks are cut where code \
             has neither unwind tables (.eh_frame) nor frame pointers (JIT code, code built with \
             -fno-asynchronous-unwind-tables; on aarch64, any code without frame pointers). Build \
             the host with RUSTFLAGS=\"-C force-frame-pointers=yes\" and keep unwind tables in \
             the C and C++ libraries it calls"
        )
    })
}

/// Samples a profile needs before [`cut_stacks_warning`] reads their depth.
#[cfg_attr(not(profiler), allow(dead_code))]
pub(crate) const CUT_STACK_MIN_SAMPLES: u64 = 20;

/// Why no profile was started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Another profile is running; it ends in about this long.
    Busy(Duration),
    /// This build cannot profile.
    Unavailable,
    /// The profiling thread could not be started.
    Spawn(String),
    /// The agent is shutting down.
    ShuttingDown,
    /// The host uses SIGPROF itself (its own handler, or an armed `ITIMER_PROF`): why.
    HostSigprof(String),
}

/// What a profile cut short by the agent's shutdown reports (the HTTP reply is a JSON 503 with it).
pub(crate) const CUT_SHORT: &str =
    "the agent is shutting down: the profile was stopped before its end";

/// The agent's shutdown as a profile waits on it: set once by [`Profiler::cut_short`], which wakes
/// the profiling thread (`wake`) and the HTTP handlers waiting for its result (`handlers`).
#[derive(Debug, Default)]
struct Stop {
    set: Mutex<bool>,
    wake: std::sync::Condvar,
    handlers: tokio::sync::Notify,
}

impl Stop {
    fn is_set(&self) -> bool {
        *self
            .set
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
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
    /// Set at the agent's shutdown: a running profile stops sampling at once, a new one is refused,
    /// and a handler waiting for a profile answers at once, whether or not the (lowest-priority)
    /// profiling thread has had a CPU to stop on yet.
    stop: std::sync::Arc<Stop>,
}

impl Profiler {
    pub(crate) fn new(events: EventProfiles, registry: &mut Registry) -> Self {
        let p = Self {
            events,
            last_event: std::sync::Arc::new(Mutex::new(None)),
            finished: std::sync::Arc::new(Mutex::new(Vec::new())),
            outcomes: Family::default(),
            running: Gauge::default(),
            stop: std::sync::Arc::default(),
        };
        m::PROFILES.register(registry, p.outcomes.clone());
        m::PROFILE_RUNNING.register(registry, p.running.clone());
        for trigger in [Trigger::Request, Trigger::Event] {
            for outcome in ["ok", "busy", "error", "host_sigprof"] {
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
        if self.stop.is_set() {
            return Err(Refused::ShuttingDown);
        }
        if let Some(why) = host_owns_sigprof() {
            self.count(trigger, "host_sigprof");
            return Err(Refused::HostSigprof(why));
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
        let stop = self.stop.clone();
        let spawned = std::thread::Builder::new()
            .name("vigil-profile".into())
            .spawn(move || {
                crate::alloc::mark_agent_thread();
                crate::threads::lowest_priority();
                let r = {
                    // Freed before the result is handed on: whoever got it may start the next one.
                    let _slot = Slot;
                    me.running.set(1);
                    // A panic inside the profiler must not take the result (or the slot) with it.
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        capture(length, &stop)
                    }))
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

    /// The agent is shutting down: a running profile stops sampling now (its requester gets
    /// [`CUT_SHORT`]) and no new one starts, so a host that called `shutdown()` is not sampled on.
    pub(crate) fn cut_short(&self) {
        *self
            .stop
            .set
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = true;
        self.stop.wake.notify_all();
        self.stop.handlers.notify_waiters();
    }

    /// Resolves once [`Profiler::cut_short`] was called (at once if it already was).
    pub(crate) async fn shutting_down(&self) {
        let notified = self.stop.handlers.notified();
        tokio::pin!(notified);
        // Registered before the flag is read, so a cut between the two is not missed.
        notified.as_mut().enable();
        if self.stop.is_set() {
            return;
        }
        notified.await;
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
#[cfg(profiler)]
fn capture(length: Duration, stop: &Stop) -> Result<Captured, String> {
    let started_unix = now_unix();
    let t0 = Instant::now();
    let running = sampler::start(PROFILE_HZ)?;
    // Sleeps for the profile's length, or until the agent shuts down.
    let cut = {
        let guard = stop
            .set
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (guard, _) = stop
            .wake
            .wait_timeout_while(guard, length, |s| !*s)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *guard
    };
    let recorded = running
        .stop()
        .ok_or_else(|| "the profile's stack table was lost".to_owned())?;
    if cut {
        return Err(CUT_SHORT.to_owned());
    }
    let seconds = t0.elapsed().as_secs_f64();
    let stacks: Vec<proto::Stack<'_>> = recorded
        .table
        .stacks()
        .map(|b| proto::Stack {
            frames: b.stack(),
            count: b.count,
            tid: b.tid,
        })
        .collect();
    let mut addresses: Vec<u64> = stacks
        .iter()
        .flat_map(|s| {
            s.frames
                .iter()
                .enumerate()
                .map(|(i, &f)| proto::lookup_address(i, f))
        })
        .collect();
    let threads: std::collections::BTreeMap<u64, String> = stacks
        .iter()
        .map(|s| s.tid)
        .collect::<std::collections::BTreeSet<u64>>()
        .into_iter()
        .filter_map(|tid| {
            let comm = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).ok()?;
            Some((tid, comm.trim_end().to_owned()))
        })
        .collect();
    addresses.sort_unstable();
    addresses.dedup();
    let objects = symbols::loaded_objects();
    let names = symbols::resolve(&objects, &addresses);
    let symbolise_seconds = t0.elapsed().as_secs_f64() - seconds;
    let warning = cut_stacks_warning(stacks.iter().map(|s| (s.frames.len(), s.count)));
    if let Some(w) = &warning {
        tracing::warn!("CPU profile: {w}");
    }
    let comments: Vec<String> = warning.iter().cloned().collect();
    let (raw, samples) = proto::encode(&proto::Input {
        stacks,
        threads: &threads,
        comments: &comments,
        unattributed: vec![
            (
                "[vigil: stack table full, sample lost]",
                recorded.table.lost,
            ),
            (
                "[vigil: dropped, another thread was being sampled]",
                recorded.busy_drops,
            ),
        ],
        objects: &objects,
        symbols: &names,
        start_unix_nanos: (started_unix * 1e9) as i64,
        duration_nanos: i64::try_from((seconds * 1e9) as u64).unwrap_or(i64::MAX),
        period_nanos: 1_000_000_000 / i64::from(PROFILE_HZ),
    });
    Ok(Captured {
        started_unix,
        seconds,
        symbolise_seconds,
        samples,
        pprof_gz: gzip(&raw).map_err(|e| format!("cannot compress the profile: {e}"))?,
        warning,
    })
}

#[cfg(profiler)]
fn host_owns_sigprof() -> Option<String> {
    sampler::host_owns_sigprof()
}

#[cfg(not(profiler))]
fn host_owns_sigprof() -> Option<String> {
    None
}

#[cfg(not(profiler))]
fn capture(_length: Duration, _stop: &Stop) -> Result<Captured, String> {
    let _ = now_unix;
    Err("this build has no CPU profiler (the `profiling` feature; Linux with glibc on x86_64 or aarch64)".to_owned())
}

#[cfg(profiler)]
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
#[cfg(profiler)]
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
    fn most_samples_one_or_two_frames_deep_say_the_stacks_are_cut() {
        // Depth and samples per stack.
        let w = cut_stacks_warning([(1, 30), (2, 20), (9, 10)]).unwrap();
        assert!(w.starts_with("50 of 60 samples"), "{w}");
        assert!(w.contains("force-frame-pointers") && w.is_ascii(), "{w}");
        // Deep stacks, half shallow (not most), or too few samples to say: no warning.
        assert_eq!(cut_stacks_warning([(1, 5), (12, 55)]), None);
        assert_eq!(cut_stacks_warning([(1, 30), (12, 30)]), None);
        assert_eq!(cut_stacks_warning([(1, 19)]), None);
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
