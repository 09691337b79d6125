//! One tick: run every collector, fill one `Sample`, update the agent's own metrics.

use std::ops::Range;
use std::time::{Duration, Instant, SystemTime};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use vigil_features::{Sample, SignalSet};

use vigil_features::drift::DriftReference;
use vigil_features::{FeatureSchema, FeatureVector};

use crate::pipeline::collectors::Collector;
use crate::pipeline::features::{FeatureConfig, FeatureStage};
use crate::pipeline::scoring::ScoringStage;
use vigil_models::{ModelFile, Score};

/// The model to score with (or `None` for a cold start) and the engine's settings.
#[derive(Debug)]
pub(crate) struct ScoringConfig {
    pub(crate) model: Option<ModelFile>,
    /// Where the model came from, for errors (`VIGIL_MODEL=...` or `model_path ...`).
    pub(crate) model_origin: String,
    pub(crate) engine: vigil_models::EngineConfig,
}
use crate::metrics as m;

/// A failing collector is logged on its first failure, then at most once per this interval.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CollectorLabel {
    collector: &'static str,
}

/// Counts every failure of one stage and logs the first, then at most one per [`ERROR_LOG_INTERVAL`].
struct Failures {
    name: &'static str,
    errors: Counter,
    last_logged: Option<Instant>,
    unlogged: u64,
}

impl Failures {
    fn record(&mut self, e: &dyn std::fmt::Display) {
        self.errors.inc();
        self.unlogged += 1;
        if self
            .last_logged
            .is_none_or(|t| t.elapsed() >= ERROR_LOG_INTERVAL)
        {
            tracing::warn!(
                collector = self.name,
                failures_since_last_log = self.unlogged,
                "{} failed, its values are missing this tick: {e}",
                self.name
            );
            self.last_logged = Some(Instant::now());
            self.unlogged = 0;
        }
    }
}

struct Slot {
    collector: Box<dyn Collector>,
    range: Range<usize>,
    failures: Failures,
}

/// Runs the collectors once per tick and owns the resulting [`Sample`].
///
/// The agent thread calls [`Sampler::tick`]; hosts that want to drive sampling themselves (or benchmark
/// it) can build one through [`crate::AgentBuilder::build_sampler`].
pub struct Sampler {
    slots: Vec<Slot>,
    sample: Sample,
    features: FeatureStage,
    feature_failures: Failures,
    scoring: ScoringStage,
    tick_duration: Histogram,
    ticks: Counter,
    clock: TickClock,
    /// The host set a drift reference: models the agent trains do not replace it.
    host_reference: bool,
}

/// Sample timestamps: wall-clock time at start plus monotonic time since, in whole milliseconds and
/// strictly increasing. Never steps back when the wall clock does, and is exactly what `--record`
/// writes (three decimals), so a recording replays through the engine with the times the agent used.
#[derive(Debug)]
struct TickClock {
    wall_ms: u64,
    started: Instant,
    last_ms: u64,
}

