//! Streamed generation: a response stream (tokens or chunks, as server-sent events or a gRPC server
//! stream carry them) observed end to end.
//!
//! [`stream`] wraps any `Stream`: the first item records the time to first token, every item counts
//! its tokens (one per item unless [`ObservedStream::tokens_per_item`] says otherwise), the end of the
//! stream records the time per output token and finishes the stream's call (its duration in
//! `ai_inference_duration_seconds`, like an annotated function). A stream dropped before its end — the
//! client disconnected, the server cancelled it — is a `cancelled` call; with [`try_stream`], an `Err`
//! item makes the call an `error` (with the current trace id as exemplar, as for functions). Memory: one
//! boxed stream and a few numbers per stream; the series are the bounded `(model, stage)` table's.

use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};

use futures_core::Stream;

use crate::AnomalyType;
use crate::call::{Call, begin};
use crate::clock::{self, Stamp};
use crate::series::{Series, series_cached};

/// A stream observed as one streamed generation; see the module documentation. It yields exactly
/// what the wrapped stream yields.
#[must_use = "a stream does nothing unless polled"]
pub struct ObservedStream<S: Stream> {
    inner: Pin<Box<S>>,
    series: &'static Series,
    /// Finished at the end of the stream; dropped unfinished, it records `cancelled`.
    call: Option<Call>,
    start: Stamp,
    /// Nanoseconds from the start to the first and to the latest item.
    first_at: Option<u64>,
    last_at: u64,
    tokens: u64,
    tokens_of: fn(&S::Item) -> u64,
    judge: fn(&S::Item) -> Option<AnomalyType>,
    failed: Option<AnomalyType>,
    enabled: bool,
}

impl<S: Stream> std::fmt::Debug for ObservedStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObservedStream")
            .field("model", &self.series.model)
            .field("stage", &self.series.stage)
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

fn one_token<T>(_: &T) -> u64 {
    1
}

fn never<T>(_: &T) -> Option<AnomalyType> {
    None
}

fn err_item<T, E>(item: &Result<T, E>) -> Option<AnomalyType> {
    item.is_err().then_some(AnomalyType::Error)
}

/// Observes `inner` as one streamed generation of `model` at `stage` (each item one output token).
pub fn stream<S: Stream>(model: &str, stage: &str, inner: S) -> ObservedStream<S> {
    ObservedStream::new(model, stage, inner, never::<S::Item>)
}

/// [`stream`] for a stream of `Result`s: an `Err` item makes the stream's call an `error` anomaly
/// (it still counts as a token unless [`ObservedStream::tokens_per_item`] says otherwise).
pub fn try_stream<S, T, E>(model: &str, stage: &str, inner: S) -> ObservedStream<S>
where
    S: Stream<Item = Result<T, E>>,
{
    ObservedStream::new(model, stage, inner, err_item::<T, E>)
}

impl<S: Stream> ObservedStream<S> {
    fn new(model: &str, stage: &str, inner: S, judge: fn(&S::Item) -> Option<AnomalyType>) -> Self {
        let enabled = crate::switch::enabled();
        let series = series_cached(model, stage);
        if enabled {
            series.generation.streamed.store(true, Relaxed);
        }
        Self {
            inner: Box::pin(inner),
            series,
            call: enabled.then(|| begin(model, stage)),
            start: clock::now(),
            first_at: None,
            last_at: 0,
            tokens: 0,
            tokens_of: one_token::<S::Item>,
            judge,
            failed: None,
            enabled,
        }
    }

    /// How many output tokens an item holds (a chunk of text, a batch of token ids); by default one.
    pub fn tokens_per_item(mut self, tokens_of: fn(&S::Item) -> u64) -> Self {
        self.tokens_of = tokens_of;
        self
    }

    /// Counts the request's input (prompt) tokens, which only the host knows.
    pub fn input_tokens(&self, n: u64) {
        if self.enabled {
            self.series.generation.input_tokens.fetch_add(n, Relaxed);
        }
    }

    /// Output tokens seen so far.
    pub fn output_tokens(&self) -> u64 {
        self.tokens
    }

    fn on_item(&mut self, item: &S::Item) {
        let at = clock::elapsed_nanos(self.start);
        let g = &self.series.generation;
        if self.first_at.is_none() {
            self.first_at = Some(at);
            g.first_token.observe(at);
        }
        self.last_at = at;
        let n = (self.tokens_of)(item);
        self.tokens = self.tokens.saturating_add(n);
        g.output_tokens.fetch_add(n, Relaxed);
        if self.failed.is_none() {
            self.failed = (self.judge)(item);
        }
    }

    fn on_end(&mut self) {
        let Some(call) = self.call.take() else {
            return;
        };
        if let Some(first) = self.first_at
            && self.failed.is_none()
            && self.tokens >= 2
        {
            let per = self.last_at.saturating_sub(first) / (self.tokens - 1);
            self.series.generation.per_output_token.observe(per);
        }
        call.finish(self.failed);
    }
}

