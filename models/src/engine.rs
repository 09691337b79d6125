//! The online engine: the one state machine that turns rows of raw signals into verdicts and events,
//! run by the agent live and by `vigil score` / `vigil bench detect --replay` offline.
//!
//! Per tick: push the row into the [`Window`], extract features, and then
//!
//! - **cold start**: collect windows until [`EngineConfig::warm_up_windows`], then ask the [`Trainer`]
//!   for a model. Below `2 ×` [`crate::WINDOWS_PER_CLUSTER`] fit windows the model is one centroid
//!   (robust per-signal checks on every signal's level); more clusters come with more windows;
//! - **scoring**: score the window, feed the [`events`](crate::Event) state machine;
//! - **adaptation**: windows outside events (and not just before one, nor in a cooldown) go into a
//!   bounded history; the model is refitted on it when the history has doubled since the last fit
//!   (so early models are replaced quickly), then every [`EngineConfig::refit_every`] ticks. Windows
//!   inside events never train a model, so a baseline does not absorb an ongoing event;
//! - **level shift**: an event whose leading level has stopped moving over
//!   [`EngineConfig::rebaseline_after`] windows (the newer half of its deviations no higher than the
//!   older half, beyond their wobble: [`still_growing`]) is closed as `level_shift` and the model is
//!   refitted on the windows since the change alone: a step change that stays is the new normal, a leak
//!   that keeps growing stays an event until it stops. Any model gives way, a loaded one included;
//! - **drift**: a shift too small to open events still moves the scores. The model's calibration
//!   windows put [`DRIFT_EXPECTED`] of normal windows above their p90 (the score's settle level); when
//!   at least [`DRIFT_RATE`] of the last [`EngineConfig::rebaseline_after`] windows scored outside
//!   events are above it, the model no longer describes normal and is refitted on the newest
//!   `2 × rebaseline_after` clean windows (the regime before the shift and the one after, in time
//!   order, so the calibration windows are the new regime).
//!
//! The engine holds no clock and no thread: the caller passes each row's time, and training goes
//! through the injected [`Trainer`]. A trained model is installed exactly
//! [`EngineConfig::install_delay`] ticks after it was requested (later only if the trainer is still
//! busy), so a live run and a replay of its recording give the same verdicts.

use std::collections::VecDeque;
use std::sync::Arc;

use ndarray::ArrayView1;
use vigil_features::drift::DriftReference;
use vigil_features::{FeatureError, FeatureSchema, FeatureVector, Horizons, SignalSet, Window};

use crate::budget::AlarmLevel;
use crate::events::{EventTracker, Transition, WindowVerdict};
use crate::{
    Event, EventEnd, EventParams, FitReason, KMeansDetector, KMeansParams, ModelError, ModelFile,
    RecentRange, Score, TrainingSummary,
};

/// Everything that decides the engine's verdicts. The same values give the same verdicts, live or
/// offline. Non-exhaustive: start from [`EngineConfig::default`] or [`EngineConfig::agent`] and set
/// fields.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct EngineConfig {
    /// Feature horizons.
    pub horizons: Horizons,
    /// Nominal seconds between rows (the agent's tick): sets the per-window false-alarm budget and the
    /// floors of rate features.
    pub tick_seconds: f64,
    /// Windows collected before the first model (at least 50).
    pub warm_up_windows: usize,
    /// Ticks between refits once the history stopped doubling; 0 turns scheduled refits off.
    pub refit_every: usize,
    /// Newest non-event windows kept for refits (memory: windows × features × 8 bytes).
    pub history_windows: usize,
    /// False events allowed per day per process: the alarm level is set so that, on the engine's own
    /// past, events open at most this often (see [`crate::budget`]); the model's threshold, the unit
    /// of that level, is calibrated at [`UNIT_EVENTS_PER_DAY`].
    pub false_events_per_day: f64,
    /// Event state machine.
    pub events: EventParams,
    /// Largest number of k-means clusters.
    pub clusters: usize,
    /// Training seed.
    pub seed: u64,
    /// Ticks between asking for a model and installing it.
    pub install_delay: usize,
    /// The level-shift horizon: windows an event may last without its leading level moving before the
    /// level is taken as the new normal (the event ends as `level_shift`); 0 never does.
    pub rebaseline_after: usize,
    /// Whether a model given at start (a model file) is refitted on live windows too. Default false:
    /// an operator's model (perhaps trained with labels) scores until it is replaced.
    pub refit_loaded: bool,
}

impl Default for EngineConfig {
    /// One-second ticks, horizons 10/60, 300 warm-up windows, refit hourly on the newest 2,000
    /// windows, [`DEFAULT_FALSE_EVENTS_PER_DAY`] false events per day, events 3-of-5 / 5 quiet / 10 cooldown, up to 8 clusters,
    /// install after 10 ticks, rebaseline after 360 windows without growth.
    fn default() -> Self {
        Self {
            horizons: Horizons::default(),
            tick_seconds: 1.0,
            warm_up_windows: 300,
            refit_every: 3600,
            history_windows: 2000,
            false_events_per_day: DEFAULT_FALSE_EVENTS_PER_DAY,
            events: EventParams::default(),
            clusters: 8,
            seed: 42,
            install_delay: 10,
            rebaseline_after: 360,
            refit_loaded: false,
        }
    }
}

