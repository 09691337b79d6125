//! Each way an inference call goes wrong shows up with the right `anomaly_type`, and the failing
//! request's trace id rides along as an exemplar. Every test uses its own model label.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use support::*;
use vigil_observe::{AnomalyType, ClassifyAnomaly, TraceContext, observe, with_trace};

#[observe(model = "timeout-model", stage = "predict")]
async fn slow_backend() -> Result<u32, tokio::time::error::Elapsed> {
    tokio::time::timeout(
        Duration::from_millis(5),
        tokio::time::sleep(Duration::from_secs(5)),
    )
    .await?;
    Ok(1)
}

#[observe(model = model, stage = "postprocess", check_output)]
fn logits(model: &str, corrupt: bool) -> Vec<f32> {
    if corrupt {
        vec![0.5, f32::NAN]
    } else {
        vec![0.5, 0.25]
    }
}

#[observe(model = "cancel-model", stage = "generate")]
async fn long_generation() -> Result<String, std::io::Error> {
    tokio::time::sleep(Duration::from_secs(30)).await;
    Ok("done".into())
}

#[observe(model = "panic-model", stage = "tokenize")]
fn tokenizer(input: &str) -> usize {
    if input.is_empty() {
        panic!("empty prompt");
    }
    input.len()
}

#[derive(Debug)]
enum GpuError {
    OutOfMemory,
}

impl ClassifyAnomaly for GpuError {
    fn anomaly_type(&self) -> AnomalyType {
        match self {
            GpuError::OutOfMemory => AnomalyType::Oom,
        }
    }
}

#[observe(model = "oom-model", stage = "forward")]
fn forward(batch: usize) -> Result<usize, GpuError> {
    if batch > 64 {
        return Err(GpuError::OutOfMemory);
    }
    Ok(batch)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn timeout_error_is_a_timeout_anomaly_and_an_error() {
    rt().block_on(async { assert!(slow_backend().await.is_err()) });
    assert_eq!(anomalies("timeout-model", "predict", "timeout"), 1.0);
    assert_eq!(anomalies("timeout-model", "predict", "error"), 0.0);
    assert_eq!(errors("timeout-model", "predict"), 1.0);
    assert_eq!(calls("timeout-model", "predict"), 1.0);
}

#[test]
fn nan_output_is_flagged_but_not_an_error() {
    assert_eq!(logits("nan-model", false).len(), 2);
    assert!(logits("nan-model", true)[1].is_nan());
    assert_eq!(anomalies("nan-model", "postprocess", "nan_output"), 1.0);
    assert_eq!(errors("nan-model", "postprocess"), 0.0);
    assert_eq!(calls("nan-model", "postprocess"), 2.0);
}

#[test]
fn dropped_future_is_cancelled() {
    rt().block_on(async {
        let r = tokio::time::timeout(Duration::from_millis(20), long_generation()).await;
        assert!(r.is_err(), "the caller gave up");
    });
    assert_eq!(anomalies("cancel-model", "generate", "cancelled"), 1.0);
    assert_eq!(errors("cancel-model", "generate"), 0.0);
    // The duration of the abandoned call is recorded too.
    assert_eq!(calls("cancel-model", "generate"), 1.0);
}

#[test]
fn panic_is_recorded_then_resumed() {
    assert_eq!(tokenizer("hello"), 5);
    let caught = std::panic::catch_unwind(|| tokenizer(""));
    assert!(caught.is_err(), "the panic must continue to the caller");
    assert_eq!(anomalies("panic-model", "tokenize", "panic"), 1.0);
    assert_eq!(errors("panic-model", "tokenize"), 1.0);
    assert_eq!(calls("panic-model", "tokenize"), 2.0);
}

#[test]
fn user_classification_wins() {
    assert!(forward(8).is_ok());
    assert!(forward(128).is_err());
    assert_eq!(anomalies("oom-model", "forward", "oom"), 1.0);
    assert_eq!(anomalies("oom-model", "forward", "error"), 0.0);
}

#[observe(model = "trace-model", stage = "predict")]
async fn failing_with_trace() -> Result<(), std::io::Error> {
    tokio::task::yield_now().await; // hop workers: the trace follows the task
    Err(std::io::Error::other("bad request"))
}

#[test]
fn failing_request_trace_id_is_an_exemplar_not_a_label() {
    let ctx =
        TraceContext::from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .unwrap();
    rt().block_on(with_trace(ctx, async {
        failing_with_trace().await.unwrap_err()
    }));
    let om = openmetrics();
    let anomaly_line = om
        .lines()
        .find(|l| {
            l.starts_with(r#"ai_inference_anomaly_total{model="trace-model",stage="predict",anomaly_type="error"}"#)
        })
        .unwrap();
    assert!(
        anomaly_line.contains(
            r#"# {trace_id="4bf92f3577b34da6a3ce929d0e0e4736",span_id="00f067aa0ba902b7"} 1"#
        ),
        "{anomaly_line}"
    );
    let bucket_with_exemplar = om.lines().any(|l| {
        l.starts_with(r#"ai_inference_duration_seconds_bucket{model="trace-model""#)
            && l.contains("4bf92f3577b34da6a3ce929d0e0e4736")
    });
    assert!(bucket_with_exemplar, "{om}");
    // Never a label, and never in the 0.0.4 text format (which has no exemplars).
    assert!(
        om.lines().all(|l| !l
            .split(" # ")
            .next()
            .unwrap()
            .contains("4bf92f3577b34da6a3ce929d0e0e4736")),
        "{om}"
    );
    assert!(!text().contains("4bf92f3577b34da6a3ce929d0e0e4736"));
}

#[observe(model = "sync-trace-model", stage = "predict")]
fn sync_failure() -> Result<(), std::io::Error> {
    Err(std::io::Error::from(std::io::ErrorKind::TimedOut))
}

#[test]
fn sync_code_can_hand_in_a_traceparent() {
    let ctx =
        TraceContext::from_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
            .unwrap();
    let _guard = vigil_observe::set_thread_trace(ctx);
    assert!(sync_failure().is_err());
    assert!(openmetrics().contains("0af7651916cd43dd8448eb211c80319c"));
}
