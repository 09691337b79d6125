//! The unsupervised cold-start detector: robust scaling, then distance to the nearest k-means centroid.

use linfa::prelude::*;
use linfa_clustering::KMeans;
use ndarray::{Array2, ArrayView1};
use rand_xoshiro::Xoshiro256Plus;
use rand_xoshiro::rand_core::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::detector::squash;
use crate::explain::{guess, top_features};
use crate::supervised::{MIN_POSITIVE_WINDOWS, TreeClassifier};
use crate::{AnomalyKind, Detector, ModelError, RobustScaler, Score};

/// Windows the centroids are fitted on at most.
const KMEANS_SAMPLE: usize = 25_000;

/// Unchecked parameters of [`KMeansDetector::fit`]; [`KMeansParams::check`] validates them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KMeansParams {
    /// Clusters (normal operating modes). Default 8.
    pub clusters: usize,
    /// Alarm windows allowed per normal window on training data. Default 0.001 (1 per 1,000).
    pub alert_budget: f64,
    /// RNG seed (deterministic by default). Default 42.
    pub seed: u64,
    /// k-means iterations per run. Default 100.
    pub max_iterations: u64,
}

impl Default for KMeansParams {
    fn default() -> Self {
        Self {
            clusters: 8,
            alert_budget: 0.001,
            seed: 42,
            max_iterations: 100,
        }
    }
}

impl KMeansParams {
    /// Windows training needs at least: 50, or one per cluster when there are more clusters.
    pub fn min_windows(&self) -> usize {
        50.max(self.clusters)
    }

    /// Validates ranges: `1 ≤ clusters ≤ 256`, `0 < alert_budget < 0.5`, `max_iterations ≥ 1`.
    pub fn check(self) -> Result<Self, ModelError> {
        if !(1..=256).contains(&self.clusters) {
            return Err(ModelError::Param {
                name: "clusters",
                message: format!("{} is outside 1..=256", self.clusters),
            });
        }
        if !(self.alert_budget > 0.0 && self.alert_budget < 0.5) {
            return Err(ModelError::Param {
                name: "alert_budget",
                message: format!("{} is outside (0, 0.5)", self.alert_budget),
            });
        }
        if self.max_iterations == 0 {
            return Err(ModelError::Param {
                name: "max_iterations",
                message: "must be at least 1".into(),
            });
        }
        Ok(self)
    }
}

/// Robust scaler + k-means centroids + a calibrated distance threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KMeansDetector {
    /// Feature names, for explanations.
    pub feature_names: Vec<String>,
    /// Scaling fitted on the training windows.
    pub scaler: RobustScaler,
    /// Centroids in scaled space, one row per cluster.
    pub centroids: Vec<Vec<f64>>,
    /// Raw distance (RMS over features) that maps to score 0.5.
    pub threshold: f64,
    /// Supervised layer trained from labels, when there were enough of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree: Option<TreeClassifier>,
    /// Mean |z| profile of windows labelled with each anomaly type; an anomalous window close to one
    /// (cosine ≥ 0.7) takes that type instead of the name-based guess.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub type_profiles: Vec<(AnomalyKind, Vec<f64>)>,
}

/// Cosine similarity under which a learned type profile does not apply.
const PROFILE_MIN_COSINE: f64 = 0.7;

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa > 0.0 && bb > 0.0 {
        ab / (aa.sqrt() * bb.sqrt())
    } else {
        0.0
    }
}

/// One training window and its label: `Some((anomalous, weight))` where labelled; the weight is the
/// label's confidence (defaults: human 0.95, alert rule 0.65).
#[derive(Debug, Clone, Copy)]
pub struct LabelledRow<'a> {
    /// The window's features.
    pub features: &'a [f64],
    /// Its label, if any.
    pub label: Option<(bool, f64)>,
    /// The anomaly type a labelled anomaly named, if any.
    pub kind: Option<AnomalyKind>,
}

/// Weight of unlabelled windows in the supervised layer: weak evidence of normal behaviour.
pub const UNLABELLED_WEIGHT: f64 = 0.2;

