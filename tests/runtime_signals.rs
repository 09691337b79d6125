//! Runtime signals as a user sees them on /metrics: tasks, scheduler stalls, health, shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use support::*;

#[test]
fn thousand_parked_tasks_show_within_two_ticks() {
    let rt = host_runtime();
    let agent = fast_agent(200).start(rt.handle()).unwrap();
    next_samples(&agent, 1);
    let (tx, _) = tokio::sync::broadcast::channel::<()>(1);
    for _ in 0..1000 {
        let mut rx = tx.subscribe();
        rt.spawn(async move {
            let _ = rx.recv().await;
        });
    }
    let samples = next_samples(&agent, 2);
    let alive = signal(&samples[1], "tokio_alive_tasks");
    assert!(alive >= 1000.0, "alive tasks {alive} after two ticks");
    let scraped = scrape(agent.local_addr()).value("vigil_tokio_alive_tasks");
    assert!(scraped >= 1000.0, "/metrics shows {scraped}");
    assert_eq!(scrape(agent.local_addr()).value("vigil_tokio_workers"), 2.0);

    drop(tx); // the tasks complete
    let after = next_samples(&agent, 2);
    assert!(signal(&after[1], "tokio_alive_tasks") < 100.0);
}

#[test]
fn every_worker_blocked_counts_a_stall_and_the_full_latency() {
    let rt = host_runtime();
    let agent = fast_agent(100)
        .probe_interval(Duration::from_millis(5))
        .stall_threshold(Duration::from_millis(100))
        .start(rt.handle())
        .unwrap();
    next_samples(&agent, 2);
    let before = scrape(agent.local_addr());
    assert_eq!(before.value("vigil_sched_stalls_total"), 0.0);

    // Both workers block the thread (the classic mistake: std::thread::sleep in async code).
    let barrier = Arc::new(Barrier::new(2));
    for _ in 0..2 {
        let b = barrier.clone();
        rt.spawn(async move {
            b.wait();
            std::thread::sleep(Duration::from_millis(300));
        });
    }
    let samples = next_samples(&agent, 6);
    let max = samples
        .iter()
        .map(|s| signal(s, "sched_latency_max_seconds"))
        .fold(0.0, f64::max);
    assert!(max >= 0.25, "sched latency max over the stall was {max}s");
    let stalls = signal(samples.last().unwrap(), "sched_stalls");
    assert!(stalls >= 1.0, "stalls {stalls}");

    let after = scrape(agent.local_addr());
    assert!(after.value("vigil_sched_stalls_total") >= 1.0);
    // The histogram holds an observation above 250 ms.
    let le_250ms = after.value("vigil_sched_latency_seconds_bucket{le=\"0.25\"}");
    let count = after.value("vigil_sched_latency_seconds_count");
    assert!(
        count > le_250ms,
        "no probe above 250 ms: {le_250ms} of {count}"
    );
}

#[test]
fn healthz_reports_ticks_and_unknown_paths_get_json_errors() {
    let rt = host_runtime();
    let agent = fast_agent(100).start(rt.handle()).unwrap();
    next_samples(&agent, 1);
    let r = get(agent.local_addr(), "/healthz", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("\"status\":\"ok\""), "{}", r.body);
    let r = get(agent.local_addr(), "/nope", &[]);
    assert_eq!(r.status, 404);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r.body.contains("GET /metrics"), "{}", r.body);
    // A known path with the wrong method: 405, and JSON like every other error.
    // The reply names the methods the path takes (and says so in `Allow`).
    for (method, path, takes) in [
        ("POST", "/metrics", "GET"),
        ("DELETE", "/healthz", "GET"),
        ("PUT", "/metrics", "GET"),
        ("GET", "/api/v1/alertmanager", "POST"),
        ("GET", "/api/v1/model/reload", "POST"),
        ("DELETE", "/api/v1/labels", "GET or POST"),
    ] {
        let r = request(agent.local_addr(), method, path, &[]);
        assert_eq!(r.status, 405, "{method} {path}");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert!(
            r.body.starts_with("{\"error\":")
                && r.body.contains(method)
                && r.body.contains(&format!("it takes {takes}")),
            "{method} {path}: {}",
            r.body
        );
        assert_eq!(
            r.header("allow"),
            Some(takes.replace(" or ", ", ").as_str())
        );
    }
}

