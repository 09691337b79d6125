//! The local store through the agent's HTTP API, as an operator and Alertmanager use it: ticks and
//! events are stored, labels and verdicts go in, every bad request gets its 4xx with a message and
//! stores nothing, the webhook is idempotent, write access off loopback needs the token, and the CLI
//! reads the store while the agent writes it.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use support::cli::succeed;
use support::*;
use vigil::store::{LabelQuery, Store, Write};

const JSON: (&str, &str) = ("content-type", "application/json");

/// A bad request: method, path, headers, body, expected status, a phrase its error must contain.
type Case<'a> = (
    &'a str,
    &'a str,
    Vec<(&'a str, &'a str)>,
    Vec<u8>,
    u16,
    &'a str,
);

fn json(r: &Response) -> serde_json::Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.body))
}

fn labels(addr: std::net::SocketAddr) -> Vec<serde_json::Value> {
    labels_with(addr, &[])
}

fn labels_with(addr: std::net::SocketAddr, headers: &[(&str, &str)]) -> Vec<serde_json::Value> {
    let r = get(addr, "/api/v1/labels", headers);
    assert_eq!(r.status, 200, "{}", r.body);
    json(&r)["labels"].as_array().unwrap().clone()
}

fn event(id: u64, start: f64, end: f64) -> vigil::Event {
    let mut e = vigil::Event::open(
        id,
        start,
        start + 1.0,
        vigil::models::AnomalyKind::TaskLeak,
        0.8,
    );
    e.end = Some(end);
    e.ended = Some(vigil::models::EventEnd::Settled);
    e.peak_at = start + 2.0;
    e.top_features = vec![("tokio_alive_tasks.median_10".into(), 40.0)];
    e.windows = 9;
    e
}

