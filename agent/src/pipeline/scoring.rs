//! The engine stage of a tick: the shared [`vigil_models::Engine`] (window, cold start, scoring,
//! refits, events) wrapped with the agent's metrics and its training thread.

use crate::threads::spawn_low_priority;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::sync::broadcast;
use vigil_features::{FeatureError, FeatureSchema, FeatureVector, SignalSet};
use vigil_models::{
    AnomalyKind, Engine, EngineConfig, Event, ModelError, ModelFile, Score, Step, TrainJob,
    Trained, Trainer,
};

use crate::metrics::{self as m, FGauge};

/// How long dropping the stage (agent shutdown) waits for a running `vigil-train` thread.
const TRAIN_JOIN_GRACE: Duration = Duration::from_secs(3);
/// Event notices buffered for slow subscribers (the oldest are dropped beyond this).
pub(crate) const EVENT_CHANNEL: usize = 64;

/// An event opening or closing, as [`crate::AgentHandle::subscribe_events`] delivers it.
#[derive(Debug, Clone, PartialEq)]
pub enum EventNotice {
    /// An event opened (its evidence, type and top features).
    Opened(Event),
    /// An open event reached a new peak of another type: its type changed (the opening windows may
    /// show only the signals that move fastest). `opened_as` keeps the first type.
    Retyped(Event),
    /// An event closed (with its end, peak and why it ended).
    Closed(Event),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ModelLabels {
    version: String,
    schema_hash: String,
    kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TypeLabel {
    anomaly_type: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EventLabels {
    event_id: String,
    anomaly_type: &'static str,
    top_feature: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// What a training thread sends back.
type TrainResult = Result<Trained, ModelError>;

/// Trains on one named thread (`vigil-train`) per job, inside a private one-thread rayon pool (linfa
/// fits through rayon; its global pool would start one thread per core that lives as long as the
/// host and competes with its workers). The thread ends with the job; it is joined when its result is
/// collected and, at shutdown, within [`TRAIN_JOIN_GRACE`].
#[derive(Default)]
pub(crate) struct ThreadTrainer {
    running: Option<(std::thread::JoinHandle<()>, Receiver<TrainResult>)>,
    /// A result [`Trainer::wait`] received, handed out by the next poll.
    waited: Option<TrainResult>,
}

impl Trainer for ThreadTrainer {
    fn start(&mut self, job: TrainJob) -> bool {
        if self.running.is_some() {
            return false;
        }
        let spawned = spawn_low_priority("vigil-train", move || job.train());
        match spawned {
            Ok(running) => {
                self.running = Some(running);
                true
            }
            Err(e) => {
                tracing::warn!("cannot start the training thread, retrying at the next refit: {e}");
                false
            }
        }
    }

    fn wait(&mut self, timeout: Duration) -> bool {
        let Some((_, rx)) = self.running.as_ref() else {
            return true;
        };
        if self.waited.is_some() {
            return true;
        }
        match rx.recv_timeout(timeout) {
            Ok(r) => self.waited = Some(r),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => return false,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                self.waited = Some(Err(ModelError::TrainerStopped));
            }
        }
        true
    }

    fn poll(&mut self) -> Option<Result<Trained, ModelError>> {
        let (_, rx) = self.running.as_ref()?;
        let result = match self.waited.take() {
            Some(r) => r,
            None => match rx.try_recv() {
                Ok(r) => r,
                Err(TryRecvError::Empty) => return None,
                Err(TryRecvError::Disconnected) => Err(ModelError::TrainerStopped),
            },
        };
        if let Some((h, _)) = self.running.take() {
            // It has sent its result (or died): joining takes no time.
            let _ = h.join();
        }
        Some(result)
    }
}

impl Drop for ThreadTrainer {
    /// Shutdown joins the training thread, waiting at most [`TRAIN_JOIN_GRACE`]; a fit that takes
    /// longer is left to finish and its result is discarded.
    fn drop(&mut self) {
        let Some((t, _)) = self.running.take() else {
            return;
        };
        let deadline = std::time::Instant::now() + TRAIN_JOIN_GRACE;
        while !t.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if t.is_finished() {
            let _ = t.join();
        } else {
            tracing::warn!(
                "the vigil-train thread did not finish within {TRAIN_JOIN_GRACE:?} of shutdown; detaching it"
            );
        }
    }
}

/// Owns the engine and the score and event metrics.
pub(crate) struct ScoringStage {
    engine: Engine,
    score: FGauge,
    raw: FGauge,
    alarm_level: FGauge,
    anomaly: FGauge,
    trained_at: FGauge,
    event_open: FGauge,
    events_total: Family<TypeLabel, Counter>,
    /// 1 for the open event (one series at most: it is cleared when the event closes).
    event_info: Family<EventLabels, FGauge>,
    trainings: Family<ResultLabel, Counter>,
    info: Family<ModelLabels, FGauge>,
    notices: broadcast::Sender<EventNotice>,
    /// The model before the last install (and whether it was the engine's own), for one rollback.
    previous: Option<(Arc<ModelFile>, bool)>,
}

impl ScoringStage {
    /// `model`: a loaded model (schema already checked) or `None` for a cold start.
    pub(crate) fn new(
        signals: &SignalSet,
        config: EngineConfig,
        model: Option<ModelFile>,
        registry: &mut Registry,
    ) -> Result<Self, crate::Error> {
        let engine = Engine::new(signals, config, model, Box::new(ThreadTrainer::default()))
            .map_err(|e| crate::Error::Config {
                setting: "engine",
                message: e.to_string(),
            })?;
        let (notices, _) = broadcast::channel(EVENT_CHANNEL);
        let s = Self {
            engine,
            score: FGauge::default(),
            raw: FGauge::default(),
            alarm_level: FGauge::default(),
            anomaly: FGauge::default(),
            trained_at: FGauge::default(),
            event_open: FGauge::default(),
            events_total: Family::default(),
            event_info: Family::default(),
            trainings: Family::default(),
            info: Family::default(),
            notices,
            previous: None,
        };
        s.score.set(f64::NAN);
        s.raw.set(f64::NAN);
        s.anomaly.set(f64::NAN);
        s.trained_at.set(f64::NAN);
        for k in AnomalyKind::ALL {
            drop(s.events_total.get_or_create(&TypeLabel {
                anomaly_type: k.as_str(),
            }));
        }
        for r in ["ok", "error"] {
            drop(s.trainings.get_or_create(&ResultLabel { result: r }));
        }
        let threshold = FGauge::default();
        threshold.set(0.5);
        m::ANOMALY_SCORE.register(registry, s.score.clone());
        m::ANOMALY_RAW_SCORE.register(registry, s.raw.clone());
        m::ANOMALY.register(registry, s.anomaly.clone());
        m::ANOMALY_THRESHOLD.register(registry, threshold);
        s.alarm_level.set(s.engine.alarm_level());
        m::ALARM_LEVEL.register(registry, s.alarm_level.clone());
        m::ANOMALY_EVENT_OPEN.register(registry, s.event_open.clone());
        m::ANOMALY_EVENTS.register(registry, s.events_total.clone());
        m::ANOMALY_EVENT_INFO.register(registry, s.event_info.clone());
        m::MODEL_INFO.register(registry, s.info.clone());
        m::MODEL_TRAINED.register(registry, s.trained_at.clone());
        m::MODEL_TRAININGS.register(registry, s.trainings.clone());
        s.event_open.set(0.0);
        if let Some(model) = s.engine.model().cloned() {
            s.show_model(&model);
        }
        Ok(s)
    }

    fn show_model(&self, model: &ModelFile) {
        self.info.clear();
        self.info
            .get_or_create(&ModelLabels {
                version: model.format_version.to_string(),
                schema_hash: model.schema_hash.clone(),
                kind: model.kind.clone(),
            })
            .set(1.0);
        self.trained_at.set(model.created_unix_seconds);
    }

    pub(crate) fn schema(&self) -> &FeatureSchema {
        self.engine.schema()
    }

    pub(crate) fn features(&self) -> &FeatureVector {
        self.engine.features()
    }

    /// The score of the last tick (`None` while warming up or training).
    pub(crate) fn last(&self) -> Option<&Score> {
        self.engine.last_score()
    }

    /// The open event, if any.
    /// Installs a promoted or reloaded model, or rolls back to the one before (see
    /// [`crate::store::retrain::Control`]); the previous model is kept for one rollback.
    pub(crate) fn control(
        &mut self,
        c: crate::store::retrain::Control,
    ) -> Option<(Arc<ModelFile>, Option<&'static str>)> {
        use crate::store::retrain::Control;
        let before = self
            .engine
            .model()
            .cloned()
            .map(|m| (m, self.engine.model_is_own()));
        let (result, reply, outcome) = match c {
            Control::Install(p, reply) => {
                let what = if reply.is_some() {
                    "reloaded"
                } else {
                    "promoted"
                };
                let p = *p;
                (
                    self.engine
                        .install(p.model, p.labelled, p.own)
                        .map_err(|e| e.to_string()),
                    reply,
                    if what == "reloaded" {
                        Some("reloaded")
                    } else {
                        None
                    },
                )
            }
            Control::Rollback(reply) => match self.previous.take() {
                Some((prev, own)) => (
                    self.engine
                        .install((*prev).clone(), Vec::new(), own)
                        .map_err(|e| e.to_string()),
                    Some(reply),
                    Some("rollback"),
                ),
                None => {
                    let _ = reply.send(Err("no previous model to roll back to".into()));
                    return None;
                }
            },
        };
        match result {
            Ok(()) => {
                self.previous = before;
                let model = self.engine.model().cloned()?;
                self.show_model(&model);
                tracing::info!(
                    kind = %model.kind,
                    windows = model.summary.rows,
                    notes = ?model.summary.notes,
                    "anomaly model installed ({})",
                    outcome.unwrap_or("promoted by a retrain")
                );
                if let Some(r) = reply {
                    let _ = r.send(Ok(format!(
                        "{} model {} trained on {} windows installed",
                        model.kind,
                        vigil_features::time::format_rfc3339(model.created_unix_seconds),
                        model.summary.rows
                    )));
                }
                Some((model, outcome))
            }
            Err(e) => {
                tracing::warn!("model not installed: {e}");
                if let Some(r) = reply {
                    let _ = r.send(Err(e));
                }
                None
            }
        }
    }

    pub(crate) fn is_warm(&self) -> bool {
        self.engine.phase() != vigil_models::Phase::Filling
    }

    pub(crate) fn model(&self) -> Option<&Arc<vigil_models::ModelFile>> {
        self.engine.model()
    }

    pub(crate) fn wait_for_training(&mut self, timeout: Duration) -> bool {
        self.engine.wait_for_training(timeout)
    }

    pub(crate) fn continue_event_ids_after(&mut self, last: u64) {
        self.engine.continue_event_ids_after(last);
    }

    pub(crate) fn current_event(&self) -> Option<&Event> {
        self.engine.current_event()
    }

    pub(crate) fn notices(&self) -> broadcast::Sender<EventNotice> {
        self.notices.clone()
    }

    /// Pushes this tick's raw values (at `t`, seconds) through the engine and updates the metrics.
    /// Returns the drift reference of a model installed on this tick (its training windows).
    pub(crate) fn update(
        &mut self,
        t: f64,
        values: &[f64],
    ) -> Result<Option<vigil_features::drift::DriftReference>, FeatureError> {
        let step = self.engine.push(t, values)?;
        self.publish(&step);
        Ok(if step.installed {
            self.engine.take_reference()
        } else {
            None
        })
    }

    fn publish(&self, step: &Step) {
        if step.installed
            && let Some(model) = self.engine.model()
        {
            self.trainings
                .get_or_create(&ResultLabel { result: "ok" })
                .inc();
            tracing::info!(
                kind = %model.kind,
                windows = model.summary.rows,
                notes = ?model.summary.notes,
                "anomaly model installed"
            );
            self.show_model(model);
        }
        if let Some(e) = &step.train_error {
            self.trainings
                .get_or_create(&ResultLabel { result: "error" })
                .inc();
            tracing::warn!("training failed, retrying at the next refit: {e}");
        }
        match &step.score {
            Some(s) => {
                self.score.set(s.value);
                self.raw.set(s.raw);
                self.anomaly.set(if step.in_event { 1.0 } else { 0.0 });
            }
            None => {
                self.score.set(f64::NAN);
                self.raw.set(f64::NAN);
                self.anomaly.set(f64::NAN);
            }
        }
        self.event_open.set(if step.in_event { 1.0 } else { 0.0 });
        self.alarm_level.set(self.engine.alarm_level());
        if let Some(ev) = &step.closed {
            tracing::info!(
                id = ev.id,
                anomaly_type = ev.anomaly_type.as_str(),
                peak = ev.peak,
                ended = ?ev.ended,
                "anomaly event closed"
            );
            let _ = self.notices.send(EventNotice::Closed(ev.clone()));
            self.event_info.clear();
        }
        if let Some(ev) = &step.opened {
            // The labels an alert carries: fixed for the event's life (its opening type and lead), so
            // a retype does not resolve one alert and fire another.
            self.event_info.clear();
            self.event_info
                .get_or_create(&EventLabels {
                    event_id: ev.id.to_string(),
                    anomaly_type: ev.anomaly_type.as_str(),
                    top_feature: ev
                        .top_features
                        .first()
                        .map(|f| f.0.clone())
                        .unwrap_or_default(),
                })
                .set(1.0);
            self.events_total
                .get_or_create(&TypeLabel {
                    anomaly_type: ev.anomaly_type.as_str(),
                })
                .inc();
            tracing::warn!(
                id = ev.id,
                anomaly_type = ev.anomaly_type.as_str(),
                top = ?ev.top_features,
                "anomaly event opened"
            );
            let _ = self.notices.send(EventNotice::Opened(ev.clone()));
        }
        if let Some(ev) = &step.retyped {
            tracing::warn!(
                id = ev.id,
                anomaly_type = ev.anomaly_type.as_str(),
                opened_as = ev.opened_as.as_str(),
                top = ?ev.top_features,
                "anomaly event retyped"
            );
            let _ = self.notices.send(EventNotice::Retyped(ev.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use vigil_features::{FeatureSchema, Horizons, SignalSet, SignalSpec, Unit};
    use vigil_models::KMeansParams;

    fn threads_named(name: &str) -> usize {
        std::fs::read_dir("/proc/self/task")
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|t| {
                        std::fs::read_to_string(t.path().join("comm"))
                            .is_ok_and(|c| c.trim() == name)
                    })
                    .count()
            })
            .unwrap_or(0)
    }

    #[test]
    fn training_runs_on_one_thread_that_ends_with_it() {
        let set = SignalSet::new(vec![
            SignalSpec::gauge("a", Unit::Count),
            SignalSpec::gauge("b", Unit::Seconds),
        ])
        .unwrap();
        let horizons = Horizons::new(2, 5).unwrap();
        let schema = FeatureSchema::new(&set, horizons);
        let rows: Vec<Arc<[f64]>> = (0..80u32)
            .map(|i| {
                (0..schema.len())
                    .map(|j| f64::from((i * 7 + j as u32) % 13))
                    .collect::<Vec<f64>>()
                    .into()
            })
            .collect();
        let job = TrainJob {
            schema,
            rows,
            params: KMeansParams::default(),
            horizons,
            created: 0.0,
            why: vigil_models::FitReason::Offline,
            reason: "test".into(),
            labelled: Default::default(),
        };
        let mut trainer = ThreadTrainer::default();
        assert!(trainer.start(job.clone()));
        // One training at a time: a second start waits for the first result to be collected.
        assert!(!trainer.start(job));
        let result = loop {
            if let Some(r) = trainer.poll() {
                break r;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let trained = result.unwrap();
        assert!(
            trained.reference.is_some(),
            "the drift reference comes along"
        );
        assert_eq!(threads_named("vigil-train"), 0, "the thread ended");
        assert_eq!(threads_named("vigil-train-pool"), 0, "its pool ended");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_training_thread_runs_at_the_lowest_priority() {
        let nice = std::thread::spawn(|| {
            crate::threads::lowest_priority();
            // Field 19 of /proc/thread-self/stat is the nice value (after the `(comm)` field).
            let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
            let after = stat.rsplit_once(')').unwrap().1;
            after
                .split_whitespace()
                .nth(16)
                .unwrap()
                .parse::<i32>()
                .unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(nice, 19);
    }
}
