//! Scenes: a real inference server (an MLP over ndarray, `#[vigil::observe]` on its stages) with the
//! agent linked in, under production-like load, with faults injected on command. `vigil demo` and
//! `vigil bench detect` both run scenes, so what the demo shows is what the benchmark measures.

pub(crate) mod cuda;
pub(crate) mod faults;
pub(crate) mod generate;
pub(crate) mod load;
pub(crate) mod model;
pub(crate) mod record;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use tokio::sync::watch;
use vigil::features::Sample;
use vigil::models::{AnomalyKind, Score};

use faults::{GpuLeak, Injector};
use generate::GenerateFaults;
use load::{Counters, LoadPlan, Pace};
use model::{Mlp, ModelFaults};

/// Cold-start windows the agent of a benchmark run trains on.
pub(crate) const WARM_UP_WINDOWS: u32 = 50;

/// The agent's engine settings in a benchmark run (what the scenes' agents use, and what a replay of
/// their recordings uses: `bench detect --replay`, `bench feedback`).
pub(crate) fn bench_engine(tick: Duration) -> anyhow::Result<vigil::models::EngineConfig> {
    Ok(vigil::Agent::builder()
        .tick(tick)
        .warm_up(tick * WARM_UP_WINDOWS)
        .check()?
        .engine_config())
}

/// How a scene is set up.
#[derive(Debug, Clone)]
pub(crate) struct SceneConfig {
    /// The agent's tick; `None`: `VIGIL_TICK` (with `from_env`) or the agent's default.
    pub(crate) tick: Option<Duration>,
    /// The cold-start warm-up; `None`: `VIGIL_WARMUP` (with `from_env`) or one minute.
    pub(crate) warm_up: Option<Duration>,
    pub(crate) seed: u64,
    pub(crate) rps: f64,
    pub(crate) workers: usize,
    /// The agent's address; `None`: `VIGIL_LISTEN` (with `from_env`) or the agent's default.
    pub(crate) listen: Option<SocketAddr>,
    pub(crate) model: Option<std::path::PathBuf>,
    /// Apply `VIGIL_*` variables (the demo does, the benchmark does not: it must be reproducible).
    pub(crate) from_env: bool,
    /// Read the real GPUs through NVML and inject `gpu_memory_leak` as real device memory of this
    /// process (`VIGIL_GPU=nvml`). Without a CUDA driver the scene says why and uses the scripted device.
    pub(crate) real_gpu: bool,
}

/// `VIGIL_GPU=nvml`: the demo and `vigil bench detect` use the real GPU.
pub(crate) fn real_gpu_asked() -> bool {
    std::env::var("VIGIL_GPU").is_ok_and(|v| v.trim().eq_ignore_ascii_case("nvml"))
}

/// One tick as the scene saw it.
#[derive(Debug, Clone)]
pub(crate) struct Tick {
    pub(crate) sample: Arc<Sample>,
    pub(crate) score: Option<Score>,
    /// The anomaly event that opened on this tick.
    pub(crate) opened: Option<vigil::models::Event>,
    /// The open event whose type changed on this tick.
    pub(crate) retyped: Option<vigil::models::Event>,
    /// An event is open after this tick.
    pub(crate) in_event: bool,
    /// The fault running during this tick.
    pub(crate) fault: Option<AnomalyKind>,
    /// Load multiplier of this tick.
    pub(crate) load: f64,
}

struct ServerState {
    mlp: Arc<Mlp>,
    faults: Arc<ModelFaults>,
    counters: Arc<Counters>,
}

async fn predict(State(s): State<Arc<ServerState>>, body: String) -> (StatusCode, String) {
    match s.mlp.request(body.as_bytes(), &s.faults).await {
        Ok((label, score)) => {
            s.counters.served.fetch_add(1, Ordering::Relaxed);
            (
                StatusCode::OK,
                format!("{{\"label\":{label},\"score\":{score:.4}}}"),
            )
        }
        Err(e) => {
            s.counters.failed.fetch_add(1, Ordering::Relaxed);
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{{\"error\":\"{e}\"}}"),
            )
        }
    }
}

