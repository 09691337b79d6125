//! `vigil pull` against a real Prometheus (Debian's 2.42, started by the test on 127.0.0.1, scraping
//! three agents every 500 ms): one CSV per instance with the values the agents exported, and a model
//! trained on two pulled instances scores the third. The test stops exactly the processes it started.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

#[test]
fn pulled_history_matches_the_agents_and_trains_a_model_for_the_fleet() {
    assert!(
        Command::new("prometheus").arg("--version").output().is_ok(),
        "`prometheus` is not installed: run ./scripts/test, which installs it"
    );
    let rt = host_runtime();
    // Three agents of one service: a steady number of tasks on the host runtime.
    let _tasks: Vec<_> = (0..5)
        .map(|_| rt.spawn(async { tokio::time::sleep(Duration::from_secs(3600)).await }))
        .collect();
    let agents: Vec<vigil::AgentHandle> = (0..3)
        .map(|_| fast_agent(250).start(rt.handle()).unwrap())
        .collect();
    // The host serves through the HTTP layer: one request every 20 ms, one in four failing (the
    // series are the process's, so every agent exports them).
    let app = axum::Router::new()
        .route("/v1/embed", axum::routing::get(|| async { "ok" }))
        .route(
            "/v1/fail",
            axum::routing::get(|| async { (axum::http::StatusCode::BAD_GATEWAY, "down") }),
        )
        .layer(vigil::observe::http::HttpMetricsLayer);
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let app_addr = listener.local_addr().unwrap();
    rt.spawn(async move { axum::serve(listener, app).await });
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let path = if i.is_multiple_of(4) {
                    "/v1/fail"
                } else {
                    "/v1/embed"
                };
                if let Ok(mut s) = std::net::TcpStream::connect(app_addr) {
                    let _ = write!(
                        s,
                        "GET {path} HTTP/1.1\r\nHost: vigil\r\nConnection: close\r\n\r\n"
                    );
                    let _ = s.read_to_end(&mut Vec::new());
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let dir = temp_dir("pull");
    std::fs::create_dir_all(&dir).unwrap();
    let prom_port = free_port();
    let targets: Vec<String> = agents
        .iter()
        .map(|a| format!("\"{}\"", a.local_addr()))
        .collect();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 500ms\n  scrape_timeout: 500ms\n\
             scrape_configs:\n  - job_name: vigil\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        ),
    )
    .unwrap();
    let _prom = KillOnDrop(start_prometheus(&dir, prom_port));
    let prom: std::net::SocketAddr = format!("127.0.0.1:{prom_port}").parse().unwrap();
    // Wait until Prometheus holds about 45 s of every agent (90 scrapes).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let q = "/api/v1/query?query=count_over_time(vigil_tokio_workers%5B60s%5D)";
        if let Ok(r) = try_send(prom, "GET", q, &[], b"") {
            let v: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
            let counts: Vec<f64> = v["data"]["result"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s["value"][1].as_str()?.parse().ok())
                        .collect()
                })
                .unwrap_or_default();
            if counts.len() == 3 && counts.iter().all(|c| *c >= 90.0) {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not collect enough"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let out = dir.join("pulled");
    let vigil = env!("CARGO_BIN_EXE_vigil");
    let run = |args: &[&str]| {
        let o = Command::new(vigil).args(args).output().unwrap();
        assert!(
            o.status.success(),
            "vigil {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    run(&[
        "pull",
        "--prometheus",
        &format!("http://{prom}"),
        "--selector",
        "{job=\"vigil\"}",
        "--since",
        "60s",
        "--step",
        "500ms",
        "--out",
        out.to_str().unwrap(),
    ]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    client.join().unwrap();
    let mut files: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 3, "one CSV per instance: {files:?}");
    // The values the agents exported: the worker count and the task count they sampled.
    let now_tasks = vigil::features::Sample::clone(&agents[0].latest_sample());
    let alive_now = signal(&now_tasks, "tokio_alive_tasks");
    // Pull's columns are exactly the ones the agent records (a counter as `<name>_total`), in the
    // agent's order: a model trained on them is one the agent can load.
    let recorded: Vec<String> = now_tasks
        .signals()
        .specs()
        .iter()
        .map(|spec| match spec.kind {
            vigil::features::SignalKind::Counter => format!("{}_total", spec.name),
            vigil::features::SignalKind::Gauge => spec.name.to_string(),
        })
        .collect();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let missing: Vec<&String> = recorded
            .iter()
            .filter(|c| !header.contains(&c.as_str()))
            .collect();
        let extra: Vec<&&str> = header[1..]
            .iter()
            .filter(|h| !recorded.iter().any(|c| c == *h))
            .collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{}: pull lacks {missing:?} and adds {extra:?} against the agent's columns",
            f.display()
        );
        let col = |n: &str| {
            header
                .iter()
                .position(|h| *h == n)
                .unwrap_or_else(|| panic!("{n} missing in {header:?}"))
        };
        let (workers, alive) = (col("tokio_workers"), col("tokio_alive_tasks"));
        let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
        // The HTTP layer's signals, rebuilt from its families: a quarter of the requests failed,
        // and each answered within milliseconds.
        let read = |c: usize| -> Vec<f64> {
            let mut v: Vec<f64> = rows
                .iter()
                .filter_map(|r| r[c].parse::<f64>().ok())
                .filter(|v| v.is_finite())
                .collect();
            v.sort_by(f64::total_cmp);
            v
        };
        let ratio = read(col("http_error_ratio"));
        assert!(ratio.len() >= 40, "{}: {ratio:?}", f.display());
        let median = ratio[ratio.len() / 2];
        assert!(
            (0.15..=0.35).contains(&median),
            "{}: median error ratio {median}",
            f.display()
        );
        let head = read(col("http_response_head_p99_seconds"));
        assert!(head.len() >= 40, "{}: {head:?}", f.display());
        assert!(
            head[head.len() / 2] < 0.1,
            "{}: response head p99 {head:?}",
            f.display()
        );
        assert!(rows.len() >= 90, "{} rows in {}", rows.len(), f.display());
        for r in &rows {
            if !r[workers].is_empty() {
                assert_eq!(r[workers], "2", "{}", f.display());
            }
        }
        let last_alive: f64 = rows
            .iter()
            .rev()
            .find_map(|r| r[alive].parse().ok())
            .unwrap();
        assert!(
            (last_alive - alive_now).abs() <= 2.0,
            "{}: pulled {last_alive} tasks, the agent sampled {alive_now}",
            f.display()
        );
    }
    // A model trained on two instances scores the third.
    let model = dir.join("fleet.json");
    run(&[
        "train",
        "--csv",
        files[0].to_str().unwrap(),
        "--csv",
        files[1].to_str().unwrap(),
        "--short",
        "5",
        "--long",
        "20",
        "--out",
        model.to_str().unwrap(),
    ]);
    let scores = dir.join("scores.csv");
    run(&[
        "score",
        "--model",
        model.to_str().unwrap(),
        "--csv",
        files[2].to_str().unwrap(),
        "--out",
        scores.to_str().unwrap(),
    ]);
    let scored = std::fs::read_to_string(&scores)
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| l.split(',').nth(1).is_some_and(|s| !s.is_empty()))
        .count();
    assert!(scored >= 50, "{scored} rows scored");
    // The model trained on pulled history is one an agent loads (VIGIL_MODEL / `model_path`): same
    // columns, same order, same schema; it scores from the first warm window, with no cold start.
    let loaded = fast_agent(500)
        .horizons(vigil::features::Horizons::new(5, 20).unwrap())
        .model_path(&model)
        .start(rt.handle())
        .unwrap_or_else(|e| panic!("the agent refused the model trained on pulled history: {e}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while loaded.latest_score().is_none() {
        assert!(
            Instant::now() < deadline,
            "the agent with the pulled model scored nothing in 30 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    loaded.shutdown();
    for a in agents {
        a.shutdown();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
