//! The online engine on crafted sequences: determinism, events on a level shift, refits that never
//! see event windows, a slow leak that stays flagged while it grows (and becomes the new normal once it
//! stops), and a feature that was constant in training moving a little without alarming.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::{Arc, Mutex};

use vigil_features::{Horizons, SignalSet, SignalSpec, Unit};
use vigil_models::{
    Engine, EngineConfig, EventEnd, InlineTrainer, Step, TrainJob, Trained, Trainer,
};

use support::Noise;

fn signals() -> SignalSet {
    SignalSet::new(vec![
        SignalSpec::gauge("queue", Unit::Count),
        SignalSpec::gauge("latency", Unit::Seconds),
        SignalSpec::gauge("threads", Unit::Count),
    ])
    .unwrap()
}

/// Normal rows: queue ~ 20 ± 3, latency ~ 10 ms ± 1 ms, threads constant at 8.
fn normal(n: &mut Noise) -> [f64; 3] {
    [20.0 + 6.0 * n.next(), 0.010 + 0.002 * n.next(), 8.0]
}

fn config() -> EngineConfig {
    let mut cfg = EngineConfig::default();
    cfg.horizons = Horizons::new(5, 20).unwrap();
    cfg.tick_seconds = 1.0;
    cfg.warm_up_windows = 200;
    cfg.refit_every = 400;
    cfg.history_windows = 2000;
    cfg.install_delay = 3;
    cfg.rebaseline_after = 100;
    cfg
}

/// Records every job, trains inline.
#[derive(Clone, Default)]
struct Spy {
    jobs: Arc<Mutex<Vec<TrainJob>>>,
    done: Arc<Mutex<Option<Result<Trained, vigil_models::ModelError>>>>,
}

impl Trainer for Spy {
    fn start(&mut self, job: TrainJob) -> bool {
        let r = job.train();
        self.jobs.lock().unwrap().push(job);
        *self.done.lock().unwrap() = Some(r);
        true
    }
    fn poll(&mut self) -> Option<Result<Trained, vigil_models::ModelError>> {
        self.done.lock().unwrap().take()
    }
}

fn run(rows: &[[f64; 3]], trainer: Box<dyn Trainer>) -> Vec<Step> {
    run_with(rows, trainer, config())
}

fn run_with(rows: &[[f64; 3]], trainer: Box<dyn Trainer>, cfg: EngineConfig) -> Vec<Step> {
    let mut e = Engine::new(&signals(), cfg, None, trainer).unwrap();
    rows.iter()
        .enumerate()
        .map(|(t, r)| e.push(t as f64, r).unwrap())
        .collect()
}

fn onsets(steps: &[Step]) -> Vec<usize> {
    steps
        .iter()
        .enumerate()
        .filter(|(_, s)| s.opened.is_some())
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn the_same_rows_give_the_same_verdicts() {
    let mut n = Noise(7);
    let mut rows: Vec<[f64; 3]> = (0..1500).map(|_| normal(&mut n)).collect();
    for r in &mut rows[900..960] {
        r[0] += 60.0;
    }
    let a = run(&rows, Box::new(InlineTrainer::default()));
    let b = run(&rows, Box::new(InlineTrainer::default()));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        let (sx, sy) = (x.score.as_ref(), y.score.as_ref());
        assert_eq!(sx.map(|s| s.value.to_bits()), sy.map(|s| s.value.to_bits()));
        assert_eq!(x.in_event, y.in_event);
    }
}

#[test]
fn a_level_shift_opens_one_typed_event_that_closes_after_it_ends() {
    let mut n = Noise(11);
    let mut rows: Vec<[f64; 3]> = (0..1400).map(|_| normal(&mut n)).collect();
    // Shorter than the first level-shift check (50 windows): an excursion, not a new level.
    for r in &mut rows[1000..1040] {
        r[0] += 60.0;
    }
    let steps = run(&rows, Box::new(InlineTrainer::default()));
    let on = onsets(&steps);
    assert_eq!(on.len(), 1, "one event, not a flicker: {on:?}");
    assert!((1000..1010).contains(&on[0]), "onset at {}", on[0]);
    let ev = steps[on[0]].opened.as_ref().unwrap();
    assert!(
        ev.top_features[0].0.starts_with("queue"),
        "{:?}",
        ev.top_features
    );
    // Closed within the short horizon plus the close rule after the shift ends.
    let closed = steps
        .iter()
        .position(|s| s.closed.is_some())
        .expect("the event closes");
    assert!((1040..1060).contains(&closed), "closed at {closed}");
    assert_eq!(
        steps[closed].closed.as_ref().unwrap().ended,
        Some(EventEnd::Settled)
    );
    // No false event on the normal stretch after the first model.
    assert!(steps[..1000].iter().all(|s| s.opened.is_none()));
}

