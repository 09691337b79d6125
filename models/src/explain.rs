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
    /// Streamed generations take longer to their first token (prefill got slower).
    FirstTokenRegression,
    /// Streamed generations take longer per output token (decode got slower).
    DecodeSlowdown,
    /// Requests pile up in the host's queue and wait longer (a batch stalled, capacity fell short).
    QueueBuildup,
    /// A level or spread that moved and stayed past the level-shift horizon: the event that ends this
    /// way takes this type, and the new level is normal from then on.
    LevelShift,
    /// None of the above.
    Unknown,
}

impl AnomalyKind {
    /// Every kind, in documentation order.
    pub const ALL: [AnomalyKind; 13] = [
        AnomalyKind::TaskLeak,
        AnomalyKind::SchedulerStall,
        AnomalyKind::AllocStorm,
        AnomalyKind::MemoryLeak,
        AnomalyKind::GpuMemoryLeak,
        AnomalyKind::CpuSaturation,
        AnomalyKind::ErrorBurst,
        AnomalyKind::LatencyRegression,
        AnomalyKind::FirstTokenRegression,
        AnomalyKind::DecodeSlowdown,
        AnomalyKind::QueueBuildup,
        AnomalyKind::LevelShift,
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
            AnomalyKind::FirstTokenRegression => "first_token_regression",
            AnomalyKind::DecodeSlowdown => "decode_slowdown",
            AnomalyKind::QueueBuildup => "queue_buildup",
            AnomalyKind::LevelShift => "level_shift",
            AnomalyKind::Unknown => "unknown",
        }
    }

    /// True when this kind is a part of `whole`: a request's latency is its time in the queue, its
    /// time to first token (prefill) and its time per output token (decode), and the time to first
    /// token includes the queue when the stream starts with the request. When a whole and its part
    /// both moved, the part names the cause ([`vote`]).
    pub fn is_part_of(self, whole: AnomalyKind) -> bool {
        use AnomalyKind::*;
        matches!(
            (self, whole),
            (
                FirstTokenRegression | DecodeSlowdown | QueueBuildup,
                LatencyRegression
            ) | (QueueBuildup, FirstTokenRegression)
        )
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
        Family::FirstToken => AnomalyKind::FirstTokenRegression,
        Family::Decode => AnomalyKind::DecodeSlowdown,
        Family::Queue => AnomalyKind::QueueBuildup,
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

/// A vote over the top features (see [`vote`]); `Unknown` when nothing recognisable leads.
pub fn guess(names: &[String], top: &[(usize, f64)]) -> AnomalyKind {
    tally(names, top.iter().copied())
}

/// Deviations below this many robust standard deviations do not vote on the anomaly type.
pub const VOTE_MIN_Z: f64 = 3.0;

/// The anomaly type the signal families that moved point at: every scored feature whose deviation
/// `dev[j]` (of feature `indices[j]`) is at least [`VOTE_MIN_Z`] votes for its family; the family that
/// moved furthest wins (each family counts once, by its largest |dev|); `Unknown` when no recognisable
/// family moved.
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

/// The kind whose family moved most: each family counts once, by its largest |z| (clipped at
/// [`crate::Z_CLIP`], as the score sees it), so a family measured by four correlated signals does not
/// outvote one measured by a single signal that moved further; ties (both at the clip) go to the larger
/// sum. Unknown signals do not vote. Where parts of the winner voted too
/// ([`AnomalyKind::is_part_of`]: latency is queue, prefill and decode), the part that moved most
/// names it: the cause, not the sum of its effects.
fn tally(names: &[String], votes_in: impl Iterator<Item = (usize, f64)>) -> AnomalyKind {
    // Per kind: (largest |z|, sum of |z|).
    let mut votes: Vec<(AnomalyKind, f64, f64)> = Vec::new();
    for (i, z) in votes_in {
        let Some(name) = names.get(i) else { continue };
        let k = kind_of_feature(name);
        if k == AnomalyKind::Unknown {
            continue;
        }
        let z = z.abs().min(crate::Z_CLIP);
        match votes.iter_mut().find(|(v, ..)| *v == k) {
            Some(v) => {
                v.1 = v.1.max(z);
                v.2 += z;
            }
            None => votes.push((k, z, z)),
        }
    }
    let mut winner = strongest(votes.iter()).unwrap_or(AnomalyKind::Unknown);
    // Parts form a chain of at most two steps (queue ⊂ first token ⊂ latency).
    while let Some(part) = strongest(votes.iter().filter(|v| v.0.is_part_of(winner))) {
        winner = part;
    }
    winner
}

/// The kind of the vote `(kind, largest |z|, sum of |z|)` that moved most (ties: the larger sum).
fn strongest<'a>(votes: impl Iterator<Item = &'a (AnomalyKind, f64, f64)>) -> Option<AnomalyKind> {
    votes
        .max_by(|a, b| a.1.total_cmp(&b.1).then(a.2.total_cmp(&b.2)))
        .map(|v| v.0)
}

