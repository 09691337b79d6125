//! Exposition of the inference series, in Prometheus text 0.0.4 and OpenMetrics 1.0 (with exemplars).

use std::fmt::Write;
use std::sync::PoisonError;
use std::sync::atomic::Ordering::Relaxed;
use std::time::UNIX_EPOCH;

use crate::AnomalyType;
use crate::series::{BUCKETS, Exemplar, Histogram, Series, for_each};

/// The duration histogram's name (`_bucket`, `_sum`, `_count` follow it).
pub const DURATION_METRIC: &str = "ai_inference_duration_seconds";
/// The failed-calls counter's name (in OpenMetrics its family is this without `_total`).
pub const ERRORS_METRIC: &str = "ai_inference_errors_total";
/// The anomalies counter's name (in OpenMetrics its family is this without `_total`).
pub const ANOMALY_METRIC: &str = "ai_inference_anomaly_total";

/// Streamed generation: time from a stream's start to its first item (OpenTelemetry's
/// `gen_ai.server.time_to_first_token`, the Prometheus way).
pub const TIME_TO_FIRST_TOKEN_METRIC: &str = "gen_ai_server_time_to_first_token_seconds";
/// Streamed generation: per completed stream, the time per output token after the first
/// (`gen_ai.server.time_per_output_token`).
pub const TIME_PER_OUTPUT_TOKEN_METRIC: &str = "gen_ai_server_time_per_output_token_seconds";
/// Streamed generation: tokens by `type` (`input`, `output`; `gen_ai.client.token.usage`'s
/// `gen_ai.token.type`).
pub const TOKENS_METRIC: &str = "gen_ai_server_tokens_total";
/// Streamed generation: from a stream's start to its end, completed or not
/// (`gen_ai.server.request.duration`).
pub const REQUEST_DURATION_METRIC: &str = "gen_ai_server_request_duration_seconds";
/// HELP of [`REQUEST_DURATION_METRIC`].
pub const REQUEST_DURATION_HELP: &str = "Streamed generations (vigil::observe::stream): time from the request's start to the stream's end, or to its drop (cancelled) or first error";
/// HELP of [`TIME_TO_FIRST_TOKEN_METRIC`].
pub const TIME_TO_FIRST_TOKEN_HELP: &str = "Streamed generations (vigil::observe::stream): time from the request's start to its first token or chunk";
/// HELP of [`TIME_PER_OUTPUT_TOKEN_METRIC`].
pub const TIME_PER_OUTPUT_TOKEN_HELP: &str = "Streamed generations that completed with at least two output tokens: (time of the last token - time of the first) / (output tokens - 1)";
/// HELP of [`TOKENS_METRIC`].
pub const TOKENS_HELP: &str = "Tokens of streamed generations by type: output tokens as the stream yielded them, input tokens as the host reported them";

/// HTTP request durations ([`crate::http`], feature `http`; the names are always here so a
/// catalogue can list them).
pub const HTTP_DURATION_METRIC: &str = "http_server_request_duration_seconds";
/// HELP of [`HTTP_DURATION_METRIC`].
pub const HTTP_DURATION_HELP: &str = "HTTP requests served behind vigil::observe::http::HttpMetricsLayer, from the request to the end of the response body, by route template, method and status code";
/// gRPC call durations.
pub const RPC_DURATION_METRIC: &str = "rpc_server_call_duration_seconds";
/// HELP of [`RPC_DURATION_METRIC`].
pub const RPC_DURATION_HELP: &str = "gRPC calls served behind vigil::observe::http::HttpMetricsLayer, from the request to the end of the response stream, by service, method and grpc-status";
/// Requests in flight.
pub const HTTP_ACTIVE_METRIC: &str = "http_server_active_requests";
/// HELP of [`HTTP_ACTIVE_METRIC`].
pub const HTTP_ACTIVE_HELP: &str = "HTTP requests and gRPC calls behind vigil::observe::http::HttpMetricsLayer whose response has not ended, by route (gRPC: service and method) and method";
/// Time to the response head, every request together.
pub const HTTP_RESPONSE_HEAD_METRIC: &str = "vigil_http_server_response_head_seconds";
/// HELP of [`HTTP_RESPONSE_HEAD_METRIC`].
pub const HTTP_RESPONSE_HEAD_HELP: &str = "HTTP requests and gRPC calls behind vigil::observe::http::HttpMetricsLayer, every route and status together, from the request to its response head (status and headers): the handler's latency for a unary request, the setup of a streamed one (whose answer then streams)";
/// Requests counted under `__overflow__`.
pub const ROUTE_OVERFLOW_METRIC: &str = "vigil_http_route_overflow_total";
/// HELP of [`ROUTE_OVERFLOW_METRIC`].
pub const ROUTE_OVERFLOW_HELP: &str = "Requests whose route (gRPC: service and method) came after the cap on distinct routes was reached, counted under __overflow__";

