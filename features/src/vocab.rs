//! The signal vocabulary: every signal the agent knows, defined once.
//!
//! Each entry gives a signal's name, unit and kind (what the collectors declare), its family (what
//! anomaly typing reads), how the detector reads it, and its Prometheus metric. Collectors build their
//! [`SignalSpec`]s from its groups ([`RUNTIME`], [`SCHED`], ... with [`Known::spec`]), the agent's
//! metric catalogue takes those metrics' names from it, `vigil pull` derives its columns and queries
//! from it, the CSV reader recognises recorded columns by it (a counter's column is `<name>_total`),
//! and anomaly typing asks it which family a feature belongs to. A CSV recorded from
//! the agent therefore has exactly the agent's feature schema, and a model trained on it loads in the
//! agent.

use crate::{SignalKind, SignalSpec, Unit};

/// Which kind of trouble a signal's movement points at (anomaly typing votes by family).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// Alive or spawned tasks.
    Tasks,
    /// Scheduling delay, stalls, queue depth.
    Scheduler,
    /// Allocation traffic.
    Allocations,
    /// Heap or resident memory held.
    Memory,
    /// GPU memory held.
    GpuMemory,
    /// CPU or worker busy time.
    Cpu,
    /// Inference errors and anomalies.
    Errors,
    /// Inference latency.
    Latency,
    /// Streamed generation's time to first token (prefill): a part of latency.
    FirstToken,
    /// Streamed generation's time per output token (decode): a part of latency.
    Decode,
    /// The host's request queue: requests waiting and how long they waited, a part of the time to
    /// first token.
    Queue,
    /// The request load itself (inference calls): what much of the rest follows. Detectors explain
    /// other signals by it, so a busier hour is not an anomaly; no anomaly type of its own.
    Load,
    /// Context (load, configuration, other): no anomaly type of its own.
    Other,
}

/// How the detector reads a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reading {
    /// Its level: the short-horizon median (the mean where the signal follows the load), against
    /// normal.
    Level,
    /// Its trend: the short-horizon slope. For signals whose level ratchets and never comes back
    /// (resident memory: allocators keep pages), so a past step is not an anomaly for ever, while
    /// growth is.
    Trend,
    /// Exported and kept in the features, but never scored (address-space reservations, constants of
    /// the configuration).
    Ignored,
}

/// One known signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Known {
    /// Signal name (for GPU signals, the part after `gpu<N>_`).
    pub name: &'static str,
    /// Unit.
    pub unit: Unit,
    /// Gauge or counter.
    pub kind: SignalKind,
    /// Family for anomaly typing.
    pub family: Family,
    /// How the detector reads it.
    pub reading: Reading,
    /// The Prometheus metric that exports it (`vigil_...`).
    pub metric: &'static str,
    /// It grows in proportion to the request load (work per request stays the same): detectors score
    /// it on what the load does not explain.
    pub follows_load: bool,
    /// Its value comes from CPU time counted in 10 ms clock ticks, so at a tick of `t` seconds it moves
    /// in steps of `0.01 / t`: detectors never scale it below that ([`resolution_of_feature`]).
    pub clock_ticks: bool,
}

const fn k(
    name: &'static str,
    unit: Unit,
    kind: SignalKind,
    family: Family,
    reading: Reading,
    metric: &'static str,
) -> Known {
    Known {
        name,
        unit,
        kind,
        family,
        reading,
        metric,
        follows_load: false,
        clock_ticks: false,
    }
}

impl Known {
    /// The same entry, marked as growing with the request load.
    const fn with_load(self) -> Self {
        Self {
            follows_load: true,
            ..self
        }
    }

    /// The same entry, marked as counted in 10 ms clock ticks.
    const fn in_clock_ticks(self) -> Self {
        Self {
            clock_ticks: true,
            ..self
        }
    }
}

use Family as F;
use Reading as R;
use SignalKind::{Counter as C, Gauge as G};

