//! A build without CPU profiles (`--no-default-features`, or not Linux): both profile endpoints answer
//! 501 with a message saying why, and the agent runs as usual. `.ci/run` runs this with the feature off.
#![cfg(not(all(feature = "profiling", target_os = "linux")))]
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::time::Duration;

fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap();
    (status, raw)
}

#[test]
fn without_the_profiler_the_endpoints_answer_501() {
    assert!(!vigil_agent::profiling_available());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let agent = vigil_agent::Agent::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .gpu(vigil_agent::GpuMode::Off)
        .data_dir(None)
        .start(rt.handle())
        .unwrap();
    for path in ["/debug/pprof/profile?seconds=1", "/api/v1/events/1/profile"] {
        let (status, body) = get(agent.local_addr(), path);
        assert_eq!(status, 501, "{path}: {body}");
        assert!(body.contains("`profiling` cargo feature"), "{path}: {body}");
    }
    let (status, _) = get(agent.local_addr(), "/healthz");
    assert!(status == 200 || status == 503);
}
