//! The detector interface.

use ndarray::ArrayView1;

use crate::AnomalyKind;

/// One window's score.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// In `[0, 1)`; `0.5` is the threshold for every model.
    pub value: f64,
    /// The detector's raw score before squashing (a ranking without a ceiling; `0` for missing data).
    pub raw: f64,
    /// `value >= 0.5`.
    pub is_anomaly: bool,
    /// The raw score is back in the range of normal windows (at or below the 90th percentile of the
    /// windows the threshold was calibrated on): what closes an event (hysteresis: opening needs the
    /// threshold, closing only needs normal).
    pub settled: bool,
    /// The features that contributed most: `(feature index, robust z-score)`, largest |z| first (3 at most).
    pub top_features: Vec<(usize, f64)>,
    /// Guessed anomaly type (`Unknown` for normal windows).
    pub anomaly_type: AnomalyKind,
}

/// A fitted detector over feature vectors of a fixed schema.
pub trait Detector: Send + Sync {
    /// Short name recorded in model files and `vigil_model_info{kind}`.
    fn kind(&self) -> &'static str;
    /// Features expected per window.
    fn width(&self) -> usize;
    /// Scores one window (`NaN` = missing feature). Never panics; a window of the wrong width scores
    /// as missing features (`value` 0).
    fn score(&self, x: ArrayView1<'_, f64>) -> Score;
}

/// `d / (d + threshold)`: monotonic, `0.5` exactly at the threshold.
pub(crate) fn squash(raw: f64, threshold: f64) -> f64 {
    if !raw.is_finite() || raw <= 0.0 {
        return if raw.is_infinite() { 1.0 } else { 0.0 };
    }
    raw / (raw + threshold.max(f64::MIN_POSITIVE))
}
