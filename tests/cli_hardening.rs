//! The CLI as a careless or unlucky user drives it: outputs that name an input, a symlink or a device;
//! CSV files with CRLF ends, impossible dates, bad headers, extreme values, too few rows, out-of-order
//! rows; broken pipes. Nothing a user owns may be destroyed, and every refusal names the file and says
//! what to do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod support;

use support::cli::{s, tmpdir, vigil};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `n` rows of two gauges and a counter, one per second from `t0`.
fn good_csv(path: &Path, n: u64) {
    let mut out = String::from("timestamp,load,queue,requests_total\n");
    let mut req = 0u64;
    for i in 0..n {
        req += 100 + i % 13;
        let _ = writeln!(
            out,
            "{},{},{},{req}",
            1_700_000_000 + i,
            50 + (i * 7919) % 17,
            3 + i % 5
        );
    }
    std::fs::write(path, out).unwrap();
}

fn train(csv: &Path, model: &Path) {
    let o = vigil(&["train", "--csv", s(csv), "--out", s(model)]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn an_output_that_is_an_input_is_refused_and_the_input_survives() {
    let d = tmpdir("same");
    let csv = d.0.join("data.csv");
    good_csv(&csv, 300);
    let model = d.0.join("model.json");
    train(&csv, &model);
    let csv_before = std::fs::read(&csv).unwrap();
    let model_before = std::fs::read(&model).unwrap();
    let labels = d.0.join("labels.csv");
    std::fs::write(&labels, "start,end,label\n1700000100,1700000110,anomaly\n").unwrap();
    let labels_before = std::fs::read(&labels).unwrap();
    // Another spelling of the same file is the same file.
    let csv_alias = d.0.join(".").join("data.csv");
    let cases: Vec<Vec<&str>> = vec![
        vec![
            "score",
            "--model",
            s(&model),
            "--csv",
            s(&csv),
            "--out",
            s(&csv),
        ],
        vec![
            "score",
            "--model",
            s(&model),
            "--csv",
            s(&csv),
            "--out",
            s(&model),
        ],
        vec![
            "score",
            "--model",
            s(&model),
            "--csv",
            s(&csv),
            "--out",
            s(&csv_alias),
        ],
        vec!["train", "--csv", s(&csv), "--out", s(&csv)],
        vec![
            "train",
            "--csv",
            s(&csv),
            "--labels",
            s(&labels),
            "--out",
            s(&labels),
        ],
        vec![
            "eval",
            "--model",
            s(&model),
            "--csv",
            s(&csv),
            "--labels",
            s(&labels),
            "--plot",
            s(&labels),
        ],
    ];
    for args in cases {
        let o = vigil(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("same file as the input"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
    assert_eq!(std::fs::read(&csv).unwrap(), csv_before);
    assert_eq!(std::fs::read(&model).unwrap(), model_before);
    assert_eq!(std::fs::read(&labels).unwrap(), labels_before);
}

#[test]
fn files_named_like_temporaries_are_never_deleted() {
    let d = tmpdir("tmpnames");
    // Inputs named as the old temporary files were: `<out>.partial` and `<out>.tmp-vigil`.
    let csv = d.0.join("scores.partial");
    good_csv(&csv, 300);
    let model_csv = d.0.join("model.tmp-vigil");
    good_csv(&model_csv, 300);
    let model = d.0.join("model.json");
    train(&model_csv, &model);
    assert!(model_csv.exists(), "train deleted its own input");
    let out = d.0.join("scores.csv");
    let o = vigil(&[
        "score",
        "--model",
        s(&model),
        "--csv",
        s(&csv),
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(csv.exists() && model_csv.exists());
    // A failing run leaves no temporary file behind and touches nothing else either.
    let bad = d.0.join("bad.csv");
    std::fs::write(&bad, "timestamp,load,queue,requests_total\n1,x,1,1\n").unwrap();
    let o = vigil(&[
        "score",
        "--model",
        s(&model),
        "--csv",
        s(&bad),
        "--out",
        s(&out),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let mut names: Vec<String> = std::fs::read_dir(&d.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "bad.csv",
            "model.json",
            "model.tmp-vigil",
            "scores.csv",
            "scores.partial"
        ]
    );
}

#[test]
fn symlinks_stay_links_and_devices_stay_devices() {
    let d = tmpdir("links");
    let csv = d.0.join("data.csv");
    good_csv(&csv, 300);
    let real = d.0.join("models/v2.json");
    std::fs::create_dir_all(real.parent().unwrap()).unwrap();
    std::fs::write(&real, "old").unwrap();
    let link = d.0.join("current.json");
    std::os::unix::fs::symlink("models/v2.json", &link).unwrap();
    train(&csv, &link);
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(
        std::fs::read_to_string(&real)
            .unwrap()
            .contains("format_version")
    );

    // /dev/full: the write fails with a clear error and the device node is still a device.
    let o = vigil(&[
        "score",
        "--model",
        s(&link),
        "--csv",
        s(&csv),
        "--out",
        "/dev/full",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("/dev/full"), "{}", stderr(&o));
    let meta = std::fs::metadata("/dev/full").unwrap();
    assert!(!meta.is_file(), "/dev/full was replaced by a regular file");
    // /proc/self/fd/1 is the command's standard output (a pipe here): written through.
    let o = vigil(&[
        "score",
        "--model",
        s(&link),
        "--csv",
        s(&csv),
        "--out",
        "/proc/self/fd/1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("timestamp,score,"), "{out}");
    assert_eq!(out.lines().count(), 301);
}

#[test]
fn top_features_with_commas_are_quoted() {
    let d = tmpdir("quote");
    let mut body = String::from("timestamp,\"load,avg\",queue\n");
    for i in 0..300u64 {
        let _ = writeln!(
            body,
            "{},{},{}",
            1_700_000_000 + i,
            50 + (i * 7919) % 17,
            3 + i % 5
        );
    }
    let csv = d.0.join("q.csv");
    std::fs::write(&csv, body).unwrap();
    let model = d.0.join("m.json");
    train(&csv, &model);
    let out = d.0.join("scores.csv");
    let o = vigil(&[
        "score",
        "--model",
        s(&model),
        "--csv",
        s(&csv),
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut r = csv::Reader::from_path(&out).unwrap();
    assert_eq!(r.headers().unwrap().len(), 8);
    assert_eq!(&r.headers().unwrap()[5], "top_features");
    let mut with_comma = 0;
    for rec in r.records() {
        let rec = rec.expect("every row has as many fields as the header");
        assert_eq!(rec.len(), 8);
        with_comma += usize::from(rec[5].contains("load,avg"));
    }
    assert!(with_comma > 0, "no top feature named the comma column");
}

#[test]
fn crlf_files_report_the_right_line() {
    let d = tmpdir("crlf");
    let csv = d.0.join("crlf.csv");
    std::fs::write(&csv, "timestamp,load\r\n1,2\r\n2,x\r\n3,4\r\n").unwrap();
    let o = vigil(&["train", "--csv", s(&csv), "--out", s(&d.0.join("m.json"))]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("crlf.csv:3: column `load`"),
        "{}",
        stderr(&o)
    );
    // CRLF labels too.
    let labels = d.0.join("labels.csv");
    std::fs::write(&labels, "start,end,label\r\n1,2,anomaly\r\n3,4,maybe\r\n").unwrap();
    let good = d.0.join("good.csv");
    good_csv(&good, 200);
    let o = vigil(&[
        "train",
        "--csv",
        s(&good),
        "--labels",
        s(&labels),
        "--out",
        s(&d.0.join("m.json")),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("labels.csv:3"), "{}", stderr(&o));
}

#[test]
fn impossible_dates_and_offsets_are_refused() {
    let d = tmpdir("dates");
    for (i, bad) in [
        "2023-02-30 00:00:00",
        "2023-04-31T10:00:00Z",
        "2023-11-14T22:13:20+99:99",
    ]
    .iter()
    .enumerate()
    {
        let csv = d.0.join(format!("d{i}.csv"));
        std::fs::write(
            &csv,
            format!("timestamp,load\n2023-01-01 00:00:00,1\n{bad},2\n"),
        )
        .unwrap();
        let o = vigil(&["train", "--csv", s(&csv), "--out", s(&d.0.join("m.json"))]);
        assert_eq!(o.status.code(), Some(2), "{bad}");
        assert!(
            stderr(&o).contains(":3: column `timestamp`")
                && stderr(&o).contains("is not a timestamp"),
            "{bad}: {}",
            stderr(&o)
        );
    }
}

/// One rule for every time read from a file: 1970 to 2999. A stray exponent in the last row or in the
/// middle is refused naming its own line (not the next row, not echoed as 300 digits), and a label file
/// for `vigil eval` follows the same rule as `vigil labels import`.
#[test]
fn times_outside_1970_to_2999_are_refused_naming_their_row() {
    let d = tmpdir("time-range");
    for (name, at) in [("last.csv", 300u64), ("middle.csv", 150)] {
        let csv = d.0.join(name);
        let mut body = String::from("timestamp,load\n");
        for i in 1..=300u64 {
            let t = if i == at {
                "1e300".to_owned()
            } else {
                (1_700_000_000 + i).to_string()
            };
            let _ = writeln!(body, "{t},{}", i % 7);
        }
        std::fs::write(&csv, body).unwrap();
        let o = vigil(&["train", "--csv", s(&csv), "--out", s(&d.0.join("m.json"))]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{name}: {err}");
        assert!(
            err.contains(&format!("{name}:{}: column `timestamp`", at + 1))
                && err.contains("1e300 is outside 1970 to 2999"),
            "{name}: {err}"
        );
    }
    // One rule for cells: empty or NaN is missing, an infinity is refused with that rule.
    let csv = d.0.join("inf.csv");
    std::fs::write(
        &csv,
        "timestamp,load\n1700000001,1\n1700000002,NaN\n1700000003,\n1700000004,-inf\n",
    )
    .unwrap();
    let o = vigil(&["train", "--csv", s(&csv), "--out", s(&d.0.join("m.json"))]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("inf.csv:5: column `load`")
            && err.contains("is infinite")
            && err.contains("an empty cell or NaN is a missing value"),
        "{err}"
    );
    // CR-only line ends are named as such.
    let csv = d.0.join("cr.csv");
    std::fs::write(&csv, "timestamp,load\r1700000001,1\r1700000002,2\r").unwrap();
    let o = vigil(&["train", "--csv", s(&csv), "--out", s(&d.0.join("m.json"))]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("carriage return alone") && !err.contains("appears twice"),
        "{err}"
    );
    let csv = d.0.join("good.csv");
    good_csv(&csv, 400);
    let labels = d.0.join("labels.csv");
    std::fs::write(&labels, "start,end,label\n1e300,1e301,anomaly\n").unwrap();
    let o = vigil(&["eval", "--csv", s(&csv), "--labels", s(&labels)]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("labels.csv:2") && err.contains("outside 1970 to 2999"),
        "{err}"
    );
}

#[test]
fn out_of_order_rows_are_refused_by_default_and_skipped_on_request() {
    let d = tmpdir("order");
    let mut body = String::from("timestamp,load,queue,requests_total\n");
    for i in 0..300u64 {
        let t = 1_700_000_000 + i;
        let _ = writeln!(body, "{t},{},{},{}", 50 + i % 7, 3 + i % 5, i * 10);
        if i == 100 || i == 200 {
            // A DST-like repeat and a clock step back.
            let _ = writeln!(body, "{t},1,1,{}", i * 10);
            let _ = writeln!(body, "{},1,1,{}", t - 30, i * 10);
        }
    }
    let csv = d.0.join("steps.csv");
    std::fs::write(&csv, body).unwrap();
    let model = d.0.join("m.json");
    let o = vigil(&["train", "--csv", s(&csv), "--out", s(&model)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--skip-unordered"), "{}", stderr(&o));
    let o = vigil(&[
        "train",
        "--csv",
        s(&csv),
        "--out",
        s(&model),
        "--skip-unordered",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Rows 101/102 and 203/204 of the data are lines 103, 104, 205, 206 of the file.
    assert!(
        stderr(&o).contains("skipped 4 row(s)") && stderr(&o).contains("lines 103, 104, 205, 206"),
        "{}",
        stderr(&o)
    );
    let scores = d.0.join("s.csv");
    let o = vigil(&[
        "score",
        "--model",
        s(&model),
        "--csv",
        s(&csv),
        "--out",
        s(&scores),
        "--skip-unordered",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(&scores).unwrap().lines().count(),
        301
    );
}

#[test]
fn bad_headers_empty_data_and_extreme_values_are_refused_with_the_reason() {
    let d = tmpdir("headers");
    let mut empty_values = String::from("timestamp,load,queue\n");
    let mut huge = String::from("timestamp,load,queue\n");
    for i in 0..200 {
        let _ = writeln!(empty_values, "{i},,");
        let v = if i == 38 { "1e300" } else { "2.5" };
        let _ = writeln!(huge, "{i},{v},{}", i % 5);
    }
    let cases: [(&str, String, &str); 5] = [
        (
            "noname.csv",
            "timestamp,load,\n1,2,3\n".into(),
            "column 3 of the header has no name",
        ),
        (
            "dupname.csv",
            "timestamp,load,load\n1,2,3\n".into(),
            "column `load`: the name appears twice",
        ),
        ("allempty.csv", empty_values, "every signal column is empty"),
        (
            "huge.csv",
            huge,
            // Named on its own line (40: the header, then row 38), not where the first window fills.
            "huge.csv:40: column `load`: values this large overflow",
        ),
        (
            "header_only.csv",
            "timestamp,load\n".into(),
            "has 0 data row(s)",
        ),
    ];
    for (name, body, expected) in cases {
        let csv = d.0.join(name);
        std::fs::write(&csv, body).unwrap();
        let model = d.0.join(format!("{name}.json"));
        let o = vigil(&["train", "--csv", s(&csv), "--out", s(&model)]);
        assert_eq!(o.status.code(), Some(2), "{name}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(name) && stderr(&o).contains(expected),
            "{name}: {}",
            stderr(&o)
        );
        assert!(!model.exists(), "{name}: a model was written");
    }
    // Too few rows says how many a window and training need.
    let short = d.0.join("short.csv");
    good_csv(&short, 80);
    let o = vigil(&["train", "--csv", s(&short), "--out", s(&d.0.join("m.json"))]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("short.csv: has 80 data row(s)")
            && stderr(&o).contains("at least 109 rows"),
        "{}",
        stderr(&o)
    );
    // Scoring a file shorter than the model's long horizon.
    let good = d.0.join("good.csv");
    good_csv(&good, 300);
    let model = d.0.join("good.json");
    train(&good, &model);
    let tiny = d.0.join("tiny.csv");
    good_csv(&tiny, 10);
    let o = vigil(&[
        "score",
        "--model",
        s(&model),
        "--csv",
        s(&tiny),
        "--out",
        s(&d.0.join("o.csv")),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("tiny.csv: has 10 data row(s)") && stderr(&o).contains("60 rows"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn damaged_models_and_mismatched_columns_name_the_file_and_the_columns() {
    let d = tmpdir("models");
    let csv = d.0.join("data.csv");
    good_csv(&csv, 300);
    let model = d.0.join("m.json");
    train(&csv, &model);
    // Bad horizons inside the model file.
    let text = std::fs::read_to_string(&model).unwrap();
    let bad = d.0.join("bad_horizons.json");
    std::fs::write(
        &bad,
        text.replace("\"long_horizon\": 60", "\"long_horizon\": 1"),
    )
    .unwrap();
    let o = vigil(&[
        "score",
        "--model",
        s(&bad),
        "--csv",
        s(&csv),
        "--out",
        s(&d.0.join("o.csv")),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("bad_horizons.json") && stderr(&o).contains("horizons"),
        "{}",
        stderr(&o)
    );
    // Values a trained model never has, edited in: refused on load, naming the field.
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    for (field, edit) in [
        ("detector.threshold", serde_json::json!(1e308)),
        ("detector.settle", serde_json::json!(-1.0)),
        ("summary.tick_seconds", serde_json::json!(0.0)),
        ("summary.tick_seconds", serde_json::json!(-5.0)),
    ] {
        let mut m = v.clone();
        let (section, key) = field.split_once('.').unwrap();
        m[section][key] = edit.clone();
        let edited = d.0.join("edited.json");
        std::fs::write(&edited, serde_json::to_string(&m).unwrap()).unwrap();
        let o = vigil(&["inspect", s(&edited)]);
        assert_eq!(o.status.code(), Some(2), "{field} = {edit}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(field) && stderr(&o).contains("edited.json"),
            "{field} = {edit}: {}",
            stderr(&o)
        );
    }
    // A feature's training extent turned inside out.
    let mut m = v.clone();
    m["detector"]["extent"][0] = serde_json::json!([5.0, 1.0]);
    let edited = d.0.join("edited.json");
    std::fs::write(&edited, serde_json::to_string(&m).unwrap()).unwrap();
    let o = vigil(&["inspect", s(&edited)]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("detector.extent of feature 0"),
        "{}",
        stderr(&o)
    );
    // Other columns: the error names them.
    let other = d.0.join("other.csv");
    let mut body = String::from("timestamp,load,latency\n");
    for i in 0..100 {
        let _ = writeln!(body, "{i},{},{}", i % 7, i % 3);
    }
    std::fs::write(&other, body).unwrap();
    let o = vigil(&[
        "score",
        "--model",
        s(&model),
        "--csv",
        s(&other),
        "--out",
        s(&d.0.join("o.csv")),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("lacks `queue`, `requests_total`") && e.contains("not trained on `latency`"),
        "{e}"
    );
    // A plot into a directory that does not exist: the path and the reason.
    let o = vigil(&[
        "eval",
        "--model",
        s(&model),
        "--csv",
        s(&csv),
        "--labels",
        s(&csv),
        "--plot",
        "/missing/dir/p.svg",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("/missing/dir/p.svg")
            && stderr(&o).contains("does the directory exist"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn inspect_into_a_closed_pipe_exits_quietly() {
    let d = tmpdir("pipe");
    let csv = d.0.join("data.csv");
    good_csv(&csv, 300);
    let model = d.0.join("m.json");
    train(&csv, &model);
    let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["inspect", "--features", s(&model)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Like `| head -0`: the reader is gone before the first line is written.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.status.success(), "{:?}: {err}", out.status);
}

#[test]
fn arguments_are_checked_before_any_input_is_read() {
    let d = tmpdir("args");
    // A FIFO nobody writes to: reading it would block forever.
    let fifo = d.0.join("never.csv");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args([
            "train",
            "--csv",
            s(&fifo),
            "--clusters",
            "0",
            "--out",
            s(&d.0.join("m.json")),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if started.elapsed() > Duration::from_secs(20) {
            child.kill().unwrap();
            panic!("vigil train read its input before checking --clusters");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    let out = child.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("clusters"));
}

#[test]
fn training_memory_is_bounded_by_a_documented_sample() {
    let d = tmpdir("sample");
    let csv = d.0.join("big.csv");
    good_csv(&csv, 3000);
    let model = d.0.join("m.json");
    let o = vigil(&[
        "train",
        "--csv",
        s(&csv),
        "--out",
        s(&model),
        "--max-windows",
        "500",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = vigil(&["inspect", s(&model)]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("uniform sample of 500 of the 2941 windows read"),
        "{text}"
    );
    let o = vigil(&[
        "train",
        "--csv",
        s(&csv),
        "--out",
        s(&model),
        "--max-windows",
        "10",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--max-windows 10"), "{}", stderr(&o));
}

/// Lines are capped: an endless line (`/dev/zero`), a huge cell or a huge header name is refused naming
/// its line within the first MiB, not read into memory; a bad cell is quoted by a short prefix only.
#[test]
fn endless_lines_and_huge_cells_are_refused_briefly() {
    let d = tmpdir("lines");
    let out = d.0.join("o.csv");
    let check = |o: &std::process::Output, what: &str, line: &str| {
        assert_eq!(o.status.code(), Some(2), "{what}: {}", stderr(o));
        let e = stderr(o);
        assert!(
            e.contains(&format!("line {line} is longer than 1024 KiB")),
            "{what}: {e}"
        );
        assert!(e.len() < 2_000, "{what}: {} bytes of stderr", e.len());
    };
    let o = vigil(&["score", "--csv", "/dev/zero", "--out", s(&out)]);
    check(&o, "score /dev/zero", "1");
    let good = d.0.join("good.csv");
    good_csv(&good, 300);
    let o = vigil(&["eval", "--csv", s(&good), "--labels", "/dev/zero"]);
    check(&o, "eval --labels /dev/zero", "1");
    // A 3 MB cell on line 4.
    let mut text = String::from("timestamp,load\n1700000000,1\n1700000001,2\n1700000002,");
    text.push_str(&"9".repeat(3 << 20));
    text.push('\n');
    let big = d.0.join("big.csv");
    std::fs::write(&big, &text).unwrap();
    let o = vigil(&["score", "--csv", s(&big), "--out", s(&out)]);
    check(&o, "a 3 MB cell", "4");
    // A 3 MB header name.
    let header = d.0.join("header.csv");
    std::fs::write(&header, format!("timestamp,{}\n1,2\n", "x".repeat(3 << 20))).unwrap();
    let o = vigil(&["score", "--csv", s(&header), "--out", s(&out)]);
    check(&o, "a 3 MB header", "1");
    // A bad cell under the cap: quoted by a prefix, with its length.
    let mut text = String::from("timestamp,load\n1700000000,1\n1700000001,");
    text.push_str(&"z".repeat(100_000));
    text.push('\n');
    let bad = d.0.join("bad.csv");
    std::fs::write(&bad, &text).unwrap();
    let o = vigil(&["score", "--csv", s(&bad), "--out", s(&out)]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("bad.csv:3") && e.contains("(100000 bytes in all)") && e.len() < 2_000,
        "{e}"
    );
}

/// `score` and `eval` read their CSV once: a pipe (`/dev/stdin`) and a FIFO work like a file (the tick
/// is estimated from the first rows, kept in memory), bounded in time.
#[test]
fn score_reads_a_pipe_and_a_fifo_once() {
    let d = tmpdir("pipes");
    let csv = d.0.join("data.csv");
    good_csv(&csv, 300);
    let text = std::fs::read(&csv).unwrap();
    let rows = text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count()
        - 1;
    let wait = |mut child: std::process::Child, what: &str| -> Output {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if child.try_wait().unwrap().is_some() {
                return child.wait_with_output().unwrap();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{what}: still running after 60 s (read twice?)");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // Standard input as the CSV.
    let out = d.0.join("stdin.csv");
    let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["score", "--csv", "/dev/stdin", "--out", s(&out)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&text).unwrap();
    }
    let o = wait(child, "/dev/stdin");
    assert!(o.status.success(), "{}", stderr(&o));
    let scored = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        scored.lines().count(),
        rows + 1,
        "one output row per input row"
    );
    // A FIFO.
    let fifo = d.0.join("fifo.csv");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let writer = {
        let (fifo, text) = (fifo.clone(), text.clone());
        std::thread::spawn(move || std::fs::write(fifo, text))
    };
    let out = d.0.join("fifo-out.csv");
    let child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["score", "--csv", s(&fifo), "--out", s(&out)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let o = wait(child, "a FIFO");
    assert!(o.status.success(), "{}", stderr(&o));
    writer.join().unwrap().unwrap();
    assert_eq!(
        std::fs::read_to_string(&out).unwrap().lines().count(),
        rows + 1
    );
}

/// Usage and input errors exit 2 wherever they come from: a flag the agent refuses (demo's
/// `--tick`), a `VIGIL_*` value, an Alertmanager payload `labels import` cannot read (named by line).
#[test]
fn refused_settings_and_payloads_exit_2() {
    for tick in ["0", "5ms", "soon"] {
        let o = vigil(&["demo", "--tick", tick, "--duration", "1"]);
        assert_eq!(o.status.code(), Some(2), "--tick {tick}: {}", stderr(&o));
        assert!(stderr(&o).contains("tick"), "{}", stderr(&o));
    }
    let o = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["demo", "--duration", "1"])
        .env("VIGIL_TICK", "bogus")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("VIGIL_TICK"), "{}", stderr(&o));
    let d = tmpdir("exit-codes");
    let payload = d.0.join("hooks.json");
    std::fs::write(&payload, "{\"version\":\"4\",\"status\":\"firing\"}\n").unwrap();
    let o = vigil(&[
        "labels",
        "import",
        s(&payload),
        "--store",
        s(&d.0.join("store")),
        "--create",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("hooks.json:1:"), "{}", stderr(&o));
}
