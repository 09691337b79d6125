//! `vigil demo` end to end, run as a user runs it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

/// Removes a test's data directory when the test ends.
struct Cleanup(std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `vigil` with its own data directory (the demo keeps a store like any host; parallel tests must
/// not share one).
fn vigil(test: &str) -> (Command, std::path::PathBuf) {
    let data = std::env::temp_dir().join(format!("vigil-demo-data-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let mut c = Command::new(env!("CARGO_BIN_EXE_vigil"));
    c.env("VIGIL_DATA_DIR", &data);
    // No event profiles: their memory reservation (seconds in a debug binary) comes before the
    // first tick, and these runs count ticks over a few seconds.
    c.env("VIGIL_PROFILE_ON_EVENT", "off");
    (c, data)
}

#[test]
fn demo_serves_load_and_prints_one_line_per_tick() {
    let (mut cmd, data) = vigil("serves");
    let _cleanup = Cleanup(data);
    let out = cmd
        .args([
            "demo",
            "--duration",
            "3",
            "--listen",
            "127.0.0.1:0",
            "--rps",
            "100",
        ])
        .env("VIGIL_TICK", "500ms")
        .env("VIGIL_GPU", "off")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ticks = stdout.lines().filter(|l| l.starts_with("t=")).count();
    assert!(
        ticks >= 4,
        "expected ~6 tick lines at 500ms over 3s:\n{stdout}"
    );
    let last = stdout.lines().last().unwrap();
    assert!(last.contains("requests served"), "{last}");
    let served: u64 = last
        .split(" requests served")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    // The load varies around 100 req/s (ramps, bursts, quiet periods), never below 0.2x.
    assert!(served >= 50, "{served} requests in 3 s at ~100 req/s");
    assert!(last.contains(" 0 client errors"), "{last}");
    // The demo installs CountingAlloc, so allocation rates are live.
    let third_tick = stdout
        .lines()
        .filter(|l| l.starts_with("t="))
        .nth(2)
        .unwrap();
    assert!(
        third_tick.contains(" live ") && !third_tick.contains("live   n/a"),
        "{third_tick}"
    );
}

/// The showcase: after the warm-up one fault is injected; its window is in the recorded labels, the
/// summary says what became of it, the report has a timeline, and the live view fits 100 columns.
#[test]
fn demo_injects_a_fault_records_it_and_summarises_it() {
    let dir = std::env::temp_dir().join(format!("vigil-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (mut cmd, data) = vigil("fault");
    let out = cmd
        .args([
            "demo",
            "--duration",
            "25",
            "--listen",
            "127.0.0.1:0",
            "--tick",
            "100ms",
            "--faults",
            "memory_leak",
            "--record",
            dir.join("rec").to_str().unwrap(),
            "--report",
            dir.join("report").to_str().unwrap(),
        ])
        .env("VIGIL_WARMUP", "5s")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in stdout
        .lines()
        .filter(|l| l.starts_with("t=") || l.starts_with(">>"))
    {
        assert!(
            line.chars().count() <= 100,
            "wider than 100 columns: {line}"
        );
    }
    assert!(
        stdout.contains(">> ") && stdout.contains("injecting memory_leak"),
        "{stdout}"
    );
    let summary = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("memory_leak"))
        .unwrap_or_else(|| panic!("no summary line for the fault:\n{stdout}"));
    assert!(
        summary.contains("injected ticks")
            && (summary.contains("detected") || summary.contains("missed")),
        "{summary}"
    );
    let labels = std::fs::read_to_string(dir.join("rec/demo-seed1.labels.csv")).unwrap();
    let row = labels
        .lines()
        .nth(1)
        .unwrap_or_else(|| panic!("no label row: {labels}"));
    let fields: Vec<&str> = row.split(',').collect();
    assert_eq!(fields[2..], ["anomaly", "memory_leak", "injected"], "{row}");
    let (start, end): (f64, f64) = (fields[0].parse().unwrap(), fields[1].parse().unwrap());
    assert!(
        end - start >= 2.0 && end - start <= 4.5,
        "30 ticks of 100 ms: {start}..{end}"
    );
    // The recording is what `vigil train` reads, and the fault lies inside it.
    let signals = std::fs::read_to_string(dir.join("rec/demo-seed1.csv")).unwrap();
    let first: f64 = signals
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let last: f64 = signals
        .lines()
        .last()
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(first < start && end <= last, "{first} {start} {end} {last}");
    let svg = std::fs::read_to_string(dir.join("report/timeline.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("threshold"));
    assert!(
        std::fs::read_to_string(dir.join("report/report.md"))
            .unwrap()
            .contains("memory_leak")
    );
    // The demo kept its store like any host: every tick (25 s at 100 ms), with features once warm.
    let store = vigil::store::Store::open_read_only(&data).unwrap();
    let stats = store.stats().unwrap();
    assert!(stats.ticks >= 150, "{stats:?}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn demo_quiet_prints_only_the_summary() {
    let (mut cmd, data) = vigil("quiet");
    let _cleanup = Cleanup(data);
    let out = cmd
        .args([
            "demo",
            "--duration",
            "1",
            "--listen",
            "127.0.0.1:0",
            "--quiet",
        ])
        .env("VIGIL_GPU", "off")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("t=")).count(),
        0,
        "{stdout}"
    );
}

#[test]
fn demo_with_a_bad_variable_exits_non_zero_naming_it() {
    let (mut cmd, data) = vigil("badvar");
    let _cleanup = Cleanup(data);
    let out = cmd
        .args(["demo", "--duration", "1"])
        .env("VIGIL_TICK", "soon")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("VIGIL_TICK"), "{stderr}");
}

/// `VIGIL_GPU=nvml` on a machine without an NVIDIA driver: the demo says why there is no real GPU leak,
/// falls back to the scripted device (instead of failing to start on NVML) and still catches the leak,
/// typed right. On a GPU host the same command allocates real device memory (scripts/gpu-check).
#[test]
fn demo_with_vigil_gpu_nvml_and_no_driver_says_why_and_uses_the_scripted_device() {
    let (mut cmd, data) = vigil("gpu-nvml");
    let _cleanup = Cleanup(data);
    let out = cmd
        .args([
            "demo",
            "--duration",
            "40",
            "--listen",
            "127.0.0.1:0",
            "--tick",
            "100ms",
            "--quiet",
            "--faults",
            "gpu_memory_leak",
        ])
        // A warm-up that covers the load's bursts, as `the_demo_ends_by_itself_...` says why.
        .env("VIGIL_WARMUP", "20s")
        .env("VIGIL_GPU", "nvml")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if stdout.contains("allocates real device memory") {
        return; // A GPU host: the real path, checked by scripts/gpu-check.
    }
    assert!(
        stdout.contains("no real GPU leak (cannot load the CUDA driver (libcuda.so.1)")
            && stdout.contains("GPU signals come from the scripted device"),
        "{stdout}"
    );
    let summary = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("gpu_memory_leak"))
        .unwrap_or_else(|| panic!("no summary line for the fault:\n{stdout}"));
    assert!(
        summary.contains("detected after") && summary.contains("as gpu_memory_leak"),
        "{summary}"
    );
    assert!(!summary.contains("wrong type"), "{summary}");
}

/// A misspelt `VIGIL_*` variable is not ignored silently: one warning names it and the closest setting.
#[test]
fn an_unknown_vigil_variable_is_named_with_the_closest_setting() {
    let (mut cmd, data) = vigil("unknownvar");
    let _cleanup = Cleanup(data);
    let out = cmd
        .args([
            "demo",
            "--duration",
            "1",
            "--listen",
            "127.0.0.1:0",
            "--quiet",
        ])
        .env("VIGIL_GPU", "off")
        .env("VIGIL_TICKK", "5s")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("VIGIL_TICKK is set but is not a Vigil setting")
            && stderr.contains("did you mean VIGIL_TICK?"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("VIGIL_TICKK").count(), 1, "once: {stderr}");
}

/// A start-up error says its cause once (the agent's message quotes it; the chain is not printed
/// again after it).
#[test]
fn a_start_up_error_says_its_cause_once() {
    let (mut cmd, data) = vigil("cause-once");
    let _cleanup = Cleanup(data);
    let out = cmd
        .args(["demo", "--duration", "1"])
        .env("VIGIL_GPU", "off")
        .env("VIGIL_MODEL", "/nonexistent/model.json")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("vigil: error:"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.contains("VIGIL_MODEL"), "{line}");
    assert_eq!(
        line.matches("No such file or directory").count(),
        1,
        "{line}"
    );
}

/// Without `--duration` the demo ends by itself once every fault has run and the quiet stretch after
/// the last one is over, and prints its summary (through a pipe, as `| tee` would read it). The
/// warm-up covers the load's bursts (seed 1's plan bursts at ticks 120 to 250), as a service's
/// warm-up covers its usual load: after a 5 s warm-up that never saw one, the first 2.5x burst slowed
/// the debug build's streamed generations into a first-token event before the fault.
#[test]
fn the_demo_ends_by_itself_after_the_show_with_its_summary() {
    let (mut cmd, data) = vigil("ends");
    let _cleanup = Cleanup(data);
    let mut child = cmd
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--tick",
            "100ms",
            "--quiet",
            "--faults",
            "memory_leak",
        ])
        .env("VIGIL_WARMUP", "20s")
        .env("VIGIL_GPU", "off")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the demo did not end by itself within 90 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("summary:") && stdout.contains("detected 1 of 1 faults"),
        "{stdout}"
    );
    assert!(
        stdout.lines().last().unwrap().contains("vigil demo: done"),
        "{stdout}"
    );
}
