//! The unsupervised cold-start detector: robust scaling, then distance to the nearest k-means centroid.

use linfa::prelude::*;
use linfa_clustering::KMeans;
use ndarray::{Array2, ArrayView1};
use rand_xoshiro::Xoshiro256Plus;
use rand_xoshiro::rand_core::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::detector::squash;
use crate::explain::{guess, top_features, vote};
use crate::supervised::{MIN_POSITIVE_WINDOWS, TreeClassifier};
use crate::{AnomalyKind, Detector, ModelError, RangeReading, RobustScaler, SPIKE_RATIO, Score};

/// Windows the centroids are fitted on at most.
const KMEANS_SAMPLE: usize = 25_000;
/// Fit windows per cluster: below `2 × WINDOWS_PER_CLUSTER` the detector keeps one centroid (the
/// median of every feature: per-signal robust checks), and it never fits more clusters than this many
/// windows each can support.
pub const WINDOWS_PER_CLUSTER: usize = 100;
/// The smallest raw threshold: a window whose strongest features sit less than this many robust
/// standard deviations from normal is never anomalous, whatever the calibration windows looked like.
pub const MIN_RAW_THRESHOLD: f64 = 5.0;
/// Features whose squared deviations are averaged into the raw score (the strongest ones).
pub const TOP_K: usize = 3;

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
    /// Seconds between windows (floors of rate features depend on it). Default 1.
    pub tick_seconds: f64,
    /// The short horizon, ticks: the detector scores each level signal's median over the short
    /// horizon (its mean where the signal follows the load), and a trend signal's short slope (see
    /// [`KMeansDetector`]). Default 10.
    pub short_horizon: usize,
    /// Share of the (time-ordered) windows held out, newest last, to set the threshold on windows the
    /// model was not fitted on. Default 0.3.
    pub calibration_share: f64,
}

impl Default for KMeansParams {
    fn default() -> Self {
        Self {
            clusters: 8,
            alert_budget: 0.001,
            seed: 42,
            max_iterations: 100,
            tick_seconds: 1.0,
            short_horizon: 10,
            calibration_share: 0.3,
        }
    }
}

impl KMeansParams {
    /// Windows training needs at least: 50, or one per cluster when there are more clusters.
    pub fn min_windows(&self) -> usize {
        50.max(self.clusters)
    }

