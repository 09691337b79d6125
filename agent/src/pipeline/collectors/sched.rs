//! Scheduler latency, measured from outside the runtime.
//!
//! A dedicated OS thread (`vigil-probe`) repeatedly spawns a no-op task on the host runtime through its
//! `Handle` and waits (`recv_timeout`) for the task's first poll. The time in between is how long a newly
//! woken task waits for a worker. Because the waiting happens on our own thread, a runtime whose every
//! worker is blocked still shows up: the probe is late, and once it is later than the stall threshold a
//! stall is counted (once per probe). A probe spawned from inside the runtime would only ever run when a
//! worker is already free and read microseconds during a full stall.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{RecvTimeoutError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::runtime::Handle;
use vigil_features::SignalSpec;
use vigil_features::vocab::{self, Known};

use super::{CollectError, Collector, fill};
use crate::metrics::{self as m, FGauge};

/// Latencies kept per tick for the percentiles; more probes than this in one tick only feed the
/// histogram and the max.
const PER_TICK_CAPACITY: usize = 1024;
/// How often a waiting probe thread checks for shutdown.
const SHUTDOWN_POLL: Duration = Duration::from_millis(20);

/// Probe timing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProbeConfig {
    /// Pause between one probe's first poll and the next probe's spawn.
    pub(crate) interval: Duration,
    /// A probe not polled within this time counts one stall.
    pub(crate) stall_threshold: Duration,
}

/// Bucket bounds for `vigil_sched_latency_seconds`: 10 µs to 10 s.
const BUCKETS: [f64; 19] = [
    10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3,
    250e-3, 500e-3, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Default)]
struct TickWindow {
    latencies: Vec<f64>,
    max: f64,
    stalls_total: u64,
    probes_total: u64,
    in_flight_since: Option<Instant>,
    runtime_gone: bool,
}

struct Shared {
    window: Mutex<TickWindow>,
    stop: AtomicBool,
    histogram: Histogram,
    stalls: Counter,
    /// Latencies beyond [`PER_TICK_CAPACITY`] in one tick: not in the percentiles, but counted.
    unranked: Counter,
}

impl Shared {
    fn window(&self) -> std::sync::MutexGuard<'_, TickWindow> {
        // Nothing panics while holding the lock, but never let a poisoned lock take the agent down.
        self.window.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The running probe thread; stopping is prompt (≤ 20 ms) even while a probe waits on a stuck runtime.
pub(crate) struct ProbeThread {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl ProbeThread {
    /// Signals the thread to stop and waits for it.
    pub(crate) fn stop(&mut self) {
        if let Some(t) = self.signal_stop() {
            let _ = t.join();
        }
    }

    /// Signals the thread to stop and waits for it until `deadline` at most (then it ends on its
    /// own).
    pub(crate) fn stop_by(&mut self, deadline: std::time::Instant) {
        if let Some(t) = self.signal_stop() {
            crate::threads::join_by(t, deadline, "scheduler probe");
        }
    }

