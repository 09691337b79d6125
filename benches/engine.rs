//! One tick of the whole engine (window push + feature extraction, scoring, the event state machine,
//! history bookkeeping) at 198 features (18 signals), after its cold start has trained a model;
//! baseline: the window push + extraction alone, the part every tick pays before any scoring.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
#[path = "support/quick.rs"]
mod quick;

use std::hint::black_box;

use criterion::Criterion;
use vigil::features::{FeatureVector, Horizons, SignalKind, SignalSet, SignalSpec, Unit, Window};
use vigil::models::{Engine, EngineConfig, InlineTrainer};

const SIGNALS: usize = 18;

fn signals() -> SignalSet {
    SignalSet::new(
        (0..SIGNALS)
            .map(|i| {
                let kind = if i % 3 == 0 {
                    SignalKind::Counter
                } else {
                    SignalKind::Gauge
                };
                SignalSpec::named(format!("s{i}"), Unit::Count, kind)
            })
            .collect(),
    )
    .unwrap()
}

/// Row `t`: noisy levels, counters increasing.
fn row(t: u64, out: &mut [f64]) {
    let mut x = t.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for (i, v) in out.iter_mut().enumerate() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let noise = (x % 1000) as f64 / 100.0;
        *v = if i % 3 == 0 {
            (t * 100) as f64 + noise
        } else {
            50.0 + noise
        };
    }
}

fn bench(c: &mut Criterion) {
    let set = signals();
    let cfg = {
        let mut cfg = EngineConfig::default();
        cfg.warm_up_windows = 300;
        // No refit inside the measurement: a tick is scoring, not training.
        cfg.refit_every = 0;
        cfg
    };
    let mut engine = Engine::new(&set, cfg, None, Box::new(InlineTrainer::default())).unwrap();
    let mut values = vec![0.0; SIGNALS];
    let mut t = 0u64;
    // Cold start, first model, and its doubling refits, before measuring.
    while t < 5_000 {
        row(t, &mut values);
        engine.push(t as f64, &values).unwrap();
        t += 1;
    }
    assert!(engine.model().is_some());
    println!("features per window: {}", engine.schema().len());

    let mut window = Window::new(&set, Horizons::default());
    let mut fv = FeatureVector::new(window.schema());
    let mut tw = 0u64;

    let mut g = c.benchmark_group("engine");
    g.bench_function("baseline_window_push_extract_198", |b| {
        b.iter(|| {
            row(tw, &mut values);
            window.push(tw as f64, black_box(&values)).unwrap();
            window.extract(&mut fv).unwrap();
            tw += 1;
            fv.values().len()
        })
    });
    g.bench_function("engine_tick_198_features", |b| {
        b.iter(|| {
            row(t, &mut values);
            let step = engine.push(t as f64, black_box(&values)).unwrap();
            t += 1;
            step.score.map(|s| s.value)
        })
    });
    g.finish();
}

quick_criterion_main!(bench);
