//! `vigil labels`, `vigil events`, `vigil export`: the local store from the command line (readable
//! while the agent writes it).

use std::path::{Path, PathBuf};

use anyhow::Context;
use vigil::features::time::{format_rfc3339, parse_timestamp};
use vigil_models::{AnomalyKind, OutputFile};
use vigil_store::{LabelQuery, NewLabel, Store, Verdict, Webhook};

use vigil_tool::UsageError;
use vigil_tool::input::InputError;

/// The store directory flag shared by the store commands.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct StoreDir {
    /// The agent's data directory (VIGIL_DATA_DIR).
    #[arg(long = "store", value_name = "DIR", default_value = "vigil-data")]
    pub(crate) dir: PathBuf,
}

/// A time range: RFC 3339 or Unix seconds.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Range {
    /// From this time (RFC 3339 or Unix seconds; default: the beginning).
    #[arg(long, value_name = "TIME")]
    from: Option<String>,
    /// To this time (default: now and beyond).
    #[arg(long, value_name = "TIME")]
    to: Option<String>,
}

impl Range {
    fn bounds(&self) -> anyhow::Result<(f64, f64)> {
        let t = |flag: &str, v: &Option<String>, default: f64| match v {
            None => Ok(default),
            Some(s) => parse_timestamp(s).with_context(|| {
                format!("--{flag} `{s}` is not a time (RFC 3339 or Unix seconds)")
            }),
        };
        let (from, to) = (
            t("from", &self.from, f64::MIN)?,
            t("to", &self.to, f64::MAX)?,
        );
        anyhow::ensure!(from <= to, "--from is after --to");
        Ok((from, to))
    }
}

/// `vigil labels ...`
#[derive(Debug, clap::Args)]
pub(crate) struct LabelsArgs {
    #[command(subcommand)]
    command: LabelsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum LabelsCommand {
    /// Add a human label over an interval.
    Add {
        #[command(flatten)]
        store: StoreDir,
        /// Start (RFC 3339 or Unix seconds).
        #[arg(long)]
        start: String,
        /// End (RFC 3339 or Unix seconds).
        #[arg(long)]
        end: String,
        /// `anomaly` or `normal`.
        #[arg(long)]
        label: String,
        /// The anomaly type (task_leak, scheduler_stall, ...).
        #[arg(long)]
        anomaly_type: Option<String>,
        /// Free text.
        #[arg(long)]
        note: Option<String>,
        /// Confidence, 0 to 1.
        #[arg(long, default_value_t = 0.95)]
        confidence: f64,
        /// Start a new store when `--store` holds none (otherwise a missing store is an error).
        #[arg(long)]
        create: bool,
    },
    /// List labels overlapping a range (JSON lines, one label per line).
    List {
        #[command(flatten)]
        store: StoreDir,
        #[command(flatten)]
        range: Range,
    },
    /// Import labels: a labels CSV (`start,end,label[,anomaly_type,source,confidence]`) or a file of
    /// Alertmanager webhook payloads (one JSON payload per line, as a receiver logs them). All or
    /// nothing: a bad line stores nothing.
    Import {
        #[command(flatten)]
        store: StoreDir,
        /// The file.
        file: PathBuf,
        /// Start a new store when `--store` holds none (otherwise a missing store is an error).
        #[arg(long)]
        create: bool,
    },
}

/// `vigil events`
#[derive(Debug, clap::Args)]
pub(crate) struct EventsArgs {
    #[command(flatten)]
    store: StoreDir,
    #[command(flatten)]
    range: Range,
    /// At most this many.
    #[arg(long, default_value_t = 1000)]
    limit: usize,
    /// Instead of listing events, write the CPU profile kept with this event (gzip'd pprof, for
    /// `go tool pprof`) to `--out`.
    #[arg(long, value_name = "ID", requires = "out")]
    profile: Option<u64>,
    /// Where `--profile` writes: written beside it and renamed when complete; never the store itself.
    #[arg(long, value_name = "FILE", requires = "profile")]
    out: Option<PathBuf>,
}

/// `vigil export`
#[derive(Debug, clap::Args)]
pub(crate) struct ExportArgs {
    #[command(flatten)]
    store: StoreDir,
    #[command(flatten)]
    range: Range,
    /// The CSV to write (`timestamp` + the agent's signal columns, what `vigil train/score/eval` read);
    /// written to a temporary file beside it and renamed when complete.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Also write the labels in the range as a labels CSV here.
    #[arg(long, value_name = "FILE")]
    labels_out: Option<PathBuf>,
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn kind(s: Option<&str>) -> anyhow::Result<Option<AnomalyKind>> {
    match s.map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) => AnomalyKind::parse(t).map(Some).ok_or_else(|| {
            let known: Vec<&str> = AnomalyKind::ALL.iter().map(|k| k.as_str()).collect();
            UsageError(format!(
                "`{t}` is not an anomaly type ({})",
                known.join(", ")
            ))
            .into()
        }),
    }
}