/// A level that holds past the first check ends as a level shift; when it later goes back to where it
/// was, the old level is still normal: no second event (the regime before a shift is kept beside the
/// new one), and a third level, normal under neither, is an event again.
#[test]
fn a_level_that_goes_back_after_a_shift_is_still_normal() {
    let mut n = Noise(12);
    let mut rows: Vec<[f64; 3]> = (0..2200).map(|_| normal(&mut n)).collect();
    for r in &mut rows[1000..1120] {
        r[0] += 60.0;
    }
    for r in &mut rows[1800..] {
        r[0] += 150.0;
    }
    let steps = run(&rows, Box::new(InlineTrainer::default()));
    let ev = events(&steps);
    let first = ev
        .iter()
        .find(|e| (1000..1010).contains(&e.0))
        .unwrap_or_else(|| panic!("the excursion opens an event: {ev:?}"));
    assert_eq!(first.2, Some(EventEnd::LevelShift), "{ev:?}");
    assert!(
        ev.iter().all(|e| !(1110..1800).contains(&e.0)),
        "going back to the old level opens nothing: {ev:?}"
    );
    assert!(
        ev.iter().any(|e| (1800..1810).contains(&e.0)),
        "a level normal under neither model is an event: {ev:?}"
    );
}

#[test]
fn refits_never_train_on_event_windows() {
    let mut n = Noise(3);
    let mut rows: Vec<[f64; 3]> = (0..2600).map(|_| normal(&mut n)).collect();
    // A shift long enough to span refit schedules.
    for r in &mut rows[700..1100] {
        r[0] += 500.0;
    }
    let spy = Spy::default();
    // No rebaseline: that is the one deliberate way event windows become normal.
    let cfg = {
        let mut cfg = config();
        cfg.rebaseline_after = 0;
        cfg
    };
    let steps = run_with(&rows, Box::new(spy.clone()), cfg);
    assert!(onsets(&steps).contains(&701) || onsets(&steps).iter().any(|o| (700..710).contains(o)));
    let jobs = spy.jobs.lock().unwrap();
    assert!(jobs.len() >= 3, "cold start and refits: {}", jobs.len());
    for job in jobs.iter() {
        for row in &job.rows {
            // queue.last is feature 0: no training window ever saw the shifted queue.
            assert!(row[0] < 100.0, "{}: trained on an event window", job.reason);
        }
    }
}

#[test]
fn a_slow_leak_stays_flagged_while_it_grows_and_becomes_normal_after_it_stops() {
    let mut n = Noise(5);
    let mut rows: Vec<[f64; 3]> = (0..2400).map(|_| normal(&mut n)).collect();
    // The queue grows by 0.5 per tick for 800 ticks (far longer than `rebaseline_after`), then stays.
    for (k, r) in rows[1000..].iter_mut().enumerate() {
        r[0] += 0.5 * (k.min(800) as f64);
    }
    let steps = run(&rows, Box::new(InlineTrainer::default()));
    let on = onsets(&steps);
    assert!(!on.is_empty() && on[0] >= 1000 && on[0] < 1100, "{on:?}");
    // Open from the onset to the end of the growth.
    assert!(
        steps[on[0]..1800].iter().all(|s| s.in_event),
        "the event must stay open while the leak grows"
    );
    // After it stops growing: a level shift, then quiet.
    let closed = steps[1800..]
        .iter()
        .position(|s| s.closed.is_some())
        .map(|p| p + 1800)
        .expect("closed once the growth stopped");
    assert_eq!(
        steps[closed].closed.as_ref().unwrap().ended,
        Some(EventEnd::LevelShift)
    );
    assert!(
        steps[closed + 100..].iter().all(|s| !s.in_event),
        "the new level is normal after the rebaseline"
    );
}

