//! The offline pipeline shared by `train`, `score` and `eval`: CSV rows → the same feature window the
//! agent uses → a detector.

use std::path::Path;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use vigil_features::{FeatureVector, Horizons};
use vigil_models::{Engine, EngineConfig, InlineTrainer, ModelError, ModelFile, Step};

use crate::input::{CsvSource, InputError, ReadOptions};

/// A byte-based progress bar on stderr (hidden when stderr is not a terminal).
pub fn progress(total: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb.set_message(what.to_owned());
    pb
}

pub use vigil_models::evaluation::quantile;

/// Loads a model; damage is input error (exit 2).
pub fn load_model(path: &Path) -> anyhow::Result<ModelFile> {
    ModelFile::load(path).map_err(|e| anyhow::Error::new(InputError::file(path, e.to_string())))
}

/// Refuses a window whose features overflowed (values so large that their squares are infinite),
/// naming the column, instead of training a model that cannot be saved or scoring garbage.
pub fn check_features_finite(
    fv: &FeatureVector,
    names: &[String],
    file: &Path,
    line: u64,
) -> Result<(), InputError> {
    if let Some(i) = fv.values().iter().position(|v| v.is_infinite()) {
        let feature = names.get(i).map_or("?", String::as_str);
        let column = vigil_models::column_of_feature(feature);
        return Err(InputError {
            file: file.to_owned(),
            line: Some(line),
            column: Some(column),
            message: format!(
                "values this large overflow the window statistics (feature `{feature}` is infinite); \
                 rescale the column (e.g. bytes to GiB) so its values stay below about 1e150"
            ),
        });
    }
    Ok(())
}

/// Too few rows for one window (or for training): names the file and how many rows are needed.
pub fn too_few_rows(path: &Path, rows: u64, needed: usize, what: &str) -> InputError {
    InputError::file(
        path,
        format!("has {rows} data row(s); {what} needs at least {needed} rows"),
    )
}

/// How the engine runs offline: the same settings the agent derives from its builder (`vigil score`
/// and `vigil eval` with no `--model` run the agent's cold start over the file).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct EngineArgs {
    /// Seconds between rows, for the false-alarm budget and rate floors (default: the median interval
    /// of the first 100 rows).
    #[arg(long, value_name = "SECONDS", value_parser = positive)]
    tick_seconds: Option<f64>,
    /// Without --model: windows collected before the first model (the agent's warm-up divided by its
    /// tick; 300 for the default 5 minutes at 1 s).
    #[arg(long, default_value_t = 300, value_name = "WINDOWS")]
    warm_up_windows: usize,
    /// Without --model: ticks between scheduled refits (default one hour of ticks; 0 = never).
    #[arg(long, value_name = "TICKS")]
    refit_every: Option<usize>,
    /// False anomaly events per day: once a day of scores is held, the alarm level is set so that
    /// events open at most this often on the engine's own past (see docs/ARCHITECTURE.md, "The
    /// false-event budget").
    #[arg(long, default_value_t = vigil_models::DEFAULT_FALSE_EVENTS_PER_DAY, value_name = "N", value_parser = positive)]
    false_events_per_day: f64,
}

/// A finite number above zero (a flag's value; refused at parsing, naming the flag, exit 2).
fn positive(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("`{text}` is not a number above zero")),
    }
}

impl EngineArgs {
    /// The flags as given (`null`: derived from the rows), for reports that must say what produced
    /// them.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "tick_seconds": self.tick_seconds,
            "warm_up_windows": self.warm_up_windows,
            "refit_every": self.refit_every,
            "false_events_per_day": self.false_events_per_day,
        })
    }

    /// The settings of a cold-start run over rows `tick` seconds apart.
    pub fn config(&self, tick: f64) -> EngineConfig {
        let tick = self.tick_seconds.unwrap_or(tick);
        EngineConfig::agent(
            tick,
            self.warm_up_windows,
            self.refit_every
                .unwrap_or_else(|| EngineConfig::ticks_in(3600.0, tick)),
            self.false_events_per_day,
        )
    }
}

/// The median interval between the first 100 rows of `csv` (1 s when it cannot tell).
pub fn estimate_tick(csv: &Path, options: ReadOptions) -> Result<f64, InputError> {
    let mut src = CsvSource::open(csv, options)?;
    let mut times = Vec::new();
    while times.len() < TICK_ROWS && src.next_row()? {
        times.push(src.timestamp);
    }
    Ok(median_interval(times))
}

/// Rows the tick is estimated from.
const TICK_ROWS: usize = 101;

/// The median interval between consecutive times (1 s when it cannot tell).
pub fn median_interval(times: impl IntoIterator<Item = f64>) -> f64 {
    vigil_features::time::median_interval(times).unwrap_or(1.0)
}

/// One row as [`drive_csv`] hands it on.
pub struct Row<'a> {
    /// Seconds since the Unix epoch.
    pub timestamp: f64,
    /// The timestamp cell as written.
    pub raw_timestamp: &'a str,
    /// Line of the file (1 is the header).
    pub line: u64,
    /// The row's values, in the order of `signals`.
    pub values: &'a [f64],
    /// The file's columns as signals.
    pub signals: &'a vigil_features::SignalSet,
}

/// How the engine of [`drive_csv`] starts.
pub enum Start {
    /// No model: the agent's cold start, refits and events.
    Cold,
    /// A model file scoring from the first full window, never refitted (`VIGIL_MODEL`, `--model`).
    Loaded(ModelFile),
    /// A model the engine adopts as its own (refitted and adapted like one it trained), with the
    /// labelled windows its refits keep learning from: what a promoted retrain installs.
    Own(ModelFile, Vec<vigil_models::LabelledWindow>),
}