/// The threshold for an alert budget (used by every detector, exported for comparisons): an exponential tail fitted above the 90th percentile of the
/// training distances (a peaks-over-threshold estimate that works from ~50 windows), never below the
/// empirical (1 − budget) quantile when there are enough windows to have one.
pub fn calibrate(mut raw: Vec<f64>, budget: f64) -> f64 {
    raw.retain(|r| r.is_finite());
    raw.sort_by(f64::total_cmp);
    let n = raw.len();
    if n == 0 {
        return 1.0;
    }
    let q = |p: f64| raw[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
    let u = q(0.9);
    let excess: Vec<f64> = raw.iter().filter(|r| **r > u).map(|r| r - u).collect();
    let beta = if excess.is_empty() {
        0.0
    } else {
        excess.iter().sum::<f64>() / excess.len() as f64
    };
    let tail = u + beta * (0.1 / budget).ln();
    let empirical = if (n as f64) * budget >= 1.0 {
        q(1.0 - budget)
    } else {
        0.0
    };
    let t = tail.max(empirical);
    if t > 0.0 { t } else { f64::MIN_POSITIVE }
}

impl KMeansDetector {
    /// Fits on training windows (rows of `feature_names.len()` values; `NaN` = missing). Needs at least
    /// 50 windows and as many windows as clusters.
    pub fn fit<'a>(
        feature_names: &[String],
        rows: impl IntoIterator<Item = &'a [f64]> + Clone,
        params: KMeansParams,
    ) -> Result<Self, ModelError> {
        let params = params.check()?;
        let width = feature_names.len();
        let scaler = RobustScaler::fit(rows.clone(), width)?;
        let mut z = Vec::new();
        let mut n = 0;
        let mut buf = vec![0.0; width];
        for row in rows {
            scaler.transform(row, &mut buf);
            z.extend_from_slice(&buf);
            n += 1;
        }
        let needed = params.min_windows();
        if n < needed {
            return Err(ModelError::TooFewRows { needed, got: n });
        }
        let records = Array2::from_shape_vec((n, width), z)
            .map_err(|e| ModelError::Clustering(e.to_string()))?;
        // Centroids from at most KMEANS_SAMPLE windows (an even stride keeps every regime and time of
        // day); the threshold is still calibrated on every window.
        let stride = n.div_ceil(KMEANS_SAMPLE).max(1);
        let sample = records.slice(ndarray::s![..;stride, ..]).to_owned();
        let dataset = DatasetBase::from(sample);
        let model =
            KMeans::params_with_rng(params.clusters, Xoshiro256Plus::seed_from_u64(params.seed))
                .max_n_iterations(params.max_iterations)
                .n_runs(3)
                .tolerance(1e-4)
                .fit(&dataset)
                .map_err(|e| ModelError::Clustering(e.to_string()))?;
        let centroids: Vec<Vec<f64>> = model
            .centroids()
            .rows()
            .into_iter()
            .map(|r| r.to_vec())
            .collect();
        let mut detector = Self {
            feature_names: feature_names.to_vec(),
            scaler,
            centroids,
            threshold: 1.0,
            tree: None,
            type_profiles: Vec::new(),
        };
        let raw: Vec<f64> = records
            .rows()
            .into_iter()
            .map(|r| detector.distance(r.as_slice().unwrap_or(&[])))
            .collect();
        detector.threshold = calibrate(raw, params.alert_budget);
        Ok(detector)
    }

    /// Fits the unsupervised detector on every window not labelled anomalous, then, when at least
    /// [`MIN_POSITIVE_WINDOWS`] windows are labelled anomalous, a weighted decision tree on the labelled
    /// windows (unlabelled ones as weak normals). Returns the detector and a sentence saying what was
    /// trained.
    pub fn fit_with_labels(
        feature_names: &[String],
        rows: &[LabelledRow<'_>],
        params: KMeansParams,
    ) -> Result<(Self, String), ModelError> {
        let normal = rows
            .iter()
            .filter(|r| !matches!(r.label, Some((true, _))))
            .map(|r| r.features);
        let mut detector = Self::fit(feature_names, normal, params)?;
        detector.type_profiles = detector.profiles(rows);
        let positives = rows
            .iter()
            .filter(|r| matches!(r.label, Some((true, _))))
            .count();
        let labelled = rows.iter().filter(|r| r.label.is_some()).count();
        if positives < MIN_POSITIVE_WINDOWS {
            return Ok((
                detector,
                format!(
                    "stayed unsupervised: {positives} windows labelled anomalous (at least {MIN_POSITIVE_WINDOWS} are needed for the supervised layer)"
                ),
            ));
        }
        let width = feature_names.len() + 1;
        let mut records = Array2::<f64>::zeros((rows.len(), width));
        let mut z = vec![0.0; feature_names.len()];
        for (mut out, r) in records.rows_mut().into_iter().zip(rows) {
            detector.scaler.transform(r.features, &mut z);
            let raw = detector.distance(&z);
            for (o, v) in out.iter_mut().zip(z.iter().chain(std::iter::once(&raw))) {
                *o = *v;
            }
        }
        let anomaly: Vec<bool> = rows
            .iter()
            .map(|r| matches!(r.label, Some((true, _))))
            .collect();
        let weights: Vec<f64> = rows
            .iter()
            .map(|r| {
                r.label
                    .map_or(UNLABELLED_WEIGHT, |(_, w)| w.clamp(0.0, 1.0))
            })
            .collect();
        let is_labelled: Vec<bool> = rows.iter().map(|r| r.label.is_some()).collect();
        detector.tree = Some(TreeClassifier::fit(
            &records,
            &anomaly,
            &weights,
            &is_labelled,
            6,
        )?);
        Ok((
            detector,
            format!(
                "supervised: weighted decision tree on {labelled} labelled windows ({positives} anomalous) plus unlabelled windows as weak normals (weight {UNLABELLED_WEIGHT})"
            ),
        ))
    }

    /// Mean |z| per labelled anomaly type.
    fn profiles(&self, rows: &[LabelledRow<'_>]) -> Vec<(AnomalyKind, Vec<f64>)> {
        let width = self.scaler.width();
        let mut acc: Vec<(AnomalyKind, Vec<f64>, usize)> = Vec::new();
        let mut z = vec![0.0; width];
        for r in rows {
            let (Some((true, _)), Some(kind)) = (r.label, r.kind) else {
                continue;
            };
            self.scaler.transform(r.features, &mut z);
            let slot = match acc.iter().position(|a| a.0 == kind) {
                Some(i) => i,
                None => {
                    acc.push((kind, vec![0.0; width], 0));
                    acc.len() - 1
                }
            };
            for (s, v) in acc[slot].1.iter_mut().zip(&z) {
                *s += v.abs();
            }
            acc[slot].2 += 1;
        }
        acc.into_iter()
            .map(|(k, mut sum, n)| {
                sum.iter_mut().for_each(|s| *s /= n.max(1) as f64);
                (k, sum)
            })
            .collect()
    }

    /// The anomaly type of an anomalous window: the closest learned profile, else the name-based guess.
    fn kind_of(&self, z: &[f64], top: &[(usize, f64)]) -> AnomalyKind {
        let abs: Vec<f64> = z.iter().map(|v| v.abs()).collect();
        self.type_profiles
            .iter()
            .map(|(k, p)| (*k, cosine(&abs, p)))
            .filter(|(_, c)| *c >= PROFILE_MIN_COSINE)
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map_or_else(|| guess(&self.feature_names, top), |(k, _)| k)
    }

    /// RMS distance of scaled `z` to the nearest centroid.
    fn distance(&self, z: &[f64]) -> f64 {
        let width = z.len().max(1) as f64;
        let best = self
            .centroids
            .iter()
            .map(|c| c.iter().zip(z).map(|(a, b)| (a - b) * (a - b)).sum::<f64>())
            .fold(f64::INFINITY, f64::min);
        if best.is_finite() {
            (best / width).sqrt()
        } else {
            0.0
        }
    }

    /// Raw RMS distance of a raw feature window (for calibration studies).
    pub fn raw_score(&self, x: &[f64]) -> f64 {
        let mut z = vec![0.0; self.scaler.width()];
        self.scaler.transform(x, &mut z);
        self.distance(&z)
    }
}

impl Detector for KMeansDetector {
    fn kind(&self) -> &'static str {
        if self.tree.is_some() {
            "kmeans+tree"
        } else {
            "kmeans"
        }
    }

    fn width(&self) -> usize {
        self.scaler.width()
    }

    fn score(&self, x: ArrayView1<'_, f64>) -> Score {
        let width = self.scaler.width();
        let mut z = vec![0.0; width];
        match x.as_slice() {
            Some(s) if s.len() == width => self.scaler.transform(s, &mut z),
            _ if x.len() == width => {
                let owned = x.to_vec();
                self.scaler.transform(&owned, &mut z);
            }
            _ => {}
        }
        let raw = self.distance(&z);
        let unsupervised = squash(raw, self.threshold);
        // With labels: where labelled windows fell (evidence e), their verdict p counts in proportion,
        // so a labelled pattern can lift a quiet window above 0.5 or hold a known false alarm below it;
        // where only unlabelled windows fell, the unsupervised score stands (novel anomalies still show).
        let value = match &self.tree {
            Some(tree) => {
                z.push(raw);
                let (p, e) = tree.leaf(&z);
                z.pop();
                e * p + (1.0 - e) * unsupervised
            }
            None => unsupervised,
        };
        let is_anomaly = value >= 0.5;
        let top = top_features(&z, 3);
        let anomaly_type = if is_anomaly {
            self.kind_of(&z, &top)
        } else {
            AnomalyKind::Unknown
        };
        Score {
            value,
            is_anomaly,
            top_features: top,
            anomaly_type,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibration_hits_the_budget_on_large_samples() {
        // Exponential distances: the 99.9% quantile is ln(1000) ≈ 6.9.
        let raw: Vec<f64> = (1..100_000)
            .map(|i| -(1.0 - f64::from(i) / 100_000.0).ln())
            .collect();
        let t = calibrate(raw, 0.001);
        assert!((t - 1000f64.ln()).abs() < 0.1, "{t}");
    }

    #[test]
    fn params_are_checked() {
        assert!(
            KMeansParams {
                clusters: 0,
                ..Default::default()
            }
            .check()
            .is_err()
        );
        assert!(
            KMeansParams {
                alert_budget: 0.0,
                ..Default::default()
            }
            .check()
            .is_err()
        );
        assert!(KMeansParams::default().check().is_ok());
    }
}
