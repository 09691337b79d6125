//! `vigil bench corpus DIR`: real labelled service metrics as the detection yardstick.
//!
//! Every `DIR/*/` that holds `train.csv`, `test.csv` and `test_labels.csv` (each plain or `.gz`) is one
//! series. The engine runs two ways, and two operator rules run beside it on the same rows:
//!
//! - **agent**: the agent's way — training then test rows as one stream into one engine with no model
//!   (cold start, its own refits and rebaselines), as `vigil score --csv train+test` does;
//! - **offline**: a model trained on the training windows through the engine's training path (what
//!   `vigil train --csv train.csv` writes), then the test rows scored with it as `vigil score --model`
//!   does (a fixed model adapts only by rebaselining after a level shift);
//! - **static_z**: `max over columns |x − mean| / sd` with the training mean and sd;
//! - **rolling_z**: the same against the mean and sd of the previous hour of rows (at least two);
//!
//! each z rule flags a row when its score exceeds the 99.5th percentile of its scores on the training
//! rows (0.5 % of training rows flagged), and its events are the runs of flagged rows.
//!
//! `--offline-hold-back ROWS` trains the offline model on all but the last ROWS training rows and
//! scores those (uncounted) before the test rows: a model trained some time before it is put to use.
//!
//! Only the test rows are scored. Per series and pooled: event recall (labelled segments with at least
//! one row inside an event), point precision (rows inside events that are labelled), Fc1 (their
//! harmonic mean), point F1, false events (events that touch no labelled row) per 3,600 normal rows,
//! the share of normal rows inside events, the median rows from a segment's start to its first row
//! inside an event, and PR-AUC (average precision) of each method's continuous score (the engine's
//! `raw`), which says whether a threshold sweep can trade precision for recall.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::{Value, json};
use vigil::features::{SignalSet, Window};
use vigil_models::{Engine, EngineConfig, InlineTrainer, ModelFile, TrainJob};

use vigil_tool::engine::EngineArgs;
use vigil_tool::input::{CsvSource, InputError, ReadOptions, csv_reader, decoded, parse_timestamp};

/// Flags of `vigil bench corpus`.
#[derive(Debug, clap::Args)]
pub(crate) struct CorpusArgs {
    /// A directory of series, one sub-directory each with `train.csv`, `test.csv` and
    /// `test_labels.csv` (`timestamp,label`, 1 = anomalous row), plain or gzip'd (`.gz`).
    dir: PathBuf,
    /// Write the results as JSON here: `{"settings": {FLAG: VALUE}, "pooled": {METHOD: M}, "series":
    /// {NAME: {METHOD: M}}}`.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Only the series whose directory name is this (repeatable).
    #[arg(long, value_name = "NAME")]
    series: Vec<String>,
    /// The offline way trains on the training rows but the last ROWS, and its model then scores
    /// those (not counted) before the test rows: a model trained some time before it is put to use,
    /// as a model file is in production. 0 (the default): trained on every training row.
    #[arg(long, value_name = "ROWS", default_value_t = 0)]
    offline_hold_back: usize,
    /// Instead of each series' test rows, a joint-move test made from its training rows with this
    /// seed: the first 60 % train, and in the rest, once a day, four columns move together by two of
    /// their robust standard deviations for one to three hours, each staying inside its own training
    /// range; the labels are the moved rows (see `harness/src/joint.rs`).
    #[arg(long, value_name = "SEED")]
    joint_moves: Option<u64>,
    /// The engine's settings for both of its ways, as `vigil score` takes them (the false-event
    /// budget is the operator's precision/recall knob).
    #[command(flatten)]
    engine: EngineArgs,
}

/// The methods, in the order they are reported.
const METHODS: [&str; 4] = ["agent", "offline", "static_z", "rolling_z"];
/// Seconds in the rolling z rule's window: the last hour, as an operator's rule reads it (at least
/// two rows, so there is a spread).
const ROLLING_SECONDS: f64 = 3600.0;
/// Share of training rows the z rules flag.
const Z_RULE_BUDGET: f64 = 0.005;

/// One series of the corpus, in memory.
struct Series {
    name: String,
    signals: SignalSet,
    train: Rows,
    test: Rows,
    labels: Vec<bool>,
}

/// What a method said about the test rows.
struct Outcome {
    in_event: Vec<bool>,
    /// The continuous score per row (`None` before the method scores).
    score: Vec<Option<f64>>,
}