#[test]
fn a_feature_constant_in_training_that_moves_a_little_does_not_alarm_alone() {
    let mut n = Noise(9);
    let mut rows: Vec<[f64; 3]> = (0..1400).map(|_| normal(&mut n)).collect();
    // One more thread from tick 1000 on (constant 8 in training).
    for r in &mut rows[1000..] {
        r[2] = 9.0;
    }
    let steps = run(&rows, Box::new(InlineTrainer::default()));
    assert!(onsets(&steps).is_empty(), "{:?}", onsets(&steps));
    // ... while a real jump of the same feature does.
    for r in &mut rows[1000..] {
        r[2] = 40.0;
    }
    let steps = run(&rows, Box::new(InlineTrainer::default()));
    assert!(!onsets(&steps).is_empty());
}

/// Latency shifted up by 1.5 ms (the noise is ±1 ms) from `from` on: too little to open an event,
/// enough to keep most windows above the calibration p90.
fn drifting(seed: u64, from: usize, len: usize) -> Vec<[f64; 3]> {
    let mut n = Noise(seed);
    (0..len)
        .map(|i| {
            let mut r = normal(&mut n);
            if i >= from {
                r[1] += 0.0015;
            }
            r
        })
        .collect()
}

fn drift_jobs(rows: &[[f64; 3]]) -> (Vec<Step>, Vec<String>) {
    let spy = Spy::default();
    let cfg = {
        let mut cfg = config();
        cfg.refit_every = 0;
        cfg
    };
    let steps = run_with(rows, Box::new(spy.clone()), cfg);
    let reasons = spy
        .jobs
        .lock()
        .unwrap()
        .iter()
        .map(|j| j.reason.clone())
        .collect();
    (steps, reasons)
}

#[test]
fn a_large_sustained_drift_triggers_a_refit_and_a_stable_stream_does_not() {
    let rows = drifting(13, 1000, 1600);
    let (steps, reasons) = drift_jobs(&rows);
    let drift: Vec<&String> = reasons.iter().filter(|r| r.contains("drift")).collect();
    assert_eq!(drift.len(), 1, "one drift refit: {reasons:?}");
    // The shift kept most windows above the calibration p90 before the refit, and few after it.
    let above = |s: &[Step]| {
        let scored: Vec<&Step> = s.iter().filter(|s| s.score.is_some()).collect();
        scored
            .iter()
            .filter(|s| !s.score.as_ref().unwrap().settled)
            .count() as f64
            / scored.len() as f64
    };
    let installed: Vec<usize> = steps
        .iter()
        .enumerate()
        .filter(|(i, s)| s.installed && *i > 1000)
        .map(|(i, _)| i)
        .collect();
    let refit_at = *installed.first().expect("the drift refit was installed");
    // Half of the last rebaseline_after (100) windows above the p90: 50 drifted windows, plus the
    // install delay.
    assert!(
        (1045..1110).contains(&refit_at),
        "refit once half of the last 100 windows drifted: {refit_at}"
    );
    assert!(above(&steps[1000..refit_at]) >= 0.5);
    assert!(
        above(&steps[refit_at + 50..]) < 0.3,
        "{}",
        above(&steps[refit_at + 50..])
    );

    let (_, reasons) = drift_jobs(&drifting(13, usize::MAX, 1600));
    assert!(
        reasons.iter().all(|r| !r.contains("drift")),
        "no drift refit on a stable stream: {reasons:?}"
    );
}

/// Events as `(opened tick, closed tick, how it ended)`.
fn events(steps: &[Step]) -> Vec<(usize, Option<usize>, Option<EventEnd>)> {
    let mut out: Vec<(usize, Option<usize>, Option<EventEnd>)> = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        if s.opened.is_some() {
            out.push((i, None, None));
        }
        if let (Some(c), Some(last)) = (&s.closed, out.last_mut()) {
            last.1 = Some(i);
            last.2 = c.ended;
        }
    }
    out
}

