//! `vigil demo`: the showcase. A real inference server (an MLP, `#[vigil::observe]` on its stages) with
//! the agent linked in, under production-like load; after the warm-up, faults are injected on a schedule
//! with quiet stretches between them, and every detection is shown as it happens. At the end: what was
//! injected and what was detected.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use vigil::models::{AnomalyKind, OutputFile};

use crate::scenes::faults::parse_faults;
use crate::scenes::record::{Recorder, unix_seconds};
use crate::scenes::{Scene, SceneConfig, Tick};
use vigil_tool::labels::Label;

/// Quiet ticks before each fault and ticks each fault lasts.
const QUIET_TICKS: u64 = 30;
const FAULT_TICKS: u64 = 30;
/// Ticks after a fault ends during which an alarm still counts as catching it.
const GRACE_TICKS: u64 = 10;
/// The live view never wraps on a 100-column terminal.
pub(crate) const MAX_COLUMNS: usize = 100;

/// Flags of `vigil demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Exit after this many seconds (default: once every fault has run and the quiet stretch after the
    /// last one is over; Ctrl-C ends it earlier, with the summary).
    #[arg(long, value_name = "SECS")]
    duration: Option<u64>,
    /// Address of the agent's HTTP endpoint (/metrics); overrides VIGIL_LISTEN.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Print only detections and the summary, not one line per tick.
    #[arg(long)]
    quiet: bool,
    /// Score with this model file from the start (overrides VIGIL_MODEL); otherwise the agent trains
    /// its first model after the warm-up (VIGIL_WARMUP; one minute in the demo).
    #[arg(long, value_name = "FILE")]
    model: Option<PathBuf>,
    /// Mean requests per second of the load generator (the load varies around it: daily cycle, ramps,
    /// bursts, quiet periods).
    #[arg(long, default_value_t = 200, value_name = "N")]
    rps: u32,
    /// Worker threads of the demo server's tokio runtime.
    #[arg(long, default_value_t = 2, value_name = "N")]
    workers: usize,
    /// Faults to inject after the warm-up, in order, each after a quiet stretch: `all`, `none`, or a
    /// list such as `memory_leak,error_burst`.
    #[arg(long, default_value = "all", value_name = "LIST")]
    faults: String,
    /// Seed of the load shape and the model's weights.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The agent's tick, e.g. `250ms` (overrides VIGIL_TICK; every schedule is in ticks, so a short
    /// tick runs the whole show faster).
    #[arg(long, value_name = "DURATION")]
    tick: Option<String>,
    /// Write the per-tick signals and the injected faults as CSV (for `vigil train/score/eval`).
    #[arg(long, value_name = "DIR")]
    record: Option<PathBuf>,
    /// Write a markdown report and an SVG timeline (score, threshold, faults) here at the end.
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
}

/// One injected fault and what became of it.
#[derive(Debug, Clone)]
struct Injected {
    kind: AnomalyKind,
    start_tick: u64,
    end_tick: u64,
    start_unix: f64,
    end_unix: f64,
    /// The event that caught it.
    detected: Option<Detected>,
}

/// The event that caught a fault: ticks to its opening, its id, the type it opened with and its type
/// now (it follows the event's peak window).
#[derive(Debug, Clone)]
struct Detected {
    after: u64,
    event: u64,
    opened_as: AnomalyKind,
    kind: AnomalyKind,
}

/// What an event that opened at a tick is, against the faults injected so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attribution {
    /// The first event during the fault at this index (running, or ended within the grace).
    Catches(usize),
    /// Another event during a fault an earlier event already caught: one incident seen as two
    /// events (counted and shown as such, never as a false alarm nor as a second detection).
    Splits(usize),
    /// No fault running or within its grace: a false alarm.
    False,
}

