//! Allocation counters from [`crate::CountingAlloc`].

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use vigil_features::SignalSpec;
use vigil_features::vocab::{self, Known};

use super::{CollectError, Collector, fill};
use crate::alloc::{AllocStats, agent_alloc_stats, alloc_stats};
use crate::metrics::{self as m, FGauge};

/// Sums the allocator shards each tick. Only built when `CountingAlloc` is the global allocator, so
/// hosts without it get no allocation series rather than misleading zeros.
pub(crate) struct AllocCollector {
    prev: AllocStats,
    prev_agent: AllocStats,
    agent_bytes: Counter,
    agent_live: FGauge,
    allocations: Counter,
    frees: Counter,
    bytes: Counter,
    freed_bytes: Counter,
    live: FGauge,
}

impl AllocCollector {
    pub(crate) fn new(registry: &mut Registry) -> Self {
        let c = Self {
            prev: AllocStats::default(),
            prev_agent: AllocStats::default(),
            agent_bytes: Counter::default(),
            agent_live: FGauge::default(),
            allocations: Counter::default(),
            frees: Counter::default(),
            bytes: Counter::default(),
            freed_bytes: Counter::default(),
            live: FGauge::default(),
        };
        m::ALLOC_ALLOCATIONS.register(registry, c.allocations.clone());
        m::ALLOC_FREES.register(registry, c.frees.clone());
        m::ALLOC_BYTES.register(registry, c.bytes.clone());
        m::ALLOC_FREED_BYTES.register(registry, c.freed_bytes.clone());
        m::ALLOC_LIVE_BYTES.register(registry, c.live.clone());
        m::AGENT_ALLOC_BYTES.register(registry, c.agent_bytes.clone());
        m::AGENT_ALLOC_LIVE_BYTES.register(registry, c.agent_live.clone());
        c
    }
}

impl Collector for AllocCollector {
    fn name(&self) -> &'static str {
        "alloc"
    }

    fn signals(&self) -> Vec<SignalSpec> {
        vocab::ALLOC.iter().map(Known::spec).collect()
    }

    fn collect(&mut self, out: &mut [f64]) -> Result<(), CollectError> {
        let now = alloc_stats();
        // Totals are monotonic; the exported counters advance by the delta since the last tick.
        self.allocations
            .inc_by(now.allocations.saturating_sub(self.prev.allocations));
        self.frees.inc_by(now.frees.saturating_sub(self.prev.frees));
        self.bytes.inc_by(
            now.bytes_allocated
                .saturating_sub(self.prev.bytes_allocated),
        );
        self.freed_bytes
            .inc_by(now.bytes_freed.saturating_sub(self.prev.bytes_freed));
        self.live.set(now.live_bytes() as f64);
        self.prev = now;
        let agent = agent_alloc_stats();
        self.agent_bytes.inc_by(
            agent
                .bytes_allocated
                .saturating_sub(self.prev_agent.bytes_allocated),
        );
        self.agent_live.set(agent.live_bytes() as f64);
        self.prev_agent = agent;
        fill(
            out,
            0,
            &[
                now.allocations as f64,
                now.frees as f64,
                now.bytes_allocated as f64,
                now.bytes_freed as f64,
                now.live_bytes() as f64,
            ],
        );
        Ok(())
    }
}
