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
/// How long dropping the stage (agent shutdown) waits for a running `vigil-train` thread.
const TRAIN_JOIN_GRACE: Duration = Duration::from_secs(3);

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
    /// The `vigil-train` thread while it runs; joined when it reports and when the stage is dropped.
    trainer: Option<std::thread::JoinHandle<()>>,
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
            trainer: None,
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
        if matches!(next, Some(Next::Install(_) | Next::Fail(_)))
            && let Some(t) = self.trainer.take()
        {
            // It has sent its result (or died): joining takes no time.
            let _ = t.join();
        }
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

    fn spawn_training(&mut self, rows: Vec<Vec<f64>>) -> State {
        let (tx, rx) = sync_channel(1);
        let schema = self.schema.clone();
        let tick = self.tick.as_secs_f64();
        let spawned = std::thread::Builder::new()
            .name("vigil-train".into())
            .spawn(move || {
                // linfa fits through rayon. On the global pool that would start one thread per core,
                // named after this one, alive for the rest of the host's life and competing with the
                // host's workers during every fit; a private one-thread pool keeps training on one
                // core and ends with it.
                let fit = || {
                    KMeansDetector::fit(
                        schema.names(),
                        rows.iter().map(|r| &r[..]),
                        KMeansParams::default(),
                    )
                };
                let fitted = match rayon::ThreadPoolBuilder::new()
                    .num_threads(1)
                    .thread_name(|_| "vigil-train-pool".to_owned())
                    .build()
                {
                    Ok(pool) => pool.install(fit),
                    Err(e) => {
                        tracing::warn!(
                            "no private training pool ({e}); fitting on rayon's global pool"
                        );
                        fit()
                    }
                };
                let result = fitted
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
            Ok(handle) => {
                self.trainer = Some(handle);
                State::Training(rx)
            }
            Err(e) => {
                tracing::warn!(
                    "cannot start the training thread, retrying after another warm-up: {e}"
                );
                State::Failed
            }
        }
    }
}

impl Drop for ScoringStage {
    /// Shutdown joins the training thread (every agent thread is joined), waiting at most
    /// [`TRAIN_JOIN_GRACE`]; a fit that takes longer is left to finish and its result is discarded.
    fn drop(&mut self) {
        let Some(t) = self.trainer.take() else {
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

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_features::{Horizons, SignalKind, SignalSet, SignalSpec, Unit};

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
    fn dropping_the_stage_joins_a_running_training_thread() {
        // linfa fits on rayon's global pool, whose workers are created by the first fit and named after
        // the thread that made them: create the pool here, so every `vigil-train` thread is ours.
        let rows: Vec<Vec<f64>> = (0..60)
            .map(|i| vec![f64::from(i % 7), f64::from(i % 5)])
            .collect();
        let _ = KMeansDetector::fit(
            &["a".to_owned(), "b".to_owned()],
            rows.iter().map(|r| &r[..]),
            KMeansParams::default(),
        );
        let specs = (0..20)
            .map(|i| SignalSpec::named(format!("s{i}"), Unit::Count, SignalKind::Gauge))
            .collect();
        let signals = SignalSet::new(specs).unwrap();
        let mut window = vigil_features::Window::new(&signals, Horizons::new(2, 5).unwrap());
        let schema = window.schema().clone();
        let mut registry = Registry::default();
        let mut stage = ScoringStage::new(
            schema.clone(),
            None,
            Duration::from_secs(1),
            Duration::from_secs(1),
            &mut registry,
        );
        let mut fv = FeatureVector::new(&schema);
        let mut x = 7u64;
        let mut t = 0.0;
        let mut row = vec![0.0; 20];
        while stage.trainer.is_none() {
            for v in &mut row {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *v = (x % 1000) as f64;
            }
            t += 1.0;
            window.push(t, &row).unwrap();
            if window.is_warm() {
                window.extract(&mut fv).unwrap();
            }
            stage.update(&fv, window.is_warm());
        }
        drop(stage);
        assert_eq!(
            threads_named("vigil-train"),
            0,
            "training thread outlived the stage"
        );
    }
}
