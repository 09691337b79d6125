//! The feedback loop end to end on real servers: Debian's Prometheus and Alertmanager on 127.0.0.1
//! (1 s scrape and evaluation, the shipped `deploy/prometheus/rules.yml`), `vigil demo` injecting faults;
//! the rule fires, Alertmanager calls the agent's webhook, the label is stored (and closed when the
//! alert resolves), a person marks the second event `normal`, a retrain runs and its outcome is
//! counted. The test stops exactly the processes it started.
//!
//! Needs `prometheus` and `prometheus-alertmanager` on the PATH (`scripts/test` installs both).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// Children killed and reaped when the test ends, however it ends: only the ones it started.
struct Procs(Vec<(&'static str, Child)>);

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn json(r: &Response) -> serde_json::Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.body))
}

/// Polls `f` every 200 ms until it returns `Some`, at most `secs`.
fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn try_get(addr: SocketAddr, path: &str) -> Option<Response> {
    try_send(addr, "GET", path, &[], b"").ok()
}

#[test]
fn alerts_become_labels_a_verdict_and_a_retrain_follow() {
    for bin in ["prometheus", "prometheus-alertmanager"] {
        assert!(
            Command::new(bin).arg("--version").output().is_ok(),
            "`{bin}` is not installed: run ./scripts/test, which installs Debian's prometheus and \
             prometheus-alertmanager"
        );
    }
    let dir = temp_dir("e2e");
    std::fs::create_dir_all(&dir).unwrap();
    let (agent_port, prom_port, am_port) = (free_port(), free_port(), free_port());
    let agent: SocketAddr = format!("127.0.0.1:{agent_port}").parse().unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [\"127.0.0.1:{am_port}\"]\n\
             rule_files:\n  - rules.yml\n\
             scrape_configs:\n  - job_name: vigil\n    static_configs:\n      - targets: [\"127.0.0.1:{agent_port}\"]\n"
        ),
    )
    .unwrap();
    // The rules Vigil ships (deploy/prometheus/rules.yml).
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus/rules.yml"),
        dir.join("rules.yml"),
    )
    .unwrap();
    std::fs::write(
        dir.join("alertmanager.yml"),
        format!(
            "route:\n  receiver: vigil\n  group_by: [\"alertname\", \"event_id\"]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
             receivers:\n  - name: vigil\n    webhook_configs:\n      - url: \"http://{agent}/api/v1/alertmanager\"\n        send_resolved: true\n"
        ),
    )
    .unwrap();
    let log = |name: &str| std::fs::File::create(dir.join(name)).unwrap();
    let mut procs = Procs(Vec::new());
    procs.0.push((
        "alertmanager",
        Command::new("prometheus-alertmanager")
            .arg(format!(
                "--config.file={}",
                dir.join("alertmanager.yml").display()
            ))
            .arg(format!("--storage.path={}", dir.join("am").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(log("alertmanager.log"))
            .spawn()
            .unwrap(),
    ));
    procs
        .0
        .push(("prometheus", start_prometheus(&dir, prom_port)));
    // The agent under injected faults: `vigil demo` (a task leak, then a memory leak), its store in
    // the test's directory.
    procs.0.push((
        "vigil demo",
        Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args([
                "demo",
                "--duration",
                "150",
                "--quiet",
                "--tick",
                "100ms",
                "--faults",
                "task_leak,memory_leak",
                "--listen",
                &agent.to_string(),
            ])
            .env("VIGIL_WARMUP", "5s")
            .env("VIGIL_DATA_DIR", dir.join("data"))
            .stdout(log("demo.out"))
            .stderr(log("demo.err"))
            .spawn()
            .unwrap(),
    ));
    let prom: SocketAddr = format!("127.0.0.1:{prom_port}").parse().unwrap();
    wait_for("Prometheus ready", 60, || {
        try_get(prom, "/-/ready").filter(|r| r.status == 200)
    });

    // 1. An event opens, the rule fires, Alertmanager posts it: an alertmanager label is stored.
    let label = wait_for("a label from Alertmanager", 120, || {
        let r = try_get(agent, "/api/v1/labels")?;
        let v = json(&r);
        v["labels"]
            .as_array()?
            .iter()
            .find(|l| l["source"] == "alertmanager")
            .cloned()
    });
    assert_eq!(label["label"], "anomaly");
    // The shipped rule carries the event's type into the alert, and the webhook into the label.
    assert!(
        label["anomaly_type"]
            .as_str()
            .is_some_and(|t| vigil::models::AnomalyKind::parse(t).is_some()),
        "{label}"
    );
    assert!(label["fingerprint"].as_str().is_some_and(|f| !f.is_empty()));
    // 2. The event ends, the alert resolves, the interval closes.
    let fp = label["fingerprint"].clone();
    wait_for("the resolved notification", 120, || {
        let v = json(&try_get(agent, "/api/v1/labels")?);
        v["labels"]
            .as_array()?
            .iter()
            .find(|l| l["fingerprint"] == fp && !l["end"].is_null())
            .cloned()
    });
    // 3. A second event: a person says it was a false alarm.
    let second = wait_for("a second event", 120, || {
        let v = json(&try_get(agent, "/api/v1/events")?);
        let evs = v["events"].as_array()?.clone();
        (evs.len() >= 2).then(|| evs[1]["id"].as_u64().unwrap())
    });
    let r = send(
        agent,
        "POST",
        &format!("/api/v1/events/{second}/verdict"),
        &[("content-type", "application/json")],
        br#"{"label":"normal","note":"planned load test"}"#,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(json(&r)["event_id"], second);
    // 4. A retrain runs (asked for, rather than waiting for the schedule) and its outcome is counted.
    let before = json(&get(agent, "/api/v1/status", &[]))["last_retrain"]["at"].clone();
    let r = send(agent, "POST", "/api/v1/model/retrain", &[], b"");
    assert_eq!(r.status, 202, "{}", r.body);
    let st = wait_for("the retrain's outcome", 120, || {
        let st = json(&try_get(agent, "/api/v1/status")?);
        (st["last_retrain"]["at"] != before && !st["last_retrain"].is_null()).then_some(st)
    });
    let outcome = st["last_retrain"]["outcome"].as_str().unwrap().to_owned();
    let m = scrape(agent);
    assert_eq!(
        m.value(&format!("vigil_retrain_total{{outcome=\"{outcome}\"}}")),
        1.0,
        "{st}"
    );
    assert!(m.value("vigil_labels_total{source=\"alertmanager\"}") >= 2.0);
    assert!(m.value("vigil_labels_total{source=\"human\"}") >= 1.0);
    // Prometheus saw the agent and the alert: the loop ran through the real servers.
    let r = get(
        prom,
        "/api/v1/query?query=ALERTS%7Balertname%3D%22VigilAnomalyEvent%22%7D",
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    drop(procs);
    let _ = std::fs::remove_dir_all(&dir);
}
