//! `vigil score`: score every row of a CSV with a model, streaming.

use std::path::PathBuf;

use vigil_models::OutputFile;

use super::input::ReadOptions;
use super::offline::{load_model, score_csv};

/// Flags of `vigil score`.
#[derive(Debug, clap::Args)]
pub(crate) struct ScoreArgs {
    /// Model file from `vigil train`.
    #[arg(long, value_name = "MODEL")]
    model: PathBuf,
    /// Input CSV with the columns the model was trained on.
    #[arg(long, value_name = "FILE")]
    csv: PathBuf,
    /// Output CSV: timestamp,score,is_anomaly,anomaly_type,top_features (written to a temporary file
    /// beside it and renamed when complete; never one of the inputs; a device or pipe such as
    /// /dev/stdout is written through).
    #[arg(long, value_name = "SCORES")]
    out: PathBuf,
    #[command(flatten)]
    read: ReadOptions,
}

pub(crate) fn run(args: ScoreArgs) -> anyhow::Result<()> {
    // Refuse an output that is one of the inputs before reading anything.
    let out = OutputFile::create(&args.out, &[&args.model, &args.csv])?;
    let model = load_model(&args.model)?;
    // Quotes any field that needs it (a column name with a comma in top_features).
    let mut w = csv::WriterBuilder::new()
        .buffer_capacity(1 << 20)
        .from_writer(out);
    w.write_record([
        "timestamp",
        "score",
        "is_anomaly",
        "anomaly_type",
        "top_features",
    ])?;
    let mut n = 0u64;
    let mut top = String::new();
    score_csv(&model, &args.csv, args.read, |src, score| {
        n += 1;
        match score {
            Some(s) => {
                top.clear();
                for (i, (f, _)) in s.top_features.iter().enumerate() {
                    if i > 0 {
                        top.push(';');
                    }
                    top.push_str(model.feature_names.get(*f).map_or("?", String::as_str));
                }
                w.write_record([
                    src.raw_timestamp.as_str(),
                    &format!("{:.6}", s.value),
                    if s.is_anomaly { "1" } else { "0" },
                    if s.is_anomaly {
                        s.anomaly_type.as_str()
                    } else {
                        ""
                    },
                    &top,
                ])?;
            }
            None => w.write_record([src.raw_timestamp.as_str(), "", "0", "", ""])?,
        }
        Ok(())
    })?;
    let out = w
        .into_inner()
        .map_err(|e| anyhow::anyhow!("{}: cannot write: {}", args.out.display(), e.error()))?;
    out.commit()?;
    // On stderr: the output may be standard output itself.
    eprintln!("scored {n} rows -> {}", args.out.display());
    Ok(())
}
