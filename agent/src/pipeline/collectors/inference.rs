//! Inference signals from `#[vigil::observe]` functions, folded into every tick.

use vigil_features::SignalSpec;
use vigil_features::vocab::{self, Known};
use vigil_observe::{AnomalyType, BUCKETS, Totals, totals};

use super::{CollectError, Collector, fill};

/// Per-tick request count, errors, latency percentiles and anomalies per type, from the process-wide
/// totals of every `#[observe]` series. Its Prometheus series are the `ai_inference_*` families
/// themselves, so it registers nothing.
pub(crate) struct InferenceCollector {
    prev: Totals,
    deltas: [u64; 16],
}

impl InferenceCollector {
    pub(crate) fn new() -> Self {
        Self {
            prev: totals(),
            deltas: [0; 16],
        }
    }
}

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
        s
    }

    fn collect(&mut self, out: &mut [f64]) -> Result<(), CollectError> {
        let now = totals();
        for ((d, n), p) in self
            .deltas
            .iter_mut()
            .zip(&now.buckets)
            .zip(&self.prev.buckets)
        {
            *d = n.saturating_sub(*p);
        }
        let calls = now.calls.saturating_sub(self.prev.calls);
        let errors = now.errors.saturating_sub(self.prev.errors);
        let ratio = if calls > 0 {
            errors as f64 / calls as f64
        } else {
            f64::NAN
        };
        let mut values = [0.0; 11];
        values[..5].copy_from_slice(&[
            now.calls as f64,
            now.errors as f64,
            ratio,
            quantile(0.5, &self.deltas),
            quantile(0.99, &self.deltas),
        ]);
        for (v, a) in values[5..].iter_mut().zip(&now.anomalies) {
            *v = *a as f64;
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
}
