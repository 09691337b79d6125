//! The supervised layer: sample weights change the fitted model, a human label outweighs a contradicting
//! alert-rule label on the same windows, and too few positives keep the model unsupervised.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ndarray::ArrayView1;
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

/// 400 normal windows, and 40 windows in a "suspicious" region (queue raised) — each of those twice:
/// once labelled anomalous with weight `w_anomaly`, once labelled normal with weight `w_normal` (two
/// sources disagreeing about the same windows).
type Labels = Vec<Option<(bool, f64)>>;

fn data(w_anomaly: f64, w_normal: f64) -> (Vec<[f64; 2]>, Labels) {
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    for i in 0..400 {
        rows.push([5.0 + noise(i), 1.0 + noise(i + 1000)]);
        labels.push(None);
    }
    for i in 0..40 {
        let r = [7.0 + 0.5 * noise(i + 2000), 1.0 + noise(i + 3000)];
        rows.push(r);
        labels.push(Some((true, w_anomaly)));
        rows.push(r);
        labels.push(Some((false, w_normal)));
    }
    (rows, labels)
}

fn fit(rows: &[[f64; 2]], labels: &[Option<(bool, f64)>]) -> (KMeansDetector, String) {
    let lr: Vec<LabelledRow<'_>> = rows
        .iter()
        .zip(labels)
        .map(|(r, l)| LabelledRow {
            features: &r[..],
            label: *l,
            kind: None,
        })
        .collect();
    KMeansDetector::fit_with_labels(&names(), &units(), &lr, KMeansParams::default()).unwrap()
}

fn score(d: &KMeansDetector, x: [f64; 2]) -> f64 {
    d.score(ArrayView1::from(&x[..])).value
}

#[test]
fn human_label_outweighs_a_contradicting_rule_label() {
    // Human says anomaly (0.95), the alert rule says normal (0.65), on the same windows.
    let (rows, labels) = data(0.95, 0.65);
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
    rows.truncate(403);
    labels.truncate(403); // 400 normal + 2 positive + 1 negative
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