/// `tokio_workers` (vigil_tokio_workers).
pub const TOKIO_WORKERS: Known = k(
    "tokio_workers",
    Unit::Count,
    G,
    F::Other,
    R::Ignored,
    "vigil_tokio_workers",
);
/// `tokio_alive_tasks` (vigil_tokio_alive_tasks).
pub const TOKIO_ALIVE_TASKS: Known = k(
    "tokio_alive_tasks",
    Unit::Count,
    G,
    F::Tasks,
    R::Level,
    "vigil_tokio_alive_tasks",
);
/// `tokio_global_queue_depth` (vigil_tokio_global_queue_depth).
pub const TOKIO_GLOBAL_QUEUE_DEPTH: Known = k(
    "tokio_global_queue_depth",
    Unit::Count,
    G,
    F::Scheduler,
    R::Level,
    "vigil_tokio_global_queue_depth",
);
/// `tokio_busy_ratio` (vigil_tokio_busy_ratio).
pub const TOKIO_BUSY_RATIO: Known = k(
    "tokio_busy_ratio",
    Unit::Ratio,
    G,
    F::Cpu,
    R::Level,
    "vigil_tokio_busy_ratio",
);
/// Parks happen between requests: the rate follows the load, and not linearly; the busy ratio and
/// CPU carry saturation, so the park rate is context, not evidence.
pub const TOKIO_PARK_RATE: Known = k(
    "tokio_park_rate",
    Unit::PerSecond,
    G,
    F::Other,
    R::Ignored,
    "vigil_tokio_worker_parks_total",
);
/// `tokio_spawned_tasks` (vigil_tokio_spawned_tasks_total).
pub const TOKIO_SPAWNED_TASKS: Known = k(
    "tokio_spawned_tasks",
    Unit::Count,
    C,
    F::Tasks,
    R::Level,
    "vigil_tokio_spawned_tasks_total",
);
/// `tokio_polls` (vigil_tokio_polls_total).
pub const TOKIO_POLLS: Known = k(
    "tokio_polls",
    Unit::Count,
    C,
    F::Other,
    R::Level,
    "vigil_tokio_polls_total",
)
.with_load();
/// `tokio_steals` (vigil_tokio_steals_total).
pub const TOKIO_STEALS: Known = k(
    "tokio_steals",
    Unit::Count,
    C,
    F::Other,
    R::Level,
    "vigil_tokio_steals_total",
);
/// `tokio_local_queue_depth` (vigil_tokio_local_queue_depth).
pub const TOKIO_LOCAL_QUEUE_DEPTH: Known = k(
    "tokio_local_queue_depth",
    Unit::Count,
    G,
    F::Scheduler,
    R::Level,
    "vigil_tokio_local_queue_depth",
);
/// `tokio_blocking_threads` (vigil_tokio_blocking_threads).
pub const TOKIO_BLOCKING_THREADS: Known = k(
    "tokio_blocking_threads",
    Unit::Count,
    G,
    F::Other,
    R::Level,
    "vigil_tokio_blocking_threads",
);
/// `tokio_mean_poll_seconds` (vigil_tokio_mean_poll_duration_seconds).
pub const TOKIO_MEAN_POLL_SECONDS: Known = k(
    "tokio_mean_poll_seconds",
    Unit::Seconds,
    G,
    F::Scheduler,
    R::Level,
    "vigil_tokio_mean_poll_duration_seconds",
);
/// `tokio_budget_forced_yields` (vigil_tokio_budget_forced_yields_total).
pub const TOKIO_BUDGET_FORCED_YIELDS: Known = k(
    "tokio_budget_forced_yields",
    Unit::Count,
    C,
    F::Scheduler,
    R::Level,
    "vigil_tokio_budget_forced_yields_total",
);
/// `sched_latency_p50_seconds` (vigil_sched_latency_seconds).
pub const SCHED_LATENCY_P50_SECONDS: Known = k(
    "sched_latency_p50_seconds",
    Unit::Seconds,
    G,
    F::Scheduler,
    R::Level,
    "vigil_sched_latency_seconds",
);
/// `sched_latency_p99_seconds` (vigil_sched_latency_seconds).
pub const SCHED_LATENCY_P99_SECONDS: Known = k(
    "sched_latency_p99_seconds",
    Unit::Seconds,
    G,
    F::Scheduler,
    R::Level,
    "vigil_sched_latency_seconds",
);
/// `sched_latency_max_seconds` (vigil_sched_latency_max_seconds).
pub const SCHED_LATENCY_MAX_SECONDS: Known = k(
    "sched_latency_max_seconds",
    Unit::Seconds,
    G,
    F::Scheduler,
    R::Level,
    "vigil_sched_latency_max_seconds",
);
/// `sched_probes` (vigil_sched_latency_seconds).
pub const SCHED_PROBES: Known = k(
    "sched_probes",
    Unit::Count,
    C,
    F::Scheduler,
    R::Level,
    "vigil_sched_latency_seconds",
);
/// `sched_stalls` (vigil_sched_stalls_total).
pub const SCHED_STALLS: Known = k(
    "sched_stalls",
    Unit::Count,
    C,
    F::Scheduler,
    R::Level,
    "vigil_sched_stalls_total",
);
/// `alloc_allocations` (vigil_alloc_allocations_total).
pub const ALLOC_ALLOCATIONS: Known = k(
    "alloc_allocations",
    Unit::Count,
    C,
    F::Allocations,
    R::Level,
    "vigil_alloc_allocations_total",
)
.with_load();
/// `alloc_frees` (vigil_alloc_frees_total).
pub const ALLOC_FREES: Known = k(
    "alloc_frees",
    Unit::Count,
    C,
    F::Allocations,
    R::Level,
    "vigil_alloc_frees_total",
)
.with_load();
/// `alloc_bytes_allocated` (vigil_alloc_bytes_total).
pub const ALLOC_BYTES_ALLOCATED: Known = k(
    "alloc_bytes_allocated",
    Unit::Bytes,
    C,
    F::Allocations,
    R::Level,
    "vigil_alloc_bytes_total",
)
.with_load();
/// `alloc_bytes_freed` (vigil_alloc_freed_bytes_total).
pub const ALLOC_BYTES_FREED: Known = k(
    "alloc_bytes_freed",
    Unit::Bytes,
    C,
    F::Allocations,
    R::Level,
    "vigil_alloc_freed_bytes_total",
)
.with_load();
/// `alloc_live_bytes` (vigil_alloc_live_bytes).
pub const ALLOC_LIVE_BYTES: Known = k(
    "alloc_live_bytes",
    Unit::Bytes,
    G,
    F::Memory,
    R::Trend,
    "vigil_alloc_live_bytes",
);
/// `process_cpu_ratio` (vigil_process_cpu_ratio).
pub const PROCESS_CPU_RATIO: Known = k(
    "process_cpu_ratio",
    Unit::Ratio,
    G,
    F::Cpu,
    R::Level,
    "vigil_process_cpu_ratio",
)
.with_load()
.in_clock_ticks();
/// `process_resident_memory_bytes` (vigil_process_resident_memory_bytes): the host's resident memory,
/// less the agent's own heap where the agent can tell it apart (its counting allocator).
pub const PROCESS_RESIDENT_MEMORY_BYTES: Known = k(
    "process_resident_memory_bytes",
    Unit::Bytes,
    G,
    F::Memory,
    R::Trend,
    "vigil_process_resident_memory_bytes",
);
/// `process_virtual_memory_bytes` (vigil_process_virtual_memory_bytes).
pub const PROCESS_VIRTUAL_MEMORY_BYTES: Known = k(
    "process_virtual_memory_bytes",
    Unit::Bytes,
    G,
    F::Memory,
    R::Ignored,
    "vigil_process_virtual_memory_bytes",
);
/// `process_threads` (vigil_process_threads).
pub const PROCESS_THREADS: Known = k(
    "process_threads",
    Unit::Count,
    G,
    F::Cpu,
    R::Level,
    "vigil_process_threads",
);
/// `process_open_fds` (vigil_process_open_fds).
pub const PROCESS_OPEN_FDS: Known = k(
    "process_open_fds",
    Unit::Count,
    G,
    F::Other,
    R::Level,
    "vigil_process_open_fds",
);
/// `memory_used_bytes` (vigil_gpu_memory_used_bytes).
pub const GPU_MEMORY_USED_BYTES: Known = k(
    "memory_used_bytes",
    Unit::Bytes,
    G,
    F::GpuMemory,
    R::Level,
    "vigil_gpu_memory_used_bytes",
);
/// `memory_free_bytes` (vigil_gpu_memory_free_bytes).
pub const GPU_MEMORY_FREE_BYTES: Known = k(
    "memory_free_bytes",
    Unit::Bytes,
    G,
    F::GpuMemory,
    R::Level,
    "vigil_gpu_memory_free_bytes",
);
/// `memory_total_bytes` (vigil_gpu_memory_total_bytes).
pub const GPU_MEMORY_TOTAL_BYTES: Known = k(
    "memory_total_bytes",
    Unit::Bytes,
    G,
    F::Other,
    R::Ignored,
    "vigil_gpu_memory_total_bytes",
);
/// `utilization_ratio` (vigil_gpu_utilization_ratio).
pub const GPU_UTILIZATION_RATIO: Known = k(
    "utilization_ratio",
    Unit::Ratio,
    G,
    F::Other,
    R::Level,
    "vigil_gpu_utilization_ratio",
);
/// `memory_utilization_ratio` (vigil_gpu_memory_utilization_ratio).
pub const GPU_MEMORY_UTILIZATION_RATIO: Known = k(
    "memory_utilization_ratio",
    Unit::Ratio,
    G,
    F::Other,
    R::Level,
    "vigil_gpu_memory_utilization_ratio",
);
/// `temperature_celsius` (vigil_gpu_temperature_celsius).
pub const GPU_TEMPERATURE_CELSIUS: Known = k(
    "temperature_celsius",
    Unit::Celsius,
    G,
    F::Other,
    R::Level,
    "vigil_gpu_temperature_celsius",
);
/// `power_watts` (vigil_gpu_power_watts).
pub const GPU_POWER_WATTS: Known = k(
    "power_watts",
    Unit::Watts,
    G,
    F::Other,
    R::Level,
    "vigil_gpu_power_watts",
);
/// `process_memory_bytes` (vigil_gpu_process_memory_bytes).
pub const GPU_PROCESS_MEMORY_BYTES: Known = k(
    "process_memory_bytes",
    Unit::Bytes,
    G,
    F::GpuMemory,
    R::Level,
    "vigil_gpu_process_memory_bytes",
);
/// `inference_calls` (ai_inference_duration_seconds).
pub const INFERENCE_CALLS: Known = k(
    "inference_calls",
    Unit::Count,
    C,
    F::Load,
    R::Ignored,
    "ai_inference_duration_seconds",
);
/// `inference_errors` (ai_inference_errors_total).
pub const INFERENCE_ERRORS: Known = k(
    "inference_errors",
    Unit::Count,
    C,
    F::Errors,
    R::Level,
    "ai_inference_errors_total",
);
/// `inference_error_ratio` (ai_inference_errors_total).
pub const INFERENCE_ERROR_RATIO: Known = k(
    "inference_error_ratio",
    Unit::Ratio,
    G,
    F::Errors,
    R::Level,
    "ai_inference_errors_total",
);
/// `inference_latency_p50_seconds` (ai_inference_duration_seconds).
pub const INFERENCE_LATENCY_P50_SECONDS: Known = k(
    "inference_latency_p50_seconds",
    Unit::Seconds,
    G,
    F::Latency,
    R::Level,
    "ai_inference_duration_seconds",
);
/// `inference_latency_p99_seconds` (ai_inference_duration_seconds).
pub const INFERENCE_LATENCY_P99_SECONDS: Known = k(
    "inference_latency_p99_seconds",
    Unit::Seconds,
    G,
    F::Latency,
    R::Level,
    "ai_inference_duration_seconds",
);

