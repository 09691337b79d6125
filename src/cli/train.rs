//! `vigil train`: fit a model from CSV files.

use std::path::PathBuf;

use anyhow::Context;
use vigil::features::{FeatureVector, Horizons, Window};
use vigil_models::engine::window_budget;
use vigil_models::{
    EventParams, FitReason, KMeansParams, LabelledWindow, TrainJob, UNIT_EVENTS_PER_DAY,
};

use vigil_models::OutputFile;

use vigil_tool::engine::{check_features_finite, progress, too_few_rows};
use vigil_tool::input::{CsvSource, InputError, ReadOptions};
use vigil_tool::labels::{label_at, read_labels};

/// Flags of `vigil train`.
#[derive(Debug, clap::Args)]
pub(crate) struct TrainArgs {
    /// Input CSV (header `timestamp,<signal>,...`); repeat for several hosts of one service.
    #[arg(
        long = "csv",
        required_unless_present = "store",
        conflicts_with = "store",
        value_name = "FILE"
    )]
    csv: Vec<PathBuf>,
    /// Train on an agent's store instead (VIGIL_DATA_DIR, readable while the agent runs): its newest
    /// --max-windows windows with the labels over them, prepared as the agent's own retrain prepares
    /// them (unlabelled windows inside events left out); no promotion gate (you decide). The horizons
    /// and the tick are the store's.
    #[arg(long, value_name = "DIR", conflicts_with = "labels")]
    store: Option<PathBuf>,
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
    /// False anomaly events per day: with --store, the promotion gate's allowance of extra false
    /// events on the hold-out. The model's threshold does not depend on it (it is the unit the alarm
    /// level is read in); the budget sets the level where the model scores (`vigil score
    /// --false-events-per-day`, `VIGIL_FALSE_EVENTS_PER_DAY`).
    #[arg(long, default_value_t = vigil_models::DEFAULT_FALSE_EVENTS_PER_DAY, value_name = "N")]
    false_events_per_day: f64,
    /// Alarm windows allowed per normal window, instead of --false-events-per-day.
    #[arg(long, value_name = "SHARE")]
    alert_budget: Option<f64>,
    /// k-means clusters (normal operating modes).
    #[arg(long, default_value_t = 8)]
    clusters: usize,
    /// Windows kept for training at most, per kind (normal, labelled anomalous): a seeded uniform sample
    /// (reservoir) of all windows read, so memory stays flat whatever the input size (about
    /// `windows × features × 8` bytes: 50,000 windows of 200 features is 80 MB).
    #[arg(long, default_value_t = 50_000, value_name = "WINDOWS")]
    max_windows: usize,
    #[command(flatten)]
    read: ReadOptions,
}

/// A seeded uniform sample of at most `cap` items of a stream (Vitter's algorithm R); items keep
/// their stream position so the sample can be put back in time order.
struct Reservoir<T> {
    cap: usize,
    seen: u64,
    rng: u64,
    items: Vec<(u64, T)>,
}