#[test]
fn a_persisting_step_closes_as_level_shift_and_the_next_step_is_scored_against_the_new_level() {
    let mut n = Noise(21);
    let mut rows: Vec<[f64; 3]> = (0..3000).map(|_| normal(&mut n)).collect();
    // The queue steps from 20 to 60 at 800 and stays; at 2200 it steps again, to 100.
    for r in &mut rows[800..] {
        r[0] += 40.0;
    }
    for r in &mut rows[2200..] {
        r[0] += 40.0;
    }
    let steps = run(&rows, Box::new(InlineTrainer::default()));
    let ev = events(&steps);
    // The first step: one event, closed as a level shift at its first check — after an hour at the
    // new level, which at this 1 s tick is beyond the horizon (100 windows), so one horizon — typed
    // level_shift; no event between the two steps (the new level is normal).
    let first = ev
        .iter()
        .find(|e| (800..820).contains(&e.0))
        .unwrap_or_else(|| panic!("the first step opens an event: {ev:?}"));
    assert_eq!(first.2, Some(EventEnd::LevelShift), "{ev:?}");
    let closed_at = first.1.unwrap();
    assert!(
        (first.0 + 100..first.0 + 115).contains(&closed_at),
        "closed at the first check after opening: {ev:?}"
    );
    let closed = steps[closed_at].closed.as_ref().unwrap();
    assert_eq!(closed.anomaly_type.as_str(), "level_shift");
    assert!(
        ev.iter().all(|e| !(closed_at + 1..2200).contains(&e.0)),
        "no event at the new level: {ev:?}"
    );
    // The second step is scored against the new level (60), not the first (20): it opens its own
    // event, which again ends as a level shift.
    let second = ev
        .iter()
        .find(|e| (2200..2220).contains(&e.0))
        .unwrap_or_else(|| panic!("the second step opens an event: {ev:?}"));
    assert_eq!(second.2, Some(EventEnd::LevelShift), "{ev:?}");
    // Between the steps the score sits at the new level's normal.
    let quiet = steps[1500..2200]
        .iter()
        .filter(|s| s.score.as_ref().is_some_and(|x| x.is_anomaly))
        .count();
    assert!(quiet < 7, "{quiet} anomalous windows at the new level");
}

#[test]
fn a_fixed_model_adapts_to_a_level_shift_too() {
    // A model trained beforehand (as `vigil score --model` uses one) is where scoring starts: a step
    // that stays ends as a level shift and the engine's own model takes over.
    let mut n = Noise(23);
    let rows: Vec<[f64; 3]> = (0..1200).map(|_| normal(&mut n)).collect();
    let spy = Spy::default();
    let e0 = run_with(&rows, Box::new(spy.clone()), config());
    assert!(e0.iter().any(|s| s.installed));
    let job = spy.jobs.lock().unwrap().last().cloned().unwrap();
    let model = job.run().unwrap();
    let mut test: Vec<[f64; 3]> = (0..1500).map(|_| normal(&mut n)).collect();
    for r in &mut test[300..] {
        r[0] += 40.0;
    }
    let mut e = Engine::new(
        &signals(),
        config(),
        Some(model),
        Box::new(InlineTrainer::default()),
    )
    .unwrap();
    let steps: Vec<Step> = test
        .iter()
        .enumerate()
        .map(|(t, r)| e.push(t as f64, r).unwrap())
        .collect();
    let ev = events(&steps);
    assert_eq!(
        ev.first().map(|e| e.2),
        Some(Some(EventEnd::LevelShift)),
        "{ev:?}"
    );
    assert!(
        !steps[ev[0].1.unwrap() + 50..].iter().any(|s| s.in_event),
        "the new level is normal after the shift: {ev:?}"
    );
    assert!(e.model_is_own(), "the engine's own model took over");
}

