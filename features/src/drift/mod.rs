//! Drift: how far live feature distributions have moved from the training reference.
//!
//! - [`psi`]: population stability index over shared bins. `PSI = Σ (aᵢ − eᵢ) · ln(aᵢ / eᵢ)`, ≥ 0,
//!   0 for identical distributions; the usual reading is < 0.1 stable, 0.1–0.25 moderate, > 0.25 shifted.
//! - [`ks_two_sample`]: the two-sample Kolmogorov–Smirnov statistic, the largest gap between two empirical
//!   CDFs, in `[0, 1]`.
//! - [`DriftReference`] holds, per feature, bin edges at the reference's quantiles and the reference's
//!   proportions; [`DriftMonitor`] keeps bin counts over the last `window` live vectors, updated
//!   incrementally as each vector enters and the oldest leaves (no re-scan, memory fixed at
//!   construction), and reports PSI and a binned KS per feature. [`DriftReport::top`] names the features
//!   that drifted most.

mod monitor;

pub use monitor::{DriftMonitor, DriftReference, DriftReport};

/// Smallest proportion used inside the logarithm, so an empty bin gives a large but finite PSI.
pub const PSI_EPSILON: f64 = 1e-4;

/// Population stability index between two discrete distributions over the same bins (proportions or
/// counts; each side is normalised). Empty bins are floored at [`PSI_EPSILON`]. `NaN` when either side is
/// empty.
pub fn psi(expected: &[f64], actual: &[f64]) -> f64 {
    let (se, sa): (f64, f64) = (expected.iter().sum(), actual.iter().sum());
    if se <= 0.0 || sa <= 0.0 || expected.len() != actual.len() {
        return f64::NAN;
    }
    expected
        .iter()
        .zip(actual)
        .map(|(e, a)| {
            let e = (e / se).max(PSI_EPSILON);
            let a = (a / sa).max(PSI_EPSILON);
            (a - e) * (a / e).ln()
        })
        .sum()
}

/// Exact two-sample KS statistic `sup |F_a(x) − F_b(x)|`, ignoring `NaN`s; `NaN` when either side has no
/// values. Sorts copies of both inputs.
pub fn ks_two_sample(a: &[f64], b: &[f64]) -> f64 {
    let sorted = |v: &[f64]| {
        let mut s: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
        s.sort_unstable_by(f64::total_cmp);
        s
    };
    let (a, b) = (sorted(a), sorted(b));
    if a.is_empty() || b.is_empty() {
        return f64::NAN;
    }
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j, mut d) = (0usize, 0usize, 0.0f64);
    while i < a.len() && j < b.len() {
        // Step past every copy of the smaller value on both sides before comparing the CDFs.
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / na - j as f64 / nb).abs());
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psi_known_values() {
        assert_eq!(psi(&[1.0, 1.0], &[2.0, 2.0]), 0.0);
        let p = psi(&[0.5, 0.5], &[0.9, 0.1]);
        let expected = (0.9 - 0.5) * (0.9f64 / 0.5).ln() + (0.1 - 0.5) * (0.1f64 / 0.5).ln();
        assert!((p - expected).abs() < 1e-12);
        assert!(psi(&[0.0, 0.0], &[1.0, 0.0]).is_nan());
    }

    #[test]
    fn ks_known_values() {
        assert_eq!(ks_two_sample(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]), 0.0);
        assert_eq!(ks_two_sample(&[1.0, 2.0], &[3.0, 4.0]), 1.0);
        assert!((ks_two_sample(&[1.0, 2.0, 3.0, 4.0], &[3.0, 4.0, 5.0, 6.0]) - 0.5).abs() < 1e-12);
        assert!(ks_two_sample(&[], &[1.0]).is_nan());
    }
}