/// `gen_ai_time_to_first_token_p99_seconds` (gen_ai_server_time_to_first_token_seconds): the 99th
/// percentile of the tick's streamed generations' time to first token.
pub const GEN_AI_TIME_TO_FIRST_TOKEN_P99_SECONDS: Known = k(
    "gen_ai_time_to_first_token_p99_seconds",
    Unit::Seconds,
    G,
    F::FirstToken,
    R::Level,
    "gen_ai_server_time_to_first_token_seconds",
);
/// `gen_ai_time_per_output_token_p50_seconds` (gen_ai_server_time_per_output_token_seconds): the
/// median time per output token of the streams that completed in the tick (a decode slowdown moves
/// every stream, so the median carries it without one long answer's noise).
pub const GEN_AI_TIME_PER_OUTPUT_TOKEN_P50_SECONDS: Known = k(
    "gen_ai_time_per_output_token_p50_seconds",
    Unit::Seconds,
    G,
    F::Decode,
    R::Level,
    "gen_ai_server_time_per_output_token_seconds",
);
/// `gen_ai_output_tokens` (gen_ai_server_tokens_total{type="output"}): tokens streamed, which grow
/// with the load.
pub const GEN_AI_OUTPUT_TOKENS: Known = k(
    "gen_ai_output_tokens",
    Unit::Count,
    C,
    F::Other,
    R::Level,
    "gen_ai_server_tokens_total",
)
.with_load();
/// `ai_queue_waiting_requests` (ai_inference_queue_waiting_requests): requests waiting in the host's
/// queues at the tick.
pub const AI_QUEUE_WAITING_REQUESTS: Known = k(
    "ai_queue_waiting_requests",
    Unit::Count,
    G,
    F::Queue,
    R::Level,
    "ai_inference_queue_waiting_requests",
);
/// `ai_queue_running_requests` (ai_inference_queue_running_requests): requests running after their
/// queue at the tick (bounded by the host's batch size, so context).
pub const AI_QUEUE_RUNNING_REQUESTS: Known = k(
    "ai_queue_running_requests",
    Unit::Count,
    G,
    F::Other,
    R::Level,
    "ai_inference_queue_running_requests",
);
/// `ai_queue_time_p99_seconds` (ai_inference_queue_time_seconds): the 99th percentile of the time
/// the requests that started in the tick had waited.
pub const AI_QUEUE_TIME_P99_SECONDS: Known = k(
    "ai_queue_time_p99_seconds",
    Unit::Seconds,
    G,
    F::Queue,
    R::Level,
    "ai_inference_queue_time_seconds",
);

