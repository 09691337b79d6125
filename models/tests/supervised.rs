//! The supervised layer: sample weights change the fitted model, a human label outweighs a contradicting
//! alert-rule label on the same windows, and too few positives keep the model unsupervised.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ndarray::ArrayView1;
use vigil_models::labels::{Label, label_at};
use vigil_models::{Detector, KMeansDetector, KMeansParams, LabelledRow};

fn names() -> Vec<String> {
    vec!["queue.last".into(), "latency.last".into()]
}

fn units() -> Vec<String> {
    vec!["count".into(), "seconds".into()]
}

/// Deterministic pseudo-noise in [-0.5, 0.5).
fn noise(i: u64) -> f64 {
    let x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17) ^ 0xdead_beef;
    (x % 10_000) as f64 / 10_000.0 - 0.5
}

/// 400 normal windows, and 40 windows in a "suspicious" region (queue raised) that two sources label
/// differently over the same interval: `anomaly` (source `a`, confidence `w_anomaly`) and `normal`
/// (source `n`, confidence `w_normal`). Each window takes the label `label_at` gives it, as training
/// on a labels file or a store does: a human label overrides rule labels, then the most confident wins.
type Labels = Vec<Option<(bool, f64)>>;

fn data_from(a: (&str, f64), n: (&str, f64)) -> (Vec<[f64; 2]>, Labels) {
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    for i in 0..400 {
        rows.push([5.0 + noise(i), 1.0 + noise(i + 1000)]);
        labels.push(None);
    }
    let interval = |anomaly: bool, (source, confidence): (&str, f64)| Label {
        start: 400.0,
        end: 439.0,
        anomaly,
        source: source.into(),
        confidence,
        kind: None,
    };
    let sources = [interval(true, a), interval(false, n)];
    for i in 0..40u64 {
        rows.push([7.0 + 0.5 * noise(i + 2000), 1.0 + noise(i + 3000)]);
        let l = label_at(&sources, (400 + i) as f64).unwrap();
        labels.push(Some((l.anomaly, l.confidence)));
    }
    (rows, labels)
}

/// Two alert rules disagree; the more confident wins.
fn data(w_anomaly: f64, w_normal: f64) -> (Vec<[f64; 2]>, Labels) {
    data_from(("rule-a", w_anomaly), ("rule-b", w_normal))
}

fn fit(rows: &[[f64; 2]], labels: &[Option<(bool, f64)>]) -> (KMeansDetector, String) {
    let lr: Vec<LabelledRow<'_>> = rows
        .iter()
        .zip(labels)
        .map(|(r, l)| LabelledRow {
            features: &r[..],
            label: *l,
            kind: None,
            coarse: false,
        })
        .collect();
    KMeansDetector::fit_with_labels(&names(), &units(), &lr, KMeansParams::default()).unwrap()
}

fn score(d: &KMeansDetector, x: [f64; 2]) -> f64 {
    d.score(ArrayView1::from(&x[..])).value
}

#[test]
fn human_label_outweighs_a_contradicting_rule_label() {
    // A person says anomaly, the alert rule says normal (and is more confident), on the same windows.
    let (rows, labels) = data_from(("human", 0.6), ("alertmanager", 0.9));
    let (d, note) = fit(&rows, &labels);
    assert!(note.starts_with("supervised"), "{note}");
    assert_eq!(d.kind(), "kmeans+tree");
    let suspicious = score(&d, [7.0, 1.0]);
    let normal = score(&d, [5.0, 1.0]);
    assert!(
        suspicious >= 0.5,
        "the human verdict should win: {suspicious}"
    );
    assert!(normal < 0.5, "{normal}");
}

#[test]
fn changing_weights_changes_the_fitted_model() {
    let (rows, labels_a) = data(0.95, 0.65);
    let (_, labels_b) = data(0.65, 0.95);
    let (a, _) = fit(&rows, &labels_a);
    let (b, _) = fit(&rows, &labels_b);
    assert_ne!(a.tree, b.tree, "different weights, same tree");
    let (sa, sb) = (score(&a, [7.0, 1.0]), score(&b, [7.0, 1.0]));
    assert!(
        sa >= 0.5 && sb < 0.5,
        "weights flipped the verdict: {sa} vs {sb}"
    );
}

#[test]
fn too_few_positive_labels_stay_unsupervised_and_say_so() {
    let (mut rows, mut labels) = data(0.95, 0.65);
    rows.truncate(402);
    labels.truncate(402); // 400 normal + 2 positive
    let (d, note) = fit(&rows, &labels);
    assert!(d.tree.is_none());
    assert_eq!(d.kind(), "kmeans");
    assert!(
        note.contains("stayed unsupervised") && note.contains("2 windows"),
        "{note}"
    );
}

#[test]
fn novel_anomalies_outside_labelled_regions_still_score_high() {
    let (rows, labels) = data(0.95, 0.65);
    let (d, _) = fit(&rows, &labels);
    // Latency far from anything seen, labelled or not: the unsupervised score stands.
    assert!(score(&d, [5.0, 9.0]) >= 0.5);
}

#[test]
fn typed_labels_teach_the_anomaly_type() {
    let (rows, labels) = data(0.95, 0.65);
    let lr: Vec<LabelledRow<'_>> = rows
        .iter()
        .zip(&labels)
        .map(|(r, l)| LabelledRow {
            features: &r[..],
            label: *l,
            // People said these queue build-ups were allocation storms upstream.
            kind: matches!(l, Some((true, _))).then_some(vigil_models::AnomalyKind::AllocStorm),
            coarse: false,
        })
        .collect();
    let (d, _) =
        KMeansDetector::fit_with_labels(&names(), &units(), &lr, KMeansParams::default()).unwrap();
    let s = d.score(ArrayView1::from(&[7.0, 1.0][..]));
    assert!(s.is_anomaly);
    assert_eq!(s.anomaly_type, vigil_models::AnomalyKind::AllocStorm);
    // Without the typed labels the name-based guess knows nothing about "queue".
    let (plain, _) = fit(&rows, &labels);
    assert_eq!(
        plain.score(ArrayView1::from(&[7.0, 1.0][..])).anomaly_type,
        vigil_models::AnomalyKind::Unknown
    );
}

#[test]
fn an_alerts_span_teaches_only_where_the_windows_deviate() {
    // The same suspicious windows, labelled anomalous by an alert's span rather than by a person:
    // they deviate less than the threshold, so they are the run-up or aftermath of whatever fired,
    // not examples of it, and the model stays unsupervised instead of alarming on them.
    let (rows, labels) = data(0.95, 0.65);
    let lr: Vec<LabelledRow<'_>> = rows
        .iter()
        .zip(&labels)
        .map(|(r, l)| LabelledRow {
            features: &r[..],
            label: *l,
            kind: None,
            coarse: true,
        })
        .collect();
    let (d, note) =
        KMeansDetector::fit_with_labels(&names(), &units(), &lr, KMeansParams::default()).unwrap();
    assert!(d.tree.is_none(), "{note}");
    assert!(note.contains("look normal"), "{note}");
    assert!(score(&d, [7.0, 1.0]) < 0.5);
    // Far enough out, the unsupervised score alarms whatever the labels.
    assert!(score(&d, [5.0, 9.0]) >= 0.5);
}
