//! One agent tick with every collector (tokio runtime, scheduler probe, allocations, process, a fake
//! GPU), the feature window and the anomaly score, and one `/metrics` encode, against a 2-worker host runtime. Baseline: an empty closure run the
//! same way (criterion's own overhead).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
#[path = "support/quick.rs"]
mod quick;

use criterion::Criterion;
use vigil::gpu::FakeGpu;

#[global_allocator]
static ALLOC: vigil::CountingAlloc = vigil::CountingAlloc::system();

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Some host tasks for the runtime monitor to count.
    let (tx, _) = tokio::sync::broadcast::channel::<()>(1);
    for _ in 0..100 {
        let mut rx = tx.subscribe();
        rt.spawn(async move {
            let _ = rx.recv().await;
        });
    }
    let mut builder =
        vigil::Agent::builder().gpu_source(FakeGpu::leaking(80 << 30, 1 << 30, 1 << 20));
    let (mut sampler, registry, _probe) = builder.build_sampler(rt.handle()).unwrap();
    sampler.tick();

    let mut g = c.benchmark_group("agent");
    g.bench_function("baseline_empty", |b| b.iter(|| std::hint::black_box(0)));
    g.bench_function("tick_all_collectors_fake_gpu", |b| {
        b.iter(|| sampler.tick().values().len())
    });
    g.bench_function("encode_metrics_text", |b| {
        b.iter(|| {
            let mut s = String::with_capacity(16 * 1024);
            prometheus_client::encoding::prometheus_text::encode(&mut s, &registry).unwrap();
            s.len()
        })
    });
    g.finish();
    // The cold start (300 windows at the default tick) has trained its model during the runs above, so
    // the measured ticks score too.
    println!(
        "scoring during the tick benchmark: {}",
        sampler.score().is_some()
    );
    drop(tx);
}

quick_criterion_main!(bench);