pub(crate) fn labels(args: LabelsArgs) -> anyhow::Result<()> {
    match args.command {
        LabelsCommand::Add {
            store,
            start,
            end,
            label,
            anomaly_type,
            note,
            confidence,
            create,
        } => {
            let t = |flag: &str, s: &str| {
                parse_timestamp(s).ok_or_else(|| {
                    UsageError(format!(
                        "--{flag} `{s}` is not a time (RFC 3339 or Unix seconds)"
                    ))
                })
            };
            let l = NewLabel {
                start: t("start", &start)?,
                end: Some(t("end", &end)?),
                verdict: Verdict::parse(&label).ok_or_else(|| {
                    UsageError(format!("--label `{label}` is not `anomaly` or `normal`"))
                })?,
                anomaly_type: kind(anomaly_type.as_deref())?,
                source: "human".into(),
                confidence,
                note,
                event_id: None,
            };
            let mut s = open_for_writing(&store.dir, create)?;
            let stored = s.add_label(&l, now())?;
            println!("{}", serde_json::to_string(&stored)?);
        }
        LabelsCommand::List { store, range } => {
            let (from, to) = range.bounds()?;
            let s = Store::open_read_only(&store.dir)?;
            for l in s.labels(&LabelQuery {
                from,
                to,
                limit: usize::MAX,
            })? {
                println!("{}", serde_json::to_string(&l)?);
            }
        }
        LabelsCommand::Import {
            store,
            file,
            create,
        } => import(&store.dir, &file, create)?,
    }
    Ok(())
}

/// The largest file `labels import` reads (about 600,000 CSV labels; more is not a labels file).
const MAX_IMPORT_BYTES: u64 = 64 << 20;

/// Opens the store in `dir` for writing; a directory without one is an error unless `create`, so a
/// mistyped `--store` does not start a new, empty store beside the real one.
fn open_for_writing(dir: &Path, create: bool) -> anyhow::Result<Store> {
    if !create && !dir.join(vigil::store::DB_FILE).is_file() {
        return Err(InputError::file(
            dir,
            format!(
                "holds no Vigil store (no {}): check --store (the agent's VIGIL_DATA_DIR), or pass \
                 --create to start a new store there",
                vigil::store::DB_FILE
            ),
        )
        .into());
    }
    Ok(Store::open(dir)?)
}

fn import(dir: &Path, file: &Path, create: bool) -> anyhow::Result<()> {
    use std::io::Read as _;
    let f = std::fs::File::open(file)
        .map_err(|e| InputError::file(file, format!("cannot open: {e}")))?;
    let mut bytes = Vec::new();
    f.take(MAX_IMPORT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| InputError::file(file, format!("cannot read: {e}")))?;
    if bytes.len() as u64 > MAX_IMPORT_BYTES {
        return Err(InputError::file(
            file,
            format!(
                "is larger than {} MiB; a labels file is far smaller: is this the right file?",
                MAX_IMPORT_BYTES >> 20
            ),
        )
        .into());
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| InputError::file(file, "is not UTF-8 text, so not a labels file"))?;
    let first = text.trim_start().chars().next();
    let mut store = open_for_writing(dir, create)?;
    if first == Some('{') {
        // Every payload is checked before anything is stored.
        let mut hooks = Vec::new();
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            // A payload the parser refuses is bad input (exit 2), named by its line.
            hooks.push(Webhook::parse(line.as_bytes()).map_err(|e| InputError {
                file: file.to_owned(),
                line: Some(i as u64 + 1),
                column: None,
                message: e.to_string(),
            })?);
        }
        let (mut opened, mut closed, mut unchanged) = (0, 0, 0);
        for h in &hooks {
            let o =
                store.apply_webhook(h, vigil_store::Confidence::default().alertmanager, now())?;
            opened += o.opened;
            closed += o.closed;
            unchanged += o.unchanged;
        }
        eprintln!(
            "imported {} webhook payloads: {opened} intervals opened, {closed} closed, {unchanged} unchanged",
            hooks.len()
        );
    } else {
        let labels = vigil_tool::labels::read_labels(file)?;
        let new: Vec<NewLabel> = labels
            .iter()
            .map(|l| NewLabel {
                start: l.start,
                end: Some(l.end),
                verdict: if l.anomaly {
                    Verdict::Anomaly
                } else {
                    Verdict::Normal
                },
                anomaly_type: l.kind,
                source: l.source.clone(),
                confidence: l.confidence,
                note: Some(format!("imported from {}", file.display())),
                event_id: None,
            })
            .collect();
        let n = store.add_labels(&new, now())?;
        eprintln!("imported {n} labels from {}", file.display());
    }
    Ok(())
}