/// The default false-event budget: one false event in ten days per process (three a day on a fleet of
/// thirty). The readings' own alarm point gives about that on real services (0.06 to 0.08 false events
/// a day measured on three corpora), so by default the level moves off that point only where a
/// service's own past shows, beyond chance, that it would break this budget.
pub const DEFAULT_FALSE_EVENTS_PER_DAY: f64 = 0.1;

/// The false-event rate the model's threshold is calibrated at (per window, through
/// [`window_budget`]): the threshold is the unit the severity and the alarm level are read in, so it
/// stays the same whatever the operator's budget, which acts on the level alone.
pub const UNIT_EVENTS_PER_DAY: f64 = 1.0;

/// Newest windows a refit trains on (at least: more when the warm-up is longer).
pub const HISTORY_WINDOWS: usize = 2000;

impl EngineConfig {
    /// The agent's settings for rows `tick_seconds` apart (what `vigil score` and `bench corpus` run
    /// offline too): a first model after `warm_up_windows` windows, refitted every `refit_every` ticks
    /// (0: never) on the newest [`HISTORY_WINDOWS`] windows or the whole warm-up if that is longer, at
    /// `false_events_per_day`; everything else as [`EngineConfig::default`].
    pub fn agent(
        tick_seconds: f64,
        warm_up_windows: usize,
        refit_every: usize,
        false_events_per_day: f64,
    ) -> Self {
        Self {
            tick_seconds,
            warm_up_windows,
            refit_every,
            history_windows: HISTORY_WINDOWS.max(warm_up_windows),
            false_events_per_day,
            ..Self::default()
        }
    }

    /// Ticks of `tick_seconds` in `seconds` (rounded up, at least one): an hour of ticks is the
    /// default refit schedule.
    pub fn ticks_in(seconds: f64, tick_seconds: f64) -> usize {
        ((seconds / tick_seconds).ceil() as usize).max(1)
    }
}

/// Share of normal windows above the calibration p90 (the settle level), by construction.
pub const DRIFT_EXPECTED: f64 = 0.1;
/// Share of windows above the calibration p90 that counts as a large, sustained drift: five times
/// [`DRIFT_EXPECTED`]. Under no drift, the count over 360 windows is binomial with mean 36 and
/// standard deviation 5.7; 180 is 25 standard deviations away.
pub const DRIFT_RATE: f64 = 0.5;

/// The per-window alarm budget that gives at most `false_events_per_day` events at a tick, for the
/// event rule in `events`: an event needs `open_k` alarms among `open_n` windows, which for
/// independent windows happens with probability `C(n, k) · q^k`; solved for `q`, then divided by
/// `open_n` because neighbouring windows are not independent (they share most of their data).
pub fn window_budget(false_events_per_day: f64, tick_seconds: f64, events: &EventParams) -> f64 {
    let per_window = (false_events_per_day * tick_seconds / 86_400.0).max(1e-12);
    let (n, k) = (
        events.open_n.max(1),
        events.open_k.clamp(1, events.open_n.max(1)),
    );
    let mut choose = 1.0;
    for i in 0..k {
        choose *= (n - i) as f64 / (i + 1) as f64;
    }
    ((per_window / choose).powf(1.0 / k as f64) / n as f64).clamp(1e-9, 0.25)
}

impl EngineConfig {
    /// Validates every field, naming the one that is wrong.
    pub fn check(&self) -> Result<(), ModelError> {
        let param = |name: &'static str, message: String| Err(ModelError::Param { name, message });
        if !(self.tick_seconds.is_finite() && self.tick_seconds > 0.0) {
            return param(
                "tick_seconds",
                format!("{} is not positive", self.tick_seconds),
            );
        }
        if self.warm_up_windows < 50 {
            return param(
                "warm_up_windows",
                format!(
                    "{} is below the 50 windows a model needs",
                    self.warm_up_windows
                ),
            );
        }
        if self.history_windows < self.warm_up_windows {
            return param(
                "history_windows",
                format!(
                    "{} is below warm_up_windows ({})",
                    self.history_windows, self.warm_up_windows
                ),
            );
        }
        if !(self.false_events_per_day.is_finite() && self.false_events_per_day > 0.0) {
            return param(
                "false_events_per_day",
                format!("{} is not positive", self.false_events_per_day),
            );
        }
        self.events.check()?;
        self.params().check()?;
        Ok(())
    }

    /// The detector parameters this configuration trains with.
    pub fn params(&self) -> KMeansParams {
        KMeansParams {
            clusters: self.clusters,
            alert_budget: window_budget(UNIT_EVENTS_PER_DAY, self.tick_seconds, &self.events),
            seed: self.seed,
            tick_seconds: self.tick_seconds,
            short_horizon: self.horizons.short(),
            ..KMeansParams::default()
        }
    }
}

/// A request to train: the schema and the windows (time order), and how.
#[derive(Debug, Clone)]
pub struct TrainJob {
    /// Feature schema of the windows.
    pub schema: FeatureSchema,
    /// Windows, oldest first.
    pub rows: Vec<Arc<[f64]>>,
    /// Detector parameters.
    pub params: KMeansParams,
    /// Horizons, recorded in the model file.
    pub horizons: Horizons,
    /// Creation time recorded in the model file (the caller's clock at the request).
    pub created: f64,
    /// Why the model is trained (recorded in the model file's summary, for code to match on).
    pub why: FitReason,
    /// Why, in words (model notes).
    pub reason: String,
    /// Labelled windows kept from the last retrain on stored windows (a person's verdicts, alerts):
    /// every refit learns from them too, so feedback outlives the engine's own refits.
    pub labelled: Arc<Vec<LabelledWindow>>,
}