#[test]
fn scaling_every_column_gives_the_same_events() {
    // Columns of unknown units (what a CSV of someone's metrics has): multiplying every value by 1e-6
    // or 1e6 changes no event, because every scale comes from the data.
    let sig = SignalSet::new(vec![
        SignalSpec::gauge("a", Unit::Value),
        SignalSpec::gauge("b", Unit::Value),
        SignalSpec::gauge("c", Unit::Value),
    ])
    .unwrap();
    let mut n = Noise(31);
    let mut rows: Vec<[f64; 3]> = (0..2500)
        .map(|i| {
            // A daily-like cycle on a, noise on b, c mostly zero with rare bursts.
            let cycle = (i as f64 / 50.0).sin();
            let burst = if i % 97 == 0 { 3.0 } else { 0.0 };
            [100.0 + 20.0 * cycle + 4.0 * n.next(), 5.0 + n.next(), burst]
        })
        .collect();
    for r in &mut rows[1200..1240] {
        r[1] += 12.0;
    }
    for r in &mut rows[1800..] {
        r[0] += 80.0;
    }
    let run_scaled = |k: f64| {
        let mut e = Engine::new(&sig, config(), None, Box::new(InlineTrainer::default())).unwrap();
        let steps: Vec<Step> = rows
            .iter()
            .enumerate()
            .map(|(t, r)| {
                let scaled = [r[0] * k, r[1] * k, r[2] * k];
                e.push(t as f64, &scaled).unwrap()
            })
            .collect();
        events(&steps)
    };
    let base = run_scaled(1.0);
    assert!(
        base.iter().any(|e| (1200..1215).contains(&e.0)),
        "the burst on b is an event: {base:?}"
    );
    assert_eq!(run_scaled(1e-6), base, "×1e-6");
    assert_eq!(run_scaled(1e6), base, "×1e6");
}

#[test]
fn the_raw_score_ranks_beyond_the_old_clip() {
    // Larger deviations always score higher: no plateau where a threshold sweep cannot separate them.
    let mut n = Noise(41);
    let rows: Vec<[f64; 3]> = (0..600).map(|_| normal(&mut n)).collect();
    let job_rows: Vec<Arc<[f64]>> = {
        let mut w = vigil_features::Window::new(&signals(), Horizons::new(5, 20).unwrap());
        let mut fv = vigil_features::FeatureVector::new(w.schema());
        let mut out = Vec::new();
        for (t, r) in rows.iter().enumerate() {
            w.push(t as f64, r).unwrap();
            if w.is_warm() {
                w.extract(&mut fv).unwrap();
                out.push(Arc::from(fv.values()));
            }
        }
        out
    };
    let schema = vigil_features::Window::new(&signals(), Horizons::new(5, 20).unwrap())
        .schema()
        .clone();
    let cfg = config();
    let model = TrainJob {
        schema: schema.clone(),
        rows: job_rows.clone(),
        params: cfg.params(),
        horizons: cfg.horizons,
        created: 0.0,
        why: vigil_models::FitReason::Offline,
        reason: "test".into(),
        labelled: Arc::new(Vec::new()),
    }
    .run()
    .unwrap();
    let base = job_rows.last().unwrap().to_vec();
    let median = schema
        .names()
        .iter()
        .position(|n| n == "queue.median_5")
        .unwrap();
    let mut last = 0.0;
    for shift in [10.0, 100.0, 1e3, 1e4, 1e5, 1e6] {
        let mut row = base.clone();
        row[median] += shift;
        let raw = model.detector.raw_score(&row);
        assert!(raw > last, "shift {shift}: raw {raw} not above {last}");
        last = raw;
    }
}

#[test]
fn growth_is_told_from_a_level_that_stays_whatever_its_wobble() {
    use vigil_models::engine::still_growing;
    let mut n = Noise(51);
    // Deviations are in the model's robust standard deviations, so the data's scale is gone already
    // (the ×1e-6 / ×1e6 test above checks that end to end); what varies is the wobble of the level.
    for wobble in [0.0, 1e-6, 0.3, 3.0, 30.0] {
        // A step with noise: settled.
        let flat: Vec<f64> = (0..360).map(|_| 400.0 + wobble * n.next()).collect();
        assert!(!still_growing(&flat), "wobble {wobble}");
        // A climb, early or late in a long leak, with the same noise: growing.
        for start in [0.0, 1000.0] {
            let climb: Vec<f64> = (0..360)
                .map(|i| start + (0.5 + wobble / 60.0) * i as f64 + wobble * n.next())
                .collect();
            assert!(still_growing(&climb), "wobble {wobble} from {start}");
        }
        // Early checks see fewer windows: the same verdicts on a quarter horizon.
        assert!(!still_growing(&flat[..90]), "wobble {wobble}, 90 windows");
    }
    // A quasi-constant level creeping by a fraction of one standard deviation is not growing (its
    // halves' wobble is near zero, so only the one-sd floor tells).
    let creep: Vec<f64> = (0..360).map(|i| 93.0 + 1e-3 * i as f64).collect();
    assert!(!still_growing(&creep));
    let climb_90: Vec<f64> = (0..90).map(|i| 10.0 + 0.5 * i as f64).collect();
    assert!(
        still_growing(&climb_90),
        "a climb seen on a quarter horizon"
    );
}

