//! Cost of `#[vigil::observe]` per call, in one run: an uninstrumented baseline, the attribute with
//! literal labels, with a label taken from an argument, switched off (`ENABLE_AI_OBSERVABILITY=false`),
//! and the same function under `#[autometrics]` (autometrics-rs 3, prometheus-client backend) as the
//! peer. Successful calls: the common case on a serving path.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
#[path = "support/quick.rs"]
mod quick;

use std::hint::black_box;
use std::time::Duration;

use criterion::Criterion;

#[derive(Debug)]
struct ModelError;
impl std::fmt::Display for ModelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("model error")
    }
}
impl std::error::Error for ModelError {}

#[inline(never)]
fn baseline(x: f32) -> Result<f32, ModelError> {
    if x.is_nan() {
        Err(ModelError)
    } else {
        Ok(x * 2.0 + 1.0)
    }
}

#[inline(never)]
#[vigil::observe(model = "bench-model", stage = "predict")]
fn observed(x: f32) -> Result<f32, ModelError> {
    if x.is_nan() {
        Err(ModelError)
    } else {
        Ok(x * 2.0 + 1.0)
    }
}

#[inline(never)]
#[vigil::observe(model = model_id, stage = "predict")]
fn observed_dynamic(model_id: &str, x: f32) -> Result<f32, ModelError> {
    if x.is_nan() {
        Err(ModelError)
    } else {
        Ok(x * 2.0 + 1.0)
    }
}

#[inline(never)]
#[autometrics::autometrics]
fn autometrics_peer(x: f32) -> Result<f32, ModelError> {
    if x.is_nan() {
        Err(ModelError)
    } else {
        Ok(x * 2.0 + 1.0)
    }
}

fn bench(c: &mut Criterion) {
    autometrics::settings::AutometricsSettings::builder().init();
    vigil::observe::set_enabled(true);
    // As in a served process: the agent's tick or a scrape reads the series, which decides and then
    // calibrates the calls' clock (50 ms apart); calls before that use the monotonic clock.
    let _ = vigil::observe::totals();
    std::thread::sleep(Duration::from_millis(60));
    let _ = vigil::observe::totals();
    println!("observe clock: {}", vigil::observe::clock_source());
    let model = String::from("llama-3-8b");
    let mut g = c.benchmark_group("observe_call");
    g.bench_function("baseline", |b| b.iter(|| baseline(black_box(1.5))));
    g.bench_function("vigil_observe", |b| b.iter(|| observed(black_box(1.5))));
    g.bench_function("vigil_observe_dynamic_label", |b| {
        b.iter(|| observed_dynamic(black_box(&model), black_box(1.5)))
    });
    vigil::observe::set_enabled(false);
    g.bench_function("vigil_observe_disabled", |b| {
        b.iter(|| observed(black_box(1.5)))
    });
    vigil::observe::set_enabled(true);
    g.bench_function("autometrics", |b| {
        b.iter(|| autometrics_peer(black_box(1.5)))
    });
    g.finish();
}

quick_criterion_main!(bench);
