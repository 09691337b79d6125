//! `vigil train`: fit a model from CSV files.

use std::path::PathBuf;

use anyhow::Context;
use vigil::features::{FeatureVector, Horizons, Window};
use vigil_models::{KMeansDetector, KMeansParams, LabelledRow, ModelFile, TrainingSummary};

use super::input::{CsvSource, InputError};
use super::labels::{label_at, read_labels};
use super::offline::progress;

/// Flags of `vigil train`.
#[derive(Debug, clap::Args)]
pub(crate) struct TrainArgs {
    /// Input CSV (header `timestamp,<signal>,...`); repeat for several hosts of one service.
    #[arg(long = "csv", required = true, value_name = "FILE")]
    csv: Vec<PathBuf>,
    /// Where to write the model (written atomically).
    #[arg(long, value_name = "MODEL")]
    out: PathBuf,
    /// Labels CSV `start,end,label[,anomaly_type,source,confidence]`: windows labelled anomalous are left
    /// out of the normal-behaviour fit, and with at least 5 of them a weighted decision tree learns from
    /// all labels (confidence = weight; a human label overrides rule labels on the same windows).
    #[arg(long, value_name = "LABELS")]
    labels: Option<PathBuf>,
    /// Short feature horizon, in rows.
    #[arg(long, default_value_t = 10)]
    short: usize,
    /// Long feature horizon, in rows (also the warm-up).
    #[arg(long, default_value_t = 60)]
    long: usize,
    /// Alarm windows allowed per normal training window.
    #[arg(long, default_value_t = 0.001)]
    alert_budget: f64,
    /// k-means clusters (normal operating modes).
    #[arg(long, default_value_t = 8)]
    clusters: usize,
}

/// `((anomalous, weight), anomaly type)` of a training window.
type RowLabel = Option<((bool, f64), Option<vigil_models::AnomalyKind>)>;

pub(crate) fn run(args: TrainArgs) -> anyhow::Result<()> {
    let horizons = Horizons::new(args.short, args.long)?;
    let labels = match &args.labels {
        Some(p) => read_labels(p)?,
        None => Vec::new(),
    };
    let mut rows: Vec<Vec<f64>> = Vec::new();
    let mut row_labels: Vec<RowLabel> = Vec::new();
    let mut schema = None;
    let mut dts: Vec<f64> = Vec::new();
    let mut skipped = 0usize;
    for path in &args.csv {
        let mut src = CsvSource::open(path)?;
        let mut window = Window::new(src.signals(), horizons);
        match &schema {
            None => schema = Some(window.schema().clone()),
            Some(s) if s != window.schema() => {
                return Err(InputError::file(path, "its columns differ from the first --csv file; all files must have the same columns in the same order").into());
            }
            Some(_) => {}
        }
        let mut fv = FeatureVector::new(window.schema());
        let pb = progress(src.size(), &format!("reading {}", path.display()));
        let mut prev = None;
        while src.next_row()? {
            if let Some(p) = prev
                && dts.len() < 100_000
            {
                dts.push(src.timestamp - p);
            }
            prev = Some(src.timestamp);
            window.push(src.timestamp, &src.values)?;
            if window.is_warm() {
                let label =
                    label_at(&labels, src.timestamp).map(|l| ((l.anomaly, l.confidence), l.kind));
                if matches!(label, Some(((true, _), _))) {
                    skipped += 1;
                }
                window.extract(&mut fv)?;
                rows.push(fv.values().to_vec());
                row_labels.push(label);
            }
            if rows.len().is_multiple_of(8192) {
                pb.set_position(src.position());
            }
        }
        pb.finish_and_clear();
    }
    let Some(schema) = schema else {
        anyhow::bail!("no --csv file given");
    };
    dts.sort_by(f64::total_cmp);
    let tick = dts.get(dts.len() / 2).copied();
    let params = KMeansParams {
        clusters: args.clusters,
        alert_budget: args.alert_budget,
        ..KMeansParams::default()
    };
    let labelled: Vec<LabelledRow<'_>> = rows
        .iter()
        .zip(&row_labels)
        .map(|(r, l)| LabelledRow {
            features: r,
            label: l.map(|x| x.0),
            kind: l.and_then(|x| x.1),
        })
        .collect();
    let (detector, note) = KMeansDetector::fit_with_labels(schema.names(), &labelled, params)
        .context("training the detector")?;
    let mut summary = TrainingSummary {
        rows: rows.len(),
        alert_budget: args.alert_budget,
        tick_seconds: tick,
        short_horizon: args.short,
        long_horizon: args.long,
        ..TrainingSummary::default()
    };
    for l in &labels {
        *summary
            .labels_by_source
            .entry(l.source.clone())
            .or_default() += 1;
    }
    summary.notes.push(note.clone());
    // Alarm rate on the windows meant to be normal (labelled anomalies excluded).
    let normal: Vec<&Vec<f64>> = rows
        .iter()
        .zip(&row_labels)
        .filter(|(_, l)| !matches!(l, Some(((true, _), _))))
        .map(|(r, _)| r)
        .collect();
    let alarms = normal
        .iter()
        .filter(|r| {
            vigil_models::Detector::score(&detector, ndarray::ArrayView1::from(&r[..])).is_anomaly
        })
        .count();
    summary.validation.insert(
        "train_alarm_rate".into(),
        alarms as f64 / normal.len().max(1) as f64,
    );
    let file = ModelFile::new(&schema, detector, summary);
    file.save(&args.out)?;
    println!(
        "trained {} on {} windows ({} features, tick {}, {} windows labelled anomalous kept out of the normal fit; {note}) -> {}",
        file.kind,
        rows.len(),
        schema.len(),
        tick.map_or("unknown".into(), |t| format!("{t}s")),
        skipped,
        args.out.display()
    );
    Ok(())
}
