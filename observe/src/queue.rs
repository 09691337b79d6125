//! Queues in front of a model: what only the host knows (requests waiting and running, how long
//! they waited, how large the batches it runs are), exported beside the calls' series.
//!
//! ```
//! # use vigil_observe as observe; // in applications: `vigil::observe`
//! let q = observe::queue("llama-8b", "generate");
//! let waiting = q.enqueued(); // a request arrives
//! let running = waiting.start(); // the scheduler admits it: its queue time is recorded
//! q.batch(8); // the engine runs a batch of eight requests
//! drop(running); // the request finished
//! let mut text = String::new();
//! observe::encode_prometheus_text(&mut text);
//! assert!(text.contains(r#"ai_inference_queue_waiting_requests{model="llama-8b",stage="generate"} 0"#));
//! assert!(text.contains(r#"ai_inference_batched_requests_total{model="llama-8b",stage="generate"} 8"#));
//! ```

use std::sync::atomic::Ordering::Relaxed;

use crate::clock::{self, Stamp};
use crate::series::{Series, series_cached};

/// A request queue of one `(model, stage)`; cheap to copy, share it freely.
#[derive(Debug, Clone, Copy)]
pub struct Queue {
    series: &'static Series,
}

/// Returns the queue of `model` at `stage` (the label set's series, bounded like every other).
pub fn queue(model: &str, stage: &str) -> Queue {
    let series = series_cached(model, stage);
    series.queue.used.store(true, Relaxed);
    Queue { series }
}

impl Queue {
    /// A request joined the queue: it counts as waiting until [`Queued::start`] (or until dropped:
    /// it left the queue without running, e.g. the client went away).
    pub fn enqueued(&self) -> Queued {
        self.series.queue.waiting.fetch_add(1, Relaxed);
        Queued {
            series: self.series,
            since: clock::now(),
            started: false,
        }
    }

    /// The engine ran a batch of `requests` requests (one per forward pass, or per scheduling step).
    pub fn batch(&self, requests: usize) {
        let q = &self.series.queue;
        q.batches.fetch_add(1, Relaxed);
        q.batched.fetch_add(requests as u64, Relaxed);
    }
}

/// A request waiting in a [`Queue`].
#[must_use = "a queued request counts as waiting until it starts or is dropped"]
#[derive(Debug)]
pub struct Queued {
    series: &'static Series,
    since: Stamp,
    started: bool,
}

impl Queued {
    /// The request leaves the queue to run: its time in the queue is recorded, and it counts as
    /// running until the returned guard drops.
    pub fn start(mut self) -> Running {
        self.started = true;
        let q = &self.series.queue;
        q.time.observe(clock::elapsed_nanos(self.since));
        q.waiting.fetch_sub(1, Relaxed);
        q.running.fetch_add(1, Relaxed);
        Running {
            series: self.series,
        }
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        if !self.started {
            self.series.queue.waiting.fetch_sub(1, Relaxed);
        }
    }
}

/// A request running after its queue (see [`Queued::start`]); dropping it ends it.
#[must_use = "a request counts as running until this guard drops"]
#[derive(Debug)]
pub struct Running {
    series: &'static Series,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.series.queue.running.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn value(series: &str) -> f64 {
        let mut text = String::new();
        crate::encode_prometheus_text(&mut text);
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    }

    #[test]
    fn waiting_running_queue_time_and_batches_follow_the_requests() {
        let q = queue("queue-a", "generate");
        let l = r#"{model="queue-a",stage="generate"}"#;
        let a = q.enqueued();
        let b = q.enqueued();
        let c = q.enqueued();
        assert_eq!(
            value(&format!("ai_inference_queue_waiting_requests{l}")),
            3.0
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
        let ra = a.start();
        let rb = b.start();
        drop(c); // left without running
        assert_eq!(
            value(&format!("ai_inference_queue_waiting_requests{l}")),
            0.0
        );
        assert_eq!(
            value(&format!("ai_inference_queue_running_requests{l}")),
            2.0
        );
        q.batch(2);
        q.batch(1);
        drop(ra);
        assert_eq!(
            value(&format!("ai_inference_queue_running_requests{l}")),
            1.0
        );
        drop(rb);
        assert_eq!(
            value(&format!("ai_inference_queue_time_seconds_count{l}")),
            2.0
        );
        let waited = value(&format!("ai_inference_queue_time_seconds_sum{l}"));
        assert!(waited >= 0.03, "two requests waited 20 ms each: {waited}");
        assert_eq!(value(&format!("ai_inference_batches_total{l}")), 2.0);
        assert_eq!(
            value(&format!("ai_inference_batched_requests_total{l}")),
            3.0
        );
    }

    #[test]
    fn label_sets_without_a_queue_export_no_queue_series() {
        drop(crate::__private::begin("no-queue", "predict"));
        let mut text = String::new();
        crate::encode_prometheus_text(&mut text);
        assert!(!text.contains(r#"ai_inference_queue_waiting_requests{model="no-queue""#));
    }
}
