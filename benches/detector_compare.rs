//! k-means distance or Gaussian-mixture likelihood? Both fitted on the same robust z-scores of the same
//! seeded synthetic training data (daily-like load cycle + noise, 6 signals, 60 features), both
//! thresholds calibrated the same way to a 1-in-1,000 budget, then scored on a clean stretch and on a
//! level shift, a slow leak and a spike. Prints PR-AUC per fault, detection delay, the clean stretch's
//! false-alarm rate and the cost of scoring. Run: `cargo bench --bench detector_compare`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

#[path = "support/synthetic.rs"]
mod synthetic;

use std::time::Instant;

use linfa::prelude::*;
use linfa_clustering::GaussianMixtureModel;
use ndarray::{Array1, Array2, ArrayView1};
use synthetic::{Fault, features, rows, signals};
use vigil::features::{Horizons, Window};
use vigil::models::explain::average_precision;
use vigil::models::{Detector, KMeansDetector, KMeansParams, calibrate};

/// Negative log-likelihood under a fitted GMM (log-sum-exp over components, full precision matrices).
struct Gmm {
    weights: Array1<f64>,
    means: Array2<f64>,
    precisions: Vec<Array2<f64>>,
    log_dets: Vec<f64>,
}

/// log det of a symmetric positive-definite matrix by Cholesky.
fn log_det(m: &Array2<f64>) -> f64 {
    let n = m.nrows();
    let mut l = Array2::<f64>::zeros((n, n));
    for i in 0..n {
        for j in 0..=i {
            let mut s = m[[i, j]];
            for k in 0..j {
                s -= l[[i, k]] * l[[j, k]];
            }
            if i == j {
                l[[i, i]] = s.max(1e-300).sqrt();
            } else {
                l[[i, j]] = s / l[[j, j]];
            }
        }
    }
    (0..n).map(|i| 2.0 * l[[i, i]].ln()).sum()
}

impl Gmm {
    fn nll(&self, z: &[f64]) -> f64 {
        let d = z.len() as f64;
        let mut terms = Vec::with_capacity(self.weights.len());
        for k in 0..self.weights.len() {
            let diff: Vec<f64> = z
                .iter()
                .zip(self.means.row(k))
                .map(|(a, b)| a - b)
                .collect();
            let p = &self.precisions[k];
            let mut q = 0.0;
            for i in 0..diff.len() {
                let mut s = 0.0;
                for j in 0..diff.len() {
                    s += p[[i, j]] * diff[j];
                }
                q += diff[i] * s;
            }
            terms.push(
                self.weights[k].ln() + 0.5 * self.log_dets[k]
                    - 0.5 * q
                    - 0.5 * d * (2.0 * std::f64::consts::PI).ln(),
            );
        }
        let m = terms.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        -(m + terms.iter().map(|t| (t - m).exp()).sum::<f64>().ln())
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let h = Horizons::default();
    let mut w = Window::new(&signals(), h);
    let train = features(&mut w, &rows(1, 0, 6000, Fault::None, 0));
    let names = w.schema().names().to_vec();
    let units = w.schema().units().to_vec();
    let km = KMeansDetector::fit(
        &names,
        &units,
        train.iter().map(|r| &r[..]),
        KMeansParams::default(),
    )
    .unwrap();

    // The GMM sees exactly the k-means detector's scaled inputs.
    let zs = |x: &[f64]| {
        let mut z = vec![0.0; x.len()];
        km.scaler.transform(x, &mut z);
        z
    };
    let ztrain: Vec<f64> = train.iter().flat_map(|r| zs(r)).collect();
    let ztrain = Array2::from_shape_vec((train.len(), names.len()), ztrain).unwrap();
    let t = Instant::now();
    let fitted = GaussianMixtureModel::params(8)
        .n_runs(1)
        .reg_covariance(1e-3)
        .max_n_iterations(200)
        .fit(&DatasetBase::from(ztrain.clone()))
        .unwrap();
    let gmm_fit = t.elapsed();
    let gmm = Gmm {
        weights: fitted.weights().clone(),
        means: fitted.means().clone(),
        precisions: fitted
            .precisions()
            .outer_iter()
            .map(|p| p.to_owned())
            .collect(),
        log_dets: fitted
            .precisions()
            .outer_iter()
            .map(|p| log_det(&p.to_owned()))
            .collect(),
    };
    let gmm_train: Vec<f64> = ztrain
        .rows()
        .into_iter()
        .map(|r| gmm.nll(r.as_slice().unwrap()))
        .collect();
    let gmm_min = gmm_train.iter().cloned().fold(f64::INFINITY, f64::min);
    let gmm_thr = calibrate(gmm_train.iter().map(|v| v - gmm_min).collect(), 0.001);
    let t = Instant::now();
    let _ = KMeansDetector::fit(
        &names,
        &units,
        train.iter().map(|r| &r[..]),
        KMeansParams::default(),
    )
    .unwrap();
    let km_fit = t.elapsed();

    println!("detector   fault        PR-AUC  first alarm after onset (ticks)");
    let mut fa = [(0usize, 0usize); 2];
    let mut cost = [0.0f64; 2];
    for fault in [Fault::None, Fault::LevelShift, Fault::Leak, Fault::Spike] {
        let mut w = Window::new(&signals(), h);
        let test = features(&mut w, &rows(7, 6000, 3000, fault, 1500));
        let onset = 1500 - 59;
        let truth = |i: usize| match fault {
            Fault::None => false,
            Fault::Spike => (onset..onset + 60).contains(&i),
            _ => i >= onset,
        };
        for (m, name) in ["kmeans", "gmm"].iter().enumerate() {
            let t = Instant::now();
            let scores: Vec<f64> = test
                .iter()
                .map(|x| {
                    if m == 0 {
                        km.score(ArrayView1::from(&x[..])).value
                    } else {
                        let raw = gmm.nll(&zs(x)) - gmm_min;
                        raw / (raw + gmm_thr)
                    }
                })
                .collect();
            cost[m] += t.elapsed().as_secs_f64() / test.len() as f64;
            if fault == Fault::None {
                fa[m] = (scores.iter().filter(|s| **s >= 0.5).count(), scores.len());
                continue;
            }
            let scored: Vec<(f64, bool)> = scores
                .iter()
                .enumerate()
                .map(|(i, s)| (*s, truth(i)))
                .collect();
            let first = scores[onset..].iter().position(|s| *s >= 0.5);
            println!(
                "{name:<9}  {:<11}  {:.3}   {}",
                format!("{fault:?}"),
                average_precision(&scored),
                first.map_or("never".into(), |f| f.to_string())
            );
        }
    }
    for (m, name) in ["kmeans", "gmm"].iter().enumerate() {
        println!(
            "{name:<9}  clean stretch: {} alarms in {} windows; fit {:.3}s; score {:.1} µs/window",
            fa[m].0,
            fa[m].1,
            if m == 0 {
                km_fit.as_secs_f64()
            } else {
                gmm_fit.as_secs_f64()
            },
            cost[m] / 3.0 * 1e6
        );
    }
}