/// Requests waiting in a host's queue ([`crate::queue`]).
pub const QUEUE_WAITING_METRIC: &str = "ai_inference_queue_waiting_requests";
/// HELP of [`QUEUE_WAITING_METRIC`].
pub const QUEUE_WAITING_HELP: &str = "Requests waiting in the host's queue in front of the model (vigil::observe::queue), not yet started";
/// Requests running after their queue.
pub const QUEUE_RUNNING_METRIC: &str = "ai_inference_queue_running_requests";
/// HELP of [`QUEUE_RUNNING_METRIC`].
pub const QUEUE_RUNNING_HELP: &str = "Requests the host's scheduler started from its queue (vigil::observe::queue) and that have not finished";
/// Time requests waited.
pub const QUEUE_TIME_METRIC: &str = "ai_inference_queue_time_seconds";
/// HELP of [`QUEUE_TIME_METRIC`].
pub const QUEUE_TIME_HELP: &str =
    "Time requests waited in the host's queue before they started (vigil::observe::queue)";
/// Batches the host ran.
pub const BATCHES_METRIC: &str = "ai_inference_batches_total";
/// HELP of [`BATCHES_METRIC`].
pub const BATCHES_HELP: &str = "Batches the host's engine ran (vigil::observe::queue); batched requests over batches is the mean batch size";
/// Requests in those batches.
pub const BATCHED_METRIC: &str = "ai_inference_batched_requests_total";
/// HELP of [`BATCHED_METRIC`].
pub const BATCHED_HELP: &str =
    "Requests in the batches the host's engine ran (vigil::observe::queue)";

/// The family name of a counter in OpenMetrics (without `_total`).
fn family(counter: &str) -> &str {
    counter.strip_suffix("_total").unwrap_or(counter)
}

/// HELP of `ai_inference_duration_seconds`.
pub const DURATION_HELP: &str =
    "Duration of #[observe] inference calls, including failed, cancelled and panicked ones";
/// HELP of `ai_inference_errors_total`.
pub const ERRORS_HELP: &str =
    "Annotated calls that failed: returned Err, timed out, ran out of memory or panicked";
/// HELP of `ai_inference_anomaly_total`.
pub const ANOMALY_HELP: &str = "Annotated calls by anomaly type (timeout, nan_output, oom, cancelled, panic, error); the failing request's trace id is the exemplar";

