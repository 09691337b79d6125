//! The Vigil agent: an in-process runtime anomaly agent for tokio-based inference services.
//!
//! ```no_run
//! #[global_allocator]
//! static ALLOC: vigil_agent::CountingAlloc = vigil_agent::CountingAlloc::system();
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
//!     let agent = vigil_agent::Agent::builder().from_env()?.start(rt.handle())?;
//!     rt.block_on(async { /* serve inference */ });
//!     agent.shutdown();
//!     Ok(())
//! }
//! ```
//!
//! The agent runs on its own OS thread (`vigil-agent`, with a current-thread runtime that serves HTTP and
//! ticks) plus a scheduler probe thread (`vigil-probe`). Every tick it runs the collectors (tokio runtime,
//! scheduler latency, allocations, process, GPU), fills one [`vigil_features::Sample`] and updates the
//! Prometheus registry served at `GET /metrics`.

// By concern; the import graph between these folders has no cycles (docs/ARCHITECTURE.md, "Agent
// source layout").
mod alloc;
mod config;
#[cfg(feature = "console")]
mod console;
mod error;
mod handle;
mod http;
mod metrics;
mod pipeline;
mod profile;
mod start;
mod store;
mod threads;

pub use alloc::{
    AllocStats, CountingAlloc, SHARDS, agent_alloc_stats, alloc_stats, alloc_tracking_enabled,
    mark_agent_thread,
};
pub use config::builder::{Agent, AgentBuilder};
pub use config::duration::{DURATION_SYNTAX, parse_duration};
pub use config::settings::{
    CheckedConfig, Config, DEFAULT_DRIFT_WINDOW, DEFAULT_FALSE_EVENTS_PER_DAY,
    DEFAULT_PROBE_INTERVAL, DEFAULT_REFIT_INTERVAL, DEFAULT_STALL_THRESHOLD, DEFAULT_TICK,
    DEFAULT_WARM_UP,
};
#[cfg(feature = "console")]
pub use console::console_layer;
pub use error::Error;
pub use handle::AgentHandle;
pub use http::DEFAULT_LISTEN;
pub use http::server::{
    DEFAULT_HTTP_IDLE_TIMEOUT, DEFAULT_HTTP_MAX_CONNECTIONS, MAX_CONNECTION_BUFFER,
};
pub use metrics::{CATALOGUE, MetricDef, MetricType, metrics_markdown};
pub use pipeline::collectors::sched::ProbeGuard;
pub use pipeline::collectors::{CollectError, Collector};
pub use pipeline::sampler::Sampler;
pub use pipeline::scoring::EventNotice;
pub use profile::{
    DEFAULT_EVENT_PROFILE, DEFAULT_EVENT_PROFILE_COOLDOWN, DEFAULT_PROFILE_SECONDS,
    MAX_PROFILE_SECONDS, PROFILE_HZ, profiling_available,
};
pub use store::model_watch::DEFAULT_MODEL_POLL;
pub use vigil_features::drift::DriftReference;
pub use vigil_features::{FeatureSchema, FeatureVector, Horizons};
pub use vigil_gpu::GpuMode;
pub use vigil_models::{Event, EventEnd, ModelFile, Score};