/// The tokio collector's signals from the stable runtime metrics.
pub const RUNTIME: [Known; 5] = [
    TOKIO_WORKERS,
    TOKIO_ALIVE_TASKS,
    TOKIO_GLOBAL_QUEUE_DEPTH,
    TOKIO_BUSY_RATIO,
    TOKIO_PARK_RATE,
];
/// The tokio collector's signals that need `--cfg tokio_unstable`, after [`RUNTIME`].
pub const RUNTIME_UNSTABLE: [Known; 7] = [
    TOKIO_SPAWNED_TASKS,
    TOKIO_POLLS,
    TOKIO_STEALS,
    TOKIO_LOCAL_QUEUE_DEPTH,
    TOKIO_BLOCKING_THREADS,
    TOKIO_MEAN_POLL_SECONDS,
    TOKIO_BUDGET_FORCED_YIELDS,
];
/// The scheduler probe's signals.
pub const SCHED: [Known; 5] = [
    SCHED_LATENCY_P50_SECONDS,
    SCHED_LATENCY_P99_SECONDS,
    SCHED_LATENCY_MAX_SECONDS,
    SCHED_PROBES,
    SCHED_STALLS,
];
/// The allocation counters' signals (`vigil::CountingAlloc`).
pub const ALLOC: [Known; 5] = [
    ALLOC_ALLOCATIONS,
    ALLOC_FREES,
    ALLOC_BYTES_ALLOCATED,
    ALLOC_BYTES_FREED,
    ALLOC_LIVE_BYTES,
];
/// The process collector's signals.
pub const PROCESS: [Known; 5] = [
    PROCESS_CPU_RATIO,
    PROCESS_RESIDENT_MEMORY_BYTES,
    PROCESS_VIRTUAL_MEMORY_BYTES,
    PROCESS_THREADS,
    PROCESS_OPEN_FDS,
];
/// The GPU collector's signals, per device: the signal is `gpu<N>_<name>`.
pub const GPU: [Known; 8] = [
    GPU_MEMORY_USED_BYTES,
    GPU_MEMORY_FREE_BYTES,
    GPU_MEMORY_TOTAL_BYTES,
    GPU_UTILIZATION_RATIO,
    GPU_MEMORY_UTILIZATION_RATIO,
    GPU_TEMPERATURE_CELSIUS,
    GPU_POWER_WATTS,
    GPU_PROCESS_MEMORY_BYTES,
];
/// `http_response_head_p99_seconds` (vigil_http_server_response_head_seconds): the 99th percentile
/// of the tick's HTTP and gRPC requests' time to their response head, as the HTTP layer measured
/// it: the handler's latency for a unary request, what a host that serves through the layer without
/// annotating functions has as its latency. Not the time to the end of the body: a streamed
/// response lasts as long as its answer (measured: with it, one SSE stream in twenty requests made
/// the signal flip between the unary and the streamed durations, and `bench detect --quick` went
/// from 11 of 11 faults and no false event to 6 of 11 and 12 false events per 3,600 ticks).
pub const HTTP_RESPONSE_HEAD_P99_SECONDS: Known = k(
    "http_response_head_p99_seconds",
    Unit::Seconds,
    G,
    F::Latency,
    R::Level,
    "vigil_http_server_response_head_seconds",
);
/// `http_error_ratio` (http_server_request_duration_seconds and rpc_server_call_duration_seconds):
/// the share of the tick's HTTP and gRPC requests that failed (HTTP 5xx; the gRPC codes a server
/// counts as failed).
pub const HTTP_ERROR_RATIO: Known = k(
    "http_error_ratio",
    Unit::Ratio,
    G,
    F::Errors,
    R::Level,
    "http_server_request_duration_seconds",
);