/// Every model the engine asks for says why in its summary, typed: the retrain thread follows drift
/// refits by this, never by the notes' words.
#[test]
fn every_fit_records_its_reason_typed() {
    use vigil_models::FitReason;
    let mut n = Noise(31);
    let mut rows: Vec<[f64; 3]> = (0..1600).map(|_| normal(&mut n)).collect();
    for r in &mut rows[800..] {
        r[0] += 40.0;
    }
    let spy = Spy::default();
    let steps = run(&rows, Box::new(spy.clone()));
    assert!(steps.iter().any(|s| s.installed));
    let jobs = spy.jobs.lock().unwrap().clone();
    let whys: Vec<FitReason> = jobs.iter().map(|j| j.why).collect();
    assert_eq!(whys.first(), Some(&FitReason::ColdStart), "{whys:?}");
    assert!(whys.contains(&FitReason::HistoryDoubled), "{whys:?}");
    assert!(whys.contains(&FitReason::LevelShift), "{whys:?}");
    for j in &jobs {
        let m = j.run().unwrap();
        assert_eq!(m.summary.fit_reason, Some(j.why), "{}", j.reason);
    }
    // A model file from before the field existed still loads, with no reason.
    let mut v = serde_json::to_value(jobs[0].run().unwrap()).unwrap();
    v["summary"].as_object_mut().unwrap().remove("fit_reason");
    let old: vigil_models::ModelFile = serde_json::from_value(v).unwrap();
    assert_eq!(old.summary.fit_reason, None);
}

/// The promotion gate replays stored windows through the engine itself: on the same stream, the gate's
/// replay of the feature rows and the engine fed the raw rows give the same events, row for row,
/// through a step that becomes a level shift and the refit after it.
#[test]
fn the_gate_and_the_engine_give_the_same_events_on_the_same_stream() {
    use vigil_models::evaluation::replay;
    let mut n = Noise(41);
    let rows: Vec<[f64; 3]> = (0..1200).map(|_| normal(&mut n)).collect();
    let spy = Spy::default();
    let _ = run_with(&rows, Box::new(spy.clone()), config());
    let model = spy
        .jobs
        .lock()
        .unwrap()
        .last()
        .cloned()
        .unwrap()
        .run()
        .unwrap();
    let mut test: Vec<[f64; 3]> = (0..1400).map(|_| normal(&mut n)).collect();
    for r in &mut test[300..340] {
        r[1] += 80.0; // an excursion
    }
    for r in &mut test[700..] {
        r[0] += 60.0; // a step that stays
    }
    let cfg = {
        let mut cfg = EngineConfig::default();
        cfg.horizons = config().horizons;
        cfg
    };
    let mut engine = Engine::new(
        &signals(),
        cfg.clone(),
        Some(model.clone()),
        Box::new(InlineTrainer::default()),
    )
    .unwrap();
    let (mut live, mut features) = (Vec::new(), Vec::new());
    for (t, r) in test.iter().enumerate() {
        let step = engine.push(t as f64, r).unwrap();
        if let Some(s) = &step.score {
            live.push((t as f64, s.value, step.in_event || step.closed.is_some()));
            features.push((t as f64, engine.features().values().to_vec()));
        }
    }
    assert!(live.iter().any(|x| x.2), "the stream has events to compare");
    let gate = replay(
        &model,
        features.iter().map(|(t, f)| (*t, &f[..])),
        cfg.events,
        cfg.tick_seconds,
    );
    assert_eq!(gate.len(), live.len());
    for (g, l) in gate.iter().zip(&live) {
        assert_eq!((g.0, g.2), (l.0, l.2), "row {}", l.0);
        assert!((g.1 - l.1).abs() < 1e-12, "row {}: {} vs {}", l.0, g.1, l.1);
    }
}

