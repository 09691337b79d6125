//! Scoring every tick: a loaded model, or a cold start that collects a warm-up of windows and trains the
//! unsupervised detector on its own thread.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, TryRecvError, sync_channel};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ndarray::ArrayView1;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use vigil_features::{FeatureSchema, FeatureVector};
use vigil_models::{Detector, KMeansDetector, KMeansParams, ModelFile, Score, TrainingSummary};

use crate::metrics::{self as m, FGauge};

/// Windows kept for cold-start training at most (memory bound: rows × features × 8 bytes).
const MAX_WARMUP_ROWS: usize = 20_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ModelLabels {
    version: String,
    schema_hash: String,
    kind: String,
}

enum Next {
    Train(Vec<Vec<f64>>),
    Install(Box<ModelFile>),
    Fail(String),
    Restart,
}

enum State {
    /// Collecting warm-up windows.
    WarmingUp { rows: Vec<Vec<f64>>, needed: usize },
    /// Training on the `vigil-train` thread.
    Training(Receiver<Result<ModelFile, String>>),
    /// Scoring with a model.
    Ready(Arc<ModelFile>),
    /// Training failed; retried after another warm-up.
    Failed,
}

/// Owns the model (or the cold start) and the score metrics.
pub(crate) struct ScoringStage {
    state: State,
    schema: FeatureSchema,
    needed: usize,
    tick: Duration,
    score: FGauge,
    anomaly: FGauge,
    threshold: FGauge,
    trained_at: FGauge,
    info: Family<ModelLabels, FGauge>,
    last: Option<Score>,
}

impl ScoringStage {
    /// `model`: a loaded model (schema already checked) or `None` for a cold start of `warm_up`.
    pub(crate) fn new(
        schema: FeatureSchema,
        model: Option<ModelFile>,
        warm_up: Duration,
        tick: Duration,
        registry: &mut Registry,
    ) -> Self {
        let needed = ((warm_up.as_secs_f64() / tick.as_secs_f64()).ceil() as usize)
            .clamp(50, MAX_WARMUP_ROWS);
        let s = Self {
            state: State::WarmingUp {
                rows: Vec::new(),
                needed,
            },
            schema,
            needed,
            tick,
            score: FGauge::default(),
            anomaly: FGauge::default(),
            threshold: FGauge::default(),
            trained_at: FGauge::default(),
            info: Family::default(),
            last: None,
        };
        s.score.set(f64::NAN);
        s.anomaly.set(f64::NAN);
        s.threshold.set(0.5);
        s.trained_at.set(f64::NAN);
        m::ANOMALY_SCORE.register(registry, s.score.clone());
        m::ANOMALY.register(registry, s.anomaly.clone());
        m::ANOMALY_THRESHOLD.register(registry, s.threshold.clone());
        m::MODEL_INFO.register(registry, s.info.clone());
        m::MODEL_TRAINED.register(registry, s.trained_at.clone());
        let mut s = s;
        if let Some(model) = model {
            s.install(model);
        }
        s
    }

    fn install(&mut self, model: ModelFile) {
        self.info.clear();
        self.info
            .get_or_create(&ModelLabels {
                version: model.format_version.to_string(),
                schema_hash: model.schema_hash.clone(),
                kind: model.kind.clone(),
            })
            .set(1.0);
        self.trained_at.set(model.created_unix_seconds);
        tracing::info!(
            kind = %model.kind,
            windows = model.summary.rows,
            "anomaly model ready"
        );
        self.state = State::Ready(Arc::new(model));
    }

    /// The score of the last tick (`None` while warming up or training).
    pub(crate) fn last(&self) -> Option<&Score> {
        self.last.as_ref()
    }

    /// Scores this tick's features, or feeds the warm-up; starts and collects training.
    pub(crate) fn update(&mut self, features: &FeatureVector, window_warm: bool) {
        self.last = None;
        let next = match &mut self.state {
            State::Ready(model) => {
                let s = model.detector.score(ArrayView1::from(features.values()));
                self.score.set(s.value);
                self.anomaly.set(if s.is_anomaly { 1.0 } else { 0.0 });
                self.last = Some(s);
                None
            }
            State::WarmingUp { rows, needed } => {
                if window_warm {
                    rows.push(features.values().to_vec());
                }
                (rows.len() >= *needed).then(|| Next::Train(std::mem::take(rows)))
            }
            State::Training(rx) => match rx.try_recv() {
                Ok(Ok(model)) => Some(Next::Install(Box::new(model))),
                Ok(Err(e)) => Some(Next::Fail(e)),
                Err(TryRecvError::Disconnected) => {
                    Some(Next::Fail("the training thread stopped".into()))
                }
                Err(TryRecvError::Empty) => None,
            },
            State::Failed => Some(Next::Restart),
        };
        match next {
            None => {}
            Some(Next::Train(rows)) => self.state = self.spawn_training(rows),
            Some(Next::Install(model)) => self.install(*model),
            Some(Next::Fail(e)) => {
                tracing::warn!("cold-start training failed, collecting a new warm-up: {e}");
                self.state = State::Failed;
            }
            Some(Next::Restart) => {
                self.state = State::WarmingUp {
                    rows: Vec::new(),
                    needed: self.needed,
                };
            }
        }
    }

    fn spawn_training(&self, rows: Vec<Vec<f64>>) -> State {
        let (tx, rx) = sync_channel(1);
        let schema = self.schema.clone();
        let tick = self.tick.as_secs_f64();
        let spawned = std::thread::Builder::new()
            .name("vigil-train".into())
            .spawn(move || {
                let result = KMeansDetector::fit(
                    schema.names(),
                    rows.iter().map(|r| &r[..]),
                    KMeansParams::default(),
                )
                .map(|d| {
                    let summary = TrainingSummary {
                        rows: rows.len(),
                        tick_seconds: Some(tick),
                        ..TrainingSummary::default()
                    };
                    let mut file = ModelFile::new(&schema, d, summary);
                    file.created_unix_seconds = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0.0, |d| d.as_secs_f64());
                    file
                })
                .map_err(|e| e.to_string());
                let _ = tx.send(result);
            });
        match spawned {
            Ok(_) => State::Training(rx),
            Err(e) => {
                tracing::warn!(
                    "cannot start the training thread, retrying after another warm-up: {e}"
                );
                State::Failed
            }
        }
    }
}
