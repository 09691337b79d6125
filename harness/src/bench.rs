//! `vigil bench detect`: the detection yardstick. Real faults are injected into a real server under
//! varying load; the detector under test is the one the agent runs (its cold start included), and the
//! classic static rules are measured on the same ticks in the same run.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};
use vigil::models::AnomalyKind;

use crate::scenes::faults::all_faults;
use crate::scenes::record::Recorder;
use crate::scenes::{Scene, SceneConfig, Tick, WARM_UP_WINDOWS, bench_engine};
use vigil_tool::engine::quantile;

/// Flags of `vigil bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: BenchCommand,
}

#[derive(Debug, clap::Subcommand)]
enum BenchCommand {
    /// Inject every fault into a real server under varying load and measure detection, time to
    /// detect, type accuracy and false alarms, beside the classic static rules.
    Detect(DetectArgs),
    /// Real labelled service metrics: every DIR/*/ with train.csv, test.csv and test_labels.csv (plain
    /// or .gz) run through the engine the agent's way and the offline way, beside a static and a
    /// rolling z rule: event recall, point precision, Fc1, false events, normal time inside events,
    /// time to detect and PR-AUC of the score.
    Corpus(crate::corpus::CorpusArgs),
    /// Does feedback work? On recorded fault runs, one fault type is called benign by people; after the
    /// agent's retrain on their verdicts, the last run is replayed with the model before and after.
    Feedback(crate::feedback::FeedbackArgs),
    /// The GPU half on a real NVIDIA GPU: NVML against nvidia-smi with device memory this process
    /// allocates (device and per-process), the NVML tick's cost, and an agent whose GPU stops answering
    /// mid-run. Needs the NVIDIA driver (libcuda.so.1, libnvidia-ml.so.1) and nvidia-smi.
    Gpu(crate::gpucheck::GpuArgs),
    /// The demo server under a fixed closed-loop load, agent off and on in alternating rounds:
    /// throughput and p50/p99 latency ratios with their spread.
    Overhead(crate::overhead::OverheadArgs),
    /// What the agent adds to a host's resident memory: the demo server under load without the agent,
    /// then with it (store on, event profiles on, a cold start) and a CPU profile taken meanwhile.
    Memory(crate::memory::MemoryArgs),
    /// Does the agent's resident memory stay flat over a long run? The demo server under light load
    /// with the agent at a fast tick (store, event profiles, refits on) for 100,000 ticks, scraped
    /// every second: memory when the history is full, at each quarter after, and the slope.
    Soak(crate::soak::SoakArgs),
}

/// Flags of `vigil bench detect`.
#[derive(Debug, clap::Args)]
pub(crate) struct DetectArgs {
    /// One run of each fault and one fault-free run (about 3 minutes) instead of three of each.
    #[arg(long)]
    quick: bool,
    /// Write the results as JSON here.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write each run's per-tick signals and injected-fault labels as CSV into this directory.
    #[arg(long, value_name = "DIR")]
    record: Option<PathBuf>,
    /// Seed of the first run (load shape, model weights, fault order).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Agent tick, milliseconds (time-compressed: every duration below is in ticks).
    #[arg(long, default_value_t = 100, value_name = "MS")]
    tick_ms: u64,
    /// Instead of running scenes, replay the recordings in this directory (written by --record)
    /// through the engine the agent runs, with the same settings: the same input for every detector
    /// change, in seconds instead of minutes.
    #[arg(long, value_name = "DIR", conflicts_with = "record")]
    replay: Option<PathBuf>,
}

/// Ticks of quiet before each fault, of each fault, and of grace after it for a detection to count.
const QUIET_TICKS: u64 = 30;
const FAULT_TICKS: u64 = 40;
const GRACE_TICKS: u64 = 10;
/// Give up when scoring has not started after this many ticks.
const MAX_WARM_UP_TICKS: u64 = 2_000;

/// `vigil bench ...`: runs the chosen yardstick and prints (and with `--json` writes) its results.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.what {
        BenchCommand::Detect(d) => detect(d),
        BenchCommand::Corpus(c) => crate::corpus::run(c),
        BenchCommand::Overhead(o) => crate::overhead::run(o),
        BenchCommand::Memory(m) => crate::memory::run(m),
        BenchCommand::Soak(s) => crate::soak::run(s),
        BenchCommand::Feedback(f) => crate::feedback::run(f),
        BenchCommand::Gpu(g) => crate::gpucheck::run(g),
    }
}