/// The demo server's fault knobs and counters.
pub(crate) struct Served {
    pub(crate) addr: SocketAddr,
    pub(crate) model: Arc<ModelFaults>,
    pub(crate) generate: Arc<GenerateFaults>,
    pub(crate) counters: Arc<Counters>,
}

/// Starts the demo inference server on `rt`, bound to a free loopback port: `POST /v1/predict` (a
/// classification) and `POST /v1/generate` (a streamed generation, [`generate`]), both behind
/// `vigil::observe::http::HttpMetricsLayer`.
pub(crate) fn serve_model(rt: &tokio::runtime::Runtime, seed: u64) -> anyhow::Result<Served> {
    let model_faults = Arc::new(ModelFaults::default());
    let generate_faults = Arc::new(GenerateFaults::default());
    let counters = Arc::new(Counters::default());
    let mlp = Arc::new(Mlp::new(seed));
    let state = Arc::new(ServerState {
        mlp: mlp.clone(),
        faults: model_faults.clone(),
        counters: counters.clone(),
    });
    let generator = Arc::new(generate::Generator::new(mlp, generate_faults.clone()));
    let app = Router::new()
        .route("/v1/predict", post(predict))
        .with_state(state)
        .merge(
            Router::new()
                .route("/v1/generate", post(generate::generate))
                .with_state(generator),
        )
        .layer(vigil::observe::http::HttpMetricsLayer);
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .context("binding the inference server")?;
    let server_addr = listener.local_addr()?;
    rt.spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("inference server stopped: {e}");
        }
    });
    Ok(Served {
        addr: server_addr,
        model: model_faults,
        generate: generate_faults,
        counters,
    })
}

/// A running scene. Dropping it stops the fault, the agent, the load and the server.
pub(crate) struct Scene {
    // Field order is drop order: the injector releases its fault before the runtime goes.
    injector: Injector,
    agent: Option<vigil::AgentHandle>,
    rt: Option<tokio::runtime::Runtime>,
    scores: watch::Receiver<Option<Score>>,
    events: tokio::sync::broadcast::Receiver<vigil::agent::EventNotice>,
    plan: LoadPlan,
    pace: Arc<Pace>,
    base_rps: f64,
    pub(crate) counters: Arc<Counters>,
    pub(crate) server_addr: SocketAddr,
    pub(crate) agent_addr: SocketAddr,
    pub(crate) tick: Duration,
    /// Where GPU signals and the GPU leak come from, in words (for the demo's header).
    pub(crate) gpu_note: String,
    ticks: u64,
}