/// At a minute a row, a step that holds for an hour (60 windows) is a level shift, well before the
/// 360-window horizon; at a second a row the first check waits for the horizon (an hour would be
/// 3,600 windows).
#[test]
fn a_level_shift_is_called_after_an_hour_at_the_new_level() {
    let mut n = Noise(61);
    let mut rows: Vec<[f64; 3]> = (0..1600).map(|_| normal(&mut n)).collect();
    for r in &mut rows[800..] {
        r[0] += 40.0;
    }
    for (tick, after) in [(60.0, 60..75), (1.0, 360..375)] {
        let cfg = {
            let mut cfg = config();
            cfg.tick_seconds = tick;
            cfg.rebaseline_after = 360;
            cfg
        };
        let mut e = Engine::new(&signals(), cfg, None, Box::new(InlineTrainer::default())).unwrap();
        let steps: Vec<Step> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| e.push(i as f64 * tick, r).unwrap())
            .collect();
        let ev = events(&steps);
        let first = ev
            .iter()
            .find(|x| (800..820).contains(&x.0))
            .unwrap_or_else(|| panic!("tick {tick}: the step opens an event: {ev:?}"));
        assert_eq!(first.2, Some(EventEnd::LevelShift), "tick {tick}: {ev:?}");
        let held = first.1.unwrap() - first.0;
        assert!(
            after.contains(&held),
            "tick {tick}: closed after {held} windows: {ev:?}"
        );
    }
}

/// The engine of [`config`] with a span of 600 windows: the recent range reads from about window 610.
fn short_span() -> EngineConfig {
    let mut cfg = config();
    cfg.history_windows = 600;
    cfg
}

#[test]
fn a_brief_extreme_value_is_an_event_and_its_recurrence_within_the_span_is_familiar() {
    let mut n = Noise(41);
    let mut rows: Vec<[f64; 3]> = (0..2600).map(|_| normal(&mut n)).collect();
    // Two windows of a queue 40 deep (its normal range is 17..23): too brief to move the short
    // median the model scores, thirteen ranges out of anything the span saw.
    for at in [1500, 1800] {
        rows[at][0] = 60.0;
        rows[at + 1][0] = 60.0;
    }
    // Far beyond that one: 300 deep.
    rows[2200][0] = 300.0;
    rows[2201][0] = 300.0;
    let steps = run_with(&rows, Box::new(InlineTrainer::default()), short_span());
    let ev = events(&steps);
    let first = ev
        .iter()
        .find(|e| (1500..1506).contains(&e.0))
        .unwrap_or_else(|| panic!("the first spike opens an event: {ev:?}"));
    let closed = first.1.expect("the spike's event closes");
    assert!(
        closed < 1530,
        "closed soon after the spike left the short horizon: {ev:?}"
    );
    assert_eq!(first.2, Some(EventEnd::Settled), "{ev:?}");
    let lead = &steps[first.0].top[0].0;
    assert_eq!(lead, "queue.last", "{:?}", steps[first.0].top);
    // The same excursion 300 windows later is inside what the span holds now: no event.
    assert!(
        ev.iter().all(|e| !(1795..1830).contains(&e.0)),
        "a recurrence of the same size is familiar: {ev:?}"
    );
    // One far beyond it is news again.
    assert!(
        ev.iter().any(|e| (2200..2206).contains(&e.0)),
        "a larger excursion is an event: {ev:?}"
    );
    // Nothing else in the stream is an event.
    assert_eq!(ev.len(), 2, "{ev:?}");
}