/// One tick of a run, reduced to what scoring needs.
#[derive(Debug, Clone)]
struct Row {
    /// The type of the anomaly event that opened on this tick.
    opened: Option<AnomalyKind>,
    /// The open event's new type when it changed on this tick (a stronger peak of another type).
    retyped: Option<AnomalyKind>,
    baseline: [bool; 4],
    fault: Option<AnomalyKind>,
}

/// Per-tick values of the signals the static rules read.
#[derive(Debug, Default, Clone)]
struct History {
    alive: Vec<f64>,
    p99: Vec<f64>,
    errors: Vec<f64>,
    rss: Vec<f64>,
}

/// The static rules, each its own alert.
const RULES: [AnomalyKind; 4] = [
    AnomalyKind::TaskLeak,
    AnomalyKind::SchedulerStall,
    AnomalyKind::ErrorBurst,
    AnomalyKind::MemoryLeak,
];

/// The classic static rules, as SREs write them: task growth > 15/s (over one second), p99 scheduling
/// delay > 5 ms, error ratio > 5 %, RSS growth > 10 %/min (extrapolated from the last 10 s). Returns
/// which of [`RULES`] fire on the latest tick.
fn baseline(h: &History, tick_s: f64) -> [bool; 4] {
    let mut fired = [false; 4];
    let Some(t) = h.alive.len().checked_sub(1) else {
        return fired;
    };
    let back = |secs: f64| ((secs / tick_s).ceil() as usize).max(1);
    let k = back(1.0);
    if t >= k {
        let growth = (h.alive[t] - h.alive[t - k]) / (k as f64 * tick_s);
        fired[0] = growth > 15.0;
    }
    fired[1] = h.p99[t] > 0.005;
    fired[2] = h.errors[t] > 0.05;
    let m = back(10.0);
    if t >= m && h.rss[t - m] > 0.0 {
        let per_min = (h.rss[t] - h.rss[t - m]) / h.rss[t - m] * (60.0 / (m as f64 * tick_s));
        fired[3] = per_min > 0.10;
    }
    fired
}

/// Runs one scene: warm-up until the agent scores, then `schedule` (fault or quiet, ticks).
fn run_scene(
    cfg: &SceneConfig,
    schedule: &[(Option<AnomalyKind>, u64)],
    record: Option<&mut Recorder>,
    label: &str,
) -> anyhow::Result<Vec<Row>> {
    let mut scene = Scene::start(cfg)?;
    eprintln!("  {label}: {}", scene.gpu_note);
    let tick_s = scene.tick.as_secs_f64();
    let mut history = History::default();
    let mut record = record;
    let mut observe = |t: &Tick, history: &mut History| -> anyhow::Result<[bool; 4]> {
        let g = |n: &str| t.sample.get(n).unwrap_or(f64::NAN);
        history.alive.push(g("tokio_alive_tasks"));
        history.p99.push(g("sched_latency_p99_seconds"));
        history.errors.push(g("inference_error_ratio"));
        history.rss.push(g("process_resident_memory_bytes"));
        if let Some(r) = record.as_deref_mut() {
            r.push(t)?;
        }
        Ok(baseline(history, tick_s))
    };
    let mut warm = 0;
    loop {
        let t = scene
            .next_tick()
            .context("the agent stopped during the warm-up")?;
        observe(&t, &mut history)?;
        if t.score.is_some() {
            break;
        }
        warm += 1;
        anyhow::ensure!(
            warm < MAX_WARM_UP_TICKS,
            "{label}: the agent did not start scoring within {MAX_WARM_UP_TICKS} ticks"
        );
    }
    eprintln!("  {label}: scoring after {warm} warm-up ticks");
    let mut rows = Vec::new();
    for (fault, ticks) in schedule {
        match fault {
            Some(k) => scene.inject(*k)?,
            None => scene.clear_fault(),
        }
        for _ in 0..*ticks {
            let t = scene.next_tick().context("the agent stopped")?;
            let base = observe(&t, &mut history)?;
            rows.push(Row {
                opened: t.opened.as_ref().map(|e| e.anomaly_type),
                retyped: t.retyped.as_ref().map(|e| e.anomaly_type),
                baseline: base,
                fault: t.fault,
            });
        }
    }
    scene.clear_fault();
    Ok(rows)
}