/// A window with its label, as a retrain on stored windows found it.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledWindow {
    /// The window's features.
    pub features: Arc<[f64]>,
    /// `(anomalous, weight)`.
    pub label: (bool, f64),
    /// The labelled anomaly type, if any.
    pub kind: Option<crate::AnomalyKind>,
    /// The label came from an alert (see [`crate::LabelledRow::coarse`]).
    pub coarse: bool,
}

/// What a training produced: the model, and the drift reference of the windows it was trained on (so
/// drift is measured against the model's own training data from the moment it is installed).
#[derive(Debug, Clone)]
pub struct Trained {
    /// The model file.
    pub model: ModelFile,
    /// Feature distributions of the training windows; `None` when they could not be summarised.
    pub reference: Option<DriftReference>,
}

impl TrainJob {
    /// Fits the detector, wraps it as a model file and summarises the training windows for drift: what
    /// every [`Trainer`] runs.
    pub fn train(&self) -> Result<Trained, ModelError> {
        let model = self.run()?;
        let reference = DriftReference::fit(&self.schema, self.rows.iter().map(|r| &r[..])).ok();
        Ok(Trained { model, reference })
    }

    /// Fits the detector and wraps it as a model file.
    pub fn run(&self) -> Result<ModelFile, ModelError> {
        let mut notes = vec![self.reason.clone()];
        let d = if self.labelled.is_empty() {
            KMeansDetector::fit(
                self.schema.names(),
                self.schema.units(),
                self.rows.iter().map(|r| &r[..]),
                self.params,
            )?
        } else {
            let rows: Vec<crate::LabelledRow<'_>> = self
                .labelled
                .iter()
                .map(|w| crate::LabelledRow {
                    features: &w.features,
                    label: Some(w.label),
                    kind: w.kind,
                    coarse: w.coarse,
                })
                .chain(self.rows.iter().map(|r| crate::LabelledRow {
                    features: r,
                    label: None,
                    kind: None,
                    coarse: false,
                }))
                .collect();
            let (d, note) = KMeansDetector::fit_with_labels(
                self.schema.names(),
                self.schema.units(),
                &rows,
                self.params,
            )?;
            // What was trained, then (for the engine's refits) where the labels came from.
            notes.push(note);
            if self.why != FitReason::Offline {
                notes.push(format!(
                    "with {} labelled windows kept from the last retrain",
                    self.labelled.len()
                ));
            }
            d
        };
        let summary = TrainingSummary {
            rows: self.rows.len() + self.labelled.len(),
            alert_budget: self.params.alert_budget,
            tick_seconds: Some(self.params.tick_seconds),
            short_horizon: self.horizons.short(),
            long_horizon: self.horizons.long(),
            notes,
            fit_reason: Some(self.why),
            ..TrainingSummary::default()
        };
        let mut file = ModelFile::new(&self.schema, d, summary);
        file.created_unix_seconds = self.created;
        Ok(file)
    }
}

/// Trains models for the engine: inline (offline, tests) or on a background thread (the agent).
pub trait Trainer: Send {
    /// Starts `job` (usually [`TrainJob::train`]); false when it could not start (the engine retries
    /// at the next refit).
    fn start(&mut self, job: TrainJob) -> bool;
    /// The finished result, once.
    fn poll(&mut self) -> Option<Result<Trained, ModelError>>;
    /// Blocks until the job started last has finished (its result then comes from the next
    /// [`Trainer::poll`]), at most `timeout`; false when it has not. For hosts that drive ticks
    /// themselves and want a live run to match its replay tick for tick whatever the machine's load.
    /// The default (a trainer that finishes inside `start`) returns true at once.
    fn wait(&mut self, timeout: std::time::Duration) -> bool {
        let _ = timeout;
        true
    }
}

/// Trains on the calling thread, at once.
#[derive(Debug, Default)]
pub struct InlineTrainer {
    done: Option<Result<Trained, ModelError>>,
}

impl Trainer for InlineTrainer {
    fn start(&mut self, job: TrainJob) -> bool {
        self.done = Some(job.train());
        true
    }

    fn poll(&mut self) -> Option<Result<Trained, ModelError>> {
        self.done.take()
    }
}

/// Where the engine is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The window is not yet full.
    Filling,
    /// Collecting windows for the first model.
    WarmingUp,
    /// Scoring with a model.
    Scoring,
}

/// What one row produced.
#[derive(Debug, Clone)]
pub struct Step {
    /// The window's score; `None` before a model is installed.
    pub score: Option<Score>,
    /// The score's top features by name: `(feature, deviation in robust standard deviations)`.
    pub top: Vec<(String, f64)>,
    /// Inside an open event (including the window that opened it).
    pub in_event: bool,
    /// The event that opened on this window.
    pub opened: Option<Event>,
    /// The open event whose type changed on this window (a new peak of another type).
    pub retyped: Option<Event>,
    /// The event that closed on this window.
    pub closed: Option<Event>,
    /// A model was installed on this window (scores from here on use it).
    pub installed: bool,
    /// A training request failed on this window (the message; the engine goes on).
    pub train_error: Option<String>,
}