/// Attributes an event opened at `tick` to the newest fault whose span (from its start to the grace
/// after its end) holds it.
fn attribute(injected: &[Injected], tick: u64) -> Attribution {
    match injected
        .iter()
        .enumerate()
        .rev()
        .find(|(_, f)| tick >= f.start_tick && tick <= f.end_tick + GRACE_TICKS)
    {
        Some((i, f)) if f.detected.is_none() => Attribution::Catches(i),
        Some((i, _)) => Attribution::Splits(i),
        None => Attribution::False,
    }
}

/// The fault schedule after the warm-up: quiet, fault, quiet, fault, ... then quiet.
struct Schedule {
    faults: Vec<AnomalyKind>,
    next: usize,
    phase_ticks_left: u64,
    in_fault: bool,
}

impl Schedule {
    fn new(faults: Vec<AnomalyKind>) -> Self {
        Self {
            faults,
            next: 0,
            phase_ticks_left: QUIET_TICKS,
            in_fault: false,
        }
    }

    /// Every fault has run and the quiet stretch after the last one is over.
    fn finished(&self) -> bool {
        self.next >= self.faults.len() && !self.in_fault && self.phase_ticks_left == 0
    }

    /// Advances one tick; returns `Some(Some(kind))` to start a fault, `Some(None)` to stop one.
    fn step(&mut self) -> Option<Option<AnomalyKind>> {
        if self.phase_ticks_left > 0 {
            self.phase_ticks_left -= 1;
            return None;
        }
        if self.in_fault {
            self.in_fault = false;
            self.phase_ticks_left = QUIET_TICKS.saturating_sub(1);
            return Some(None);
        }
        let kind = *self.faults.get(self.next)?;
        self.next += 1;
        self.in_fault = true;
        self.phase_ticks_left = FAULT_TICKS.saturating_sub(1);
        Some(Some(kind))
    }
}

/// Cuts `line` to the live view's width.
fn fit(mut line: String) -> String {
    if line.chars().count() > MAX_COLUMNS {
        line = line.chars().take(MAX_COLUMNS - 1).collect();
        line.push('…');
    }
    line
}

fn short_bytes(b: f64) -> String {
    if !b.is_finite() {
        "n/a".into()
    } else if b >= 1e9 {
        format!("{:.1}G", b / 1e9)
    } else {
        format!("{:.0}M", b / 1e6)
    }
}

fn short_ms(s: f64) -> String {
    if s.is_finite() {
        format!("{:.1}ms", s * 1e3)
    } else {
        "n/a".into()
    }
}

/// One line per tick: time, load, key signals, score against the threshold, the fault running.
fn tick_line(t: &Tick, elapsed: Duration, req_rate: f64) -> String {
    let g = |n: &str| t.sample.get(n).unwrap_or(f64::NAN);
    let score = match &t.score {
        Some(s) => format!("{:.2}{}", s.value, if t.in_event { "!" } else { " " }),
        None => "warm ".into(),
    };
    let fault = t
        .fault
        .map_or(String::new(), |k| format!(" [{}]", k.as_str()));
    fit(format!(
        "t={:>5.1}s x{:.1} {:>4.0}/s p99 {:>6} tasks {:>4.0} sched {:>6} live {:>5} cpu {:>3.0}% s={}/0.50{}",
        elapsed.as_secs_f64(),
        t.load,
        req_rate,
        short_ms(g("inference_latency_p99_seconds")),
        g("tokio_alive_tasks"),
        short_ms(g("sched_latency_max_seconds")),
        short_bytes(g("alloc_live_bytes")),
        g("process_cpu_ratio") * 100.0,
        score,
        fault,
    ))
}

