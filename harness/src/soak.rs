//! `vigil bench soak`: does the agent's resident memory stay flat over a long run? The demo's
//! inference server under a light closed-loop load, with the agent started the way a host starts it
//! (store on in a fresh data directory, event profiles on, a cold start, scheduled refits) at a fast
//! tick, scraped once a second over HTTP like a Prometheus would. Resident memory (`VmRSS`) is read at
//! every scrape; the report gives it when the agent's history of windows is first full (from then on
//! every buffer the agent keeps is at its bound) and at each quarter of the run after that, and the
//! least-squares slope over the second half of the run.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use crate::memory::{Load, agent_get, duration_flag, in_scratch_store, mb, rss};
use crate::scenes::serve_model;

/// Flags of `vigil bench soak`.
#[derive(Debug, clap::Args)]
pub(crate) struct SoakArgs {
    /// Ticks to run (the issue that asked for the soak asks for at least 100,000).
    #[arg(long, default_value_t = 100_000)]
    ticks: u64,
    /// The agent's tick (10ms is the shortest the agent takes).
    #[arg(long, value_name = "DURATION", default_value = "10ms")]
    tick: String,
    /// How often the agent refits its model during the run (each refit trains on the full history).
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    refit_interval: String,
    /// Keep-alive connections of the host's load.
    #[arg(long, default_value_t = 1)]
    connections: u32,
    /// Write the results (every reading included) as JSON here.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// One reading: ticks the agent had made, and this process's resident memory then.
#[derive(Debug, Clone, Copy)]
struct Reading {
    seconds: f64,
    ticks: u64,
    rss: u64,
}

pub(crate) fn run(args: SoakArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1_000..=100_000_000).contains(&args.ticks),
        "--ticks must be from 1000 to 100000000"
    );
    anyhow::ensure!(args.connections >= 1, "--connections must be at least 1");
    let tick = duration_flag("--tick", &args.tick)?;
    let refit = duration_flag("--refit-interval", &args.refit_interval)?;
    in_scratch_store("soak", args.json.as_deref(), |dir| {
        soak(&args, tick, refit, dir)
    })
}

/// The agent's tick count, from its own counter on `/metrics`.
fn ticks_of(exposition: &str) -> Option<u64> {
    exposition.lines().find_map(|l| {
        let v = l.strip_prefix("vigil_agent_ticks_total ")?;
        v.trim().parse::<f64>().ok().map(|t| t as u64)
    })
}

/// Least-squares slope of resident memory against ticks, bytes per tick.
fn slope(readings: &[Reading]) -> f64 {
    let n = readings.len() as f64;
    if readings.len() < 2 {
        return 0.0;
    }
    let mx = readings.iter().map(|r| r.ticks as f64).sum::<f64>() / n;
    let my = readings.iter().map(|r| r.rss as f64).sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for r in readings {
        let dx = r.ticks as f64 - mx;
        sxy += dx * (r.rss as f64 - my);
        sxx += dx * dx;
    }
    if sxx > 0.0 { sxy / sxx } else { 0.0 }
}

