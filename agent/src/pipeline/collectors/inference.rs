//! Inference signals from `#[vigil::observe]` functions, folded into every tick.

use vigil_features::SignalSpec;
use vigil_features::vocab::{self, Known};
use vigil_observe::{AnomalyType, BUCKETS, Totals, totals};

use super::{CollectError, Collector, fill};

/// Per-tick request count, errors, latency percentiles and anomalies per type, then the serving
/// signals of streamed generations and queues ([`vocab::SERVING`]), from the process-wide totals of
/// every `#[observe]` series. Its Prometheus series are the `ai_inference_*` and `gen_ai_server_*`
/// families themselves, so it registers nothing.
pub(crate) struct InferenceCollector {
    prev: Totals,
}

impl InferenceCollector {
    pub(crate) fn new() -> Self {
        Self { prev: totals() }
    }
}

/// The tick's bucket counts: `now − prev`, per bucket.
fn delta(now: &[u64; 16], prev: &[u64; 16]) -> [u64; 16] {
    let mut d = [0; 16];
    for ((d, n), p) in d.iter_mut().zip(now).zip(prev) {
        *d = n.saturating_sub(*p);
    }
    d
}

/// Values of the inference signals, the anomaly counters, then the serving signals.
const VALUES: usize = vocab::INFERENCE.len() + AnomalyType::ALL.len() + vocab::SERVING.len();

/// `histogram_quantile` over non-cumulative bucket counts: linear within the bucket, the last finite
/// bound for the `+Inf` bucket, `NaN` without observations.
pub(crate) fn quantile(q: f64, counts: &[u64; 16]) -> f64 {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return f64::NAN;
    }
    let rank = q * total as f64;
    let mut seen = 0.0;
    for (i, c) in counts.iter().enumerate() {
        let c = *c as f64;
        if seen + c >= rank && c > 0.0 {
            let Some(upper) = BUCKETS.get(i) else {
                return BUCKETS[BUCKETS.len() - 1];
            };
            let lower = if i == 0 { 0.0 } else { BUCKETS[i - 1] };
            return lower + (upper - lower) * ((rank - seen) / c);
        }
        seen += c;
    }
    BUCKETS[BUCKETS.len() - 1]
}

