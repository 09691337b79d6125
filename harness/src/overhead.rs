//! `vigil bench overhead`: what the agent costs the host. The demo's inference server under a fixed
//! closed-loop load (keep-alive clients sending the next request as soon as the last one is answered),
//! in rounds of three arms in rotating order, all in one process:
//!
//! - `plain`: no agent, `#[observe]` switched off, allocations not counted;
//! - `agent`: the agent on the host runtime and `#[observe]` on, allocations not counted;
//! - `full`: the agent, `#[observe]` and `CountingAlloc` counting every allocation;
//! - `profiling`: like `agent`, with a CPU profile (`GET /debug/pprof/profile`, 99 Hz SIGPROF
//!   sampling) running over the whole measurement (only in builds with CPU profiles).
//!
//! Reports throughput and p50/p99 latency ratios against `plain` (and `profiling` against `agent`:
//! what a running profile costs), median and spread over the rounds.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use tokio::io::BufReader;
use tokio::net::TcpStream;

use crate::scenes::{load, serve_model};
use vigil_tool::engine::quantile;

/// Flags of `vigil bench overhead`.
#[derive(Debug, clap::Args)]
pub(crate) struct OverheadArgs {
    /// Rounds (each runs every arm, in an order that rotates between rounds).
    #[arg(long, default_value_t = 10)]
    rounds: u32,
    /// Seconds each round measures.
    #[arg(long, default_value_t = 3.0, value_name = "SECS")]
    seconds: f64,
    /// Keep-alive connections of the closed-loop load.
    #[arg(long, default_value_t = 16)]
    connections: u32,
    /// Worker threads of the server's runtime (the host).
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// The agent's scheduler probe interval (to see what the probes cost); default: the agent's.
    #[arg(long, value_name = "DURATION")]
    probe_interval: Option<String>,
    /// The agent's tick.
    #[arg(long, value_name = "DURATION", default_value = "1s")]
    tick: String,
    /// Write the results as JSON here.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// The arms of a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arm {
    Plain = 0,
    Agent = 1,
    Full = 2,
    Profiling = 3,
}

/// One arm's measurements.
#[derive(Debug, Clone, Copy)]
struct Round {
    throughput: f64,
    p50: f64,
    p99: f64,
}

