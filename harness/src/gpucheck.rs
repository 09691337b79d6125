//! `vigil bench gpu`: the GPU half checked on a real NVIDIA GPU. NVML's readings against
//! `nvidia-smi` with device memory this process allocated itself (device and per-process, within 1 %),
//! the leak attributed to this pid on the device it went to and gone once freed, the cost of one NVML
//! tick (one device and all devices), and an agent whose GPU stops answering mid-run (errors counted,
//! the other collectors going on). One table at the end; exit 1 when a check fails.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use vigil::gpu::{GpuError, GpuReading, GpuSource, NvmlSource};

use crate::scenes::cuda::{CudaDevice, Leak, LeakBounds};
use crate::scenes::faults::GPU_LEAK_BYTES_PER_TICK;

/// Flags of `vigil bench gpu`.
#[derive(Debug, clap::Args)]
pub(crate) struct GpuArgs {
    /// Device memory to allocate for the attribution check, MiB (at most a quarter of what is free).
    #[arg(long, default_value_t = 4096, value_name = "MIB")]
    alloc_mib: u64,
    /// NVML ticks timed for each cost figure.
    #[arg(long, default_value_t = 200, value_name = "N")]
    samples: u32,
    /// Ticks the agent runs in the error check; the GPU stops answering for the middle third.
    #[arg(long, default_value_t = 45, value_name = "N")]
    agent_ticks: u64,
    /// Write the results as JSON here.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// One line of the summary: what was checked, what was seen, pass or fail.
struct Check {
    what: String,
    seen: String,
    ok: bool,
}

/// `|a - b| <= 1 % of b` (and both finite).
pub(crate) fn within_one_percent(a: f64, b: f64) -> bool {
    a.is_finite() && b.is_finite() && (a - b).abs() <= 0.01 * b.abs().max(1.0)
}

/// `nvidia-smi --query-gpu=uuid,memory.used,memory.total` rows: uuid → (used, total) bytes.
pub(crate) fn parse_smi_gpus(text: &str) -> Vec<(String, f64, f64)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(',').map(str::trim);
            let uuid = f.next()?.to_owned();
            let used: f64 = f.next()?.parse().ok()?;
            let total: f64 = f.next()?.parse().ok()?;
            Some((uuid, used * MIB, total * MIB))
        })
        .collect()
}

/// `nvidia-smi --query-compute-apps=pid,gpu_uuid,used_memory` rows: (pid, uuid, bytes).
pub(crate) fn parse_smi_apps(text: &str) -> Vec<(u32, String, f64)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(',').map(str::trim);
            let pid: u32 = f.next()?.parse().ok()?;
            let uuid = f.next()?.to_owned();
            let used: f64 = f.next()?.parse().ok()?;
            Some((pid, uuid, used * MIB))
        })
        .collect()
}

const MIB: f64 = 1_048_576.0;

fn smi(args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new("nvidia-smi")
        .args(args)
        .output()
        .context("running nvidia-smi")?;
    anyhow::ensure!(
        out.status.success(),
        "nvidia-smi {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn read(src: &mut NvmlSource) -> anyhow::Result<Vec<GpuReading>> {
    let mut out = vec![GpuReading::MISSING; src.devices().len()];
    src.sample(&mut out)?;
    Ok(out)
}

/// Median and 99th percentile of `n` timed NVML ticks, µs.
fn tick_cost(src: &mut NvmlSource, n: u32) -> anyhow::Result<(f64, f64)> {
    let mut out = vec![GpuReading::MISSING; src.devices().len()];
    let mut us = Vec::with_capacity(n as usize);
    for _ in 0..n.max(1) {
        let t = Instant::now();
        src.sample(&mut out)?;
        us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    us.sort_unstable_by(f64::total_cmp);
    Ok((
        vigil_tool::engine::quantile(&us, 0.5),
        vigil_tool::engine::quantile(&us, 0.99),
    ))
}

/// A real NVML source that stops answering for a stretch of ticks, as a GPU that falls off the bus
/// does (`GPU is lost`): every device errs and reads nothing, then it comes back.
struct StopsAnswering {
    inner: NvmlSource,
    tick: u64,
    silent: std::ops::Range<u64>,
}

impl GpuSource for StopsAnswering {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn devices(&self) -> &[vigil::gpu::GpuDevice] {
        self.inner.devices()
    }
    fn sample(&mut self, out: &mut [GpuReading]) -> Result<(), GpuError> {
        let tick = self.tick;
        self.tick += 1;
        if self.silent.contains(&tick) {
            out.fill(GpuReading::MISSING);
            return Err(GpuError::Device {
                index: self.inner.devices().first().map_or(0, |d| d.index),
                message: "GPU is lost (injected by vigil bench gpu)".into(),
            });
        }
        self.inner.sample(out)
    }
}

/// The value of `metric{label="value"}` in exposition text.
pub(crate) fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .trim()
            .split(' ')
            .next()?
            .parse()
            .ok()
    })
}