/// Onsets (index, type) of the detector's events: the type the event opened with (`at_open`), or
/// its last type (it follows the event's peak window).
fn event_onsets(rows: &[Row], at_open: bool) -> Vec<(usize, AnomalyKind)> {
    let mut out: Vec<(usize, AnomalyKind)> = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        if let Some(k) = r.opened {
            out.push((i, k));
        } else if let (Some(k), Some(last), false) = (r.retyped, out.last_mut(), at_open) {
            last.1 = k;
        }
    }
    out
}

/// Onsets (index, type) of alarm events: a flagged tick after an unflagged one.
fn onsets(flags: &[(bool, AnomalyKind)]) -> Vec<(usize, AnomalyKind)> {
    let mut out = Vec::new();
    let mut prev = false;
    for (i, (f, k)) in flags.iter().enumerate() {
        if *f && !prev {
            out.push((i, *k));
        }
        prev = *f;
    }
    out
}

/// Alarm onsets of the static rules, each rule its own alert stream, in time order.
fn rule_onsets(rows: &[Row]) -> Vec<(usize, AnomalyKind)> {
    let mut out = Vec::new();
    for (r, kind) in RULES.iter().enumerate() {
        let flags: Vec<(bool, AnomalyKind)> =
            rows.iter().map(|row| (row.baseline[r], *kind)).collect();
        out.extend(onsets(&flags));
    }
    out.sort_by_key(|(i, _)| *i);
    out
}

/// Detection outcomes of one fault instance: `Some((ticks to detect, type right))` or `None`.
fn detection(
    onsets: &[(usize, AnomalyKind)],
    start: usize,
    end: usize,
    kind: AnomalyKind,
) -> Option<(usize, bool)> {
    let last = end + GRACE_TICKS as usize;
    let inside: Vec<&(usize, AnomalyKind)> = onsets
        .iter()
        .filter(|(i, _)| *i >= start && *i <= last)
        .collect();
    let first = inside.first()?;
    // Typed right when an alarm of the fault's type starts in the window: the detector raises one
    // alarm at a time, the static rules are separate alerts and any of them may be the right one.
    let right = inside.iter().any(|(_, k)| *k == kind);
    Some((first.0 - start, right))
}

#[derive(Debug, Default)]
struct Tally {
    runs: usize,
    detected: usize,
    typed_right: usize,
    /// Typed right by the type the event opened with (what a page at onset says).
    typed_right_at_open: usize,
    ttd: Vec<f64>,
}

impl Tally {
    fn json(&mut self) -> Value {
        self.ttd.sort_unstable_by(f64::total_cmp);
        json!({
            "runs": self.runs,
            "detection_rate": self.detected as f64 / self.runs.max(1) as f64,
            // NaN (nothing detected) is written as null.
            "ttd_median_ticks": quantile(&self.ttd, 0.5),
            "ttd_p95_ticks": quantile(&self.ttd, 0.95),
            "type_accuracy": if self.detected > 0 { json!(self.typed_right as f64 / self.detected as f64) } else { Value::Null },
            "type_accuracy_at_open": if self.detected > 0 { json!(self.typed_right_at_open as f64 / self.detected as f64) } else { Value::Null },
        })
    }
}

/// Fault instances in `rows`: (kind, first tick, last tick).
fn instances(rows: &[Row]) -> Vec<(AnomalyKind, usize, usize)> {
    let mut out: Vec<(AnomalyKind, usize, usize)> = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        match (r.fault, out.last_mut()) {
            (Some(k), Some(last)) if last.0 == k && last.2 + 1 == i => last.2 = i,
            (Some(k), _) => out.push((k, i, i)),
            (None, _) => {}
        }
    }
    out
}

/// One measured run: its name, its rows after the warm-up, and whether faults were injected.
struct Run {
    rows: Vec<Row>,
    fault_free: bool,
}

