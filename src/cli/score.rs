//! `vigil score`: run every row of a CSV through the agent's engine (a model, or the agent's own cold
//! start), streaming.

use std::path::PathBuf;

use vigil_models::OutputFile;

use vigil_tool::engine::{EngineArgs, load_model, score_csv};
use vigil_tool::input::ReadOptions;

/// Flags of `vigil score`.
#[derive(Debug, clap::Args)]
pub(crate) struct ScoreArgs {
    /// Model file from `vigil train`; without it the engine does what the agent does without
    /// `VIGIL_MODEL`: a cold start after --warm-up-windows, refits, events.
    #[arg(long, value_name = "MODEL")]
    model: Option<PathBuf>,
    /// Input CSV with the columns the model was trained on.
    #[arg(long, value_name = "FILE")]
    csv: PathBuf,
    /// Output CSV: timestamp,score,raw_score,is_anomaly,anomaly_type,top_features,event_id,event_onset
    /// (`is_anomaly` = inside an event; `anomaly_type` = the event's type, which follows its peak
    /// window; `top_features` = `feature:deviation` in robust standard
    /// deviations, `;`-separated; written to a temporary file beside it and renamed when
    /// complete; never one of the inputs; a device or pipe such as /dev/stdout is written through).
    #[arg(long, value_name = "SCORES")]
    out: PathBuf,
    #[command(flatten)]
    read: ReadOptions,
    #[command(flatten)]
    engine: EngineArgs,
}

pub(crate) fn run(args: ScoreArgs) -> anyhow::Result<()> {
    // Refuse an output that is one of the inputs before reading anything.
    let mut inputs = vec![args.csv.as_path()];
    if let Some(m) = &args.model {
        inputs.push(m);
    }
    let out = OutputFile::create(&args.out, &inputs)?;
    let model = match &args.model {
        Some(p) => Some(load_model(p)?),
        None => None,
    };
    // Quotes any field that needs it (a column name with a comma in top_features).
    let mut w = csv::WriterBuilder::new()
        .buffer_capacity(1 << 20)
        .from_writer(out);
    w.write_record([
        "timestamp",
        "score",
        "raw_score",
        "is_anomaly",
        "anomaly_type",
        "top_features",
        "event_id",
        "event_onset",
    ])?;
    let (mut n, mut events) = (0u64, 0u64);
    let mut top = String::new();
    let mut open: Option<(u64, f64, &'static str)> = None;
    score_csv(model, &args.engine, &args.csv, args.read, |src, step| {
        n += 1;
        if let Some(ev) = &step.opened {
            events += 1;
            open = Some((ev.id, ev.start, ev.anomaly_type.as_str()));
        }
        // The event's type follows its peak window: rows from here on carry the new one.
        if let (Some(ev), Some(o)) = (&step.retyped, open.as_mut()) {
            o.2 = ev.anomaly_type.as_str();
        }
        let inside = if step.in_event { open } else { None };
        match &step.score {
            Some(s) => {
                top.clear();
                for (i, (f, z)) in step.top.iter().enumerate() {
                    if i > 0 {
                        top.push(';');
                    }
                    top.push_str(f);
                    top.push_str(&format!(":{z:+.1}"));
                }
                w.write_record([
                    src.raw_timestamp,
                    &format!("{:.6}", s.value),
                    &format!("{:.4}", s.raw),
                    if inside.is_some() { "1" } else { "0" },
                    inside.map_or("", |e| e.2),
                    &top,
                    &inside.map_or(String::new(), |e| e.0.to_string()),
                    &inside.map_or(String::new(), |e| format!("{:.3}", e.1)),
                ])?;
            }
            None => w.write_record([src.raw_timestamp, "", "", "0", "", "", "", ""])?,
        }
        if step.closed.is_some() && !step.in_event {
            open = None;
        }
        Ok(())
    })?;
    let out = w
        .into_inner()
        .map_err(|e| anyhow::anyhow!("{}: cannot write: {}", args.out.display(), e.error()))?;
    out.commit()?;
    // On stderr: the output may be standard output itself.
    eprintln!(
        "scored {n} rows, {events} anomaly events -> {}",
        args.out.display()
    );
    Ok(())
}