pub(crate) fn events(args: EventsArgs) -> anyhow::Result<()> {
    let (from, to) = args.range.bounds()?;
    if let (Some(id), Some(out)) = (args.profile, &args.out) {
        let db = args.store.dir.join(vigil::store::DB_FILE);
        // Checked before anything is read: the store is never the output.
        let mut file = vigil::models::OutputFile::create(out, &[&db])?;
        let s = Store::open_read_only(&args.store.dir)?;
        let Some(p) = s.profile(id)? else {
            anyhow::bail!(
                "{}: no CPU profile is kept for event {id} (`vigil events` shows `\"profile\":true` for those that have one)",
                args.store.dir.display()
            );
        };
        std::io::Write::write_all(&mut file, &p.pprof)?;
        file.commit()?;
        eprintln!(
            "wrote {} ({} bytes: {} samples over {:.1} s at {} Hz); read it with `go tool pprof -top {}`",
            out.display(),
            p.pprof.len(),
            p.samples,
            p.seconds,
            p.hz,
            out.display()
        );
        return Ok(());
    }
    let s = Store::open_read_only(&args.store.dir)?;
    for e in s.events(from, to, args.limit)? {
        println!("{}", serde_json::to_string(&e)?);
    }
    Ok(())
}

/// Writes the stored ticks of `[from, to]` as the CSV `vigil train/score/eval` read (and `--record`
/// writes), and optionally the labels; returns (rows written, ticks of other schemas skipped).
pub(crate) fn export_to(
    store: &Store,
    (from, to): (f64, f64),
    out: &Path,
    labels_out: Option<&Path>,
    inputs: &[&Path],
) -> anyhow::Result<(u64, u64)> {
    // The newest schema in the range decides the columns; older ticks of another schema are skipped.
    let mut newest: Option<String> = None;
    store.for_each_tick(from, to, |t| {
        newest = Some(t.schema.clone());
        true
    })?;
    let Some(hash) = newest else {
        anyhow::bail!(
            "{}: no ticks stored between {} and {}",
            store.path().display(),
            format_rfc3339(from.max(0.0)),
            if to >= f64::MAX {
                "now".to_owned()
            } else {
                format_rfc3339(to)
            }
        );
    };
    let schema = store
        .schema(&hash)?
        .with_context(|| format!("schema {hash} of the stored ticks is not recorded"))?;
    let mut w = csv::Writer::from_writer(OutputFile::create(out, inputs)?);
    let mut header = vec!["timestamp".to_owned()];
    header.extend(schema.columns.iter().cloned());
    w.write_record(&header)?;
    let (mut rows, mut skipped) = (0u64, 0u64);
    let mut err: Option<csv::Error> = None;
    store.for_each_tick(from, to, |t| {
        if t.schema != hash {
            skipped += 1;
            return true;
        }
        let mut rec = Vec::with_capacity(t.sample.len() + 1);
        rec.push(format!("{:.3}", t.t));
        rec.extend(t.sample.iter().map(|v| {
            if v.is_finite() {
                format!("{v}")
            } else {
                String::new()
            }
        }));
        match w.write_record(&rec) {
            Ok(()) => {
                rows += 1;
                true
            }
            Err(e) => {
                err = Some(e);
                false
            }
        }
    })?;
    if let Some(e) = err {
        return Err(e.into());
    }
    let f = w
        .into_inner()
        .map_err(|e| anyhow::anyhow!("{}: cannot write: {}", out.display(), e.error()))?;
    f.commit()?;
    if let Some(path) = labels_out {
        let mut w = csv::Writer::from_writer(OutputFile::create(path, inputs)?);
        w.write_record([
            "start",
            "end",
            "label",
            "anomaly_type",
            "source",
            "confidence",
        ])?;
        let t_now = now();
        for l in store.labels(&LabelQuery {
            from,
            to,
            limit: usize::MAX,
        })? {
            let l = l.to_label(t_now);
            w.write_record([
                format!("{:.3}", l.start),
                format!("{:.3}", l.end),
                if l.anomaly { "anomaly" } else { "normal" }.to_owned(),
                l.kind.map_or(String::new(), |k| k.as_str().to_owned()),
                l.source.to_string(),
                format!("{}", l.confidence),
            ])?;
        }
        let f = w
            .into_inner()
            .map_err(|e| anyhow::anyhow!("{}: cannot write: {}", path.display(), e.error()))?;
        f.commit()?;
    }
    Ok((rows, skipped))
}

pub(crate) fn export(args: ExportArgs) -> anyhow::Result<()> {
    let s = Store::open_read_only(&args.store.dir)?;
    let db = s.path().to_owned();
    let (rows, skipped) = export_to(
        &s,
        args.range.bounds()?,
        &args.out,
        args.labels_out.as_deref(),
        &[db.as_path()],
    )?;
    eprintln!(
        "exported {rows} ticks -> {}{}",
        args.out.display(),
        if skipped > 0 {
            format!(" ({skipped} ticks of an older signal set skipped)")
        } else {
            String::new()
        }
    );
    Ok(())
}
