//! How a detector does against labelled intervals: the metrics `vigil eval` prints and the promotion
//! gate of retraining compares, in one place.

use vigil_features::{FeatureSchema, Horizons};

use crate::labels::Label;
use crate::{Engine, EngineConfig, EventParams, InlineTrainer, ModelFile};

/// The evaluation metrics of scored windows against labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    /// Labelled anomalies overlapping the windows.
    pub events: usize,
    /// Of those, how many had a flagged window inside them.
    pub caught: usize,
    /// `caught / events`.
    pub event_recall: f64,
    /// Seconds from a caught anomaly's start to its first flagged window: median.
    pub ttd_median: f64,
    /// 95th percentile of the same.
    pub ttd_p95: f64,
    /// Flagged windows inside labelled anomalies / flagged windows.
    pub point_precision: f64,
    /// Harmonic mean of event recall and point precision.
    pub composite_f1: f64,
    /// Runs of flagged windows that overlap no labelled anomaly.
    pub false_alarms: usize,
    /// `false_alarms` per hour of windows outside labelled anomalies.
    pub false_alarms_per_hour: f64,
    /// Area under the precision-recall curve of the score against "inside a labelled anomaly".
    pub pr_auc: f64,
}

/// Nearest-rank quantile of a sorted slice; `NaN` when it is empty.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `windows`: (timestamp, score, flagged) of scored rows, in time order; `tick`: seconds per row.
pub fn metrics(windows: &[(f64, f64, bool)], labels: &[Label], tick: f64) -> Metrics {
    let anomalies: Vec<&Label> = labels.iter().filter(|l| l.anomaly).collect();
    let inside = |t: f64| anomalies.iter().any(|l| l.contains(t));
    let (Some(first), Some(last)) = (windows.first(), windows.last()) else {
        return Metrics {
            events: 0,
            caught: 0,
            event_recall: f64::NAN,
            ttd_median: f64::NAN,
            ttd_p95: f64::NAN,
            point_precision: f64::NAN,
            composite_f1: f64::NAN,
            false_alarms: 0,
            false_alarms_per_hour: f64::NAN,
            pr_auc: f64::NAN,
        };
    };
    let mut ttd = Vec::new();
    let mut events = 0;
    for l in anomalies
        .iter()
        .filter(|l| l.end >= first.0 && l.start <= last.0)
    {
        events += 1;
        if let Some(w) = windows.iter().find(|w| w.2 && l.contains(w.0)) {
            ttd.push(w.0 - l.start);
        }
    }
    ttd.sort_unstable_by(f64::total_cmp);
    let flagged = windows.iter().filter(|w| w.2).count();
    let true_flags = windows.iter().filter(|w| w.2 && inside(w.0)).count();
    let point_precision = if flagged > 0 {
        true_flags as f64 / flagged as f64
    } else {
        f64::NAN
    };
    let event_recall = if events > 0 {
        ttd.len() as f64 / events as f64
    } else {
        f64::NAN
    };
    let composite_f1 = if event_recall + point_precision > 0.0 {
        2.0 * event_recall * point_precision / (event_recall + point_precision)
    } else {
        0.0
    };
    // False alarms: runs of flagged windows (events) that overlap no labelled anomaly. An event that
    // starts a little before a labelled interval (a detector quicker than the alert that labelled
    // it) or outlasts it is the same alarm, not a false one.
    let mut false_alarms = 0;
    let mut run: Option<bool> = None;
    for w in windows {
        match (&mut run, w.2) {
            (Some(hit), true) => *hit |= inside(w.0),
            (None, true) => run = Some(inside(w.0)),
            (Some(hit), false) => {
                false_alarms += usize::from(!*hit);
                run = None;
            }
            (None, false) => {}
        }
    }
    if run == Some(false) {
        false_alarms += 1;
    }
    let normal_windows = windows.iter().filter(|w| !inside(w.0)).count();
    let normal_hours = normal_windows as f64 * tick / 3600.0;
    let scored: Vec<(f64, bool)> = windows.iter().map(|w| (w.1, inside(w.0))).collect();
    Metrics {
        events,
        caught: ttd.len(),
        event_recall,
        ttd_median: quantile(&ttd, 0.5),
        ttd_p95: quantile(&ttd, 0.95),
        point_precision,
        composite_f1,
        false_alarms,
        false_alarms_per_hour: if normal_hours > 0.0 {
            false_alarms as f64 / normal_hours
        } else {
            f64::NAN
        },
        pr_auc: crate::explain::average_precision(&scored),
    }
}