/// The feature that leads an open event and its deviation over the last level-shift horizon.
#[derive(Debug, Clone)]
struct Lead {
    /// Schema index of the feature.
    feature: usize,
    /// The feature is a trend reading (a slope): a slope that stays away from normal is a level still
    /// moving, never a new level.
    trend: bool,
    /// |deviation| per window since the last check, oldest first (at most the horizon).
    devs: VecDeque<f64>,
    /// Tick of the last check (the opening at first).
    checked: u64,
    /// Windows from the last check to the next: an hour's worth at first (at least 50, at most the
    /// horizon), doubling up to the horizon, so a step is recognised once it has held for an hour
    /// while a slow climb still gets whole horizons to show its growth.
    gap: u64,
}

/// How long a new level must hold before it can be called a level shift: an hour — a step that
/// persists for hours is a change, not an incident — but never fewer windows than a model trains on
/// (50), and never more than the horizon.
pub const LEVEL_SHIFT_MIN_SECONDS: f64 = 3600.0;

/// Windows before the first level-shift check of an event at `tick_seconds` a window (see
/// [`LEVEL_SHIFT_MIN_SECONDS`]).
fn first_gap(horizon: usize, tick_seconds: f64) -> u64 {
    let hour = if tick_seconds.is_finite() && tick_seconds > 0.0 {
        (LEVEL_SHIFT_MIN_SECONDS / tick_seconds).ceil() as u64
    } else {
        horizon as u64
    };
    hour.max(50).min(horizon as u64).max(1)
}

/// Whether a lead's deviations over one horizon (oldest first) still grow: the median of the newer
/// half exceeds the older half's by more than twice the larger of the halves' median absolute
/// deviations (the wobble of a level that stays put), and by more than one robust standard deviation
/// of the model (the deviations' unit). Scale-free: a step with any noise is
/// settled, a climb is growing however long it runs (its halves differ by about twice their spread).
pub fn still_growing(devs: &[f64]) -> bool {
    let half = devs.len() / 2;
    if half < 2 {
        return true;
    }
    let (old, new) = devs.split_at(devs.len() - half);
    let med_mad = |v: &[f64]| {
        let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
        s.sort_unstable_by(f64::total_cmp);
        let m = s.get(s.len() / 2).copied().unwrap_or(0.0);
        let mut d: Vec<f64> = s.iter().map(|x| (x - m).abs()).collect();
        d.sort_unstable_by(f64::total_cmp);
        (m, d.get(d.len() / 2).copied().unwrap_or(0.0))
    };
    let (m_old, mad_old) = med_mad(&old[old.len() - half..]);
    let (m_new, mad_new) = med_mad(new);
    // Deviations are in the model's robust standard deviations: less than one is no growth, however
    // flat the level (a quasi-constant signal has a wobble near zero).
    m_new - m_old > (2.0 * mad_old.max(mad_new)).max(1.0)
}

/// The engine.
pub struct Engine {
    cfg: EngineConfig,
    /// `None` for an engine over stored feature rows ([`Engine::over_features`]).
    window: Option<Window>,
    schema: FeatureSchema,
    /// Feature rows were pushed ([`Engine::push_features`]): every row is a full window.
    fed_features: bool,
    fv: FeatureVector,
    trainer: Box<dyn Trainer>,
    model: Option<Arc<ModelFile>>,
    model_loaded: bool,
    events: EventTracker,
    /// Clean windows for refits, oldest first.
    history: VecDeque<Arc<[f64]>>,
    /// Newest windows not yet committed to the history (dropped when an event opens on them).
    pending: VecDeque<Arc<[f64]>>,
    /// The newest windows whatever their state, as many as a rebaseline looks back (at least 50, the
    /// fewest a model trains on): what a rebaseline refits on.
    recent: VecDeque<Arc<[f64]>>,
    tick: u64,
    /// Tick of the training request in flight.
    requested: Option<u64>,
    /// A finished model waiting for its install tick.
    ready: Option<Trained>,
    /// The drift reference of the installed model's training windows, until taken.
    reference: Option<DriftReference>,
    /// Windows the current model was trained on (0 for a loaded model).
    fitted_on: usize,
    last_fit_tick: u64,
    /// Level-shift bookkeeping of the open event: the feature leading it and its recent deviations.
    lead: Option<Lead>,
    last_score: Option<Score>,
    /// Windows scored outside events since the install (newest last, at most `rebaseline_after`):
    /// whether each was above the calibration p90; and how many were.
    drift: VecDeque<bool>,
    drift_over: usize,
    /// Labelled windows every refit learns from (see [`TrainJob::labelled`]).
    labelled: Arc<Vec<LabelledWindow>>,
    /// The training in flight was asked for before [`Engine::install`]: its result is dropped.
    superseded: bool,
    /// A level shift closed an event: refit on the windows since the change once the trainer is free.
    level_refit: bool,
    /// From a level shift until the refit on the new level is installed: the model scoring still
    /// describes the old level, so no event opens (the windows are the new regime's history).
    rebaselining: bool,
    /// The regime before the last level shift: its model and its clean history. It stays normal beside
    /// the new one: a window the current model calls anomalous but this one calls normal means the
    /// level went back, and the two regimes trade places (no event, and the excursion's windows do not
    /// stay in the history the next refits learn from).
    previous: Option<Regime>,
    /// What each signal did over the newest clean rows: spikes beyond it, levels inside it (see
    /// [`RecentRange`]).
    range: RecentRange,
    /// The alarm level that spends the false-event budget (see [`AlarmLevel`]).
    alarm: AlarmLevel,
}

