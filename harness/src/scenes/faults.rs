//! Fault injectors that act on the real process (only the GPU is scripted where no GPU exists). Each
//! starts and stops on command, and is bounded so it can never take the machine down: leaked tasks,
//! held memory and busy threads all have caps, and stopping releases everything.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::watch;
use vigil::models::AnomalyKind;

use super::cuda::{CudaDevice, DeviceMemory, Leak, LeakBounds};
use super::generate::GenerateFaults;
use super::model::ModelFaults;

/// Leaked tasks per tick, and at most in all.
const TASKS_PER_TICK: usize = 25;
const MAX_LEAKED_TASKS: usize = 20_000;
/// Held memory per tick, and at most in all.
const LEAK_BYTES_PER_TICK: usize = 2 << 20;
const MAX_LEAKED_BYTES: usize = 256 << 20;
/// GPU memory the scripted device gains per tick while leaking.
pub(crate) const GPU_LEAK_BYTES_PER_TICK: u64 = 256 << 20;

/// The faults a scene can inject: every anomaly type the detector names (not `unknown`, nor
/// `level_shift`, which is what an event becomes when its level stays, not a fault).
pub(crate) fn all_faults() -> Vec<AnomalyKind> {
    AnomalyKind::ALL
        .into_iter()
        .filter(|k| !matches!(k, AnomalyKind::Unknown | AnomalyKind::LevelShift))
        .collect()
}

/// Parses `--faults`: `all`, `none`, or a comma-separated list of anomaly types.
pub(crate) fn parse_faults(s: &str) -> Result<Vec<AnomalyKind>, String> {
    match s.trim() {
        "all" => Ok(all_faults()),
        "none" => Ok(Vec::new()),
        list => list
            .split(',')
            .map(|f| {
                AnomalyKind::parse(f.trim())
                    .filter(|k| *k != AnomalyKind::Unknown)
                    .ok_or_else(|| {
                        format!(
                            "unknown fault `{}`; choose from all, none or {}",
                            f.trim(),
                            all_faults()
                                .iter()
                                .map(|k| k.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    })
            })
            .collect(),
    }
}

/// GPU memory a real leak holds at most, and at most this share of what was free at the start.
const REAL_GPU_LEAK_MAX_BYTES: u64 = 8 << 30;
const REAL_GPU_LEAK_SHARE: f64 = 0.25;

/// State of the GPU leak: the scripted device reads it every tick; a real leak updates it.
#[derive(Debug, Default)]
pub(crate) struct GpuLeak {
    /// Bytes leaked so far.
    pub(crate) leaked: AtomicU64,
    /// Leaking now.
    pub(crate) active: AtomicBool,
    /// A real device to leak on (`VIGIL_GPU=nvml` with a driver); `None`: the scripted device.
    pub(crate) real: Option<RealGpu>,
}

/// A real device to leak on: where the memory comes from, the leak's bounds, and the device in words.
pub(crate) struct RealGpu {
    /// A fresh handle on the device's memory for each leak (a CUDA device, or a fake in tests).
    pub(crate) memory: Box<dyn Fn() -> Box<dyn DeviceMemory> + Send + Sync>,
    pub(crate) bounds: LeakBounds,
    /// For people: `CUDA device 0 (GPU-…)`.
    pub(crate) describe: String,
}

impl std::fmt::Debug for RealGpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealGpu")
            .field("bounds", &self.bounds)
            .field("describe", &self.describe)
            .finish_non_exhaustive()
    }
}

impl RealGpu {
    /// Opens CUDA device 0 (`CUDA_VISIBLE_DEVICES` applies, as for any CUDA program), holds its
    /// primary context for as long as this lives, and sizes the leak from its free memory.
    pub(crate) fn open() -> Result<Self, String> {
        let device = Arc::new(CudaDevice::open(0)?);
        let (free, _total) = device.mem_info()?;
        let bounds = LeakBounds::new(
            GPU_LEAK_BYTES_PER_TICK,
            REAL_GPU_LEAK_MAX_BYTES,
            REAL_GPU_LEAK_SHARE,
            free,
        )?;
        let describe = format!("CUDA device {} ({})", device.ordinal, device.uuid);
        Ok(Self {
            memory: Box::new(move || Box::new(device.clone())),
            bounds,
            describe,
        })
    }
}