#[test]
fn labels_verdicts_and_webhooks_through_the_api_and_every_bad_request_stores_nothing() {
    let rt = host_runtime();
    let dir = temp_dir("api");
    let agent = fast_agent(50)
        .data_dir(Some(dir.clone()))
        .start(rt.handle())
        .unwrap();
    let addr = agent.local_addr();
    next_samples(&agent, 5);

    // A label from a person.
    let body = br#"{"start":"2026-11-25T12:00:00Z","end":"2026-11-25T12:05:00Z","label":"anomaly","anomaly_type":"memory_leak","note":"RSS climbed"}"#;
    let r = send(addr, "POST", "/api/v1/labels", &[JSON], body);
    assert_eq!(r.status, 201, "{}", r.body);
    let l = json(&r);
    assert_eq!(l["source"], "human");
    assert_eq!(l["confidence"], 0.95);
    assert_eq!(l["anomaly_type"], "memory_leak");
    assert_eq!(l["end"], "2026-11-25T12:05:00.000Z");
    assert_eq!(labels(addr).len(), 1);

    // Every bad request: its status, a JSON error that says what is wrong, nothing stored.
    let big = vec![b' '; (1 << 20) + 10];
    let cases: Vec<Case> = vec![
        ("POST", "/api/v1/labels", vec![JSON], b"{not json".to_vec(), 400, "not the expected JSON"),
        ("POST", "/api/v1/labels", vec![JSON], br#"{"start":"2026-11-25T12:00:00Z","label":"anomaly"}"#.to_vec(), 400, "missing field `end`"),
        ("POST", "/api/v1/labels", vec![JSON], br#"{"start":"2026-11-25T12:00:00Z","end":"2026-11-25T12:01:00Z","label":"anomaly","colour":"red"}"#.to_vec(), 400, "unknown field `colour`"),
        ("POST", "/api/v1/labels", vec![JSON], br#"{"start":"2026-11-25T12:00:00Z","end":"2026-11-25T11:00:00Z","label":"anomaly"}"#.to_vec(), 400, "before start"),
        ("POST", "/api/v1/labels", vec![JSON], br#"{"start":"yesterday","end":"2026-11-25T11:00:00Z","label":"anomaly"}"#.to_vec(), 400, "`start` `yesterday`"),
        ("POST", "/api/v1/labels", vec![JSON], br#"{"start":"2026-11-25T12:00:00Z","end":"2026-11-25T12:01:00Z","label":"bad"}"#.to_vec(), 400, "`anomaly` or `normal`"),
        ("POST", "/api/v1/labels", vec![JSON], br#"{"start":"2026-11-25T12:00:00Z","end":"2026-11-25T12:01:00Z","label":"anomaly","anomaly_type":"gremlins"}"#.to_vec(), 400, "not one of"),
        ("POST", "/api/v1/labels", vec![("content-type", "text/plain")], br#"{}"#.to_vec(), 415, "not application/json"),
        ("POST", "/api/v1/labels", vec![JSON], big.clone(), 413, "larger than"),
        ("POST", "/api/v1/events/12345/verdict", vec![JSON], br#"{"label":"normal"}"#.to_vec(), 404, "no event 12345"),
        ("POST", "/api/v1/events/abc/verdict", vec![JSON], br#"{"label":"normal"}"#.to_vec(), 400, "not a number"),
        ("POST", "/api/v1/alertmanager", vec![JSON], br#"{"version":"3","alerts":[]}"#.to_vec(), 400, "version `3`"),
        ("POST", "/api/v1/alertmanager", vec![JSON], b"[1,2".to_vec(), 400, "not JSON"),
        ("POST", "/api/v1/alertmanager", vec![JSON], br#"{"version":"4","alerts":[{"status":"firing","labels":{},"startsAt":"2026-11-25T12:00:00Z","endsAt":"0001-01-01T00:00:00Z"}]}"#.to_vec(), 400, "no `fingerprint`"),
        ("GET", "/api/v1/labels?from=noon", vec![], vec![], 400, "not a time"),
        ("GET", "/api/v1/events?limit=0", vec![], vec![], 400, "limit"),
        ("GET", "/api/v1/events?colour=red", vec![], vec![], 400, "unknown query parameter"),
    ];
    for (method, path, headers, body, status, needle) in cases {
        let r = send(addr, method, path, &headers, &body);
        assert_eq!(r.status, status, "{method} {path}: {}", r.body);
        assert_eq!(r.header("content-type"), Some("application/json"), "{path}");
        let e = json(&r)["error"].as_str().unwrap().to_owned();
        assert!(
            e.contains(needle),
            "{method} {path}: `{e}` lacks `{needle}`"
        );
    }
    assert_eq!(labels(addr).len(), 1, "a bad request stored something");

    // Alertmanager: firing opens an interval, a repeat changes nothing, resolved closes it.
    let hook = |status: &str, ends: &str| {
        format!(
            r#"{{"version":"4","status":"{status}","receiver":"vigil","groupKey":"g","alerts":[{{"status":"{status}","labels":{{"alertname":"VigilAnomalyEvent","anomaly_type":"task_leak"}},"annotations":{{}},"startsAt":"2026-11-25T13:00:00Z","endsAt":"{ends}","fingerprint":"0123abcd"}}]}}"#
        )
        .into_bytes()
    };
    let firing = hook("firing", "0001-01-01T00:00:00Z");
    let r = send(addr, "POST", "/api/v1/alertmanager", &[JSON], &firing);
    assert_eq!(
        (r.status, json(&r)["opened"].as_u64()),
        (200, Some(1)),
        "{}",
        r.body
    );
    let r = send(addr, "POST", "/api/v1/alertmanager", &[JSON], &firing);
    assert_eq!(json(&r)["unchanged"], 1);
    let resolved = hook("resolved", "2026-11-25T13:02:00Z");
    let r = send(addr, "POST", "/api/v1/alertmanager", &[JSON], &resolved);
    assert_eq!(json(&r)["closed"], 1, "{}", r.body);
    let all = labels(addr);
    assert_eq!(all.len(), 2);
    let am = all.iter().find(|l| l["source"] == "alertmanager").unwrap();
    assert_eq!(am["end"], "2026-11-25T13:02:00.000Z");
    assert_eq!(am["confidence"], 0.65);

    // A verdict on an event: the event as the engine would have stored it (another connection
    // writes beside the agent's, as the CLI does), then a person says "false alarm".
    {
        let mut side = Store::open(&dir).unwrap();
        side.write_batch(&[Write::Event(event(900, 1_764_072_000.0, 1_764_072_060.0))])
            .unwrap();
    }
    let r = send(
        addr,
        "POST",
        "/api/v1/events/900/verdict",
        &[JSON],
        br#"{"label":"normal","note":"nightly batch job"}"#,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let v = json(&r);
    assert_eq!(
        (v["event_id"].as_u64(), v["label"].as_str()),
        (Some(900), Some("normal"))
    );
    let r = get(addr, "/api/v1/events?from=2025-11-25T12:00:00Z", &[]);
    let evs = json(&r)["events"].as_array().unwrap().clone();
    assert!(evs.iter().any(|e| e["id"] == 900), "{}", r.body);

    // Status: label counts by source and the store's size.
    let st = json(&get(addr, "/api/v1/status", &[]));
    assert_eq!(st["store"]["labels"]["human"], 2, "{st}");
    assert_eq!(st["store"]["labels"]["alertmanager"], 1, "{st}");
    assert!(st["store"]["ticks"].as_u64().unwrap() >= 1, "{st}");
    // Labels counted as a metric by source.
    let m = scrape(addr);
    assert_eq!(m.value("vigil_labels_total{source=\"human\"}"), 2.0);
    assert_eq!(m.value("vigil_labels_total{source=\"alertmanager\"}"), 2.0);
    agent.shutdown();

    // Everything acknowledged is on disk after shutdown; ticks were stored with their features.
    let s = Store::open_read_only(&dir).unwrap();
    assert_eq!(s.labels(&LabelQuery::default()).unwrap().len(), 3);
    let stats = s.stats().unwrap();
    assert!(stats.ticks >= 5, "{stats:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn write_endpoints_off_loopback_need_the_token_and_the_agent_refuses_to_start_without_one() {
    let rt = host_runtime();
    let dir = temp_dir("token");
    let err = fast_agent(50)
        .listen("0.0.0.0:0".parse().unwrap())
        .data_dir(Some(dir.clone()))
        .start(rt.handle())
        .unwrap_err()
        .to_string();
    assert!(err.contains("VIGIL_TOKEN"), "{err}");
    // Without the store there are no write endpoints: it starts.
    drop(
        fast_agent(50)
            .listen("0.0.0.0:0".parse().unwrap())
            .start(rt.handle())
            .unwrap(),
    );
    let token = "s3cret-token-of-the-agent";
    let agent = fast_agent(50)
        .listen("0.0.0.0:0".parse().unwrap())
        .data_dir(Some(dir.clone()))
        .token(token)
        .start(rt.handle())
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", agent.local_addr().port())
        .parse()
        .unwrap();
    let body = br#"{"start":"2026-11-25T12:00:00Z","end":"2026-11-25T12:05:00Z","label":"normal","note":"private"}"#;
    let r = send(addr, "POST", "/api/v1/labels", &[JSON], body);
    assert_eq!(r.status, 401, "{}", r.body);
    // Reads of stored data need it too (label notes, events, the model's status); the scheme's case
    // does not matter; /metrics and /healthz stay open.
    let lower = format!("bearer {token}");
    for path in ["/api/v1/labels", "/api/v1/events", "/api/v1/status"] {
        let r = get(addr, path, &[]);
        assert_eq!(r.status, 401, "{path}: {}", r.body);
        let r = get(
            addr,
            path,
            &[("authorization", "Bearer wrong-token-wrong-token")],
        );
        assert_eq!(r.status, 401, "{path}: {}", r.body);
        let r = get(addr, path, &[("authorization", &lower)]);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
    }
    assert_eq!(get(addr, "/metrics", &[]).status, 200);
    assert_eq!(get(addr, "/healthz", &[]).status, 200);
    let r = send(
        addr,
        "POST",
        "/api/v1/labels",
        &[JSON, ("authorization", "Bearer wrong-token-wrong-token")],
        body,
    );
    assert_eq!(r.status, 401, "{}", r.body);
    let bearer = format!("Bearer {token}");
    assert_eq!(labels_with(addr, &[("authorization", &bearer)]).len(), 0);
    let r = send(
        addr,
        "POST",
        "/api/v1/labels",
        &[JSON, ("authorization", &lower)],
        body,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(labels_with(addr, &[("authorization", &bearer)]).len(), 1);
    agent.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn without_the_store_the_api_says_so() {
    let rt = host_runtime();
    let agent = fast_agent(50).start(rt.handle()).unwrap();
    let r = get(agent.local_addr(), "/api/v1/labels", &[]);
    assert_eq!(r.status, 503);
    assert!(r.body.contains("VIGIL_DATA_DIR=off"), "{}", r.body);
    let st = json(&get(agent.local_addr(), "/api/v1/status", &[]));
    assert!(st["store"].is_null(), "{st}");
    agent.shutdown();
}

#[test]
fn the_cli_adds_imports_lists_and_exports_while_the_agent_writes() {
    let rt = host_runtime();
    let dir = temp_dir("cli");
    let agent = fast_agent(20)
        .data_dir(Some(dir.clone()))
        .start(rt.handle())
        .unwrap();
    next_samples(&agent, 20);
    std::thread::sleep(Duration::from_millis(200));
    let vigil = env!("CARGO_BIN_EXE_vigil");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(vigil)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let d = dir.to_str().unwrap();
    let (ok, out, err) = run(&[
        "labels",
        "add",
        "--store",
        d,
        "--start",
        "2026-11-25T10:00:00Z",
        "--end",
        "2026-11-25T10:10:00Z",
        "--label",
        "normal",
        "--note",
        "deploy",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("\"label\":\"normal\""), "{out}");
    let (ok, _, err) = run(&[
        "labels",
        "add",
        "--store",
        d,
        "--start",
        "2026-11-25T10:00:00Z",
        "--end",
        "2026-11-25T09:00:00Z",
        "--label",
        "normal",
    ]);
    assert!(!ok && err.contains("before start"), "{err}");
    // Import: a labels CSV with one bad row stores nothing; the good file stores all.
    let csv = dir.join("labels.csv");
    std::fs::write(
        &csv,
        "start,end,label,anomaly_type\n1764064800,1764064860,anomaly,task_leak\n1764064900,1764064800,anomaly,\n",
    )
    .unwrap();
    let (ok, _, err) = run(&["labels", "import", "--store", d, csv.to_str().unwrap()]);
    assert!(!ok && err.contains("end is before start"), "{err}");
    std::fs::write(
        &csv,
        "start,end,label,anomaly_type\n1764064800,1764064860,anomaly,task_leak\n1764064900,1764064960,normal,\n",
    )
    .unwrap();
    let (ok, _, err) = run(&["labels", "import", "--store", d, csv.to_str().unwrap()]);
    assert!(ok, "{err}");
    let (ok, out, err) = run(&["labels", "list", "--store", d]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 3, "{out}");
    // The agent sees them too.
    assert_eq!(labels(agent.local_addr()).len(), 3);
    // Export: the CSV `vigil train/score` read, from the live store.
    let out_csv = dir.join("export.csv");
    let (ok, _, err) = run(&["export", "--store", d, "--out", out_csv.to_str().unwrap()]);
    assert!(ok, "{err}");
    let text = std::fs::read_to_string(&out_csv).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("timestamp,"), "{header}");
    assert!(header.contains("tokio_alive_tasks"), "{header}");
    assert!(lines.count() >= 15, "{text}");
    // Never over the store itself.
    let (ok, _, err) = run(&[
        "export",
        "--store",
        d,
        "--out",
        dir.join("vigil.db").to_str().unwrap(),
    ]);
    assert!(!ok, "{err}");
    assert!(dir.join("vigil.db").metadata().unwrap().len() > 0);
    // Nor over any other file the live store owns — its journal, its shared memory, the agent's lock —
    // however the path is spelled or linked.
    let lock_before = std::fs::read(dir.join("LOCK")).unwrap();
    let wal_before = std::fs::read(dir.join("vigil.db-wal")).ok();
    let link = std::env::temp_dir().join(format!("vigil-wal-link-{}", std::process::id()));
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(dir.join("vigil.db-wal"), &link).unwrap();
    for out in [
        dir.join("vigil.db-wal"),
        dir.join("vigil.db-shm"),
        dir.join("LOCK"),
        dir.join(".").join("vigil.db-wal"),
        dir.parent()
            .unwrap()
            .join(".")
            .join(dir.file_name().unwrap())
            .join("LOCK"),
        link.clone(),
    ] {
        let (ok, _, err) = run(&["export", "--store", d, "--out", out.to_str().unwrap()]);
        assert!(!ok, "{}: accepted", out.display());
        assert!(
            err.contains("a file of the Vigil store"),
            "{}: {err}",
            out.display()
        );
    }
    let _ = std::fs::remove_file(&link);
    assert_eq!(std::fs::read(dir.join("LOCK")).unwrap(), lock_before);
    if let Some(w) = wal_before {
        let now = std::fs::read(dir.join("vigil.db-wal")).unwrap();
        assert!(now.len() >= w.len(), "the WAL was not replaced");
        assert!(!now.starts_with(b"timestamp,"), "no CSV in the WAL");
    }
    assert_eq!(
        labels(agent.local_addr()).len(),
        3,
        "every label still there"
    );
    agent.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Polls `GET /api/v1/status` until `done` holds (at most 60 s).
fn status_until(
    addr: std::net::SocketAddr,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let st = json(&get(addr, "/api/v1/status", &[]));
        if done(&st) {
            return st;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}: {st}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn retrains_are_gated_counted_and_recorded_and_a_model_reloads_and_rolls_back() {
    let rt = host_runtime();
    let dir = temp_dir("retrain");
    let agent = fast_agent(20)
        .warm_up(Duration::from_secs(1))
        .data_dir(Some(dir.clone()))
        .start(rt.handle())
        .unwrap();
    let addr = agent.local_addr();
    // Too early: the outcome says why, and is counted as failed.
    let r = send(addr, "POST", "/api/v1/model/retrain", &[], b"");
    assert_eq!(r.status, 202, "{}", r.body);
    let st = status_until(addr, "the first retrain", |s| !s["last_retrain"].is_null());
    assert_eq!(st["last_retrain"]["outcome"], "failed", "{st}");
    assert_eq!(st["last_retrain"]["reason"], "asked", "{st}");
    // Enough stored windows: the gate decides, the outcome is counted, logged and kept.
    status_until(addr, "400 stored ticks", |s| {
        !s["model"].is_null() && s["store"]["ticks"].as_u64().unwrap_or(0) >= 400
    });
    let before = st["last_retrain"]["at"].clone();
    let r = send(addr, "POST", "/api/v1/model/retrain", &[], b"");
    assert_eq!(r.status, 202, "{}", r.body);
    let st = status_until(addr, "the second retrain", |s| {
        s["last_retrain"]["at"] != before
    });
    let outcome = st["last_retrain"]["outcome"].as_str().unwrap().to_owned();
    assert!(outcome == "promoted" || outcome == "rejected", "{st}");
    assert!(
        st["last_retrain"]["why"]
            .as_str()
            .unwrap()
            .contains("false events"),
        "{st}"
    );
    let m = scrape(addr);
    assert_eq!(m.value("vigil_retrain_total{outcome=\"failed\"}"), 1.0);
    assert_eq!(
        m.value(&format!("vigil_retrain_total{{outcome=\"{outcome}\"}}")),
        1.0
    );
    let models = st["store"]["models"].as_array().unwrap();
    assert!(models.iter().any(|h| h["outcome"] == outcome), "{st}");
    assert!(
        models.iter().any(|h| h["outcome"] == "trained"),
        "the cold-start model is in the history: {st}"
    );
    if outcome == "promoted" {
        // The tick loop installs a promoted model between two ticks, after the retrain is recorded:
        // the status can say "promoted" a tick before the model in use is the new one.
        status_until(addr, "the promoted model in use", |s| {
            s["model"]["notes"].to_string().contains("retrained on")
        });
    }
    // Reload needs VIGIL_MODEL.
    let r = send(addr, "POST", "/api/v1/model/reload", &[], b"");
    assert_eq!(r.status, 409, "{}", r.body);
    agent.shutdown();

    // The history keeps the trained model, whole.
    let s = Store::open_read_only(&dir).unwrap();
    let trained = s
        .models(50)
        .unwrap()
        .into_iter()
        .find(|h| h.outcome == "trained")
        .unwrap();
    vigil::models::ModelFile::from_json(&s.model_json(trained.id).unwrap().unwrap(), "history")
        .unwrap();
    // Offline: `vigil train --store` makes a model from the stored windows and labels; a second agent
    // loads it (VIGIL_MODEL), reloads it and rolls back once.
    let model_file = dir.join("model.json");
    let out = succeed(
        std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["train", "--store", dir.to_str().unwrap(), "--out"])
            .arg(&model_file),
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("stored windows"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir2 = temp_dir("retrain-2");
    let agent = fast_agent(20)
        .model_path(&model_file)
        .data_dir(Some(dir2.clone()))
        .start(rt.handle())
        .unwrap();
    let addr = agent.local_addr();
    let r = send(addr, "POST", "/api/v1/model/rollback", &[], b"");
    assert_eq!(r.status, 409, "nothing to roll back to yet: {}", r.body);
    let r = send(addr, "POST", "/api/v1/model/reload", &[], b"");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(json(&r)["message"].as_str().unwrap().contains("installed"));
    let r = send(addr, "POST", "/api/v1/model/rollback", &[], b"");
    assert_eq!(r.status, 200, "{}", r.body);
    // A damaged file is refused and the model in use stays.
    std::fs::write(&model_file, "{ not a model").unwrap();
    let r = send(addr, "POST", "/api/v1/model/reload", &[], b"");
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(!json(&get(addr, "/api/v1/status", &[]))["model"].is_null());
    agent.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&dir2);
}

/// `kill -9` of a whole agent (the demo) while it writes ticks and serves labels, again and again: on
/// every restart the store opens cleanly (the lock went with the process) and every label the API
/// acknowledged is there.
#[test]
fn kill_9_of_the_agent_loses_no_acknowledged_label_and_the_store_reopens() {
    let dir = temp_dir("agent-kill9");
    let mut acked: Vec<u64> = Vec::new();
    for round in 0..4u64 {
        let port = free_port();
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args([
                "demo",
                "--duration",
                "60",
                "--quiet",
                "--tick",
                "50ms",
                "--faults",
                "none",
            ])
            .args(["--listen", &addr.to_string()])
            .env("VIGIL_DATA_DIR", &dir)
            .env("VIGIL_GPU", "off")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        // Up and ticking (the demo reserves the profiler's memory before its first tick).
        while try_send(addr, "GET", "/healthz", &[], b"").map_or(true, |r| r.status != 200) {
            assert!(
                std::time::Instant::now() < deadline,
                "round {round}: the agent did not come up over the store"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // Labels as fast as they are acknowledged, then SIGKILL mid-stream.
        let want = 5 + round * 4;
        let mut n = 0;
        while n < want {
            let body = format!(
                r#"{{"start":"{}","end":"{}","label":"normal"}}"#,
                1_764_000_000 + round * 1000 + n,
                1_764_000_001 + round * 1000 + n
            );
            if let Ok(r) = try_send(addr, "POST", "/api/v1/labels", &[JSON], body.as_bytes())
                && r.status == 201
            {
                acked.push(json(&r)["id"].as_u64().unwrap());
                n += 1;
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let s = Store::open(&dir).unwrap();
    let ids: std::collections::BTreeSet<u64> = s
        .labels(&LabelQuery::default())
        .unwrap()
        .iter()
        .map(|l| u64::try_from(l.id).unwrap())
        .collect();
    for id in &acked {
        assert!(ids.contains(id), "acknowledged label {id} lost");
    }
    assert!(s.stats().unwrap().ticks > 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Model distribution: a model file replaced on disk is noticed, validated and swapped in; a broken
/// replacement is refused and counted, and the model in use keeps serving.
#[test]
fn a_model_replaced_on_disk_is_picked_up_and_a_broken_one_is_refused() {
    let rt = host_runtime();
    // A model for this agent's schema: the cold start of a first agent, from its model history.
    let dir = temp_dir("hot-reload");
    let first = fast_agent(20)
        .warm_up(Duration::from_secs(1))
        .data_dir(Some(dir.clone()))
        .start(rt.handle())
        .unwrap();
    status_until(first.local_addr(), "the cold-start model", |s| {
        s["store"]["models"]
            .as_array()
            .is_some_and(|m| m.iter().any(|h| h["outcome"] == "trained"))
    });
    first.shutdown();
    let s = Store::open_read_only(&dir).unwrap();
    let id = s.models(10).unwrap()[0].id;
    let json_a = s.model_json(id).unwrap().unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&json_a).unwrap();
    v["created_unix_seconds"] = serde_json::json!(1_764_000_000.0);
    let json_b = serde_json::to_string(&v).unwrap();
    let file = dir.join("fleet-model.json");
    std::fs::write(&file, &json_a).unwrap();

    let dir2 = temp_dir("hot-reload-2");
    let agent = fast_agent(20)
        .model_path(&file)
        .model_poll(Some(Duration::from_millis(100)))
        .data_dir(Some(dir2.clone()))
        .start(rt.handle())
        .unwrap();
    let addr = agent.local_addr();
    let created = |st: &serde_json::Value| st["model"]["created"].as_str().unwrap_or("").to_owned();
    let before = created(&json(&get(addr, "/api/v1/status", &[])));
    // A new version (written beside and renamed in, as a ConfigMap update does).
    std::fs::write(dir.join("next.json"), &json_b).unwrap();
    std::fs::rename(dir.join("next.json"), &file).unwrap();
    let st = status_until(addr, "the new model", |st| created(st) != before);
    assert_eq!(created(&st), "2025-11-24T16:00:00.000Z", "{st}");
    assert_eq!(
        scrape(addr).value("vigil_model_reloads_total{result=\"ok\"}"),
        1.0
    );
    // A broken replacement: refused, counted, the new model keeps serving.
    std::fs::write(&file, "{ half a model").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while scrape(addr).value("vigil_model_reloads_total{result=\"refused\"}") < 1.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the broken file was not refused"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        created(&json(&get(addr, "/api/v1/status", &[]))),
        created(&st)
    );
    // The path becomes a FIFO: refused without opening it, so neither the watcher nor the store
    // thread (a reload) blocks; labels and status keep answering.
    std::fs::remove_file(&file).unwrap();
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&file)
            .status()
            .unwrap()
            .success()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while scrape(addr).value("vigil_model_reloads_total{result=\"refused\"}") < 2.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the FIFO was not refused"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let t = std::time::Instant::now();
    let r = send(addr, "POST", "/api/v1/model/reload", &[], b"");
    assert!(r.status >= 400, "{}", r.body);
    assert!(r.body.contains("not a regular file"), "{}", r.body);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let body = br#"{"start":"2026-11-25T12:00:00Z","end":"2026-11-25T12:05:00Z","label":"normal"}"#;
    let r = send(addr, "POST", "/api/v1/labels", &[JSON], body);
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(get(addr, "/api/v1/status", &[]).status, 200);
    agent.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&dir2);
}

/// The names outputs refuse are the store's own: the database, its journals, and the agent's lock.
#[test]
fn the_refused_output_names_are_the_stores_files() {
    use vigil::models::STORE_FILE_NAMES;
    let db = vigil::store::DB_FILE;
    for name in [
        db.to_owned(),
        format!("{db}-wal"),
        format!("{db}-shm"),
        "LOCK".to_owned(),
    ] {
        assert!(STORE_FILE_NAMES.contains(&name.as_str()), "{name}");
    }
    assert_eq!(
        STORE_FILE_NAMES[0], db,
        "the name that marks a data directory"
    );
}

/// The label commands: a store that is not there is an error unless `--create` (a mistyped `--store`
/// must not start an empty store beside the real one); bad flag values and labels the store refuses
/// are exit 2 like other bad input; an endless import file is refused without being read whole.
#[test]
fn label_commands_refuse_a_missing_store_bad_values_and_endless_files() {
    let dir = temp_dir("labels-cli");
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.to_str().unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let add = |extra: &[&str]| {
        let mut a = vec![
            "labels",
            "add",
            "--store",
            d,
            "--start",
            "2026-11-25T10:00:00Z",
            "--end",
            "2026-11-25T10:10:00Z",
        ];
        if !extra.contains(&"--label") {
            a.extend_from_slice(&["--label", "normal"]);
        }
        a.extend_from_slice(extra);
        run(&a)
    };
    let (code, err) = add(&[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("holds no Vigil store") && err.contains("--create"),
        "{err}"
    );
    assert!(!dir.join("vigil.db").exists(), "nothing created");
    let (code, err) = add(&["--create"]);
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = add(&[]);
    assert_eq!(code, Some(0), "the store exists now: {err}");
    for (bad, what) in [
        (vec!["--label", "maybe"], "--label `maybe`"),
        (
            vec!["--anomaly-type", "gremlins"],
            "`gremlins` is not an anomaly type",
        ),
        (
            vec!["--confidence", "3"],
            "confidence 3 is not between 0 and 1",
        ),
    ] {
        let (code, err) = add(&bad);
        assert_eq!(code, Some(2), "{bad:?}: {err}");
        assert!(err.contains(what), "{bad:?}: {err}");
    }
    let (code, err) = run(&[
        "labels",
        "add",
        "--store",
        d,
        "--start",
        "yesterday",
        "--end",
        "1",
        "--label",
        "normal",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--start `yesterday` is not a time"), "{err}");
    let (code, err) = run(&["labels", "import", "--store", d, "/dev/zero"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("larger than 64 MiB"), "{err}");
    let (code, err) = run(&["labels", "list", "--store", d]);
    assert_eq!(code, Some(0), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A full disk under the data directory (a 600 KiB tmpfs, where the test may mount one: root on
/// Linux, as on CI) is said as such, and every label acknowledged before it is still there.
#[test]
fn a_full_disk_says_so_and_keeps_what_it_acknowledged() {
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let mnt = std::env::temp_dir().join(format!("vigil-full-disk-{}", std::process::id()));
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=600k", "tmpfs"])
        .arg(&mnt)
        .output()
        .is_ok_and(|o| o.status.success());
    if !mounted {
        let _ = std::fs::remove_dir_all(&mnt);
        eprintln!(
            "SKIPPED: cannot mount a tmpfs here (needs root); the page-limit unit test in vigil-store covers the message"
        );
        return;
    }
    let _unmount = Unmount(mnt.clone());
    let store = mnt.join("store");
    let d = store.to_str().unwrap();
    let note = "x".repeat(4000);
    let mut acknowledged = 0;
    let err = loop {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args([
                "labels",
                "add",
                "--store",
                d,
                "--create",
                "--start",
                "2026-11-25T10:00:00Z",
                "--end",
                "2026-11-25T10:10:00Z",
                "--label",
                "normal",
                "--note",
                &note,
            ])
            .output()
            .unwrap();
        if !out.status.success() {
            break String::from_utf8_lossy(&out.stderr).into_owned();
        }
        acknowledged += 1;
        assert!(acknowledged < 2_000, "600 KiB never filled up");
    };
    assert!(
        err.contains("database or disk is full") && !err.contains("vanished"),
        "{err}"
    );
    let out = succeed(
        std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["labels", "list", "--store", d]),
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        acknowledged,
        "every acknowledged label survived"
    );
}

/// A path the agent does not serve gets a 404 that lists every endpoint it does; each one listed is
/// routed (whatever its own answer: a missing store, an unknown event, a bad body), so the list and the
/// router cannot drift apart.
#[test]
fn the_404_lists_every_endpoint_and_each_is_served() {
    let rt = host_runtime();
    let agent = fast_agent(50).start(rt.handle()).unwrap();
    let addr = agent.local_addr();
    let r = get(addr, "/no/such/thing", &[]);
    assert_eq!(r.status, 404);
    let message = json(&r)["error"].as_str().unwrap().to_owned();
    let listed = message
        .split_once("the agent serves ")
        .map(|(_, l)| l.to_owned())
        .unwrap_or_else(|| panic!("{message}"));
    let endpoints: Vec<(&str, String)> = listed
        .split(", ")
        .map(|e| {
            let (method, path) = e.split_once(' ').unwrap();
            (method, path.replace("{id}", "1"))
        })
        .collect();
    assert!(endpoints.len() >= 10, "{listed}");
    for want in [
        "/api/v1/alertmanager",
        "/debug/pprof/profile",
        "/api/v1/labels",
    ] {
        assert!(endpoints.iter().any(|(_, p)| p == want), "{want}: {listed}");
    }
    for (method, path) in &endpoints {
        // A profile is asked for briefly; the rest answer at once.
        let path = if path == "/debug/pprof/profile" {
            "/debug/pprof/profile?seconds=1".to_owned()
        } else {
            path.clone()
        };
        let r = send(addr, method, &path, &[], b"");
        assert!(
            !(r.status == 404 && r.body.contains("no such endpoint")) && r.status != 405,
            "{method} {path}: {} {}",
            r.status,
            r.body
        );
    }
    agent.shutdown();
}

/// A client that speaks HTTP/2 without asking (the h2c preface) gets a JSON 505 saying the endpoint
/// speaks HTTP/1.1, not a connection closed without a word; the endpoint serves on.
#[test]
fn an_http2_preface_gets_a_json_505() {
    use std::io::{Read, Write};
    let rt = host_runtime();
    let agent = fast_agent(50).start(rt.handle()).unwrap();
    let addr = agent.local_addr();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // The preface, then an empty SETTINGS frame, as an h2c client with prior knowledge sends them.
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let reply = String::from_utf8_lossy(&raw);
    assert!(
        reply.starts_with("HTTP/1.1 505") && reply.contains("application/json"),
        "{reply:?}"
    );
    assert!(reply.contains("HTTP/1.1 only"), "{reply:?}");
    // The endpoint serves on (/metrics: /healthz may say "starting" before the first tick).
    assert_eq!(get(addr, "/metrics", &[]).status, 200);
    agent.shutdown();
}
