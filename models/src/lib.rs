//! Vigil's anomaly detectors and model files.
//!
//! Scores are comparable across models: every detector maps its raw distance `d` to
//! `value = d / (d + threshold)` in `[0, 1)`, so the decision threshold is always `0.5` and explicit.
//!
//! - [`Engine`]: the online state machine (cold start → scoring → refits → events) that the agent runs
//!   live and the CLI runs over CSV, with an injected [`Trainer`]; [`Event`]s open on k-of-n evidence,
//!   close with hysteresis and a cooldown.
//! - [`RobustScaler`]: median/MAD scaling fitted on training rows with floors from each feature's unit
//!   ([`floor_for`]); missing values score as the median.
//! - [`KMeansDetector`]: the unsupervised detector — each signal read as the vocabulary says (its
//!   short-horizon median, or its sustained slope), load-adjusted, robustly scaled; one centroid (per-signal robust checks) until there are windows for more, then
//!   linfa k-means; the raw score is the RMS of the [`TOP_K`] largest deviations from the nearest
//!   centroid; the threshold is calibrated on the newest windows, held out of the fit, to an alarm
//!   budget per window (the engine derives it from a false-event budget per day).
//! - Supervised layer ([`KMeansDetector::fit_with_labels`]): once at least [`MIN_POSITIVE_WINDOWS`]
//!   windows are labelled anomalous, a linfa decision tree trained with sample weights (label confidence)
//!   adds a probability `p` with evidence `e` (how much labelled weight fell in that leaf); the score is
//!   `e * p + (1 - e) * unsupervised`, so where no labelled windows fell the unsupervised score stands.
//! - [`OutputFile`]: how every output is written (atomic replace, inputs and devices never destroyed).
//! - [`explain`]: top contributing features (robust z-scores) and a guessed [`AnomalyKind`].
//! - [`ModelFile`]: the versioned JSON artifact (bit-exact float round trip), loaded with every check.

mod artifact;
pub mod budget;
mod detector;
pub mod engine;
mod error;
pub mod evaluation;
mod events;
pub mod explain;
mod kmeans;
pub mod labels;
mod output;
mod range;
pub mod retrain;
mod scaler;
mod supervised;

pub use artifact::{
    FORMAT_VERSION, FitReason, MAX_MODEL_FILE_BYTES, ModelFile, TrainingSummary, column_of_feature,
};
pub use detector::{Detector, Score};
pub use engine::{
    DEFAULT_FALSE_EVENTS_PER_DAY, DRIFT_EXPECTED, DRIFT_RATE, Engine, EngineConfig, InlineTrainer,
    LabelledWindow, Phase, Step, TrainJob, Trained, Trainer, UNIT_EVENTS_PER_DAY,
};
pub use error::ModelError;
pub use events::{Event, EventEnd, EventParams};
pub use explain::AnomalyKind;
pub use kmeans::{
    KMeansDetector, KMeansParams, LabelledRow, MAX_RAW_THRESHOLD, MIN_RAW_THRESHOLD, TOP_K,
    UNLABELLED_WEIGHT, WINDOWS_PER_CLUSTER, calibrate, scored_features,
};
pub use output::{OutputError, OutputFile, STORE_FILE_NAMES};
pub use range::{RangeReading, RecentRange, SPIKE_RATIO};
pub use scaler::{RobustScaler, Z_CLIP, compress, floor_for};
pub use supervised::{MIN_POSITIVE_WINDOWS, Node, TreeClassifier};
