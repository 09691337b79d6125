//! `vigil bench detect` and `vigil bench overhead` run end to end as a user runs them, and fill every
//! field of their JSON.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::cli::succeed;

use std::process::Command;

use serde_json::Value;

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("vigil-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `vigil ARGS… EXTRA… --json DIR/out.json`, which must succeed: the JSON it wrote and its output.
fn run_json(dir: &std::path::Path, args: &[&str], extra: &[&str]) -> (Value, std::process::Output) {
    let json = dir.join("out.json");
    let out = succeed(
        Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(args)
            .args(extra)
            .args(["--json", json.to_str().unwrap()]),
    );
    let v = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    (v, out)
}

fn assert_scenarios(v: &Value, what: &str) {
    let scen = v["scenarios"]
        .as_object()
        .unwrap_or_else(|| panic!("{what}: no scenarios: {v}"));
    assert_eq!(scen.len(), 11, "{what}: one scenario per fault type");
    for (name, s) in scen {
        assert_eq!(s["runs"].as_u64(), Some(1), "{what} {name}");
        let rate = s["detection_rate"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&rate), "{what} {name}");
        for key in ["ttd_median_ticks", "ttd_p95_ticks", "type_accuracy"] {
            // Filled: a number, or null exactly when nothing was detected.
            assert!(
                s[key].is_number() || (s[key].is_null() && rate == 0.0),
                "{what} {name} {key}: {}",
                s[key]
            );
        }
    }
    assert!(
        v["false_alarms_per_3600_ticks"].as_f64().unwrap() >= 0.0,
        "{what}"
    );
    assert!(v["fault_free_ticks"].as_u64().unwrap() >= 600, "{what}");
}

#[test]
fn bench_detect_quick_measures_the_detector_and_the_static_rules_in_one_run() {
    let d = tmp("detect");
    let json = d.join("detect.json");
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args([
            "bench",
            "detect",
            "--quick",
            "--json",
            json.to_str().unwrap(),
        ])
        .args(["--record", d.join("rec").to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("static rules"), "{stdout}");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_scenarios(&v, "detector");
    assert_scenarios(&v["baseline"], "baseline");
    // The recordings replay offline: signals with a timestamp column, labels of every injected fault.
    let labels = std::fs::read_to_string(d.join("rec/faults-seed1.labels.csv")).unwrap();
    assert_eq!(labels.lines().count(), 12, "{labels}");
    let signals = std::fs::read_to_string(d.join("rec/fault-free-seed101.csv")).unwrap();
    assert!(signals.starts_with("timestamp,"));
    assert!(signals.lines().count() > 600);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn bench_overhead_reports_ratios_with_their_spread() {
    let d = tmp("overhead");
    let json = d.join("overhead.json");
    succeed(
        Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["bench", "overhead", "--rounds", "2", "--seconds", "1"])
            .args(["--json", json.to_str().unwrap()]),
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    // The agent alone and the agent with allocation counting, each against the plain host.
    for arm in ["agent_vs_plain", "full_vs_plain"] {
        for key in ["throughput_ratio", "p50_ratio", "p99_ratio"] {
            for stat in ["median", "min", "max"] {
                let x = v[arm][key][stat]
                    .as_f64()
                    .unwrap_or_else(|| panic!("{arm}.{key}.{stat}: {v}"));
                assert!(x > 0.0 && x.is_finite(), "{arm}.{key}.{stat} = {x}");
            }
        }
    }
    assert_eq!(v["rounds"].as_array().unwrap().len(), 2);
    let _ = std::fs::remove_dir_all(&d);
}

/// `vigil bench memory` measures the host alone, then with the agent (store on, a cold start, a CPU
/// profile where the build has one) in the same process, and says what the agent added.
#[test]
fn bench_memory_reports_what_the_agent_adds_to_the_host() {
    let d = tmp("memory");
    let (v, out) = run_json(
        &d,
        &["bench", "memory", "--seconds", "1", "--warm-up", "3s"],
        &["--profile-seconds", "1"],
    );
    let bytes = |k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k} missing: {v}"));
    assert!(bytes("host_bytes") > 1e6, "{v}");
    assert!(bytes("with_agent_bytes") > bytes("host_bytes") * 0.5, "{v}");
    assert!(bytes("requests_served") > 0.0, "{v}");
    if cfg!(all(
        feature = "profiling",
        target_os = "linux",
        target_env = "gnu"
    )) {
        assert!(bytes("profile_gz_bytes") > 0.0, "{v}");
    }
    assert_eq!(
        bytes("agent_added_bytes"),
        (bytes("end_bytes") - bytes("host_bytes")).max(0.0),
        "{v}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("agent adds"), "{stdout}");
    let _ = std::fs::remove_dir_all(&d);
}

/// `vigil bench gpu` needs a real NVIDIA GPU; without one it says so and exits non-zero, having
/// touched nothing (scripts/gpu-check runs it where there is one).
#[test]
fn bench_gpu_without_a_driver_says_what_it_needs() {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["bench", "gpu", "--samples", "5"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        // A GPU host: every check passed and the table was printed.
        assert!(String::from_utf8_lossy(&out.stdout).contains("| check | seen |"));
        return;
    }
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("vigil bench gpu needs an NVIDIA GPU and its driver")
            && stderr.contains("libnvidia-ml.so.1"),
        "{stderr}"
    );
}

/// `vigil bench soak`, shortened to twice the ticks the history takes to fill (about 45 s at 10 ms):
/// it reads resident memory throughout and reports when the history was full and after; a run too
/// short to see the history full is refused with the number it needs.
#[test]
fn bench_soak_reports_resident_memory_once_the_history_is_full() {
    let short = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["bench", "soak", "--ticks", "3000", "--tick", "10ms"])
        .output()
        .unwrap();
    assert!(!short.status.success());
    let err = String::from_utf8_lossy(&short.stderr);
    assert!(err.contains("--ticks must be at least 4120"), "{err}");

    let d = tmp("soak");
    let (v, out) = run_json(
        &d,
        &["bench", "soak", "--ticks", "4120", "--tick", "10ms"],
        &["--refit-interval", "10s"],
    );
    let num = |k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k} missing: {v}"));
    assert!(num("ticks") >= 4120.0, "{v}");
    assert_eq!(num("history_full_at_ticks"), 2060.0, "{v}");
    assert!(num("full_bytes") > num("host_bytes"), "{v}");
    assert!(num("peak_after_full_bytes") >= num("end_bytes"), "{v}");
    let readings = v["readings"].as_array().unwrap();
    assert!(readings.len() >= 20, "{} readings", readings.len());
    assert!(
        readings
            .windows(2)
            .all(|w| w[1]["ticks"].as_u64() >= w[0]["ticks"].as_u64()),
        "{v}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("resident memory once the history was full"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&d);
}
