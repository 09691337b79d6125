//! `vigil bench overhead`: what the agent costs the host. The demo's inference server under a fixed
//! closed-loop load (keep-alive clients sending the next request as soon as the last one is answered),
//! with the agent off and on in alternating rounds in one run; reports throughput and p50/p99 latency
//! ratios (on / off) with their spread across rounds.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use tokio::io::BufReader;
use tokio::net::TcpStream;

use super::scenes::{load, serve_model};

/// Flags of `vigil bench overhead`.
#[derive(Debug, clap::Args)]
pub(crate) struct OverheadArgs {
    /// Pairs of rounds (agent off, agent on; the order alternates between pairs).
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
    /// Write the results as JSON here.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// One round's measurements.
#[derive(Debug, Clone, Copy)]
struct Round {
    throughput: f64,
    p50: f64,
    p99: f64,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
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
    all.sort_by(f64::total_cmp);
    Round {
        throughput: all.len() as f64 / elapsed,
        p50: percentile(&all, 0.5),
        p99: percentile(&all, 0.99),
    }
}

fn summary(v: &mut [f64]) -> serde_json::Value {
    v.sort_by(f64::total_cmp);
    json!({
        "median": percentile(v, 0.5),
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
    let host = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers)
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
    let (addr, _faults, _counters) = serve_model(&host, 1)?;
    // Warm the server, the allocator and the connections.
    measure(&load_rt, addr, args.connections, 0.5);
    let mut ratios = (Vec::new(), Vec::new(), Vec::new());
    let mut rounds = Vec::new();
    for pair in 0..args.rounds {
        let mut off = None;
        let mut on = None;
        // Alternate which arm goes first so slow drift does not favour one.
        let order = if pair % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for agent_on in order {
            let agent = if agent_on {
                vigil::observe::set_enabled(true);
                Some(
                    vigil::Agent::builder()
                        .listen("127.0.0.1:0".parse()?)
                        .gpu(vigil::GpuMode::Off)
                        .start(host.handle())?,
                )
            } else {
                // The baseline: no agent, and #[observe] switched off (one atomic load per call).
                vigil::observe::set_enabled(false);
                None
            };
            // Let the agent's first tick and probe start before measuring.
            std::thread::sleep(Duration::from_millis(200));
            let r = measure(&load_rt, addr, args.connections, args.seconds);
            drop(agent);
            if agent_on {
                on = Some(r);
            } else {
                off = Some(r);
            }
        }
        if let (Some(a), Some(b)) = (off, on) {
            eprintln!(
                "  pair {}: off {:.0} req/s p99 {:.2} ms · on {:.0} req/s p99 {:.2} ms",
                pair + 1,
                a.throughput,
                a.p99 * 1e3,
                b.throughput,
                b.p99 * 1e3
            );
            ratios.0.push(b.throughput / a.throughput);
            ratios.1.push(b.p50 / a.p50);
            ratios.2.push(b.p99 / a.p99);
            rounds.push(json!({
                "off": {"throughput": a.throughput, "p50_seconds": a.p50, "p99_seconds": a.p99},
                "on": {"throughput": b.throughput, "p50_seconds": b.p50, "p99_seconds": b.p99},
            }));
        }
    }
    vigil::observe::set_enabled(true);
    let report = json!({
        "baseline": "no agent, #[observe] switched off; CountingAlloc is the allocator in both arms",
        "treatment": "agent started on the host runtime (default settings, GPU off), #[observe] on",
        "connections": args.connections,
        "host_workers": args.workers,
        "seconds_per_round": args.seconds,
        "pairs": args.rounds,
        "throughput_ratio": summary(&mut ratios.0),
        "p50_ratio": summary(&mut ratios.1),
        "p99_ratio": summary(&mut ratios.2),
        "rounds": rounds,
    });
    let f = |v: &serde_json::Value| v.as_f64().map_or("-".to_owned(), |x| format!("{x:.3}"));
    for (name, key) in [
        ("throughput", "throughput_ratio"),
        ("p50 latency", "p50_ratio"),
        ("p99 latency", "p99_ratio"),
    ] {
        println!(
            "{name:<12} on/off: median {} (min {}, max {}) over {} pairs",
            f(&report[key]["median"]),
            f(&report[key]["min"]),
            f(&report[key]["max"]),
            args.rounds
        );
    }
    if let Some(mut out) = json_out {
        std::io::Write::write_all(&mut out, serde_json::to_string_pretty(&report)?.as_bytes())?;
        out.commit()?;
    }
    host.shutdown_timeout(Duration::from_secs(1));
    load_rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}