/// Counts that pool across series.
#[derive(Debug, Default, Clone)]
struct Counts {
    segments: usize,
    detected: usize,
    inside: usize,
    inside_labelled: usize,
    labelled: usize,
    normal: usize,
    normal_inside: usize,
    events: usize,
    false_events: usize,
    ttd: Vec<usize>,
    pr_auc: Vec<f64>,
    /// Days the normal rows cover (rows × tick).
    normal_days: f64,
}

pub(crate) fn run(args: CorpusArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let series = discover(&args.dir, &args.series)?;
    let mut per_series: BTreeMap<String, BTreeMap<&'static str, Counts>> = BTreeMap::new();
    let mut pooled: BTreeMap<&'static str, Counts> = BTreeMap::new();
    // The series run on two threads at a time (each series is independent and deterministic).
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 4));
    let results = std::sync::Mutex::new(Vec::new());
    let queue = std::sync::Mutex::new(series.into_iter());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let next = queue.lock().ok().and_then(|mut q| q.next());
                    let Some(dir) = next else { break };
                    let r = measure(&dir, args.offline_hold_back, &args.engine, args.joint_moves);
                    if let Ok(mut out) = results.lock() {
                        out.push((dir, r));
                    }
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_default();
    results.sort_by(|a, b| a.0.cmp(&b.0));
    for (dir, r) in results {
        let Some((name, by)) = r? else {
            vigil_tool::say!(
                "{}: fewer than two columns with a spread, or under a day of rows to test: no joint moves to make; left out",
                dir.display()
            )?;
            continue;
        };
        let entry = per_series.entry(name).or_default();
        for (method, c) in by {
            pooled.entry(method).or_default().add(&c);
            entry.insert(method, c);
        }
    }
    if per_series.is_empty() {
        return Err(InputError::file(
            &args.dir,
            "no series found (expected sub-directories with train.csv, test.csv and test_labels.csv, plain or .gz)",
        )
        .into());
    }
    let mut settings = args.engine.json();
    if let Some(m) = settings.as_object_mut() {
        m.insert("offline_hold_back".into(), json!(args.offline_hold_back));
        m.insert("joint_moves".into(), json!(args.joint_moves));
    }
    let report = json!({
        "settings": settings,
        "pooled": METHODS.iter().map(|m| (m.to_string(), pooled.get(m).map_or(Value::Null, Counts::json))).collect::<serde_json::Map<_, _>>(),
        "series": per_series.iter().map(|(name, by)| (name.clone(), Value::Object(
            METHODS.iter().map(|m| (m.to_string(), by.get(m).map_or(Value::Null, Counts::json))).collect()
        ))).collect::<serde_json::Map<_, _>>(),
    });
    print_table(&report);
    vigil_tool::say!(
        "{} series in {:.1} s",
        per_series.len(),
        started.elapsed().as_secs_f64()
    )?;
    if let Some(path) = &args.json {
        // Every file read is an input the report may not replace.
        let mut inputs: Vec<PathBuf> = vec![args.dir.clone()];
        for dir in discover(&args.dir, &args.series)? {
            inputs.extend(
                ["train", "test", "test_labels"]
                    .iter()
                    .filter_map(|stem| find(&dir, stem)),
            );
        }
        let inputs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
        let mut out = vigil_models::OutputFile::create(path, &inputs)?;
        std::io::Write::write_all(&mut out, serde_json::to_string_pretty(&report)?.as_bytes())
            .with_context(|| format!("{}: cannot write", path.display()))?;
        out.commit()?;
    }
    Ok(())
}

