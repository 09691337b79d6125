//! Runtime of the `#[vigil::observe]` attribute: inference metrics for annotated functions.
//!
//! ```
//! # use vigil_observe as observe; // in applications: `vigil::observe`
//! #[derive(Debug)]
//! struct ModelError;
//! impl std::fmt::Display for ModelError {
//!     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("model failed") }
//! }
//! impl std::error::Error for ModelError {}
//!
//! #[observe::observe(model = model_id, stage = "predict")]
//! fn predict(model_id: &str, x: &[f32]) -> Result<Vec<f32>, ModelError> {
//!     if x.is_empty() { return Err(ModelError); }
//!     Ok(x.iter().map(|v| v * 2.0).collect())
//! }
//!
//! predict("resnet-50", &[1.0]).unwrap();
//! assert!(predict("resnet-50", &[]).is_err());
//! let mut text = String::new();
//! observe::encode_prometheus_text(&mut text);
//! assert!(text.contains(r#"ai_inference_errors_total{model="resnet-50",stage="predict"} 1"#));
//! ```
//!
//! Every annotated call records `ai_inference_duration_seconds{model,stage}` (a histogram, 1 ms to 60 s),
//! and, when it fails, `ai_inference_errors_total{model,stage}` and
//! `ai_inference_anomaly_total{model,stage,anomaly_type}` with `anomaly_type` one of [`AnomalyType`]. The
//! trace id of the failing request ([`TraceContext`]) is attached as an OpenMetrics exemplar on the
//! anomaly counter and on the duration bucket, never as a label.
//!
//! The hot path is atomics only: a successful call costs two clock reads (the CPU's time-stamp counter
//! where the kernel uses it as its clock, decided and calibrated by the series' readers — the agent's
//! tick and scrapes — never by a call; the monotonic clock elsewhere and until then:
//! [`clock_source`]), one label lookup and two relaxed atomic adds. With `ENABLE_AI_OBSERVABILITY=false` (or [`set_enabled`]`(false)`) an annotated call does
//! one relaxed atomic load and nothing else.
//!
//! Streamed generation (a response sent token by token, as server-sent events or a gRPC server
//! stream) is observed with [`stream`] (or [`try_stream`] for a stream of `Result`s): the stream's
//! end-to-end duration and outcome go to the same series as an annotated call (a stream dropped before
//! its end — the client went away — counts as `cancelled`), and
//! `gen_ai_server_time_to_first_token_seconds{model,stage}`,
//! `gen_ai_server_time_per_output_token_seconds{model,stage}` and
//! `gen_ai_server_tokens_total{model,stage,type}` (`input`, `output`) follow the OpenTelemetry GenAI
//! conventions.
//!
//! A host's request queue in front of a model ([`queue`]): requests waiting and running, their queue
//! time and the batches the engine runs, as `ai_inference_queue_waiting_requests`,
//! `ai_inference_queue_running_requests`, `ai_inference_queue_time_seconds`,
//! `ai_inference_batches_total` and `ai_inference_batched_requests_total` `{model,stage}`.
//!
//! This crate owns no registry: the Vigil agent serves these series beside its own at `GET /metrics`
//! ([`encode_prometheus_text`], [`encode_openmetrics`]) and folds their totals into every tick
//! ([`totals`]).

mod anomaly;
mod call;
mod clock;
mod encode;
#[cfg(feature = "http")]
pub mod http;
mod output;
mod queue;
mod series;
mod stream;
mod switch;
mod trace;

pub use anomaly::{AnomalyType, ClassifyAnomaly, classify_std_error};
pub use call::Call;
pub use clock::clock_source;
pub use encode::{
    ANOMALY_HELP, ANOMALY_METRIC, BATCHED_HELP, BATCHED_METRIC, BATCHES_HELP, BATCHES_METRIC,
    DURATION_HELP, DURATION_METRIC, ERRORS_HELP, ERRORS_METRIC, HTTP_ACTIVE_HELP,
    HTTP_ACTIVE_METRIC, HTTP_DURATION_HELP, HTTP_DURATION_METRIC, HTTP_RESPONSE_HEAD_HELP,
    HTTP_RESPONSE_HEAD_METRIC, QUEUE_RUNNING_HELP, QUEUE_RUNNING_METRIC, QUEUE_TIME_HELP,
    QUEUE_TIME_METRIC, QUEUE_WAITING_HELP, QUEUE_WAITING_METRIC, REQUEST_DURATION_HELP,
    REQUEST_DURATION_METRIC, ROUTE_OVERFLOW_HELP, ROUTE_OVERFLOW_METRIC, RPC_DURATION_HELP,
    RPC_DURATION_METRIC, TIME_PER_OUTPUT_TOKEN_HELP, TIME_PER_OUTPUT_TOKEN_METRIC,
    TIME_TO_FIRST_TOKEN_HELP, TIME_TO_FIRST_TOKEN_METRIC, TOKENS_HELP, TOKENS_METRIC,
};
pub use output::OutputCheck;
pub use queue::{Queue, Queued, Running, queue};
pub use series::{BUCKETS, DEFAULT_LABEL_CAP, OVERFLOW_LABEL, Totals, set_label_cap};
pub use stream::{ObservedStream, stream, try_stream};
pub use switch::{enabled, parse_enabled, set_enabled};
pub use trace::{ThreadTraceGuard, TraceContext, TraceparentError, set_thread_trace, with_trace};
pub use vigil_observe_macros::observe;

/// Process-wide totals over every annotated call, stream and queue since start, and the HTTP layer's
/// requests (feature `http`), for the agent's per-tick signals: a copy of the series list, then
/// relaxed loads.
pub fn totals() -> Totals {
    #[cfg_attr(not(feature = "http"), allow(unused_mut))]
    let mut t = series::totals();
    #[cfg(feature = "http")]
    http::add_totals(&mut t);
    t
}

/// Appends the inference series in Prometheus text format 0.0.4 (no exemplars: the format has none):
/// annotated calls and streams, and the HTTP layer's requests (feature `http`).
pub fn encode_prometheus_text(out: &mut String) {
    encode::encode_calls(out, false);
    #[cfg(feature = "http")]
    http::encode(out, false);
}

/// Appends the inference series in OpenMetrics 1.0 text format, with trace-id exemplars, without the
/// final `# EOF` (the caller ends the whole exposition).
pub fn encode_openmetrics(out: &mut String) {
    encode::encode_calls(out, true);
    #[cfg(feature = "http")]
    http::encode(out, true);
}

/// Used by the code `#[observe]` expands to; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::anomaly::{ErrProbe, ViaAny, ViaStdError, ViaUser};
    pub use crate::call::{Call, CallSite, begin, begin_at};
    pub use crate::output::check_output;
    pub use crate::switch::enabled;
}
