//! Window push + feature extraction for 64 signals (half counters) over a 60-tick window, beside
//! baselines: pushing alone, and a naive extraction that collects each horizon into fresh vectors.
//! Also prints allocations per tick, counted with Vigil's own CountingAlloc.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
#[path = "support/quick.rs"]
mod quick;

use criterion::{BenchmarkId, Criterion};
use vigil::features::{FeatureVector, Horizons, SignalKind, SignalSet, SignalSpec, Unit, Window};

#[global_allocator]
static ALLOC: vigil::CountingAlloc = vigil::CountingAlloc::system();

const SIGNALS: usize = 64;

fn signals() -> SignalSet {
    SignalSet::new(
        (0..SIGNALS)
            .map(|i| {
                let kind = if i % 2 == 0 {
                    SignalKind::Gauge
                } else {
                    SignalKind::Counter
                };
                SignalSpec::named(format!("s{i}"), Unit::Count, kind)
            })
            .collect(),
    )
    .unwrap()
}

fn row(i: u64, out: &mut [f64]) {
    for (j, v) in out.iter_mut().enumerate() {
        *v = (i * (j as u64 + 1)) as f64 + (i % 13) as f64;
    }
}

/// The obvious implementation: copy each horizon into a Vec, then compute.
fn naive_extract(history: &[(f64, Vec<f64>)], out: &mut Vec<f64>) {
    out.clear();
    for s in 0..SIGNALS {
        for k in [10usize, 60] {
            let tail = &history[history.len().saturating_sub(k)..];
            let xs: Vec<f64> = tail
                .iter()
                .map(|r| r.1[s])
                .filter(|x| !x.is_nan())
                .collect();
            let ts: Vec<f64> = tail.iter().map(|r| r.0).collect();
            let n = xs.len() as f64;
            let mean = xs.iter().sum::<f64>() / n;
            let mt = ts.iter().sum::<f64>() / ts.len() as f64;
            let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
            let cov: f64 = ts.iter().zip(&xs).map(|(t, x)| (t - mt) * (x - mean)).sum();
            let vt: f64 = ts.iter().map(|t| (t - mt).powi(2)).sum();
            out.extend([
                mean,
                var.sqrt(),
                xs.iter().cloned().fold(f64::MIN, f64::max),
                cov / vt,
            ]);
        }
    }
}

fn bench(c: &mut Criterion) {
    let set = signals();
    let mut g = c.benchmark_group("features_64_signals_60_ticks");

    let mut w = Window::new(&set, Horizons::default());
    let mut fv = FeatureVector::new(w.schema());
    let mut r = vec![0.0; SIGNALS];
    let mut i = 0u64;
    for _ in 0..120 {
        i += 1;
        row(i, &mut r);
        w.push(i as f64, &r).unwrap();
    }
    g.bench_function(BenchmarkId::new("push_only", SIGNALS), |b| {
        b.iter(|| {
            i += 1;
            row(i, &mut r);
            w.push(i as f64, &r).unwrap();
        })
    });
    g.bench_function(BenchmarkId::new("push_extract", SIGNALS), |b| {
        b.iter(|| {
            i += 1;
            row(i, &mut r);
            w.push(i as f64, &r).unwrap();
            w.extract(&mut fv).unwrap();
        })
    });

    let mut history: Vec<(f64, Vec<f64>)> = (0..60u64)
        .map(|k| {
            let mut v = vec![0.0; SIGNALS];
            row(k, &mut v);
            (k as f64, v)
        })
        .collect();
    let mut out = Vec::new();
    let mut k = 60u64;
    g.bench_function(BenchmarkId::new("naive_push_extract", SIGNALS), |b| {
        b.iter(|| {
            k += 1;
            let mut v = vec![0.0; SIGNALS];
            row(k, &mut v);
            history.remove(0);
            history.push((k as f64, v));
            naive_extract(&history, &mut out);
        })
    });
    g.finish();

    // Allocations per tick after warm-up (this thread only allocates here).
    let before = vigil::alloc_stats();
    for _ in 0..10_000 {
        i += 1;
        row(i, &mut r);
        w.push(i as f64, &r).unwrap();
        w.extract(&mut fv).unwrap();
    }
    let after = vigil::alloc_stats();
    println!(
        "allocations per push+extract tick after warm-up: {:.3} ({} in 10000 ticks)",
        (after.allocations - before.allocations) as f64 / 10_000.0,
        after.allocations - before.allocations
    );
}

quick_criterion_main!(bench);