#[test]
fn a_level_visited_within_the_span_is_not_an_event_again() {
    let mut n = Noise(43);
    let mut rows: Vec<[f64; 3]> = (0..2400).map(|_| normal(&mut n)).collect();
    // The latency doubles for 40 windows, twice, 400 windows apart (a nightly batch, compressed).
    for from in [1200, 1600] {
        for r in &mut rows[from..from + 40] {
            r[1] += 0.010;
        }
    }
    let steps = run_with(&rows, Box::new(InlineTrainer::default()), short_span());
    let ev = events(&steps);
    assert!(
        ev.iter().any(|e| (1200..1210).contains(&e.0)),
        "the first visit is an event: {ev:?}"
    );
    assert!(
        ev.iter().all(|e| !(1590..1650).contains(&e.0)),
        "the second visit, inside the range the first left in the span, is not: {ev:?}"
    );
    // The second visit's windows still rank above the quiet ones around them.
    let raw = |i: usize| steps[i].score.as_ref().map_or(0.0, |s| s.raw);
    assert!(raw(1620) > raw(1500), "{} vs {}", raw(1620), raw(1500));
}

#[test]
fn scheduled_refits_wait_for_as_many_new_windows_as_a_model_trains_on() {
    use vigil_models::FitReason;
    // Refits asked for every 5 ticks (an hour at coarse rows is a handful of windows): they come at
    // most every 50 windows, the fewest a model trains on, so a refit never sees a history that
    // barely changed.
    let mut n = Noise(47);
    let rows: Vec<[f64; 3]> = (0..1400).map(|_| normal(&mut n)).collect();
    let spy = Spy::default();
    let cfg = {
        let mut cfg = config();
        cfg.refit_every = 5;
        cfg
    };
    run_with(&rows, Box::new(spy.clone()), cfg);
    let jobs = spy.jobs.lock().unwrap().clone();
    let fits: Vec<(f64, FitReason)> = jobs.iter().map(|j| (j.created, j.why)).collect();
    let scheduled = fits.iter().filter(|f| f.1 == FitReason::Scheduled).count();
    assert!(scheduled >= 5, "{fits:?}");
    for w in fits.windows(2) {
        assert!(w[1].0 - w[0].0 >= 50.0, "{fits:?}");
    }
}

/// Thirty days of five-minute rows whose queue has bursts of every size, from barely visible to far
/// out, about six a day at random times: what a budget per day has to choose among.
fn bursty_month(seed: u64) -> Vec<[f64; 3]> {
    let mut n = Noise(seed);
    let mut rows = Vec::new();
    let mut burst: (usize, f64) = (0, 0.0);
    for _ in 0..30 * 288 {
        let mut r = normal(&mut n);
        if burst.0 == 0 && n.next() > 0.48 {
            // A Pareto size: most bursts are small, a few are large.
            let u = (n.next() + 0.5).max(1e-3);
            burst = (3 + (6.0 * (n.next() + 0.5)) as usize, 6.0 * u.powf(-0.7));
        }
        if burst.0 > 0 {
            r[0] += burst.1;
            r[1] += 0.0005 * burst.1;
            burst.0 -= 1;
        }
        rows.push(r);
    }
    rows
}

#[test]
fn the_false_event_budget_sets_how_often_events_open() {
    // Same rows, three budgets: once the engine has a day of its own scores, the alarm level follows
    // the budget, so a larger budget opens more events, a smaller one fewer, and none opens
    // much more often than its budget allows (counted over the last fifteen days, all events, since
    // every event here is a burst and so a budget's worth of them is what it may spend).
    let rows = bursty_month(0x5eed);
    let mut found = Vec::new();
    for budget in [0.1, 1.0, 8.0] {
        let mut cfg = config();
        cfg.tick_seconds = 300.0;
        cfg.refit_every = 288;
        cfg.false_events_per_day = budget;
        let steps = run_with(&rows, Box::new(InlineTrainer::default()), cfg);
        let late = onsets(&steps)
            .into_iter()
            .filter(|&i| i >= 15 * 288)
            .count();
        found.push((budget, late as f64 / 15.0));
    }
    assert!(
        found[0].1 < found[1].1 && found[1].1 < found[2].1,
        "events a day by budget: {found:?}"
    );
    for &(budget, per_day) in &found {
        assert!(per_day <= 1.5 * budget + 0.2, "{found:?}");
    }
}
