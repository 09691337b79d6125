//! Collectors: each reads one source of runtime signals once per tick.
//!
//! A collector declares its signals once ([`Collector::signals`]), registers its Prometheus metrics when
//! it is built, and on every tick fills its own slice of the [`vigil_features::Sample`] and updates its
//! metrics. A collector that fails is counted and skipped for that tick; the others go on.

mod alloc;
mod gpu;
mod inference;
mod process;
mod runtime;
pub(crate) mod sched;

pub(crate) use alloc::AllocCollector;
pub(crate) use gpu::GpuCollector;
pub(crate) use inference::InferenceCollector;
pub(crate) use process::ProcessCollector;
pub(crate) use runtime::RuntimeCollector;
pub(crate) use sched::{ProbeConfig, SchedCollector};

use vigil_features::SignalSpec;

/// A failure inside one collector during one tick.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CollectError(pub String);

/// One source of runtime signals.
pub trait Collector: Send {
    /// Short name, used as the `collector` label of `vigil_agent_collector_errors_total`.
    fn name(&self) -> &'static str;
    /// The signals this collector fills, in order. Called once, when the agent is built.
    fn signals(&self) -> Vec<SignalSpec>;
    /// Fills `out` (one value per declared signal; all `NaN` on entry) and updates the collector's
    /// metrics. Values it cannot read stay `NaN`.
    fn collect(&mut self, out: &mut [f64]) -> Result<(), CollectError>;
}

/// Seconds as `f64`, `NaN` when the interval is empty.
pub(crate) fn per_second(delta: f64, elapsed: std::time::Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { delta / secs } else { f64::NAN }
}

/// Copies `values` into `out` starting at `offset`, ignoring anything that does not fit (the sampler sizes
/// `out` from [`Collector::signals`], so nothing is dropped in practice; this never panics).
pub(crate) fn fill(out: &mut [f64], offset: usize, values: &[f64]) {
    for (o, v) in out.iter_mut().skip(offset).zip(values) {
        *o = *v;
    }
}
