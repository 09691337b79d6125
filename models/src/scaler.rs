//! Robust scaling: `z = (x − median) / scale`, `scale = max(1.4826 · MAD, floor)`, fitted on training rows.
//!
//! The floor is what a feature's unit says a meaningful change is, so a feature that was constant (or
//! nearly so) in training does not get a scale of nothing and drown every other feature the first time
//! it moves a little: one task or thread for counts, Poisson noise for event rates, a page-sized amount
//! or 0.1 % of the level for bytes, one percentage point for ratios, 50 µs or 5 % for durations. See
//! [`floor_for`].

use serde::{Deserialize, Serialize};

use crate::ModelError;

/// Where a robust z-score starts to be compressed, so one wild feature cannot drown every other in a
/// distance: see [`compress`].
pub const Z_CLIP: f64 = 50.0;

/// `Z_CLIP · asinh(z / Z_CLIP)`: the identity for |z| well below [`Z_CLIP`], logarithmic beyond it —
/// strictly monotone, so larger deviations always score higher (no plateau for a threshold sweep to
/// sit on), while a feature at 10⁴ robust standard deviations weighs about 6 × `Z_CLIP`, not 10⁴.
pub fn compress(z: f64) -> f64 {
    if z.is_finite() {
        Z_CLIP * (z / Z_CLIP).asinh()
    } else if z.is_nan() {
        0.0
    } else {
        z.signum() * Z_CLIP * 1e300f64.asinh()
    }
}

/// Per-feature median and robust scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RobustScaler {
    /// Median per feature (0 when the feature never had a value in training).
    pub median: Vec<f64>,
    /// 1.4826 · MAD per feature, floored so constant features stay finite.
    pub scale: Vec<f64>,
}

/// `(signal, horizon)` of a short-horizon level feature: `x.median_10` → `("x", 10.0)`.
fn short_level_of(name: &str) -> Option<(&str, f64)> {
    let (signal, stat) = name.split_once('.')?;
    let h = stat
        .strip_prefix("median_")
        .or_else(|| stat.strip_prefix("mean_"))?;
    let h: f64 = h.parse().ok()?;
    (h >= 1.0).then_some((signal, h))
}

/// The robust spread of sorted values: `1.4826 · MAD`, or a third of the larger distance from the
/// median to the 1st or 99th percentile when that is larger (heavy tails, mostly-constant columns).
fn robust_spread(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return 0.0;
    }
    let m = median_of(sorted);
    let mut dev: Vec<f64> = sorted.iter().map(|v| (v - m).abs()).collect();
    dev.sort_unstable_by(f64::total_cmp);
    let mad = 1.4826 * median_of(&dev);
    let q = |p: f64| sorted[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
    let tail = if n >= 100 {
        ((q(0.99) - m).max(m - q(0.01)) / 3.0).max(0.0)
    } else {
        0.0
    };
    mad.max(tail)
}