/// Runs the scenes live (optionally recording them).
fn live_runs(args: &DetectArgs, tick: Duration) -> anyhow::Result<Vec<Run>> {
    let runs = if args.quick { 1 } else { 3 };
    let fault_free_ticks: u64 = if args.quick { 600 } else { 1500 };
    let faults = all_faults();
    let mut out = Vec::new();
    for run in 0..runs {
        let seed = args.seed + run as u64;
        let cfg = SceneConfig {
            tick: Some(tick),
            warm_up: Some(tick * WARM_UP_WINDOWS),
            seed,
            rps: 200.0,
            workers: 2,
            // Any free port: benchmark runs must not collide with a running agent.
            listen: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
            model: None,
            from_env: false,
            // VIGIL_GPU=nvml: the GPU leak is real device memory, read back through NVML.
            real_gpu: crate::scenes::real_gpu_asked(),
        };
        // Faults in a seeded rotation, each after a quiet stretch.
        let mut schedule = Vec::new();
        for i in 0..faults.len() {
            let k = faults[(i + run) % faults.len()];
            schedule.push((None, QUIET_TICKS));
            schedule.push((Some(k), FAULT_TICKS));
        }
        schedule.push((None, QUIET_TICKS));
        let ff_cfg = SceneConfig {
            seed: seed + 100,
            ..cfg.clone()
        };
        for (name, cfg, schedule, fault_free) in [
            (format!("faults-seed{seed}"), cfg, schedule, false),
            (
                format!("fault-free-seed{}", seed + 100),
                ff_cfg,
                vec![(None, fault_free_ticks)],
                true,
            ),
        ] {
            eprintln!(
                "vigil bench detect: {name} ({} ticks of {} ms)",
                schedule.iter().map(|s| s.1).sum::<u64>(),
                args.tick_ms
            );
            let mut rec = match &args.record {
                Some(dir) => Some(Recorder::create(dir, &name)?),
                None => None,
            };
            let rows = run_scene(&cfg, &schedule, rec.as_mut(), &name)?;
            if let Some(r) = rec {
                r.finish()?;
            }
            out.push(Run { rows, fault_free });
        }
    }
    Ok(out)
}

/// Replays every `NAME.csv` with a `NAME.labels.csv` beside it in `dir` through the engine, with the
/// settings the scenes' agents ran with (warm-up, refits, budget) at the recording's own tick.
fn replay_runs(dir: &std::path::Path) -> anyhow::Result<Vec<Run>> {
    use vigil_tool::input::ReadOptions;
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot read the directory", dir.display()))?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_suffix(".labels.csv").map(str::to_owned)
        })
        .filter(|n| dir.join(format!("{n}.csv")).is_file())
        .collect();
    names.sort();
    anyhow::ensure!(
        !names.is_empty(),
        "{}: no recordings (NAME.csv with NAME.labels.csv) to replay; write some with --record",
        dir.display()
    );
    let mut out = Vec::new();
    for name in names {
        let csv = dir.join(format!("{name}.csv"));
        let labels = vigil_tool::labels::read_labels(&dir.join(format!("{name}.labels.csv")))?;
        let options = ReadOptions::default();
        // The recording's tick, as the engine's settings take it from its first rows.
        let tick = std::cell::Cell::new(1.0);
        let cfg = |estimated: f64| {
            tick.set(estimated);
            bench_engine(Duration::from_secs_f64(estimated))
        };
        let mut cols: Option<[Option<usize>; 4]> = None;
        let mut history = History::default();
        let mut rows = Vec::new();
        let mut scoring = false;
        vigil_tool::engine::drive_csv(
            &csv,
            options,
            cfg,
            vigil_tool::engine::Start::Cold,
            false,
            |src, _, step| {
                let cols = *cols.get_or_insert_with(|| {
                    let col = |n: &str| src.signals.index_of(n);
                    [
                        col("tokio_alive_tasks"),
                        col("sched_latency_p99_seconds"),
                        col("inference_error_ratio"),
                        col("process_resident_memory_bytes"),
                    ]
                });
                let g = |c: Option<usize>| {
                    c.and_then(|i| src.values.get(i))
                        .copied()
                        .unwrap_or(f64::NAN)
                };
                history.alive.push(g(cols[0]));
                history.p99.push(g(cols[1]));
                history.errors.push(g(cols[2]));
                history.rss.push(g(cols[3]));
                let base = baseline(&history, tick.get());
                // Like the live run: measured from the first scored tick on.
                scoring |= step.score.is_some();
                if scoring {
                    rows.push(Row {
                        opened: step.opened.as_ref().map(|e| e.anomaly_type),
                        retyped: step.retyped.as_ref().map(|e| e.anomaly_type),
                        baseline: base,
                        fault: vigil_tool::labels::label_at(&labels, src.timestamp)
                            .filter(|l| l.anomaly)
                            .and_then(|l| l.kind),
                    });
                }
                Ok(())
            },
        )?;
        eprintln!("  {name}: {} scored ticks replayed", rows.len());
        out.push(Run {
            rows,
            fault_free: name.starts_with("fault-free"),
        });
    }
    Ok(out)
}

