//! GPU signals: a scripted fake GPU drives the gauges; without NVML the agent runs with `available 0`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::*;
use vigil::gpu::{FakeGpu, GpuError, GpuReading};

const GIB: u64 = 1 << 30;

#[test]
fn fake_gpu_memory_leak_is_followed_by_the_gauges() {
    let rt = host_runtime();
    let agent = fast_agent(100)
        .gpu_source(FakeGpu::leaking(80 * GIB, 10 * GIB, GIB / 4))
        .start(rt.handle())
        .unwrap();
    let samples = next_samples(&agent, 4);
    let used: Vec<f64> = samples
        .iter()
        .map(|s| signal(s, "gpu0_memory_used_bytes"))
        .collect();
    assert!(used.windows(2).all(|w| w[1] > w[0]), "{used:?}");
    assert_eq!(
        signal(&samples[3], "gpu0_memory_total_bytes"),
        (80 * GIB) as f64
    );

    let s = scrape(agent.local_addr());
    let labels = "{gpu=\"0\",uuid=\"GPU-00000000-0000-0000-0000-000000000000\"}";
    assert_eq!(s.value("vigil_gpu_available"), 1.0);
    let first = s.value(&format!("vigil_gpu_memory_used_bytes{labels}"));
    assert!(first > (10 * GIB) as f64);
    assert_eq!(
        s.value(&format!("vigil_gpu_memory_total_bytes{labels}")),
        (80 * GIB) as f64
    );
    assert_eq!(
        s.value(&format!("vigil_gpu_utilization_ratio{labels}")),
        0.35
    );
    next_samples(&agent, 2);
    let later = scrape(agent.local_addr()).value(&format!("vigil_gpu_memory_used_bytes{labels}"));
    assert!(later > first, "{later} <= {first}");
}

#[test]
fn failing_gpu_is_counted_and_the_agent_keeps_going() {
    let rt = host_runtime();
    let gpu = FakeGpu::new(2, |tick, out| {
        if tick % 2 == 1 {
            return Err(GpuError::Device {
                index: 1,
                message: "GPU has fallen off the bus".into(),
            });
        }
        for r in out.iter_mut() {
            *r = GpuReading::memory(1e9, 8e9);
        }
        Ok(())
    });
    let agent = fast_agent(50).gpu_source(gpu).start(rt.handle()).unwrap();
    let samples = next_samples(&agent, 4);
    let missing = samples
        .iter()
        .filter(|s| signal(s, "gpu1_memory_used_bytes").is_nan())
        .count();
    assert!((1..=3).contains(&missing), "{missing} of 4 ticks missing");
    // Other collectors are unaffected on failing ticks.
    assert!(samples.iter().all(|s| signal(s, "tokio_workers") == 2.0));
    let s = scrape(agent.local_addr());
    assert!(s.value("vigil_agent_collector_errors_total{collector=\"gpu\"}") >= 1.0);
    assert_eq!(get(agent.local_addr(), "/healthz", &[]).status, 200);
}

#[test]
fn without_nvml_the_agent_runs_with_gpu_available_zero() {
    let nvml_present = vigil::gpu::NvmlSource::init().is_ok();
    let rt = host_runtime();
    let agent = fast_agent(100)
        .gpu(vigil::GpuMode::Auto)
        .start(rt.handle())
        .unwrap();
    next_samples(&agent, 2);
    let s = scrape(agent.local_addr());
    let expected = if nvml_present { 1.0 } else { 0.0 };
    assert_eq!(s.value("vigil_gpu_available"), expected);
    if !nvml_present {
        assert!(!s.names().iter().any(|n| n.starts_with("vigil_gpu_memory")));
        assert_eq!(
            s.value("vigil_agent_collector_errors_total{collector=\"gpu\"}"),
            0.0
        );
    }
    assert_eq!(get(agent.local_addr(), "/healthz", &[]).status, 200);
}

#[test]
fn requiring_nvml_fails_start_with_advice_when_it_is_absent() {
    let rt = host_runtime();
    let started = fast_agent(100).gpu(vigil::GpuMode::Nvml).start(rt.handle());
    if vigil::gpu::NvmlSource::init().is_ok() {
        // A GPU host: the requirement is met and devices are exported.
        let agent = started.unwrap();
        next_samples(&agent, 1);
        assert_eq!(scrape(agent.local_addr()).value("vigil_gpu_available"), 1.0);
    } else {
        let err = started.unwrap_err();
        assert!(err.to_string().contains("VIGIL_GPU=auto"), "{err}");
    }
}
