//! The unsupervised detector on seeded synthetic data built through the real feature pipeline: a level
//! shift and a slow leak in multivariate noise with a daily-like load cycle are flagged, a one-tick
//! spike is not (levels are short-horizon medians), the clean stretch stays within the alert budget,
//! and the model file round-trips bit for bit and refuses every kind of damage.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ndarray::ArrayView1;
use vigil_features::{FeatureSchema, Horizons, SignalSet, SignalSpec, Unit, Window};
use vigil_models::{Detector, KMeansDetector, KMeansParams, ModelFile, TrainingSummary};

#[path = "../../benches/support/synthetic.rs"]
mod synthetic;
use synthetic::{Fault, features, rows, signals};

fn trained() -> (FeatureSchema, KMeansDetector) {
    static TRAINED: std::sync::OnceLock<(FeatureSchema, KMeansDetector)> =
        std::sync::OnceLock::new();
    TRAINED.get_or_init(train).clone()
}

fn train() -> (FeatureSchema, KMeansDetector) {
    let mut w = Window::new(&signals(), Horizons::default());
    let train = features(&mut w, &rows(1, 0, 6000, Fault::None, 0));
    let names = w.schema().names().to_vec();
    let d = KMeansDetector::fit(
        &names,
        w.schema().units(),
        train.iter().map(|r| &r[..]),
        KMeansParams::default(),
    )
    .unwrap();
    (w.schema().clone(), d)
}

/// Scores of a test stretch continuing after training (a fresh window, warmed on the stretch itself).
fn scores(d: &KMeansDetector, seed: u64, fault: Fault) -> Vec<vigil_models::Score> {
    let mut w = Window::new(&signals(), Horizons::default());
    let stretch = rows(seed, 6000, 3000, fault, 1500);
    features(&mut w, &stretch)
        .iter()
        .map(|f| d.score(ArrayView1::from(&f[..])))
        .collect()
}

#[test]
fn faults_are_flagged_and_the_clean_stretch_stays_within_budget() {
    let (_, d) = trained();

    let clean = scores(&d, 7, Fault::None);
    let alarms = clean.iter().filter(|s| s.is_anomaly).count();
    let rate = alarms as f64 / clean.len() as f64;
    eprintln!("clean: {alarms} alarms in {} windows", clean.len());
    assert!(
        rate <= 0.002,
        "false-alarm rate {rate} over budget 0.001 (+ sampling slack)"
    );

    // Windows from 1500 - 60 + 1 on cover the fault (the window warms over the first 60 ticks).
    let fault_start = 1500 - 59;
    // A single tick at +40σ moves no short-horizon median: not a window to flag.
    let spike = scores(&d, 7, Fault::Spike);
    assert!(
        spike[fault_start..fault_start + 100]
            .iter()
            .all(|x| !x.is_anomaly),
        "a one-tick spike was flagged"
    );
    for (fault, name, kind_signal) in [
        (Fault::LevelShift, "level shift", "queue"),
        (Fault::Leak, "slow leak", "memory"),
    ] {
        let s = scores(&d, 7, fault);
        let first = s[fault_start..]
            .iter()
            .position(|x| x.is_anomaly)
            .unwrap_or_else(|| panic!("{name} never flagged"));
        eprintln!("{name}: flagged {first} ticks after onset");
        assert!(first <= 600, "{name} flagged only after {first} ticks");
        let hit = &s[fault_start + first];
        let top = &d.feature_names[hit.top_features[0].0];
        assert!(top.starts_with(kind_signal), "{name}: top feature {top}");
        // Nothing before the onset.
        assert!(s[..fault_start].iter().filter(|x| x.is_anomaly).count() <= 3);
    }
}

#[test]
fn model_file_round_trip_gives_bit_identical_scores() {
    let (schema, d) = trained();
    let file = ModelFile::new(
        &schema,
        d.clone(),
        TrainingSummary {
            rows: 5941,
            alert_budget: 0.001,
            ..Default::default()
        },
    );
    let dir = std::env::temp_dir().join(format!("vigil-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.json");
    file.save(&path).unwrap();
    let loaded = ModelFile::load(&path).unwrap();
    assert_eq!(loaded, file);
    loaded.check_schema(&schema).unwrap();
    for s in [Fault::None, Fault::Spike] {
        let a = scores(&d, 11, s);
        let b = scores(&loaded.detector, 11, s);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.value.to_bits(), y.value.to_bits());
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn damaged_model_files_are_refused_with_a_reason() {
    let (schema, d) = trained();
    let good = ModelFile::new(&schema, d, TrainingSummary::default())
        .to_json()
        .unwrap();

    let truncated = &good[..good.len() / 2];
    let e = ModelFile::from_json(truncated, "m.json")
        .unwrap_err()
        .to_string();
    assert!(e.contains("m.json") && e.contains("truncated"), "{e}");

    let future = good.replacen("\"format_version\": 2", "\"format_version\": 99", 1);
    let e = ModelFile::from_json(&future, "m.json")
        .unwrap_err()
        .to_string();
    assert!(e.contains("format version 99"), "{e}");

    let nan = good.replacen("\"threshold\": ", "\"threshold\": null, \"x\": ", 1);
    let e = ModelFile::from_json(&nan, "m.json")
        .unwrap_err()
        .to_string();
    assert!(e.contains("non-finite") || e.contains("not a valid"), "{e}");

    let edited = good.replacen("queue.last", "queue.first", 2);
    let e = ModelFile::from_json(&edited, "m.json")
        .unwrap_err()
        .to_string();
    assert!(e.contains("schema hash"), "{e}");

    let other = FeatureSchema::new(
        &SignalSet::new(vec![SignalSpec::gauge("load", Unit::PerSecond)]).unwrap(),
        Horizons::default(),
    );
    let e = ModelFile::from_json(&good, "m.json")
        .unwrap()
        .check_schema(&other)
        .unwrap_err()
        .to_string();
    assert!(e.contains("schema") && e.contains("retrain"), "{e}");

    let e = ModelFile::from_json("{}", "m.json")
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a valid model file"), "{e}");
}

#[test]
fn too_little_data_is_an_error_that_says_so() {
    let names = vec!["a.last".to_string()];
    let rows = [[1.0]; 10];
    let units = vec!["count".to_string()];
    let e = KMeansDetector::fit(
        &names,
        &units,
        rows.iter().map(|r| &r[..]),
        KMeansParams::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("at least 50"), "{e}");
}
