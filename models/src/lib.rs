//! Vigil's anomaly detectors and model files.
//!
//! Scores are comparable across models: every detector maps its raw distance `d` to
//! `value = d / (d + threshold)` in `[0, 1)`, so the decision threshold is always `0.5` and explicit.
//!
//! - [`RobustScaler`]: median/MAD scaling fitted on training rows; missing values score as the median.
//! - [`KMeansDetector`]: the unsupervised cold-start detector — linfa k-means on the scaled features,
//!   distance to the nearest centroid, threshold calibrated on the training windows to an alert budget
//!   (default 1 alarm-window per 1,000 normal windows).
//! - Supervised layer ([`KMeansDetector::fit_with_labels`]): once at least [`MIN_POSITIVE_WINDOWS`]
//!   windows are labelled anomalous, a linfa decision tree trained with sample weights (label confidence)
//!   adds a probability `p` with evidence `e` (how much labelled weight fell in that leaf); the score is
//!   `e * p + (1 - e) * unsupervised`, so where no labelled windows fell the unsupervised score stands.
//! - [`OutputFile`]: how every output is written (atomic replace, inputs and devices never destroyed).
//! - [`explain`]: top contributing features (robust z-scores) and a guessed [`AnomalyKind`].
//! - [`ModelFile`]: the versioned JSON artifact (bit-exact float round trip), loaded with every check.

mod artifact;
mod detector;
mod error;
pub mod explain;
mod kmeans;
mod output;
mod scaler;
mod supervised;

pub use artifact::{
    FORMAT_VERSION, MAX_MODEL_FILE_BYTES, ModelFile, TrainingSummary, signal_of_feature,
};
pub use detector::{Detector, Score};
pub use error::ModelError;
pub use explain::AnomalyKind;
pub use kmeans::{KMeansDetector, KMeansParams, LabelledRow, UNLABELLED_WEIGHT, calibrate};
pub use output::{OutputError, OutputFile};
pub use scaler::{RobustScaler, Z_CLIP};
pub use supervised::{MIN_POSITIVE_WINDOWS, Node, TreeClassifier};