/// The `#[observe]` collector's signals (the per-type anomaly counters follow, from [`INFERENCE_ANOMALIES`]).
pub const INFERENCE: [Known; 5] = [
    INFERENCE_CALLS,
    INFERENCE_ERRORS,
    INFERENCE_ERROR_RATIO,
    INFERENCE_LATENCY_P50_SECONDS,
    INFERENCE_LATENCY_P99_SECONDS,
];

/// The serving signals of streamed generations, the host's queues and the HTTP layer's requests
/// (`vigil::observe::stream`, `vigil::observe::queue`, `vigil::observe::http`), collected with
/// [`INFERENCE`] and after the per-type anomaly counters. A host that never streams, queues or serves
/// through the layer records them as missing (`NaN`), never as zero.
pub const SERVING: [Known; 8] = [
    GEN_AI_TIME_TO_FIRST_TOKEN_P99_SECONDS,
    GEN_AI_TIME_PER_OUTPUT_TOKEN_P50_SECONDS,
    GEN_AI_OUTPUT_TOKENS,
    AI_QUEUE_WAITING_REQUESTS,
    AI_QUEUE_RUNNING_REQUESTS,
    AI_QUEUE_TIME_P99_SECONDS,
    HTTP_RESPONSE_HEAD_P99_SECONDS,
    HTTP_ERROR_RATIO,
];

