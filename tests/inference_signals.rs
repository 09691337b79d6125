//! `#[vigil::observe]` through the facade, as a host uses it: the inference series on the agent's
//! /metrics and the per-tick inference signals in the same sample as the runtime signals.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::*;

#[derive(Debug)]
struct InferenceError;
impl std::fmt::Display for InferenceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("inference failed")
    }
}
impl std::error::Error for InferenceError {}

#[vigil::observe(model = model_id, stage = "predict")]
async fn predict(model_id: &str, fail: bool) -> Result<f32, InferenceError> {
    tokio::task::yield_now().await;
    if fail { Err(InferenceError) } else { Ok(0.5) }
}

#[test]
fn inference_series_and_signals_meet_the_runtime_signals() {
    let rt = host_runtime();
    let agent = fast_agent(100).start(rt.handle()).unwrap();
    let before = next_samples(&agent, 1).remove(0);
    // The agent's tick reads the series, which decides the calls' clock; no call did.
    assert_ne!(vigil::observe::clock_source(), "undecided");
    rt.block_on(async {
        for i in 0..40 {
            let _ = predict("llama-3-8b", i % 4 == 0).await;
        }
    });
    let after = next_samples(&agent, 2);
    // Two ticks later the span has passed: the clock is calibrated (or the monotonic clock).
    let clock = vigil::observe::clock_source();
    assert!(["tsc", "monotonic"].contains(&clock), "{clock}");
    let s = &after[1];
    let calls = signal(s, "inference_calls") - signal(&before, "inference_calls");
    let errors = signal(s, "inference_errors") - signal(&before, "inference_errors");
    assert_eq!(calls, 40.0);
    assert_eq!(errors, 10.0);
    assert_eq!(
        signal(s, "inference_anomalies_error") - signal(&before, "inference_anomalies_error"),
        10.0
    );
    // The tick(s) that saw the calls report their error ratio (a quarter) and a latency under 1 ms.
    let busy: Vec<_> = after
        .iter()
        .filter(|s| signal(s, "inference_error_ratio").is_finite())
        .collect();
    assert!(!busy.is_empty(), "no tick saw the calls");
    let (mut c, mut e) = (0.0, 0.0);
    let mut prev = &before;
    for s in &after {
        let dc = signal(s, "inference_calls") - signal(prev, "inference_calls");
        if dc > 0.0 {
            c += dc;
            e += signal(s, "inference_error_ratio") * dc;
            assert!(signal(s, "inference_latency_p99_seconds") <= 0.001);
        }
        prev = s;
    }
    assert!(
        (e / c - 0.25).abs() < 1e-9,
        "weighted error ratio {}",
        e / c
    );

    // Runtime and inference signals in one feature vector.
    let names = agent.feature_schema().names();
    assert!(names.iter().any(|n| n == "inference_errors_rate.last"));
    assert!(names.iter().any(|n| n == "tokio_alive_tasks.last"));

    let scrape = scrape(agent.local_addr());
    assert_eq!(
        scrape.value(r#"ai_inference_duration_seconds_count{model="llama-3-8b",stage="predict"}"#),
        40.0
    );
    assert_eq!(
        scrape.value(r#"ai_inference_errors_total{model="llama-3-8b",stage="predict"}"#),
        10.0
    );
    assert_eq!(
        scrape.value(
            r#"ai_inference_anomaly_total{model="llama-3-8b",stage="predict",anomaly_type="error"}"#
        ),
        10.0
    );
}
