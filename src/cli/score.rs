//! `vigil score`: score every row of a CSV with a model, streaming.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

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
    /// Output CSV: timestamp,score,is_anomaly,anomaly_type,top_features (written to a temporary file and
    /// renamed when complete).
    #[arg(long, value_name = "SCORES")]
    out: PathBuf,
}

pub(crate) fn run(args: ScoreArgs) -> anyhow::Result<()> {
    let model = load_model(&args.model)?;
    let tmp = args.out.with_extension("partial");
    let result = (|| -> anyhow::Result<u64> {
        let file =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
        writeln!(w, "timestamp,score,is_anomaly,anomaly_type,top_features")?;
        let mut n = 0u64;
        score_csv(&model, &args.csv, |src, score| {
            n += 1;
            match score {
                Some(s) => {
                    let top: Vec<&str> = s
                        .top_features
                        .iter()
                        .filter_map(|(i, _)| model.feature_names.get(*i).map(String::as_str))
                        .collect();
                    writeln!(
                        w,
                        "{},{:.6},{},{},{}",
                        src.raw_timestamp,
                        s.value,
                        u8::from(s.is_anomaly),
                        if s.is_anomaly {
                            s.anomaly_type.as_str()
                        } else {
                            ""
                        },
                        top.join(";")
                    )?;
                }
                None => writeln!(w, "{},,0,,", src.raw_timestamp)?,
            }
            Ok(())
        })?;
        w.flush()?;
        w.get_ref().sync_all()?;
        Ok(n)
    })();
    match result {
        Ok(n) => {
            std::fs::rename(&tmp, &args.out)
                .with_context(|| format!("renaming to {}", args.out.display()))?;
            println!("scored {n} rows -> {}", args.out.display());
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}
