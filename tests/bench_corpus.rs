//! `vigil bench corpus DIR` end to end, as a user runs it on their own labelled incidents: a directory
//! of series (one gzip'd, one plain), every method in one run, every field of the JSON filled.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use serde_json::Value;

mod support;

use support::cli::{s, tmpdir, vigil};

/// Uniform noise in [-0.5, 0.5) from a seed (xorshift).
fn noise_from(mut x: u64) -> impl FnMut() -> f64 {
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % 10_000) as f64 / 10_000.0 - 0.5
    }
}

/// One series: 1,500 training rows and 1,500 test rows a minute apart, two columns on wildly different
/// scales with a cycle and noise, one mostly-zero bursty column; a labelled incident in the test part
/// where `b` jumps by ten times its noise for 40 rows.
fn series(dir: &Path, seed: u64, gzip: bool) {
    series_with_step(dir, seed, gzip, None);
}

/// [`series`], and from row `step` on (if any) `b` sits 0.1 higher for good: a change of level, not
/// an incident (unlabelled).
fn series_with_step(dir: &Path, seed: u64, gzip: bool, step: Option<u64>) {
    std::fs::create_dir_all(dir).unwrap();
    let mut noise = noise_from(seed);
    let (mut train, mut test, mut labels) = (
        String::from("timestamp,a,b,c\n"),
        String::from("timestamp,a,b,c\n"),
        String::from("timestamp,label\n"),
    );
    for i in 0..3000u64 {
        let t = 1_600_000_000 + 60 * i;
        let cycle = (i as f64 / 40.0).sin();
        let a = 2e8 + 5e7 * cycle + 1e7 * noise();
        let incident = (2200..2240).contains(&i);
        let stepped = step.is_some_and(|at| i >= at);
        let b = 0.1
            + 0.01 * noise()
            + if incident { 0.1 } else { 0.0 }
            + if stepped { 0.1 } else { 0.0 };
        let c = if i % 131 == 0 { 3.0 } else { 0.0 };
        let row = format!("{t},{a:.1},{b:.5},{c}\n");
        if i < 1500 {
            train.push_str(&row);
        } else {
            test.push_str(&row);
            let _ = writeln!(labels, "{t},{}", u8::from(incident));
        }
    }
    let write = |name: &str, body: &str| {
        if gzip {
            let f = std::fs::File::create(dir.join(format!("{name}.csv.gz"))).unwrap();
            let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
            gz.write_all(body.as_bytes()).unwrap();
            gz.finish().unwrap();
        } else {
            std::fs::write(dir.join(format!("{name}.csv")), body).unwrap();
        }
    };
    write("train", &train);
    write("test", &test);
    write("test_labels", &labels);
}

/// `vigil bench corpus CORPUS --json JSON EXTRA…`, which must succeed; the JSON it wrote.
fn run_corpus(corpus: &Path, json: &Path, extra: &[&str]) -> Value {
    run_corpus_said(corpus, json, extra).0
}