impl TickClock {
    fn new() -> Self {
        let wall_ms = SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 2));
        Self {
            wall_ms,
            started: Instant::now(),
            last_ms: 0,
        }
    }

    /// The next sample time, Unix milliseconds.
    fn next(&mut self) -> u64 {
        let elapsed = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX / 4);
        let ms = self.wall_ms.saturating_add(elapsed).max(self.last_ms + 1);
        self.last_ms = ms;
        ms
    }
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
        feature_config: FeatureConfig,
        scoring: ScoringConfig,
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
            let failures = failures(&errors, collector.name());
            slots.push(Slot {
                collector,
                range,
                failures,
            });
        }
        m::AGENT_TICK_DURATION.register(registry, tick_duration.clone());
        m::AGENT_TICKS.register(registry, ticks.clone());
        let feature_failures = failures(&errors, "features");
        m::AGENT_COLLECTOR_ERRORS.register(registry, errors);
        let signals = SignalSet::new(specs).map_err(|message| crate::Error::Config {
            setting: "collectors",
            message: message.to_string(),
        })?;
        let schema = vigil_features::FeatureSchema::new(&signals, feature_config.horizons);
        let features = FeatureStage::new(&schema, feature_config, registry);
        if let Some(model) = &scoring.model {
            model
                .check_schema(&schema)
                .map_err(|source| crate::Error::Model {
                    origin: scoring.model_origin.clone(),
                    source,
                    hint: ". The model was trained on other signals or horizons than this agent \
                           collects (a GPU present or not, tokio_unstable, horizons); train it on \
                           this agent's features",
                })?;
        }
        let scoring = ScoringStage::new(&signals, scoring.engine, scoring.model, registry)?;
        Ok(Self {
            slots,
            sample: Sample::new(signals),
            features,
            feature_failures,
            scoring,
            tick_duration,
            ticks,
            clock: TickClock::new(),
            host_reference: false,
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
        let ms = self.clock.next();
        self.sample
            .reset(std::time::UNIX_EPOCH + Duration::from_millis(ms));
        let values = self.sample.values_mut();
        for slot in &mut self.slots {
            let Some(out) = values.get_mut(slot.range.clone()) else {
                continue;
            };
            if let Err(e) = slot.collector.collect(out) {
                out.fill(f64::NAN);
                slot.failures.record(&e);
            }
        }
        let t = ms as f64 / 1000.0;
        let updated = self
            .scoring
            .update(t, self.sample.values())
            .and_then(|reference| {
                // Drift by default: a model the agent trained brings the reference of its training
                // windows, unless the host set its own.
                if let Some(r) = reference
                    && !self.host_reference
                {
                    self.features.set_reference(r);
                }
                self.features.update(self.scoring.features())
            });
        if let Err(e) = updated {
            self.feature_failures.record(&e);
        }
        self.ticks.inc();
        self.tick_duration.observe(started.elapsed().as_secs_f64());
        &self.sample
    }

    /// The features of the last tick.
    pub fn features(&self) -> &FeatureVector {
        self.scoring.features()
    }

    /// The anomaly score of the last tick; `None` while the cold start warms up or trains.
    pub fn score(&self) -> Option<&Score> {
        self.scoring.last()
    }

    /// The open anomaly event, if any.
    pub fn current_event(&self) -> Option<&vigil_models::Event> {
        self.scoring.current_event()
    }

    /// Event notices from now on (opened, closed); at most 64 are buffered for a slow receiver.
    pub fn subscribe_events(&self) -> tokio::sync::broadcast::Receiver<crate::EventNotice> {
        self.scoring.notices().subscribe()
    }

    /// Whether the window is full (features are meaningful).
    pub fn is_warm(&self) -> bool {
        self.scoring.is_warm()
    }

    /// The model in use.
    pub fn model(&self) -> Option<&std::sync::Arc<vigil_models::ModelFile>> {
        self.scoring.model()
    }

    /// For hosts that drive ticks themselves: waits, at most `timeout`, for a model being trained on
    /// the `vigil-train` thread, so it installs on its install tick however loaded the machine is and
    /// the run scores exactly as its replay through `vigil score` does; false when it is still training.
    /// The agent's own thread never waits.
    pub fn wait_for_training(&mut self, timeout: std::time::Duration) -> bool {
        self.scoring.wait_for_training(timeout)
    }

    /// Applies a model control between ticks; returns the model now in use and what to record in the
    /// model history (`None` when it is recorded already).
    pub(crate) fn control(
        &mut self,
        c: crate::store::retrain::Control,
    ) -> Option<(
        std::sync::Arc<vigil_models::ModelFile>,
        Option<&'static str>,
    )> {
        self.scoring.control(c)
    }

    pub(crate) fn drift_max_psi(&self) -> crate::metrics::FGauge {
        self.features.max_psi()
    }

    pub(crate) fn continue_event_ids_after(&mut self, last: u64) {
        self.scoring.continue_event_ids_after(last);
    }

    pub(crate) fn event_sender(&self) -> tokio::sync::broadcast::Sender<crate::EventNotice> {
        self.scoring.notices()
    }

    /// The schema of [`Sampler::features`].
    pub fn feature_schema(&self) -> &FeatureSchema {
        self.scoring.schema()
    }

    /// Compares live features with `reference` from now on (`vigil_feature_drift_*`). The reference must
    /// have been fitted on this sampler's feature schema.
    pub fn set_drift_reference(&mut self, reference: DriftReference) -> Result<(), crate::Error> {
        check_reference(self.scoring.schema(), &reference)?;
        self.host_reference = true;
        self.features.set_reference(reference);
        Ok(())
    }

    /// The sample of the last tick.
    pub fn sample(&self) -> &Sample {
        &self.sample
    }
}

fn failures(family: &Family<CollectorLabel, Counter>, name: &'static str) -> Failures {
    Failures {
        name,
        errors: family
            .get_or_create(&CollectorLabel { collector: name })
            .clone(),
        last_logged: None,
        unlogged: 0,
    }
}

/// A drift reference must come from the same feature schema as the running agent.
pub(crate) fn check_reference(
    schema: &FeatureSchema,
    reference: &DriftReference,
) -> Result<(), crate::Error> {
    if reference.schema_hash() != schema.hash() {
        return Err(crate::Error::Config {
            setting: "drift_reference",
            message: format!(
                "the reference was fitted on feature schema {:016x} but this agent's schema is {}; \
                 refit it on features from an agent with the same signals and horizons",
                reference.schema_hash(),
                schema.hash_hex()
            ),
        });
    }
    Ok(())
}

/// What the store keeps of the sampler.
impl Sampler {
    /// The schema of the ticks this sampler stores: its signals' CSV columns and its feature names.
    pub(crate) fn store_schema(&self) -> vigil_store::SchemaInfo {
        let schema = self.feature_schema();
        vigil_store::SchemaInfo {
            hash: schema.hash_hex(),
            columns: self
                .signals()
                .specs()
                .iter()
                .map(vigil_features::vocab::column_name)
                .collect(),
            features: schema.names().to_vec(),
        }
    }

    /// This tick as stored: raw sample, features once the window is warm, score, open event.
    pub(crate) fn tick_record(&self) -> vigil_store::Write {
        let sample = self.sample();
        let t = sample
            .timestamp()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let score = self.score();
        vigil_store::Write::Tick(vigil_store::TickRecord {
            t,
            schema: self.feature_schema().hash_hex(),
            sample: sample.values().to_vec(),
            features: self.is_warm().then(|| self.features().values().to_vec()),
            score: score.map(|s| s.value),
            raw: score.map(|s| s.raw),
            event_id: self.current_event().map(|e| e.id),
        })
    }
}
