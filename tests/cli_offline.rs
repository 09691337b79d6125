//! `vigil train | score | eval | inspect` end to end, as a user runs them on CSV exports.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Write as _;
use std::path::Path;

mod support;

use support::cli::{s, tmpdir, vigil};

/// Seeded noise with a daily-like cycle; `shift` adds a level shift to `queue` over `[from, to)`.
fn csv(path: &Path, t0: u64, n: u64, seed: u64, shift: Option<(u64, u64)>) {
    let mut x = seed;
    let mut noise = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % 10_000) as f64 / 10_000.0 - 0.5
    };
    let mut out = String::from("timestamp,load,queue,requests_total\n");
    let mut req = 0.0;
    for t in t0..t0 + n {
        let day = (t as f64 * 2.0 * std::f64::consts::PI / 1440.0).sin();
        let load = 100.0 + 30.0 * day + 8.0 * noise();
        req += load;
        let mut queue = 5.0 + 2.0 * noise();
        if let Some((a, b)) = shift
            && (a..b).contains(&t)
        {
            queue += 20.0;
        }
        let _ = writeln!(out, "{t},{load:.3},{queue:.3},{req:.1}");
    }
    std::fs::write(path, out).unwrap();
}

#[test]
fn train_score_eval_inspect_on_csv() {
    let d = tmpdir("flow");
    let (train_a, train_b, test) = (d.0.join("a.csv"), d.0.join("b.csv"), d.0.join("test.csv"));
    csv(&train_a, 1_700_000_000, 3000, 1, None);
    csv(&train_b, 1_700_000_000, 3000, 2, None); // a second host of the same service
    csv(
        &test,
        1_700_010_000,
        3000,
        3,
        Some((1_700_011_500, 1_700_011_700)),
    );
    let labels = d.0.join("labels.csv");
    std::fs::write(
        &labels,
        "start,end,label,source\n1700011500,1700011699,anomaly,human\n",
    )
    .unwrap();
    let model = d.0.join("model.json");

    let out = vigil(&[
        "train",
        "--csv",
        s(&train_a),
        "--csv",
        s(&train_b),
        "--out",
        s(&model),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("tick 1s") && stdout.contains("33 features"),
        "{stdout}"
    );

    let out = vigil(&["inspect", s(&model)]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("kind:           kmeans") && text.contains("format version: 2"),
        "{text}"
    );

    let scores = d.0.join("scores.csv");
    let out = vigil(&[
        "score",
        "--model",
        s(&model),
        "--csv",
        s(&test),
        "--out",
        s(&scores),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let scored = std::fs::read_to_string(&scores).unwrap();
    let lines: Vec<&str> = scored.lines().collect();
    assert_eq!(
        lines[0],
        "timestamp,score,raw_score,is_anomaly,anomaly_type,top_features,event_id,event_onset"
    );
    assert_eq!(lines.len(), 3001, "one row per input row");
    assert_eq!(
        lines[1], "1700010000,,,0,,,,",
        "rows inside the warm-up have an empty score"
    );
    let flagged_in_shift = lines[1..]
        .iter()
        .filter(|l| {
            let t: u64 = l.split(',').next().unwrap().parse().unwrap();
            (1_700_011_500..1_700_011_700).contains(&t) && l.split(',').nth(3) == Some("1")
        })
        .count();
    assert!(
        flagged_in_shift > 50,
        "{flagged_in_shift} windows flagged in the shift"
    );
    assert!(
        scored.contains("queue.median_10"),
        "top features name the queue"
    );
    // One event for the one shift: is_anomaly means inside it, and every row of it carries its id.
    let ids: std::collections::BTreeSet<&str> = lines[1..]
        .iter()
        .filter_map(|l| l.split(',').nth(6).filter(|id| !id.is_empty()))
        .collect();
    assert_eq!(ids.len(), 1, "events: {ids:?}");

    let plot = d.0.join("plot.svg");
    let out = vigil(&[
        "eval",
        "--model",
        s(&model),
        "--csv",
        s(&test),
        "--labels",
        s(&labels),
        "--plot",
        s(&plot),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("event recall:            1.000"),
        "{report}"
    );
    assert!(report.contains("PR-AUC:"), "{report}");
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("polyline") && svg.contains("threshold 0.5"));
    let png = d.0.join("plot.png");
    let out = vigil(&[
        "eval",
        "--model",
        s(&model),
        "--csv",
        s(&test),
        "--labels",
        s(&labels),
        "--plot",
        s(&png),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    let out = vigil(&[
        "eval",
        "--model",
        s(&model),
        "--csv",
        s(&test),
        "--labels",
        s(&labels),
        "--plot",
        s(&d.0.join("plot.gif")),
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn bad_csv_names_file_line_and_column_exits_2_and_writes_nothing() {
    let d = tmpdir("bad");
    let good = d.0.join("good.csv");
    csv(&good, 1_700_000_000, 400, 1, None);
    let model = d.0.join("model.json");
    assert!(
        vigil(&["train", "--csv", s(&good), "--out", s(&model)])
            .status
            .success()
    );

    let cases: [(&str, String, &str); 6] = [
        (
            "no_ts.csv",
            "time,load\n1,2\n".into(),
            "first column must be `timestamp`",
        ),
        (
            "text.csv",
            "timestamp,load,queue,requests_total\n1,2,3,4\n2,2,x3,5\n".into(),
            ":3: column `queue`: `x3` is not a number",
        ),
        (
            "unsorted.csv",
            "timestamp,load,queue,requests_total\n2,1,1,1\n1,1,1,1\n".into(),
            ":3: column `timestamp`",
        ),
        (
            "dup.csv",
            "timestamp,load,queue,requests_total\n1,1,1,1\n1,1,1,1\n".into(),
            "duplicate timestamp",
        ),
        ("empty.csv", String::new(), "empty"),
        (
            "cols.csv",
            "timestamp,other\n1,2\n".into(),
            "do not match the columns the model was trained on",
        ),
    ];
    for (name, body, expected) in cases {
        let input = d.0.join(name);
        std::fs::write(&input, body).unwrap();
        let out_path = d.0.join(format!("{name}.scores"));
        let out = vigil(&[
            "score",
            "--model",
            s(&model),
            "--csv",
            s(&input),
            "--out",
            s(&out_path),
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(
            err.contains(name) && err.contains(expected),
            "{name}: {err}"
        );
        assert!(!out_path.exists(), "{name}: partial output left behind");
        assert!(!out_path.with_extension("partial").exists());
    }

    // A damaged model file is bad input too.
    let broken = d.0.join("broken.json");
    let text = std::fs::read_to_string(&model).unwrap();
    std::fs::write(&broken, &text[..text.len() / 3]).unwrap();
    let out = vigil(&["inspect", s(&broken)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("truncated"));
}

#[test]
fn timestamps_as_pandas_writes_them_are_accepted() {
    let d = tmpdir("pandas");
    let mut body = String::from("timestamp,load\n");
    for i in 0..300 {
        let _ = writeln!(
            body,
            "2026-11-25 {:02}:{:02}:{:02},{}",
            i / 3600,
            (i / 60) % 60,
            i % 60,
            50 + (i * 7919) % 13
        );
    }
    let input = d.0.join("pandas.csv");
    std::fs::write(&input, body).unwrap();
    let model = d.0.join("m.json");
    let out = vigil(&["train", "--csv", s(&input), "--out", s(&model)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("tick 1s"));
}

#[test]
fn labels_train_the_supervised_layer_and_show_in_inspect() {
    let d = tmpdir("labels");
    let train = d.0.join("train.csv");
    // A level shift inside the training data, labelled by a person; a rule label on normal data.
    csv(
        &train,
        1_700_000_000,
        4000,
        5,
        Some((1_700_002_000, 1_700_002_100)),
    );
    let labels = d.0.join("labels.csv");
    std::fs::write(
        &labels,
        "start,end,label,source,confidence\n1700002000,1700002099,anomaly,human,\n1700003000,1700003050,normal,alertmanager,0.65\n",
    )
    .unwrap();
    let model = d.0.join("m.json");
    let out = vigil(&[
        "train",
        "--csv",
        s(&train),
        "--labels",
        s(&labels),
        "--out",
        s(&model),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&vigil(&["inspect", s(&model)]).stdout).to_string();
    assert!(text.contains("kmeans+tree"), "{text}");
    assert!(text.contains("training:       supervised"), "{text}");
    assert!(
        text.contains("labels:         1 from human") && text.contains("1 from alertmanager"),
        "{text}"
    );

    let bad = d.0.join("bad_labels.csv");
    std::fs::write(&bad, "start,end,label\n1700002000,1700002099,maybe\n").unwrap();
    let out = vigil(&[
        "train",
        "--csv",
        s(&train),
        "--labels",
        s(&bad),
        "--out",
        s(&d.0.join("x.json")),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad_labels.csv:2: column `label`"), "{err}");
}

/// One path from windows to a model: `vigil train` on a CSV and the engine's own cold start (what the
/// agent trains on its first windows, and every refit after) on the same rows give the same model.
#[test]
fn vigil_train_and_the_engines_cold_start_make_the_same_model() {
    use std::sync::{Arc, Mutex};
    use vigil::features::{Horizons, SignalSet, vocab::column_signal};
    use vigil::models::{Engine, EngineConfig, ModelFile, TrainJob, Trained, Trainer};

    #[derive(Clone, Default)]
    struct Spy(
        Arc<Mutex<Vec<TrainJob>>>,
        Arc<Mutex<Option<Result<Trained, vigil::models::ModelError>>>>,
    );
    impl Trainer for Spy {
        fn start(&mut self, job: TrainJob) -> bool {
            *self.1.lock().unwrap() = Some(job.train());
            self.0.lock().unwrap().push(job);
            true
        }
        fn poll(&mut self) -> Option<Result<Trained, vigil::models::ModelError>> {
            self.1.lock().unwrap().take()
        }
    }

    let d = tmpdir("onepath");
    let data = d.0.join("data.csv");
    let rows_n = 900;
    csv(&data, 1_700_000_000, rows_n, 7, None);
    let model_path = d.0.join("model.json");
    let out = vigil(&["train", "--csv", s(&data), "--out", s(&model_path)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let from_cli =
        ModelFile::from_json(&std::fs::read_to_string(&model_path).unwrap(), "model.json").unwrap();

    // The same rows into an engine whose cold start waits for every window of the file.
    let text = std::fs::read_to_string(&data).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let signals = SignalSet::new(header[1..].iter().map(|c| column_signal(c)).collect()).unwrap();
    let windows = rows_n as usize - 59;
    let cfg = {
        let mut cfg = EngineConfig::default();
        cfg.horizons = Horizons::new(10, 60).unwrap();
        cfg.tick_seconds = 1.0;
        cfg.warm_up_windows = windows;
        cfg
    };
    let spy = Spy::default();
    let mut engine = Engine::new(&signals, cfg, None, Box::new(spy.clone())).unwrap();
    for line in lines {
        let v: Vec<f64> = line.split(',').map(|x| x.parse().unwrap()).collect();
        engine.push(v[0], &v[1..]).unwrap();
    }
    let jobs = spy.0.lock().unwrap().clone();
    assert_eq!(jobs.len(), 1, "the cold start, on every window");
    assert_eq!(jobs[0].rows.len(), windows);
    let from_engine = jobs[0].run().unwrap();

    assert_eq!(from_cli.feature_names, from_engine.feature_names);
    assert_eq!(from_cli.summary.rows, from_engine.summary.rows);
    assert_eq!(
        from_cli.detector, from_engine.detector,
        "the same scaler, centroids, threshold and layers"
    );
}