/// A GPU source for scenes: one steady 80 GiB device whose used memory climbs while [`GpuLeak`] is
/// active and drops back when it stops.
pub(crate) fn scripted_gpu(leak: Arc<GpuLeak>) -> vigil::gpu::FakeGpu {
    const TOTAL: u64 = 80 << 30;
    const BASE: u64 = 12 << 30;
    vigil::gpu::FakeGpu::new(1, move |_tick, out| {
        let leaked = if leak.active.load(Ordering::Relaxed) {
            let l = leak.leaked.load(Ordering::Relaxed) + GPU_LEAK_BYTES_PER_TICK;
            let l = l.min(TOTAL - BASE);
            leak.leaked.store(l, Ordering::Relaxed);
            l
        } else {
            leak.leaked.store(0, Ordering::Relaxed);
            0
        };
        let used = (BASE + leaked) as f64;
        for r in out.iter_mut() {
            let mut reading = vigil::gpu::GpuReading::memory(used, TOTAL as f64);
            reading.utilization_ratio = 0.4;
            reading.memory_utilization_ratio = 0.25;
            reading.temperature_celsius = 60.0;
            reading.power_watts = 200.0;
            reading.process_memory_bytes = used;
            *r = reading;
        }
        Ok(())
    })
}

/// What a running fault holds, released by [`Injector::stop`].
struct Active {
    kind: AnomalyKind,
    stop: Arc<AtomicBool>,
    cancel: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
}

/// Starts and stops one fault at a time on a host runtime.
pub(crate) struct Injector {
    handle: Handle,
    workers: usize,
    tick: Duration,
    model: Arc<ModelFaults>,
    generate: Arc<GenerateFaults>,
    gpu: Arc<GpuLeak>,
    active: Option<Active>,
}

impl Injector {
    pub(crate) fn new(
        handle: Handle,
        workers: usize,
        tick: Duration,
        model: Arc<ModelFaults>,
        generate: Arc<GenerateFaults>,
        gpu: Arc<GpuLeak>,
    ) -> Self {
        Self {
            handle,
            workers,
            tick,
            model,
            generate,
            gpu,
            active: None,
        }
    }

    /// The fault running now.
    pub(crate) fn active(&self) -> Option<AnomalyKind> {
        self.active.as_ref().map(|a| a.kind)
    }