impl Collector for InferenceCollector {
    fn name(&self) -> &'static str {
        "inference"
    }

    fn signals(&self) -> Vec<SignalSpec> {
        let mut s: Vec<SignalSpec> = vocab::INFERENCE.iter().map(Known::spec).collect();
        s.extend(AnomalyType::ALL.iter().map(|a| {
            let k = vocab::INFERENCE_ANOMALIES;
            k.spec_named(format!("{}_{}", k.name, a.as_str()))
        }));
        s.extend(vocab::SERVING.iter().map(Known::spec));
        s
    }

    fn collect(&mut self, out: &mut [f64]) -> Result<(), CollectError> {
        let now = totals();
        let prev = &self.prev;
        let calls = now.calls.saturating_sub(prev.calls);
        let errors = now.errors.saturating_sub(prev.errors);
        let ratio = if calls > 0 {
            errors as f64 / calls as f64
        } else {
            f64::NAN
        };
        let latency = delta(&now.buckets, &prev.buckets);
        let mut values = [f64::NAN; VALUES];
        let (inference, rest) = values.split_at_mut(vocab::INFERENCE.len());
        let (anomalies, serving) = rest.split_at_mut(AnomalyType::ALL.len());
        inference.copy_from_slice(&[
            now.calls as f64,
            now.errors as f64,
            ratio,
            quantile(0.5, &latency),
            quantile(0.99, &latency),
        ]);
        for (v, a) in anomalies.iter_mut().zip(&now.anomalies) {
            *v = *a as f64;
        }
        // A host that never streamed (or never queued, or never served through the HTTP layer) has
        // no such signals: missing, not zero.
        let (streamed, queued, served) = (now.streamed, now.queued, now.http_served);
        let requests = now.http_requests.saturating_sub(prev.http_requests);
        for (v, k) in serving.iter_mut().zip(&vocab::SERVING) {
            *v = match *k {
                vocab::GEN_AI_TIME_TO_FIRST_TOKEN_P99_SECONDS if streamed => {
                    quantile(0.99, &delta(&now.first_token, &prev.first_token))
                }
                vocab::GEN_AI_TIME_PER_OUTPUT_TOKEN_P50_SECONDS if streamed => {
                    quantile(0.5, &delta(&now.per_output_token, &prev.per_output_token))
                }
                vocab::GEN_AI_OUTPUT_TOKENS if streamed => now.output_tokens as f64,
                vocab::AI_QUEUE_WAITING_REQUESTS if queued => now.queue_waiting as f64,
                vocab::AI_QUEUE_RUNNING_REQUESTS if queued => now.queue_running as f64,
                vocab::AI_QUEUE_TIME_P99_SECONDS if queued => {
                    quantile(0.99, &delta(&now.queue_time, &prev.queue_time))
                }
                vocab::HTTP_RESPONSE_HEAD_P99_SECONDS if served => {
                    quantile(0.99, &delta(&now.http_head, &prev.http_head))
                }
                vocab::HTTP_ERROR_RATIO if served && requests > 0 => {
                    now.http_errors.saturating_sub(prev.http_errors) as f64 / requests as f64
                }
                _ => f64::NAN,
            };
        }
        fill(out, 0, &values);
        self.prev = now;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_like_prometheus() {
        let mut c = [0u64; 16];
        assert!(quantile(0.5, &c).is_nan());
        c[9] = 100; // all in (0.5, 1.0]
        assert!((quantile(0.5, &c) - 0.75).abs() < 1e-12);
        c[15] = 100; // half beyond 60 s
        assert_eq!(quantile(0.99, &c), 60.0);
    }

    use futures_core::Stream;
    use std::future::Future;

    /// Five tokens, one every millisecond.
    struct Five(u32, Option<std::pin::Pin<Box<tokio::time::Sleep>>>);

    impl futures_core::Stream for Five {
        type Item = u32;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<u32>> {
            if self.0 == 5 {
                return std::task::Poll::Ready(None);
            }
            let sleep = self.1.get_or_insert_with(|| {
                Box::pin(tokio::time::sleep(std::time::Duration::from_millis(1)))
            });
            match sleep.as_mut().poll(cx) {
                std::task::Poll::Ready(()) => {
                    self.1 = None;
                    self.0 += 1;
                    std::task::Poll::Ready(Some(self.0))
                }
                std::task::Poll::Pending => std::task::Poll::Pending,
            }
        }
    }

    fn serving(c: &mut InferenceCollector) -> Vec<(String, f64)> {
        let specs = c.signals();
        let mut out = vec![f64::NAN; specs.len()];
        c.collect(&mut out).unwrap();
        let first = specs.len() - vocab::SERVING.len();
        specs[first..]
            .iter()
            .zip(&out[first..])
            .map(|(s, v)| (s.name.to_string(), *v))
            .collect()
    }

    /// A host that never streamed or queued records its serving signals as missing; once it does,
    /// each tick reads what its streams and queues did.
    #[test]
    fn serving_signals_are_missing_until_used_then_read_each_tick() {
        let mut c = InferenceCollector::new();
        let names: Vec<&str> = vocab::SERVING.iter().map(|k| k.name).collect();
        let before = serving(&mut c);
        assert_eq!(
            before.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            names
        );
        assert!(before.iter().all(|(_, v)| v.is_nan()), "{before:?}");

        let q = vigil_observe::queue("collector-test", "generate");
        let waiting: Vec<_> = (0..3).map(|_| q.enqueued()).collect();
        std::thread::sleep(std::time::Duration::from_millis(30));
        let mut waiting = waiting.into_iter();
        let running = waiting.next().map(|w| w.start());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let mut s = vigil_observe::stream("collector-test", "generate", Five(0, None));
        let n = rt.block_on(async {
            let mut n = 0;
            while std::future::poll_fn(|cx| std::pin::Pin::new(&mut s).poll_next(cx))
                .await
                .is_some()
            {
                n += 1;
            }
            n
        });
        assert_eq!(n, 5);
        let at = serving(&mut c);
        let v = |name: &str| at.iter().find(|(n, _)| n == name).map(|(_, v)| *v).unwrap();
        assert_eq!(v("ai_queue_waiting_requests"), 2.0);
        assert_eq!(v("ai_queue_running_requests"), 1.0);
        let waited = v("ai_queue_time_p99_seconds");
        assert!((0.025..=0.05).contains(&waited), "{waited}");
        assert_eq!(v("gen_ai_output_tokens"), 5.0);
        let ttft = v("gen_ai_time_to_first_token_p99_seconds");
        assert!(ttft > 0.0 && ttft <= 0.025, "{ttft}");
        let tpot = v("gen_ai_time_per_output_token_p50_seconds");
        assert!(tpot > 0.0 && tpot <= 0.01, "{tpot}");
        // The next tick: nothing streamed or started in it, so no quantiles; gauges and counters stay.
        drop(running);
        let next = serving(&mut c);
        let v = |name: &str| {
            next.iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| *v)
                .unwrap()
        };
        assert!(v("gen_ai_time_to_first_token_p99_seconds").is_nan());
        assert!(v("ai_queue_time_p99_seconds").is_nan());
        assert_eq!(v("ai_queue_running_requests"), 0.0);
        assert_eq!(v("gen_ai_output_tokens"), 5.0);
        drop(waiting);
    }
}
