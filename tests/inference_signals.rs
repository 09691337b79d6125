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

/// One request over loopback, read to its end; returns the status line.
fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: vigil\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.lines().next().unwrap_or_default().to_owned()
}

/// A host that serves through the HTTP layer and annotates nothing: its requests' latency and
/// failures reach the detector (missing before the first request, not zero).
#[test]
fn a_host_serving_through_the_http_layer_alone_gives_the_detector_latency_and_errors() {
    use axum::routing::get;
    let rt = host_runtime();
    let agent = fast_agent(100).start(rt.handle()).unwrap();
    let before = next_samples(&agent, 1).remove(0);
    assert!(signal(&before, "http_response_head_p99_seconds").is_nan());
    assert!(signal(&before, "http_error_ratio").is_nan());
    let app = axum::Router::new()
        .route("/v1/embed", get(|| async { "ok" }))
        .route(
            "/v1/fail",
            get(|| async { (axum::http::StatusCode::SERVICE_UNAVAILABLE, "busy") }),
        )
        .layer(vigil::observe::http::HttpMetricsLayer);
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move { axum::serve(listener, app).await });
    for i in 0..40 {
        let path = if i % 4 == 0 { "/v1/fail" } else { "/v1/embed" };
        let status = http_get(addr, path);
        assert!(status.starts_with("HTTP/1.1 "), "{status}");
    }
    let after = next_samples(&agent, 2);
    // The ticks that saw requests: a latency under a second, and a quarter of them failed.
    let seen: Vec<_> = after
        .iter()
        .filter(|s| signal(s, "http_error_ratio").is_finite())
        .collect();
    assert!(!seen.is_empty(), "no tick saw the requests");
    for s in &seen {
        let p99 = signal(s, "http_response_head_p99_seconds");
        assert!(p99 > 0.0 && p99 < 1.0, "{p99}");
        let ratio = signal(s, "http_error_ratio");
        assert!((0.0..=1.0).contains(&ratio), "{ratio}");
    }
    // One request in four failed: every tick that saw a failure says so, and all of them see it.
    assert!(
        seen.iter().any(|s| signal(s, "http_error_ratio") > 0.0),
        "the failures were not read"
    );
    let names = agent.feature_schema().names();
    assert!(
        names.iter().any(|n| n.starts_with("http_error_ratio.")),
        "{names:?}"
    );
    let scrape = scrape(agent.local_addr());
    assert_eq!(
        scrape.value(
            r#"http_server_request_duration_seconds_count{http_request_method="GET",http_route="/v1/fail",http_response_status_code="503"}"#
        ),
        10.0
    );
}
