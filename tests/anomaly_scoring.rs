//! The agent scores every tick: a cold start trains on its own warm-up; a model file from training loads
//! at start; a wrong or damaged model stops start-up with the reason.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use support::*;
use vigil::features::Horizons;
use vigil::gpu::FakeGpu;
use vigil::models::{KMeansDetector, KMeansParams, ModelFile, TrainingSummary};

fn quick(tick_ms: u64) -> vigil::AgentBuilder {
    fast_agent(tick_ms)
        .horizons(Horizons::new(5, 20).unwrap())
        .warm_up(Duration::from_secs(1))
}

#[test]
fn cold_start_trains_then_flags_a_task_leak() {
    let rt = host_runtime();
    let agent = quick(20).start(rt.handle()).unwrap();
    let s = scrape(agent.local_addr());
    assert!(
        s.value("vigil_anomaly_score").is_nan(),
        "no model before the warm-up"
    );
    assert_eq!(s.value("vigil_anomaly_threshold"), 0.5);

    // Warm-up: 20 ticks to fill the window, then 50 windows; training takes a moment on its thread.
    let mut ready = false;
    for _ in 0..60 {
        next_samples(&agent, 5);
        if scrape(agent.local_addr())
            .value("vigil_anomaly_score")
            .is_finite()
        {
            ready = true;
            break;
        }
    }
    assert!(ready, "no model after the warm-up");
    let s = scrape(agent.local_addr());
    let info =
        s.0.keys()
            .find(|k| k.starts_with("vigil_model_info{"))
            .unwrap()
            .clone();
    assert!(
        info.contains("kind=\"kmeans\"") && info.contains(&agent.feature_schema().hash_hex()),
        "{info}"
    );
    assert!(s.value("vigil_model_trained_timestamp_seconds") > 1.7e9);
    assert_eq!(s.value("vigil_model_trainings_total{result=\"ok\"}"), 1.0);
    assert_eq!(s.value("vigil_anomaly_event_open"), 0.0);
    // Drift by default: the model brought the reference of its training windows.
    next_samples(&agent, 3);
    let s = scrape(agent.local_addr());
    assert!(
        s.value("vigil_feature_drift_max_psi").is_finite(),
        "drift against the model's training windows from its install on"
    );

    // A leak of 5,000 tasks.
    let (tx, _) = tokio::sync::broadcast::channel::<()>(1);
    for _ in 0..5000 {
        let mut rx = tx.subscribe();
        rt.spawn(async move {
            let _ = rx.recv().await;
        });
    }
    let mut events = agent.subscribe_events();
    let mut flagged = false;
    for _ in 0..30 {
        next_samples(&agent, 1);
        if scrape(agent.local_addr()).value("vigil_anomaly") == 1.0 {
            flagged = true;
            break;
        }
    }
    assert!(flagged, "5,000 leaked tasks were never flagged");
    // One event, typed from the signal family that moved, on /metrics and to subscribers. It opens
    // once enough windows are anomalous (3 of 5): the first flagged window may come a tick or two
    // before it.
    let mut s = scrape(agent.local_addr());
    for _ in 0..10 {
        if s.value("vigil_anomaly_event_open") == 1.0 {
            break;
        }
        next_samples(&agent, 1);
        s = scrape(agent.local_addr());
    }
    assert_eq!(s.value("vigil_anomaly_event_open"), 1.0);
    assert_eq!(
        s.value("vigil_anomaly_events_total{anomaly_type=\"task_leak\"}"),
        1.0
    );
    let opened = loop {
        match events.try_recv() {
            Ok(vigil::EventNotice::Opened(e)) => break e,
            Ok(_) => {}
            Err(e) => panic!("no event notice: {e:?}"),
        }
    };
    assert_eq!(opened.anomaly_type, vigil::models::AnomalyKind::TaskLeak);
    assert!(opened.top_features[0].0.starts_with("tokio_alive_tasks"));
    assert_eq!(agent.current_event().map(|e| e.id), Some(opened.id));
    drop(tx);
}

#[test]
fn model_file_loads_at_start_and_wrong_models_are_refused() {
    let rt = host_runtime();
    let dir = std::env::temp_dir().join(format!("vigil-agent-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // Train offline on this agent's own features.
    let source = quick(20).start(rt.handle()).unwrap();
    let mut rx = source.subscribe_features();
    let rows: Vec<Vec<f64>> = {
        let rt2 = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt2.block_on(async {
            let mut out = Vec::new();
            while out.len() < 100 {
                rx.changed().await.unwrap();
                let fv = rx.borrow_and_update().clone();
                out.push(fv.values().to_vec());
            }
            out
        })
    };
    let schema = source.feature_schema().clone();
    let detector = KMeansDetector::fit(
        schema.names(),
        schema.units(),
        rows[30..].iter().map(|r| &r[..]),
        KMeansParams::default(),
    )
    .unwrap();
    let path = dir.join("model.json");
    ModelFile::new(
        &schema,
        detector,
        TrainingSummary {
            short_horizon: 5,
            long_horizon: 20,
            ..Default::default()
        },
    )
    .save(&path)
    .unwrap();
    drop(source);

    let agent = quick(20).model_path(&path).start(rt.handle()).unwrap();
    let s = scrape(agent.local_addr());
    assert!(
        s.names().iter().any(|n| n == "vigil_model_info"),
        "model info from the first scrape"
    );
    next_samples(&agent, 25);
    assert!(
        scrape(agent.local_addr())
            .value("vigil_anomaly_score")
            .is_finite()
    );

    // The same model for an agent with a GPU (other signals): refused with the reason.
    let err = quick(20)
        .gpu_source(FakeGpu::steady(1 << 30, 1 << 20))
        .model_path(&path)
        .start(rt.handle())
        .unwrap_err();
    assert!(matches!(err, vigil::Error::Model { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("the model was not trained on `gpu0_"),
        "names the signals that differ: {err}"
    );
    assert!(
        std::error::Error::source(&err).is_some(),
        "keeps its source"
    );
    assert!(err.to_string().contains("schema"), "{err}");

    // A damaged file.
    let broken = dir.join("broken.json");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&broken, &text[..text.len() - 10]).unwrap();
    let err = quick(20)
        .model_path(&broken)
        .start(rt.handle())
        .unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");

    // From the environment: the error names the variable and what to do.
    let missing = dir.join("missing.json");
    let err = quick(20)
        .from_lookup(|k| (k == "VIGIL_MODEL").then(|| missing.clone().into_os_string()))
        .unwrap()
        .start(rt.handle())
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("VIGIL_MODEL={}", missing.display()))
            && msg.contains("unset VIGIL_MODEL"),
        "{msg}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
