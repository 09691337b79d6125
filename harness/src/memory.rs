//! `vigil bench memory`: what linking the agent adds to a host's resident memory. One process: the
//! demo's inference server under a closed-loop load, first without the agent (the host alone), then
//! with the agent started on the host's runtime the way a host starts it — default features, the
//! store on (a fresh data directory), event profiles on, a cold start that trains the first model —
//! and a CPU profile taken while the load runs. Resident memory (`VmRSS`) is read every 100 ms by a
//! thread of its own; the figures are the host's before the agent, the peak and the end with it, and
//! the step across the profile.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use crate::scenes::serve_model;

/// Flags of `vigil bench memory`.
#[derive(Debug, clap::Args)]
pub(crate) struct MemoryArgs {
    /// Seconds of load before the agent starts (the host alone), and again after its first model.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    seconds: f64,
    /// The agent's cold start (its first model trains after it).
    #[arg(long, value_name = "DURATION", default_value = "15s")]
    warm_up: String,
    /// The agent's tick.
    #[arg(long, value_name = "DURATION", default_value = "250ms")]
    tick: String,
    /// Length of the CPU profile taken under load (seconds).
    #[arg(long, default_value_t = 5, value_name = "SECS")]
    profile_seconds: u64,
    /// Keep-alive connections of the load.
    #[arg(long, default_value_t = 8)]
    connections: u32,
    /// Write the results as JSON here.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// This process's resident memory, bytes (0 where it cannot be read).
pub(crate) fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Reads the resident memory every 100 ms and keeps the highest since the last [`Peak::take`].
struct Peak {
    max: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Peak {
    fn start() -> anyhow::Result<Self> {
        let max = Arc::new(AtomicU64::new(rss()));
        let stop = Arc::new(AtomicBool::new(false));
        let (m, s) = (max.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("rss-reader".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    m.fetch_max(rss(), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
            .context("starting the RSS reader")?;
        Ok(Self {
            max,
            stop,
            thread: Some(thread),
        })
    }

    /// The highest reading since the last call (or the start).
    fn take(&self) -> u64 {
        let now = rss();
        self.max.swap(now, Ordering::Relaxed).max(now)
    }
}

impl Drop for Peak {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Keeps `connections` keep-alive clients sending requests until dropped.
pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    pub(crate) served: Arc<AtomicU64>,
}

impl Load {
    pub(crate) fn start(
        rt: &tokio::runtime::Runtime,
        addr: std::net::SocketAddr,
        connections: u32,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicU64::new(0));
        for i in 0..connections {
            let (stop, served) = (stop.clone(), served.clone());
            rt.spawn(async move {
                let Ok(s) = tokio::net::TcpStream::connect(addr).await else {
                    return;
                };
                let mut conn = tokio::io::BufReader::new(s);
                let prompt = format!("memory client {i}: classify this prompt please");
                while !stop.load(Ordering::Relaxed) {
                    if !matches!(
                        crate::scenes::load::request(&mut conn, &prompt).await,
                        Ok(true)
                    ) {
                        break;
                    }
                    served.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        Self { stop, served }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A CPU profile from the agent at `path`, waiting for one already running (an anomaly event's own
/// profile: the agent answers 409 and says when it ends) at most three times.
fn profile_when_free(
    agent: std::net::SocketAddr,
    path: &str,
    timeout: Duration,
) -> anyhow::Result<Vec<u8>> {
    for _ in 0..3 {
        let (status, body) = agent_answer(agent, path, timeout)?;
        if status != 409 {
            return ok_body(status, path, body);
        }
        let secs = busy_for(&String::from_utf8_lossy(&body));
        eprintln!(
            "  a profile (an anomaly event's) is running; asking again in {} s",
            secs + 1
        );
        std::thread::sleep(Duration::from_secs(secs + 1));
    }
    anyhow::bail!("the agent was busy with other CPU profiles three times in a row")
}

/// Seconds until the profile the agent is busy with ends, from its 409 answer ("... it ends in about
/// N s"); 10 when it does not say, at most the longest profile.
fn busy_for(answer: &str) -> u64 {
    answer
        .split("ends in about ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(10)
        .min(vigil::agent::MAX_PROFILE_SECONDS)
}

/// GET from the agent: its status and body.
fn agent_answer(
    agent: std::net::SocketAddr,
    path: &str,
    timeout: Duration,
) -> anyhow::Result<(u16, Vec<u8>)> {
    vigil_tool::http::get(
        &agent.to_string(),
        path,
        "the agent",
        vigil_tool::http::Limits::agent(timeout),
    )
}

/// The body of a 200 answer, or an error saying what the agent answered instead.
fn ok_body(status: u16, path: &str, body: Vec<u8>) -> anyhow::Result<Vec<u8>> {
    anyhow::ensure!(
        status == 200,
        "the agent answered {status} to {path}: {}",
        String::from_utf8_lossy(&body)
    );
    Ok(body)
}

/// GET from the agent; the body of a 200 answer.
pub(crate) fn agent_get(
    agent: std::net::SocketAddr,
    path: &str,
    timeout: Duration,
) -> anyhow::Result<Vec<u8>> {
    let (status, body) = agent_answer(agent, path, timeout)?;
    ok_body(status, path, body)
}

pub(crate) fn mb(b: u64) -> f64 {
    b as f64 / 1e6
}

pub(crate) fn run(args: MemoryArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.seconds >= 1.0 && args.seconds <= 600.0,
        "--seconds must be from 1 to 600"
    );
    anyhow::ensure!(args.connections >= 1, "--connections must be at least 1");
    anyhow::ensure!(
        (1..=vigil::agent::MAX_PROFILE_SECONDS).contains(&args.profile_seconds),
        "--profile-seconds must be from 1 to {}",
        vigil::agent::MAX_PROFILE_SECONDS
    );
    let warm_up = duration_flag("--warm-up", &args.warm_up)?;
    let tick = duration_flag("--tick", &args.tick)?;
    in_scratch_store("memory", args.json.as_deref(), |dir| {
        measure(&args, warm_up, tick, dir)
    })
}

/// A duration flag's value, or an error naming the flag and the syntax.
pub(crate) fn duration_flag(flag: &str, v: &str) -> anyhow::Result<Duration> {
    vigil::agent::parse_duration(v)
        .with_context(|| format!("{flag} {v:?}: expected {}", vigil::agent::DURATION_SYNTAX))
}

/// Runs a memory benchmark with a fresh data directory for the agent's store (removed afterwards,
/// whatever happens) and writes its report to `json` (opened first, so a bad path fails before the
/// run).
pub(crate) fn in_scratch_store(
    bench: &str,
    json: Option<&std::path::Path>,
    run: impl FnOnce(&std::path::Path) -> anyhow::Result<serde_json::Value>,
) -> anyhow::Result<()> {
    let json_out = match json {
        Some(p) => Some(vigil::models::OutputFile::create(p, &[])?),
        None => None,
    };
    let data_dir = std::env::temp_dir().join(format!("vigil-bench-{bench}-{}", std::process::id()));
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let result = run(&data_dir);
    let _ = std::fs::remove_dir_all(&data_dir);
    let report = result?;
    if let Some(mut out) = json_out {
        std::io::Write::write_all(&mut out, serde_json::to_string_pretty(&report)?.as_bytes())?;
        out.commit()?;
    }
    Ok(())
}

fn measure(
    args: &MemoryArgs,
    warm_up: Duration,
    tick: Duration,
    data_dir: &std::path::Path,
) -> anyhow::Result<serde_json::Value> {
    let peak = Peak::start()?;
    let (host, load_rt) = crate::overhead::runtimes(2)?;
    let addr = serve_model(&host, 1)?.addr;
    let load = Load::start(&load_rt, addr, args.connections);
    let secs = Duration::from_secs_f64(args.seconds);

    // The host alone.
    std::thread::sleep(secs);
    let host_end = rss();
    let host_peak = peak.take();
    eprintln!(
        "  host alone: {:.1} MB resident (peak {:.1} MB)",
        mb(host_end),
        mb(host_peak)
    );

    // The agent, started the way a host starts it.
    let started = Instant::now();
    let agent = vigil::Agent::builder()
        .listen("127.0.0.1:0".parse()?)
        .gpu(vigil::GpuMode::Off)
        .tick(tick)
        .warm_up(warm_up)
        .data_dir(Some(data_dir.to_path_buf()))
        .start(host.handle())?;
    let start_seconds = started.elapsed().as_secs_f64();
    let agent_addr = agent.local_addr();
    let deadline = Instant::now() + warm_up + Duration::from_secs(120);
    let mut scoring = false;
    while Instant::now() < deadline {
        let m = agent_get(agent_addr, "/metrics", Duration::from_secs(10))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        if m.lines()
            .any(|l| l.starts_with("vigil_anomaly_score ") && !l.ends_with("NaN"))
        {
            scoring = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    anyhow::ensure!(scoring, "the agent trained no first model in time");
    std::thread::sleep(secs);
    let agent_before_profile = rss();
    let agent_peak = peak.take();
    eprintln!(
        "  with the agent, first model trained: {:.1} MB resident (peak {:.1} MB)",
        mb(agent_before_profile),
        mb(agent_peak)
    );

    // A CPU profile under load (where this build takes them).
    let profile = if vigil::agent::profiling_available() {
        let path = format!("/debug/pprof/profile?seconds={}", args.profile_seconds);
        let profile = profile_when_free(
            agent_addr,
            &path,
            Duration::from_secs(args.profile_seconds + 60),
        )
        .context("asking the agent for a CPU profile")?;
        anyhow::ensure!(
            profile.starts_with(&[0x1f, 0x8b]),
            "the agent served no gzip'd profile ({} bytes)",
            profile.len()
        );
        profile
    } else {
        eprintln!("  this build has no CPU profiler: no profile is taken");
        Vec::new()
    };
    let after_profile = rss();
    let profile_peak = peak.take();
    std::thread::sleep(secs);
    let end = rss();
    let end_peak = peak.take();
    let served = load.served.load(Ordering::Relaxed);
    drop(load);
    drop(agent);
    host.shutdown_timeout(Duration::from_secs(1));
    load_rt.shutdown_timeout(Duration::from_secs(1));
    let lifetime_peak = agent_peak.max(profile_peak).max(end_peak);
    eprintln!(
        "  CPU profile ({} s, {} bytes): {:.1} MB resident after it (peak during it {:.1} MB); {:.1} MB at the end",
        args.profile_seconds,
        profile.len(),
        mb(after_profile),
        mb(profile_peak),
        mb(end)
    );
    println!(
        "agent adds {:.1} MB resident at the end, {:.1} MB at its peak, over the host's {:.1} MB; the profile stepped it by {:+.2} MB (peak {:+.2} MB); start took {:.1} ms; {served} requests served",
        mb(end.saturating_sub(host_end)),
        mb(lifetime_peak.saturating_sub(host_end)),
        mb(host_end),
        (after_profile as f64 - agent_before_profile as f64) / 1e6,
        (profile_peak as f64 - agent_before_profile as f64) / 1e6,
        start_seconds * 1e3
    );
    Ok(json!({
        "host_bytes": host_end,
        "host_peak_bytes": host_peak,
        "with_agent_bytes": agent_before_profile,
        "with_agent_peak_bytes": agent_peak,
        "after_profile_bytes": after_profile,
        "profile_peak_bytes": profile_peak,
        "end_bytes": end,
        "agent_added_bytes": end.saturating_sub(host_end),
        "agent_added_peak_bytes": lifetime_peak.saturating_sub(host_end),
        "profile_step_bytes": after_profile as i64 - agent_before_profile as i64,
        "profile_seconds": args.profile_seconds,
        "profile_gz_bytes": profile.len(),
        "start_seconds": start_seconds,
        "tick_seconds": tick.as_secs_f64(),
        "warm_up_seconds": warm_up.as_secs_f64(),
        "requests_served": served,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_profiler_says_when_it_is_free() {
        let answer = r#"{"error":"a CPU profile is already being taken (SIGPROF is process-wide: one profile at a time); it ends in about 7 s"}"#;
        assert_eq!(busy_for(answer), 7);
        assert_eq!(busy_for(r#"{"error":"busy"}"#), 10);
        assert_eq!(
            busy_for("it ends in about 9999 s"),
            vigil::agent::MAX_PROFILE_SECONDS
        );
    }
}