/// A series' name and every method's counts.
type Measured = (String, Vec<(&'static str, Counts)>);

/// One series: every method's counts (`None`: a joint-move test was asked for and this series cannot
/// make one).
fn measure(
    dir: &Path,
    hold_back: usize,
    engine: &EngineArgs,
    joint_moves: Option<u64>,
) -> anyhow::Result<Option<Measured>> {
    let s = load(dir)?;
    let s = match joint_moves {
        None => s,
        Some(seed) => match crate::joint::joint_moves(&s.train, seed, tick_of(&s.train)) {
            Some(j) => Series {
                name: s.name,
                signals: s.signals,
                train: j.train,
                test: j.test,
                labels: j.labels,
            },
            None => return Ok(None),
        },
    };
    let tick = config(&s, engine).tick_seconds;
    let outcomes = [
        ("agent", agent_way(&s, engine)?),
        ("offline", offline_way(&s, hold_back, engine)?),
        ("static_z", static_z(&s)),
        ("rolling_z", rolling_z(&s, tick)),
    ];
    Ok(Some((
        s.name.clone(),
        outcomes
            .into_iter()
            .map(|(m, o)| (m, count(&s.labels, &o, tick)))
            .collect(),
    )))
}

/// `dir/stem.csv` or `dir/stem.csv.gz`.
fn find(dir: &Path, stem: &str) -> Option<PathBuf> {
    [format!("{stem}.csv"), format!("{stem}.csv.gz")]
        .into_iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
}

/// The series directories of `dir` (sorted by name), only those named in `only` when it is not empty.
fn discover(dir: &Path, only: &[String]) -> anyhow::Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| InputError::file(dir, format!("cannot read the directory: {e}")))?;
    let mut out = Vec::new();
    for e in entries {
        let path = e
            .map_err(|e| InputError::file(dir, format!("cannot read the directory: {e}")))?
            .path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !path.is_dir() || (!only.is_empty() && !only.contains(&name)) {
            continue;
        }
        // A directory with some of a series' files but not all is a series that cannot be measured:
        // named, never skipped in silence (a run that says "9 series" for ten loses one unseen).
        let missing: Vec<&str> = ["train", "test", "test_labels"]
            .into_iter()
            .filter(|s| find(&path, s).is_none())
            .collect();
        match missing.len() {
            0 => out.push(path),
            3 => {}
            _ => {
                return Err(InputError::file(
                    &path,
                    format!(
                        "has some of a series' files but no {} (a series needs train.csv, test.csv and test_labels.csv, plain or .gz)",
                        missing
                            .iter()
                            .map(|m| format!("{m}.csv"))
                            .collect::<Vec<_>>()
                            .join(" or ")
                    ),
                )
                .into());
            }
        }
    }
    out.sort();
    for want in only {
        if !out
            .iter()
            .any(|p| p.file_name().is_some_and(|n| n.to_string_lossy() == *want))
        {
            anyhow::bail!(
                "{}: no series `{want}` (a sub-directory with train.csv, test.csv and test_labels.csv)",
                dir.display()
            );
        }
    }
    Ok(out)
}

/// All rows of a CSV (plain or gzip'd), with its signals.
/// Rows of one file: `(timestamp, values)`.
type Rows = Vec<(f64, Vec<f64>)>;

fn read_rows(path: &Path) -> anyhow::Result<(SignalSet, Vec<String>, Rows)> {
    let mut src = CsvSource::open(path, ReadOptions::default())?;
    let mut rows = Vec::new();
    while src.next_row()? {
        rows.push((src.timestamp, src.values.clone()));
    }
    Ok((src.signals().clone(), src.column_names().to_vec(), rows))
}

/// `timestamp,label` rows, keyed by the timestamp's bits.
fn read_labels(path: &Path) -> anyhow::Result<HashMap<u64, bool>> {
    let file = std::fs::File::open(path)
        .map_err(|e| InputError::file(path, format!("cannot open: {e}")))?;
    let mut rdr = csv_reader(decoded(path, file));
    let mut out = HashMap::new();
    for (i, rec) in rdr.records().enumerate() {
        let line = i as u64 + 2;
        let rec =
            rec.map_err(|e| InputError::file(path, format!("line {line}: malformed CSV: {e}")))?;
        let (Some(ts), Some(label)) = (rec.get(0), rec.get(1)) else {
            return Err(
                InputError::file(path, format!("line {line}: expected `timestamp,label`")).into(),
            );
        };
        let Some(t) = parse_timestamp(ts.trim()) else {
            return Err(
                InputError::file(path, format!("line {line}: `{ts}` is not a timestamp")).into(),
            );
        };
        let anomalous = match label.trim() {
            "1" | "1.0" | "true" => true,
            "0" | "0.0" | "false" => false,
            other => {
                return Err(InputError::file(
                    path,
                    format!("line {line}: label `{other}` is not 0 or 1"),
                )
                .into());
            }
        };
        out.insert(t.to_bits(), anomalous);
    }
    Ok(out)
}