    /// Starts `kind` (stopping any fault already running).
    pub(crate) fn start(&mut self, kind: AnomalyKind) -> std::io::Result<()> {
        self.stop();
        let stop = Arc::new(AtomicBool::new(false));
        let (cancel, cancelled) = watch::channel(false);
        let mut threads = Vec::new();
        let tick = self.tick;
        match kind {
            AnomalyKind::TaskLeak => {
                // Tasks that wait for a signal that only `stop` sends: alive, never finishing.
                let stop = stop.clone();
                let handle = self.handle.clone();
                self.handle.spawn(async move {
                    let mut leaked = 0;
                    let mut every = tokio::time::interval(tick);
                    while !stop.load(Ordering::Relaxed) && leaked < MAX_LEAKED_TASKS {
                        every.tick().await;
                        for _ in 0..TASKS_PER_TICK {
                            let mut c = cancelled.clone();
                            handle.spawn(async move {
                                let _ = c.wait_for(|stop| *stop).await;
                            });
                        }
                        leaked += TASKS_PER_TICK;
                    }
                });
            }
            AnomalyKind::SchedulerStall => {
                // Handlers that block their worker: every tick, each worker is blocked for half a tick
                // (at most 250 ms), so newly woken tasks wait.
                let stop = stop.clone();
                let handle = self.handle.clone();
                let workers = self.workers;
                let block = (tick / 2).min(Duration::from_millis(250));
                self.handle.spawn(async move {
                    let mut every = tokio::time::interval(tick);
                    while !stop.load(Ordering::Relaxed) {
                        every.tick().await;
                        for _ in 0..workers {
                            handle.spawn(async move { std::thread::sleep(block) });
                        }
                    }
                });
            }
            AnomalyKind::AllocStorm => {
                let stop = stop.clone();
                threads.push(
                    std::thread::Builder::new()
                        .name("fault-alloc-storm".into())
                        .spawn(move || {
                            let mut x = 0x9e37_79b9_7f4a_7c15u64;
                            while !stop.load(Ordering::Relaxed) {
                                for _ in 0..2000 {
                                    x ^= x << 13;
                                    x ^= x >> 7;
                                    x ^= x << 17;
                                    let size = 64 + usize::try_from(x % 16_384).unwrap_or(0);
                                    let v = std::hint::black_box(vec![0u8; size]);
                                    drop(v);
                                }
                                std::thread::sleep(Duration::from_millis(1));
                            }
                        })?,
                );
            }
            AnomalyKind::MemoryLeak => {
                let stop = stop.clone();
                self.handle.spawn(async move {
                    let mut held: Vec<Vec<u8>> = Vec::new();
                    let mut every = tokio::time::interval(tick);
                    let mut cancelled = cancelled;
                    loop {
                        tokio::select! {
                            _ = every.tick() => {}
                            _ = cancelled.wait_for(|s| *s) => break,
                        }
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        if held.len() * LEAK_BYTES_PER_TICK < MAX_LEAKED_BYTES {
                            // Touched, so it is resident, not just reserved.
                            held.push(vec![0xa5; LEAK_BYTES_PER_TICK]);
                        }
                    }
                    drop(held);
                });
            }
            AnomalyKind::CpuSaturation => {
                let n = std::thread::available_parallelism().map_or(2, usize::from);
                for i in 0..n {
                    let stop = stop.clone();
                    threads.push(
                        std::thread::Builder::new()
                            .name(format!("fault-cpu-{i}"))
                            .spawn(move || {
                                let mut x = 1u64;
                                while !stop.load(Ordering::Relaxed) {
                                    for _ in 0..100_000 {
                                        x = std::hint::black_box(
                                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                                        );
                                    }
                                }
                            })?,
                    );
                }
            }
            AnomalyKind::ErrorBurst => {
                self.model.error_permille.store(200, Ordering::Relaxed);
                self.model.timeout_permille.store(100, Ordering::Relaxed);
            }
            AnomalyKind::LatencyRegression => {
                self.model.extra_passes.store(6, Ordering::Relaxed);
            }
            AnomalyKind::GpuMemoryLeak => match &self.gpu.real {
                // Device memory from this process, a step a tick up to the bounds; freed when the
                // thread ends (stop, or a panic unwinding through it).
                Some(real) => {
                    let stop = stop.clone();
                    let gpu = self.gpu.clone();
                    let mut leak = Leak::new((real.memory)(), real.bounds);
                    threads.push(
                        std::thread::Builder::new()
                            .name("fault-gpu-leak".into())
                            .spawn(move || {
                                let mut failed = false;
                                while !stop.load(Ordering::Relaxed) {
                                    match leak.step() {
                                        Ok(held) => gpu.leaked.store(held, Ordering::Relaxed),
                                        Err(e) if !failed => {
                                            failed = true;
                                            tracing::warn!("GPU leak step: {e}");
                                        }
                                        Err(_) => {}
                                    }
                                    std::thread::sleep(tick);
                                }
                                if let Err(e) = leak.release() {
                                    tracing::warn!("freeing the GPU leak: {e}");
                                }
                                gpu.leaked.store(0, Ordering::Relaxed);
                            })?,
                    );
                }
                None => self.gpu.active.store(true, Ordering::Relaxed),
            },
            AnomalyKind::FirstTokenRegression => {
                // A slower prefill: sixteen more passes over the prompt (4 ms → 68 ms).
                self.generate.prefill_passes.store(16, Ordering::Relaxed);
            }
            AnomalyKind::DecodeSlowdown => {
                // Each decode step takes five times as long.
                self.generate.decode_passes.store(4, Ordering::Relaxed);
            }
            AnomalyKind::QueueBuildup => {
                // A batch that stalls: the scheduler admits nothing for nine tenths of every tick and
                // a half (at most 2 s at a time; not a whole tick, so the stalls do not keep step with
                // the agent's samples), and arriving generations pile up in the queue.
                let stop = stop.clone();
                let generate = self.generate.clone();
                let period = tick * 3 / 2;
                let stall = (period * 9 / 10).min(Duration::from_secs(2));
                self.handle.spawn(async move {
                    let mut every = tokio::time::interval(period);
                    while !stop.load(Ordering::Relaxed) {
                        every.tick().await;
                        generate.stalled.store(true, Ordering::Relaxed);
                        tokio::time::sleep(stall).await;
                        generate.stalled.store(false, Ordering::Relaxed);
                    }
                });
            }
            AnomalyKind::Unknown | AnomalyKind::LevelShift => {}
        }
        self.active = Some(Active {
            kind,
            stop,
            cancel,
            threads,
        });
        Ok(())
    }

