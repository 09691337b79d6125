//! Retraining on stored windows with labels, and the gate that promotes only a better model.
//!
//! 1. Every stored window gets its label (a human label overrides rule labels; the most confident
//!    wins). A window inside an event that no label covers is left out: nobody said whether it was
//!    an anomaly, and training on it as normal would teach the detector to ignore real faults.
//! 2. The procedure is validated out of sample: a candidate is fitted on the oldest
//!    `1 − holdout` of the windows and compared with the model in use on the newest `holdout`
//!    ([`crate::evaluation::gate`]): it must catch at least the labelled anomalies the current model
//!    catches and raise at most [`crate::evaluation::false_event_margin`] more false events.
//! 3. When it passes, the same procedure is refitted on every window and that model is promoted, with
//!    the labelled windows its later refits keep learning from.

use std::sync::Arc;

use vigil_features::{FeatureSchema, Horizons};

use crate::engine::LabelledWindow;
use crate::evaluation::{Promotion, false_event_margin, gate};
use crate::labels::{Label, label_at};
use crate::{EventParams, FitReason, KMeansParams, ModelError, ModelFile, TrainJob};

/// Fewest windows a retrain runs on.
pub const MIN_RETRAIN_WINDOWS: usize = 200;
/// Labelled windows handed to the engine at most (the newest).
pub const MAX_LABELLED_KEPT: usize = 5000;

/// What a retrain reads.
#[derive(Debug, Clone)]
pub struct RetrainInput {
    /// The schema of the windows.
    pub schema: FeatureSchema,
    /// Stored windows, oldest first: `(time, features, inside an event)`.
    pub windows: Vec<(f64, Arc<[f64]>, bool)>,
    /// Labels overlapping them.
    pub labels: Vec<Label>,
    /// Detector parameters (the engine's).
    pub params: KMeansParams,
    /// Event rule (the engine's).
    pub events: EventParams,
    /// Horizons recorded in the model.
    pub horizons: Horizons,
    /// Seconds per window.
    pub tick_seconds: f64,
    /// The false-event budget per day (sets the gate's margin).
    pub false_events_per_day: f64,
    /// Share of the newest windows held out for the gate (0.1 to 0.5).
    pub holdout: f64,
    /// Creation time recorded in the model.
    pub created: f64,
}

/// What a retrain decided.
#[derive(Debug, Clone)]
pub struct RetrainOutcome {
    /// The gate's figures and verdict.
    pub promotion: Promotion,
    /// The model to install, when promoted.
    pub model: Option<ModelFile>,
    /// The labelled windows the engine's refits keep learning from (when promoted).
    pub labelled: Vec<LabelledWindow>,
    /// Windows used (labelled or not), and how many were left out (unlabelled event windows).
    pub used: usize,
    /// Unlabelled windows inside events, left out.
    pub left_out: usize,
    /// Windows labelled.
    pub labelled_windows: usize,
}

type Row = (f64, Arc<[f64]>, Option<crate::labels::WindowLabel>);

/// The training of `rows`: the engine's own path from windows to a model ([`TrainJob::run`], what its
/// cold start and refits and `vigil train` use), unlabelled windows in time order and labelled ones
/// beside them.
fn fit(input: &RetrainInput, rows: &[Row], reason: String) -> Result<ModelFile, ModelError> {
    let mut unlabelled = Vec::new();
    let mut labelled = Vec::new();
    for (_, f, l) in rows {
        match l {
            None => unlabelled.push(f.clone()),
            Some(((anomaly, weight), kind, coarse)) => labelled.push(LabelledWindow {
                features: f.clone(),
                label: (*anomaly, *weight),
                kind: *kind,
                coarse: *coarse,
            }),
        }
    }
    let mut m = TrainJob {
        schema: input.schema.clone(),
        rows: unlabelled,
        params: input.params,
        horizons: input.horizons,
        created: input.created,
        why: FitReason::Offline,
        reason,
        labelled: Arc::new(labelled),
    }
    .run()?;
    m.summary.tick_seconds = Some(input.tick_seconds);
    Ok(m)
}

