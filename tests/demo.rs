//! `vigil demo` end to end, run as a user runs it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

#[test]
fn demo_serves_load_and_prints_one_line_per_tick() {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
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
    assert!(served >= 150, "{served} requests in 3 s at 100 req/s");
    assert!(last.contains(" 0 client errors"), "{last}");
    // The demo installs CountingAlloc, so allocation rates are live.
    assert!(stdout.contains("live=") && !stdout.lines().nth(3).unwrap().contains("live=n/a"));
}

#[test]
fn demo_quiet_prints_only_the_summary() {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
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
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["demo", "--duration", "1"])
        .env("VIGIL_TICK", "soon")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("VIGIL_TICK"), "{stderr}");
}