impl Scene {
    pub(crate) fn start(cfg: &SceneConfig) -> anyhow::Result<Self> {
        anyhow::ensure!(cfg.workers > 0, "--workers must be at least 1");
        anyhow::ensure!(cfg.rps > 0.0, "--rps must be above 0");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cfg.workers)
            .thread_name("scene-worker")
            .enable_all()
            .build()
            .context("building the scene's server runtime")?;
        // A real GPU: its primary context is created now, before the agent starts, so the memory it
        // takes is part of the baseline, as in a serving process that holds a context all its life.
        let (real, gpu_note) = if cfg.real_gpu {
            match faults::RealGpu::open() {
                Ok(r) => {
                    let note = format!(
                        "GPU signals from NVML; gpu_memory_leak allocates real device memory on {}, \
                         {} MiB a tick, at most {} MiB",
                        r.describe,
                        r.bounds.step >> 20,
                        r.bounds.cap >> 20
                    );
                    (Some(r), note)
                }
                Err(e) => (
                    None,
                    format!("no real GPU leak ({e}); GPU signals come from the scripted device"),
                ),
            }
        } else {
            (None, "GPU signals from the scripted device".to_owned())
        };
        let real_gpu = real.is_some();
        let gpu_leak = Arc::new(GpuLeak {
            real,
            ..GpuLeak::default()
        });
        // Defaults, then VIGIL_* variables (the demo), then explicit settings.
        let mut builder = vigil::Agent::builder().warm_up(Duration::from_secs(60));
        if cfg.from_env {
            // The demo is a host like any other: VIGIL_DATA_DIR (default ./vigil-data) applies.
            builder = builder.from_env()?;
        } else {
            // Benchmark scenes run several agents one after another: no store.
            builder = builder.data_dir(None);
        }
        if let Some(t) = cfg.tick {
            builder = builder.tick(t);
        }
        if let Some(w) = cfg.warm_up {
            builder = builder.warm_up(w);
        }
        // The scripted device lets the GPU leak be injected anywhere; with a real one, NVML reads it.
        builder = if real_gpu {
            builder.gpu(vigil::gpu::GpuMode::Nvml)
        } else {
            builder.gpu_source(faults::scripted_gpu(gpu_leak.clone()))
        };
        if let Some(addr) = cfg.listen {
            builder = builder.listen(addr);
        }
        if let Some(model) = &cfg.model {
            builder = builder.model_path(model);
        }
        let agent = builder.start(rt.handle())?;
        let agent_addr = agent.local_addr();
        let tick = agent.tick();
        let scores = agent.subscribe_scores();
        let events = agent.subscribe_events();
        let served = serve_model(&rt, cfg.seed)?;
        let (server_addr, counters) = (served.addr, served.counters.clone());
        let plan = LoadPlan::new(cfg.seed);
        let pace = Arc::new(Pace::new(cfg.rps * plan.factor(0)));
        // Predictions at the plan's rate; streamed generations at a twentieth of it, same shape.
        let clients = (0..load::CLIENTS).map(|id| (id, load::Ask::Predict));
        let streams = (0..load::STREAM_CLIENTS).map(|id| (id, load::Ask::Generate));
        for (id, ask) in clients.chain(streams) {
            rt.spawn(load::client(
                server_addr,
                pace.clone(),
                id,
                counters.clone(),
                ask,
            ));
        }
        let injector = Injector::new(
            rt.handle().clone(),
            cfg.workers,
            agent.tick(),
            served.model,
            served.generate,
            gpu_leak,
        );
        Ok(Self {
            injector,
            agent: Some(agent),
            rt: Some(rt),
            scores,
            events,
            plan,
            pace,
            base_rps: cfg.rps,
            counters,
            server_addr,
            agent_addr,
            tick,
            gpu_note,
            ticks: 0,
        })
    }

    /// Waits for the agent's next tick (or `None` if the agent stopped) and moves the load along.
    pub(crate) fn next_tick(&mut self) -> Option<Tick> {
        self.next_tick_until(None)
    }

    /// Like [`Scene::next_tick`], but gives up at `deadline` (for Ctrl-C and `--duration`).
    pub(crate) fn next_tick_until(&mut self, deadline: Option<std::time::Instant>) -> Option<Tick> {
        let rt = self.rt.as_ref()?;
        let agent = self.agent.as_ref()?;
        let scores = &mut self.scores;
        // `None`: the deadline passed; `Some(Err)`: the agent stopped.
        let changed = rt.block_on(async {
            match deadline {
                Some(d) => tokio::time::timeout_at(d.into(), scores.changed())
                    .await
                    .ok(),
                None => Some(scores.changed().await),
            }
        });
        if !matches!(changed, Some(Ok(()))) {
            return None;
        }
        let score = self.scores.borrow_and_update().clone();
        let sample = agent.latest_sample();
        // The tick's notices were sent before its score was published.
        let (mut opened, mut retyped) = (None, None);
        loop {
            match self.events.try_recv() {
                Ok(vigil::agent::EventNotice::Opened(e)) => opened = Some(e),
                Ok(vigil::agent::EventNotice::Retyped(e)) => retyped = Some(e),
                Ok(vigil::agent::EventNotice::Closed(_)) => {}
                Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => {}
                Err(_) => break,
            }
        }
        let in_event = agent.current_event().is_some() || opened.is_some();
        self.ticks += 1;
        let load = self.plan.factor(self.ticks);
        self.pace.set_rps(self.base_rps * load);
        Some(Tick {
            sample,
            score,
            opened,
            retyped,
            in_event,
            fault: self.injector.active(),
            load,
        })
    }

    /// The agent's feature names (for naming top features).
    #[allow(dead_code)]
    pub(crate) fn feature_names(&self) -> Vec<String> {
        self.agent
            .as_ref()
            .map(|a| a.feature_schema().names().to_vec())
            .unwrap_or_default()
    }

    /// Sets `flag` when the user presses Ctrl-C (checked by the caller between ticks).
    pub(crate) fn watch_ctrl_c(&self, flag: Arc<std::sync::atomic::AtomicBool>) {
        if let Some(rt) = &self.rt {
            rt.spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    flag.store(true, Ordering::Relaxed);
                }
            });
        }
    }

    pub(crate) fn inject(&mut self, kind: AnomalyKind) -> anyhow::Result<()> {
        self.injector
            .start(kind)
            .with_context(|| format!("starting the {} fault", kind.as_str()))
    }

    pub(crate) fn clear_fault(&mut self) {
        self.injector.stop();
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        self.injector.stop();
        if let Some(agent) = self.agent.take() {
            agent.shutdown();
        }
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(ticks: &[Tick], name: &str) -> Vec<f64> {
        ticks
            .iter()
            .map(|t| t.sample.get(name).unwrap_or(f64::NAN))
            .collect()
    }

    fn mean(v: &[f64]) -> f64 {
        let f: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
        f.iter().sum::<f64>() / f.len().max(1) as f64
    }

    fn max(v: &[f64]) -> f64 {
        v.iter()
            .copied()
            .filter(|x| x.is_finite())
            .fold(f64::MIN, f64::max)
    }

    fn median(v: &[f64]) -> f64 {
        let mut f: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
        f.sort_unstable_by(f64::total_cmp);
        f.get(f.len() / 2).copied().unwrap_or(f64::NAN)
    }

    /// Per-tick increase of a counter.
    fn rate(v: &[f64]) -> Vec<f64> {
        v.windows(2).map(|w| w[1] - w[0]).collect()
    }

    /// Every injector moves the signal it must move while it runs (and leaves unrelated ones alone),
    /// on a real server under load, seen through the real agent.
    #[test]
    fn each_injector_moves_its_signal_and_stops_cleanly() {
        let cfg = SceneConfig {
            tick: Some(Duration::from_millis(100)),
            warm_up: Some(Duration::from_secs(3600)), // no training: only the signals matter here
            seed: 7,
            rps: 200.0,
            workers: 2,
            listen: Some("127.0.0.1:0".parse().unwrap()),
            model: None,
            from_env: false,
            real_gpu: false,
        };
        let mut scene = Scene::start(&cfg).unwrap();
        let take = |scene: &mut Scene, n: usize| -> Vec<Tick> {
            (0..n).map(|_| scene.next_tick().unwrap()).collect()
        };
        take(&mut scene, 10); // the server and the load settle
        let mut failures = Vec::new();
        for kind in faults::all_faults() {
            let before = take(&mut scene, 10);
            scene.inject(kind).unwrap();
            let during = take(&mut scene, 15);
            scene.clear_fault();
            assert_eq!(scene.injector.active(), None);
            let (b, d) = (|n| series(&before, n), |n| series(&during, n));
            let moved = match kind {
                AnomalyKind::TaskLeak => {
                    let a = d("tokio_alive_tasks");
                    a[a.len() - 1] - median(&b("tokio_alive_tasks")) >= 200.0
                }
                AnomalyKind::SchedulerStall => {
                    let m = max(&d("sched_latency_max_seconds"));
                    m >= 0.04 && m >= 3.0 * median(&b("sched_latency_max_seconds"))
                }
                AnomalyKind::AllocStorm => {
                    mean(&rate(&d("alloc_allocations")))
                        >= 5.0 * mean(&rate(&b("alloc_allocations")))
                }
                AnomalyKind::MemoryLeak => {
                    let l = d("alloc_live_bytes");
                    l[l.len() - 1] - median(&b("alloc_live_bytes")) >= 20e6
                }
                AnomalyKind::CpuSaturation => {
                    mean(&d("process_cpu_ratio")[3..]) >= mean(&b("process_cpu_ratio")) + 0.3
                }
                // 30 % of requests fail before their embed and forward stages run, so about 12 % of
                // all observed calls.
                AnomalyKind::ErrorBurst => mean(&d("inference_error_ratio")[2..]) >= 0.08,
                AnomalyKind::LatencyRegression => {
                    median(&d("inference_latency_p99_seconds")[2..])
                        >= 2.0 * median(&b("inference_latency_p99_seconds"))
                }
                AnomalyKind::GpuMemoryLeak => {
                    let g = d("gpu0_memory_used_bytes");
                    g[g.len() - 1] - median(&b("gpu0_memory_used_bytes")) >= 1e9
                }
                AnomalyKind::FirstTokenRegression => {
                    let ttft = "gen_ai_time_to_first_token_p99_seconds";
                    median(&d(ttft)[2..]) >= 3.0 * median(&b(ttft))
                }
                AnomalyKind::DecodeSlowdown => {
                    let tpot = "gen_ai_time_per_output_token_p50_seconds";
                    median(&d(tpot)[2..]) >= 2.5 * median(&b(tpot))
                }
                // Nine tenths of every 150 ms stalled: requests wait up to 135 ms, and pile up.
                AnomalyKind::QueueBuildup => {
                    median(&d("ai_queue_time_p99_seconds")[2..]) >= 0.03
                        && max(&d("ai_queue_waiting_requests")) >= 1.0
                }
                AnomalyKind::Unknown | AnomalyKind::LevelShift => true,
            };
            if !moved {
                let show = |n: &'static str| format!("{n} {:?} -> {:?}", b(n), d(n));
                failures.push(format!(
                    "{}: its signal did not move ({}; {}; {}; {})",
                    kind.as_str(),
                    show("gen_ai_time_to_first_token_p99_seconds"),
                    show("gen_ai_time_per_output_token_p50_seconds"),
                    show("ai_queue_time_p99_seconds"),
                    show("ai_queue_waiting_requests")
                ));
            }
            // Unrelated signals stay put.
            if kind != AnomalyKind::TaskLeak {
                let a = d("tokio_alive_tasks");
                if max(&a) - median(&b("tokio_alive_tasks")) > 100.0 {
                    failures.push(format!("{}: alive tasks jumped", kind.as_str()));
                }
            }
            if kind != AnomalyKind::ErrorBurst && max(&d("inference_error_ratio")) > 0.05 {
                failures.push(format!("{}: errors appeared", kind.as_str()));
            }
            if kind != AnomalyKind::GpuMemoryLeak
                && max(&d("gpu0_memory_used_bytes")) != median(&b("gpu0_memory_used_bytes"))
            {
                failures.push(format!("{}: GPU memory moved", kind.as_str()));
            }
            // Stopped means released: leaked tasks finish, held memory is freed.
            let after = take(&mut scene, 8);
            match kind {
                AnomalyKind::TaskLeak => {
                    let a = series(&after, "tokio_alive_tasks");
                    if a[a.len() - 1] > median(&b("tokio_alive_tasks")) + 50.0 {
                        failures.push("task_leak: tasks not released".into());
                    }
                }
                AnomalyKind::MemoryLeak => {
                    let l = series(&after, "alloc_live_bytes");
                    if l[l.len() - 1] > median(&b("alloc_live_bytes")) + 10e6 {
                        failures.push("memory_leak: memory not released".into());
                    }
                }
                _ => {}
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
    }
}
