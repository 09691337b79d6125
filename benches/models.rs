//! Detector costs: scoring one window (64 and 360 features) beside the feature extraction that precedes
//! it, and training the unsupervised detector on 100,000 windows x 64 features.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
#[path = "support/quick.rs"]
mod quick;

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion};
use ndarray::ArrayView1;
use vigil::models::{Detector, KMeansDetector, KMeansParams};

fn rows(n: usize, width: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut x = seed;
    (0..n)
        .map(|i| {
            (0..width)
                .map(|j| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let mode = (i % 4) as f64 * 3.0;
                    mode + (j % 5) as f64 + (x % 1000) as f64 / 1000.0
                })
                .collect()
        })
        .collect()
}

fn names(width: usize) -> Vec<String> {
    (0..width).map(|i| format!("s{i}.last")).collect()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("detector");
    for width in [64usize, 360] {
        let train = rows(5000, width, 1);
        let d = KMeansDetector::fit(
            &names(width),
            &vec!["count".to_owned(); width],
            train.iter().map(|r| &r[..]),
            KMeansParams::default(),
        )
        .unwrap();
        let probe = rows(1, width, 9).pop().unwrap();
        g.bench_with_input(BenchmarkId::new("score_window", width), &width, |b, _| {
            b.iter(|| d.score(ArrayView1::from(black_box(&probe[..]))).value)
        });
        // Baseline: copying the window (what any scorer must at least read).
        g.bench_with_input(
            BenchmarkId::new("baseline_copy_window", width),
            &width,
            |b, _| b.iter(|| black_box(probe.clone())),
        );
    }
    g.finish();

    let mut g = c.benchmark_group("train");
    g.sample_size(10).measurement_time(Duration::from_secs(30));
    let big = rows(100_000, 64, 3);
    g.bench_function(BenchmarkId::new("kmeans_fit_100k_windows", 64), |b| {
        b.iter(|| {
            KMeansDetector::fit(
                &names(64),
                &vec!["count".to_owned(); 64],
                big.iter().map(|r| &r[..]),
                KMeansParams::default(),
            )
            .unwrap()
            .threshold
        })
    });
    g.finish();
}

quick_criterion_main!(bench);
