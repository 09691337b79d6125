//! End to end with a real Prometheus (Debian 2.42, `--enable-feature=exemplar-storage`) on loopback: it
//! scrapes the agent (OpenMetrics), stores the failing request's trace id as an exemplar, and returns it
//! from `/api/v1/query_exemplars`. The Prometheus process is started here, bounded in time, and killed
//! by PID when the test ends.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::*;
use vigil::observe::TraceContext;

const TRACE: &str = "5b8efff798038103d269b633813fc60c";

#[derive(Debug)]
struct RateLimited;
impl std::fmt::Display for RateLimited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("backend timed out")
    }
}
impl std::error::Error for RateLimited {}
impl vigil::observe::ClassifyAnomaly for RateLimited {
    fn anomaly_type(&self) -> vigil::observe::AnomalyType {
        vigil::observe::AnomalyType::Timeout
    }
}

#[vigil::observe(model = "e2e-model", stage = "predict")]
async fn predict() -> Result<(), RateLimited> {
    Err(RateLimited)
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn prometheus_stores_and_returns_the_trace_id_exemplar() {
    let rt = host_runtime();
    let agent = fast_agent(200).start(rt.handle()).unwrap();
    let ctx = TraceContext::from_traceparent(&format!("00-{TRACE}-b9c7c989f97918e1-01")).unwrap();
    rt.block_on(vigil::observe::with_trace(ctx, async {
        predict().await.unwrap_err()
    }));

    let dir = std::env::temp_dir().join(format!("vigil-e2e-prom-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: vigil\n    static_configs:\n      - targets: ['{}']\n",
            agent.local_addr()
        ),
    )
    .unwrap();
    let port = free_port();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--enable-feature=exemplar-storage")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus not found: `apt-get install -y prometheus` (scripts/test installs it)");
    let _prometheus = KillOnDrop(child);
    let prom: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    let query = r#"ai_inference_anomaly_total{model="e2e-model",anomaly_type="timeout"}"#;
    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let path = format!(
            "/api/v1/query_exemplars?query={}&start={}&end={}",
            urlencode(query),
            now - 600,
            now + 60
        );
        let answer = std::net::TcpStream::connect(prom)
            .ok()
            .map(|_| get(prom, &path, &[]));
        if let Some(r) = &answer
            && r.status == 200
            && r.body.contains(TRACE)
        {
            break r.body.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no exemplar within 60 s; last answer: {:?}",
            answer.map(|r| r.body)
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(body.contains("\"status\":\"success\""), "{body}");
    assert!(
        body.contains(&format!("\"trace_id\":\"{TRACE}\"")),
        "{body}"
    );
    assert!(body.contains("\"span_id\":\"b9c7c989f97918e1\""), "{body}");
    let _ = std::fs::remove_dir_all(&dir);
}
