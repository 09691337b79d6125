//! One engine for the agent and the CLI, and one vocabulary for signals and CSV columns:
//!
//! - the agent's own sampler (what its thread runs every tick) and `vigil score` over the recording of
//!   those ticks give the same scores and the same events (parity);
//! - a CSV recorded from the agent trains, with `vigil train`, a model that the agent loads through
//!   `VIGIL_MODEL` and scores with from its first full window.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use support::*;
use vigil::features::vocab;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vigil-parity-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `vigil ARGS`, which must succeed.
fn vigil(args: &[&str]) {
    let out = support::cli::vigil(args);
    assert!(
        out.status.success(),
        "vigil {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One recorded tick: the CSV line and what the agent said live.
struct Live {
    line: String,
    score: Option<f64>,
    opened: bool,
    in_event: bool,
}

/// Drives `ticks` ticks of the agent's sampler, with a burst of leaked tasks at `leak`, recording
/// every sample as `--record` does.
fn drive(
    builder: vigil::AgentBuilder,
    ticks: usize,
    leak: std::ops::Range<usize>,
) -> (String, Vec<Live>) {
    let rt = host_runtime();
    let mut builder = builder;
    let (mut sampler, _registry, _probe) = builder.build_sampler(rt.handle()).unwrap();
    let header = {
        let mut h = String::from("timestamp");
        for s in sampler.signals().specs() {
            write!(h, ",{}", vocab::column_name(s)).unwrap();
        }
        h
    };
    let (tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut live = Vec::new();
    let mut events = sampler.subscribe_events();
    for t in 0..ticks {
        if leak.contains(&t) {
            for _ in 0..40 {
                let mut rx = tx.subscribe();
                rt.spawn(async move {
                    let _ = rx.recv().await;
                });
            }
        }
        // A model being trained installs on its install tick, as in the replay, however slow the
        // machine (live, the agent never waits; wall-clock pacing alone missed the tick under load).
        assert!(
            sampler.wait_for_training(Duration::from_secs(120)),
            "tick {t}: the cold-start fit did not finish in 2 minutes"
        );
        // Distinct, increasing timestamps (the recording has millisecond resolution).
        std::thread::sleep(Duration::from_millis(10));
        let sample = sampler.tick().clone();
        let ts = sample
            .timestamp()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let mut line = format!("{ts:.3}");
        for v in sample.values() {
            if v.is_finite() {
                write!(line, ",{v}").unwrap();
            } else {
                line.push(',');
            }
        }
        let mut opened = false;
        while let Ok(n) = events.try_recv() {
            opened |= matches!(n, vigil::EventNotice::Opened(_));
        }
        live.push(Live {
            line,
            score: sampler.score().map(|s| s.value),
            opened,
            in_event: sampler.current_event().is_some(),
        });
    }
    drop(tx);
    (header, live)
}

fn write_csv(path: &Path, header: &str, live: &[Live]) {
    let mut text = format!("{header}\n");
    for l in live {
        text.push_str(&l.line);
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn the_agent_and_vigil_score_agree_on_a_recorded_run() {
    let tick = Duration::from_millis(50);
    let builder = fast_agent(50).warm_up(tick * 60);
    let cfg = builder.check().unwrap().engine_config();
    let (header, live) = drive(builder, 260, 200..215);
    let d = dir("score");
    let csv = d.join("run.csv");
    write_csv(&csv, &header, &live);
    let out = d.join("scores.csv");
    vigil(&[
        "score",
        "--csv",
        csv.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--tick-seconds",
        &cfg.tick_seconds.to_string(),
        "--warm-up-windows",
        &cfg.warm_up_windows.to_string(),
        "--refit-every",
        &cfg.refit_every.to_string(),
    ]);
    let text = std::fs::read_to_string(&out).unwrap();
    let rows: Vec<Vec<String>> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect();
    assert_eq!(rows.len(), live.len());
    let mut scored = 0;
    for (i, (row, l)) in rows.iter().zip(&live).enumerate() {
        let offline = row[1].parse::<f64>().ok();
        match (l.score, offline) {
            (Some(a), Some(b)) => {
                scored += 1;
                assert!((a - b).abs() < 1e-6, "tick {i}: live {a}, offline {b}");
            }
            (None, None) => {}
            (a, b) => panic!("tick {i}: live {a:?}, offline {b:?}"),
        }
        assert_eq!(row[3] == "1", l.in_event, "tick {i}: inside an event");
        assert_eq!(
            row[7].is_empty(),
            !l.in_event,
            "tick {i}: event onset column"
        );
    }
    assert!(scored > 100, "only {scored} ticks scored");
    let live_onsets = live.iter().filter(|l| l.opened).count();
    let offline_onsets = rows
        .iter()
        .zip(rows.iter().skip(1))
        .filter(|(a, b)| a[6] != b[6] && !b[6].is_empty())
        .count()
        + usize::from(rows.first().is_some_and(|r| !r[6].is_empty()));
    assert_eq!(live_onsets, offline_onsets);
    assert!(
        live_onsets >= 1,
        "the leaked tasks opened no event to compare"
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_csv_recorded_from_the_agent_trains_a_model_the_agent_scores_with() {
    let (header, live) = drive(fast_agent(50), 200, 0..0);
    let d = dir("train");
    let csv = d.join("recorded.csv");
    write_csv(&csv, &header, &live);
    let model = d.join("model.json");
    vigil(&[
        "train",
        "--csv",
        csv.to_str().unwrap(),
        "--out",
        model.to_str().unwrap(),
    ]);
    // The agent loads it through VIGIL_MODEL (the schema matches: same signals, units and horizons)
    // and scores from the first full window, without a warm-up.
    // SAFETY: no other thread of this test reads or writes the environment while it is set (the other
    // test of this file never reads VIGIL_MODEL; nextest runs each test in its own process).
    unsafe { std::env::set_var("VIGIL_MODEL", &model) };
    let builder = fast_agent(50).from_env().unwrap();
    unsafe { std::env::remove_var("VIGIL_MODEL") };
    let (_, scored) = drive(builder, 70, 0..0);
    let first = scored
        .iter()
        .position(|l| l.score.is_some())
        .expect("the agent scores with the trained model");
    assert!(first <= 60, "scored from tick {first}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn every_signal_the_agent_collects_is_defined_once_in_the_vocabulary() {
    let rt = host_runtime();
    let mut builder =
        fast_agent(100).gpu_source(vigil::gpu::FakeGpu::leaking(80 << 30, 1 << 30, 0));
    let (sampler, _registry, _probe) = builder.build_sampler(rt.handle()).unwrap();
    for spec in sampler.signals().specs() {
        assert_eq!(
            vocab::spec(&spec.name).as_ref(),
            Some(spec),
            "`{}`: the collector and the vocabulary disagree (name, unit or kind)",
            spec.name
        );
        // Its recorded column maps back to it.
        assert_eq!(&vocab::column_signal(&vocab::column_name(spec)), spec);
    }
    // Every metric the vocabulary names is in the metric catalogue.
    let catalogue: Vec<&str> = vigil::agent::CATALOGUE.iter().map(|d| d.name).collect();
    for known in vocab::signals() {
        assert!(
            catalogue.contains(&known.metric),
            "{}: metric {} is not in the catalogue",
            known.name,
            known.metric
        );
    }
}