/// Each window with its label; unlabelled windows inside events left out (their count). Fewer than
/// [`MIN_RETRAIN_WINDOWS`] usable windows is an error.
fn prepare(input: &RetrainInput) -> Result<(Vec<Row>, usize), ModelError> {
    let mut rows: Vec<Row> = Vec::with_capacity(input.windows.len());
    let mut left_out = 0;
    for (t, f, in_event) in &input.windows {
        match label_at(&input.labels, *t) {
            Some(l) => rows.push((*t, f.clone(), Some(l.window_label()))),
            None if *in_event => left_out += 1,
            None => rows.push((*t, f.clone(), None)),
        }
    }
    if rows.len() < MIN_RETRAIN_WINDOWS {
        return Err(ModelError::Param {
            name: "windows",
            message: format!(
                "{} usable stored windows, at least {MIN_RETRAIN_WINDOWS} are needed",
                rows.len()
            ),
        });
    }
    Ok((rows, left_out))
}

/// Fits one model on every usable window, without a gate (`vigil train --store`: the operator
/// decides): the same row preparation as [`retrain`]. Returns the model and the labelled windows.
pub fn train_all(input: &RetrainInput) -> Result<(ModelFile, Vec<LabelledWindow>), ModelError> {
    let (rows, left_out) = prepare(input)?;
    let labelled_windows = rows.iter().filter(|r| r.2.is_some()).count();
    let model = fit(
        input,
        &rows,
        format!(
            "trained on {} stored windows ({labelled_windows} labelled, {left_out} unlabelled event windows left out)",
            rows.len()
        ),
    )?;
    Ok((model, labelled(&rows)))
}

/// The labelled windows of `rows` (the newest [`MAX_LABELLED_KEPT`]).
fn labelled(rows: &[Row]) -> Vec<LabelledWindow> {
    let mut out: Vec<LabelledWindow> = rows
        .iter()
        .filter_map(|(_, f, l)| {
            l.map(|((a, w), kind, coarse)| LabelledWindow {
                features: f.clone(),
                label: (a, w),
                kind,
                coarse,
            })
        })
        .collect();
    if out.len() > MAX_LABELLED_KEPT {
        out.drain(..out.len() - MAX_LABELLED_KEPT);
    }
    out
}

/// Runs a retrain against the model in use.
pub fn retrain(input: &RetrainInput, current: &ModelFile) -> Result<RetrainOutcome, ModelError> {
    let (rows, left_out) = prepare(input)?;
    // The split is in time, over every window: the candidate trains on the usable windows before it,
    // and the gate replays every window after it (unlabelled event windows included: they are the
    // current model's alarms that nobody confirmed, which count as false, as in `vigil eval`).
    let holdout = input.holdout.clamp(0.1, 0.5);
    let at = ((input.windows.len() as f64) * (1.0 - holdout)).round() as usize;
    let t_split = input
        .windows
        .get(at.min(input.windows.len().saturating_sub(1)))
        .map_or(f64::INFINITY, |w| w.0);
    let train: Vec<Row> = rows.iter().filter(|r| r.0 < t_split).cloned().collect();
    let held: Vec<(f64, &[f64])> = input
        .windows
        .iter()
        .filter(|w| w.0 >= t_split)
        .map(|(t, f, _)| (*t, &f[..]))
        .collect();
    if train.len() < MIN_RETRAIN_WINDOWS / 2 || held.len() < MIN_RETRAIN_WINDOWS / 4 {
        return Err(ModelError::Param {
            name: "windows",
            message: format!(
                "{} usable windows before the hold-out and {} in it; too few to compare models",
                train.len(),
                held.len()
            ),
        });
    }
    let candidate = fit(
        input,
        &train,
        format!("retrain candidate on {} stored windows", train.len()),
    )?;
    let span = match (held.first(), held.last()) {
        (Some(a), Some(b)) => (b.0 - a.0).max(input.tick_seconds),
        _ => input.tick_seconds,
    };
    let margin = false_event_margin(span, input.false_events_per_day);
    let promotion = gate(
        current,
        &candidate,
        &held,
        &input.labels,
        input.events,
        input.tick_seconds,
        margin,
    );
    let labelled_windows = rows.iter().filter(|r| r.2.is_some()).count();
    if !promotion.promote {
        return Ok(RetrainOutcome {
            promotion,
            model: None,
            labelled: Vec::new(),
            used: rows.len(),
            left_out,
            labelled_windows,
        });
    }
    let mut model = fit(
        input,
        &rows,
        format!(
            "retrained on {} stored windows ({labelled_windows} labelled, {left_out} unlabelled event windows left out)",
            rows.len()
        ),
    )?;
    model.summary.notes.insert(
        1,
        format!(
            "gate on the newest {} windows: {}",
            held.len(),
            promotion.reason
        ),
    );
    let labelled = labelled(&rows);
    Ok(RetrainOutcome {
        promotion,
        model: Some(model),
        labelled,
        used: rows.len(),
        left_out,
        labelled_windows,
    })
}