fn load(dir: &Path) -> anyhow::Result<Series> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let path =
        |stem: &str| find(dir, stem).with_context(|| format!("{}: no {stem}.csv", dir.display()));
    let (signals, columns, train) = read_rows(&path("train")?)?;
    let test_path = path("test")?;
    let (_, test_columns, test) = read_rows(&test_path)?;
    if test_columns != columns {
        return Err(InputError::file(&test_path, "its columns differ from train.csv's").into());
    }
    if let (Some(last), Some(first)) = (train.last(), test.first())
        && first.0 <= last.0
    {
        return Err(InputError::file(
            &test_path,
            "its first timestamp is not after train.csv's last: the test rows must continue the training rows",
        )
        .into());
    }
    let labels_path = path("test_labels")?;
    let by_time = read_labels(&labels_path)?;
    let labels = test
        .iter()
        .map(|(t, _)| {
            by_time.get(&t.to_bits()).copied().ok_or_else(|| {
                InputError::file(&labels_path, format!("no label for the test row at {t}"))
            })
        })
        .collect::<Result<Vec<bool>, _>>()?;
    Ok(Series {
        name,
        signals,
        train,
        test,
        labels,
    })
}

/// The median interval between training rows.
fn tick_of(rows: &[(f64, Vec<f64>)]) -> f64 {
    vigil_tool::engine::median_interval(rows.iter().map(|r| r.0))
}

/// The engine settings `vigil score` derives for rows of this series with these flags.
fn config(s: &Series, engine: &EngineArgs) -> EngineConfig {
    engine.config(tick_of(&s.train))
}

/// Records one test row's step.
fn record(o: &mut Outcome, step: &vigil_models::Step) {
    o.in_event.push(step.in_event);
    o.score.push(step.score.as_ref().map(|s| s.raw));
}

fn empty_outcome(n: usize) -> Outcome {
    Outcome {
        in_event: Vec::with_capacity(n),
        score: Vec::with_capacity(n),
    }
}

/// Training then test rows through one engine with no model.
fn agent_way(s: &Series, engine: &EngineArgs) -> anyhow::Result<Outcome> {
    run_engine(s, config(s, engine), None, &s.train)
}

/// One engine (with `model`, or none: it trains its own) fed the `warm` rows, then the test rows,
/// whose verdicts are the outcome.
fn run_engine(
    s: &Series,
    cfg: EngineConfig,
    model: Option<ModelFile>,
    warm: &[(f64, Vec<f64>)],
) -> anyhow::Result<Outcome> {
    let mut engine = Engine::new(&s.signals, cfg, model, Box::new(InlineTrainer::default()))?;
    for (t, row) in warm {
        engine.push(*t, row)?;
    }
    let mut o = empty_outcome(s.test.len());
    for (t, row) in &s.test {
        let step = engine.push(*t, row)?;
        record(&mut o, &step);
    }
    Ok(o)
}

/// A model from the training windows (all but the last `hold_back` training rows), then the held
/// back rows and the test rows scored with it (only the test rows are counted).
fn offline_way(s: &Series, hold_back: usize, engine: &EngineArgs) -> anyhow::Result<Outcome> {
    let cfg = config(s, engine);
    let mut window = Window::new(&s.signals, cfg.horizons);
    let mut fv = vigil::features::FeatureVector::new(window.schema());
    let Some(fit_rows) = s.train.len().checked_sub(hold_back).filter(|&n| n > 0) else {
        return Err(InputError::file(
            Path::new(&s.name),
            format!(
                "--offline-hold-back {hold_back} leaves no training rows ({} in train.csv); hold back fewer rows",
                s.train.len()
            ),
        )
        .into());
    };
    let (fit, held) = s.train.split_at(fit_rows);
    let mut rows = Vec::with_capacity(fit.len());
    for (t, row) in fit {
        window.push(*t, row)?;
        if window.is_warm() {
            window.extract(&mut fv)?;
            rows.push(std::sync::Arc::from(fv.values()));
        }
    }
    let job = TrainJob {
        schema: window.schema().clone(),
        rows,
        params: cfg.params(),
        horizons: cfg.horizons,
        created: fit.last().map_or(0.0, |r| r.0),
        why: vigil_models::FitReason::Offline,
        reason: format!("vigil bench corpus: {} training rows", fit.len()),
        labelled: std::sync::Arc::new(Vec::new()),
    };
    let model = job
        .run()
        .with_context(|| format!("{}: training on train.csv", s.name))?;
    run_engine(s, cfg, Some(model), held)
}