impl<T> Reservoir<T> {
    fn new(cap: usize, seed: u64) -> Self {
        Self {
            cap,
            seen: 0,
            rng: seed | 1,
            items: Vec::new(),
        }
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: deterministic and good enough for sampling.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Offers the next item, at `position` in the whole input; `make` runs only when it is kept.
    fn offer(&mut self, position: u64, make: impl FnOnce() -> T) {
        let i = position;
        self.seen += 1;
        if self.items.len() < self.cap {
            self.items.push((i, make()));
        } else {
            let j = self.next_random() % self.seen;
            if let Ok(j) = usize::try_from(j)
                && j < self.cap
            {
                self.items[j] = (i, make());
            }
        }
    }

    /// The kept items of several reservoirs, in input order.
    fn merge_sorted(parts: Vec<Self>) -> Vec<T> {
        let mut all: Vec<(u64, T)> = parts.into_iter().flat_map(|r| r.items).collect();
        all.sort_unstable_by_key(|(i, _)| *i);
        all.into_iter().map(|(_, t)| t).collect()
    }
}

/// `((anomalous, weight), anomaly type)` of a training window.
type RowLabel = Option<vigil_models::labels::WindowLabel>;

/// `vigil train --store DIR`: the stored windows and labels, the agent's retrain preparation.
fn from_store(args: &TrainArgs, dir: &std::path::Path) -> anyhow::Result<()> {
    use vigil_store::Store;
    let store = Store::open_read_only(dir)?;
    let out = OutputFile::create(&args.out, &[store.path()])?;
    // The newest schema decides; its horizons are read from its feature names.
    let mut newest: Option<String> = None;
    store.for_each_tick(f64::MIN, f64::MAX, |t| {
        newest = Some(t.schema.clone());
        true
    })?;
    let hash =
        newest.with_context(|| format!("{}: no ticks stored yet", store.path().display()))?;
    let info = store
        .schema(&hash)?
        .with_context(|| format!("schema {hash} of the stored ticks is not recorded"))?;
    let signals = vigil::features::SignalSet::new(
        info.columns
            .iter()
            .map(|c| vigil::features::vocab::column_signal(c))
            .collect(),
    )
    .map_err(|m| anyhow::anyhow!("the stored columns are not a signal set: {m}"))?;
    let horizon = |prefix: &str| {
        info.features.iter().find_map(|f| {
            f.rsplit_once('.')
                .and_then(|(_, stat)| stat.strip_prefix(prefix))
                .and_then(|n| n.parse::<usize>().ok())
        })
    };
    let horizons = match (horizon("median_"), horizon("slope_")) {
        (Some(s), Some(l)) if l > s => Horizons::new(s, l)?,
        _ => Horizons::new(args.short, args.long)?,
    };
    let schema = Window::new(&signals, horizons).schema().clone();
    anyhow::ensure!(
        schema.hash_hex() == hash,
        "the stored features (schema {hash}) do not match horizons {}/{}: pass the agent's --short/--long",
        horizons.short(),
        horizons.long()
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let Some((windows, labels)) = store.retrain_input(&hash, args.max_windows, now)? else {
        anyhow::bail!(
            "{}: no windows with features stored yet",
            store.path().display()
        );
    };
    let tick = vigil_tool::engine::median_interval(windows.iter().map(|w| w.0)).max(1e-3);
    let events = EventParams::default();
    let params = KMeansParams {
        clusters: args.clusters,
        alert_budget: args
            .alert_budget
            .unwrap_or_else(|| window_budget(UNIT_EVENTS_PER_DAY, tick, &events)),
        short_horizon: horizons.short(),
        tick_seconds: tick,
        ..KMeansParams::default()
    }
    .check()
    .context("checking the training parameters")?;
    let input = vigil_models::retrain::RetrainInput {
        schema,
        windows,
        labels,
        params,
        events,
        horizons,
        tick_seconds: tick,
        false_events_per_day: args.false_events_per_day,
        holdout: 0.3,
        created: now,
    };
    let (model, _) = vigil_models::retrain::train_all(&input)?;
    let json = model.to_json()?;
    let mut out = out;
    std::io::Write::write_all(&mut out, json.as_bytes())
        .with_context(|| format!("{}: cannot write", args.out.display()))?;
    out.commit()?;
    eprintln!(
        "trained on {} -> {} ({})",
        store.path().display(),
        args.out.display(),
        model.summary.notes.join("; ")
    );
    Ok(())
}

pub(crate) fn run(args: TrainArgs) -> anyhow::Result<()> {
    if let Some(dir) = args.store.clone() {
        if !(args.false_events_per_day.is_finite() && args.false_events_per_day > 0.0) {
            anyhow::bail!(
                "--false-events-per-day {} is not a positive number",
                args.false_events_per_day
            );
        }
        return from_store(&args, &dir);
    }
    // Every argument is checked before a byte is read.
    let horizons = Horizons::new(args.short, args.long)?;
    if !(args.false_events_per_day.is_finite() && args.false_events_per_day > 0.0) {
        anyhow::bail!(
            "--false-events-per-day {} is not a positive number",
            args.false_events_per_day
        );
    }
    let mut params = KMeansParams {
        clusters: args.clusters,
        alert_budget: args
            .alert_budget
            .unwrap_or_else(|| window_budget(UNIT_EVENTS_PER_DAY, 1.0, &EventParams::default())),
        short_horizon: args.short,
        ..KMeansParams::default()
    }
    .check()
    .context("checking the training parameters")?;
    let min_windows = params.min_windows();
    if args.max_windows < min_windows {
        anyhow::bail!(
            "--max-windows {} is below the {min_windows} windows training needs",
            args.max_windows
        );
    }
    let mut inputs: Vec<&std::path::Path> = args.csv.iter().map(PathBuf::as_path).collect();
    if let Some(l) = &args.labels {
        inputs.push(l);
    }
    let out = OutputFile::create(&args.out, &inputs)?;
    let labels = match &args.labels {
        Some(p) => read_labels(p)?,
        None => Vec::new(),
    };
    let mut normal_rows: Reservoir<(Vec<f64>, RowLabel)> = Reservoir::new(args.max_windows, 42);
    let mut anomalous_rows: Reservoir<(Vec<f64>, RowLabel)> = Reservoir::new(args.max_windows, 43);
    let mut schema = None;
    let mut dts: Vec<f64> = Vec::new();
    let mut data_rows = 0u64;
    let mut position = 0u64;
    // Per column: whether any row had a value (all-empty inputs are refused).
    let mut seen_value: Vec<bool> = Vec::new();
    let mut columns: Vec<String> = Vec::new();
    for path in &args.csv {
        let mut src = CsvSource::open(path, args.read)?;
        let mut window = Window::new(src.signals(), horizons);
        match &schema {
            None => {
                schema = Some(window.schema().clone());
                columns = src.column_names().to_vec();
                seen_value = vec![false; columns.len()];
            }
            Some(s) if s != window.schema() => {
                return Err(InputError::file(path, "its columns differ from the first --csv file; all files must have the same columns in the same order").into());
            }
            Some(_) => {}
        }
        let mut fv = FeatureVector::new(window.schema());
        let pb = progress(src.size(), &format!("reading {}", path.display()));
        let mut prev = None;
        let mut rows_here = 0u64;
        while src.next_row()? {
            rows_here += 1;
            for (seen, v) in seen_value.iter_mut().zip(&src.values) {
                *seen |= !v.is_nan();
            }
            if let Some(p) = prev
                && dts.len() < 100_000
            {
                dts.push(src.timestamp - p);
            }
            prev = Some(src.timestamp);
            window.push(src.timestamp, &src.values)?;
            if window.is_warm() {
                let label =
                    label_at(&labels, src.timestamp).map(vigil_models::labels::Label::window_label);
                window.extract(&mut fv)?;
                check_features_finite(&fv, window.schema().names(), path, src.line)?;
                if matches!(label, Some(((true, _), _, _))) {
                    anomalous_rows.offer(position, || (fv.values().to_vec(), label));
                } else {
                    normal_rows.offer(position, || (fv.values().to_vec(), label));
                }
                position += 1;
            }
            if rows_here.is_multiple_of(8192) {
                pb.set_position(src.position());
            }
        }
        pb.finish_and_clear();
        if let Some(report) = src.skipped_report() {
            eprintln!("vigil: {report}");
        }
        data_rows += rows_here;
    }
    // Windows labelled anomalous: kept out of the normal-behaviour fit.
    let anomalous_windows = anomalous_rows.seen;
    let windows_read = normal_rows.seen + anomalous_windows;
    if windows_read < min_windows as u64 {
        let files = if args.csv.len() > 1 {
            format!(
                " (across {} --csv files, each needing its own {} rows of history)",
                args.csv.len(),
                args.long
            )
        } else {
            String::new()
        };
        return Err(too_few_rows(
            &args.csv[0],
            data_rows,
            args.long - 1 + min_windows,
            &format!(
                "training needs {min_windows} windows and each window {} rows of history (--long), so it{files}",
                args.long
            ),
        )
        .into());
    }
    if !seen_value.is_empty() && seen_value.iter().all(|s| !s) {
        return Err(InputError::file(
            &args.csv[0],
            "every signal column is empty in every row: there is nothing to learn from",
        )
        .into());
    }
    for (c, seen) in columns.iter().zip(&seen_value) {
        if !seen {
            eprintln!(
                "vigil: column `{c}` has no values in any row; its features are treated as missing"
            );
        }
    }
    let sampled = windows_read > (normal_rows.items.len() + anomalous_rows.items.len()) as u64;
    let (rows, row_labels): (Vec<Vec<f64>>, Vec<RowLabel>) =
        Reservoir::merge_sorted(vec![normal_rows, anomalous_rows])
            .into_iter()
            .unzip();
    let Some(schema) = schema else {
        anyhow::bail!("no --csv file given");
    };
    let tick = vigil::features::time::median_of_intervals(dts);
    params.tick_seconds = tick.unwrap_or(1.0);
    if args.alert_budget.is_none() {
        params.alert_budget = window_budget(
            UNIT_EVENTS_PER_DAY,
            params.tick_seconds,
            &EventParams::default(),
        );
    }
    // The one path from windows to a model, the engine's own (cold start, refits): unlabelled windows
    // in time order, labelled ones beside them.
    let (mut unlabelled, mut labelled) = (Vec::new(), Vec::new());
    for (r, l) in rows.into_iter().zip(row_labels) {
        let features: std::sync::Arc<[f64]> = std::sync::Arc::from(r);
        match l {
            None => unlabelled.push(features),
            Some((label, kind, coarse)) => labelled.push(LabelledWindow {
                features,
                label,
                kind,
                coarse,
            }),
        }
    }
    let job = TrainJob {
        schema: schema.clone(),
        rows: unlabelled,
        params,
        horizons: Horizons::new(args.short, args.long)?,
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64()),
        why: FitReason::Offline,
        reason: format!(
            "vigil train: {} windows from {} file(s)",
            windows_read,
            args.csv.len()
        ),
        labelled: std::sync::Arc::new(labelled),
    };
    let mut file = job.run().context("training the detector")?;
    let trained_on = file.summary.rows;
    let note = file.summary.notes.join("; ");
    file.summary.tick_seconds = tick;
    for l in &labels {
        *file
            .summary
            .labels_by_source
            .entry(l.source.to_string())
            .or_default() += 1;
    }
    if sampled {
        file.summary.notes.push(format!(
            "trained on a uniform sample of {trained_on} of the {windows_read} windows read (--max-windows {})",
            args.max_windows
        ));
    }
    // Alarm rate on the windows meant to be normal (labelled anomalies excluded; the newest 30 % of
    // them were held out of the fit and set the threshold).
    let normal: Vec<&[f64]> = job
        .rows
        .iter()
        .map(|r| &r[..])
        .chain(
            job.labelled
                .iter()
                .filter(|w| !w.label.0)
                .map(|w| &w.features[..]),
        )
        .collect();
    let alarms = normal
        .iter()
        .filter(|r| {
            vigil_models::Detector::score(&file.detector, ndarray::ArrayView1::from(*r)).is_anomaly
        })
        .count();
    file.summary.validation.insert(
        "train_alarm_rate".into(),
        alarms as f64 / normal.len().max(1) as f64,
    );

    let json = file.to_json().map_err(|e| {
        InputError::file(
            &args.csv[0],
            format!("training produced an unusable model ({e}); are some values extreme (beyond about 1e150)?"),
        )
    })?;
    let mut out = out;
    std::io::Write::write_all(&mut out, json.as_bytes())
        .with_context(|| format!("{}: cannot write", args.out.display()))?;
    out.commit()?;
    println!(
        "trained {} on {} windows ({} features, tick {}, {} windows labelled anomalous kept out of the normal fit; {note}) -> {}",
        file.kind,
        trained_on,
        schema.len(),
        tick.map_or("unknown".into(), |t| format!(
            "{}s",
            (t * 1e6).round() / 1e6
        )),
        anomalous_windows,
        args.out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Reservoir;

    #[test]
    fn the_reservoir_is_bounded_uniform_and_in_order() {
        let mut r = Reservoir::new(1000, 42);
        for i in 0..100_000u64 {
            r.offer(i, || i);
        }
        assert_eq!(r.seen, 100_000);
        let kept = Reservoir::merge_sorted(vec![r]);
        assert_eq!(kept.len(), 1000);
        assert!(kept.windows(2).all(|w| w[0] < w[1]), "input order");
        // Uniform: each tenth of the input holds about a tenth of the sample.
        for decile in 0..10u64 {
            let n = kept.iter().filter(|&&i| i / 10_000 == decile).count();
            assert!((60..=140).contains(&n), "decile {decile}: {n}");
        }
        // Fewer items than the cap: all kept.
        let mut small = Reservoir::new(10, 1);
        for i in 0..5u64 {
            small.offer(i, || i);
        }
        assert_eq!(Reservoir::merge_sorted(vec![small]), vec![0, 1, 2, 3, 4]);
    }
}