pub(crate) fn escape(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn labels(out: &mut String, s: &Series, extra: Option<(&str, &str)>) {
    out.push('{');
    out.push_str(&series_labels(s));
    if let Some((k, v)) = extra {
        let _ = write!(out, ",{k}=\"{v}\"");
    }
    out.push('}');
}

pub(crate) fn exemplar(out: &mut String, e: &Exemplar) {
    let ts =
        e.at.duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
    let _ = write!(
        out,
        " # {{trace_id=\"{}\",span_id=\"{}\"}} {} {:.3}",
        e.trace.trace_id_hex(),
        e.trace.span_id_hex(),
        e.value,
        ts
    );
}

fn encode(out: &mut String, openmetrics: bool) {
    let mut all: Vec<&'static Series> = Vec::new();
    for_each(|s| all.push(s));
    if all.is_empty() {
        return;
    }
    let (errors_family, anomaly_family) = if openmetrics {
        (family(ERRORS_METRIC), family(ANOMALY_METRIC))
    } else {
        (ERRORS_METRIC, ANOMALY_METRIC)
    };

    histogram(
        out,
        openmetrics,
        (DURATION_METRIC, DURATION_HELP),
        &all,
        |s| Some(&s.duration),
        true,
    );
    let _ = writeln!(out, "# HELP {errors_family} {ERRORS_HELP}.");
    let _ = writeln!(out, "# TYPE {errors_family} counter");
    for s in &all {
        out.push_str(ERRORS_METRIC);
        labels(out, s, None);
        let _ = writeln!(out, " {}", s.errors.load(Relaxed));
    }

    let _ = writeln!(out, "# HELP {anomaly_family} {ANOMALY_HELP}.");
    let _ = writeln!(out, "# TYPE {anomaly_family} counter");
    for s in &all {
        let ex = openmetrics.then(|| s.exemplars.lock().unwrap_or_else(PoisonError::into_inner));
        for kind in AnomalyType::ALL {
            out.push_str(ANOMALY_METRIC);
            labels(out, s, Some(("anomaly_type", kind.as_str())));
            let _ = write!(out, " {}", s.anomalies[kind.index()].load(Relaxed));
            if let Some(e) = ex
                .as_ref()
                .and_then(|ex| ex.anomalies[kind.index()].as_ref())
            {
                exemplar(out, e);
            }
            out.push('\n');
        }
    }
    generation(out, openmetrics, &all);
    queues(out, openmetrics, &all);
}

/// One label set of a histogram family: its labels (without braces), its histogram, and the
/// exemplars of its buckets (empty: none).
pub(crate) struct HistogramRow<'a> {
    pub(crate) labels: String,
    pub(crate) histogram: &'a Histogram,
    pub(crate) exemplars: Vec<Option<Exemplar>>,
}

/// A histogram family in seconds: HELP, TYPE (and UNIT in OpenMetrics), then each row's cumulative
/// buckets, sum and count (nothing at all without rows).
pub(crate) fn histogram_family(
    out: &mut String,
    openmetrics: bool,
    (name, help): (&str, &str),
    rows: &[HistogramRow<'_>],
) {
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(out, "# HELP {name} {help}.");
    let _ = writeln!(out, "# TYPE {name} histogram");
    if openmetrics {
        let _ = writeln!(out, "# UNIT {name} seconds");
    }
    for row in rows {
        let sep = if row.labels.is_empty() { "" } else { "," };
        let mut cumulative = 0u64;
        for (i, b) in row.histogram.buckets.iter().enumerate() {
            cumulative += b.load(Relaxed);
            let le = BUCKETS
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), |v| format!("{v}"));
            let _ = write!(
                out,
                "{name}_bucket{{{}{sep}le=\"{le}\"}} {cumulative}",
                row.labels
            );
            if let Some(e) = row.exemplars.get(i).and_then(Option::as_ref) {
                exemplar(out, e);
            }
            out.push('\n');
        }
        let sum = row.histogram.sum_nanos.load(Relaxed) as f64 / 1e9;
        let labels = if row.labels.is_empty() {
            String::new()
        } else {
            format!("{{{}}}", row.labels)
        };
        let _ = writeln!(out, "{name}_sum{labels} {sum}");
        let _ = writeln!(out, "{name}_count{labels} {cumulative}");
    }
}

/// `model="…",stage="…"`.
fn series_labels(s: &Series) -> String {
    let mut l = String::from("model=\"");
    escape(&mut l, &s.model);
    l.push_str("\",stage=\"");
    escape(&mut l, &s.stage);
    l.push('"');
    l
}