    /// Validates ranges: `1 ≤ clusters ≤ 256`, `0 < alert_budget < 0.5`, `max_iterations ≥ 1`,
    /// `tick_seconds > 0`, `0.1 ≤ calibration_share ≤ 0.5`.
    pub fn check(self) -> Result<Self, ModelError> {
        if !(self.tick_seconds.is_finite() && self.tick_seconds > 0.0) {
            return Err(ModelError::Param {
                name: "tick_seconds",
                message: format!("{} is not a positive number of seconds", self.tick_seconds),
            });
        }
        if !(0.1..=0.5).contains(&self.calibration_share) {
            return Err(ModelError::Param {
                name: "calibration_share",
                message: format!("{} is outside 0.1 to 0.5", self.calibration_share),
            });
        }
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

/// Robust scaler + k-means centroids + a threshold calibrated out of sample.
///
/// What it scores ([`scored_features`]): per signal, as the vocabulary reads it, the median over the
/// short horizon (`x.median_10`: one spike does not move it) or, for signals whose level ratchets, the
/// short slope as far as the long slope agrees (sustained growth); load-adjusted, robustly scaled with
/// unit floors. Spread, max and long-horizon features stay in the schema (exported, drift) but do not
/// decide verdicts: they keep a past event in view for up to a long horizon, so one event would read as
/// a minute of alarms. The raw score is the RMS of the
/// [`TOP_K`] largest deviations from the nearest centroid, each compressed beyond [`crate::Z_CLIP`]
/// ([`crate::compress`]: monotone, so the raw score ranks): what the
/// most-moved features say, not an average diluted over hundreds of quiet ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KMeansDetector {
    /// Feature names, for explanations.
    pub feature_names: Vec<String>,
    /// Scaling fitted on the training windows (every feature of the schema).
    pub scaler: RobustScaler,
    /// Indices of the scored features, ascending.
    pub scored: Vec<usize>,
    /// Load adjustment per scored feature: `(load feature index, slope, load median)`. A scored
    /// feature that follows the request load is scored on what the load does not explain,
    /// `x − slope · (load − load median)`; its median and scale are those of that residual.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub load: Vec<Option<(usize, f64, f64)>>,
    /// Per scored feature: for a trend signal's short slope, the index of its long slope; the score
    /// reads the smaller of the two (growth that is recent and sustained).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sustain: Vec<Option<usize>>,
    /// Centroids in scaled space over the scored features, one row per cluster.
    pub centroids: Vec<Vec<f64>>,
    /// Raw score that maps to score 0.5.
    pub threshold: f64,
    /// Raw score of a normal window: the 90th percentile of the calibration windows, at most 0.8 ×
    /// the threshold. Windows at or below it are [`Score::settled`].
    pub settle: f64,
    /// Supervised layer trained from labels, when there were enough of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree: Option<TreeClassifier>,
    /// Mean |z| profile of windows labelled with each anomaly type; an anomalous window close to one
    /// (cosine ≥ 0.7) takes that type instead of the name-based guess.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub type_profiles: Vec<(AnomalyKind, Vec<f64>)>,
    /// Per feature, the lowest and highest value of the windows the model was trained on (normal by
    /// construction, a person's `normal` labels included): part of the recent range
    /// ([`crate::RecentRange`]), so what the model knows as normal is never a spike.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extent: Vec<(f64, f64)>,
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
    /// The label covers a span around the anomaly rather than exactly its windows: an alert that
    /// fired (any source but `human`). Its windows count as anomalous examples only where they
    /// deviate beyond the threshold; the run-up and the aftermath inside the span count as unlabelled.
    pub coarse: bool,
}

/// Weight of unlabelled windows in the supervised layer: weak evidence of normal behaviour.
pub const UNLABELLED_WEIGHT: f64 = 0.2;

/// The threshold for an alert budget (used by every detector, exported for comparisons): an
/// exponential tail fitted to the median and the 90th percentile of the distances,
/// `p50 + (p90 − p50) · (ln(1/budget) − ln 2) / ln 5`, so up to 10 % of the windows may be anomalous
/// without moving it, and it needs no more than a few dozen windows; never below the empirical
/// (1 − budget) quantile when there are enough windows to have one.
pub fn calibrate(mut raw: Vec<f64>, budget: f64) -> f64 {
    raw.retain(|r| r.is_finite());
    raw.sort_unstable_by(f64::total_cmp);
    let n = raw.len();
    if n == 0 {
        return 1.0;
    }
    let q = |p: f64| raw[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
    let (p50, p90) = (q(0.5), q(0.9));
    let tail = p50 + (p90 - p50) * ((1.0 / budget).ln() - 2f64.ln()) / 5f64.ln();
    let empirical = if (n as f64) * budget >= 1.0 {
        q(1.0 - budget)
    } else {
        0.0
    };
    let t = tail.max(empirical);
    if t > 0.0 { t } else { f64::MIN_POSITIVE }
}

/// The largest raw threshold: half of [`crate::Z_CLIP`]. A calibration that asks for more (windows
/// held out of the fit were themselves anomalous) would give a model that can never alarm.
pub const MAX_RAW_THRESHOLD: f64 = 0.5 * crate::Z_CLIP;

/// Indices of the features a detector scores, by how the vocabulary reads each signal
/// ([`vigil_features::vocab::Reading`]): a level signal's `median_<short>` (`mean_<short>` where it
/// follows the load), a trend signal's
/// `slope_<short>`, nothing of an ignored one (unknown signals are read by level); every feature when
/// the names follow no schema pattern.
pub fn scored_features(names: &[String], short_horizon: usize) -> Vec<usize> {
    use vigil_features::vocab::{Reading, reading_of_feature};
    let median = format!(".median_{short_horizon}");
    let mean = format!(".mean_{short_horizon}");
    let slope = format!(".slope_{short_horizon}");
    let idx: Vec<usize> = names
        .iter()
        .enumerate()
        .filter(|(_, n)| match reading_of_feature(n) {
            // A signal explained by the load is read by its mean, not its median: the adjustment
            // `x − slope · load` is linear, so on means it is exact tick by tick, while the medians of
            // two noisy series jump at different ticks when the load changes within the horizon.
            Reading::Level if vigil_features::vocab::follows_load(n) => n.ends_with(&mean),
            Reading::Level => n.ends_with(&median),
            Reading::Trend => n.ends_with(&slope),
            Reading::Ignored => false,
        })
        .map(|(i, _)| i)
        .collect();
    if idx.is_empty() {
        (0..names.len()).collect()
    } else {
        idx
    }
}

/// For each scored short slope, the same signal's long slope (`x.slope_10` → `x.slope_60`).
fn sustain_partners(names: &[String], scored: &[usize]) -> Vec<Option<usize>> {
    let partners: Vec<Option<usize>> = scored
        .iter()
        .map(|&i| {
            let (signal, stat) = names.get(i)?.split_once('.')?;
            stat.strip_prefix("slope_")?;
            names.iter().enumerate().position(|(k, n)| {
                k != i
                    && n.split_once('.').is_some_and(|(s, st)| {
                        s == signal
                            && st.strip_prefix("slope_").is_some_and(|h| {
                                h.parse::<usize>().ok()
                                    > stat.strip_prefix("slope_").and_then(|x| x.parse().ok())
                            })
                    })
            })
        })
        .collect();
    if partners.iter().all(Option::is_none) {
        Vec::new()
    } else {
        partners
    }
}

impl KMeansDetector {
    /// Fits on training windows in time order (rows of `feature_names.len()` values; `NaN` = missing),
    /// with the units of a feature schema for the scale floors. The oldest windows fit the scaler and
    /// the centroids; the newest [`KMeansParams::calibration_share`] set the threshold, so it is
    /// calibrated on windows the model has not seen. Needs at least 50 windows.
    pub fn fit<'a>(
        feature_names: &[String],
        feature_units: &[String],
        rows: impl IntoIterator<Item = &'a [f64]> + Clone,
        params: KMeansParams,
    ) -> Result<Self, ModelError> {
        let params = params.check()?;
        let width = feature_names.len();
        if feature_units.len() != width {
            return Err(ModelError::SchemaMismatch {
                expected: format!("{width} feature units"),
                got: format!("{}", feature_units.len()),
                detail: "names and units differ in length".into(),
            });
        }
        let n = rows.clone().into_iter().count();
        let needed = params.min_windows();
        if n < needed {
            return Err(ModelError::TooFewRows { needed, got: n });
        }
        let n_cal = ((n as f64 * params.calibration_share).round() as usize).clamp(1, n - 1);
        let n_fit = n - n_cal;
        let scaler = RobustScaler::fit_with_units(
            rows.clone().into_iter().take(n_fit),
            feature_names,
            feature_units,
            params.tick_seconds,
        )?;
        let scored = scored_features(feature_names, params.short_horizon);
        let dim = scored.len();
        let mut detector = Self {
            feature_names: feature_names.to_vec(),
            scaler,
            sustain: sustain_partners(feature_names, &scored),
            scored,
            load: Vec::new(),
            centroids: vec![vec![0.0; dim]],
            threshold: 1.0,
            settle: 0.8,
            tree: None,
            type_profiles: Vec::new(),
            extent: Vec::new(),
        };
        detector.extent = extent_of(rows.clone(), &detector.scaler.median);
        let fit_rows: Vec<&[f64]> = rows.clone().into_iter().take(n_fit).collect();
        detector.fit_load(&fit_rows, feature_units, params.tick_seconds);
        // One centroid (the medians) until the fit windows support more; then k-means.
        let clusters = (n_fit / WINDOWS_PER_CLUSTER).clamp(1, params.clusters);
        if clusters > 1 {
            let mut z = Vec::with_capacity(n_fit * dim);
            let mut buf = vec![0.0; dim];
            for row in &fit_rows {
                detector.scaled(row, &mut buf);
                z.extend_from_slice(&buf);
            }
            let records = Array2::from_shape_vec((n_fit, dim), z)
                .map_err(|e| ModelError::Clustering(e.to_string()))?;
            // Centroids from at most KMEANS_SAMPLE windows (an even stride keeps every regime).
            let stride = n_fit.div_ceil(KMEANS_SAMPLE).max(1);
            let sample = records.slice(ndarray::s![..;stride, ..]).to_owned();
            let dataset = DatasetBase::from(sample);
            let model =
                KMeans::params_with_rng(clusters, Xoshiro256Plus::seed_from_u64(params.seed))
                    .max_n_iterations(params.max_iterations)
                    .n_runs(3)
                    .tolerance(1e-4)
                    .fit(&dataset)
                    .map_err(|e| ModelError::Clustering(e.to_string()))?;
            detector.centroids = model
                .centroids()
                .rows()
                .into_iter()
                .map(|r| r.to_vec())
                .collect();
        }
        let raw: Vec<f64> = rows
            .into_iter()
            .skip(n_fit)
            .map(|r| detector.raw_score(r))
            .collect();
        let mut sorted = raw.clone();
        sorted.sort_unstable_by(f64::total_cmp);
        let p90 = sorted
            .get(((sorted.len() as f64 * 0.9).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(0.0);
        // The tail is estimated from n_cal windows; its relative error shrinks like 1/sqrt(n), so the
        // threshold is raised by two such errors: a first model from a short warm-up, which has seen
        // little of the load's range, needs stronger evidence than one refitted on hours of windows.
        let small_sample = 1.0 + 2.0 / (n_cal as f64).sqrt();
        detector.threshold = (calibrate(raw, params.alert_budget) * small_sample)
            .clamp(MIN_RAW_THRESHOLD, MAX_RAW_THRESHOLD);
        detector.settle = p90.clamp(0.0, 0.8 * detector.threshold);
        Ok(detector)
    }

    /// Finds the scored features that follow the load and refits their median and scale on the
    /// residual. A signal the vocabulary says grows with the load
    /// ([`vigil_features::vocab::follows_load`]) gets the proportional slope `median(x) / median(load)`
    /// (work per request stays the same): a fitted slope would be biased towards zero by the noise in
    /// the measured load and would not extrapolate to loads the fit windows never saw. Any other
    /// feature gets a fitted slope when the load moved in the fit windows (its 10–90 % spread at
    /// least 10 % of its median) and explains at least a quarter of the feature's variance
    /// (|r| ≥ 0.5), and is left alone otherwise.
    fn fit_load(&mut self, rows: &[&[f64]], units: &[String], tick_seconds: f64) {
        let mut any = false;
        let mut load = vec![None; self.scored.len()];
        for (j, &i) in self.scored.iter().enumerate() {
            let Some(l) = vigil_features::vocab::load_feature_for(
                &self.feature_names[i],
                &self.feature_names,
            ) else {
                continue;
            };
            let pairs: Vec<(f64, f64)> = rows
                .iter()
                .filter_map(|r| Some((*r.get(i)?, *r.get(l)?)))
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect();
            if pairs.len() < 20 {
                continue;
            }
            let n = pairs.len() as f64;
            let (mx, ml) = pairs
                .iter()
                .fold((0.0, 0.0), |a, p| (a.0 + p.0 / n, a.1 + p.1 / n));
            let (mut sxl, mut sll, mut sxx) = (0.0, 0.0, 0.0);
            for (x, y) in &pairs {
                sxl += (x - mx) * (y - ml);
                sll += (y - ml) * (y - ml);
                sxx += (x - mx) * (x - mx);
            }
            let mut loads: Vec<f64> = pairs.iter().map(|p| p.1).collect();
            loads.sort_unstable_by(f64::total_cmp);
            let l_med = loads[loads.len() / 2];
            let l_spread = loads[loads.len() * 9 / 10] - loads[loads.len() / 10];
            let r = sxl / (sll.sqrt() * sxx.sqrt()).max(f64::MIN_POSITIVE);
            let fitted = l_spread >= 0.1 * l_med.abs() && sll > 0.0 && r.abs() >= 0.5;
            let slope = if vigil_features::vocab::follows_load(&self.feature_names[i])
                && l_med.abs() > 0.0
            {
                let mut xs: Vec<f64> = pairs.iter().map(|p| p.0).collect();
                xs.sort_unstable_by(f64::total_cmp);
                xs[xs.len() / 2] / l_med
            } else if fitted {
                sxl / sll
            } else {
                continue;
            };
            if !slope.is_finite() {
                continue;
            }
            let mut resid: Vec<f64> = pairs.iter().map(|(x, y)| x - slope * (y - l_med)).collect();
            resid.sort_unstable_by(f64::total_cmp);
            let m = resid[resid.len() / 2];
            let mut dev: Vec<f64> = resid.iter().map(|v| (v - m).abs()).collect();
            dev.sort_unstable_by(f64::total_cmp);
            let mad = 1.4826 * dev[dev.len() / 2];
            // The same floors the scaler gives every feature: the unit's, and the measurement's
            // resolution (the CPU ratio's 10 ms clock ticks, which this path serves most often).
            let floor = crate::floor_for(units.get(i).map_or("", String::as_str), m, tick_seconds);
            self.scaler.median[i] = m;
            self.scaler.scale[i] = mad.max(floor);
            load[j] = Some((l, slope, l_med));
            any = true;
        }
        if any {
            self.load = load;
        }
    }

    /// Robust z of feature `i` of a full feature row, not clipped, without load adjustment.
    fn plain_z(&self, row: &[f64], i: usize) -> f64 {
        match (
            row.get(i).filter(|x| x.is_finite()),
            self.scaler.median.get(i),
            self.scaler.scale.get(i),
        ) {
            (Some(x), Some(m), Some(s)) => (x - m) / s,
            _ => 0.0,
        }
    }

    /// Robust z of scored feature `j`, not clipped: load-adjusted; for a trend signal, the smaller of
    /// its short and long slopes' z when both point the same way (growth that is recent *and*
    /// sustained; a one-off step moves the short slope only, and the score settles as soon as growth
    /// stops). 0 when the value is missing.
    fn z_of(&self, row: &[f64], j: usize) -> f64 {
        self.z_with(row, j, true)
    }

    /// [`Self::z_of`], with the trend's agreement of the long slope (`sustained`) or without it.
    fn z_with(&self, row: &[f64], j: usize, sustained: bool) -> f64 {
        let Some(&i) = self.scored.get(j) else {
            return 0.0;
        };
        let Some(mut x) = row.get(i).copied().filter(|x| x.is_finite()) else {
            return 0.0;
        };
        if let Some(Some((l, slope, l_med))) = self.load.get(j)
            && let Some(lv) = row.get(*l).filter(|v| v.is_finite())
        {
            x -= slope * (lv - l_med);
        }
        let z = (x - self.scaler.median[i]) / self.scaler.scale[i];
        match self.sustain.get(j).copied().flatten() {
            Some(p) if sustained => {
                let zp = self.plain_z(row, p);
                if z * zp > 0.0 {
                    z.signum() * z.abs().min(zp.abs())
                } else {
                    0.0
                }
            }
            _ => z,
        }
    }

    /// Widens each feature's scale to at least `floors[i]` (another model's scales over the same
    /// schema), moving the centroids with it so they stay where they were in raw units. The threshold
    /// is kept: wider scales only lower scores, so it stays on the safe side. What a model refitted on
    /// the few windows after a level shift borrows from the model of the longer history before it: a
    /// shift moves levels, not the spread learned over days.
    pub fn floor_scales(&mut self, floors: &[f64]) {
        for (i, (scale, floor)) in self.scaler.scale.iter_mut().zip(floors).enumerate() {
            if !(floor.is_finite() && *floor > *scale && *scale > 0.0) {
                continue;
            }
            let ratio = *scale / floor;
            for (j, _) in self.scored.iter().enumerate().filter(|(_, s)| **s == i) {
                for c in &mut self.centroids {
                    if let Some(v) = c.get_mut(j) {
                        *v *= ratio;
                    }
                }
            }
            *scale = *floor;
        }
    }

    /// Whether feature `i` (schema index) is a trend reading (a slope): a slope away from normal is a
    /// level still moving.
    pub fn is_trend(&self, i: usize) -> bool {
        self.feature_names
            .get(i)
            .is_some_and(|n| n.contains(".slope_"))
    }

    /// |robust z| of feature `i` of a full feature row as the score sees it (load-adjusted, trends
    /// sustained), not clipped.
    pub fn deviation(&self, row: &[f64], i: usize) -> f64 {
        match self.scored.iter().position(|s| *s == i) {
            Some(j) => self.z_of(row, j).abs(),
            None => self.plain_z(row, i).abs(),
        }
    }

    /// Robust z-scores of the scored features of a full feature row.
    fn scaled(&self, row: &[f64], out: &mut [f64]) {
        for (j, o) in out.iter_mut().enumerate() {
            *o = crate::compress(self.z_of(row, j));
        }
    }

    /// Fits the unsupervised detector on every window not labelled anomalous, then, when at least
    /// [`MIN_POSITIVE_WINDOWS`] windows are labelled anomalous, a weighted decision tree on the labelled
    /// windows (unlabelled ones as weak normals). Returns the detector and a sentence saying what was
    /// trained.
    pub fn fit_with_labels(
        feature_names: &[String],
        feature_units: &[String],
        rows: &[LabelledRow<'_>],
        params: KMeansParams,
    ) -> Result<(Self, String), ModelError> {
        // Windows a person or a rule called normal come first, so they fall in the fit part of the
        // time-ordered split and become normal modes (a known false alarm is learned as normal, not
        // absorbed by raising the threshold); the unlabelled windows follow in time order, the
        // newest of them setting the threshold.
        let normal = rows
            .iter()
            .filter(|r| matches!(r.label, Some((false, _))))
            .chain(rows.iter().filter(|r| r.label.is_none()))
            .map(|r| r.features);
        let mut detector = Self::fit(feature_names, feature_units, normal, params)?;
        detector.type_profiles = detector.profiles(rows);
        let dim = detector.scored.len();
        let mut records = Array2::<f64>::zeros((rows.len(), dim + 1));
        let mut z = vec![0.0; dim];
        let mut raws = Vec::with_capacity(rows.len());
        for (mut out, r) in records.rows_mut().into_iter().zip(rows) {
            detector.scaled(r.features, &mut z);
            let raw = detector.distance(&z);
            raws.push(raw);
            for (o, v) in out.iter_mut().zip(z.iter().chain(std::iter::once(&raw))) {
                *o = *v;
            }
        }
        // An alert's label marks the span the alert fired over, not each anomalous window in it: a
        // window of such a span whose deviation stays below the threshold is ambiguous (the run-up
        // or the aftermath of the anomaly) and counts as unlabelled. Otherwise the tree learns to
        // call ordinary-looking windows anomalies and raises false events wherever they recur
        // (measured with `vigil bench feedback`: with the calibration p90 as the cut, windows 1.4
        // robust sd off normal scored 0.97). A person's label is taken as meant: it can lift a quiet
        // window above 0.5.
        let label_of = |i: usize| match rows[i].label {
            Some((true, _)) if rows[i].coarse && raws[i] < detector.threshold => None,
            other => other,
        };
        let positives = (0..rows.len())
            .filter(|&i| matches!(label_of(i), Some((true, _))))
            .count();
        let ambiguous = rows
            .iter()
            .filter(|r| matches!(r.label, Some((true, _))))
            .count()
            - positives;
        let labelled = (0..rows.len()).filter(|&i| label_of(i).is_some()).count();
        if positives < MIN_POSITIVE_WINDOWS {
            return Ok((
                detector,
                format!(
                    "stayed unsupervised: {positives} windows labelled anomalous that deviate ({ambiguous} more look normal; at least {MIN_POSITIVE_WINDOWS} are needed for the supervised layer)"
                ),
            ));
        }
        let anomaly: Vec<bool> = (0..rows.len())
            .map(|i| matches!(label_of(i), Some((true, _))))
            .collect();
        let weights: Vec<f64> = (0..rows.len())
            .map(|i| label_of(i).map_or(UNLABELLED_WEIGHT, |(_, w)| w.clamp(0.0, 1.0)))
            .collect();
        let is_labelled: Vec<bool> = (0..rows.len()).map(|i| label_of(i).is_some()).collect();
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
                "supervised: weighted decision tree on {labelled} labelled windows ({positives} anomalous; {ambiguous} labelled anomalous but looking normal taken as unlabelled) plus unlabelled windows as weak normals (weight {UNLABELLED_WEIGHT})"
            ),
        ))
    }

    /// Mean |z| per labelled anomaly type.
    fn profiles(&self, rows: &[LabelledRow<'_>]) -> Vec<(AnomalyKind, Vec<f64>)> {
        let width = self.scored.len();
        let mut acc: Vec<(AnomalyKind, Vec<f64>, usize)> = Vec::new();
        let mut z = vec![0.0; width];
        for r in rows {
            let (Some((true, _)), Some(kind)) = (r.label, r.kind) else {
                continue;
            };
            self.scaled(r.features, &mut z);
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

    /// The anomaly type of an anomalous window: the closest learned profile (profiles are mean |z|
    /// of labelled windows, so they are matched against the window's |z|, `scaled`), else the vote
    /// of the deviations `z` from the nearest mode, else the name-based guess.
    fn kind_of(&self, scaled: &[f64], z: &[f64], top: &[(usize, f64)]) -> AnomalyKind {
        let abs: Vec<f64> = scaled.iter().map(|v| v.abs()).collect();
        self.type_profiles
            .iter()
            .map(|(k, p)| (*k, cosine(&abs, p)))
            .filter(|(_, c)| *c >= PROFILE_MIN_COSINE)
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map_or_else(
                || {
                    let voted = vote(&self.feature_names, &self.scored, z);
                    if voted == AnomalyKind::Unknown {
                        guess(&self.feature_names, top)
                    } else {
                        voted
                    }
                },
                |(k, _)| k,
            )
    }

    /// The nearest centroid of scaled `z`.
    fn nearest(&self, z: &[f64]) -> Option<&[f64]> {
        self.centroids
            .iter()
            .map(|c| {
                let d: f64 = c.iter().zip(z).map(|(a, b)| (a - b) * (a - b)).sum();
                (c, d)
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(c, _)| &c[..])
    }

    /// Raw score of scaled `z`: RMS of the [`TOP_K`] largest squared deviations from the nearest
    /// centroid.
    fn distance(&self, z: &[f64]) -> f64 {
        match self.nearest(z) {
            Some(c) => top_k_rms(z.iter().zip(c).map(|(a, b)| a - b), z.len()),
            None => 0.0,
        }
    }
}

/// Per feature, the lowest and highest finite value over `rows`; a feature that never had one gets
/// its median twice (model files hold finite numbers only).
fn extent_of<'a>(rows: impl IntoIterator<Item = &'a [f64]>, median: &[f64]) -> Vec<(f64, f64)> {
    let mut out = vec![(f64::INFINITY, f64::NEG_INFINITY); median.len()];
    for row in rows {
        for ((lo, hi), v) in out.iter_mut().zip(row) {
            if v.is_finite() {
                *lo = lo.min(*v);
                *hi = hi.max(*v);
            }
        }
    }
    for ((lo, hi), m) in out.iter_mut().zip(median) {
        if !(lo.is_finite() && hi.is_finite()) {
            (*lo, *hi) = (*m, *m);
        }
    }
    out
}

/// RMS of the [`TOP_K`] largest squared deviations among `dev` (of `n` values).
fn top_k_rms(dev: impl Iterator<Item = f64>, n: usize) -> f64 {
    {
        let mut top = [0.0f64; TOP_K];
        for x in dev {
            let d = x * x;
            if d > top[TOP_K - 1] {
                let pos = top.partition_point(|t| *t >= d);
                top.copy_within(pos..TOP_K - 1, pos + 1);
                top[pos] = d;
            }
        }
        let k = TOP_K.min(n).max(1);
        let raw = (top.iter().take(k).sum::<f64>() / k as f64).sqrt();
        if raw.is_finite() { raw } else { 0.0 }
    }
}

impl KMeansDetector {
    /// Raw score of a raw feature window (threshold sweeps, calibration studies): the value that maps
    /// to 0.5 at [`KMeansDetector::threshold`].
    pub fn raw_score(&self, x: &[f64]) -> f64 {
        let mut z = vec![0.0; self.scored.len()];
        self.scaled(x, &mut z);
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
        self.score_in_range(x, None, 1.0)
    }
}

impl KMeansDetector {
    /// [`Detector::score`] read beside the recent range ([`crate::RecentRange`]): a scored level (not
    /// a trend) counts at most `MIN_RAW_THRESHOLD × level ratio / SPIKE_RATIO` — it reaches the
    /// smallest threshold only [`crate::SPIKE_RATIO`] of its signal's ranges out — and a spike ratio
    /// of [`crate::SPIKE_RATIO`] scores at the threshold (the raw score is the larger of the two
    /// readings; a spike that leads is the window's first top feature and its type). A window alarms
    /// where its raw score reaches `level` thresholds (the engine's [`crate::budget::AlarmLevel`];
    /// `1` reads the threshold alone).
    pub fn score_in_range(
        &self,
        x: ArrayView1<'_, f64>,
        reading: Option<&RangeReading>,
        level: f64,
    ) -> Score {
        let width = self.scaler.width();
        let mut z = vec![0.0; self.scored.len()];
        match x.as_slice() {
            Some(s) if s.len() == width => self.scaled(s, &mut z),
            _ if x.len() == width => {
                let owned = x.to_vec();
                self.scaled(&owned, &mut z);
            }
            _ => {}
        }
        // Deviations from the nearest normal mode: the raw score and the explanation both read them.
        let mut dev: Vec<f64> = match self.nearest(&z) {
            Some(c) => z.iter().zip(c).map(|(a, b)| a - b).collect(),
            None => z.clone(),
        };
        // What the model alone says (what a labelled tree was trained beside).
        let model_raw = top_k_rms(dev.iter().copied(), dev.len());
        if let Some(r) = reading {
            for (d, &i) in dev.iter_mut().zip(&self.scored) {
                if let Some(&level) = r.level.get(i)
                    && level.is_finite()
                    && !self.is_trend(i)
                {
                    let cap = MIN_RAW_THRESHOLD * level.max(0.0) / SPIKE_RATIO;
                    if d.abs() > cap {
                        *d = cap.copysign(*d);
                    }
                }
            }
        }
        let level_raw = top_k_rms(dev.iter().copied(), dev.len());
        let spike_raw = reading.map_or(0.0, |r| self.threshold * r.spike / SPIKE_RATIO);
        let spike_led = spike_raw > level_raw && spike_raw.is_finite();
        let raw = if spike_led { spike_raw } else { level_raw };
        let unsupervised = squash(raw, self.threshold * level);
        // With labels: where labelled windows fell (evidence e), their verdict p counts in proportion,
        // so a labelled pattern can lift a quiet window above 0.5 or hold a known false alarm below it;
        // where only unlabelled windows fell, the unsupervised score stands (novel anomalies still show).
        // The tree reads the model's own raw score, as in training: a pattern a person called normal
        // stays normal whatever the recent range says of it.
        let value = match &self.tree {
            Some(tree) => {
                z.push(model_raw);
                let (p, e) = tree.leaf(&z);
                z.pop();
                e * p + (1.0 - e) * unsupervised
            }
            None => unsupervised,
        };
        let is_anomaly = value >= 0.5;
        // Explanations rank deviations from the nearest normal mode, by schema index.
        let mut top: Vec<(usize, f64)> = top_features(&dev, 3)
            .into_iter()
            .map(|(i, v)| (self.scored[i], v))
            .collect();
        let spiked = match (spike_led, reading, x.as_slice()) {
            (true, Some(r), Some(row)) => {
                top.insert(0, (r.spike_feature, self.plain_z(row, r.spike_feature)));
                top.truncate(3);
                Some(guess(&self.feature_names, &top[..1]))
            }
            _ => None,
        };
        // The type reads how far each signal moved now: a trend counts its short slope without
        // waiting for the long one to agree (that wait guards the verdict, not the diagnosis).
        let anomaly_type = if is_anomaly {
            let typing: Vec<f64> = match x.as_slice() {
                Some(row) if !self.sustain.is_empty() && row.len() == width => dev
                    .iter()
                    .enumerate()
                    .map(|(j, d)| match self.sustain.get(j).copied().flatten() {
                        Some(_) => crate::compress(self.z_with(row, j, false)),
                        None => *d,
                    })
                    .collect(),
                _ => dev.clone(),
            };
            match spiked {
                Some(kind) if kind != AnomalyKind::Unknown => kind,
                _ => self.kind_of(&z, &typing, &top),
            }
        } else {
            AnomalyKind::Unknown
        };
        Score {
            value,
            raw,
            is_anomaly,
            settled: raw <= self.settle && value < 0.5,
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
        let t = calibrate(raw.clone(), 0.001);
        assert!((t - 1000f64.ln()).abs() < 0.1, "{t}");
        // Extrapolated beyond the data: the 1 - 1e-6 quantile is ln(1e6) ≈ 13.8.
        let t = calibrate(raw, 1e-6);
        assert!((t - 1e6f64.ln()).abs() < 0.1, "{t}");
    }

    #[test]
    fn calibration_is_robust_to_a_few_anomalous_windows_and_small_samples() {
        // 30 exponential distances (evenly spaced quantiles), then the same with 3 of them huge.
        let clean: Vec<f64> = (1..=30)
            .map(|i| -(1.0 - f64::from(i) / 31.0).ln())
            .collect();
        let t_clean = calibrate(clean.clone(), 1e-4);
        let mut dirty = clean;
        for v in dirty.iter_mut().take(3) {
            *v = 500.0;
        }
        let t_dirty = calibrate(dirty, 1e-4);
        assert!(t_clean > 5.0 && t_clean < 15.0, "{t_clean}");
        assert!(t_dirty < 2.0 * t_clean, "{t_clean} -> {t_dirty}");
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