/// Collects what `tracing` writes, for tests that check a log line.
#[derive(Clone, Default)]
struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn binding_off_loopback_says_once_what_is_exposed() {
    let rt = host_runtime();
    let logs = LogBuffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer({
            let logs = logs.clone();
            move || logs.clone()
        })
        .finish();
    let agent = tracing::subscriber::with_default(subscriber, || {
        fast_agent(100)
            .listen("0.0.0.0:0".parse().unwrap())
            .start(rt.handle())
            .unwrap()
    });
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert_eq!(
        text.matches("reachable from other hosts").count(),
        1,
        "{text}"
    );
    assert!(text.contains("WARN") && text.contains("/metrics"), "{text}");
    drop(agent);
    // On loopback: not a word about it.
    let logs = LogBuffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer({
            let logs = logs.clone();
            move || logs.clone()
        })
        .finish();
    let agent = tracing::subscriber::with_default(subscriber, || {
        fast_agent(100).start(rt.handle()).unwrap()
    });
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(!text.contains("reachable from other hosts"), "{text}");
    drop(agent);
}

#[test]
fn metrics_content_type_follows_accept() {
    let rt = host_runtime();
    let agent = fast_agent(100).start(rt.handle()).unwrap();
    next_samples(&agent, 1);
    let text = get(agent.local_addr(), "/metrics", &[]);
    assert_eq!(
        text.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let om = get(
        agent.local_addr(),
        "/metrics",
        &[("accept", "application/openmetrics-text; version=1.0.0")],
    );
    assert!(
        om.header("content-type")
            .is_some_and(|c| c.starts_with("application/openmetrics-text")),
        "{:?}",
        om.headers
    );
    assert!(om.body.trim_end().ends_with("# EOF"));
    assert!(Scrape::parse(&om.body).has("vigil_tokio_workers"));
}

#[test]
fn port_in_use_is_an_error_from_start_not_a_panic() {
    let rt = host_runtime();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let err = vigil::Agent::builder()
        .listen(addr)
        .gpu(vigil::GpuMode::Off)
        .start(rt.handle())
        .unwrap_err();
    assert!(matches!(err, vigil::Error::Bind { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&addr.to_string()) && msg.contains("VIGIL_LISTEN"),
        "{msg}"
    );
}

#[test]
fn shutdown_and_drop_release_the_port() {
    let rt = host_runtime();
    let agent = fast_agent(50).start(rt.handle()).unwrap();
    let addr = agent.local_addr();
    next_samples(&agent, 1);
    agent.shutdown();
    std::net::TcpListener::bind(addr).expect("port still held after shutdown");

    // With the store on: drop also ends the store thread and releases the data directory's lock.
    let dir = temp_dir("shutdown");
    let agent = vigil::Agent::builder()
        .listen(addr)
        .gpu(vigil::GpuMode::Off)
        .data_dir(Some(dir.clone()))
        .start(rt.handle())
        .unwrap();
    // A second agent on the same directory is refused while the first runs.
    let err = vigil::Agent::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .gpu(vigil::GpuMode::Off)
        .data_dir(Some(dir.clone()))
        .start(rt.handle())
        .unwrap_err()
        .to_string();
    assert!(err.contains("another process"), "{err}");
    drop(agent);
    std::net::TcpListener::bind(addr).expect("port still held after drop");
    let again = vigil::Agent::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .gpu(vigil::GpuMode::Off)
        .data_dir(Some(dir.clone()))
        .start(rt.handle())
        .expect("the data directory is free again after drop");
    drop(again);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn host_runtime_shutting_down_is_survived() {
    let rt = host_runtime();
    let agent = fast_agent(50).start(rt.handle()).unwrap();
    next_samples(&agent, 1);
    rt.shutdown_timeout(Duration::from_secs(1));
    // The agent keeps ticking and serving; the scheduler probe reports the runtime gone as a counted
    // collector error instead of stalls.
    next_samples(&agent, 3);
    let s = scrape(agent.local_addr());
    assert!(s.value("vigil_agent_collector_errors_total{collector=\"sched\"}") >= 1.0);
    assert_eq!(get(agent.local_addr(), "/healthz", &[]).status, 200);
}

#[cfg(tokio_unstable)]
#[test]
fn unstable_build_counts_spawns_and_polls() {
    let rt = host_runtime();
    let agent = fast_agent(100).start(rt.handle()).unwrap();
    let before = next_samples(&agent, 1).remove(0);
    for _ in 0..500 {
        rt.spawn(async { tokio::task::yield_now().await });
    }
    let after = next_samples(&agent, 2).remove(1);
    let spawned = signal(&after, "tokio_spawned_tasks") - signal(&before, "tokio_spawned_tasks");
    let polls = signal(&after, "tokio_polls") - signal(&before, "tokio_polls");
    assert!(spawned >= 500.0, "spawned {spawned}");
    assert!(polls >= 1000.0, "polls {polls}");
    let s = scrape(agent.local_addr());
    assert!(s.value("vigil_tokio_spawned_tasks_total") >= 500.0);
    assert!(s.value("vigil_tokio_blocking_threads").is_finite());
}