/// Median of sorted values (`0` when empty).
pub(crate) fn median_of(sorted: &[f64]) -> f64 {
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
    /// Fits on `rows` (each of width `width`), ignoring non-finite values, without unit floors (every
    /// feature's floor is relative to its level); [`RobustScaler::fit_with_units`] is what detectors use.
    pub fn fit<'a>(
        rows: impl IntoIterator<Item = &'a [f64]>,
        width: usize,
    ) -> Result<Self, ModelError> {
        let blank = vec![String::new(); width];
        Self::fit_with_units(rows, &blank, &blank, 1.0)
    }

    /// Fits on `rows` with a floor per feature from its unit (`units[i]`, as feature schemas write them:
    /// `count`, `bytes/s`, ...) and the tick length in seconds (rates are noisier on short ticks). A
    /// feature whose name has a `.slope_` statistic gets its level's floor spread over ten ticks.
    pub fn fit_with_units<'a>(
        rows: impl IntoIterator<Item = &'a [f64]>,
        names: &[String],
        units: &[String],
        tick_seconds: f64,
    ) -> Result<Self, ModelError> {
        let width = units.len();
        // Row references only: the columns are gathered one at a time, so fitting on a few thousand
        // windows of hundreds of features never holds a second copy of them (the agent fits on its
        // own thread inside the host; its transient memory shows in the host's RSS).
        let rows: Vec<&[f64]> = rows.into_iter().collect();
        if let Some(bad) = rows.iter().find(|r| r.len() != width) {
            return Err(ModelError::SchemaMismatch {
                expected: format!("{width} features"),
                got: format!("{} values", bad.len()),
                detail: "rows of different widths".into(),
            });
        }
        let mut col: Vec<f64> = Vec::with_capacity(rows.len());
        let mut dev: Vec<f64> = Vec::with_capacity(rows.len());
        let sorted_column = |i: usize, col: &mut Vec<f64>| {
            col.clear();
            col.extend(rows.iter().map(|r| r[i]).filter(|v| v.is_finite()));
            col.sort_unstable_by(f64::total_cmp);
        };
        let mut median = Vec::with_capacity(width);
        let mut scale = Vec::with_capacity(width);
        for (i, (unit, name)) in units.iter().zip(names).enumerate() {
            // A slope's floor is relative to its signal's level (the median of its last value).
            let slope_level = name.split_once(".slope_").map(|(signal, h)| {
                let level = names
                    .iter()
                    .position(|n| n.strip_suffix(".last") == Some(signal))
                    .map_or(0.0, |l| {
                        sorted_column(l, &mut col);
                        median_of(&col)
                    });
                (level, h.parse::<f64>().unwrap_or(10.0).max(1.0))
            });
            sorted_column(i, &mut col);
            let m = median_of(&col);
            dev.clear();
            dev.extend(col.iter().map(|v| (v - m).abs()));
            dev.sort_unstable_by(f64::total_cmp);
            let mad = 1.4826 * median_of(&dev);
            // A feature that barely moved in training (MAD 0: more than half the windows equal): its
            // standard deviation says how far it strays; the unit's floor says what a real change is.
            let spread = if mad > 0.0 {
                mad
            } else {
                let n = col.len().max(1) as f64;
                let mean = col.iter().sum::<f64>() / n;
                (col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt()
            };
            let floor = match slope_level {
                // A slope's floor: its level's floor, or 1 % of the level, per horizon.
                Some((level, ticks)) => {
                    let level_unit = unit.strip_suffix("/s").unwrap_or(unit);
                    floor_for(level_unit, level, tick_seconds).max(0.01 * level.abs())
                        / (ticks * tick_seconds.max(1e-9))
                }
                None => floor_for(unit, m, tick_seconds),
            };
            // Heavy tails: a feature whose 1st or 99th percentile lies further out than three times
            // its MAD strays that far routinely (probe latencies, bursty rates), so its scale is at
            // least a third of that distance: routine excursions stay below 3. Only from 100 values
            // on, where those percentiles are not simply the extremes.
            let q = |p: f64| {
                col.get(((p * col.len() as f64).ceil() as usize).clamp(1, col.len().max(1)) - 1)
                    .copied()
                    .unwrap_or(m)
            };
            let tail = if col.len() >= 100 {
                ((q(0.99) - m).max(m - q(0.01)) / 3.0).max(0.0)
            } else {
                0.0
            };
            // A short-horizon level (`x.median_10`, `x.mean_10`) of a signal that is usually flat
            // but bursts (zero most of the time, spikes now and then) has almost no spread of its
            // own, so the first cluster of bursts would read as thousands of robust sd. Its noise
            // floor comes from the signal's own variation: the spread of its raw values (`x.last`,
            // MAD or a third of its 1–99 % tail) averaged over the horizon (÷ √h). Scale-free: a
            // column in bytes or normalised to [0, 1] gets the same z.
            let raw_floor = short_level_of(name)
                .and_then(|(signal, h)| {
                    let last = names
                        .iter()
                        .position(|n| n.strip_suffix(".last") == Some(signal))?;
                    sorted_column(last, &mut col);
                    Some(robust_spread(&col) / h.sqrt())
                })
                .unwrap_or(0.0);
            let s = spread.max(tail).max(floor).max(raw_floor).max(
                vigil_features::vocab::resolution_of_feature(name, tick_seconds),
            );
            median.push(m);
            scale.push(if s.is_finite() && s > 0.0 { s } else { 1.0 });
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
                compress((x - m) / s)
            } else {
                0.0
            };
        }
    }
}