/// One histogram family over every series `pick` gives one for (with `exemplars`, the duration
/// buckets' trace ids in OpenMetrics).
fn histogram(
    out: &mut String,
    openmetrics: bool,
    family: (&str, &str),
    all: &[&'static Series],
    pick: impl Fn(&'static Series) -> Option<&'static Histogram>,
    exemplars: bool,
) {
    let rows: Vec<HistogramRow<'static>> = all
        .iter()
        .filter_map(|s| {
            let histogram = pick(s)?;
            let exemplars = if openmetrics && exemplars {
                let ex = s.exemplars.lock().unwrap_or_else(PoisonError::into_inner);
                ex.buckets.to_vec()
            } else {
                Vec::new()
            };
            Some(HistogramRow {
                labels: series_labels(s),
                histogram,
                exemplars,
            })
        })
        .collect();
    histogram_family(out, openmetrics, family, &rows);
}

/// The streamed-generation families, for the series a stream ran under.
fn generation(out: &mut String, openmetrics: bool, all: &[&'static Series]) {
    let streamed = |s: &'static Series| s.generation.streamed.load(Relaxed);
    // A stream is one call of its label set: its end-to-end duration is the calls' histogram, under
    // the GenAI name (what LLM serving dashboards read).
    histogram(
        out,
        openmetrics,
        (REQUEST_DURATION_METRIC, REQUEST_DURATION_HELP),
        all,
        |s| streamed(s).then_some(&s.duration),
        false,
    );
    histogram(
        out,
        openmetrics,
        (TIME_TO_FIRST_TOKEN_METRIC, TIME_TO_FIRST_TOKEN_HELP),
        all,
        |s| streamed(s).then_some(&s.generation.first_token),
        false,
    );
    histogram(
        out,
        openmetrics,
        (TIME_PER_OUTPUT_TOKEN_METRIC, TIME_PER_OUTPUT_TOKEN_HELP),
        all,
        |s| streamed(s).then_some(&s.generation.per_output_token),
        false,
    );
    let tokens: Vec<&'static Series> = all.iter().copied().filter(|s| streamed(s)).collect();
    if tokens.is_empty() {
        return;
    }
    let tokens_family = if openmetrics {
        family(TOKENS_METRIC)
    } else {
        TOKENS_METRIC
    };
    let _ = writeln!(out, "# HELP {tokens_family} {TOKENS_HELP}.");
    let _ = writeln!(out, "# TYPE {tokens_family} counter");
    for s in tokens {
        for (kind, n) in [
            ("input", &s.generation.input_tokens),
            ("output", &s.generation.output_tokens),
        ] {
            out.push_str(TOKENS_METRIC);
            labels(out, s, Some(("type", kind)));
            let _ = writeln!(out, " {}", n.load(Relaxed));
        }
    }
}

/// One gauge or counter family with one sample per series (`counter`: OpenMetrics names the family
/// without `_total`).
fn per_series(
    out: &mut String,
    (name, help, counter): (&str, &str, bool),
    openmetrics: bool,
    series: &[&'static Series],
    value: impl Fn(&Series) -> u64,
) {
    let family_name = if openmetrics && counter {
        family(name)
    } else {
        name
    };
    let kind = if counter { "counter" } else { "gauge" };
    let _ = writeln!(out, "# HELP {family_name} {help}.");
    let _ = writeln!(out, "# TYPE {family_name} {kind}");
    for s in series {
        out.push_str(name);
        labels(out, s, None);
        let _ = writeln!(out, " {}", value(s));
    }
}

/// The queue families, for the series a queue was made for.
fn queues(out: &mut String, openmetrics: bool, all: &[&'static Series]) {
    let used: Vec<&'static Series> = all
        .iter()
        .copied()
        .filter(|s| s.queue.used.load(Relaxed))
        .collect();
    if used.is_empty() {
        return;
    }
    let gauge = |v: &std::sync::atomic::AtomicI64| v.load(Relaxed).max(0) as u64;
    per_series(
        out,
        (QUEUE_WAITING_METRIC, QUEUE_WAITING_HELP, false),
        openmetrics,
        &used,
        |s| gauge(&s.queue.waiting),
    );
    per_series(
        out,
        (QUEUE_RUNNING_METRIC, QUEUE_RUNNING_HELP, false),
        openmetrics,
        &used,
        |s| gauge(&s.queue.running),
    );
    histogram(
        out,
        openmetrics,
        (QUEUE_TIME_METRIC, QUEUE_TIME_HELP),
        &used,
        |s| Some(&s.queue.time),
        false,
    );
    per_series(
        out,
        (BATCHES_METRIC, BATCHES_HELP, true),
        openmetrics,
        &used,
        |s| s.queue.batches.load(Relaxed),
    );
    per_series(
        out,
        (BATCHED_METRIC, BATCHED_HELP, true),
        openmetrics,
        &used,
        |s| s.queue.batched.load(Relaxed),
    );
}

/// Appends the annotated calls' and streams' families (nothing until one ran).
pub(crate) fn encode_calls(out: &mut String, openmetrics: bool) {
    encode(out, openmetrics);
}
