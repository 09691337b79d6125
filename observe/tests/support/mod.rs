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

/// A token stream that yields `tokens` items `gap` apart (the first after `first`) and notes the
/// instant it hands each one over: what a test measures itself, to hold the stream wrapper's
/// time to first token and time per output token against.
pub struct Paced {
    pub left: u32,
    pub next_gap: std::time::Duration,
    pub gap: std::time::Duration,
    pub sleep: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    pub handed: std::sync::Arc<std::sync::Mutex<Vec<std::time::Instant>>>,
}

impl Paced {
    pub fn new(
        tokens: u32,
        first: std::time::Duration,
        gap: std::time::Duration,
    ) -> (
        Self,
        std::sync::Arc<std::sync::Mutex<Vec<std::time::Instant>>>,
    ) {
        let handed = std::sync::Arc::default();
        (
            Self {
                left: tokens,
                next_gap: first,
                gap,
                sleep: None,
                handed: std::sync::Arc::clone(&handed),
            },
            handed,
        )
    }
}

impl futures_core::Stream for Paced {
    type Item = u32;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<u32>> {
        use std::future::Future;
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        let gap = self.next_gap;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(gap)));
        if sleep.as_mut().poll(cx).is_pending() {
            return std::task::Poll::Pending;
        }
        self.sleep = None;
        self.next_gap = self.gap;
        self.left -= 1;
        self.handed.lock().unwrap().push(std::time::Instant::now());
        std::task::Poll::Ready(Some(self.left))
    }
}

/// Polls `read` until it returns `want` or `deadline` passes; returns the last value read.
pub async fn wait_for(
    deadline: std::time::Duration,
    want: f64,
    mut read: impl FnMut() -> f64,
) -> f64 {
    let end = std::time::Instant::now() + deadline;
    loop {
        let v = read();
        if v == want || std::time::Instant::now() > end {
            return v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The value of `series` if the exposition has it, else 0 (a counter not yet created).
pub fn value_or_zero(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l[series.len()..].split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// The stream of `model`/`stage` (the only one under its labels) recorded the time to first token
/// and time per output token the test measured itself, within 1 ms: from `start` (just before the
/// stream was wrapped) to the first item `handed` over, and between the first and the last item.
pub fn assert_stream_timed(
    text: &str,
    model: &str,
    stage: &str,
    start: std::time::Instant,
    handed: &[std::time::Instant],
) {
    let n = handed.len();
    assert!(n >= 2, "{n} items");
    let ttft = (handed[0] - start).as_secs_f64();
    let tpot = (handed[n - 1] - handed[0]).as_secs_f64() / (n - 1) as f64;
    let l = format!("{{model=\"{model}\",stage=\"{stage}\"}}");
    let got_ttft = value(
        text,
        &format!("gen_ai_server_time_to_first_token_seconds_sum{l}"),
    );
    let got_tpot = value(
        text,
        &format!("gen_ai_server_time_per_output_token_seconds_sum{l}"),
    );
    assert!(
        (got_ttft - ttft).abs() < 1e-3,
        "time to first token {got_ttft} s, measured {ttft} s"
    );
    assert!(
        (got_tpot - tpot).abs() < 1e-3,
        "time per output token {got_tpot} s, measured {tpot} s"
    );
}