pub(crate) fn run(args: GpuArgs) -> anyhow::Result<()> {
    let mut checks: Vec<Check> = Vec::new();
    let mut nvml =
        NvmlSource::init().context("vigil bench gpu needs an NVIDIA GPU and its driver")?;
    let device = Arc::new(
        CudaDevice::open(0)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("vigil bench gpu allocates device memory through the CUDA driver")?,
    );
    let Some(gpu) = nvml.devices().iter().position(|d| d.uuid == device.uuid) else {
        anyhow::bail!(
            "CUDA device 0 ({}) is not among NVML's devices {:?}",
            device.uuid,
            nvml.devices()
        );
    };
    let index = nvml.devices()[gpu].index;
    let uuid = device.uuid.clone();
    let name = nvml.devices()[gpu].name.clone();
    let pid = std::process::id();
    println!(
        "vigil bench gpu: {} device(s); CUDA device 0 is NVML GPU {index} ({name}, {}); pid {pid}",
        nvml.devices().len(),
        device.uuid
    );
    std::thread::sleep(Duration::from_millis(300));
    let before = read(&mut nvml)?[gpu];

    // 1. Readings against nvidia-smi, with memory this process holds.
    let (free, _) = device.mem_info().map_err(|e| anyhow::anyhow!("{e}"))?;
    let bounds = LeakBounds::new(GPU_LEAK_BYTES_PER_TICK, args.alloc_mib << 20, 0.25, free)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut leak = Leak::new(device.clone(), bounds);
    while leak.held() < bounds.cap {
        leak.step().map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let held = leak.held() as f64;
    std::thread::sleep(Duration::from_millis(500));
    let ours = read(&mut nvml)?[gpu];
    let gpus = parse_smi_gpus(&smi(&[
        "--query-gpu=uuid,memory.used,memory.total",
        "--format=csv,noheader,nounits",
    ])?);
    let apps = parse_smi_apps(&smi(&[
        "--query-compute-apps=pid,gpu_uuid,used_memory",
        "--format=csv,noheader,nounits",
    ])?);
    let again = read(&mut nvml)?[gpu];
    println!("  nvidia-smi GPUs: {gpus:?}");
    println!("  nvidia-smi compute apps: {apps:?}");
    let smi_used = gpus
        .iter()
        .find(|g| g.0 == device.uuid)
        .map_or(f64::NAN, |g| g.1);
    let smi_total = gpus
        .iter()
        .find(|g| g.0 == device.uuid)
        .map_or(f64::NAN, |g| g.2);
    let smi_ours = apps
        .iter()
        .filter(|a| a.0 == pid && a.1 == device.uuid)
        .map(|a| a.2)
        .fold(f64::NAN, |acc, b| if acc.is_nan() { b } else { acc + b });
    let nvml_used = (ours.memory_used_bytes + again.memory_used_bytes) / 2.0;
    checks.push(Check {
        what: "device memory used, NVML vs nvidia-smi (within 1 %)".into(),
        seen: format!("{:.0} MiB vs {:.0} MiB", nvml_used / MIB, smi_used / MIB),
        ok: within_one_percent(nvml_used, smi_used),
    });
    checks.push(Check {
        what: "device memory total, NVML vs nvidia-smi (within 1 %)".into(),
        seen: format!(
            "{:.0} MiB vs {:.0} MiB",
            ours.memory_total_bytes / MIB,
            smi_total / MIB
        ),
        ok: within_one_percent(ours.memory_total_bytes, smi_total),
    });
    checks.push(Check {
        what: format!("this process's memory on GPU {index}, NVML vs nvidia-smi (within 1 %)"),
        seen: format!(
            "{:.0} MiB vs {}",
            ours.process_memory_bytes / MIB,
            if smi_ours.is_nan() {
                "pid not listed by nvidia-smi".to_owned()
            } else {
                format!("{:.0} MiB", smi_ours / MIB)
            }
        ),
        ok: within_one_percent(ours.process_memory_bytes, smi_ours),
    });
    let grew = ours.process_memory_bytes - before.process_memory_bytes;
    checks.push(Check {
        what: format!("the allocation is attributed to this pid on GPU {index} (within 1 %)"),
        seen: format!(
            "+{:.0} MiB for {:.0} MiB allocated (context {:.0} MiB before)",
            grew / MIB,
            held / MIB,
            before.process_memory_bytes / MIB
        ),
        ok: within_one_percent(grew, held),
    });
    leak.release().map_err(|e| anyhow::anyhow!("{e}"))?;
    std::thread::sleep(Duration::from_millis(500));
    let after = read(&mut nvml)?[gpu];
    checks.push(Check {
        what: "freed on release: process memory back to before (within 1 %)".into(),
        seen: format!(
            "{:.0} MiB after, {:.0} MiB before",
            after.process_memory_bytes / MIB,
            before.process_memory_bytes / MIB
        ),
        ok: within_one_percent(after.process_memory_bytes, before.process_memory_bytes),
    });

    // 2. What one tick of NVML costs.
    let all = nvml.devices().len();
    let (all_p50, all_p99) = tick_cost(&mut nvml, args.samples)?;
    let mut one = NvmlSource::init()?;
    one.retain_devices(|d| d.index == index);
    let (one_p50, one_p99) = tick_cost(&mut one, args.samples)?;
    checks.push(Check {
        what: format!("NVML tick, 1 device (median / p99 of {})", args.samples),
        seen: format!("{one_p50:.0} µs / {one_p99:.0} µs"),
        ok: one_p50.is_finite(),
    });
    checks.push(Check {
        what: format!("NVML tick, all {all} device(s) (median / p99)"),
        seen: format!("{all_p50:.0} µs / {all_p99:.0} µs"),
        ok: all_p50.is_finite(),
    });
    drop(one);

    // 3. The GPU stops answering mid-run inside a running agent.
    let third = args.agent_ticks.max(9) / 3;
    let silent = third..2 * third;
    let (gpu_errors, other_ok, gpu_missing, gpu_back) =
        agent_with_a_lost_gpu(nvml, silent.clone(), args.agent_ticks.max(9), index)?;
    let silent_ticks = silent.end - silent.start;
    checks.push(Check {
        what: format!("GPU silent for {silent_ticks} ticks: counted in vigil_agent_collector_errors_total{{collector=\"gpu\"}}"),
        seen: format!("{gpu_errors} errors counted, GPU values missing on {gpu_missing} ticks"),
        ok: gpu_errors == silent_ticks as f64 && gpu_missing == silent_ticks,
    });
    checks.push(Check {
        what: "meanwhile the other collectors go on, and the GPU comes back".into(),
        seen: format!(
            "process and runtime signals on every tick: {other_ok}; GPU readings after: {gpu_back}"
        ),
        ok: other_ok && gpu_back,
    });
    drop(device);

    println!("\n| check | seen | |\n|---|---|---|");
    for c in &checks {
        println!(
            "| {} | {} | {} |",
            c.what,
            c.seen,
            if c.ok { "ok" } else { "**FAIL**" }
        );
    }
    if let Some(path) = &args.json {
        let v = json!({
            "gpu": {"index": index, "uuid": uuid, "name": name},
            "checks": checks.iter().map(|c| json!({"check": c.what, "seen": c.seen, "ok": c.ok})).collect::<Vec<_>>(),
            "nvml_tick_us": {"one_device_p50": one_p50, "one_device_p99": one_p99, "all_devices_p50": all_p50, "all_devices_p99": all_p99, "devices": all},
        });
        std::fs::write(path, serde_json::to_vec_pretty(&v)?)
            .with_context(|| format!("{}: cannot write", path.display()))?;
    }
    let failed = checks.iter().filter(|c| !c.ok).count();
    anyhow::ensure!(
        failed == 0,
        "{failed} of {} GPU checks failed",
        checks.len()
    );
    Ok(())
}

/// Runs an agent on `nvml` for `ticks` ticks, the GPU silent on the `silent` ticks. Returns the GPU
/// errors the agent counted, whether process and runtime signals were read on every tick, on how many
/// ticks GPU `index`'s memory was missing, and whether it was read again after the silence.
fn agent_with_a_lost_gpu(
    nvml: NvmlSource,
    silent: std::ops::Range<u64>,
    ticks: u64,
    index: u32,
) -> anyhow::Result<(f64, bool, u64, bool)> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let source = StopsAnswering {
        inner: nvml,
        tick: 0,
        silent,
    };
    let agent = vigil::Agent::builder()
        .tick(Duration::from_millis(100))
        .data_dir(None)
        .listen(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .gpu_source(source)
        .start(rt.handle())?;
    let mut samples = agent.subscribe();
    let gpu_signal = format!("gpu{index}_memory_used_bytes");
    let (mut other_ok, mut missing, mut last_gpu) = (true, 0u64, false);
    for seen in 0..ticks {
        let changed = rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), samples.changed()).await
        });
        anyhow::ensure!(matches!(changed, Ok(Ok(()))), "the agent stopped ticking");
        let s = samples.borrow_and_update().clone();
        let read = |n: &str| s.get(n).is_some_and(f64::is_finite);
        // A rate needs two samples: the first tick's CPU ratio is missing by design.
        if seen > 0 {
            other_ok &= read("process_cpu_ratio") && read("tokio_alive_tasks");
        }
        last_gpu = read(&gpu_signal);
        if !last_gpu {
            missing += 1;
        }
    }
    let text = agent.metrics_text();
    agent.shutdown();
    let errors = metric_value(
        &text,
        "vigil_agent_collector_errors_total{collector=\"gpu\"}",
    )
    .unwrap_or(0.0);
    Ok((errors, other_ok, missing, last_gpu))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvidia_smi_rows_parse_to_bytes() {
        let g = parse_smi_gpus(
            "GPU-0a1b2c3d-0000-1111-2222-333344445555, 4603, 143771\nGPU-x, [N/A], 10\n\n",
        );
        assert_eq!(
            g,
            vec![(
                "GPU-0a1b2c3d-0000-1111-2222-333344445555".to_owned(),
                4603.0 * MIB,
                143771.0 * MIB
            )]
        );
        let a = parse_smi_apps("1234, GPU-a, 4600\nbad line\n77, GPU-b, [N/A]\n");
        assert_eq!(a, vec![(1234, "GPU-a".to_owned(), 4600.0 * MIB)]);
    }

    #[test]
    fn one_percent_is_relative_and_nan_never_passes() {
        assert!(within_one_percent(100.9, 100.0));
        assert!(!within_one_percent(101.1, 100.0));
        assert!(!within_one_percent(f64::NAN, 100.0));
        assert!(!within_one_percent(100.0, f64::NAN));
    }

    #[test]
    fn the_error_counter_is_read_from_the_exposition() {
        let text = "# HELP x\nvigil_agent_collector_errors_total{collector=\"gpu\"} 15\n\
                    vigil_agent_collector_errors_total{collector=\"process\"} 0\n";
        assert_eq!(
            metric_value(
                text,
                "vigil_agent_collector_errors_total{collector=\"gpu\"}"
            ),
            Some(15.0)
        );
        assert_eq!(
            metric_value(text, "vigil_agent_collector_errors_total{collector=\"x\"}"),
            None
        );
    }
}
