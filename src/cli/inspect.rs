//! `vigil inspect`: what a model file is.

use std::path::PathBuf;

use vigil_tool::engine::load_model;
use vigil_tool::say;

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
    say!("model:          {}", args.model.display())?;
    say!("format version: {}", m.format_version)?;
    say!(
        "kind:           {} ({} clusters)",
        m.kind,
        m.detector.centroids.len()
    )?;
    say!("schema hash:    {}", m.schema_hash)?;
    say!(
        "features:       {} (horizons {} and {} ticks)",
        m.feature_names.len(),
        s.short_horizon,
        s.long_horizon
    )?;
    say!(
        "threshold:      score 0.5 = RMS robust distance {:.4}",
        m.detector.threshold
    )?;
    say!("alert budget:   {}", s.alert_budget)?;
    say!(
        "trained on:     {} windows, tick {}",
        s.rows,
        s.tick_seconds.map_or("unknown".into(), |t| format!("{t}s"))
    )?;
    say!("created:        unix {:.0}", m.created_unix_seconds)?;
    for (source, n) in &s.labels_by_source {
        say!("labels:         {n} from {source}")?;
    }
    for n in &s.notes {
        say!("training:       {n}")?;
    }
    for (k, v) in &s.validation {
        say!("validation:     {k} = {v:.6}")?;
    }
    if args.features {
        for (n, u) in m.feature_names.iter().zip(&m.feature_units) {
            say!("  {n} [{u}]")?;
        }
    }
    Ok(())
}
