//! tokio runtime metrics through tokio-metrics' `RuntimeMonitor`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tokio::runtime::Handle;
use tokio_metrics::{RuntimeIntervals, RuntimeMonitor};
use vigil_features::SignalSpec;
use vigil_features::vocab::{self, Known};

use super::{CollectError, Collector, fill, per_second};
use crate::metrics::{self as m, FGauge};

/// Reads the host runtime through ONE long-lived `intervals()` iterator: each `next()` is the delta since
/// the previous one (a fresh iterator per tick would re-add the cumulative totals).
pub(crate) struct RuntimeCollector {
    intervals: RuntimeIntervals,
    workers: FGauge,
    alive: FGauge,
    global_queue: FGauge,
    busy: FGauge,
    parks: Counter,
    #[cfg(tokio_unstable)]
    unstable: Unstable,
}

#[cfg(tokio_unstable)]
struct Unstable {
    handle: Handle,
    spawned_prev: u64,
    polls_total: u64,
    steals_total: u64,
    forced_yields_total: u64,
    spawned: Counter,
    polls: Counter,
    steals: Counter,
    local_queue: FGauge,
    blocking: FGauge,
    mean_poll: FGauge,
    forced_yields: Counter,
}

impl RuntimeCollector {
    pub(crate) fn new(handle: &Handle, registry: &mut Registry) -> Self {
        let c = Self {
            intervals: RuntimeMonitor::new(handle).intervals(),
            workers: FGauge::default(),
            alive: FGauge::default(),
            global_queue: FGauge::default(),
            busy: FGauge::default(),
            parks: Counter::default(),
            #[cfg(tokio_unstable)]
            unstable: Unstable {
                handle: handle.clone(),
                spawned_prev: 0,
                polls_total: 0,
                steals_total: 0,
                forced_yields_total: 0,
                spawned: Counter::default(),
                polls: Counter::default(),
                steals: Counter::default(),
                local_queue: FGauge::default(),
                blocking: FGauge::default(),
                mean_poll: FGauge::default(),
                forced_yields: Counter::default(),
            },
        };
        m::TOKIO_WORKERS.register(registry, c.workers.clone());
        m::TOKIO_ALIVE_TASKS.register(registry, c.alive.clone());
        m::TOKIO_GLOBAL_QUEUE_DEPTH.register(registry, c.global_queue.clone());
        m::TOKIO_BUSY_RATIO.register(registry, c.busy.clone());
        m::TOKIO_PARKS.register(registry, c.parks.clone());
        #[cfg(tokio_unstable)]
        {
            let u = &c.unstable;
            m::TOKIO_SPAWNED.register(registry, u.spawned.clone());
            m::TOKIO_POLLS.register(registry, u.polls.clone());
            m::TOKIO_STEALS.register(registry, u.steals.clone());
            m::TOKIO_LOCAL_QUEUE_DEPTH.register(registry, u.local_queue.clone());
            m::TOKIO_BLOCKING_THREADS.register(registry, u.blocking.clone());
            m::TOKIO_MEAN_POLL.register(registry, u.mean_poll.clone());
            m::TOKIO_FORCED_YIELDS.register(registry, u.forced_yields.clone());
        }
        c
    }
}

impl Collector for RuntimeCollector {
    fn name(&self) -> &'static str {
        "tokio"
    }

    fn signals(&self) -> Vec<SignalSpec> {
        #[allow(unused_mut)]
        let mut s: Vec<SignalSpec> = vocab::RUNTIME.iter().map(Known::spec).collect();
        #[cfg(tokio_unstable)]
        s.extend(vocab::RUNTIME_UNSTABLE.iter().map(Known::spec));
        s
    }

    fn collect(&mut self, out: &mut [f64]) -> Result<(), CollectError> {
        let Some(iv) = self.intervals.next() else {
            return Err(CollectError("runtime monitor returned no interval".into()));
        };
        let workers = iv.workers_count as f64;
        let capacity = iv.elapsed.as_secs_f64() * workers;
        let busy = if capacity > 0.0 {
            (iv.total_busy_duration.as_secs_f64() / capacity).clamp(0.0, 1.0)
        } else {
            f64::NAN
        };
        let values = [
            workers,
            iv.live_tasks_count as f64,
            iv.global_queue_depth as f64,
            busy,
            per_second(iv.total_park_count as f64, iv.elapsed),
        ];
        fill(out, 0, &values);
        self.workers.set(values[0]);
        self.alive.set(values[1]);
        self.global_queue.set(values[2]);
        self.busy.set(busy);
        self.parks.inc_by(iv.total_park_count);

        #[cfg(tokio_unstable)]
        {
            let u = &mut self.unstable;
            let spawned = u.handle.metrics().spawned_tasks_count();
            u.spawned.inc_by(spawned.wrapping_sub(u.spawned_prev));
            u.spawned_prev = spawned;
            u.polls_total = u.polls_total.wrapping_add(iv.total_polls_count);
            u.steals_total = u.steals_total.wrapping_add(iv.total_steal_count);
            u.forced_yields_total = u
                .forced_yields_total
                .wrapping_add(iv.budget_forced_yield_count);
            u.polls.inc_by(iv.total_polls_count);
            u.steals.inc_by(iv.total_steal_count);
            u.forced_yields.inc_by(iv.budget_forced_yield_count);
            let mean_poll = if iv.total_polls_count > 0 {
                iv.mean_poll_duration.as_secs_f64()
            } else {
                f64::NAN
            };
            u.local_queue.set(iv.total_local_queue_depth as f64);
            u.blocking.set(iv.blocking_threads_count as f64);
            u.mean_poll.set(mean_poll);
            let extra = [
                spawned as f64,
                u.polls_total as f64,
                u.steals_total as f64,
                iv.total_local_queue_depth as f64,
                iv.blocking_threads_count as f64,
                mean_poll,
                u.forced_yields_total as f64,
            ];
            fill(out, values.len(), &extra);
        }
        Ok(())
    }
}
