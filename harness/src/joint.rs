//! `vigil bench corpus --joint-moves`: a test of joint moves made from a corpus's own normal rows.
//!
//! Real anomalies are often several signals moving together while each stays inside the range it
//! always had — more requests *and* more latency *and* fewer cache hits, each alone unremarkable. A
//! per-signal rule cannot see such a window; a multivariate model can. No labelled corpus holds such
//! moves on purpose, so this builds one from each series' training rows, which the corpus calls
//! normal:
//!
//! - the first 60 % of the training rows train; the rest are the test rows;
//! - about once a day of test rows (seeded, deterministic), a segment of one to three hours gets a
//!   **joint move**: [`COLUMNS`] columns, drawn among those with a spread, are shifted together, in
//!   the same direction, by [`SHIFT`] of their own robust standard deviations (1.4826 × MAD over the
//!   training rows) — then clipped to that column's training minimum and maximum, so every value
//!   stays inside its own range;
//! - the labels are exactly the moved rows.
//!
//! Recall on this corpus is the share of joint moves caught; its false events are what the method
//! raises on normal rows (the same rows it trains beside, so fewer surprises than the real test
//! period).

/// Rows of one file: `(timestamp, values)`.
type Rows = Vec<(f64, Vec<f64>)>;

/// A joint-move test: training rows, test rows with joint moves, and the moved rows' labels.
pub(crate) struct JointTest {
    pub(crate) train: Rows,
    pub(crate) test: Rows,
    pub(crate) labels: Vec<bool>,
}

/// Columns that move together in each segment (fewer when a series has fewer with a spread).
pub(crate) const COLUMNS: usize = 4;
/// How far each moved column shifts, in its own robust standard deviations: a move a per-signal
/// alarm at 0.5 % of rows (≈ 2.6 sd for a normal column, more for the heavy tails of real metrics)
/// does not see in any one column, while four columns two sd out together are, as a point in the
/// joint space, about 4 sd from the centre.
pub(crate) const SHIFT: f64 = 2.0;
/// Share of the training rows kept for training; the rest become the test rows.
const TRAIN_SHARE: f64 = 0.6;

/// Median and robust sd (1.4826 × MAD) of the finite values; `None` without a spread.
fn robust(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let mut v: Vec<f64> = values.filter(|x| x.is_finite()).collect();
    if v.len() < 10 {
        return None;
    }
    v.sort_unstable_by(f64::total_cmp);
    let median = v[v.len() / 2];
    let mut dev: Vec<f64> = v.iter().map(|x| (x - median).abs()).collect();
    dev.sort_unstable_by(f64::total_cmp);
    let sd = 1.4826 * dev[dev.len() / 2];
    (sd > 0.0).then_some((median, sd))
}

