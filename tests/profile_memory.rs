//! A CPU profile barely moves the process's resident memory (which the detector watches for leaks):
//! the profiler reserves nothing at start, holds a table of about a megabyte while it samples and
//! frees it after. Its own binary, so no other test's threads move the resident memory meanwhile.
//!
//! Resident memory is read in its two parts. What the profiler allocates is anonymous memory
//! (`RssAnon`): each profile steps it by less than 2 MB. The unwinder also reads the loaded objects'
//! unwind tables (`.eh_frame_hdr`, `.eh_frame`) where they are mapped, so the pages it touches
//! become resident as clean file pages (`RssFile`), shared with the page cache and dropped by the
//! kernel under pressure: the first profiles page in what the sampled code needs (measured in this
//! debug test binary: 0.9 MB in the first profile, 1.7–1.8 MB over six, nothing in the last two),
//! later ones little more.
#![cfg(all(
    target_os = "linux",
    target_env = "gnu",
    any(target_arch = "x86_64", target_arch = "aarch64"),
    feature = "profiling"
))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::*;

/// Deep, varied stacks on two threads while the profile runs: many distinct stacks fill more of the
/// profiler's table than one hot loop would.
#[inline(never)]
fn vigil_memory_test_recurse(depth: u32, x: u64) -> u64 {
    if depth == 0 {
        let mut y = x;
        for i in 0..2_000u64 {
            y = std::hint::black_box(y.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i));
        }
        return y;
    }
    std::hint::black_box(vigil_memory_test_recurse(depth - 1, x ^ u64::from(depth)))
}

#[test]
fn a_profile_steps_resident_memory_by_less_than_two_megabytes() {
    let dir = temp_dir("profile-memory");
    let rt = host_runtime();
    let agent = fast_agent(100)
        .data_dir(Some(dir.clone()))
        .event_profiles(Some(Duration::from_secs(1)), Duration::from_secs(60))
        .start(rt.handle())
        .unwrap();
    let addr = agent.local_addr();
    // Ticking, so the agent's own allocations have settled.
    let deadline = Instant::now() + Duration::from_secs(60);
    while scrape(addr).value("vigil_agent_ticks_total") < 5.0 {
        assert!(Instant::now() < deadline, "the agent never ticked");
        std::thread::sleep(Duration::from_millis(50));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..2)
        .map(|t| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = t;
                let mut depth = 0;
                while !stop.load(Ordering::Relaxed) {
                    x = vigil_memory_test_recurse(depth % 40, x);
                    depth += 1;
                }
                x
            })
        })
        .collect();
    // The scrape connection and the workers' stacks exist before the first reading.
    let _ = scrape(addr);
    std::thread::sleep(Duration::from_millis(200));
    let mut steps = Vec::new();
    let mut file_steps = Vec::new();
    for _ in 0..6 {
        let (before, file_before) = (status_bytes("RssAnon:"), status_bytes("RssFile:"));
        let r = get(addr, "/debug/pprof/profile?seconds=1", &[]);
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.bytes.starts_with(&[0x1f, 0x8b]));
        steps.push(status_bytes("RssAnon:") - before);
        file_steps.push(status_bytes("RssFile:") - file_before);
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    eprintln!(
        "resident memory steps of six 1 s profiles: anonymous {steps:?} bytes, file pages \
         {file_steps:?} bytes"
    );
    const MB: f64 = 1024.0 * 1024.0;
    for (i, step) in steps.iter().enumerate() {
        assert!(
            *step < 2.0 * MB,
            "profile {i} stepped resident memory by {step} bytes: {steps:?}"
        );
    }
    // Nothing kept from one profile to the next (the table alone is a megabyte): six profiles
    // together stay within the allocator's and the agent's own drift.
    let total: f64 = steps.iter().sum();
    assert!(
        total < 4.0 * MB,
        "six profiles grew resident memory by {total} bytes: {steps:?}"
    );
    // The unwind tables' pages: what the sampled code needs, paged in once, not a growth per
    // profile (the last three profiles page in less than the first).
    let file_total: f64 = file_steps.iter().sum();
    let late: f64 = file_steps[3..].iter().sum();
    assert!(
        file_total < 8.0 * MB && late < 1.0 * MB,
        "profiles paged in {file_total} bytes of files, {late} in the last three: {file_steps:?}"
    );
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}