/// Replays stored feature rows `(time, features)` (time order) through the engine with `model` loaded:
/// `(time, score, inside an event)` per scored row, as [`metrics`] takes them. It is the engine the agent
/// runs (its event rules, the lead signal's settling, level shifts and the adaptation after them), fed
/// stored windows instead of raw rows ([`Engine::over_features`]), so the gate judges a model by the
/// events it would raise live. Rows of another width are skipped.
pub fn replay<'a>(
    model: &ModelFile,
    rows: impl IntoIterator<Item = (f64, &'a [f64])>,
    params: EventParams,
    tick: f64,
) -> Vec<(f64, f64, bool)> {
    let schema =
        FeatureSchema::from_parts(model.feature_names.clone(), model.feature_units.clone());
    let cfg = EngineConfig {
        events: params,
        tick_seconds: if tick.is_finite() && tick > 0.0 {
            tick
        } else {
            1.0
        },
        horizons: Horizons::new(model.summary.short_horizon, model.summary.long_horizon)
            .unwrap_or_default(),
        ..EngineConfig::default()
    };
    let Ok(mut engine) = Engine::over_features(
        schema,
        cfg,
        Some(model.clone()),
        Box::new(InlineTrainer::default()),
    ) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (t, row) in rows {
        let Ok(step) = engine.push_features(t, row) else {
            continue;
        };
        if let Some(s) = &step.score {
            out.push((t, s.value, step.in_event || step.closed.is_some()));
        }
    }
    out
}

/// How many false events a candidate may raise beyond the current model on the hold-out before it is
/// rejected: one per day of hold-out windows (rounded up), the budget the threshold is calibrated to.
pub fn false_event_margin(holdout_seconds: f64, false_events_per_day: f64) -> usize {
    (holdout_seconds / 86_400.0 * false_events_per_day)
        .ceil()
        .max(1.0) as usize
}

/// The promotion decision: the figures of both models on the hold-out and the verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Promotion {
    /// The model in use, on the hold-out.
    pub current: Metrics,
    /// The candidate, on the hold-out.
    pub candidate: Metrics,
    /// False events the candidate may add.
    pub margin: usize,
    /// Promote?
    pub promote: bool,
    /// Why (for the log and the model history).
    pub reason: String,
}

/// Compares `candidate` with `current` on hold-out `rows` and `labels`: the candidate is promoted only
/// if it catches at least the labelled anomalies the current model catches and raises at most
/// `margin` more false events.
pub fn gate(
    current: &ModelFile,
    candidate: &ModelFile,
    rows: &[(f64, &[f64])],
    labels: &[Label],
    params: EventParams,
    tick: f64,
    margin: usize,
) -> Promotion {
    if current.schema_hash != candidate.schema_hash {
        let empty = metrics(&[], labels, tick);
        return Promotion {
            current: empty.clone(),
            candidate: empty,
            margin,
            promote: false,
            reason: format!(
                "schema differs (current {}, candidate {})",
                current.schema_hash, candidate.schema_hash
            ),
        };
    }
    let cur = metrics(
        &replay(current, rows.iter().copied(), params, tick),
        labels,
        tick,
    );
    let cand = metrics(
        &replay(candidate, rows.iter().copied(), params, tick),
        labels,
        tick,
    );
    let (promote, reason) = if cand.caught < cur.caught {
        (
            false,
            format!(
                "catches {} of {} labelled anomalies, the current model {}",
                cand.caught, cand.events, cur.caught
            ),
        )
    } else if cand.false_alarms > cur.false_alarms + margin {
        (
            false,
            format!(
                "{} false events on the hold-out, the current model {} (margin {margin})",
                cand.false_alarms, cur.false_alarms
            ),
        )
    } else {
        (
            true,
            format!(
                "catches {}/{} (current {}), {} false events (current {}, margin {margin})",
                cand.caught, cand.events, cur.caught, cand.false_alarms, cur.false_alarms
            ),
        )
    };
    Promotion {
        current: cur,
        candidate: cand,
        margin,
        promote,
        reason,
    }
}