/// A number in `[0, 1)` from a seed (deterministic).
fn unit(seed: u64, k: u64) -> f64 {
    crate::scenes::load::unit(seed ^ k.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// The joint-move test made of a series' training rows `rows` (see the module documentation); `None`
/// when they have fewer than two columns with a spread, or too few rows for a test period of a day.
pub(crate) fn joint_moves(rows: &[(f64, Vec<f64>)], seed: u64, tick: f64) -> Option<JointTest> {
    let split = (rows.len() as f64 * TRAIN_SHARE) as usize;
    let (train, test) = rows.split_at(split);
    let width = train.first()?.1.len();
    let day = (86_400.0 / tick).round().max(1.0) as usize;
    if test.len() < day {
        return None;
    }
    // Columns with a spread: (index, robust sd, training min, training max).
    let movable: Vec<(usize, f64, f64, f64)> = (0..width)
        .filter_map(|j| {
            let col = || train.iter().map(move |r| r.1[j]);
            let (_, sd) = robust(col())?;
            let lo = col()
                .filter(|x| x.is_finite())
                .fold(f64::INFINITY, f64::min);
            let hi = col()
                .filter(|x| x.is_finite())
                .fold(f64::NEG_INFINITY, f64::max);
            Some((j, sd, lo, hi))
        })
        .collect();
    if movable.len() < 2 {
        return None;
    }
    let hour = (3600.0 / tick).round().max(3.0) as usize;
    let mut test: Vec<(f64, Vec<f64>)> = test.to_vec();
    let mut labels = vec![false; test.len()];
    // One segment per day of test rows, placed at a seeded point inside its day (not in the first
    // or last three hours, so segments never touch).
    let mut k = 0u64;
    let mut day_start = 0;
    while day_start + day <= test.len() {
        let len = hour + (unit(seed, 3 * k) * (2 * hour) as f64) as usize;
        let room = day.saturating_sub(len + 6 * hour);
        let start = day_start + 3 * hour + (unit(seed, 3 * k + 1) * room as f64) as usize;
        let up = unit(seed, 3 * k + 2) < 0.5;
        // Draw the columns without repeats.
        let mut cols: Vec<usize> = Vec::new();
        let mut draw = 0u64;
        while cols.len() < COLUMNS.min(movable.len()) {
            let c = (unit(seed ^ 0xc01, k * 64 + draw) * movable.len() as f64) as usize;
            draw += 1;
            if !cols.contains(&c) {
                cols.push(c);
            }
        }
        for i in start..(start + len).min(test.len()) {
            labels[i] = true;
            for &c in &cols {
                let (j, sd, lo, hi) = movable[c];
                let x = &mut test[i].1[j];
                if x.is_finite() {
                    let moved = if up { *x + SHIFT * sd } else { *x - SHIFT * sd };
                    *x = moved.clamp(lo, hi);
                }
            }
        }
        k += 1;
        day_start += day;
    }
    Some(JointTest {
        train: train.to_vec(),
        test,
        labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_stay_inside_each_column_s_range_and_are_labelled() {
        // Five days of 5-minute rows, three columns with a spread and one constant.
        let tick = 300.0;
        let rows: Vec<(f64, Vec<f64>)> = (0..5 * 288)
            .map(|i| {
                let t = 1.7e9 + i as f64 * tick;
                let w = (i as f64 * 0.7).sin();
                (
                    t,
                    vec![10.0 + w, 100.0 + 5.0 * w.cos(), 7.0, -3.0 + 0.1 * w],
                )
            })
            .collect();
        let j = joint_moves(&rows, 1, tick).expect("three columns move");
        assert_eq!(j.train.len() + j.test.len(), rows.len());
        let moved = j.labels.iter().filter(|l| **l).count();
        assert!(moved >= 12, "{moved} rows moved");
        let original = &rows[j.train.len()..];
        let mut changed_rows = 0;
        for (i, (row, orig)) in j.test.iter().zip(original).enumerate() {
            let changed = row.1 != orig.1;
            // Only labelled rows move (a labelled row whose columns all sat at their bound already
            // may not).
            assert!(!changed || j.labels[i], "row {i} moved unlabelled");
            changed_rows += usize::from(changed);
            assert_eq!(row.1[2], 7.0, "the constant column never moves");
            for c in [0, 1, 3] {
                let lo = j.train.iter().map(|r| r.1[c]).fold(f64::INFINITY, f64::min);
                let hi = j
                    .train
                    .iter()
                    .map(|r| r.1[c])
                    .fold(f64::NEG_INFINITY, f64::max);
                assert!((lo..=hi).contains(&row.1[c]), "row {i} column {c}");
            }
        }
        assert!(
            changed_rows * 10 >= moved * 9,
            "{changed_rows} of {moved} moved"
        );
        // Same seed, same corpus; another seed, other segments.
        assert_eq!(joint_moves(&rows, 1, tick).unwrap().labels, j.labels);
        assert_ne!(joint_moves(&rows, 2, tick).unwrap().labels, j.labels);
    }
}
