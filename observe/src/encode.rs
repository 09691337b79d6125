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
/// HELP of [`TIME_TO_FIRST_TOKEN_METRIC`].
pub const TIME_TO_FIRST_TOKEN_HELP: &str = "Streamed generations (vigil::observe::stream): time from the request's start to its first token or chunk";
/// HELP of [`TIME_PER_OUTPUT_TOKEN_METRIC`].
pub const TIME_PER_OUTPUT_TOKEN_HELP: &str = "Streamed generations that completed with at least two output tokens: (time of the last token - time of the first) / (output tokens - 1)";
/// HELP of [`TOKENS_METRIC`].
pub const TOKENS_HELP: &str = "Tokens of streamed generations by type: output tokens as the stream yielded them, input tokens as the host reported them";

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

fn escape(out: &mut String, v: &str) {
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
    out.push_str("{model=\"");
    escape(out, &s.model);
    out.push_str("\",stage=\"");
    escape(out, &s.stage);
    out.push('"');
    if let Some((k, v)) = extra {
        let _ = write!(out, ",{k}=\"{v}\"");
    }
    out.push('}');
}

fn exemplar(out: &mut String, e: &Exemplar) {
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
}

/// One histogram family over every series `pick` gives one for (seconds; with `exemplars`, the
/// duration buckets' trace ids in OpenMetrics).
fn histogram(
    out: &mut String,
    openmetrics: bool,
    (name, help): (&str, &str),
    all: &[&'static Series],
    pick: impl Fn(&'static Series) -> Option<&'static Histogram>,
    exemplars: bool,
) {
    let picked: Vec<(&'static Series, &'static Histogram)> = all
        .iter()
        .filter_map(|s| pick(s).map(|h| (*s, h)))
        .collect();
    if picked.is_empty() {
        return;
    }
    let _ = writeln!(out, "# HELP {name} {help}.");
    let _ = writeln!(out, "# TYPE {name} histogram");
    if openmetrics {
        let _ = writeln!(out, "# UNIT {name} seconds");
    }
    for (s, h) in picked {
        let ex = (openmetrics && exemplars)
            .then(|| s.exemplars.lock().unwrap_or_else(PoisonError::into_inner));
        let mut cumulative = 0u64;
        for (i, b) in h.buckets.iter().enumerate() {
            cumulative += b.load(Relaxed);
            let le = BUCKETS
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), |v| format!("{v}"));
            out.push_str(name);
            out.push_str("_bucket");
            labels(out, s, Some(("le", &le)));
            let _ = write!(out, " {cumulative}");
            if let Some(e) = ex.as_ref().and_then(|ex| ex.buckets[i].as_ref()) {
                exemplar(out, e);
            }
            out.push('\n');
        }
        out.push_str(name);
        out.push_str("_sum");
        labels(out, s, None);
        let _ = writeln!(out, " {}", h.sum_nanos.load(Relaxed) as f64 / 1e9);
        out.push_str(name);
        out.push_str("_count");
        labels(out, s, None);
        let _ = writeln!(out, " {cumulative}");
    }
}

/// The streamed-generation families, for the series a stream ran under.
fn generation(out: &mut String, openmetrics: bool, all: &[&'static Series]) {
    let streamed = |s: &'static Series| s.generation.streamed.load(Relaxed);
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

/// Appends the inference series in Prometheus text format 0.0.4 (no exemplars: the format has none).
pub fn encode_prometheus_text(out: &mut String) {
    encode(out, false);
}

/// Appends the inference series in OpenMetrics 1.0 text format, with trace-id exemplars, without the
/// final `# EOF` (the caller ends the whole exposition).
pub fn encode_openmetrics(out: &mut String) {
    encode(out, true);
}
