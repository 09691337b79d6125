//! Robust scaling: `z = (x − median) / (1.4826 · MAD)`, fitted on training rows.

use serde::{Deserialize, Serialize};

use crate::ModelError;

/// |z| is clipped here so one wild feature cannot drown every other in a distance.
pub const Z_CLIP: f64 = 50.0;

/// Per-feature median and robust scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RobustScaler {
    /// Median per feature (0 when the feature never had a value in training).
    pub median: Vec<f64>,
    /// 1.4826 · MAD per feature, floored so constant features stay finite.
    pub scale: Vec<f64>,
}

fn median_of(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return 0.0;
    }
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        0.5 * (sorted[n / 2 - 1] + sorted[n / 2])
    }
}

impl RobustScaler {
    /// Fits on `rows` (each of width `width`), ignoring non-finite values.
    pub fn fit<'a>(
        rows: impl IntoIterator<Item = &'a [f64]>,
        width: usize,
    ) -> Result<Self, ModelError> {
        let mut cols: Vec<Vec<f64>> = vec![Vec::new(); width];
        for row in rows {
            if row.len() != width {
                return Err(ModelError::SchemaMismatch {
                    expected: format!("{width} features"),
                    got: format!("{} values", row.len()),
                    detail: "rows of different widths".into(),
                });
            }
            for (c, v) in cols.iter_mut().zip(row) {
                if v.is_finite() {
                    c.push(*v);
                }
            }
        }
        let mut median = Vec::with_capacity(width);
        let mut scale = Vec::with_capacity(width);
        for mut c in cols {
            c.sort_by(f64::total_cmp);
            let m = median_of(&c);
            let mut dev: Vec<f64> = c.iter().map(|v| (v - m).abs()).collect();
            dev.sort_by(f64::total_cmp);
            let mad = 1.4826 * median_of(&dev);
            // A feature that barely moved in training: fall back to its standard deviation, then to a
            // floor relative to its level, so a later change is large but finite.
            let s = if mad > 0.0 {
                mad
            } else {
                let n = c.len().max(1) as f64;
                let mean = c.iter().sum::<f64>() / n;
                let sd = (c.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
                if sd > 0.0 { sd } else { 0.01 * m.abs() + 1e-6 }
            };
            median.push(m);
            scale.push(s);
        }
        Ok(Self { median, scale })
    }

    /// Number of features.
    pub fn width(&self) -> usize {
        self.median.len()
    }

    /// Writes clipped robust z-scores of `x` into `z`; missing (non-finite) values become 0.
    pub fn transform(&self, x: &[f64], z: &mut [f64]) {
        for (((z, x), m), s) in z.iter_mut().zip(x).zip(&self.median).zip(&self.scale) {
            *z = if x.is_finite() {
                ((x - m) / s).clamp(-Z_CLIP, Z_CLIP)
            } else {
                0.0
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_mad_ignore_outliers_and_nans() {
        let rows: Vec<[f64; 1]> = [1.0, 2.0, 3.0, 4.0, 1000.0, f64::NAN]
            .iter()
            .map(|v| [*v])
            .collect();
        let s = RobustScaler::fit(rows.iter().map(|r| &r[..]), 1).unwrap();
        assert_eq!(s.median[0], 3.0);
        assert!((s.scale[0] - 1.4826).abs() < 1e-12);
        let mut z = [0.0];
        s.transform(&[f64::NAN], &mut z);
        assert_eq!(z[0], 0.0);
        s.transform(&[1e9], &mut z);
        assert_eq!(z[0], Z_CLIP);
    }

    #[test]
    fn constant_features_get_a_finite_scale() {
        let rows = vec![[2.0]; 50];
        let s = RobustScaler::fit(rows.iter().map(|r| &r[..]), 1).unwrap();
        assert!(s.scale[0] > 0.0 && s.scale[0].is_finite());
        let mut z = [0.0];
        s.transform(&[3.0], &mut z);
        assert!(
            z[0] > 40.0,
            "a worker-count change from 2 to 3 is loud: {}",
            z[0]
        );
        // ... but one more task on a steady 1,700 is not a saturated outlier.
        let rows = vec![[1700.0]; 50];
        let s = RobustScaler::fit(rows.iter().map(|r| &r[..]), 1).unwrap();
        s.transform(&[1701.0], &mut z);
        assert!(z[0] < 1.0, "{}", z[0]);
    }
}
