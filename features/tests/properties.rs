//! Property tests: the window's features against a naive two-pass reference, and drift bounds.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use vigil_features::drift::{DriftMonitor, DriftReference, ks_two_sample, psi};
use vigil_features::{FeatureSchema, FeatureVector, Horizons, SignalSet, SignalSpec, Unit, Window};

/// Naive statistics over the last `k` rows of one (already rate-converted) column:
/// mean, sample std, max, least-squares slope.
fn naive(ts: &[f64], xs: &[f64], k: usize) -> [f64; 4] {
    let n0 = xs.len().saturating_sub(k);
    let pts: Vec<(f64, f64)> = ts[n0..]
        .iter()
        .zip(&xs[n0..])
        .filter(|(_, x)| !x.is_nan())
        .map(|(t, x)| (*t, *x))
        .collect();
    if pts.is_empty() {
        return [f64::NAN; 4];
    }
    let n = pts.len() as f64;
    let mean = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let max = pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    if pts.len() < 2 {
        return [mean, f64::NAN, max, f64::NAN];
    }
    let var = pts.iter().map(|p| (p.1 - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let mt = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let cov = pts.iter().map(|p| (p.0 - mt) * (p.1 - mean)).sum::<f64>();
    let vt = pts.iter().map(|p| (p.0 - mt).powi(2)).sum::<f64>();
    let slope = if vt > 0.0 { cov / vt } else { f64::NAN };
    [mean, var.sqrt(), max, slope]
}

/// Median of the last `k` values, skipping missing ones (sorted copy).
fn naive_median(xs: &[f64], k: usize) -> f64 {
    let n0 = xs.len().saturating_sub(k);
    let mut v: Vec<f64> = xs[n0..].iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// Naive counter → rate with Prometheus reset semantics, carrying the last valid value over gaps.
fn naive_rates(ts: &[f64], raw: &[f64]) -> Vec<f64> {
    let mut out = Vec::new();
    let mut prev: Option<(f64, f64)> = None;
    for (t, x) in ts.iter().zip(raw) {
        let r = match (prev, x.is_nan()) {
            (Some((pt, pv)), false) => (if *x >= pv { x - pv } else { *x }) / (t - pt),
            _ => f64::NAN,
        };
        out.push(r);
        if !x.is_nan() {
            prev = Some((*t, *x));
        }
    }
    out
}

fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-6 * (1.0 + a.abs().max(b.abs()))
}

/// Rows: strictly increasing timestamps with irregular gaps; a gauge with NaNs; a counter with resets
/// and gaps.
fn rows() -> impl Strategy<Value = Vec<(f64, f64, f64)>> {
    prop::collection::vec(
        (
            0.1f64..5.0,
            prop_oneof![9 => -1e6f64..1e6, 1 => Just(f64::NAN)],
            prop_oneof![8 => 0.0f64..1000.0, 1 => Just(-1.0), 1 => Just(f64::NAN)],
        ),
        1..150,
    )
    .prop_map(|v| {
        let (mut t, mut c) = (1_700_000_000.0, 0.0);
        v.into_iter()
            .map(|(dt, g, inc)| {
                t += dt;
                let counter = if inc.is_nan() {
                    f64::NAN
                } else if inc < 0.0 {
                    c = 5.0; // the process restarted: the counter starts again near zero
                    c
                } else {
                    c += inc;
                    c
                };
                (t, g, counter)
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn window_matches_naive_reference(rows in rows(), short in 2usize..12, extra in 0usize..40) {
        let long = short + extra;
        let signals = SignalSet::new(vec![
            SignalSpec::gauge("g", Unit::Count),
            SignalSpec::counter("c", Unit::Bytes),
        ]).unwrap();
        let mut w = Window::new(&signals, Horizons::new(short, long).unwrap());
        let mut fv = FeatureVector::new(w.schema());
        let ts: Vec<f64> = rows.iter().map(|r| r.0).collect();
        let g: Vec<f64> = rows.iter().map(|r| r.1).collect();
        let c: Vec<f64> = rows.iter().map(|r| r.2).collect();
        for r in &rows {
            w.push(r.0, &[r.1, r.2]).unwrap();
        }
        w.extract(&mut fv).unwrap();
        let rates = naive_rates(&ts, &c);
        // Counter resets never produce negative rates.
        prop_assert!(rates.iter().all(|r| r.is_nan() || *r >= 0.0));
        // Timestamps relative to the newest row, as the window uses them.
        let t0 = *ts.last().unwrap();
        let rel: Vec<f64> = ts.iter().map(|t| t - t0).collect();
        for (s, col) in [&g, &rates].into_iter().enumerate() {
            let f = &fv.values()[s * 11..s * 11 + 11];
            let last = *col.last().unwrap();
            let a = naive(&rel, col, short);
            let b = naive(&rel, col, long);
            let expected = [last, a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3], last - b[0], naive_median(col, short)];
            for (i, (got, want)) in f.iter().zip(expected).enumerate() {
                prop_assert!(close(*got, want), "signal {} stat {}: got {} want {}", s, i, got, want);
                prop_assert_eq!(fv.mask()[s * 11 + i], got.is_finite());
            }
        }
    }

    #[test]
    fn psi_is_non_negative_and_zero_for_identical(
        e in prop::collection::vec(0.0f64..100.0, 2..20),
        scale in 0.01f64..100.0,
        a_raw in prop::collection::vec(0.0f64..100.0, 20),
    ) {
        let a: Vec<f64> = a_raw[..e.len()].to_vec();
        let p = psi(&e, &a);
        prop_assert!(p.is_nan() || p >= -1e-12, "psi {}", p);
        let same: Vec<f64> = e.iter().map(|x| x * scale).collect();
        let p0 = psi(&e, &same);
        prop_assert!(p0.is_nan() || p0.abs() < 1e-9, "psi of identical distributions {}", p0);
    }

    #[test]
    fn ks_is_within_unit_interval(
        a in prop::collection::vec(prop_oneof![9 => -1e3f64..1e3, 1 => Just(f64::NAN)], 1..80),
        b in prop::collection::vec(-1e3f64..1e3, 1..80),
    ) {
        let d = ks_two_sample(&a, &b);
        prop_assert!(d.is_nan() || (0.0..=1.0).contains(&d), "ks {}", d);
        prop_assert_eq!(ks_two_sample(&b, &b), 0.0);
    }

    #[test]
    fn monitor_matches_a_from_scratch_count(
        reference in prop::collection::vec(-50.0f64..50.0, 20..200),
        live in prop::collection::vec(prop_oneof![9 => -80.0f64..80.0, 1 => Just(f64::NAN)], 1..120),
        window in 1usize..60,
    ) {
        let schema = FeatureSchema::from_parts(vec!["x".into()], vec!["count".into()]);
        let rows: Vec<[f64; 1]> = reference.iter().map(|v| [*v]).collect();
        let r = DriftReference::fit(&schema, rows.iter().map(|r| &r[..])).unwrap();
        let mut incremental = DriftMonitor::new(r.clone(), window);
        for v in &live {
            incremental.push(&[*v]).unwrap();
        }
        // A fresh monitor fed only the last `window` values must agree.
        let mut fresh = DriftMonitor::new(r, window);
        for v in &live[live.len().saturating_sub(window)..] {
            fresh.push(&[*v]).unwrap();
        }
        let (a, b) = (incremental.report(), fresh.report());
        prop_assert!(close(a.psi[0], b.psi[0]) && close(a.ks[0], b.ks[0]), "{:?} vs {:?}", a, b);
        prop_assert!(a.psi[0].is_nan() || a.psi[0] >= 0.0);
        prop_assert!(a.ks[0].is_nan() || (0.0..=1.0).contains(&a.ks[0]));
        // The binned KS never exceeds the exact statistic on the same data by more than one grid cell.
        let recent: Vec<f64> = live[live.len().saturating_sub(window)..].to_vec();
        let exact = ks_two_sample(&reference, &recent);
        if !exact.is_nan() {
            prop_assert!(a.ks[0] <= exact + 1e-9, "binned {} exact {}", a.ks[0], exact);
        }
    }
}

#[test]
fn drift_names_the_shifted_feature_first() {
    let schema = FeatureSchema::from_parts(
        vec!["steady".into(), "shifted".into()],
        vec!["count".into(), "count".into()],
    );
    let rows: Vec<[f64; 2]> = (0..500)
        .map(|i| [f64::from(i % 17), f64::from(i % 23)])
        .collect();
    let r = DriftReference::fit(&schema, rows.iter().map(|r| &r[..])).unwrap();
    let mut m = DriftMonitor::new(r, 100);
    for i in 0..100 {
        m.push(&[f64::from(i % 17), 40.0 + f64::from(i % 23)])
            .unwrap();
    }
    let report = m.report();
    let top = report.top(2);
    assert_eq!(top[0].0, "shifted");
    assert!(top[0].1 > 1.0, "psi {}", top[0].1);
    assert!(top[0].2 > 0.9, "ks {}", top[0].2);
    assert!(top[1].1 < 0.1, "steady psi {}", top[1].1);
    assert_eq!(report.max_psi(), top[0].1);
}

#[test]
fn drift_reference_needs_enough_rows() {
    let schema = FeatureSchema::from_parts(vec!["x".into()], vec!["count".into()]);
    let rows = [[1.0]; 5];
    assert!(DriftReference::fit(&schema, rows.iter().map(|r| &r[..])).is_err());
}

#[test]
fn window_wraps_around_and_keeps_only_the_long_horizon() {
    let signals = SignalSet::new(vec![SignalSpec::gauge("g", Unit::Count)]).unwrap();
    let mut w = Window::new(&signals, Horizons::new(3, 5).unwrap());
    let mut fv = FeatureVector::new(w.schema());
    for i in 0..12 {
        w.push(f64::from(i), &[f64::from(i)]).unwrap();
    }
    w.extract(&mut fv).unwrap();
    let f = fv.values();
    assert_eq!(f[0], 11.0); // last
    assert_eq!(f[1], 10.0); // mean of 9, 10, 11
    assert_eq!(f[5], 9.0); // mean of 7..=11
    assert_eq!(f[7], 11.0); // max
    assert!((f[8] - 1.0).abs() < 1e-12); // slope: +1 per second
    assert_eq!(f[9], 2.0); // change
    assert!(w.is_warm() && w.len() == 5);
}

#[test]
fn slow_leak_shows_as_slope_while_differences_stay_flat() {
    // A leak of 1 MiB/s on a 1 GiB base: each tick's change is tiny, the slope is exact.
    let signals = SignalSet::new(vec![SignalSpec::gauge("rss", Unit::Bytes)]).unwrap();
    let mut w = Window::new(&signals, Horizons::default());
    let mut fv = FeatureVector::new(w.schema());
    for i in 0..60 {
        let t = f64::from(i);
        w.push(t, &[1e9 + t * 1_048_576.0]).unwrap();
    }
    w.extract(&mut fv).unwrap();
    let slope_long = fv.values()[8];
    assert!((slope_long - 1_048_576.0).abs() < 1e-3, "{slope_long}");
}

#[test]
fn bad_rows_are_rejected_and_lose_nothing() {
    let signals = SignalSet::new(vec![SignalSpec::gauge("g", Unit::Count)]).unwrap();
    let mut w = Window::new(&signals, Horizons::default());
    w.push(10.0, &[1.0]).unwrap();
    assert!(w.push(10.0, &[2.0]).is_err(), "duplicate timestamp");
    assert!(w.push(9.0, &[2.0]).is_err(), "time going back");
    assert!(w.push(f64::NAN, &[2.0]).is_err());
    assert!(w.push(11.0, &[1.0, 2.0]).is_err(), "wrong width");
    assert_eq!(w.len(), 1);
    let mut fv = FeatureVector::new(w.schema());
    w.extract(&mut fv).unwrap();
    assert_eq!(fv.values()[0], 1.0);
}

#[test]
fn missing_signals_give_nan_and_a_false_mask_never_zero() {
    let signals = SignalSet::new(vec![
        SignalSpec::gauge("present", Unit::Count),
        SignalSpec::gauge("absent", Unit::Count),
    ])
    .unwrap();
    let mut w = Window::new(&signals, Horizons::default());
    for i in 0..20 {
        w.push(f64::from(i), &[1.0, f64::NAN]).unwrap();
    }
    let mut fv = FeatureVector::new(w.schema());
    w.extract(&mut fv).unwrap();
    assert!(fv.values()[11..22].iter().all(|v| v.is_nan()));
    assert!(fv.mask()[11..22].iter().all(|m| !m));
    assert!(fv.mask()[0]);
}