/// [`run_corpus`], and what it printed.
fn run_corpus_said(corpus: &Path, json: &Path, extra: &[&str]) -> (Value, String) {
    let mut args = vec!["bench", "corpus", s(corpus), "--json", s(json)];
    args.extend_from_slice(extra);
    let out = vigil(&args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    (v, stdout)
}

#[test]
fn bench_corpus_measures_every_method_on_every_series() {
    let d = tmpdir("corpus");
    let corpus = d.0.join("corpus");
    series(&corpus.join("svc-a"), 7, true);
    series(&corpus.join("svc-b"), 11, false);
    // A directory without the three files is not a series.
    std::fs::create_dir_all(corpus.join("notes")).unwrap();
    let (v, stdout) = run_corpus_said(&corpus, &d.0.join("out.json"), &[]);
    assert!(
        stdout.contains("rolling_z") && stdout.contains("svc-b"),
        "{stdout}"
    );
    let series = v["series"].as_object().unwrap();
    assert_eq!(
        series.keys().collect::<Vec<_>>(),
        vec!["svc-a", "svc-b"],
        "{v}"
    );
    for method in ["agent", "offline", "static_z", "rolling_z"] {
        let m = &v["pooled"][method];
        for key in [
            "fc1",
            "event_recall",
            "point_precision",
            "point_f1",
            "false_events_per_3600",
            "false_events_per_day",
            "normal_inside_share",
            "pr_auc",
        ] {
            let x = m[key]
                .as_f64()
                .unwrap_or_else(|| panic!("{method}.{key}: {}", m[key]));
            assert!(x >= 0.0, "{method}.{key} = {x}");
        }
        assert_eq!(m["segments"], 2, "{method}: one incident per series");
    }
    // The incident is ten times the noise of `b`: the agent's way catches both, early, and stays out
    // of events elsewhere; its score ranks the incident's rows first.
    let agent = &v["pooled"]["agent"];
    assert_eq!(agent["event_recall"], 1.0, "{agent}");
    assert!(agent["ttd_median_ticks"].as_u64().unwrap() <= 10, "{agent}");
    assert!(
        agent["normal_inside_share"].as_f64().unwrap() < 0.05,
        "{agent}"
    );
    assert!(agent["pr_auc"].as_f64().unwrap() > 0.5, "{agent}");
    assert_eq!(v["pooled"]["offline"]["event_recall"], 1.0, "{v}");
}

/// A level change 30 rows before the end of the training part: a model trained on every training row
/// has seen the new level; one trained without the last 100 rows meets it as news, as the agent's
/// way does, and opens an event that runs into the test part. `--offline-hold-back` changes the
/// offline way alone.
#[test]
fn bench_corpus_offline_hold_back_trains_on_less_and_scores_the_rest() {
    let d = tmpdir("corpus-hold");
    let corpus = d.0.join("corpus");
    series_with_step(&corpus.join("svc"), 5, false, Some(1470));
    let run = |extra: &[&str]| run_corpus(&corpus, &d.0.join("out.json"), extra);
    let all = run(&[]);
    let held = run(&["--offline-hold-back", "100"]);
    assert_eq!(all["pooled"]["agent"], held["pooled"]["agent"]);
    let normal_inside = |v: &Value| {
        v["pooled"]["offline"]["normal_inside_share"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(normal_inside(&all), 0.0, "{all}");
    assert!(normal_inside(&held) > 0.0, "{held}");
    // Holding back every training row leaves nothing to train on: refused, saying so.
    let out = vigil(&["bench", "corpus", s(&corpus), "--offline-hold-back", "1500"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("leaves no training rows"), "{err}");
}

#[test]
fn bench_corpus_refuses_what_it_cannot_use() {
    let d = tmpdir("corpus-bad");
    // No series at all.
    let out = vigil(&["bench", "corpus", s(&d.0)]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no series found"));
    // Labels that do not cover a test row: named.
    let dir = d.0.join("svc");
    series(&dir, 3, false);
    let labels = std::fs::read_to_string(dir.join("test_labels.csv")).unwrap();
    let cut: String = labels.lines().take(100).map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.join("test_labels.csv"), cut).unwrap();
    let out = vigil(&["bench", "corpus", s(&d.0)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("test_labels.csv") && err.contains("no label"),
        "{err}"
    );
    // A second series missing one of its files: named, not skipped (the run would say "1 series").
    let other = d.0.join("svc-2");
    series(&other, 4, false);
    std::fs::remove_file(other.join("test.csv")).unwrap();
    let out = vigil(&["bench", "corpus", s(&d.0)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("svc-2") && err.contains("no test.csv"),
        "{err}"
    );
}

/// `vigil bench corpus` takes the engine flags `vigil score` takes (the false-event budget, the
/// warm-up, the tick, the refit cadence) for both of the engine's ways; the z rules keep their own
/// budget. A value the engine cannot use is refused at parsing, naming the flag.
#[test]
fn bench_corpus_takes_the_engine_flags() {
    let d = tmpdir("corpus-flags");
    let corpus = d.0.join("corpus");
    series(&corpus.join("svc"), 13, false);
    let run = |extra: &[&str]| run_corpus(&corpus, &d.0.join("out.json"), extra);
    let default = run(&[]);
    let tuned = run(&[
        "--false-events-per-day",
        "4",
        "--warm-up-windows",
        "120",
        "--refit-every",
        "0",
        "--tick-seconds",
        "30",
    ]);
    // The report says what produced it: `null` where the value is derived from the rows.
    assert_eq!(
        default["settings"],
        serde_json::json!({"tick_seconds": null, "warm_up_windows": 300, "refit_every": null,
            "false_events_per_day": 0.1, "offline_hold_back": 0, "joint_moves": null})
    );
    assert_eq!(
        tuned["settings"],
        serde_json::json!({"tick_seconds": 30.0, "warm_up_windows": 120, "refit_every": 0,
            "false_events_per_day": 4.0, "offline_hold_back": 0, "joint_moves": null})
    );
    // The z rules keep their own budget (0.5 % of training rows) whatever the engine's flags: the
    // static rule flags the same rows (its false events per day are counted at the tick the run was
    // given); the rolling rule reads the last hour of rows at that tick.
    let strip = |v: &Value| {
        let mut v = v.clone();
        v.as_object_mut().unwrap().remove("false_events_per_day");
        v
    };
    assert_eq!(
        strip(&default["pooled"]["static_z"]),
        strip(&tuned["pooled"]["static_z"])
    );
    let per_day = |v: &Value| {
        v["pooled"]["static_z"]["false_events_per_day"]
            .as_f64()
            .unwrap()
    };
    assert!(
        (per_day(&tuned) - 2.0 * per_day(&default)).abs() <= 1e-3 * per_day(&default).max(1.0),
        "half the tick, half the days: {} vs {}",
        per_day(&tuned),
        per_day(&default)
    );
    for bad in ["0", "-1", "NaN", "lots"] {
        let out = vigil(&[
            "bench",
            "corpus",
            s(&corpus),
            &format!("--false-events-per-day={bad}"),
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert!(
            err.contains("--false-events-per-day") && err.contains("not a number above zero"),
            "{bad}: {err}"
        );
    }
}

/// Five days of 5-minute rows (train) with `columns` noisy columns; a day of test rows after them
/// (unused by the joint-move test, which builds its test from the training rows).
fn plain_series(dir: &Path, columns: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let header = std::iter::once("timestamp".to_owned())
        .chain((0..columns).map(|c| format!("c{c}")))
        .collect::<Vec<_>>()
        .join(",");
    let mut noise = noise_from(99);
    let (mut train, mut test, mut labels) = (
        format!("{header}\n"),
        format!("{header}\n"),
        String::from("timestamp,label\n"),
    );
    for i in 0..(6 * 288u64) {
        let t = 1_600_000_000 + 300 * i;
        let mut row = t.to_string();
        for c in 0..columns {
            let _ = write!(row, ",{:.4}", 10.0 * (c + 1) as f64 + noise());
        }
        row.push('\n');
        if i < 5 * 288 {
            train.push_str(&row);
        } else {
            test.push_str(&row);
            let _ = writeln!(labels, "{t},0");
        }
    }
    std::fs::write(dir.join("train.csv"), train).unwrap();
    std::fs::write(dir.join("test.csv"), test).unwrap();
    std::fs::write(dir.join("test_labels.csv"), labels).unwrap();
}

#[test]
fn bench_corpus_joint_moves_builds_a_labelled_test_from_the_training_rows() {
    let d = tmpdir("corpus-joint");
    let corpus = d.0.join("corpus");
    plain_series(&corpus.join("svc-wide"), 6);
    // One column cannot move jointly: named and left out.
    plain_series(&corpus.join("svc-narrow"), 1);
    let (v, stdout) = run_corpus_said(&corpus, &d.0.join("out.json"), &["--joint-moves", "3"]);
    assert!(
        stdout.contains("svc-narrow") && stdout.contains("left out"),
        "{stdout}"
    );
    assert_eq!(v["settings"]["joint_moves"], 3, "{v}");
    let series = v["series"].as_object().unwrap();
    assert_eq!(series.keys().collect::<Vec<_>>(), vec!["svc-wide"], "{v}");
    // Two days of test rows (40 % of five days): one joint move a day, each labelled.
    let agent = &v["pooled"]["agent"];
    assert_eq!(agent["segments"], 2, "{agent}");
    assert!(
        agent["labelled_rows"].as_u64().unwrap_or(0) >= 24,
        "{agent}"
    );
}
