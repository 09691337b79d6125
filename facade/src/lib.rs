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

#[cfg(feature = "console")]
pub use vigil_agent::console_layer;
pub use vigil_agent::{
    Agent, AgentBuilder, AgentHandle, AllocStats, CheckedConfig, Config, CountingAlloc, Error,
    Event, EventNotice, GpuMode, alloc_stats,
};
#[doc(hidden)]
pub use vigil_agent::{Sampler, agent_alloc_stats, alloc_tracking_enabled, mark_agent_thread};

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
