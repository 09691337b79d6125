//! Vigil: a runtime anomaly agent for tokio-based AI inference services.
//!
//! Link it into the inference binary, optionally install [`CountingAlloc`] as the global allocator, and
//! start the agent on the host runtime:
//!
//! ```no_run
//! #[global_allocator]
//! static ALLOC: vigil::CountingAlloc = vigil::CountingAlloc::system();
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let agent = vigil::Agent::builder().from_env()?.start(&tokio::runtime::Handle::current())?;
//!     // ... serve inference; scrape http://127.0.0.1:9464/metrics ...
//!     agent.shutdown();
//!     Ok(())
//! }
//! ```
//!
//! The agent samples the process's own runtime every tick (tokio runtime, scheduler latency measured from
//! its own thread, allocations, CPU and memory, NVIDIA GPUs through NVML) and exports it to Prometheus.
//! See `docs/ARCHITECTURE.md` for how the pieces fit and `docs/METRICS.md` for every series.
//!
//! What a host needs is at the top of this crate: [`Agent`] (its builder, handle and errors), its
//! settings as plain data ([`Config`], checked once into a [`CheckedConfig`]),
//! [`CountingAlloc`], the [`observe`](macro@observe) attribute and its runtime, and the [`Event`]s the agent
//! reports. [`offline`] is the API the `vigil` command line is built on (engine, model files,
//! signals and windows), for scripting the same work in Rust. The crates behind them are reachable
//! for the command line and the tests but are not part of the supported surface.
//!
//! Every type the agent's API hands a host, or takes from it, is named from this crate alone (this
//! example is compiled by the tests, so a type the facade stops exporting fails them):
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! fn host(rt: &tokio::runtime::Handle) -> Result<(), vigil::Error> {
//!     let config: vigil::Config = vigil::Config::default();
//!     let checked: vigil::CheckedConfig = config.check()?;
//!     let _ = checked;
//!     let builder: vigil::AgentBuilder = vigil::Agent::builder().gpu_source(vigil::FakeGpu::steady(16 << 30, 1 << 30));
//!     let agent: vigil::AgentHandle = builder.start(rt)?;
//!     let sample: Arc<vigil::Sample> = agent.latest_sample();
//!     let features: Arc<vigil::FeatureVector> = agent.latest_features();
//!     let schema: &vigil::FeatureSchema = agent.feature_schema();
//!     let score: Option<vigil::Score> = agent.latest_score();
//!     let event: Option<vigil::Event> = agent.current_event();
//!     let notices: tokio::sync::broadcast::Receiver<vigil::EventNotice> = agent.subscribe_events();
//!     let rows: Vec<&[f64]> = vec![features.values(); 20];
//!     let reference: Result<vigil::DriftReference, vigil::FeatureError> =
//!         vigil::DriftReference::fit(schema, rows);
//!     if let Ok(r) = reference {
//!         agent.set_drift_reference(r)?;
//!     }
//!     let stats: vigil::AllocStats = vigil::alloc_stats();
//!     let gpu: vigil::GpuMode = vigil::GpuMode::Off;
//!     let _ = (sample, score, event, notices, stats, gpu);
//!     agent.shutdown();
//!     Ok(())
//! }
//!
//! /// A GPU source of the host's own.
//! struct MyGpu(Vec<vigil::GpuDevice>);
//! impl vigil::GpuSource for MyGpu {
//!     fn kind(&self) -> &'static str { "mine" }
//!     fn devices(&self) -> &[vigil::GpuDevice] { &self.0 }
//!     fn sample(&mut self, out: &mut [vigil::GpuReading]) -> Result<(), vigil::GpuError> {
//!         let _ = out;
//!         Ok(())
//!     }
//! }
//! ```

#[cfg(feature = "console")]
pub use vigil_agent::console_layer;
pub use vigil_agent::{
    Agent, AgentBuilder, AgentHandle, AllocStats, CheckedConfig, Config, CountingAlloc, Error,
    Event, EventNotice, GpuMode, alloc_stats,
};
#[doc(hidden)]
pub use vigil_agent::{Sampler, agent_alloc_stats, alloc_tracking_enabled, mark_agent_thread};

/// What the agent's public API hands a host or takes from it, besides the agent itself: a tick's
/// [`Sample`], its [`FeatureVector`] and their [`FeatureSchema`] (from [`AgentHandle`]), the
/// [`Score`] of a tick, a [`DriftReference`] ([`AgentHandle::set_drift_reference`]), and a GPU source
/// of the host's own ([`AgentBuilder::gpu_source`]: the [`GpuSource`] trait, the [`GpuDevice`]s it
/// lists, the [`GpuReading`]s it fills, its [`GpuError`]; [`FakeGpu`] is a scripted one for tests).
pub use vigil_features::drift::DriftReference;
pub use vigil_features::{FeatureError, FeatureSchema, FeatureVector, Sample};
pub use vigil_gpu::{FakeGpu, GpuDevice, GpuError, GpuReading, GpuSource};
pub use vigil_models::Score;

/// Runtime of `#[vigil::observe]`.
pub use vigil_observe as observe;
/// `#[vigil::observe(model = ..., stage = ...)]`: duration, error and anomaly metrics for inference
/// functions (see the [`observe`](mod@observe) module for the runtime: trace context, output checks,
/// the on/off switch).
pub use vigil_observe_macros::observe_via_vigil as observe;

/// The offline API: what `vigil train`, `vigil score` and `vigil eval` do, as a library.
///
/// Rows of raw signals ([`SignalSet`](offline::SignalSet), one [`Sample`](offline::Sample) per
/// tick) go through a [`Window`](offline::Window) into feature vectors; an
/// [`Engine`](offline::Engine) scores them exactly as the agent does (cold start, refits, events,
/// level shifts), with or without a [`ModelFile`](offline::ModelFile) given at start;
/// [`TrainJob`](offline::TrainJob) is the one path from windows to a model, and
/// [`OutputFile`](offline::OutputFile) how every output is written (atomically, never over an
/// input).
pub mod offline {
    pub use vigil_features::{
        FeatureSchema, FeatureVector, Horizons, Sample, SignalKind, SignalSet, SignalSpec, Unit,
        Window,
    };
    pub use vigil_models::labels::{Label, label_at};
    pub use vigil_models::{
        AnomalyKind, Engine, EngineConfig, Event, EventEnd, FitReason, InlineTrainer, ModelError,
        ModelFile, OutputFile, Score, Step, TrainJob, Trainer,
    };
}

#[doc(hidden)]
pub use vigil_agent as agent;
#[doc(hidden)]
pub use vigil_features as features;
#[doc(hidden)]
pub use vigil_gpu as gpu;
#[doc(hidden)]
pub use vigil_models as models;
#[doc(hidden)]
pub use vigil_store as store;
