//! `vigil inspect`: what a model file is.

use std::path::PathBuf;

use super::offline::load_model;

/// Flags of `vigil inspect`.
#[derive(Debug, clap::Args)]
pub(crate) struct InspectArgs {
    /// Model file.
    model: PathBuf,
    /// Also list every feature with its unit.
    #[arg(long)]
    features: bool,
}

pub(crate) fn run(args: InspectArgs) -> anyhow::Result<()> {
    let m = load_model(&args.model)?;
    let s = &m.summary;
    println!("model:          {}", args.model.display());
    println!("format version: {}", m.format_version);
    println!(
        "kind:           {} ({} clusters)",
        m.kind,
        m.detector.centroids.len()
    );
    println!("schema hash:    {}", m.schema_hash);
    println!(
        "features:       {} (horizons {} and {} ticks)",
        m.feature_names.len(),
        s.short_horizon,
        s.long_horizon
    );
    println!(
        "threshold:      score 0.5 = RMS robust distance {:.4}",
        m.detector.threshold
    );
    println!("alert budget:   {}", s.alert_budget);
    println!(
        "trained on:     {} windows, tick {}",
        s.rows,
        s.tick_seconds.map_or("unknown".into(), |t| format!("{t}s"))
    );
    println!("created:        unix {:.0}", m.created_unix_seconds);
    for (source, n) in &s.labels_by_source {
        println!("labels:         {n} from {source}");
    }
    for n in &s.notes {
        println!("training:       {n}");
    }
    for (k, v) in &s.validation {
        println!("validation:     {k} = {v:.6}");
    }
    if args.features {
        for (n, u) in m.feature_names.iter().zip(&m.feature_units) {
            println!("  {n} [{u}]");
        }
    }
    Ok(())
}