/// Every signal group, in collection order.
pub const GROUPS: [&[Known]; 8] = [
    &RUNTIME,
    &RUNTIME_UNSTABLE,
    &SCHED,
    &ALLOC,
    &PROCESS,
    &GPU,
    &INFERENCE,
    &SERVING,
];

/// Every signal the agent collects, by collector, in collection order. GPU entries are per device
/// (the signal is `gpu<N>_<name>`); the per-type inference anomaly counters are
/// [`INFERENCE_ANOMALIES`].
pub fn signals() -> impl Iterator<Item = &'static Known> {
    GROUPS.iter().flat_map(|g| g.iter())
}

/// The per-type inference anomaly counters: the signal is `inference_anomalies_<type>`.
pub const INFERENCE_ANOMALIES: Known = k(
    "inference_anomalies",
    Unit::Count,
    C,
    F::Errors,
    R::Level,
    "ai_inference_anomaly_total",
);

impl Known {
    /// The spec of this signal (for a per-device or per-type signal, use [`Known::spec_named`]).
    pub fn spec(&self) -> SignalSpec {
        self.spec_named(self.name.to_owned())
    }

    /// The spec of a signal of this entry under another name (`gpu0_memory_used_bytes`,
    /// `inference_anomalies_timeout`).
    pub fn spec_named(&self, name: String) -> SignalSpec {
        SignalSpec::named(name, self.unit, self.kind)
    }
}