/// The one CSV → engine loop (`score`, `eval`, `bench detect --replay`, `bench feedback`): every row of
/// `csv` into an engine started as `start` says, with the settings `cfg` makes of the rows' tick (the
/// median interval of the first rows, kept in memory: the file is read once, so pipes, FIFOs and
/// process substitution work like files); `each(row, engine, step)` per row. Features that overflow
/// are an error naming the line; with `log`, installs and training failures are reported on stderr as
/// they happen. Returns the rows read.
pub fn drive_csv(
    csv: &Path,
    options: ReadOptions,
    cfg: impl FnOnce(f64) -> anyhow::Result<EngineConfig>,
    start: Start,
    log: bool,
    mut each: impl FnMut(&Row<'_>, &Engine, &Step) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let mut src = CsvSource::open(csv, options)?;
    // The first rows, read ahead to estimate the tick, then fed like the rest.
    let mut ahead: Vec<(f64, String, u64, Vec<f64>)> = Vec::with_capacity(TICK_ROWS);
    while ahead.len() < TICK_ROWS && src.next_row()? {
        ahead.push((
            src.timestamp,
            src.raw_timestamp.clone(),
            src.line,
            src.values.clone(),
        ));
    }
    let cfg = cfg(median_interval(ahead.iter().map(|r| r.0)))?;
    let (model, install) = match start {
        Start::Cold => (None, None),
        Start::Loaded(m) => (Some(m), None),
        Start::Own(m, labelled) => (None, Some((m, labelled))),
    };
    let model_names = model.as_ref().map(|m| m.feature_names.clone());
    let mut engine = Engine::new(
        src.signals(),
        cfg,
        model,
        Box::new(InlineTrainer::default()),
    )
    .map_err(|e| match e {
        ModelError::SchemaMismatch { .. } => anyhow::Error::new(InputError::file(
            csv,
            format!("{e} (the CSV's columns do not match the columns the model was trained on)"),
        )),
        other => anyhow::Error::new(other).context("checking the engine settings"),
    })?;
    if let Some((m, labelled)) = install {
        engine
            .install(m, labelled, true)
            .map_err(|e| InputError::file(csv, format!("{e}")))?;
    }
    let names = model_names.unwrap_or_else(|| engine.schema().names().to_vec());
    let pb = if log {
        progress(src.size(), "scoring")
    } else {
        ProgressBar::hidden()
    };
    let mut n: u64 = 0;
    let mut feed = |engine: &mut Engine, row: &Row<'_>| -> anyhow::Result<()> {
        let step = engine.push(row.timestamp, row.values)?;
        check_features_finite(engine.features(), &names, csv, row.line)?;
        if log
            && step.installed
            && let Some(m) = engine.model()
        {
            eprintln!(
                "vigil: line {}: model installed ({} windows, {} clusters, raw threshold {:.2}; {})",
                row.line,
                m.summary.rows,
                m.detector.centroids.len(),
                m.detector.threshold,
                m.summary.notes.join("; ")
            );
        }
        if log && let Some(e) = &step.train_error {
            eprintln!(
                "vigil: line {}: training failed, the engine goes on: {e}",
                row.line
            );
        }
        each(row, engine, &step)
    };
    for (timestamp, raw, line, values) in &ahead {
        let row = Row {
            timestamp: *timestamp,
            raw_timestamp: raw,
            line: *line,
            values,
            signals: src.signals(),
        };
        feed(&mut engine, &row)?;
        n += 1;
    }
    drop(ahead);
    while src.next_row()? {
        let row = Row {
            timestamp: src.timestamp,
            raw_timestamp: &src.raw_timestamp,
            line: src.line,
            values: &src.values,
            signals: src.signals(),
        };
        feed(&mut engine, &row)?;
        n += 1;
        if n.is_multiple_of(8192) {
            pb.set_position(src.position());
        }
    }
    pb.finish_and_clear();
    if log && let Some(report) = src.skipped_report() {
        eprintln!("vigil: {report}");
    }
    Ok(n)
}

/// Streams `csv` through the engine the agent runs: with `model`, scoring with it from the first full
/// window (never refitted, like `VIGIL_MODEL`); without, the agent's cold start, refits and events.
/// Calls `each(source, step)` per row.
pub fn score_csv(
    model: Option<ModelFile>,
    engine: &EngineArgs,
    csv: &Path,
    options: ReadOptions,
    mut each: impl FnMut(&Row<'_>, &Step) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    // The settings are checked before a byte is read (the tick is only known after the first rows).
    engine
        .config(engine.tick_seconds.unwrap_or(1.0))
        .check()
        .context("checking the engine settings")?;
    let horizons = match &model {
        Some(m) => Horizons::new(m.summary.short_horizon, m.summary.long_horizon)?,
        None => engine.config(1.0).horizons,
    };
    let model_tick = model
        .as_ref()
        .and_then(|m| m.summary.tick_seconds)
        .filter(|t| *t > 0.0);
    let long = horizons.long();
    let start = match model {
        Some(m) => Start::Loaded(m),
        None => Start::Cold,
    };
    let make = |estimated: f64| {
        let mut cfg = engine.config(engine.tick_seconds.unwrap_or(estimated));
        cfg.horizons = horizons;
        if let Some(t) = model_tick {
            cfg.tick_seconds = t;
        }
        Ok(cfg)
    };
    let n = drive_csv(csv, options, make, start, true, |row, _, step| {
        each(row, step)
    })?;
    if n < long as u64 {
        return Err(too_few_rows(
            csv,
            n,
            long,
            &format!("one window of the long horizon ({long} ticks)"),
        )
        .into());
    }
    Ok(())
}