/// A model with the clean windows it was refitted from (see [`Engine::previous`]).
struct Regime {
    model: Arc<ModelFile>,
    history: VecDeque<Arc<[f64]>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("tick", &self.tick)
            .field("phase", &self.phase())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine over `signals`. `model`, when given, must match the window's schema and scores from
    /// the first full window.
    pub fn new(
        signals: &SignalSet,
        cfg: EngineConfig,
        model: Option<ModelFile>,
        trainer: Box<dyn Trainer>,
    ) -> Result<Self, ModelError> {
        let window = Window::new(signals, cfg.horizons);
        let schema = window.schema().clone();
        Self::build(Some(window), schema, cfg, model, trainer)
    }

    /// An engine over stored feature rows of `schema` ([`Engine::push_features`]), the way the
    /// promotion gate replays a hold-out: the same scoring, events, level shifts and refits as an
    /// engine fed raw rows.
    pub fn over_features(
        schema: FeatureSchema,
        cfg: EngineConfig,
        model: Option<ModelFile>,
        trainer: Box<dyn Trainer>,
    ) -> Result<Self, ModelError> {
        Self::build(None, schema, cfg, model, trainer)
    }

    fn build(
        window: Option<Window>,
        schema: FeatureSchema,
        cfg: EngineConfig,
        model: Option<ModelFile>,
        trainer: Box<dyn Trainer>,
    ) -> Result<Self, ModelError> {
        cfg.check()?;
        if let Some(m) = &model {
            m.check_schema(&schema)?;
        }
        let fv = FeatureVector::new(&schema);
        let history_cap = cfg.history_windows;
        let events = EventTracker::new(cfg.events);
        let mut range = RecentRange::new(
            schema.names(),
            schema.units(),
            cfg.horizons.short(),
            cfg.history_windows,
            cfg.warm_up_windows,
            cfg.tick_seconds,
        );
        // A model given at start is where the range starts too: what it was trained on, until the
        // span is full (a model file without its extent: a warm-up's worth of rows).
        if let Some(m) = &model {
            let d = &m.detector;
            if d.extent.len() == d.scaler.median.len() && !d.extent.is_empty() {
                let seed: Vec<(f64, f64, f64)> = d
                    .extent
                    .iter()
                    .zip(&d.scaler.median)
                    .map(|(&(lo, hi), &m)| (lo, m, hi))
                    .collect();
                range.seed(&seed);
            } else {
                range.sooner();
            }
        }
        let alarm = AlarmLevel::new(
            cfg.false_events_per_day,
            cfg.tick_seconds,
            cfg.events.open_k,
            cfg.events.open_n,
            cfg.events.cooldown,
        );
        Ok(Self {
            range,
            alarm,
            window,
            schema,
            fed_features: false,
            fv,
            trainer,
            model_loaded: model.is_some(),
            model: model.map(Arc::new),
            events,
            history: VecDeque::with_capacity(history_cap.min(4096)),
            pending: VecDeque::new(),
            recent: VecDeque::new(),
            tick: 0,
            requested: None,
            ready: None,
            reference: None,
            fitted_on: 0,
            last_fit_tick: 0,
            lead: None,
            last_score: None,
            drift: VecDeque::new(),
            drift_over: 0,
            labelled: Arc::new(Vec::new()),
            superseded: false,
            level_refit: false,
            rebaselining: false,
            previous: None,
            cfg,
        })
    }

    /// The feature schema.
    pub fn schema(&self) -> &FeatureSchema {
        &self.schema
    }

    /// This tick's features.
    pub fn features(&self) -> &FeatureVector {
        &self.fv
    }

    /// The model in use.
    pub fn model(&self) -> Option<&Arc<ModelFile>> {
        self.model.as_ref()
    }

    /// Waits, at most `timeout`, for the training in flight (if any) to finish, so that it installs
    /// on its install tick ([`EngineConfig::install_delay`] after it was asked for) as in a replay.
    /// False when it is still running. Never needed live: the agent does not wait.
    pub fn wait_for_training(&mut self, timeout: std::time::Duration) -> bool {
        if self.requested.is_none() || self.ready.is_some() {
            return true;
        }
        self.trainer.wait(timeout)
    }

    /// Installs a model from the next row on. `own`: a model retrained outside the engine for it (on
    /// stored windows, with labels, promoted by the gate), with the labelled windows its refits keep
    /// learning from — refitted, rebaselined and adapted like one the engine trained; otherwise an
    /// operator's model (a reloaded model file), which scores until it is replaced, like one given at
    /// start. Refused when it was trained on another feature schema.
    pub fn install(
        &mut self,
        model: ModelFile,
        labelled: Vec<LabelledWindow>,
        own: bool,
    ) -> Result<(), ModelError> {
        model.check_schema(&self.schema)?;
        self.fitted_on = model.summary.rows.max(1);
        self.model = Some(Arc::new(model));
        self.model_loaded = !own;
        self.labelled = Arc::new(labelled);
        self.last_fit_tick = self.tick;
        // A refit asked for before this model arrived must not replace it.
        self.superseded = self.requested.is_some();
        self.ready = None;
        self.previous = None;
        self.rebaselining = false;
        self.level_refit = false;
        self.drift.clear();
        self.drift_over = 0;
        Ok(())
    }