/// Signals that grow in proportion to the request load (work per request): allocation traffic and
/// CPU time. Detectors explain them by the load even when the training windows saw too little load
/// variation to fit the relation.
/// The smallest change a signal's measurement can show at a tick, where it is coarser than its unit
/// suggests: the process CPU ratio comes from CPU time counted in 10 ms clock ticks, so over a 100 ms
/// tick it moves in steps of 0.1. Detectors never scale a feature below it.
pub fn resolution_of_feature(feature: &str, tick_seconds: f64) -> f64 {
    let tick = if tick_seconds.is_finite() && tick_seconds > 0.0 {
        tick_seconds
    } else {
        1.0
    };
    if lookup(signal_of_feature(feature)).is_some_and(|k| k.clock_ticks) {
        0.01 / tick
    } else {
        0.0
    }
}

/// True when the signal a feature belongs to grows in proportion to the request load.
pub fn follows_load(feature: &str) -> bool {
    lookup(signal_of_feature(feature)).is_some_and(|k| k.follows_load)
}

/// The vocabulary entry of a signal name (`gpu0_memory_used_bytes` finds `memory_used_bytes`;
/// `inference_anomalies_timeout` is an error counter).
pub fn lookup(signal: &str) -> Option<Known> {
    if let Some(k) = signals().find(|k| k.name == signal) {
        return Some(*k);
    }
    if let Some(rest) = signal.strip_prefix("gpu") {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0
            && let Some(name) = rest[digits..].strip_prefix('_')
        {
            return GPU.iter().find(|k| k.name == name).copied();
        }
    }
    if signal
        .strip_prefix(INFERENCE_ANOMALIES.name)
        .is_some_and(|t| t.starts_with('_'))
    {
        return Some(INFERENCE_ANOMALIES);
    }
    None
}

/// The spec of a known signal, by its full name (`gpu0_memory_used_bytes`, `inference_anomalies_oom`);
/// `None` for names the vocabulary does not know.
pub fn spec(signal: &str) -> Option<SignalSpec> {
    lookup(signal).map(|k| k.spec_named(signal.to_owned()))
}

/// The signal a CSV column records: a known counter's column is `<signal>_total` (Prometheus
/// convention), every other known signal's column is its name; unknown columns are gauges of unknown
/// scale unless they end in `_total` (counters).
pub fn column_signal(column: &str) -> SignalSpec {
    if let Some(base) = column.strip_suffix("_total")
        && let Some(k) = lookup(base).filter(|k| k.kind == C)
    {
        return k.spec_named(base.to_owned());
    }
    if let Some(k) = lookup(column).filter(|k| k.kind == G) {
        return k.spec_named(column.to_owned());
    }
    let kind = if column.ends_with("_total") { C } else { G };
    SignalSpec::named(column.to_owned(), Unit::Value, kind)
}