fn detect(args: DetectArgs) -> anyhow::Result<()> {
    let tick = Duration::from_millis(args.tick_ms);
    anyhow::ensure!(
        (10..=1000).contains(&args.tick_ms),
        "--tick-ms {} is outside 10 to 1000",
        args.tick_ms
    );
    // Checked before minutes of work.
    let json_out = match &args.json {
        Some(p) => Some(vigil::models::OutputFile::create(p, &[])?),
        None => None,
    };
    let faults = all_faults();
    let mut detector: BTreeMap<&'static str, Tally> = BTreeMap::new();
    let mut baseline_t: BTreeMap<&'static str, Tally> = BTreeMap::new();
    let (mut fa_detector, mut fa_baseline, mut ff_ticks) = (0usize, 0usize, 0usize);
    let started = std::time::Instant::now();
    let runs = match &args.replay {
        Some(dir) => replay_runs(dir)?,
        None => live_runs(&args, tick)?,
    };
    for run in &runs {
        let rows = &run.rows;
        if run.fault_free {
            ff_ticks += rows.len();
            fa_detector += event_onsets(rows, false).len();
            fa_baseline += rule_onsets(rows).len();
            continue;
        }
        let det = event_onsets(rows, false);
        let det_open = event_onsets(rows, true);
        let base = rule_onsets(rows);
        for (kind, start, end) in instances(rows) {
            for (ons, at_open, tally) in [
                (&det, &det_open, &mut detector),
                (&base, &base, &mut baseline_t),
            ] {
                let t = tally.entry(kind.as_str()).or_default();
                t.runs += 1;
                if let Some((ttd, right)) = detection(ons, start, end, kind) {
                    t.detected += 1;
                    t.typed_right += usize::from(right);
                    t.ttd.push(ttd as f64);
                }
                if let Some((_, right)) = detection(at_open, start, end, kind) {
                    t.typed_right_at_open += usize::from(right);
                }
            }
        }
    }
    let per_3600 = |n: usize| n as f64 * 3600.0 / ff_ticks.max(1) as f64;
    let mut scen = serde_json::Map::new();
    let mut scen_b = serde_json::Map::new();
    for k in &faults {
        let name = k.as_str();
        // A recording made before a fault existed has no instance of it: not a miss.
        if detector.get(name).is_none_or(|t| t.runs == 0) {
            continue;
        }
        scen.insert(name.into(), detector.entry(name).or_default().json());
        scen_b.insert(name.into(), baseline_t.entry(name).or_default().json());
    }
    let report = json!({
        "mode": if args.replay.is_some() { "replay" } else if args.quick { "quick" } else { "full" },
        "tick_seconds": tick.as_secs_f64(),
        "seed": args.seed,
        "detector": "the agent's engine from a cold start (50 warm-up windows, refits, events)",
        "scenarios": scen,
        "false_alarms_per_3600_ticks": per_3600(fa_detector),
        "fault_free_ticks": ff_ticks,
        "baseline": {
            "rules": "task growth > 15/s, p99 scheduling delay > 5 ms, error ratio > 5%, RSS growth > 10%/min",
            "scenarios": scen_b,
            "false_alarms_per_3600_ticks": per_3600(fa_baseline),
            "fault_free_ticks": ff_ticks,
        },
        "wall_seconds": started.elapsed().as_secs_f64(),
    });
    print_table(&report);
    if let Some(mut out) = json_out {
        std::io::Write::write_all(&mut out, serde_json::to_string_pretty(&report)?.as_bytes())?;
        out.commit()?;
    }
    Ok(())
}