/// `max over columns |x − mean| / sd` against each column's `(mean, sd)`; columns with no spread
/// (or a missing value) do not count.
fn max_z(row: &[f64], stats: &[(f64, f64)]) -> f64 {
    row.iter()
        .zip(stats)
        .filter(|(x, (_, sd))| x.is_finite() && *sd > 0.0 && sd.is_finite())
        .map(|(x, (m, sd))| (x - m).abs() / sd)
        .fold(0.0, f64::max)
}

fn mean_sd<'a>(values: impl Iterator<Item = &'a f64>) -> (f64, f64) {
    let (mut n, mut sum, mut sq) = (0.0, 0.0, 0.0);
    for v in values.filter(|v| v.is_finite()) {
        n += 1.0;
        sum += v;
        sq += v * v;
    }
    if n == 0.0 {
        return (0.0, 0.0);
    }
    let mean = sum / n;
    let var = (sq / n - mean * mean).max(0.0);
    // Rounding leaves a tiny variance on constant columns: below 1e-9 of the level it is none.
    let sd = var.sqrt();
    (
        mean,
        if sd <= 1e-9 * mean.abs().max(f64::MIN_POSITIVE) {
            0.0
        } else {
            sd
        },
    )
}

/// The 99.5th percentile of the training scores, and the test rows flagged above it.
fn z_rule(train_scores: Vec<f64>, test_scores: Vec<f64>) -> Outcome {
    let mut sorted: Vec<f64> = train_scores.into_iter().filter(|v| v.is_finite()).collect();
    sorted.sort_unstable_by(f64::total_cmp);
    let threshold = vigil_tool::engine::quantile(&sorted, 1.0 - Z_RULE_BUDGET);
    Outcome {
        in_event: test_scores.iter().map(|z| *z > threshold).collect(),
        score: test_scores.into_iter().map(Some).collect(),
    }
}

fn static_z(s: &Series) -> Outcome {
    let width = s.signals.len();
    let stats: Vec<(f64, f64)> = (0..width)
        .map(|c| mean_sd(s.train.iter().map(|r| &r.1[c])))
        .collect();
    z_rule(
        s.train.iter().map(|r| max_z(&r.1, &stats)).collect(),
        s.test.iter().map(|r| max_z(&r.1, &stats)).collect(),
    )
}

fn rolling_z(s: &Series, tick: f64) -> Outcome {
    let rows = ((ROLLING_SECONDS / tick).round() as usize).max(2);
    let width = s.signals.len();
    let all: Vec<&Vec<f64>> = s.train.iter().chain(&s.test).map(|r| &r.1).collect();
    let scores: Vec<f64> = (0..all.len())
        .map(|i| {
            if i < rows {
                return f64::NAN;
            }
            let stats: Vec<(f64, f64)> = (0..width)
                .map(|c| mean_sd(all[i - rows..i].iter().map(|r| &r[c])))
                .collect();
            max_z(all[i], &stats)
        })
        .collect();
    let (train, test) = scores.split_at(s.train.len());
    z_rule(train.to_vec(), test.to_vec())
}

