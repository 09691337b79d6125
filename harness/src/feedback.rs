//! `vigil bench feedback --replay DIR`: does feedback work? On recorded fault runs, people call one
//! fault type benign (say, a nightly batch job that allocates like a storm): every event on it in the
//! earlier runs is marked `normal` by a person, every event on another fault is an alert that fired
//! (an `anomaly` label, confidence 0.65), any other event is marked `normal`. The agent's retrain runs
//! on those runs' windows with those labels, through its promotion gate. The last run is then replayed
//! twice from the same start, once with the model in use before the feedback and once with the
//! promoted one: the benign pattern should no longer open an event, and every other fault should still
//! be detected.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use vigil::models::labels::Label;
use vigil::models::retrain::{RetrainInput, retrain};
use vigil::models::{AnomalyKind, EventParams, LabelledWindow, ModelFile};

use vigil_tool::input::ReadOptions;

/// Flags of `vigil bench feedback`.
#[derive(Debug, clap::Args)]
pub(crate) struct FeedbackArgs {
    /// Recordings from `vigil bench detect --record` (the `faults-*` runs, in name order: all but the
    /// last give the feedback, the last is the test).
    #[arg(long, value_name = "DIR")]
    replay: PathBuf,
    /// The fault type people call benign.
    #[arg(long, default_value = "alloc_storm", value_name = "TYPE")]
    benign: String,
    /// Also write the figures as JSON here.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// One replayed run: per scored window `(time, features, inside an event)`, the events as
/// `(start, end)`, and the model in use at the end.
struct Replay {
    windows: Vec<(f64, Arc<[f64]>, bool)>,
    events: Vec<(f64, f64)>,
    model: Option<Arc<ModelFile>>,
    schema: vigil::features::FeatureSchema,
}

fn replay(
    csv: &Path,
    start_with: Option<(ModelFile, Vec<LabelledWindow>)>,
) -> anyhow::Result<Replay> {
    let options = ReadOptions::default();
    let cfg = |tick: f64| crate::scenes::bench_engine(Duration::from_secs_f64(tick));
    let start = match start_with {
        Some((m, labelled)) => vigil_tool::engine::Start::Own(m, labelled),
        None => vigil_tool::engine::Start::Cold,
    };
    let (mut windows, mut events) = (Vec::new(), Vec::new());
    let mut open: Option<f64> = None;
    let mut last_t = 0.0;
    let mut model: Option<Arc<ModelFile>> = None;
    let mut schema: Option<vigil::features::FeatureSchema> = None;
    vigil_tool::engine::drive_csv(csv, options, cfg, start, false, |src, engine, step| {
        last_t = src.timestamp;
        if let Some(e) = &step.opened {
            open = Some(e.start);
        }
        if let (Some(e), Some(s)) = (&step.closed, open) {
            events.push((s, e.end.unwrap_or(src.timestamp)));
            open = None;
        }
        if step.score.is_some() {
            windows.push((
                src.timestamp,
                Arc::from(engine.features().values()),
                step.in_event,
            ));
        }
        model = engine.model().cloned();
        if schema.is_none() {
            schema = Some(engine.schema().clone());
        }
        Ok(())
    })?;
    let Some(schema) = schema else {
        anyhow::bail!("{}: no rows to replay", csv.display());
    };
    if let Some(s) = open {
        events.push((s, last_t));
    }
    Ok(Replay {
        windows,
        events,
        model,
        schema,
    })
}

/// The fault an event starting at `s` belongs to: the latest one that started by then (a second of
/// slack for the window's lag) and ended at most 10 s before. Faults follow each other within seconds
/// in the scenes, so "any fault within reach" would credit one event to two.
fn fault_of(faults: &[Label], s: f64) -> Option<usize> {
    faults
        .iter()
        .enumerate()
        .filter(|(_, l)| l.start - 1.0 <= s && s <= l.end + 10.0)
        .max_by(|a, b| a.1.start.total_cmp(&b.1.start))
        .map(|(i, _)| i)
}

/// What a run's events did against its injected faults: per fault, whether an event opened on it;
/// events on no fault.
fn judge(events: &[(f64, f64)], faults: &[Label]) -> (Vec<(AnomalyKind, bool)>, usize) {
    let owners: Vec<Option<usize>> = events.iter().map(|(s, _)| fault_of(faults, *s)).collect();
    let per_fault = faults
        .iter()
        .enumerate()
        .map(|(i, l)| {
            (
                l.kind.unwrap_or(AnomalyKind::Unknown),
                owners.contains(&Some(i)),
            )
        })
        .collect();
    (per_fault, owners.iter().filter(|o| o.is_none()).count())
}

pub(crate) fn run(args: FeedbackArgs) -> anyhow::Result<()> {
    let benign = AnomalyKind::parse(&args.benign)
        .with_context(|| format!("--benign `{}` is not an anomaly type", args.benign))?;
    // Never over one of the recordings it reads.
    let inputs: Vec<PathBuf> = std::fs::read_dir(&args.replay)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    let input_refs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    let json_out = match &args.json {
        Some(p) => Some(vigil::models::OutputFile::create(p, &input_refs)?),
        None => None,
    };
    let mut runs: Vec<String> = std::fs::read_dir(&args.replay)
        .with_context(|| format!("{}: cannot read the directory", args.replay.display()))?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_suffix(".labels.csv").map(str::to_owned)
        })
        .filter(|n| n.starts_with("faults-") && args.replay.join(format!("{n}.csv")).is_file())
        .collect();
    runs.sort();
    anyhow::ensure!(
        runs.len() >= 2,
        "{}: feedback needs at least two recorded fault runs (faults-*.csv with labels), found {}",
        args.replay.display(),
        runs.len()
    );
    let test = runs.pop().unwrap_or_default();
    let faults_of = |name: &str| -> anyhow::Result<Vec<Label>> {
        Ok(
            vigil_tool::labels::read_labels(&args.replay.join(format!("{name}.labels.csv")))?
                .into_iter()
                .filter(|l| l.anomaly)
                .collect(),
        )
    };
    // 1. The earlier runs as the agent saw them, and what people and alerts said about their events.
    let mut windows = Vec::new();
    let mut labels = Vec::new();
    let mut current = None;
    let mut schema = None;
    for name in &runs {
        let r = replay(&args.replay.join(format!("{name}.csv")), None)?;
        let faults = faults_of(name)?;
        for (s, e) in &r.events {
            let on = fault_of(&faults, *s).map(|i| &faults[i]);
            let (anomaly, source, confidence, kind) = match on.and_then(|l| l.kind) {
                Some(k) if k != benign => (true, "alertmanager", 0.65, Some(k)),
                _ => (false, "human", 0.95, None),
            };
            labels.push(Label {
                start: *s,
                end: *e,
                anomaly,
                source: source.into(),
                confidence,
                kind,
            });
        }
        eprintln!(
            "  {name}: {} windows, {} events labelled",
            r.windows.len(),
            r.events.len()
        );
        windows.extend(r.windows);
        current = r.model;
        schema = Some(r.schema);
    }
    let (Some(current), Some(schema)) = (current, schema) else {
        anyhow::bail!("the feedback runs never trained a model");
    };
    // 2. The agent's retrain over them, through its gate.
    let tick = vigil_tool::engine::estimate_tick(
        &args.replay.join(format!("{}.csv", runs[0])),
        ReadOptions::default(),
    )?;
    let cfg = crate::scenes::bench_engine(Duration::from_secs_f64(tick))?;
    let input = RetrainInput {
        schema,
        windows,
        labels: labels.clone(),
        params: cfg.params(),
        events: EventParams::default(),
        horizons: cfg.horizons,
        tick_seconds: tick,
        false_events_per_day: cfg.false_events_per_day,
        holdout: 0.3,
        created: 0.0,
    };
    let out = retrain(&input, &current)?;
    eprintln!(
        "  retrain: {} ({})",
        if out.promotion.promote {
            "promoted"
        } else {
            "rejected"
        },
        out.promotion.reason
    );
    // 3. The last run from the same start: before the feedback, and after it.
    let test_csv = args.replay.join(format!("{test}.csv"));
    let faults = faults_of(&test)?;
    let before = replay(&test_csv, Some(((*current).clone(), Vec::new())))?;
    let (b_faults, b_stray) = judge(&before.events, &faults);
    let after = match &out.model {
        Some(m) => Some(replay(&test_csv, Some((m.clone(), out.labelled.clone())))?),
        None => None,
    };
    let a = after.as_ref().map(|r| judge(&r.events, &faults));
    println!(
        "{:<20} | {:>16} | {:>16}",
        "fault (last run)", "before feedback", "after feedback"
    );
    let mark = |d: bool| if d { "event" } else { "no event" };
    for (i, (k, d)) in b_faults.iter().enumerate() {
        let after_d = a.as_ref().map(|(f, _)| f[i].1);
        println!(
            "{:<20} | {:>16} | {:>16}",
            format!(
                "{}{}",
                k.as_str(),
                if *k == benign { " (benign)" } else { "" }
            ),
            mark(*d),
            after_d.map_or("-", mark)
        );
    }
    println!(
        "{:<20} | {:>16} | {:>16}",
        "other events",
        b_stray,
        a.as_ref().map_or("-".to_owned(), |(_, s)| s.to_string())
    );
    let report = json!({
        "benign": benign.as_str(),
        "feedback_runs": runs,
        "test_run": test,
        "labels": {
            "normal": labels.iter().filter(|l| !l.anomaly).count(),
            "anomaly": labels.iter().filter(|l| l.anomaly).count(),
        },
        "retrain": {
            "promoted": out.promotion.promote,
            "reason": out.promotion.reason,
            "windows": out.used,
            "labelled_windows": out.labelled_windows,
            "left_out_event_windows": out.left_out,
        },
        "before": {
            "faults": b_faults.iter().map(|(k, d)| json!({"type": k.as_str(), "event": d})).collect::<Vec<_>>(),
            "other_events": b_stray,
        },
        "after": a.as_ref().map(|(f, s)| json!({
            "faults": f.iter().map(|(k, d)| json!({"type": k.as_str(), "event": d})).collect::<Vec<_>>(),
            "other_events": s,
        })),
    });
    if let Some(mut o) = json_out {
        std::io::Write::write_all(&mut o, serde_json::to_string_pretty(&report)?.as_bytes())?;
        o.commit()?;
    }
    Ok(())
}