fn print_table(r: &Value) {
    let num = |v: &Value, digits: usize| match v.as_f64() {
        Some(x) => format!("{x:.digits$}"),
        None => "-".to_owned(),
    };
    println!(
        "{:<22} | {:>6} {:>7} {:>7} {:>6} {:>6} | {:>6} {:>7} {:>7} {:>6}",
        "fault", "det", "ttd p50", "ttd p95", "type", "@open", "base", "ttd p50", "ttd p95", "type"
    );
    let empty = serde_json::Map::new();
    let scen = r["scenarios"].as_object().unwrap_or(&empty);
    for (name, d) in scen {
        let b = &r["baseline"]["scenarios"][name];
        println!(
            "{:<22} | {:>6} {:>7} {:>7} {:>6} {:>6} | {:>6} {:>7} {:>7} {:>6}",
            name,
            num(&d["detection_rate"], 2),
            num(&d["ttd_median_ticks"], 0),
            num(&d["ttd_p95_ticks"], 0),
            num(&d["type_accuracy"], 2),
            num(&d["type_accuracy_at_open"], 2),
            num(&b["detection_rate"], 2),
            num(&b["ttd_median_ticks"], 0),
            num(&b["ttd_p95_ticks"], 0),
            num(&b["type_accuracy"], 2),
        );
    }
    println!(
        "false alarm events per 3,600 fault-free ticks: detector {} · static rules {} ({} fault-free ticks)",
        num(&r["false_alarms_per_3600_ticks"], 1),
        num(&r["baseline"]["false_alarms_per_3600_ticks"], 1),
        r["fault_free_ticks"]
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detections_need_an_alarm_that_starts_inside_the_fault() {
        let u = AnomalyKind::Unknown;
        let m = AnomalyKind::MemoryLeak;
        // Already alarming before the fault: no credit.
        let always: Vec<(bool, AnomalyKind)> = vec![(true, m); 100];
        assert_eq!(detection(&onsets(&always), 40, 60, m), None);
        // Quiet, then an alarm 5 ticks into the fault, typed right.
        let mut f = vec![(false, u); 100];
        for x in &mut f[45..55] {
            *x = (true, m);
        }
        assert_eq!(detection(&onsets(&f), 40, 60, m), Some((5, true)));
        assert_eq!(
            detection(&onsets(&f), 40, 60, AnomalyKind::TaskLeak),
            Some((5, false))
        );
        // An alarm only after the grace period: missed.
        let mut late = vec![(false, u); 100];
        late[75] = (true, m);
        assert_eq!(detection(&onsets(&late), 40, 60, m), None);
        assert_eq!(onsets(&f).len(), 1);
    }

    #[test]
    fn the_static_rules_fire_on_what_they_watch() {
        let tick = 0.1;
        let mut h = History::default();
        for i in 0..200 {
            h.alive.push(100.0);
            h.p99.push(0.001);
            h.errors.push(0.0);
            h.rss.push(100e6 + f64::from(i));
        }
        assert_eq!(baseline(&h, tick), [false; 4], "steady");
        h.alive.push(130.0); // +30 in one second
        h.p99.push(0.001);
        h.errors.push(0.0);
        h.rss.push(100e6);
        assert_eq!(baseline(&h, tick), [true, false, false, false]);
        let last = h.alive.len() - 1;
        h.alive[last] = 100.0;
        h.errors[last] = 0.2;
        h.p99[last] = 0.010;
        assert_eq!(baseline(&h, tick), [false, true, true, false]);
        h.errors[last] = 0.0;
        h.p99[last] = 0.001;
        h.rss[last] = 103e6; // +3 % in 10 s = +18 %/min
        assert_eq!(baseline(&h, tick), [false, false, false, true]);
    }
}
