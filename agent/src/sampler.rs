//! One tick: run every collector, fill one `Sample`, update the agent's own metrics.

use std::ops::Range;
use std::time::{Duration, Instant, SystemTime};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use vigil_features::{Sample, SignalSet};

use crate::collectors::Collector;
use crate::metrics as m;

/// A failing collector is logged on its first failure, then at most once per this interval.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CollectorLabel {
    collector: &'static str,
}

struct Slot {
    collector: Box<dyn Collector>,
    range: Range<usize>,
    errors: Counter,
    last_logged: Option<Instant>,
    unlogged: u64,
}

/// Runs the collectors once per tick and owns the resulting [`Sample`].
///
/// The agent thread calls [`Sampler::tick`]; hosts that want to drive sampling themselves (or benchmark
/// it) can build one through [`crate::AgentBuilder::build_sampler`].
pub struct Sampler {
    slots: Vec<Slot>,
    sample: Sample,
    tick_duration: Histogram,
    ticks: Counter,
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler")
            .field("signals", &self.sample.signals().len())
            .finish_non_exhaustive()
    }
}

impl Sampler {
    pub(crate) fn new(
        collectors: Vec<Box<dyn Collector>>,
        registry: &mut Registry,
    ) -> Result<Self, crate::Error> {
        let errors = Family::<CollectorLabel, Counter>::default();
        let tick_duration = Histogram::new([
            50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3,
            1.0,
        ]);
        let ticks = Counter::default();
        let mut specs = Vec::new();
        let mut slots = Vec::with_capacity(collectors.len());
        for collector in collectors {
            let signals = collector.signals();
            let range = specs.len()..specs.len() + signals.len();
            specs.extend(signals);
            let errors = errors
                .get_or_create(&CollectorLabel {
                    collector: collector.name(),
                })
                .clone();
            slots.push(Slot {
                collector,
                range,
                errors,
                last_logged: None,
                unlogged: 0,
            });
        }
        m::AGENT_TICK_DURATION.register(registry, tick_duration.clone());
        m::AGENT_TICKS.register(registry, ticks.clone());
        m::AGENT_COLLECTOR_ERRORS.register(registry, errors);
        let signals = SignalSet::new(specs).map_err(|message| crate::Error::Config {
            setting: "collectors",
            message,
        })?;
        Ok(Self {
            slots,
            sample: Sample::new(signals),
            tick_duration,
            ticks,
        })
    }

    /// The signals every sample carries, in order.
    pub fn signals(&self) -> &SignalSet {
        self.sample.signals()
    }

    /// Runs every collector once and returns the filled sample. A collector that fails leaves its
    /// signals `NaN`, is counted in `vigil_agent_collector_errors_total{collector}` and logged (first
    /// failure, then at most once a minute with the count in between).
    pub fn tick(&mut self) -> &Sample {
        let started = Instant::now();
        self.sample.reset(SystemTime::now());
        let values = self.sample.values_mut();
        for slot in &mut self.slots {
            let Some(out) = values.get_mut(slot.range.clone()) else {
                continue;
            };
            if let Err(e) = slot.collector.collect(out) {
                out.fill(f64::NAN);
                slot.errors.inc();
                slot.unlogged += 1;
                if slot
                    .last_logged
                    .is_none_or(|t| t.elapsed() >= ERROR_LOG_INTERVAL)
                {
                    tracing::warn!(
                        collector = slot.collector.name(),
                        failures_since_last_log = slot.unlogged,
                        "collector failed, its signals are missing this tick: {e}"
                    );
                    slot.last_logged = Some(Instant::now());
                    slot.unlogged = 0;
                }
            }
        }
        self.ticks.inc();
        self.tick_duration.observe(started.elapsed().as_secs_f64());
        &self.sample
    }

    /// The sample of the last tick.
    pub fn sample(&self) -> &Sample {
        &self.sample
    }
}
