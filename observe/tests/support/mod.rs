//! Reading the inference series back from the exposition.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

/// The value of the first line starting with `series ` (labels written exactly as exposed).
pub fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l[series.len()..].split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

pub fn text() -> String {
    let mut s = String::new();
    vigil_observe::encode_prometheus_text(&mut s);
    s
}

pub fn openmetrics() -> String {
    let mut s = String::new();
    vigil_observe::encode_openmetrics(&mut s);
    s
}

pub fn anomalies(model: &str, stage: &str, kind: &str) -> f64 {
    value(
        &text(),
        &format!(
            "ai_inference_anomaly_total{{model=\"{model}\",stage=\"{stage}\",anomaly_type=\"{kind}\"}}"
        ),
    )
}

pub fn errors(model: &str, stage: &str) -> f64 {
    value(
        &text(),
        &format!("ai_inference_errors_total{{model=\"{model}\",stage=\"{stage}\"}}"),
    )
}

pub fn calls(model: &str, stage: &str) -> f64 {
    value(
        &text(),
        &format!("ai_inference_duration_seconds_count{{model=\"{model}\",stage=\"{stage}\"}}"),
    )
}
