//! In-process retraining from the store: on a schedule and when new labels arrive, the store thread
//! reads the newest stored windows and the labels over them, and a low-priority thread
//! (`vigil-retrain`) fits a candidate, gates it against the model in use
//! ([`vigil_models::retrain::retrain`]) and, when it is better, hands it to the agent thread, which
//! installs it between two ticks (an atomic swap: a tick scores with the old model or the new one).
//! Every outcome is counted (`vigil_retrain_total{outcome}`), logged with its figures and kept in the
//! model history.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use vigil_features::FeatureSchema;
use vigil_models::retrain::{RetrainInput, RetrainOutcome, retrain};
use vigil_models::{EngineConfig, LabelledWindow, ModelFile};
use vigil_store::Store;

/// Default time between scheduled retrains.
pub(crate) const DEFAULT_RETRAIN_INTERVAL: Duration = Duration::from_secs(3600);
/// Stored windows a retrain reads at most, however few features a window has.
pub(crate) const MAX_RETRAIN_WINDOWS: usize = 20_000;
/// Bytes of window features a retrain reads at most: the newest `RETRAIN_WINDOW_BYTES / (features ×
/// 8)` windows (at most [`MAX_RETRAIN_WINDOWS`]). A fit holds about two more copies of its windows
/// while it runs (the scaler's and the drift reference's sorted columns), so this bounds what a
/// retrain adds to the host's resident memory, for the seconds it takes, to roughly three times it.
/// Measured before the bound (`vigil bench soak`, 10 ms ticks, ~400 features): 20,000 windows took
/// the host from 22 MB to 105–123 MB during each retrain.
pub(crate) const RETRAIN_WINDOW_BYTES: usize = 8 << 20;

/// The windows a retrain reads for windows of `features` features: [`RETRAIN_WINDOW_BYTES`] of them,
/// at most [`MAX_RETRAIN_WINDOWS`], and never fewer than the fewest a retrain compares models on.
pub(crate) fn retrain_windows(features: usize) -> usize {
    (RETRAIN_WINDOW_BYTES / (features.max(1) * 8)).clamp(
        2 * vigil_models::retrain::MIN_RETRAIN_WINDOWS,
        MAX_RETRAIN_WINDOWS,
    )
}
/// New labels wait this long before they trigger a retrain (a burst of verdicts makes one retrain).
const LABEL_SETTLE: Duration = Duration::from_secs(30);

/// A promoted model on its way to the agent thread.
pub(crate) struct Promoted {
    pub(crate) model: ModelFile,
    pub(crate) labelled: Vec<LabelledWindow>,
    /// The agent's own (a retrain: refitted and adapted) or an operator's (a model file: kept as is).
    pub(crate) own: bool,
}

/// What the agent thread is asked to do with its model between two ticks; the reply says what
/// happened.
pub(crate) enum Control {
    /// Install a model (a promoted retrain: no reply; a reload: the reply).
    Install(
        Box<Promoted>,
        Option<tokio::sync::oneshot::Sender<Result<String, String>>>,
    ),
    /// Go back to the model before the current one.
    Rollback(tokio::sync::oneshot::Sender<Result<String, String>>),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct OutcomeLabel {
    outcome: &'static str,
}

/// The last retrain, for `GET /api/v1/status`.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct LastRetrain {
    pub(crate) at: String,
    pub(crate) outcome: &'static str,
    pub(crate) reason: String,
    pub(crate) why: String,
}

/// A retrain in flight: its thread, its result, why it started.
type Running = (
    std::thread::JoinHandle<()>,
    Receiver<Result<RetrainOutcome, String>>,
    String,
);

/// When and how the store thread retrains.
pub(crate) struct Retrainer {
    every: Option<Duration>,
    engine: EngineConfig,
    schema: FeatureSchema,
    model: watch::Receiver<Option<Arc<ModelFile>>>,
    install: SyncSender<Control>,
    running: Option<Running>,
    last: Instant,
    labels_at: Option<Instant>,
    /// Asked for by `POST /api/v1/model/retrain`.
    asked: bool,
    /// The model last seen in use (to notice the engine's own drift refits).
    seen: Option<Arc<ModelFile>>,
    /// When the engine last refitted for a sustained drift (a retrain follows, like after labels).
    drift_at: Option<Instant>,
    /// How long new labels or a drift refit wait before the retrain ([`LABEL_SETTLE`]).
    settle: Duration,
    outcomes: Family<OutcomeLabel, Counter>,
    pub(crate) last_outcome: watch::Sender<Option<LastRetrain>>,
}

