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

#[cfg(feature = "console")]
pub use vigil_agent::console_layer;
pub use vigil_agent::{
    Agent, AgentBuilder, AgentHandle, AllocStats, CountingAlloc, Error, Event, EventNotice,
    GpuMode, Sampler, agent_alloc_stats, alloc_stats, alloc_tracking_enabled, mark_agent_thread,
};

/// Runtime of `#[vigil::observe]`.
pub use vigil_observe as observe;
/// `#[vigil::observe(model = ..., stage = ...)]`: duration, error and anomaly metrics for inference
/// functions (see the [`observe`](mod@observe) module for the runtime: trace context, output checks,
/// the on/off switch).
pub use vigil_observe_macros::observe_via_vigil as observe;

/// The agent crate, for collectors, the metric catalogue and defaults.
pub use vigil_agent as agent;
/// Raw samples and signal descriptions.
pub use vigil_features as features;
/// GPU sources: NVML, a scripted fake, none.
pub use vigil_gpu as gpu;
/// Detectors and model files.
pub use vigil_models as models;
/// The local store: ticks, events, labels, model history (SQLite).
pub use vigil_store as store;