/// `vigil demo`: serves, loads, injects the faults and prints what the agent saw, then the summary.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    // Colour only for a person at a terminal; never escape codes in a log file.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
    let faults = parse_faults(&args.faults).map_err(|e| anyhow::anyhow!("--faults: {e}"))?;
    let tick = match &args.tick {
        Some(s) => Some(vigil::agent::parse_duration(s).ok_or_else(|| {
            vigil_tool::UsageError(format!(
                "--tick {s:?}: expected {}",
                vigil::agent::DURATION_SYNTAX
            ))
        })?),
        None => None,
    };
    // Outputs are checked before the show starts.
    let report_dir = args.report.clone();
    if let Some(d) = &report_dir {
        std::fs::create_dir_all(d)
            .with_context(|| format!("{}: cannot create the report directory", d.display()))?;
    }
    let cfg = SceneConfig {
        tick,
        warm_up: None,
        seed: args.seed,
        rps: f64::from(args.rps),
        workers: args.workers,
        listen: args.listen,
        model: args.model.clone(),
        from_env: true,
        real_gpu: crate::scenes::real_gpu_asked(),
    };
    let mut scene = Scene::start(&cfg)?;
    let mut recorder = match &args.record {
        Some(dir) => Some(Recorder::create(dir, &format!("demo-seed{}", args.seed))?),
        None => None,
    };
    println!(
        "vigil demo: agent http://{}/metrics · server http://{}/v1/predict",
        scene.agent_addr, scene.server_addr
    );
    println!(
        "  tick {:?} · ~{} req/s, varying · faults after the warm-up: {}",
        scene.tick,
        args.rps,
        if faults.is_empty() {
            "none".to_owned()
        } else {
            faults
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    println!("  {}", scene.gpu_note);
    let stop = Arc::new(AtomicBool::new(false));
    scene.watch_ctrl_c(stop.clone());
    let started = Instant::now();
    let deadline = args.duration.map(|d| started + Duration::from_secs(d));
    let mut schedule = Schedule::new(faults);
    let mut injected: Vec<Injected> = Vec::new();
    let mut scoring = false;
    let mut false_alarms = 0u64;
    let mut split_events = 0u64;
    let mut ticks = 0u64;
    let mut timeline: Vec<(f64, f64, bool)> = Vec::new();
    let mut last_served = (started, 0u64);
    while !stop.load(Ordering::Relaxed) {
        let Some(t) = scene.next_tick_until(deadline) else {
            break;
        };
        ticks += 1;
        let now_unix = unix_seconds(&t.sample);
        if let Some(r) = recorder.as_mut() {
            r.push(&t)?;
        }
        let served = scene.counters.served.load(Ordering::Relaxed)
            + scene.counters.failed.load(Ordering::Relaxed);
        let dt = last_served.0.elapsed().as_secs_f64().max(1e-9);
        let req_rate = served.saturating_sub(last_served.1) as f64 / dt;
        last_served = (Instant::now(), served);
        if !args.quiet {
            println!("{}", tick_line(&t, started.elapsed(), req_rate));
        }
        if let Some(s) = &t.score {
            if !scoring {
                scoring = true;
                println!(
                    "{}",
                    fit(format!(
                        ">> t={:.1}s scoring started (threshold 0.50)",
                        started.elapsed().as_secs_f64()
                    ))
                );
            }
            timeline.push((now_unix, s.value, t.in_event));
            if let Some(ev) = &t.opened {
                let top: Vec<&str> = ev.top_features.iter().map(|(n, _)| n.as_str()).collect();
                // Which fault does this alarm catch (running, or ended within the grace period)?
                let what = match attribute(&injected, ticks) {
                    Attribution::Catches(i) => {
                        let f = &mut injected[i];
                        let after = ticks - f.start_tick;
                        f.detected = Some(Detected {
                            after,
                            event: ev.id,
                            opened_as: ev.anomaly_type,
                            kind: ev.anomaly_type,
                        });
                        format!("catches {} after {after} ticks", f.kind.as_str())
                    }
                    Attribution::Splits(i) => {
                        split_events += 1;
                        format!(
                            "a second event during {}: a split event",
                            injected[i].kind.as_str()
                        )
                    }
                    Attribution::False => {
                        false_alarms += 1;
                        "no fault running: false alarm".to_owned()
                    }
                };
                println!(
                    "{}",
                    fit(format!(
                        ">> t={:.1}s EVENT {} opened, score {:.2}: {what}; top {}",
                        started.elapsed().as_secs_f64(),
                        ev.anomaly_type.as_str(),
                        ev.peak,
                        top.join(", ")
                    ))
                );
            }
            if let Some(ev) = &t.retyped {
                if let Some(d) = injected
                    .iter_mut()
                    .filter_map(|f| f.detected.as_mut())
                    .find(|d| d.event == ev.id)
                {
                    d.kind = ev.anomaly_type;
                }
                println!(
                    "{}",
                    fit(format!(
                        ">> t={:.1}s EVENT {} retyped {} (opened as {}), score {:.2}",
                        started.elapsed().as_secs_f64(),
                        ev.id,
                        ev.anomaly_type.as_str(),
                        ev.opened_as.as_str(),
                        ev.peak
                    ))
                );
            }
            match schedule.step() {
                Some(Some(kind)) => {
                    scene.inject(kind)?;
                    injected.push(Injected {
                        kind,
                        start_tick: ticks + 1,
                        end_tick: ticks + FAULT_TICKS,
                        start_unix: now_unix,
                        end_unix: now_unix,
                        detected: None,
                    });
                    println!(
                        "{}",
                        fit(format!(
                            ">> t={:.1}s injecting {} for {FAULT_TICKS} ticks",
                            started.elapsed().as_secs_f64(),
                            kind.as_str()
                        ))
                    );
                }
                Some(None) => {
                    scene.clear_fault();
                    if let Some(f) = injected.last_mut() {
                        f.end_tick = ticks;
                        f.end_unix = now_unix;
                    }
                }
                None => {
                    if let Some(f) = injected.last_mut()
                        && t.fault.is_some()
                    {
                        f.end_unix = now_unix;
                    }
                    // The show is over: every fault ran and the quiet stretch after the last one (the
                    // grace for a late detection included) has passed.
                    if deadline.is_none() && schedule.finished() {
                        break;
                    }
                }
            }
        }
    }
    scene.clear_fault();
    let served = scene.counters.served.load(Ordering::Relaxed);
    let client_err = scene.counters.client_err.load(Ordering::Relaxed);
    drop(scene);
    let summary = summary(&injected, false_alarms, split_events, ticks);
    println!("{summary}");
    let labels: Vec<Label> = injected
        .iter()
        .map(|f| Label {
            start: f.start_unix,
            end: f.end_unix,
            anomaly: true,
            source: "injected".into(),
            confidence: 1.0,
            kind: Some(f.kind),
        })
        .collect();
    if let Some(r) = recorder {
        let (signals, labels) = r.finish()?;
        println!("recorded: {} and {}", signals.display(), labels.display());
    }
    if let Some(dir) = report_dir {
        let svg_path = dir.join("timeline.svg");
        OutputFile::write_all_and_commit(
            &svg_path,
            &[],
            vigil_tool::plot::svg(&timeline, &labels).as_bytes(),
        )?;
        let md = format!(
            "# vigil demo report\n\nSeed {}, {ticks} ticks, {served} requests served.\n\n\
             ![score, threshold and injected faults](timeline.svg)\n\n```\n{summary}\n```\n",
            args.seed
        );
        OutputFile::write_all_and_commit(&dir.join("report.md"), &[], md.as_bytes())?;
        println!("report: {}", dir.join("report.md").display());
    }
    println!(
        "vigil demo: done after {:.1}s · {served} requests served · {client_err} client errors · {ticks} ticks",
        started.elapsed().as_secs_f64(),
    );
    Ok(())
}

/// What was injected and what was detected, for people.
fn summary(injected: &[Injected], false_alarms: u64, split_events: u64, ticks: u64) -> String {
    let mut out = String::from("summary:\n");
    if injected.is_empty() {
        out.push_str("  no fault injected\n");
    }
    for f in injected {
        let _ = write!(
            out,
            "  {:<19} injected ticks {}-{}: ",
            f.kind.as_str(),
            f.start_tick,
            f.end_tick
        );
        match &f.detected {
            Some(d) => {
                let _ = writeln!(
                    out,
                    "detected after {} ticks as {}{}{}",
                    d.after,
                    d.kind.as_str(),
                    if d.opened_as == d.kind {
                        String::new()
                    } else {
                        format!(" (opened as {})", d.opened_as.as_str())
                    },
                    if d.kind == f.kind {
                        ""
                    } else {
                        " (wrong type)"
                    }
                );
            }
            None => out.push_str("missed\n"),
        }
    }
    let caught = injected.iter().filter(|f| f.detected.is_some()).count();
    let _ = write!(
        out,
        "  detected {caught} of {} faults · {split_events} split events · {false_alarms} false alarms in {ticks} ticks",
        injected.len()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_alternates_quiet_and_faults_then_stays_quiet() {
        let mut s = Schedule::new(vec![AnomalyKind::MemoryLeak, AnomalyKind::TaskLeak]);
        let mut events = Vec::new();
        for tick in 0..200u64 {
            if let Some(e) = s.step() {
                events.push((tick, e));
            }
        }
        assert_eq!(
            events,
            vec![
                (30, Some(AnomalyKind::MemoryLeak)),
                (60, None),
                (90, Some(AnomalyKind::TaskLeak)),
                (120, None),
            ]
        );
    }

    #[test]
    fn the_schedule_says_when_the_show_is_over() {
        let mut s = Schedule::new(vec![AnomalyKind::MemoryLeak]);
        let mut over_at = None;
        for tick in 0..200u64 {
            s.step();
            if s.finished() {
                over_at = Some(tick);
                break;
            }
        }
        // 30 quiet, 30 of the fault, then 30 quiet (grace included).
        assert_eq!(over_at, Some(89));
        assert!(
            Schedule::new(Vec::new()).phase_ticks_left > 0,
            "a quiet stretch first"
        );
    }

    #[test]
    fn a_second_event_during_a_caught_fault_is_a_split_event_not_a_false_alarm() {
        let fault = |start_tick, end_tick| Injected {
            kind: AnomalyKind::GpuMemoryLeak,
            start_tick,
            end_tick,
            start_unix: 0.0,
            end_unix: 0.0,
            detected: None,
        };
        let mut injected = vec![fault(31, 60), fault(91, 120)];
        assert_eq!(attribute(&injected, 20), Attribution::False);
        assert_eq!(attribute(&injected, 35), Attribution::Catches(0));
        injected[0].detected = Some(Detected {
            after: 4,
            event: 1,
            opened_as: AnomalyKind::GpuMemoryLeak,
            kind: AnomalyKind::GpuMemoryLeak,
        });
        // Inside the fault and inside its grace: the same incident again.
        assert_eq!(attribute(&injected, 50), Attribution::Splits(0));
        assert_eq!(
            attribute(&injected, 60 + GRACE_TICKS),
            Attribution::Splits(0)
        );
        assert_eq!(attribute(&injected, 61 + GRACE_TICKS), Attribution::False);
        assert_eq!(attribute(&injected, 95), Attribution::Catches(1));
        let s = summary(&injected, 1, 2, 200);
        assert!(
            s.contains("detected 1 of 2 faults · 2 split events · 1 false alarms in 200 ticks"),
            "{s}"
        );
    }

    #[test]
    fn lines_fit_a_hundred_columns() {
        let long = "x".repeat(300);
        assert_eq!(fit(long).chars().count(), MAX_COLUMNS);
        assert_eq!(fit("short".into()), "short");
    }
}