    /// Stops the running fault and releases what it holds (tasks finish, memory is freed, threads are
    /// joined, knobs go back to normal).
    pub(crate) fn stop(&mut self) {
        let Some(a) = self.active.take() else {
            return;
        };
        a.stop.store(true, Ordering::Relaxed);
        let _ = a.cancel.send(true);
        for t in a.threads {
            let _ = t.join();
        }
        self.model.error_permille.store(0, Ordering::Relaxed);
        self.model.timeout_permille.store(0, Ordering::Relaxed);
        self.model.extra_passes.store(0, Ordering::Relaxed);
        self.generate.prefill_passes.store(0, Ordering::Relaxed);
        self.generate.decode_passes.store(0, Ordering::Relaxed);
        self.generate.stalled.store(false, Ordering::Relaxed);
        self.gpu.active.store(false, Ordering::Relaxed);
    }
}

impl Drop for Injector {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenes::cuda::tests::Fake;

    /// The real GPU leak as the injector runs it, on a fake device: it grows a step a tick up to its
    /// cap while the fault runs, and stopping the fault frees every byte.
    #[test]
    fn a_real_gpu_leak_grows_to_its_cap_and_stopping_frees_it() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let fake = Fake::default();
        let f = fake.clone();
        let step = 1 << 20;
        let real = RealGpu {
            memory: Box::new(move || Box::new(f.clone())),
            bounds: LeakBounds::new(step, 4 * step, 1.0, 1 << 30).unwrap(),
            describe: "a fake device".into(),
        };
        let gpu = Arc::new(GpuLeak {
            real: Some(real),
            ..GpuLeak::default()
        });
        let mut injector = Injector::new(
            rt.handle().clone(),
            1,
            Duration::from_millis(5),
            Arc::new(ModelFaults::default()),
            Arc::new(GenerateFaults::default()),
            gpu.clone(),
        );
        injector.start(AnomalyKind::GpuMemoryLeak).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while gpu.leaked.load(Ordering::Relaxed) < 4 * step && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        // Well past the ticks the cap needs: still at the cap, never over.
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(gpu.leaked.load(Ordering::Relaxed), 4 * step);
        assert_eq!(fake.live_bytes(), 4 * step);
        injector.stop();
        assert_eq!(
            fake.live_bytes(),
            0,
            "stopping the fault frees the device memory"
        );
        assert_eq!(gpu.leaked.load(Ordering::Relaxed), 0);
        // Again, then the injector is dropped mid-leak (a scene that ends): freed too.
        injector.start(AnomalyKind::GpuMemoryLeak).unwrap();
        while fake.live_bytes() == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(fake.live_bytes() > 0);
        drop(injector);
        assert_eq!(fake.live_bytes(), 0, "dropping the injector frees it");
    }
}