/// Runs of `true`: `(start, end)` with `end` exclusive.
fn runs(flags: &[bool]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, f) in flags.iter().chain(std::iter::once(&false)).enumerate() {
        match (start, *f) {
            (None, true) => start = Some(i),
            (Some(s), false) => {
                out.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    out
}

/// Average precision of `score` against `labels` (the one PR-AUC of the gate and `vigil eval`: ties
/// ranked together; rows without a score rank last and count only in the recall's denominator).
/// `None` when there is no labelled row or no score.
fn average_precision(labels: &[bool], score: &[Option<f64>]) -> Option<f64> {
    let positives = labels.iter().filter(|l| **l).count();
    let scored: Vec<(f64, bool)> = score
        .iter()
        .zip(labels)
        .filter_map(|(s, l)| s.map(|v| (v, *l)))
        .collect();
    vigil_models::explain::average_precision_over(&scored, positives)
}

/// A method's counts over one series whose rows are `tick` seconds apart.
fn count(labels: &[bool], o: &Outcome, tick: f64) -> Counts {
    let segments = runs(labels);
    let events = runs(&o.in_event);
    let normal = labels.iter().filter(|l| !**l).count();
    let mut c = Counts {
        segments: segments.len(),
        labelled: labels.iter().filter(|l| **l).count(),
        normal,
        // Days of normal data: what false events per day are counted against.
        normal_days: normal as f64 * tick / 86_400.0,
        events: events.len(),
        ..Counts::default()
    };
    for (a, b) in &segments {
        if let Some(first) = (*a..*b).find(|&i| o.in_event[i]) {
            c.detected += 1;
            c.ttd.push(first - a);
        }
    }
    for (inside, label) in o.in_event.iter().zip(labels) {
        if *inside {
            c.inside += 1;
            if *label {
                c.inside_labelled += 1;
            } else {
                c.normal_inside += 1;
            }
        }
    }
    c.false_events = events
        .iter()
        .filter(|(a, b)| !labels[*a..*b].iter().any(|l| *l))
        .count();
    c.pr_auc.extend(average_precision(labels, &o.score));
    c
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

fn f1(p: f64, r: f64) -> f64 {
    if p + r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    }
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.segments += o.segments;
        self.detected += o.detected;
        self.inside += o.inside;
        self.inside_labelled += o.inside_labelled;
        self.labelled += o.labelled;
        self.normal += o.normal;
        self.normal_inside += o.normal_inside;
        self.events += o.events;
        self.false_events += o.false_events;
        self.ttd.extend_from_slice(&o.ttd);
        self.pr_auc.extend_from_slice(&o.pr_auc);
        self.normal_days += o.normal_days;
    }

    fn json(&self) -> Value {
        let recall = ratio(self.detected, self.segments);
        let precision = ratio(self.inside_labelled, self.inside);
        let point_recall = ratio(self.inside_labelled, self.labelled);
        let mut ttd = self.ttd.clone();
        ttd.sort_unstable();
        let round = |v: f64| (v * 1e4).round() / 1e4;
        json!({
            "fc1": round(f1(precision, recall)),
            "event_recall": round(recall),
            "point_precision": round(precision),
            "point_f1": round(f1(precision, point_recall)),
            "false_events_per_3600": round(self.false_events as f64 * 3600.0 / self.normal.max(1) as f64),
            "false_events_per_day": if self.normal_days > 0.0 { json!(round(self.false_events as f64 / self.normal_days)) } else { Value::Null },
            "normal_inside_share": round(ratio(self.normal_inside, self.normal)),
            "ttd_median_ticks": ttd.get(ttd.len().saturating_sub(1) / 2).copied(),
            // Pooled: the mean of the series' PR-AUC (each series' scores are on its own scale).
            "pr_auc": if self.pr_auc.is_empty() { Value::Null } else { json!(round(self.pr_auc.iter().sum::<f64>() / self.pr_auc.len() as f64)) },
            "segments": self.segments,
            "labelled_rows": self.labelled,
            "events": self.events,
            "false_events": self.false_events,
        })
    }
}

fn print_table(report: &Value) {
    let cell = |m: &Value, k: &str| match &m[k] {
        Value::Null => "-".to_owned(),
        v => v
            .as_f64()
            .map_or_else(|| v.to_string(), |f| format!("{f:.3}")),
    };
    let header = "method     fc1    recall  prec   pointF1 fe/day  normal_in ttd  pr_auc";
    let line = |name: &str, m: &Value| {
        format!(
            "{name:<10} {:<6} {:<7} {:<6} {:<7} {:<7} {:<9} {:<4} {}",
            cell(m, "fc1"),
            cell(m, "event_recall"),
            cell(m, "point_precision"),
            cell(m, "point_f1"),
            cell(m, "false_events_per_day"),
            cell(m, "normal_inside_share"),
            match &m["ttd_median_ticks"] {
                Value::Null => "-".to_owned(),
                v => v.to_string(),
            },
            cell(m, "pr_auc"),
        )
    };
    let _ = vigil_tool::say!("pooled");
    let _ = vigil_tool::say!("{header}");
    for m in METHODS {
        let _ = vigil_tool::say!("{}", line(m, &report["pooled"][m]));
    }
    let _ = vigil_tool::say!("\nper series: fc1 / normal_inside_share");
    let _ = vigil_tool::say!(
        "series     {}",
        METHODS.map(|m| format!("{m:<16}")).join("")
    );
    if let Some(series) = report["series"].as_object() {
        for (name, by) in series {
            let cells = METHODS.map(|m| {
                format!(
                    "{:<16}",
                    format!(
                        "{} / {}",
                        cell(&by[m], "fc1"),
                        cell(&by[m], "normal_inside_share")
                    )
                )
            });
            let _ = vigil_tool::say!("{name:<10} {}", cells.join(""));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_and_counts() {
        assert_eq!(
            runs(&[false, true, true, false, true]),
            vec![(1, 3), (4, 5)]
        );
        // Two segments; one event covers half of the first, one false event.
        let labels = [
            false, true, true, true, true, false, false, true, false, false,
        ];
        let o = Outcome {
            in_event: vec![
                false, false, false, true, true, true, false, false, true, false,
            ],
            score: vec![None; 10],
        };
        let c = count(&labels, &o, 300.0);
        assert_eq!((c.segments, c.detected, c.ttd.clone()), (2, 1, vec![2]));
        assert_eq!((c.inside, c.inside_labelled, c.normal_inside), (4, 2, 2));
        assert_eq!((c.events, c.false_events), (2, 1));
        let j = c.json();
        assert_eq!(j["event_recall"], 0.5);
        assert_eq!(j["point_precision"], 0.5);
        assert_eq!(j["fc1"], 0.5);
        assert_eq!(j["pr_auc"], Value::Null);
    }

    #[test]
    fn the_gate_and_the_corpus_agree_on_fc1_pr_auc_and_false_events() {
        // 40 rows five minutes apart: three labelled segments, events that catch two of them (one
        // early, one late), one false event, and scores with ties (plateaus at 0 and at 0.7).
        let tick = 300.0;
        let labels: Vec<bool> = (0..40)
            .map(|i| (5..9).contains(&i) || (15..20).contains(&i) || (30..33).contains(&i))
            .collect();
        let in_event: Vec<bool> = (0..40)
            .map(|i| (4..7).contains(&i) || (18..22).contains(&i) || (25..27).contains(&i))
            .collect();
        let score: Vec<Option<f64>> = (0..40)
            .map(|i| {
                Some(match i {
                    4..=7 | 18..=21 => 0.7,
                    25 | 26 | 31 => 0.6,
                    15..=17 => 0.3,
                    i if i % 3 == 0 => 0.1,
                    _ => 0.0,
                })
            })
            .collect();
        let c = count(
            &labels,
            &Outcome {
                in_event: in_event.clone(),
                score: score.clone(),
            },
            tick,
        )
        .json();
        let t = |i: usize| 1.7e9 + i as f64 * tick;
        let windows: Vec<(f64, f64, bool)> = (0..40)
            .map(|i| (t(i), score[i].unwrap_or(0.0), in_event[i]))
            .collect();
        let gate_labels: Vec<vigil_models::labels::Label> = runs(&labels)
            .into_iter()
            .map(|(a, b)| vigil_models::labels::Label {
                start: t(a),
                end: t(b - 1),
                anomaly: true,
                source: vigil_models::labels::LabelSource::Human,
                confidence: 0.95,
                kind: None,
            })
            .collect();
        let g = vigil_models::evaluation::metrics(&windows, &gate_labels, tick);
        let round = |v: f64| (v * 1e4).round() / 1e4;
        assert_eq!(c["fc1"].as_f64(), Some(round(g.composite_f1)), "{c}");
        assert_eq!(c["event_recall"].as_f64(), Some(round(g.event_recall)));
        assert_eq!(
            c["point_precision"].as_f64(),
            Some(round(g.point_precision))
        );
        assert_eq!(c["pr_auc"].as_f64(), Some(round(g.pr_auc)), "{c}");
        assert_eq!(c["false_events"].as_u64(), Some(g.false_alarms as u64));
    }

    #[test]
    fn average_precision_ranks_and_ties() {
        let labels = [true, false, true, false];
        // Perfect ranking.
        let s = [Some(4.0), Some(1.0), Some(3.0), Some(2.0)];
        assert_eq!(average_precision(&labels, &s), Some(1.0));
        // One plateau over everything: precision is the base rate.
        let flat = [Some(1.0); 4];
        assert_eq!(average_precision(&labels, &flat), Some(0.5));
        // Unscored positives cap recall.
        let partial = [Some(1.0), None, None, None];
        assert_eq!(average_precision(&labels, &partial), Some(0.5));
    }
}
