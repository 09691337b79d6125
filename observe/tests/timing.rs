//! Durations as a user sees them: annotated calls timed before and after the clock calibrates
//! (the monotonic clock, then the CPU's counter where the kernel uses it) land in the right buckets,
//! and their sum matches what `Instant` measured around them.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use support::*;
use vigil_observe::observe;

#[observe(model = "timing-model", stage = "sleep")]
fn sleep_for(d: Duration) -> Result<(), std::io::Error> {
    std::thread::sleep(d);
    Ok(())
}

#[observe(model = model, stage = "sleep")]
fn sleep_labelled(model: &str, d: Duration) -> Result<(), std::io::Error> {
    std::thread::sleep(d);
    Ok(())
}

fn bucket(model: &str, le: &str) -> f64 {
    value(
        &text(),
        &format!(
            "ai_inference_duration_seconds_bucket{{model=\"{model}\",stage=\"sleep\",le=\"{le}\"}}"
        ),
    )
}

#[test]
fn calls_are_timed_right_before_and_after_the_clock_calibrates() {
    let mut measured = 0.0;
    // 12 calls of 30 ms with a scrape after each, as an exporter would: calls stay on the monotonic
    // clock until a scrape decides it, then until one 50 ms later calibrates it; the rest read the
    // counter where the kernel uses it.
    let mut sources = Vec::new();
    for _ in 0..12 {
        let t = Instant::now();
        sleep_for(Duration::from_millis(30)).unwrap();
        measured += t.elapsed().as_secs_f64();
        let _ = text();
        sources.push(vigil_observe::clock_source());
    }
    let source = vigil_observe::clock_source();
    assert!(
        ["tsc", "monotonic"].contains(&source),
        "{source} after {sources:?}"
    );
    // 30 ms sleeps: never under 25 ms; on a loaded machine some may overrun 50 ms, none 1 s.
    assert_eq!(bucket("timing-model", "0.025"), 0.0);
    assert_eq!(bucket("timing-model", "1"), 12.0);
    let sum = value(
        &text(),
        "ai_inference_duration_seconds_sum{model=\"timing-model\",stage=\"sleep\"}",
    );
    assert!(
        sum <= measured * 1.005 && sum > measured * 0.97,
        "sum {sum} s, measured around the calls {measured} s ({source})"
    );

    // A label from an argument, alternating between models (the per-thread cache of label sets).
    for i in 0..6 {
        let model = if i % 2 == 0 { "timing-a" } else { "timing-b" };
        sleep_labelled(model, Duration::from_millis(3)).unwrap();
    }
    for model in ["timing-a", "timing-b"] {
        assert_eq!(bucket(model, "0.0025"), 0.0, "{model}");
        assert_eq!(bucket(model, "1"), 3.0, "{model}");
    }
}