/// Runs the closed-loop load for `secs` and measures it.
fn measure(
    load_rt: &tokio::runtime::Runtime,
    addr: std::net::SocketAddr,
    conns: u32,
    secs: f64,
) -> Round {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..conns)
        .map(|i| {
            let stop = stop.clone();
            load_rt.spawn(async move {
                // Bounded: at most one latency per request in `secs` seconds.
                let mut lat = Vec::with_capacity(4096);
                let Ok(s) = TcpStream::connect(addr).await else {
                    return lat;
                };
                let mut conn = BufReader::new(s);
                let prompt = format!("overhead client {i}: classify this prompt please");
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    if !matches!(load::request(&mut conn, &prompt).await, Ok(true)) {
                        break;
                    }
                    if lat.len() < 1_000_000 {
                        lat.push(t.elapsed().as_secs_f64());
                    }
                }
                lat
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let mut all: Vec<f64> = Vec::new();
    for t in tasks {
        if let Ok(l) = load_rt.block_on(t) {
            all.extend(l);
        }
    }
    all.sort_unstable_by(f64::total_cmp);
    Round {
        throughput: all.len() as f64 / elapsed,
        p50: quantile(&all, 0.5),
        p99: quantile(&all, 0.99),
    }
}

fn summary(v: &mut [f64]) -> serde_json::Value {
    v.sort_unstable_by(f64::total_cmp);
    json!({
        "median": quantile(v, 0.5),
        "min": v.first().copied(),
        "max": v.last().copied(),
    })
}

pub(crate) fn run(args: OverheadArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.rounds >= 1, "--rounds must be at least 1");
    anyhow::ensure!(
        args.seconds >= 0.5 && args.seconds <= 600.0,
        "--seconds must be from 0.5 to 600"
    );
    anyhow::ensure!(args.connections >= 1, "--connections must be at least 1");
    anyhow::ensure!(args.workers >= 1, "--workers must be at least 1");
    let json_out = match &args.json {
        Some(p) => Some(vigil::models::OutputFile::create(p, &[])?),
        None => None,
    };
    let (host, load_rt) = runtimes(args.workers)?;
    let parse = |flag: &str, v: &str| {
        vigil::agent::parse_duration(v)
            .with_context(|| format!("{flag} {v:?}: expected {}", vigil::agent::DURATION_SYNTAX))
    };
    let probe_interval = match &args.probe_interval {
        Some(p) => Some(parse("--probe-interval", p)?),
        None => None,
    };
    let tick = parse("--tick", &args.tick)?;
    let addr = serve_model(&host, 1)?.addr;
    // Warm the server, the allocator and the connections.
    measure(&load_rt, addr, args.connections, 0.5);
    let mut arms = vec![Arm::Plain, Arm::Agent, Arm::Full];
    if vigil::agent::profiling_available() {
        arms.push(Arm::Profiling);
    } else {
        eprintln!("  this build has no CPU profiler: the profiling arm is skipped");
    }
    let n = arms.len();
    // [agent, full, profiling vs plain, profiling vs agent] × [throughput, p50, p99]
    let mut ratios: [[Vec<f64>; 3]; 4] = Default::default();
    let mut rounds = Vec::new();
    for round in 0..args.rounds {
        let mut got = [None; 4];
        for k in 0..n {
            let arm = arms[(k + round as usize) % n];
            crate::alloc::set_alloc_counting(arm == Arm::Full);
            vigil::observe::set_enabled(arm != Arm::Plain);
            let agent = if arm == Arm::Plain {
                None
            } else {
                let mut b = vigil::Agent::builder()
                    .listen("127.0.0.1:0".parse()?)
                    .gpu(vigil::GpuMode::Off)
                    .tick(tick);
                if let Some(p) = probe_interval {
                    b = b.probe_interval(p);
                }
                Some(b.start(host.handle())?)
            };
            // Let the agent's first tick and probe start before measuring.
            std::thread::sleep(Duration::from_millis(200));
            let profile = match (&agent, arm) {
                (Some(a), Arm::Profiling) => Some(start_profile(a.local_addr(), args.seconds)?),
                _ => None,
            };
            got[arm as usize] = Some(measure(&load_rt, addr, args.connections, args.seconds));
            if let Some(p) = profile {
                let bytes = p
                    .join()
                    .map_err(|_| anyhow::anyhow!("the profile request panicked"))??;
                anyhow::ensure!(!bytes.is_empty(), "the agent served an empty profile");
            }
            drop(agent);
        }
        let [Some(plain), Some(agent), Some(full), profiling] = got else {
            continue;
        };
        eprintln!(
            "  round {}: plain {:.0} req/s p99 {:.2} ms · agent {:.0} req/s p99 {:.2} ms · full {:.0} req/s p99 {:.2} ms",
            round + 1,
            plain.throughput,
            plain.p99 * 1e3,
            agent.throughput,
            agent.p99 * 1e3,
            full.throughput,
            full.p99 * 1e3,
        );
        let mut pairs = vec![(agent, plain), (full, plain)];
        if let Some(p) = profiling {
            eprintln!(
                "           profiling {:.0} req/s p99 {:.2} ms",
                p.throughput,
                p.p99 * 1e3
            );
            pairs.extend([(p, plain), (p, agent)]);
        }
        for (i, (arm, base)) in pairs.iter().enumerate() {
            ratios[i][0].push(arm.throughput / base.throughput);
            ratios[i][1].push(arm.p50 / base.p50);
            ratios[i][2].push(arm.p99 / base.p99);
        }
        let j = |r: &Round| json!({"throughput": r.throughput, "p50_seconds": r.p50, "p99_seconds": r.p99});
        rounds.push(json!({
            "plain": j(&plain),
            "agent": j(&agent),
            "full": j(&full),
            "profiling": profiling.as_ref().map(j),
        }));
    }
    crate::alloc::set_alloc_counting(true);
    vigil::observe::set_enabled(true);
    let [mut agent_r, mut full_r, mut prof_r, mut prof_agent_r] = ratios;
    let arm_json = |r: &mut [Vec<f64>; 3]| {
        json!({
            "throughput_ratio": summary(&mut r[0]),
            "p50_ratio": summary(&mut r[1]),
            "p99_ratio": summary(&mut r[2]),
        })
    };
    let report = json!({
        "plain": "no agent, #[observe] switched off, allocations not counted",
        "agent": "agent on the host runtime (GPU off) and #[observe] on, allocations not counted",
        "full": "agent, #[observe] and CountingAlloc counting every allocation",
        "profiling": "like agent, with a CPU profile (99 Hz) over the whole measurement",
        "connections": args.connections,
        "host_workers": args.workers,
        "seconds_per_round": args.seconds,
        "rounds_run": args.rounds,
        "tick_seconds": tick.as_secs_f64(),
        "probe_interval_seconds": probe_interval.map(|p| p.as_secs_f64()),
        "agent_vs_plain": arm_json(&mut agent_r),
        "full_vs_plain": arm_json(&mut full_r),
        "profiling_vs_plain": arm_json(&mut prof_r),
        "profiling_vs_agent": arm_json(&mut prof_agent_r),
        "rounds": rounds,
    });
    let f = |v: &serde_json::Value| v.as_f64().map_or("-".to_owned(), |x| format!("{x:.3}"));
    for (arm, key) in [
        ("agent", "agent_vs_plain"),
        ("full", "full_vs_plain"),
        ("profiling", "profiling_vs_plain"),
        ("profiling / agent", "profiling_vs_agent"),
    ] {
        if report[key]["throughput_ratio"]["median"].is_null() {
            continue;
        }
        for (name, ratio) in [
            ("throughput", "throughput_ratio"),
            ("p50 latency", "p50_ratio"),
            ("p99 latency", "p99_ratio"),
        ] {
            let r = &report[key][ratio];
            let arm = if arm.contains('/') {
                arm.to_owned()
            } else {
                format!("{arm} / plain")
            };
            println!(
                "{arm:<17} {name:<12}: median {} (min {}, max {}) over {} rounds",
                f(&r["median"]),
                f(&r["min"]),
                f(&r["max"]),
                args.rounds
            );
        }
    }
    if let Some(mut out) = json_out {
        std::io::Write::write_all(&mut out, serde_json::to_string_pretty(&report)?.as_bytes())?;
        out.commit()?;
    }
    host.shutdown_timeout(Duration::from_secs(1));
    load_rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

/// The host's runtime (`workers` worker threads, like an inference server's) and the load
/// generator's own one-thread runtime.
pub(crate) fn runtimes(
    workers: usize,
) -> anyhow::Result<(tokio::runtime::Runtime, tokio::runtime::Runtime)> {
    let host = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("host-worker")
        .enable_all()
        .build()
        .context("building the host runtime")?;
    let load_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("load")
        .enable_all()
        .build()
        .context("building the load runtime")?;
    Ok((host, load_rt))
}

/// Asks the agent for a CPU profile covering the next `seconds` (whole seconds, rounded up, plus
/// one) and waits until it runs; the thread returns the profile's bytes.
fn start_profile(
    agent: std::net::SocketAddr,
    seconds: f64,
) -> anyhow::Result<std::thread::JoinHandle<anyhow::Result<Vec<u8>>>> {
    let length = seconds.ceil() as u64 + 1;
    anyhow::ensure!(
        length <= vigil::agent::MAX_PROFILE_SECONDS,
        "--seconds must be at most {} with the profiling arm",
        vigil::agent::MAX_PROFILE_SECONDS - 1
    );
    let host = agent.to_string();
    let handle = std::thread::spawn(move || {
        let (code, body) = vigil_tool::http::get(
            &host,
            &format!("/debug/pprof/profile?seconds={length}"),
            "the agent",
            vigil_tool::http::Limits::agent(Duration::from_secs(length + 30)),
        )?;
        anyhow::ensure!(
            code == 200,
            "the agent answered {code} to the profile request: {}",
            String::from_utf8_lossy(&body)
        );
        Ok(body)
    });
    // The profile starts as soon as the request arrives; give it that moment.
    std::thread::sleep(Duration::from_millis(100));
    Ok(handle)
}
