//! The CPU profiler's memory is reserved at start, so a profile taken later barely moves the process's
//! resident memory (which the detector watches for leaks). Its own binary: the reservation happens once
//! per process.
#![cfg(all(target_os = "linux", feature = "profiling"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use support::*;

/// This process's resident memory, bytes.
fn rss() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: f64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kb * 1024.0
}

#[test]
fn a_profile_after_the_reservation_barely_moves_resident_memory() {
    let dir = temp_dir("profile-memory");
    let rt = host_runtime();
    let agent = fast_agent(100)
        .data_dir(Some(dir.clone()))
        .event_profiles(Some(Duration::from_secs(1)), Duration::from_secs(60))
        .unwrap()
        .start(rt.handle())
        .unwrap();
    let addr = agent.local_addr();
    // Reserved on the profiling thread at start (symbolising a debug binary takes seconds); `start`
    // did not wait for it on the host's thread — the first scrape finds it still in flight — and
    // the agent ticks only once it is done (up to its 10 s wait), so no window sees that step.
    let deadline = Instant::now() + Duration::from_secs(120);
    // The agent's wait ends after 10 s whatever happens (a slow machine): check the order before.
    let waits_until = Instant::now() + Duration::from_secs(9);
    let mut first = true;
    let reserved = loop {
        let m = scrape(addr);
        let v = m.value("vigil_profile_reserved_bytes");
        if first {
            assert!(
                v.is_nan(),
                "start returned after the reservation ({v} bytes): it waited on the host's thread"
            );
            first = false;
        }
        if v.is_finite() {
            break v;
        }
        let ticks = m.value("vigil_agent_ticks_total");
        assert!(
            ticks == 0.0 || ticks.is_nan() || Instant::now() > waits_until,
            "{ticks} ticks while the profiler's memory was still being reserved"
        );
        assert!(
            Instant::now() < deadline,
            "the profiler's memory was never reserved"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // pprof-rs's sample table alone is tens of MB.
    assert!(reserved > 20e6, "reserved only {reserved} bytes");
    let before = rss();
    let r = get(addr, "/debug/pprof/profile?seconds=1", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let r = get(addr, "/debug/pprof/profile?seconds=1", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let grew = rss() - before;
    eprintln!("reserved {reserved:.0} bytes at start; two profiles later grew {grew:.0} bytes");
    assert!(
        grew < reserved / 4.0,
        "two profiles grew resident memory by {grew} bytes (reserved {reserved})"
    );
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}