fn soak(
    args: &SoakArgs,
    tick: Duration,
    refit: Duration,
    data_dir: &std::path::Path,
) -> anyhow::Result<serde_json::Value> {
    // A cold start of 500 ticks (at least a second, as the agent requires), then scoring.
    let warm_up = (tick * 500).max(Duration::from_secs(1));
    let listen: std::net::SocketAddr = "127.0.0.1:0".parse()?;
    let builder = || {
        vigil::Agent::builder()
            .listen(listen)
            .gpu(vigil::GpuMode::Off)
            .tick(tick)
            .warm_up(warm_up)
            .refit_interval(Some(refit))
            .data_dir(Some(data_dir.to_path_buf()))
    };
    let engine = builder().check()?.engine_config();
    // From here on the history of windows (the largest buffer the agent keeps) is at its bound.
    let full_at = (engine.history_windows + engine.horizons.long()) as u64;
    anyhow::ensure!(
        args.ticks >= 2 * full_at,
        "--ticks must be at least {} with these settings: twice the {} ticks it takes the history to fill",
        2 * full_at,
        full_at
    );

    let (host, load_rt) = crate::overhead::runtimes(2)?;
    let addr = serve_model(&host, 1)?.addr;
    let load = Load::start(&load_rt, addr, args.connections);
    std::thread::sleep(Duration::from_secs(1));
    let host_rss = rss();
    let agent = builder().start(host.handle())?;
    let agent_addr = agent.local_addr();
    eprintln!(
        "soak: {} ticks of {:?} (about {:.0} s), history full after {full_at} ticks, refits every {:?}; host alone {:.1} MB",
        args.ticks,
        tick,
        args.ticks as f64 * tick.as_secs_f64(),
        refit,
        mb(host_rss)
    );
    let started = Instant::now();
    // The run may fall behind its tick (a slow machine): allow it four times as long.
    let deadline = started + tick.mul_f64(args.ticks as f64 * 4.0) + Duration::from_secs(60);
    let mut readings = Vec::new();
    let mut failed_scrapes = 0u64;
    let mut next_report = 0u64;
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let body = agent_get(agent_addr, "/metrics", Duration::from_secs(10))
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        let Some(ticks) = body.ok().as_deref().and_then(ticks_of) else {
            failed_scrapes += 1;
            anyhow::ensure!(
                failed_scrapes <= 10,
                "the agent's /metrics failed 10 times; giving up"
            );
            continue;
        };
        let r = Reading {
            seconds: started.elapsed().as_secs_f64(),
            ticks,
            rss: rss(),
        };
        readings.push(r);
        if ticks >= next_report {
            eprintln!(
                "  {:>9} ticks  {:>7.1} s  {:>6.1} MB resident",
                r.ticks,
                r.seconds,
                mb(r.rss)
            );
            next_report = ticks + args.ticks / 20;
        }
        if ticks >= args.ticks {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the agent made only {ticks} of {} ticks in {:.0} s",
            args.ticks,
            started.elapsed().as_secs_f64()
        );
    }
    let served = load.served.load(std::sync::atomic::Ordering::Relaxed);
    drop(load);
    drop(agent);
    host.shutdown_timeout(Duration::from_secs(1));
    load_rt.shutdown_timeout(Duration::from_secs(1));

    let after_full: Vec<Reading> = readings
        .iter()
        .copied()
        .filter(|r| r.ticks >= full_at)
        .collect();
    let first = *after_full
        .first()
        .context("no reading after the history was full")?;
    let last = *after_full.last().context("no reading at the end")?;
    let at = |q: f64| {
        let t = first.ticks as f64 + q * (last.ticks - first.ticks) as f64;
        after_full
            .iter()
            .copied()
            .find(|r| r.ticks as f64 >= t)
            .unwrap_or(last)
    };
    let quarters: Vec<Reading> = [0.25, 0.5, 0.75, 1.0].iter().map(|&q| at(q)).collect();
    let peak = after_full.iter().map(|r| r.rss).max().unwrap_or(0);
    let mid = at(0.5);
    let second_half: Vec<Reading> = after_full
        .iter()
        .copied()
        .filter(|r| r.ticks >= mid.ticks)
        .collect();
    let per_10k = slope(&second_half) * 10_000.0;
    println!(
        "resident memory once the history was full ({} ticks): {:.1} MB; at each quarter after: {}; end {:.1} MB ({:+.1} MB), peak {:.1} MB; second-half slope {:+.3} MB per 10,000 ticks; host alone {:.1} MB; {served} requests served",
        first.ticks,
        mb(first.rss),
        quarters
            .iter()
            .map(|r| format!("{:.1} MB at {}", mb(r.rss), r.ticks))
            .collect::<Vec<_>>()
            .join(", "),
        mb(last.rss),
        (last.rss as f64 - first.rss as f64) / 1e6,
        mb(peak),
        per_10k / 1e6,
        mb(host_rss)
    );
    Ok(json!({
        "ticks": last.ticks,
        "tick_seconds": tick.as_secs_f64(),
        "refit_interval_seconds": refit.as_secs_f64(),
        "history_full_at_ticks": full_at,
        "host_bytes": host_rss,
        "full_bytes": first.rss,
        "end_bytes": last.rss,
        "peak_after_full_bytes": peak,
        "growth_after_full_bytes": last.rss as i64 - first.rss as i64,
        "second_half_slope_bytes_per_10k_ticks": per_10k,
        "seconds": last.seconds,
        "requests_served": served,
        "readings": readings
            .iter()
            .map(|r| json!({"seconds": r.seconds, "ticks": r.ticks, "rss_bytes": r.rss}))
            .collect::<Vec<_>>(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slope_is_bytes_per_tick() {
        let flat: Vec<Reading> = (0..10)
            .map(|i| Reading {
                seconds: i as f64,
                ticks: i * 100,
                rss: 5_000_000,
            })
            .collect();
        assert_eq!(slope(&flat), 0.0);
        let rising: Vec<Reading> = (0..10)
            .map(|i| Reading {
                seconds: i as f64,
                ticks: i * 100,
                rss: 5_000_000 + i * 1_000,
            })
            .collect();
        assert!((slope(&rising) - 10.0).abs() < 1e-9);
        assert_eq!(
            ticks_of("# TYPE vigil_agent_ticks_total counter\nvigil_agent_ticks_total 4321\n"),
            Some(4321)
        );
    }
}
