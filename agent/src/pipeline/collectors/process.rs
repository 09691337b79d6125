//! Process CPU, memory, threads and file descriptors.

use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};
use vigil_features::SignalSpec;
use vigil_features::vocab::{self, Known};

use super::{CollectError, Collector, fill, per_second};
use crate::metrics::{self as m, FGauge};

/// sysinfo refreshes only this process (never the whole process table); threads and open file
/// descriptors come from `/proc/self` directly.
pub(crate) struct ProcessCollector {
    system: System,
    pid: Pid,
    prev: Option<(Instant, u64)>,
    cpu_ratio: FGauge,
    cpu_seconds: Counter<f64, std::sync::atomic::AtomicU64>,
    rss: FGauge,
    virt: FGauge,
    threads: FGauge,
    fds: FGauge,
}

impl ProcessCollector {
    /// `Err` with a reason when sysinfo does not support this platform.
    pub(crate) fn new(registry: &mut Registry) -> Result<Self, String> {
        let system = System::new().map_err(|e| e.to_string())?;
        let pid = sysinfo::get_current_pid().map_err(|e| e.to_string())?;
        let c = Self {
            system,
            pid,
            prev: None,
            cpu_ratio: FGauge::default(),
            cpu_seconds: Counter::default(),
            rss: FGauge::default(),
            virt: FGauge::default(),
            threads: FGauge::default(),
            fds: FGauge::default(),
        };
        m::PROCESS_CPU_RATIO.register(registry, c.cpu_ratio.clone());
        m::PROCESS_CPU_SECONDS.register(registry, c.cpu_seconds.clone());
        m::PROCESS_RSS.register(registry, c.rss.clone());
        m::PROCESS_VIRTUAL.register(registry, c.virt.clone());
        m::PROCESS_THREADS.register(registry, c.threads.clone());
        if open_fds().is_some() {
            m::PROCESS_OPEN_FDS.register(registry, c.fds.clone());
        }
        Ok(c)
    }
}

/// Threads from `/proc/self/stat` (field 20); `None` off Linux.
fn threads() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may contain spaces and parentheses: count fields after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_ascii_whitespace().nth(17)?.parse().ok()
}

/// Open descriptors: entries of `/proc/self/fd`, minus the one `read_dir` itself holds.
fn open_fds() -> Option<f64> {
    let n = std::fs::read_dir("/proc/self/fd").ok()?.count();
    Some(n.saturating_sub(1) as f64)
}

impl Collector for ProcessCollector {
    fn name(&self) -> &'static str {
        "process"
    }

    fn signals(&self) -> Vec<SignalSpec> {
        vocab::PROCESS.iter().map(Known::spec).collect()
    }

    fn collect(&mut self, out: &mut [f64]) -> Result<(), CollectError> {
        self.system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[self.pid]),
            false,
            ProcessRefreshKind::nothing()
                .without_tasks()
                .with_cpu()
                .with_memory(),
        );
        let Some(p) = self.system.process(self.pid) else {
            return Err(CollectError(format!(
                "sysinfo cannot read process {}",
                self.pid
            )));
        };
        let now = Instant::now();
        let cpu_ms = p.accumulated_cpu_time();
        let cpu_ratio = match self.prev {
            Some((t, prev_ms)) => {
                let delta_s = cpu_ms.saturating_sub(prev_ms) as f64 / 1000.0;
                self.cpu_seconds.inc_by(delta_s);
                per_second(delta_s, now.duration_since(t))
            }
            None => f64::NAN,
        };
        self.prev = Some((now, cpu_ms));
        // The host's resident memory: where the counting allocator tells the agent's heap apart, the
        // agent's own (its windows, models, store cache) is left out, as from every alloc_* signal, so
        // the detector does not read the agent's own growth at its first fit as the host's leak.
        let agent_heap = if crate::alloc::alloc_tracking_enabled() {
            crate::alloc::agent_alloc_stats().live_bytes() as f64
        } else {
            0.0
        };
        let rss = (p.memory() as f64 - agent_heap).max(0.0);
        let virt = p.virtual_memory() as f64;
        let threads = threads().unwrap_or(f64::NAN);
        let fds = open_fds().unwrap_or(f64::NAN);
        self.cpu_ratio.set(cpu_ratio);
        self.rss.set(rss);
        self.virt.set(virt);
        self.threads.set(threads);
        self.fds.set(fds);
        fill(out, 0, &[cpu_ratio, rss, virt, threads, fds]);
        Ok(())
    }
}
