//! Explanations: which features made a window anomalous, and what kind of anomaly it looks like.

use serde::{Deserialize, Serialize};

/// The anomaly types Vigil names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    /// Alive tasks climbing.
    TaskLeak,
    /// Scheduler latency, stalls, queue depth.
    SchedulerStall,
    /// Allocation rate burst.
    AllocStorm,
    /// Live heap or resident memory climbing.
    MemoryLeak,
    /// GPU memory climbing.
    GpuMemoryLeak,
    /// CPU or worker busy time saturated.
    CpuSaturation,
    /// Inference errors or anomalies bursting.
    ErrorBurst,
    /// Inference latency up (the model got slower).
    LatencyRegression,
    /// None of the above.
    Unknown,
}

impl AnomalyKind {
    /// Every kind, in documentation order.
    pub const ALL: [AnomalyKind; 9] = [
        AnomalyKind::TaskLeak,
        AnomalyKind::SchedulerStall,
        AnomalyKind::AllocStorm,
        AnomalyKind::MemoryLeak,
        AnomalyKind::GpuMemoryLeak,
        AnomalyKind::CpuSaturation,
        AnomalyKind::ErrorBurst,
        AnomalyKind::LatencyRegression,
        AnomalyKind::Unknown,
    ];

    /// Parses a label value (`task_leak`, ...).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The label value (`task_leak`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            AnomalyKind::TaskLeak => "task_leak",
            AnomalyKind::SchedulerStall => "scheduler_stall",
            AnomalyKind::AllocStorm => "alloc_storm",
            AnomalyKind::MemoryLeak => "memory_leak",
            AnomalyKind::GpuMemoryLeak => "gpu_memory_leak",
            AnomalyKind::CpuSaturation => "cpu_saturation",
            AnomalyKind::ErrorBurst => "error_burst",
            AnomalyKind::LatencyRegression => "latency_regression",
            AnomalyKind::Unknown => "unknown",
        }
    }
}

/// The kind a feature points at: its signal's family in the vocabulary
/// ([`vigil_features::vocab`]); `Unknown` for signals it does not know.
pub fn kind_of_feature(name: &str) -> AnomalyKind {
    use vigil_features::vocab::{Family, family_of_feature};
    match family_of_feature(name) {
        Family::Tasks => AnomalyKind::TaskLeak,
        Family::Scheduler => AnomalyKind::SchedulerStall,
        Family::Allocations => AnomalyKind::AllocStorm,
        Family::Memory => AnomalyKind::MemoryLeak,
        Family::GpuMemory => AnomalyKind::GpuMemoryLeak,
        Family::Cpu => AnomalyKind::CpuSaturation,
        Family::Errors => AnomalyKind::ErrorBurst,
        Family::Latency => AnomalyKind::LatencyRegression,
        Family::Other | Family::Load => AnomalyKind::Unknown,
    }
}

/// The `n` largest |z| as `(index, z)`, largest first.
pub fn top_features(z: &[f64], n: usize) -> Vec<(usize, f64)> {
    let mut top: Vec<(usize, f64)> = Vec::with_capacity(n + 1);
    for (i, v) in z.iter().enumerate() {
        if top.len() < n || top.last().is_some_and(|t| v.abs() > t.1.abs()) {
            let pos = top.partition_point(|t| t.1.abs() >= v.abs());
            top.insert(pos, (i, *v));
            top.truncate(n);
        }
    }
    top
}

/// A vote over the top features, weighted by |z|; `Unknown` when nothing recognisable leads.
pub fn guess(names: &[String], top: &[(usize, f64)]) -> AnomalyKind {
    tally(names, top.iter().copied())
}

/// Deviations below this many robust standard deviations do not vote on the anomaly type.
pub const VOTE_MIN_Z: f64 = 3.0;

/// The anomaly type the signal families that moved point at: every scored feature whose deviation
/// `dev[j]` (of feature `indices[j]`) is at least [`VOTE_MIN_Z`] votes for its family with its |dev|;
/// `Unknown` when no recognisable family moved.
pub fn vote(names: &[String], indices: &[usize], dev: &[f64]) -> AnomalyKind {
    tally(
        names,
        indices
            .iter()
            .copied()
            .zip(dev.iter().copied())
            .filter(|(_, d)| d.abs() >= VOTE_MIN_Z),
    )
}

/// The kind with the largest sum of |z| over `(feature index, z)` votes; unknown signals do not vote.
fn tally(names: &[String], votes_in: impl Iterator<Item = (usize, f64)>) -> AnomalyKind {
    let mut votes: Vec<(AnomalyKind, f64)> = Vec::new();
    for (i, z) in votes_in {
        let Some(name) = names.get(i) else { continue };
        let k = kind_of_feature(name);
        if k == AnomalyKind::Unknown {
            continue;
        }
        match votes.iter_mut().find(|(v, _)| *v == k) {
            Some(v) => v.1 += z.abs(),
            None => votes.push((k, z.abs())),
        }
    }
    votes
        .into_iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(AnomalyKind::Unknown, |v| v.0)
}

/// Average precision of `(score, is_positive)` pairs (area under the precision-recall curve, step-wise);
/// `NaN` without positives.
pub fn average_precision(scored: &[(f64, bool)]) -> f64 {
    let positives = scored.iter().filter(|s| s.1).count();
    if positives == 0 {
        return f64::NAN;
    }
    let mut sorted = scored.to_vec();
    sorted.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut tp, mut ap) = (0.0, 0.0);
    for (k, (_, pos)) in sorted.iter().enumerate() {
        if *pos {
            tp += 1.0;
            ap += tp / (k as f64 + 1.0);
        }
    }
    ap / positives as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_names_map_to_kinds() {
        assert_eq!(
            kind_of_feature("tokio_alive_tasks.slope_60"),
            AnomalyKind::TaskLeak
        );
        assert_eq!(
            kind_of_feature("gpu0_memory_used_bytes.last"),
            AnomalyKind::GpuMemoryLeak
        );
        assert_eq!(
            kind_of_feature("sched_stalls_rate.max_10"),
            AnomalyKind::SchedulerStall
        );
        assert_eq!(
            kind_of_feature("alloc_allocations_rate.last"),
            AnomalyKind::AllocStorm
        );
        assert_eq!(
            kind_of_feature("alloc_live_bytes.change_60"),
            AnomalyKind::MemoryLeak
        );
        assert_eq!(
            kind_of_feature("inference_errors_rate.last"),
            AnomalyKind::ErrorBurst
        );
        assert_eq!(
            kind_of_feature("inference_latency_p99_seconds.mean_10"),
            AnomalyKind::LatencyRegression
        );
        assert_eq!(kind_of_feature("queue_len.last"), AnomalyKind::Unknown);
        // Every kind parses back from its label value (labels CSV, Alertmanager labels).
        for k in AnomalyKind::ALL {
            assert_eq!(AnomalyKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(
            AnomalyKind::parse("latency_regression"),
            Some(AnomalyKind::LatencyRegression)
        );
    }

    #[test]
    fn top_features_are_ordered_by_magnitude() {
        let top = top_features(&[0.1, -9.0, 3.0, 4.0, -0.5], 3);
        assert_eq!(top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 3, 2]);
    }

    #[test]
    fn guess_weights_votes_by_z() {
        let names: Vec<String> = [
            "tokio_alive_tasks.last",
            "alloc_live_bytes.last",
            "alloc_live_bytes.max_60",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let top = [(0, 10.0), (1, 6.0), (2, 6.0)];
        assert_eq!(guess(&names, &top), AnomalyKind::MemoryLeak);
    }
}
