//! Window features and drift as a user sees them: on /metrics, per tick, and against a reference.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;

use support::*;
use vigil::features::FeatureVector;
use vigil::features::drift::DriftReference;
use vigil::gpu::FakeGpu;

/// The next `n` ticks' feature vectors.
fn next_features(agent: &vigil::AgentHandle, n: usize) -> Vec<Arc<FeatureVector>> {
    next_values(agent.subscribe_features(), n)
}

fn feature(agent: &vigil::AgentHandle, fv: &FeatureVector, name: &str) -> f64 {
    let i = agent
        .feature_schema()
        .names()
        .iter()
        .position(|n| n == name)
        .unwrap_or_else(|| panic!("no feature {name}"));
    fv.values()[i]
}

#[test]
fn features_follow_the_signals_and_are_exported() {
    let rt = host_runtime();
    let agent = fast_agent(50).start(rt.handle()).unwrap();
    next_samples(&agent, 3);
    let (tx, _) = tokio::sync::broadcast::channel::<()>(1);
    for _ in 0..500 {
        let mut rx = tx.subscribe();
        rt.spawn(async move {
            let _ = rx.recv().await;
        });
    }
    let fv = next_features(&agent, 3).pop().unwrap();
    assert!(feature(&agent, &fv, "tokio_alive_tasks.last") >= 500.0);
    // The task count jumped within the short horizon: its short max and its change are large.
    assert!(feature(&agent, &fv, "tokio_alive_tasks.max_10") >= 500.0);
    assert!(feature(&agent, &fv, "tokio_alive_tasks.change_60") > 100.0);
    // Counters arrive as rates.
    assert!(feature(&agent, &fv, "sched_probes_rate.last") > 0.0);

    let s = scrape(agent.local_addr());
    assert!(s.value("vigil_feature_value{feature=\"tokio_alive_tasks.last\"}") >= 500.0);
    let exported = s
        .names()
        .iter()
        .filter(|n| *n == "vigil_feature_value")
        .count();
    assert_eq!(exported, agent.feature_schema().len());
    drop(tx);
}

#[test]
fn feature_metrics_can_be_switched_off() {
    let rt = host_runtime();
    let agent = fast_agent(50)
        .feature_metrics(false)
        .start(rt.handle())
        .unwrap();
    next_samples(&agent, 2);
    let s = scrape(agent.local_addr());
    assert!(!s.names().iter().any(|n| n == "vigil_feature_value"));
    // The features are still computed.
    assert!(agent.latest_features().mask().iter().any(|m| *m));
}

#[test]
fn a_host_with_a_gpu_has_its_own_schema_and_foreign_references_are_refused() {
    let rt = host_runtime();
    let plain = fast_agent(50).start(rt.handle()).unwrap();
    let gpu = fast_agent(50)
        .gpu_source(FakeGpu::steady(8 << 30, 1 << 30))
        .start(rt.handle())
        .unwrap();
    assert_ne!(plain.feature_schema().hash(), gpu.feature_schema().hash());
    assert!(
        gpu.feature_schema()
            .names()
            .iter()
            .any(|n| n.starts_with("gpu0_memory_used_bytes."))
    );

    let rows = next_features(&gpu, 25);
    let reference =
        DriftReference::fit(gpu.feature_schema(), rows.iter().map(|f| f.values())).unwrap();
    let err = plain.set_drift_reference(reference.clone()).unwrap_err();
    assert!(err.to_string().contains("schema"), "{err}");
    gpu.set_drift_reference(reference).unwrap();
}

#[test]
fn drift_against_a_quiet_reference_flags_the_shifted_feature() {
    let rt = host_runtime();
    let agent = fast_agent(50).drift_window(20).start(rt.handle()).unwrap();
    let s = scrape(agent.local_addr());
    assert!(
        s.value("vigil_feature_drift_max_psi").is_nan(),
        "no reference yet"
    );

    // Reference: a quiet runtime.
    let rows = next_features(&agent, 40);
    let reference =
        DriftReference::fit(agent.feature_schema(), rows.iter().map(|f| f.values())).unwrap();
    agent.set_drift_reference(reference).unwrap();

    // Then 2,000 more tasks stay alive (a task leak).
    let (tx, _) = tokio::sync::broadcast::channel::<()>(1);
    for _ in 0..2000 {
        let mut rx = tx.subscribe();
        rt.spawn(async move {
            let _ = rx.recv().await;
        });
    }
    next_samples(&agent, 25);
    let s = scrape(agent.local_addr());
    let psi = s.value("vigil_feature_drift_psi{feature=\"tokio_alive_tasks.last\"}");
    assert!(psi > 0.25, "PSI of the leaking task count {psi}");
    assert!(s.value("vigil_feature_drift_max_psi") >= psi);
    drop(tx);
}