impl<S: Stream> Stream for ObservedStream<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        // `ObservedStream` is `Unpin`: the wrapped stream is boxed.
        let this = &mut *self;
        let polled = this.inner.as_mut().poll_next(cx);
        if this.enabled {
            match &polled {
                Poll::Ready(Some(item)) => this.on_item(item),
                Poll::Ready(None) => this.on_end(),
                Poll::Pending => {}
            }
        }
        polled
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// Items handed out one per poll, each after `gap` of sleep on the caller's thread.
    struct Ticking {
        items: std::collections::VecDeque<Result<u32, &'static str>>,
        gap: std::time::Duration,
    }

    impl Stream for Ticking {
        type Item = Result<u32, &'static str>;
        fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            std::thread::sleep(self.gap);
            Poll::Ready(self.items.pop_front())
        }
    }

    fn ticking(items: &[Result<u32, &'static str>], gap_ms: u64) -> Ticking {
        Ticking {
            items: items.iter().copied().collect(),
            gap: std::time::Duration::from_millis(gap_ms),
        }
    }

    fn next<S: Stream + Unpin>(s: &mut S) -> Option<S::Item> {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        match Pin::new(s).poll_next(&mut cx) {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("the test streams are always ready"),
        }
    }

    fn text() -> String {
        let mut t = String::new();
        crate::encode_prometheus_text(&mut t);
        t
    }

    fn value(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    }

    #[test]
    fn a_completed_stream_records_first_token_per_token_and_tokens() {
        let mut s = try_stream(
            "llm-a",
            "decode",
            ticking(&[Ok(1), Ok(2), Ok(3), Ok(4)], 20),
        )
        .tokens_per_item(|_| 2);
        s.input_tokens(17);
        let mut got = Vec::new();
        while let Some(v) = next(&mut s) {
            got.push(v.unwrap());
        }
        assert_eq!(got, [1, 2, 3, 4]);
        assert_eq!(s.output_tokens(), 8);
        let t = text();
        let l = r#"{model="llm-a",stage="decode""#;
        assert_eq!(
            value(
                &t,
                &format!("gen_ai_server_tokens_total{l},type=\"output\"}}")
            ),
            8.0
        );
        assert_eq!(
            value(
                &t,
                &format!("gen_ai_server_tokens_total{l},type=\"input\"}}")
            ),
            17.0
        );
        assert_eq!(
            value(
                &t,
                &format!("gen_ai_server_time_to_first_token_seconds_count{l}}}")
            ),
            1.0
        );
        // The first item came after one 20 ms gap; three more gaps over seven more tokens.
        let ttft = value(
            &t,
            &format!("gen_ai_server_time_to_first_token_seconds_sum{l}}}"),
        );
        assert!((0.015..1.0).contains(&ttft), "{ttft}");
        let tpot = value(
            &t,
            &format!("gen_ai_server_time_per_output_token_seconds_sum{l}}}"),
        );
        assert!((0.006..0.5).contains(&tpot), "{tpot}");
        // The stream is one call: its duration counted, no anomaly; the same end to end under the
        // GenAI name, at least the time to its last token.
        assert_eq!(
            value(&t, &format!("ai_inference_duration_seconds_count{l}}}")),
            1.0
        );
        assert_eq!(
            value(
                &t,
                &format!("gen_ai_server_request_duration_seconds_count{l}}}")
            ),
            1.0
        );
        let whole = value(
            &t,
            &format!("gen_ai_server_request_duration_seconds_sum{l}}}"),
        );
        assert!(whole >= ttft + 3.0 * 0.02 * 0.9, "{whole} after {ttft}");
        assert_eq!(value(&t, &format!("ai_inference_errors_total{l}}}")), 0.0);
    }

    #[test]
    fn a_stream_dropped_before_its_end_is_cancelled_and_an_err_item_is_an_error() {
        let mut s = stream("llm-b", "decode", ticking(&[Ok(1), Ok(2), Ok(3)], 1));
        assert!(next(&mut s).is_some());
        drop(s);
        let mut e = try_stream("llm-c", "decode", ticking(&[Ok(1), Err("overloaded")], 1));
        while next(&mut e).is_some() {}
        let t = text();
        assert_eq!(
            value(
                &t,
                r#"ai_inference_anomaly_total{model="llm-b",stage="decode",anomaly_type="cancelled"}"#
            ),
            1.0
        );
        assert_eq!(
            value(
                &t,
                r#"ai_inference_errors_total{model="llm-c",stage="decode"}"#
            ),
            1.0
        );
        // Neither made a time per output token: one was cut, one failed.
        for m in ["llm-b", "llm-c"] {
            assert_eq!(
                value(
                    &t,
                    &format!(
                        "gen_ai_server_time_per_output_token_seconds_count{{model=\"{m}\",stage=\"decode\"}}"
                    )
                ),
                0.0
            );
        }
    }

    #[test]
    fn label_sets_without_streams_export_no_generation_series() {
        drop(crate::__private::begin("plain-fn", "predict"));
        let t = text();
        assert!(
            !t.contains(r#"gen_ai_server_tokens_total{model="plain-fn""#),
            "{t}"
        );
    }
}