/// The CSV column that records `spec` (the inverse of [`column_signal`] for known signals).
pub fn column_name(spec: &SignalSpec) -> String {
    column_of(&spec.name, spec.kind)
}

/// [`column_name`] of a signal called `name` of kind `kind` (a counter's column ends in `_total`).
pub fn column_of(name: &str, kind: SignalKind) -> String {
    match kind {
        C if !name.ends_with("_total") => format!("{name}_total"),
        _ => name.to_owned(),
    }
}

/// The signal part of a feature name: `tokio_alive_tasks.mean_10` → `tokio_alive_tasks`, and a
/// counter's rate `alloc_allocations_rate.last` → `alloc_allocations`.
pub fn signal_of_feature(feature: &str) -> &str {
    let base = feature.split('.').next().unwrap_or(feature);
    match base.strip_suffix("_rate") {
        Some(counter) if lookup(counter).is_some_and(|k| k.kind == C) => counter,
        _ => base,
    }
}

/// The family of the signal a feature belongs to (`Other` for unknown signals).
pub fn family_of_feature(feature: &str) -> Family {
    lookup(signal_of_feature(feature)).map_or(Family::Other, |k| k.family)
}

/// The feature of the load signal with the same statistic as `feature` (`alloc_bytes_allocated_rate.mean_10`
/// → `inference_calls_rate.mean_10`), when `names` has one and `feature` is not itself the load.
pub fn load_feature_for(feature: &str, names: &[String]) -> Option<usize> {
    if family_of_feature(feature) == Family::Load {
        return None;
    }
    let stat = feature.split_once('.')?.1;
    names.iter().position(|n| {
        n.split_once('.')
            .is_some_and(|(_, s)| s == stat && family_of_feature(n) == Family::Load)
    })
}

/// How the detector reads the signal a feature belongs to (`Level` for unknown signals).
pub fn reading_of_feature(feature: &str) -> Reading {
    lookup(signal_of_feature(feature)).map_or(Reading::Level, |k| k.reading)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_lookups_cover_per_device_and_per_type_signals() {
        let mut names: Vec<&str> = signals().map(|k| k.name).collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n);
        assert_eq!(
            lookup("gpu3_memory_used_bytes").map(|k| k.family),
            Some(Family::GpuMemory)
        );
        assert_eq!(lookup("gpux_memory_used_bytes"), None);
        assert_eq!(
            lookup("inference_anomalies_oom").map(|k| k.family),
            Some(Family::Errors)
        );
        assert_eq!(lookup("queue_len"), None);
    }

    #[test]
    fn recorded_columns_map_back_to_the_agents_signals() {
        for known in signals().filter(|k| !k.metric.starts_with("vigil_gpu_")) {
            let spec = known.spec();
            assert_eq!(column_signal(&column_name(&spec)), spec, "{}", known.name);
        }
        let gpu = spec("gpu0_power_watts").unwrap();
        assert_eq!(column_signal(&column_name(&gpu)), gpu);
        // Unknown columns: `_total` is a counter, anything else a gauge, both of unknown scale.
        assert_eq!(column_signal("reqs_total").kind, SignalKind::Counter);
        assert_eq!(column_signal("reqs_total").name, "reqs_total");
        assert_eq!(column_signal("queue").unit, Unit::Value);
        assert_eq!(
            signal_of_feature("alloc_allocations_rate.slope_60"),
            "alloc_allocations"
        );
        assert_eq!(signal_of_feature("reqs_total_rate.last"), "reqs_total_rate");
        assert_eq!(
            family_of_feature("process_resident_memory_bytes.slope_10"),
            Family::Memory
        );
        assert_eq!(
            reading_of_feature("process_resident_memory_bytes.last"),
            Reading::Trend
        );
    }
}
