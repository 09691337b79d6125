//! Shared harness for the integration tests: a monitored host runtime, an HTTP scraper and a tiny parser
//! for the Prometheus text format.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

pub mod cli;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use vigil::features::Sample;

/// A 2-worker multi-thread runtime, like a small inference server.
pub fn host_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A builder listening on a free loopback port with a fast tick, GPUs off and event profiles off
/// (tests that want a GPU source or event profiles set them: with a store, event profiles make the
/// agent reserve the profiler's memory before its first tick, seconds in a debug binary).
pub fn fast_agent(tick_ms: u64) -> vigil::AgentBuilder {
    vigil::Agent::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .tick(Duration::from_millis(tick_ms))
        .gpu(vigil::GpuMode::Off)
        .data_dir(None)
        .event_profiles(None, Duration::from_secs(60))
}

/// A fresh, empty directory under the system's temp dir for one test.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("vigil-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Response of one HTTP GET.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The body as text (lossy for binary bodies; see `bytes`).
    pub body: String,
    /// The body as sent.
    pub bytes: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` over a fresh connection, with extra request headers.
#[track_caller]
pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    request(addr, "GET", path, headers)
}

/// `METHOD path` (no body) over a fresh connection, with extra request headers.
#[track_caller]
pub fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    send(addr, method, path, headers, b"")
}

/// `METHOD path` with a body over a fresh connection, with extra request headers.
#[track_caller]
pub fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    try_send(addr, method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} {path} on {addr}: {e}"))
}

/// [`send`], with connection and protocol failures as an error (for polling a server that may not be
/// up yet).
pub fn try_send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    // A hang guard only (a CPU profile answers after its seconds plus symbolisation, slow in debug builds).
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    // A server may answer (413) before reading a large body and close: a failed write is fine.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("HTTP response without header end")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|e| e.to_string())?;
    let bytes = raw[end + 4..].to_vec();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or("no status line")?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(Response {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
        bytes,
    })
}

/// Series of one scrape: `name{labels}` (labels as exposed) → value.
pub struct Scrape(pub BTreeMap<String, f64>);

impl Scrape {
    pub fn parse(text: &str) -> Self {
        let mut map = BTreeMap::new();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            // Drop an OpenMetrics exemplar, then split "series value [timestamp]".
            let line = line.split(" # ").next().unwrap_or(line);
            let (series, rest) = match line.rfind('}') {
                Some(i) => (&line[..=i], line[i + 1..].trim()),
                None => line.split_once(' ').expect("series without value"),
            };
            let value = rest.split_whitespace().next().unwrap_or("NaN");
            let value = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().unwrap_or(f64::NAN),
            };
            map.insert(series.trim().to_owned(), value);
        }
        Self(map)
    }

    /// The value of a series written exactly as exposed, e.g. `vigil_tokio_workers` or
    /// `vigil_gpu_memory_used_bytes{gpu="0",uuid="GPU-…"}`.
    #[track_caller]
    pub fn value(&self, series: &str) -> f64 {
        *self
            .0
            .get(series)
            .unwrap_or_else(|| panic!("series {series} not in scrape: {:?}", self.0.keys()))
    }

    pub fn has(&self, series: &str) -> bool {
        self.0.contains_key(series)
    }

    /// Metric family names present (without `_bucket`/`_sum`/`_count` handling).
    pub fn names(&self) -> Vec<String> {
        self.0
            .keys()
            .map(|k| k.split('{').next().unwrap_or(k).to_owned())
            .collect()
    }
}

/// Scrapes `/metrics` and parses it.
#[track_caller]
pub fn scrape(addr: SocketAddr) -> Scrape {
    let r = get(addr, "/metrics", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    Scrape::parse(&r.body)
}

/// Waits for the next `n` changes of a per-tick watch channel (10 s per tick at most).
#[track_caller]
pub fn next_values<T: Clone>(mut rx: tokio::sync::watch::Receiver<T>, n: usize) -> Vec<T> {
    rx.borrow_and_update();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            tokio::time::timeout(Duration::from_secs(10), rx.changed())
                .await
                .expect("no tick within 10 s")
                .expect("agent stopped");
            out.push(rx.borrow_and_update().clone());
        }
        out
    })
}

/// Waits for the next `n` ticks and returns their samples.
#[track_caller]
pub fn next_samples(agent: &vigil::AgentHandle, n: usize) -> Vec<Arc<Sample>> {
    next_values(agent.subscribe(), n)
}

/// The value of a signal in a sample, panicking with the signal list when absent.
#[track_caller]
pub fn signal(s: &Sample, name: &str) -> f64 {
    s.get(name).unwrap_or_else(|| {
        let names: Vec<_> = s
            .signals()
            .specs()
            .iter()
            .map(|x| x.name.to_string())
            .collect();
        panic!("no signal {name}; have {names:?}")
    })
}

/// Starts Debian's `prometheus` with `dir/prometheus.yml`, its data in `dir/prom`, listening on
/// 127.0.0.1:`port`, its log in `dir/prometheus.log`. The caller kills the child.
pub fn start_prometheus(dir: &std::path::Path, port: u16) -> std::process::Child {
    std::process::Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("prom").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start prometheus ({e}): run ./scripts/test, which installs it")
        })
}

/// This process's resident memory, bytes (`VmRSS` in `/proc/self/status`; Linux).
pub fn rss() -> f64 {
    status_bytes("VmRSS:")
}

/// A `/proc/self/status` line in bytes (`VmRSS:`, `RssAnon:`, `RssFile:`).
pub fn status_bytes(key: &str) -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/self/status"))
        * 1024.0
}

/// `go tool pprof FLAG` over a gzipped profile, as users read one (Debian's golang-go;
/// scripts/test installs it): its standard output, or a panic with its error.
pub fn go_tool_pprof(gz: &[u8], flag: &str) -> String {
    let dir = std::env::temp_dir().join(format!(
        "vigil-pprof-{}-{}",
        std::process::id(),
        flag.trim_start_matches('-')
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("cpu.pb.gz");
    std::fs::write(&file, gz).unwrap();
    let out = std::process::Command::new("go")
        .args(["tool", "pprof", flag])
        .arg(&file)
        .env("PPROF_TMPDIR", &dir)
        .env("HOME", &dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "go not found ({e}): install it with `apt-get install -y golang-go` \
                 (scripts/test does)"
            )
        });
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "go tool pprof {flag}: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
    text
}

/// A loopback port free at the time of asking (for a server the test starts in another process).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed and reaped when dropped (a test's server, whatever the test's outcome).
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