    fn signal_stop(&mut self) -> Option<JoinHandle<()>> {
        self.shared.stop.store(true, Ordering::Relaxed);
        let t = self.thread.take()?;
        t.thread().unpark();
        Some(t)
    }
}

impl Drop for ProbeThread {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Reads what the probe thread measured since the previous tick.
pub(crate) struct SchedCollector {
    shared: Arc<Shared>,
    scratch: Vec<f64>,
    max_gauge: FGauge,
}

impl SchedCollector {
    /// Starts the probe thread against `handle` and registers the scheduler metrics.
    pub(crate) fn start(
        handle: &Handle,
        config: ProbeConfig,
        registry: &mut Registry,
    ) -> std::io::Result<(Self, ProbeThread)> {
        let shared = Arc::new(Shared {
            window: Mutex::new(TickWindow {
                latencies: Vec::with_capacity(PER_TICK_CAPACITY),
                ..TickWindow::default()
            }),
            stop: AtomicBool::new(false),
            histogram: Histogram::new(BUCKETS),
            stalls: Counter::default(),
            unranked: Counter::default(),
        });
        let max_gauge = FGauge::default();
        m::SCHED_LATENCY.register(registry, shared.histogram.clone());
        m::SCHED_LATENCY_MAX.register(registry, max_gauge.clone());
        m::SCHED_STALLS.register(registry, shared.stalls.clone());
        m::SCHED_UNRANKED.register(registry, shared.unranked.clone());
        let thread = {
            let shared = shared.clone();
            let handle = handle.clone();
            std::thread::Builder::new()
                .name("vigil-probe".into())
                .spawn(move || {
                    crate::alloc::mark_agent_thread();
                    probe_loop(&handle, config, &shared)
                })?
        };
        Ok((
            Self {
                shared: shared.clone(),
                scratch: Vec::with_capacity(PER_TICK_CAPACITY),
                max_gauge,
            },
            ProbeThread {
                shared,
                thread: Some(thread),
            },
        ))
    }
}

fn probe_loop(handle: &Handle, config: ProbeConfig, shared: &Shared) {
    while !shared.stop.load(Ordering::Relaxed) {
        let (tx, rx) = sync_channel::<Instant>(1);
        let spawned_at = Instant::now();
        shared.window().in_flight_since = Some(spawned_at);
        // try_send never blocks a host worker; the JoinHandle is dropped (the task is detached).
        drop(crate::threads::spawn_named(
            handle,
            "vigil-sched-probe",
            async move {
                let _ = tx.try_send(Instant::now());
            },
        ));
        let mut stalled = false;
        let polled_at = loop {
            let waited = spawned_at.elapsed();
            let wait = if stalled {
                SHUTDOWN_POLL
            } else {
                config
                    .stall_threshold
                    .saturating_sub(waited)
                    .clamp(Duration::from_micros(1), SHUTDOWN_POLL)
            };
            match rx.recv_timeout(wait) {
                Ok(t) => break Some(t),
                Err(RecvTimeoutError::Timeout) => {
                    if !stalled && spawned_at.elapsed() >= config.stall_threshold {
                        stalled = true;
                        shared.stalls.inc();
                        shared.window().stalls_total += 1;
                    }
                    if shared.stop.load(Ordering::Relaxed) {
                        return;
                    }
                }
                // The task was dropped without running: the runtime has shut down.
                Err(RecvTimeoutError::Disconnected) => break None,
            }
        };
        let Some(polled_at) = polled_at else {
            let mut w = shared.window();
            w.in_flight_since = None;
            w.runtime_gone = true;
            return;
        };
        let latency = polled_at
            .saturating_duration_since(spawned_at)
            .as_secs_f64();
        shared.histogram.observe(latency);
        {
            let mut w = shared.window();
            w.in_flight_since = None;
            w.probes_total += 1;
            w.max = w.max.max(latency);
            record_latency(&mut w, &shared.unranked, latency);
        }
        std::thread::park_timeout(config.interval);
    }
}

/// Keeps `latency` for this tick's percentiles while there is room; beyond that it is counted in
/// `unranked` (the histogram and the max have it already).
fn record_latency(w: &mut TickWindow, unranked: &Counter, latency: f64) {
    if w.latencies.len() < PER_TICK_CAPACITY {
        w.latencies.push(latency);
    } else {
        unranked.inc();
    }
}

/// Nearest-rank percentile of a sorted slice.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Collector for SchedCollector {
    fn name(&self) -> &'static str {
        "sched"
    }

    fn signals(&self) -> Vec<SignalSpec> {
        vocab::SCHED.iter().map(Known::spec).collect()
    }

    fn collect(&mut self, out: &mut [f64]) -> Result<(), CollectError> {
        let (max, probes, stalls, gone) = {
            let mut w = self.shared.window();
            self.scratch.clear();
            self.scratch.extend_from_slice(&w.latencies);
            w.latencies.clear();
            // A probe still waiting is as late as it has been so far: an ongoing stall shows every tick.
            let in_flight = w.in_flight_since.map_or(0.0, |t| t.elapsed().as_secs_f64());
            let max = w.max.max(in_flight);
            w.max = 0.0;
            (max, w.probes_total, w.stalls_total, w.runtime_gone)
        };
        if gone {
            return Err(CollectError(
                "the monitored runtime has shut down; scheduler probes stopped".into(),
            ));
        }
        self.scratch.sort_unstable_by(f64::total_cmp);
        let max = if self.scratch.is_empty() && max == 0.0 {
            f64::NAN
        } else {
            max
        };
        self.max_gauge.set(max);
        fill(
            out,
            0,
            &[
                percentile(&self.scratch, 0.5),
                percentile(&self.scratch, 0.99),
                max,
                probes as f64,
                stalls as f64,
            ],
        );
        Ok(())
    }
}

/// Keeps the scheduler probe thread running; dropping it stops the thread.
#[must_use = "dropping the guard stops the scheduler probe"]
pub struct ProbeGuard(pub(crate) ProbeThread);

impl std::fmt::Debug for ProbeGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProbeGuard")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_beyond_the_per_tick_capacity_are_counted_not_lost() {
        let mut w = TickWindow::default();
        let unranked = Counter::<u64>::default();
        for i in 0..PER_TICK_CAPACITY + 7 {
            record_latency(&mut w, &unranked, i as f64);
        }
        assert_eq!(w.latencies.len(), PER_TICK_CAPACITY);
        assert_eq!(unranked.get(), 7);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&v[..1], 0.99), 1.0);
        assert!(percentile(&[], 0.5).is_nan());
    }
}