pub(crate) fn metrics(registry: &mut Registry) -> Family<OutcomeLabel, Counter> {
    let f = Family::<OutcomeLabel, Counter>::default();
    crate::metrics::RETRAINS.register(registry, f.clone());
    for outcome in ["promoted", "rejected", "failed"] {
        let _ = f.get_or_create(&OutcomeLabel { outcome });
    }
    f
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Retrainer {
    pub(crate) fn new(
        every: Option<Duration>,
        engine: EngineConfig,
        schema: FeatureSchema,
        model: watch::Receiver<Option<Arc<ModelFile>>>,
        install: SyncSender<Control>,
        outcomes: Family<OutcomeLabel, Counter>,
        last_outcome: watch::Sender<Option<LastRetrain>>,
    ) -> Self {
        Self {
            every,
            engine,
            schema,
            model,
            install,
            running: None,
            last: Instant::now(),
            labels_at: None,
            asked: false,
            seen: None,
            drift_at: None,
            settle: LABEL_SETTLE,
            outcomes,
            last_outcome,
        }
    }

    /// New labels were stored: retrain soon.
    pub(crate) fn labels_arrived(&mut self) {
        self.labels_at.get_or_insert_with(Instant::now);
    }

    /// Retrain at the next poll (a person asked); says whether one is already running.
    pub(crate) fn request_now(&mut self) -> &'static str {
        if self.running.is_some() {
            "a retrain is running; its outcome will be in GET /api/v1/status"
        } else {
            self.asked = true;
            "retrain started; its outcome will be in GET /api/v1/status and vigil_retrain_total"
        }
    }

    /// Called by the store thread between commands: collects a finished retrain, or starts one when
    /// it is due.
    pub(crate) fn poll(&mut self, store: &mut Store) {
        if let Some((_, rx, _)) = &self.running {
            let result = match rx.try_recv() {
                Ok(r) => r,
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => Err("the retrain thread stopped".into()),
            };
            if let Some((h, _, reason)) = self.running.take() {
                let _ = h.join();
                self.finish(store, result, &reason);
            }
            return;
        }
        // The engine refitted for a sustained drift: normal moved, so the labelled model is retrained
        // on the new windows too (after the same settling delay as labels).
        let now_model = self.model.borrow().clone();
        let changed = match (&self.seen, &now_model) {
            (Some(a), Some(b)) => !Arc::ptr_eq(a, b),
            (None, Some(_)) => true,
            _ => false,
        };
        if changed {
            if now_model
                .as_ref()
                .is_some_and(|m| m.summary.fit_reason == Some(vigil_models::FitReason::Drift))
            {
                self.drift_at.get_or_insert_with(Instant::now);
            }
            self.seen = now_model;
        }
        let drift_due = self.drift_at.is_some_and(|t| t.elapsed() >= self.settle);
        let labels_due = self.labels_at.is_some_and(|t| t.elapsed() >= self.settle);
        let schedule_due = self.every.is_some_and(|e| self.last.elapsed() >= e);
        if !(labels_due || drift_due || schedule_due || self.asked) {
            return;
        }
        let reason = if self.asked {
            "asked"
        } else if labels_due {
            "new labels"
        } else if drift_due {
            "drift"
        } else {
            "scheduled"
        };
        self.last = Instant::now();
        self.labels_at = None;
        self.drift_at = None;
        self.asked = false;
        let Some(current) = self.model.borrow().clone() else {
            // Nothing to compare with before the cold start.
            self.finish(
                store,
                Err("no model in use yet (the cold start has not trained one)".into()),
                reason,
            );
            return;
        };
        let input = match self.input(store) {
            Ok(i) => i,
            Err(e) => {
                self.finish(store, Err(e), reason);
                return;
            }
        };
        match crate::threads::spawn_low_priority("vigil-retrain", move || {
            retrain(&input, &current).map_err(|e| e.to_string())
        }) {
            Ok((h, rx)) => self.running = Some((h, rx, reason.to_owned())),
            Err(e) => self.finish(
                store,
                Err(format!("cannot start the retrain thread: {e}")),
                reason,
            ),
        }
    }

    fn input(&self, store: &Store) -> Result<RetrainInput, String> {
        let now = now_unix();
        let Some((windows, labels)) = store
            .retrain_input(
                &self.schema.hash_hex(),
                retrain_windows(self.schema.len()),
                now,
            )
            .map_err(|e| e.to_string())?
        else {
            return Err("no stored windows yet".into());
        };
        Ok(RetrainInput {
            schema: self.schema.clone(),
            windows,
            labels,
            params: self.engine.params(),
            events: self.engine.events,
            horizons: self.engine.horizons,
            tick_seconds: self.engine.tick_seconds,
            false_events_per_day: self.engine.false_events_per_day,
            holdout: 0.3,
            created: now,
        })
    }

    fn finish(&mut self, store: &mut Store, result: Result<RetrainOutcome, String>, reason: &str) {
        let (outcome, why) = match result {
            Ok(o) => {
                let p = &o.promotion;
                let figures = serde_json::json!({
                    "windows": o.used,
                    "labelled_windows": o.labelled_windows,
                    "left_out_event_windows": o.left_out,
                    "current": {"caught": p.current.caught, "false_events": p.current.false_alarms},
                    "candidate": {"caught": p.candidate.caught, "false_events": p.candidate.false_alarms},
                    "labelled_anomalies": p.candidate.events,
                    "margin": p.margin,
                });
                let outcome = if p.promote { "promoted" } else { "rejected" };
                tracing::info!(
                    outcome,
                    reason,
                    windows = o.used,
                    labelled = o.labelled_windows,
                    caught = p.candidate.caught,
                    caught_before = p.current.caught,
                    false_events = p.candidate.false_alarms,
                    false_events_before = p.current.false_alarms,
                    "retrain: {}",
                    p.reason
                );
                if let Some(model) = o.model {
                    let json = model.to_json().unwrap_or_default();
                    if let Err(e) = store.add_model(
                        model.created_unix_seconds,
                        outcome,
                        reason,
                        &figures,
                        &json,
                    ) {
                        tracing::warn!("store: cannot record the retrained model: {e}");
                    }
                    if self
                        .install
                        .try_send(Control::Install(
                            Box::new(Promoted {
                                model,
                                labelled: o.labelled,
                                own: true,
                            }),
                            None,
                        ))
                        .is_err()
                    {
                        tracing::warn!(
                            "retrain: the agent has a promoted model waiting already; this one is dropped"
                        );
                    }
                } else if let Err(e) = store.add_model(now_unix(), outcome, reason, &figures, "") {
                    tracing::warn!("store: cannot record the retrain outcome: {e}");
                }
                (outcome, p.reason.clone())
            }
            Err(e) => {
                tracing::warn!(reason, "retrain failed: {e}");
                ("failed", e)
            }
        };
        self.outcomes.get_or_create(&OutcomeLabel { outcome }).inc();
        self.last_outcome.send_replace(Some(LastRetrain {
            at: vigil_features::time::format_rfc3339(now_unix()),
            outcome,
            reason: reason.to_owned(),
            why,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_features::{Horizons, SignalSet, SignalSpec, Unit, Window};

    fn model_with_note(
        schema: &FeatureSchema,
        why: vigil_models::FitReason,
        note: &str,
    ) -> Arc<ModelFile> {
        let rows: Vec<Arc<[f64]>> = (0..120)
            .map(|i| Arc::from(vec![f64::from(i % 7); schema.len()]))
            .collect();
        let job = vigil_models::TrainJob {
            schema: schema.clone(),
            rows,
            params: vigil_models::KMeansParams::default(),
            horizons: Horizons::default(),
            created: 0.0,
            why,
            reason: note.into(),
            labelled: Default::default(),
        };
        Arc::new(job.run().unwrap())
    }

    #[test]
    fn a_retrain_reads_at_most_its_bytes_of_windows() {
        // ~400 features (the agent's own schema): 8 MiB is 2,621 windows, not 20,000 (64 MB).
        assert_eq!(retrain_windows(400), 2_621);
        assert!(retrain_windows(400) * 400 * 8 <= RETRAIN_WINDOW_BYTES);
        // Few features: the window count is the bound.
        assert_eq!(retrain_windows(10), MAX_RETRAIN_WINDOWS);
        // Very many: never fewer than a retrain needs to compare two models.
        assert_eq!(
            retrain_windows(1_000_000),
            2 * vigil_models::retrain::MIN_RETRAIN_WINDOWS
        );
        assert_eq!(retrain_windows(0), MAX_RETRAIN_WINDOWS);
    }

    #[test]
    fn an_engine_drift_refit_triggers_a_retrain_and_other_refits_do_not() {
        let signals = SignalSet::new(vec![SignalSpec::gauge("queue", Unit::Count)]).unwrap();
        let schema = Window::new(&signals, Horizons::default()).schema().clone();
        let dir = std::env::temp_dir().join(format!("vigil-retrain-{}", std::process::id()));
        let mut store = Store::open(&dir).unwrap();
        let (model_tx, model_rx) = watch::channel(None);
        let (control, _controls) = std::sync::mpsc::sync_channel(1);
        let (last_tx, last_rx) = watch::channel(None);
        let mut registry = Registry::default();
        let mut r = Retrainer::new(
            None,
            EngineConfig::default(),
            schema.clone(),
            model_rx,
            control,
            metrics(&mut registry),
            last_tx,
        );
        r.settle = Duration::ZERO;
        // A scheduled refit: nothing happens.
        model_tx.send_replace(Some(model_with_note(
            &schema,
            vigil_models::FitReason::Scheduled,
            // Words do not count: only the recorded reason does.
            "scheduled refit (not a sustained drift)",
        )));
        r.poll(&mut store);
        assert!(last_rx.borrow().is_none());
        // A drift refit: a retrain runs (here it fails, the store being empty) and says why.
        model_tx.send_replace(Some(model_with_note(
            &schema,
            vigil_models::FitReason::Drift,
            "refit: sustained drift (200 of the last 360 windows above the calibration p90)",
        )));
        r.poll(&mut store);
        r.poll(&mut store);
        let last = last_rx.borrow().clone().unwrap();
        assert_eq!((last.reason.as_str(), last.outcome), ("drift", "failed"));
        assert!(last.why.contains("no stored windows"), "{}", last.why);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
