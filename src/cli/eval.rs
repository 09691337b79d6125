//! `vigil eval`: how a model does against labelled intervals.

use std::path::PathBuf;

use vigil_models::OutputFile;

use vigil_tool::engine::{EngineArgs, load_model, score_csv};
use vigil_tool::input::InputError;
use vigil_tool::input::ReadOptions;
use vigil_tool::labels::read_labels;
use vigil_tool::say;

/// Flags of `vigil eval`.
#[derive(Debug, clap::Args)]
pub(crate) struct EvalArgs {
    /// Model file; without it, the agent's cold start runs over the file (see `vigil score`).
    #[arg(long, value_name = "MODEL")]
    model: Option<PathBuf>,
    /// CSV to score.
    #[arg(long, value_name = "FILE")]
    csv: PathBuf,
    /// Labels CSV `start,end,label[,anomaly_type,source,confidence]`.
    #[arg(long, value_name = "LABELS")]
    labels: PathBuf,
    /// Write a plot of score, threshold and labelled intervals (`.svg` or `.png`).
    #[arg(long, value_name = "FILE.svg|png")]
    plot: Option<PathBuf>,
    #[command(flatten)]
    read: ReadOptions,
    #[command(flatten)]
    engine: EngineArgs,
}

pub(crate) use vigil_models::evaluation::metrics;

pub(crate) fn run(args: EvalArgs) -> anyhow::Result<()> {
    // Checked first, before the (long) scoring: never one of the inputs, and its directory must exist.
    let mut inputs = vec![args.csv.as_path(), args.labels.as_path()];
    if let Some(m) = &args.model {
        inputs.push(m);
    }
    let plot_out = match &args.plot {
        Some(p) => Some(OutputFile::create(p, &inputs)?),
        None => None,
    };
    let plot_kind = match &args.plot {
        None => None,
        Some(p) => match p
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("svg") => Some("svg"),
            Some("png") => Some("png"),
            _ => {
                return Err(InputError::file(
                    p,
                    "the plot format follows the extension: give a path ending in .svg or .png",
                )
                .into());
            }
        },
    };
    let model = match &args.model {
        Some(p) => Some(load_model(p)?),
        None => None,
    };
    let model_tick = model.as_ref().and_then(|m| m.summary.tick_seconds);
    let labels = read_labels(&args.labels)?;
    let mut windows = Vec::new();
    score_csv(model, &args.engine, &args.csv, args.read, |src, step| {
        if let Some(s) = &step.score {
            windows.push((src.timestamp, s.value, step.in_event));
        }
        Ok(())
    })?;
    let tick = vigil::features::time::median_interval(windows.iter().map(|w| w.0))
        .or(model_tick)
        .unwrap_or(1.0);
    let m = metrics(&windows, &labels, tick);
    say!("windows scored:          {}", windows.len())?;
    say!(
        "labelled anomalies:      {} ({} caught)",
        m.events,
        m.caught
    )?;
    say!("event recall:            {:.3}", m.event_recall)?;
    say!(
        "time to detect:          median {:.1}s, p95 {:.1}s",
        m.ttd_median,
        m.ttd_p95
    )?;
    say!("point precision:         {:.3}", m.point_precision)?;
    say!("composite F1:            {:.3}", m.composite_f1)?;
    say!(
        "false alarms per hour:   {:.3} (of normal data)",
        m.false_alarms_per_hour
    )?;
    say!("PR-AUC:                  {:.3}", m.pr_auc)?;
    if let (Some(p), Some(kind), Some(mut out)) = (&args.plot, plot_kind, plot_out) {
        let bytes = if kind == "png" {
            vigil_tool::plot::png(&windows, &labels)
        } else {
            vigil_tool::plot::svg(&windows, &labels).into_bytes()
        };
        std::io::Write::write_all(&mut out, &bytes)
            .map_err(|e| anyhow::anyhow!("{}: cannot write the plot: {e}", p.display()))?;
        out.commit()?;
        say!("plot:                    {}", p.display())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_tool::labels::Label;

    fn label(start: f64, end: f64) -> Label {
        Label {
            start,
            end,
            anomaly: true,
            source: "human".into(),
            confidence: 0.95,
            kind: None,
        }
    }

    #[test]
    fn metrics_on_a_hand_checked_case() {
        // 1 window per second for 100 s; anomaly labelled 40..=49; flagged at 42, 43 and at 80 (false),
        // and from 48 to 51: an alarm that starts inside the label and outlasts it is not a false one.
        let windows: Vec<(f64, f64, bool)> = (0..100)
            .map(|t| {
                let t = f64::from(t);
                let flag = t == 42.0 || t == 43.0 || t == 80.0 || (48.0..=51.0).contains(&t);
                (
                    t,
                    if flag {
                        0.9
                    } else if (40.0..=49.0).contains(&t) {
                        0.4
                    } else {
                        0.1
                    },
                    flag,
                )
            })
            .collect();
        let m = metrics(&windows, &[label(40.0, 49.0)], 1.0);
        assert_eq!((m.events, m.caught), (1, 1));
        assert_eq!(m.event_recall, 1.0);
        assert_eq!(m.ttd_median, 2.0);
        // 4 of 7 flagged windows inside the label.
        assert!((m.point_precision - 4.0 / 7.0).abs() < 1e-12);
        let f1 = 2.0 * (4.0 / 7.0) / (1.0 + 4.0 / 7.0);
        assert!((m.composite_f1 - f1).abs() < 1e-12);
        assert!((m.false_alarms_per_hour - 3600.0 / 90.0).abs() < 1e-9);
        assert!(m.pr_auc > 0.5 && m.pr_auc <= 1.0);
    }

    #[test]
    fn average_precision_is_one_for_a_perfect_ranking() {
        use vigil_models::explain::average_precision;
        assert_eq!(
            average_precision(&[(0.9, true), (0.8, true), (0.1, false)]),
            1.0
        );
        assert!(average_precision(&[(0.1, false)]).is_nan());
    }
}
