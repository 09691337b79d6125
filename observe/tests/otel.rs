//! With the `opentelemetry` feature, the exemplar's trace id is the current tracing span's
//! OpenTelemetry trace id (`cargo test -p vigil-observe --features opentelemetry`).
#![cfg(feature = "opentelemetry")]
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use vigil_observe::observe;

#[observe(model = "otel-model", stage = "predict")]
fn predict() -> Result<(), std::io::Error> {
    Err(std::io::Error::other("boom"))
}

#[test]
fn exemplar_carries_the_current_span_trace_id() {
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let tracer = provider.tracer("vigil-test");
    let subscriber =
        tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(tracer));
    let trace_id = tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!("inference request");
        let _entered = span.enter();
        let id = span.context().span().span_context().trace_id();
        assert!(predict().is_err());
        id
    });
    let om = support::openmetrics();
    let line = om
        .lines()
        .find(|l| l.starts_with(r#"ai_inference_anomaly_total{model="otel-model",stage="predict",anomaly_type="error"}"#))
        .unwrap();
    assert!(
        line.contains(&format!("trace_id=\"{trace_id}\"")),
        "{line} vs {trace_id}"
    );
}
