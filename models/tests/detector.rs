//! The unsupervised detector on seeded synthetic data built through the real feature pipeline: a level
//! shift, a slow leak and a spike in multivariate noise with a daily-like load cycle are flagged, the
//! clean stretch stays within the alert budget, and the model file round-trips bit for bit and refuses
//! every kind of damage.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ndarray::ArrayView1;
use vigil_features::{FeatureSchema, FeatureVector, Horizons, SignalSet, SignalSpec, Unit, Window};
use vigil_models::{Detector, KMeansDetector, KMeansParams, ModelFile, TrainingSummary};

/// xorshift64* with Box–Muller normals: seeded, no dependencies.
struct Rng(u64);
impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

fn signals() -> SignalSet {
    SignalSet::new(vec![
        SignalSpec::gauge("load", Unit::PerSecond),
        SignalSpec::gauge("busy", Unit::Ratio),
        SignalSpec::gauge("queue", Unit::Count),
        SignalSpec::gauge("memory", Unit::Bytes),
        SignalSpec::counter("requests", Unit::Count),
        SignalSpec::gauge("latency", Unit::Seconds),
    ])
    .unwrap()
}

#[derive(Clone, Copy)]
enum Fault {
    None,
    LevelShift,
    Leak,
    Spike,
}

/// Raw rows from tick `t0` for `n` ticks; `fault` starts at `t0 + onset`.
fn rows(seed: u64, t0: u64, n: u64, fault: Fault, onset: u64) -> Vec<(f64, [f64; 6])> {
    let mut rng = Rng(seed);
    let mut requests = 0.0;
    (t0..t0 + n)
        .map(|t| {
            let day = (2.0 * std::f64::consts::PI * t as f64 / 1440.0).sin();
            let load = 100.0 + 40.0 * day + 5.0 * rng.normal();
            requests += load.max(0.0);
            let mut r = [
                load,
                0.3 + 0.1 * day + 0.02 * rng.normal(),
                5.0 + rng.normal(),
                1e9 + 1e6 * rng.normal(),
                requests,
                0.05 + 0.005 * rng.normal(),
            ];
            let since = t.checked_sub(t0 + onset);
            match (fault, since) {
                (Fault::LevelShift, Some(_)) => r[2] += 8.0,
                (Fault::Leak, Some(s)) => r[3] += 2e5 * s as f64,
                (Fault::Spike, Some(0)) => r[5] += 0.2,
                _ => {}
            }
            (t as f64, r)
        })
        .collect()
}

/// Features of every tick once the window is warm.
fn features(w: &mut Window, rows: &[(f64, [f64; 6])]) -> Vec<Vec<f64>> {
    let mut fv = FeatureVector::new(w.schema());
    let mut out = Vec::new();
    for (t, r) in rows {
        w.push(*t, r).unwrap();
        if w.is_warm() {
            w.extract(&mut fv).unwrap();
            out.push(fv.values().to_vec());
        }
    }
    out
}

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
    for (fault, name, kind_signal) in [
        (Fault::LevelShift, "level shift", "queue"),
        (Fault::Leak, "slow leak", "memory"),
        (Fault::Spike, "spike", "latency"),
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

    let future = good.replacen("\"format_version\": 1", "\"format_version\": 99", 1);
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
    let e = KMeansDetector::fit(&names, rows.iter().map(|r| &r[..]), KMeansParams::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("at least 50"), "{e}");
}