    /// Whether the model in use is the engine's own (trained or promoted for it: refitted and
    /// adapted) rather than an operator's.
    pub fn model_is_own(&self) -> bool {
        !self.model_loaded
    }

    /// Numbers new events after `last` (an agent over a store continues the ids stored before it).
    pub fn continue_event_ids_after(&mut self, last: u64) {
        self.events.continue_after(last);
    }

    /// The open event, if any.
    pub fn current_event(&self) -> Option<&Event> {
        self.events.current()
    }

    /// The last window's score.
    pub fn last_score(&self) -> Option<&Score> {
        self.last_score.as_ref()
    }

    /// The alarm level the false-event budget sets, in thresholds of the model in use: a window
    /// alarms where its raw score reaches `level × threshold` (see [`crate::budget`]).
    pub fn alarm_level(&self) -> f64 {
        self.alarm.level()
    }

    /// Where the engine is.
    pub fn phase(&self) -> Phase {
        if !self.is_warm() {
            Phase::Filling
        } else if self.model.is_none() {
            Phase::WarmingUp
        } else {
            Phase::Scoring
        }
    }

    /// The drift reference of the windows the installed model was trained on, once per install
    /// (`None` for a model loaded from a file, which carries no windows).
    pub fn take_reference(&mut self) -> Option<DriftReference> {
        self.reference.take()
    }

    /// Pushes one row (time in seconds, strictly increasing; one raw value per signal, `NaN` =
    /// missing) and returns the verdict.
    pub fn push(&mut self, t: f64, raw: &[f64]) -> Result<Step, FeatureError> {
        let Some(window) = self.window.as_mut() else {
            return Err(FeatureError::SchemaMismatch {
                expected: "feature rows (an engine over stored windows)".into(),
                got: format!("a raw row of {} values", raw.len()),
            });
        };
        window.push(t, raw)?;
        window.extract(&mut self.fv)?;
        self.step(t)
    }

    /// Pushes one stored window's features (schema order, `NaN` = missing) at time `t` and returns the
    /// verdict: what [`Engine::push`] does after extracting a window's features.
    pub fn push_features(&mut self, t: f64, features: &[f64]) -> Result<Step, FeatureError> {
        self.fv.copy_from(features)?;
        self.fed_features = true;
        self.step(t)
    }

    /// Whether the features of this tick come from a full window.
    fn is_warm(&self) -> bool {
        self.fed_features || self.window.as_ref().is_some_and(Window::is_warm)
    }