/// The smallest scale a feature gets: what its unit says is a meaningful change around `level`.
///
/// `unit` is a level's unit as schemas write it: a base unit (`count`, `ratio`, `seconds`, `bytes`,
/// `per_second`, `celsius`, `watts`), with `/s` for a counter's rate. Unknown units get a floor
/// relative to the level (0.1 %) and no absolute part, since nothing is known of their scale.
pub fn floor_for(unit: &str, level: f64, tick_seconds: f64) -> f64 {
    let tick = if tick_seconds.is_finite() && tick_seconds > 0.0 {
        tick_seconds
    } else {
        1.0
    };
    let level = if level.is_finite() { level.abs() } else { 0.0 };
    // Counter rates (`count/s`) and event-rate gauges (`per_second`) are Poisson-like: counting `n`
    // events in a tick has noise sqrt(n), i.e. sqrt(rate / tick) on the rate, and one event per tick is
    // the resolution.
    let rate_floor = |rate: f64| (rate.max(1.0 / tick) / tick).sqrt();
    let f = match unit {
        "count" => 1.0,
        "count/s" | "per_second" => rate_floor(level),
        "bytes" => (4096.0f64).max(1e-3 * level),
        // Byte rates (allocation traffic) are bursty: 5 % of the level, at least a page per tick.
        "bytes/s" => (4096.0 / tick).max(0.05 * level),
        "ratio" => 0.01,
        // Durations: 50 µs is below anything a request-latency measurement resolves (histogram
        // buckets start at 1 ms), so smaller shifts in a delay are not worth an alarm.
        "seconds" | "seconds/s" => (50e-6f64).max(0.05 * level),
        "celsius" => 1.0,
        "watts" => (1.0f64).max(0.02 * level),
        _ => 1e-3 * level,
    };
    f.max(1e-12)
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
        assert!(z[0] > Z_CLIP && z[0] < 20.0 * Z_CLIP, "{}", z[0]);
        let mut z2 = [0.0];
        s.transform(&[1e12], &mut z2);
        assert!(
            z2[0] > z[0],
            "compression is strictly monotone: {} vs {}",
            z2[0],
            z[0]
        );
    }

    #[test]
    fn constant_features_get_the_floor_of_their_unit() {
        let units = |u: &str| vec![u.to_owned()];
        let mut z = [0.0];
        // Seven threads all through training; one more thread is one unit, not 14 "sigmas" (the old
        // floor of 1 % of the level made it 1 / 0.07).
        let rows = vec![[7.0]; 50];
        let s = RobustScaler::fit_with_units(
            rows.iter().map(|r| &r[..]),
            &units("x"),
            &units("count"),
            1.0,
        )
        .unwrap();
        s.transform(&[8.0], &mut z);
        assert!((z[0] - 1.0).abs() < 1e-3, "{}", z[0]);
        s.transform(&[40.0], &mut z);
        assert!(z[0] > 30.0, "a real jump stays loud: {}", z[0]);
        // No errors in training: one error in a 100 ms tick (10/s) is about one unit of Poisson noise,
        // a burst of 100 errors/s is ten.
        let rows = vec![[0.0]; 50];
        let s = RobustScaler::fit_with_units(
            rows.iter().map(|r| &r[..]),
            &units("x"),
            &units("count/s"),
            0.1,
        )
        .unwrap();
        s.transform(&[10.0], &mut z);
        assert!(z[0] <= 1.0 + 1e-9, "{}", z[0]);
        s.transform(&[100.0], &mut z);
        assert!(z[0] >= 9.9, "{}", z[0]);
        // A steady 12 GiB of GPU memory: a page more is nothing, 256 MiB more is loud.
        let rows = vec![[12.0 * (1u64 << 30) as f64]; 50];
        let s = RobustScaler::fit_with_units(
            rows.iter().map(|r| &r[..]),
            &units("x"),
            &units("bytes"),
            1.0,
        )
        .unwrap();
        s.transform(&[12.0 * (1u64 << 30) as f64 + 4096.0], &mut z);
        assert!(z[0] < 0.01, "{}", z[0]);
        s.transform(
            &[12.0 * (1u64 << 30) as f64 + (256u64 << 20) as f64],
            &mut z,
        );
        assert!(z[0] > 15.0, "{}", z[0]);
        // Without units: finite, relative to the level.
        let rows = vec![[1700.0]; 50];
        let s = RobustScaler::fit(rows.iter().map(|r| &r[..]), 1).unwrap();
        s.transform(&[1701.0], &mut z);
        assert!(z[0] <= 1.0, "{}", z[0]);
    }

    #[test]
    fn floors_read_the_unit_suffixes() {
        // count/s is a counter's rate (Poisson).
        assert!((floor_for("count/s", 0.0, 1.0) - 1.0).abs() < 1e-12);
        assert!((floor_for("count/s", 10_000.0, 1.0) - 100.0).abs() < 1e-9);
        assert!((floor_for("count", 5.0, 1.0) - 1.0).abs() < 1e-12);
        assert!((floor_for("count/s", 5.0, 0.1) - 10.0).abs() < 1e-9);
        assert!((floor_for("ratio", 0.5, 1.0) - 0.01).abs() < 1e-12);
        assert!((floor_for("seconds", 1.0, 1.0) - 0.05).abs() < 1e-12);
        assert!((floor_for("mystery", 100.0, 1.0) - 0.1).abs() < 1e-12);
        // A slope gets its level's floor over ten ticks.
        let rows = vec![[0.0]; 50];
        let s = RobustScaler::fit_with_units(
            rows.iter().map(|r| &r[..]),
            &["tasks.slope_10".to_owned()],
            &["count/s".to_owned()],
            1.0,
        )
        .unwrap();
        assert!((s.scale[0] - 0.1).abs() < 1e-12, "{}", s.scale[0]);
    }
}