/// Average precision of `(score, is_positive)` pairs (area under the precision-recall curve, step-wise,
/// ties ranked together); `NaN` without positives. The promotion gate, `vigil eval` and `vigil bench
/// corpus` all read PR-AUC from here, so they rank two models alike.
pub fn average_precision(scored: &[(f64, bool)]) -> f64 {
    let positives = scored.iter().filter(|s| s.1).count();
    average_precision_over(scored, positives).unwrap_or(f64::NAN)
}

/// [`average_precision`] where `positives` rows are labelled in all, some perhaps without a score
/// (they rank last and count only in the recall's denominator). Rows with equal scores are one step of
/// the curve, at their precision as a group, whatever order a sort left them in. `None` without a
/// positive or a finite score.
pub fn average_precision_over(scored: &[(f64, bool)], positives: usize) -> Option<f64> {
    let mut sorted: Vec<(f64, bool)> = scored.iter().copied().filter(|s| s.0.is_finite()).collect();
    if positives == 0 || sorted.is_empty() {
        return None;
    }
    sorted.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut tp, mut seen, mut ap, mut i) = (0usize, 0usize, 0.0, 0usize);
    while i < sorted.len() {
        let mut j = i;
        let mut group_tp = 0;
        while j < sorted.len() && sorted[j].0 == sorted[i].0 {
            group_tp += usize::from(sorted[j].1);
            j += 1;
        }
        tp += group_tp;
        seen += j - i;
        ap += group_tp as f64 / positives as f64 * (tp as f64 / seen as f64);
        i = j;
    }
    Some(ap)
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
    fn the_part_of_latency_that_moved_names_the_cause() {
        let names: Vec<String> = [
            "inference_latency_p99_seconds.median_10",
            "gen_ai_time_to_first_token_p99_seconds.median_10",
            "gen_ai_time_per_output_token_p50_seconds.median_10",
            "ai_queue_time_p99_seconds.median_10",
            "ai_queue_waiting_requests.median_10",
            "tokio_alive_tasks.median_10",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let idx: Vec<usize> = (0..names.len()).collect();
        assert_eq!(
            kind_of_feature(&names[1]),
            AnomalyKind::FirstTokenRegression
        );
        assert_eq!(kind_of_feature(&names[2]), AnomalyKind::DecodeSlowdown);
        assert_eq!(kind_of_feature(&names[4]), AnomalyKind::QueueBuildup);
        // Latency moved furthest, decode moved too: decode is the cause.
        let decode = [12.0, 0.0, 5.0, 0.0, 0.0, 0.0];
        assert_eq!(vote(&names, &idx, &decode), AnomalyKind::DecodeSlowdown);
        // Latency, first token and the queue: the queue (a part of the first token's wait).
        let queue = [12.0, 9.0, 0.0, 4.0, 3.5, 0.0];
        assert_eq!(vote(&names, &idx, &queue), AnomalyKind::QueueBuildup);
        // Latency and first token only: a slower prefill.
        let prefill = [12.0, 9.0, 0.0, 0.0, 0.0, 0.0];
        assert_eq!(
            vote(&names, &idx, &prefill),
            AnomalyKind::FirstTokenRegression
        );
        // Latency alone stays latency; a part never takes an unrelated winner's place.
        let latency = [12.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        assert_eq!(vote(&names, &idx, &latency), AnomalyKind::LatencyRegression);
        let tasks = [0.0, 0.0, 5.0, 0.0, 0.0, 20.0];
        assert_eq!(vote(&names, &idx, &tasks), AnomalyKind::TaskLeak);
        // Below the voting floor a part does not vote.
        let weak = [12.0, 0.0, 2.0, 0.0, 0.0, 0.0];
        assert_eq!(vote(&names, &idx, &weak), AnomalyKind::LatencyRegression);
    }

    #[test]
    fn top_features_are_ordered_by_magnitude() {
        let top = top_features(&[0.1, -9.0, 3.0, 4.0, -0.5], 3);
        assert_eq!(top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 3, 2]);
    }

    #[test]
    fn each_family_votes_once_by_its_largest_deviation() {
        let names: Vec<String> = [
            "inference_latency_p99_seconds.median_10",
            "alloc_allocations_rate.mean_10",
            "alloc_frees_rate.mean_10",
            "alloc_bytes_allocated_rate.mean_10",
            "tokio_alive_tasks.median_10",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Latency moved furthest; four correlated allocation signals do not outvote it.
        let dev = [40.0, 30.0, 30.0, 25.0, 0.5];
        assert_eq!(
            vote(&names, &[0, 1, 2, 3, 4], &dev),
            AnomalyKind::LatencyRegression
        );
        // Both families at the clip: the one with more evidence in total wins.
        let dev = [80.0, 60.0, 55.0, 3.5, 0.5];
        assert_eq!(
            vote(&names, &[0, 1, 2, 3, 4], &dev),
            AnomalyKind::AllocStorm
        );
        // Deviations below VOTE_MIN_Z do not vote; nothing recognisable left is Unknown.
        assert_eq!(
            vote(&names, &[0, 1, 2, 3, 4], &[2.9, -2.0, 1.0, 0.0, 2.5]),
            AnomalyKind::Unknown
        );
        // The top-feature guess follows the same rule.
        let top = [(4, 10.0), (1, 6.0), (2, 6.0)];
        assert_eq!(guess(&names, &top), AnomalyKind::TaskLeak);
    }
}