    /// Everything after the features of the tick are in `self.fv`.
    fn step(&mut self, t: f64) -> Result<Step, FeatureError> {
        self.tick += 1;
        let mut step = Step {
            score: None,
            top: Vec::new(),
            in_event: false,
            opened: None,
            retyped: None,
            closed: None,
            installed: false,
            train_error: None,
        };
        self.last_score = None;
        self.collect_training(t, &mut step);
        self.request_level_refit(t);
        if !self.is_warm() {
            return Ok(step);
        }
        let row: Arc<[f64]> = Arc::from(self.fv.values());
        let known = self.model.as_ref().map(|m| &m.detector.extent[..]);
        let reading = self.range.read(&row, known.filter(|k| !k.is_empty()));
        if self.recent.len() >= self.recent_cap() {
            self.recent.pop_front();
        }
        self.recent.push_back(row.clone());
        let Some(model) = self.model.clone() else {
            self.commit(row);
            if self.history.len() >= self.cfg.warm_up_windows && self.requested.is_none() {
                self.request(t, FitReason::ColdStart, "cold start");
            }
            return Ok(step);
        };
        let level = self.alarm.level();
        let mut score = model.detector.score_in_range(
            ArrayView1::from(self.fv.values()),
            reading.as_ref(),
            level,
        );
        let mut model = model;
        // Both sides of a level shift are normal: when the current model alarms but the regime before
        // the shift calls the window normal, the level went back and the regimes trade places. The
        // recent range describes the regime being left: the one before is read without it, and it
        // starts again.
        if score.is_anomaly
            && !self.events.busy()
            && let Some(prev) = &self.previous
            && !Arc::ptr_eq(&prev.model, &model)
        {
            let before =
                prev.model
                    .detector
                    .score_in_range(ArrayView1::from(self.fv.values()), None, level);
            if !before.is_anomaly {
                score = before;
                model = self.swap_regimes(&model);
                self.range.reset();
            }
        }
        // The severity the budget's level is read from: what this window's raw score says in the
        // model's thresholds, whatever level is in force.
        self.alarm
            .observe(score.raw / model.detector.threshold.max(f64::MIN_POSITIVE));
        let names = &model.feature_names;
        let top: Vec<(String, f64)> = score
            .top_features
            .iter()
            .map(|(i, z)| (names.get(*i).cloned().unwrap_or_default(), *z))
            .collect();
        // An open event also settles when the signal that led it is back to normal, whatever else
        // still deviates (the aftermath of a fault, e.g. memory an allocator keeps): a new lead gets
        // its own event, and the aftermath can become normal through the next refit.
        let lead_settled = self
            .lead
            .as_ref()
            .is_some_and(|l| self.deviation(&model, l.feature) < crate::explain::VOTE_MIN_Z);
        let rebaselining = self.rebaselining && self.events.current().is_none();
        let (transition, event) = self.events.push(&WindowVerdict {
            t,
            value: if rebaselining { 0.0 } else { score.value },
            settled: score.settled || lead_settled || rebaselining,
            kind: score.anomaly_type,
            top: &score.top_features,
            names,
        });
        match transition {
            Transition::Opened => {
                self.alarm.opened();
                // The windows just before the onset may hold the fault's start: never train on them.
                self.pending.clear();
                self.range.hold();
                self.lead = score.top_features.first().map(|(i, _)| Lead {
                    feature: *i,
                    trend: model.detector.is_trend(*i),
                    devs: VecDeque::new(),
                    checked: self.tick,
                    gap: first_gap(self.cfg.rebaseline_after, self.cfg.tick_seconds),
                });
                step.opened = event;
            }
            Transition::Retyped => step.retyped = event,
            Transition::Closed => {
                self.lead = None;
                self.range.release();
                step.closed = event;
            }
            Transition::None => {}
        }
        step.in_event = self.events.current().is_some();
        // A model given at start is never refitted (unless configured): no history to keep for it.
        if self.may_refit() && !self.events.busy() {
            self.commit(row);
        }
        // Any model, an operator's included, gives way to a level shift: the model is where scoring
        // starts, not a cage (after one, the engine's own refitted model scores and adapts).
        if step.in_event {
            self.check_level_shift(&model, t, &mut step);
        }
        let due_doubling = self.fitted_on > 0
            && self.history.len() >= 2 * self.fitted_on
            && self.fitted_on < self.cfg.history_windows;
        // A scheduled refit also waits for as many new windows as a model trains on at least: a
        // refit on a history that changed by less gives nearly the same model, at the full cost of
        // a fit (at coarse ticks an hour is a few windows: five-minute rows refitted every 12
        // windows on 2,000 spent two thirds of a replay in training, measured with perf).
        let due_schedule = self.cfg.refit_every > 0
            && self.tick
                >= self.last_fit_tick
                    + (self.cfg.refit_every as u64).max(self.cfg.params().min_windows() as u64);
        if self.may_refit()
            && !self.events.busy()
            && self.drifted(!score.settled)
            && self.requested.is_none()
        {
            let (n, over) = (self.drift.len(), self.drift_over);
            self.drift.clear();
            self.drift_over = 0;
            let keep = 2 * self.cfg.rebaseline_after;
            while self.history.len() > keep {
                self.history.pop_front();
            }
            if self.history.len() >= 50 {
                self.request(
                    t,
                    FitReason::Drift,
                    &format!(
                        "refit: sustained drift ({over} of the last {n} windows above the \
                         calibration p90, {:.0} expected)",
                        n as f64 * DRIFT_EXPECTED
                    ),
                );
            }
        }
        if self.may_refit()
            && self.requested.is_none()
            && !self.events.busy()
            && (due_doubling || due_schedule)
            && self.history.len() >= self.cfg.warm_up_windows
        {
            let (why, reason) = if due_doubling {
                (FitReason::HistoryDoubled, "refit: history doubled")
            } else {
                (FitReason::Scheduled, "scheduled refit")
            };
            self.request(t, why, reason);
        }
        self.last_score = Some(score.clone());
        step.score = Some(score);
        step.top = top;
        Ok(step)
    }

    /// Whether the engine trains its own models: always, except over a model given at start (unless
    /// `refit_loaded`).
    fn may_refit(&self) -> bool {
        !self.model_loaded || self.cfg.refit_loaded
    }

    /// Records one window scored outside events (`over`: above the calibration p90) and says whether
    /// the last `rebaseline_after` such windows are a large, sustained drift.
    fn drifted(&mut self, over: bool) -> bool {
        let n = self.cfg.rebaseline_after;
        if n == 0 {
            return false;
        }
        if self.drift.len() == n && self.drift.pop_front() == Some(true) {
            self.drift_over -= 1;
        }
        self.drift.push_back(over);
        self.drift_over += usize::from(over);
        self.drift.len() == n && self.drift_over as f64 >= DRIFT_RATE * n as f64
    }

    fn recent_cap(&self) -> usize {
        self.cfg
            .rebaseline_after
            .clamp(50, self.cfg.history_windows.max(50))
    }

    /// |deviation| of feature `i` of this window from the model's median, in robust units, unclipped.
    fn deviation(&self, model: &ModelFile, i: usize) -> f64 {
        model.detector.deviation(self.fv.values(), i)
    }

    /// Ends an event whose lead is a level that stopped moving for [`EngineConfig::rebaseline_after`]
    /// windows as a `level_shift`, and refits on the windows since the change alone: a step that stays
    /// is the new normal, the next step is scored against it. A level that keeps climbing (a leak),
    /// or a trend reading still away from normal, stays one event and is checked again a horizon
    /// later.
    fn check_level_shift(&mut self, model: &ModelFile, t: f64, step: &mut Step) {
        let period = self.cfg.rebaseline_after;
        if period == 0 {
            return;
        }
        let now = self.tick;
        let Some(dev) = self.lead.as_ref().map(|l| self.deviation(model, l.feature)) else {
            return;
        };
        let Some(lead) = self.lead.as_mut() else {
            return;
        };
        if lead.devs.len() == period {
            lead.devs.pop_front();
        }
        lead.devs.push_back(dev);
        if now < lead.checked + lead.gap {
            return;
        }
        let devs: Vec<f64> = lead.devs.iter().copied().collect();
        if lead.trend || still_growing(&devs) {
            lead.checked = now;
            lead.gap = (lead.gap * 2).min(period as u64);
            return;
        }
        // The windows since the change: the event's (its lead's deviations), at least the fewest a
        // model trains on.
        let since = lead.devs.len().max(50).min(self.recent.len());
        step.closed = self.events.close(t, EventEnd::LevelShift);
        step.in_event = false;
        self.lead = None;
        // The regime before the change stays normal beside the new one (until the next shift).
        self.previous = self.model.clone().map(|model| Regime {
            model,
            history: std::mem::take(&mut self.history),
        });
        self.history.clear();
        self.pending.clear();
        // The old level's range no longer describes normal either: it starts again on the new one.
        self.range.reset();
        self.history
            .extend(self.recent.iter().skip(self.recent.len() - since).cloned());
        // The training in flight (asked for before the change) is dropped; the refit on the new
        // level is asked for as soon as the trainer is free.
        self.superseded = self.requested.is_some();
        self.level_refit = true;
        self.rebaselining = true;
        self.request_level_refit(t);
    }

    /// The level went back to the regime before the last shift: its model and history are restored,
    /// and the regime being left is kept in their place (so going back and forth opens no events).
    /// A refit in flight (for the regime being left) is dropped. Returns the restored model.
    fn swap_regimes(&mut self, current: &Arc<ModelFile>) -> Arc<ModelFile> {
        let Some(prev) = self.previous.take() else {
            return current.clone();
        };
        self.pending.clear();
        self.previous = Some(Regime {
            model: current.clone(),
            history: std::mem::replace(&mut self.history, prev.history),
        });
        self.model = Some(prev.model.clone());
        self.fitted_on = prev.model.summary.rows.max(1);
        // A refit for the regime being left: dropped, whether it is still training or waiting for
        // its install tick.
        if self.ready.take().is_some() {
            self.requested = None;
            self.superseded = false;
        } else {
            self.superseded = self.requested.is_some();
        }
        self.level_refit = false;
        self.rebaselining = false;
        self.drift.clear();
        self.drift_over = 0;
        prev.model
    }

    /// Asks for the refit after a level shift, once nothing is in flight.
    fn request_level_refit(&mut self, t: f64) {
        if self.level_refit && self.requested.is_none() && self.history.len() >= 50 {
            self.level_refit = false;
            self.request(
                t,
                FitReason::LevelShift,
                "level shift: a level that stopped moving became the new normal",
            );
        }
    }

    /// Moves a clean window towards the history (through the pending queue).
    fn commit(&mut self, row: Arc<[f64]>) {
        self.pending.push_back(row);
        while self.pending.len() > self.cfg.events.open_n {
            if let Some(r) = self.pending.pop_front() {
                if self.history.len() == self.cfg.history_windows {
                    self.history.pop_front();
                }
                self.history.push_back(r);
            }
        }
        if self.model.is_none() {
            // No events can open before the first model: commit at once.
            while let Some(r) = self.pending.pop_front() {
                if self.history.len() == self.cfg.history_windows {
                    self.history.pop_front();
                }
                self.history.push_back(r);
            }
        }
    }

    fn request(&mut self, t: f64, why: FitReason, reason: &str) {
        let job = TrainJob {
            why,
            schema: self.schema.clone(),
            rows: self.history.iter().cloned().collect(),
            params: self.cfg.params(),
            horizons: self.cfg.horizons,
            created: t,
            reason: format!("{reason} ({} windows)", self.history.len()),
            labelled: self.labelled.clone(),
        };
        let n = job.rows.len();
        if self.trainer.start(job) {
            self.requested = Some(self.tick);
            self.fitted_on = n;
        }
        self.last_fit_tick = self.tick;
    }

    /// Picks up a finished model and installs it on its install tick.
    fn collect_training(&mut self, _t: f64, step: &mut Step) {
        let Some(asked) = self.requested else {
            return;
        };
        if self.ready.is_none() {
            match self.trainer.poll() {
                Some(Ok(m)) => self.ready = Some(m),
                Some(Err(e)) => {
                    step.train_error = Some(e.to_string());
                    self.requested = None;
                    self.superseded = false;
                    return;
                }
                None => {}
            }
        }
        if self.superseded && self.ready.is_some() {
            self.ready = None;
            self.superseded = false;
            self.requested = None;
            return;
        }
        if self.tick >= asked + self.cfg.install_delay as u64
            && let Some(trained) = self.ready.take()
        {
            let mut m = trained.model;
            // A model fitted on the windows since a level shift has seen little of each signal's
            // spread: it keeps at least the spread the regime before the shift learned.
            if m.summary.fit_reason == Some(FitReason::LevelShift)
                && let Some(prev) = &self.previous
            {
                m.detector.floor_scales(&prev.model.detector.scaler.scale);
            }
            self.reference = trained.reference;
            self.fitted_on = m.summary.rows;
            self.model = Some(Arc::new(m));
            self.model_loaded = false;
            self.requested = None;
            self.rebaselining = self.level_refit;
            self.drift.clear();
            self.drift_over = 0;
            step.installed = true;
        }
    }
}
