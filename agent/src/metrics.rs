//! The catalogue of every metric the agent exports.
//!
//! Each metric is described once here; the same description is registered with the Prometheus registry
//! (its HELP text) and rendered into `docs/METRICS.md` by [`metrics_markdown`], which a test compares
//! against the committed file. Regenerate with `cargo run -- metrics-doc > docs/METRICS.md`.

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Metric, Registry};
use std::sync::atomic::AtomicU64;
use vigil_features::vocab;

/// A gauge holding an `f64` (the registry's default gauge is an integer).
pub(crate) type FGauge = Gauge<f64, AtomicU64>;

/// Prometheus metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// Monotonic total; the exposition name ends in `_total`.
    Counter,
    /// A level.
    Gauge,
    /// Cumulative buckets with `_bucket`, `_sum`, `_count` series.
    Histogram,
}

impl MetricType {
    fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
        }
    }
}

/// One exported metric.
#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    /// Exposition name (counters include `_total`).
    pub name: &'static str,
    /// Metric type.
    pub kind: MetricType,
    /// Label names; every label has a bounded set of values.
    pub labels: &'static [&'static str],
    /// One-sentence description; the registry appends the final period.
    pub help: &'static str,
    /// When the series exists.
    pub present: &'static str,
}

impl MetricDef {
    /// Registers `metric` under this definition's name and help.
    pub(crate) fn register(&self, registry: &mut Registry, metric: impl Metric) {
        let name = match self.kind {
            // prometheus-client appends `_total` to counters itself.
            MetricType::Counter => self.name.strip_suffix("_total").unwrap_or(self.name),
            _ => self.name,
        };
        registry.register(name, self.help, metric);
    }
}

const ALWAYS: &str = "always";
const UNSTABLE: &str = "built with `--cfg tokio_unstable`";
const ALLOC: &str = "`vigil::CountingAlloc` is the global allocator";
const GPU: &str = "one series per GPU the source reports";
const FEATURES: &str = "feature metrics on (default; `VIGIL_FEATURE_METRICS=off` removes them)";
const DRIFT: &str = "a drift reference is set: the host's, or the training windows of the model the agent trained last (one series per feature)";
const OBSERVE: &str =
    "a `#[vigil::observe]` function has been called (exemplars: OpenMetrics only)";
const STREAM: &str =
    "a stream has been observed with `vigil::observe::stream` under that model and stage";
const HTTP: &str =
    "a request went through `vigil::observe::http::HttpMetricsLayer` (feature `http`)";
const QUEUE: &str = "a queue was made with `vigil::observe::queue` for that model and stage";
const MODEL: &str =
    "always (NaN until a model is loaded or the cold-start warm-up has trained one)";
const MODEL_LOADED: &str = "a model is loaded or trained (one series)";
const MODEL_FILE: &str = "VIGIL_MODEL is set and watched (VIGIL_MODEL_POLL not `off`)";
const EVENT_OPEN: &str = "an anomaly event is open (one series at most)";
const STORE: &str = "the local store is on (default; `VIGIL_DATA_DIR=off` removes it)";
const DRIFT_MAX: &str =
    "always (NaN until a drift reference is set or the agent has trained its first model)";

macro_rules! defs {
    ($($id:ident = $name:expr, $kind:ident, [$($label:literal),*], $present:expr, $help:expr;)*) => {
        $(
            #[doc = concat!("`", stringify!($name), "`")]
            pub(crate) const $id: MetricDef = MetricDef {
                name: $name,
                kind: MetricType::$kind,
                labels: &[$($label),*],
                help: $help,
                present: $present,
            };
        )*
        /// Every metric the agent can export, in documentation order.
        pub const CATALOGUE: &[MetricDef] = &[$($id),*];
    };
}

defs! {
    TOKIO_WORKERS = vocab::TOKIO_WORKERS.metric, Gauge, [], ALWAYS,
        "Worker threads of the monitored tokio runtime";
    TOKIO_ALIVE_TASKS = vocab::TOKIO_ALIVE_TASKS.metric, Gauge, [], ALWAYS,
        "Tasks spawned on the runtime and not yet completed; a steady climb under steady load is a task leak";
    TOKIO_GLOBAL_QUEUE_DEPTH = vocab::TOKIO_GLOBAL_QUEUE_DEPTH.metric, Gauge, [], ALWAYS,
        "Tasks waiting in the runtime's injection queue at the end of the tick; persistent depth means workers cannot keep up";
    TOKIO_BUSY_RATIO = vocab::TOKIO_BUSY_RATIO.metric, Gauge, [], ALWAYS,
        "Busy time of all workers over the tick divided by (tick length x workers), 0 to 1; near 1 means saturated";
    TOKIO_PARKS = vocab::TOKIO_PARK_RATE.metric, Counter, [], ALWAYS,
        "Times a worker went idle (parked); a falling park rate with rising busy ratio means saturation";
    TOKIO_SPAWNED = vocab::TOKIO_SPAWNED_TASKS.metric, Counter, [], UNSTABLE,
        "Tasks spawned on the runtime";
    TOKIO_POLLS = vocab::TOKIO_POLLS.metric, Counter, [], UNSTABLE,
        "Task polls performed by all workers";
    TOKIO_STEALS = vocab::TOKIO_STEALS.metric, Counter, [], UNSTABLE,
        "Tasks stolen by one worker from another's local queue";
    TOKIO_LOCAL_QUEUE_DEPTH = vocab::TOKIO_LOCAL_QUEUE_DEPTH.metric, Gauge, [], UNSTABLE,
        "Tasks waiting in all workers' local queues at the end of the tick";
    TOKIO_BLOCKING_THREADS = vocab::TOKIO_BLOCKING_THREADS.metric, Gauge, [], UNSTABLE,
        "Threads in the runtime's blocking pool (spawn_blocking)";
    TOKIO_MEAN_POLL = vocab::TOKIO_MEAN_POLL_SECONDS.metric, Gauge, [], UNSTABLE,
        "Mean duration of a task poll over the tick; long polls block workers";
    TOKIO_FORCED_YIELDS = vocab::TOKIO_BUDGET_FORCED_YIELDS.metric, Counter, [], UNSTABLE,
        "Times a task was forced to yield because it used up its cooperative budget";
    SCHED_LATENCY = vocab::SCHED_LATENCY_P50_SECONDS.metric, Histogram, [], ALWAYS,
        "Time from spawning a no-op probe task from the agent's own thread to its first poll: how long a newly woken task waits for a worker";
    SCHED_LATENCY_MAX = vocab::SCHED_LATENCY_MAX_SECONDS.metric, Gauge, [], ALWAYS,
        "Largest probe latency seen during the last tick, including a probe still waiting at the end of the tick";
    SCHED_STALLS = vocab::SCHED_STALLS.metric, Counter, [], ALWAYS,
        "Probes not polled within the stall threshold (default 100 ms): every worker was busy or blocked";
    SCHED_UNRANKED = "vigil_sched_probes_unranked_total", Counter, [], ALWAYS,
        "Probe latencies left out of the per-tick p50/p99 because more than 1,024 probes completed in one tick (they still count in the histogram and the max); rises only with a very short probe interval or a long tick";
    ALLOC_ALLOCATIONS = vocab::ALLOC_ALLOCATIONS.metric, Counter, [], ALLOC,
        "Heap allocations by the process (a realloc counts as one allocation and one free)";
    ALLOC_FREES = vocab::ALLOC_FREES.metric, Counter, [], ALLOC,
        "Heap deallocations by the process";
    ALLOC_BYTES = vocab::ALLOC_BYTES_ALLOCATED.metric, Counter, [], ALLOC,
        "Bytes requested by heap allocations";
    ALLOC_FREED_BYTES = vocab::ALLOC_BYTES_FREED.metric, Counter, [], ALLOC,
        "Bytes released by heap deallocations";
    ALLOC_LIVE_BYTES = vocab::ALLOC_LIVE_BYTES.metric, Gauge, [], ALLOC,
        "Bytes allocated and not yet freed (excludes allocator overhead); a steady climb is a leak";
    AGENT_ALLOC_BYTES = "vigil_agent_alloc_bytes_total", Counter, [], ALLOC,
        "Bytes the agent's own threads allocated (tick, probe, training); left out of every vigil_alloc_* series so the agent does not score its own work";
    AGENT_ALLOC_LIVE_BYTES = "vigil_agent_alloc_live_bytes", Gauge, [], ALLOC,
        "Bytes the agent's own threads hold (allocated there and not yet freed there)";
    PROCESS_CPU_RATIO = vocab::PROCESS_CPU_RATIO.metric, Gauge, [], ALWAYS,
        "CPU time used by the process during the tick divided by the tick length (1 = one core fully busy)";
    PROCESS_CPU_SECONDS = "vigil_process_cpu_seconds_total", Counter, [], ALWAYS,
        "CPU time (user + system) used by the process since the agent started";
    PROCESS_RSS = vocab::PROCESS_RESIDENT_MEMORY_BYTES.metric, Gauge, [], ALWAYS,
        "Resident set size of the process, less the heap the agent's own threads hold where vigil::CountingAlloc is the global allocator (the agent does not score its own memory; vigil_agent_alloc_live_bytes is that heap)";
    PROCESS_VIRTUAL = vocab::PROCESS_VIRTUAL_MEMORY_BYTES.metric, Gauge, [], ALWAYS,
        "Virtual memory size of the process";
    PROCESS_THREADS = vocab::PROCESS_THREADS.metric, Gauge, [], ALWAYS,
        "OS threads of the process";
    PROCESS_OPEN_FDS = vocab::PROCESS_OPEN_FDS.metric, Gauge, [], "Linux (/proc)",
        "Open file descriptors of the process";
    GPU_AVAILABLE = "vigil_gpu_available", Gauge, [], ALWAYS,
        "1 when a GPU source with at least one device is active, 0 when running without GPU signals";
    GPU_MEMORY_USED = vocab::GPU_MEMORY_USED_BYTES.metric, Gauge, ["gpu", "uuid"], GPU,
        "Device framebuffer memory in use (like DCGM_FI_DEV_FB_USED x 2^20)";
    GPU_MEMORY_FREE = vocab::GPU_MEMORY_FREE_BYTES.metric, Gauge, ["gpu", "uuid"], GPU,
        "Device framebuffer memory free";
    GPU_MEMORY_TOTAL = vocab::GPU_MEMORY_TOTAL_BYTES.metric, Gauge, ["gpu", "uuid"], GPU,
        "Device framebuffer memory installed";
    GPU_UTILIZATION = vocab::GPU_UTILIZATION_RATIO.metric, Gauge, ["gpu", "uuid"], GPU,
        "Fraction of the driver's sample period in which a kernel ran, 0 to 1";
    GPU_MEMORY_UTILIZATION = vocab::GPU_MEMORY_UTILIZATION_RATIO.metric, Gauge, ["gpu", "uuid"], GPU,
        "Fraction of the driver's sample period in which device memory was read or written, 0 to 1";
    GPU_TEMPERATURE = vocab::GPU_TEMPERATURE_CELSIUS.metric, Gauge, ["gpu", "uuid"], GPU,
        "Device core temperature";
    GPU_POWER = vocab::GPU_POWER_WATTS.metric, Gauge, ["gpu", "uuid"], GPU,
        "Device power draw";
    GPU_PROCESS_MEMORY = vocab::GPU_PROCESS_MEMORY_BYTES.metric, Gauge, ["gpu", "uuid"], GPU,
        "Device memory used by this process (0 when the driver lists no such process, e.g. PID namespaces)";
    FEATURE_VALUE = "vigil_feature_value", Gauge, ["feature"], FEATURES,
        "Value of one window feature this tick (see the feature schema: <signal>.<stat>_<ticks>)";
    FEATURE_DRIFT_PSI = "vigil_feature_drift_psi", Gauge, ["feature"], DRIFT,
        "Population stability index of the feature over the live drift window against the training reference; above 0.25 means shifted";
    FEATURE_DRIFT_MAX_PSI = "vigil_feature_drift_max_psi", Gauge, [], DRIFT_MAX,
        "Largest feature PSI against the training reference (NaN until a reference is set)";
    INFERENCE_DURATION = vigil_observe::DURATION_METRIC, Histogram, ["model", "stage"], OBSERVE,
        vigil_observe::DURATION_HELP;
    INFERENCE_ERRORS = vigil_observe::ERRORS_METRIC, Counter, ["model", "stage"], OBSERVE,
        vigil_observe::ERRORS_HELP;
    INFERENCE_ANOMALY = vigil_observe::ANOMALY_METRIC, Counter, ["model", "stage", "anomaly_type"], OBSERVE,
        vigil_observe::ANOMALY_HELP;
    GEN_AI_REQUEST_DURATION = vigil_observe::REQUEST_DURATION_METRIC, Histogram, ["model", "stage"], STREAM,
        vigil_observe::REQUEST_DURATION_HELP;
    GEN_AI_TIME_TO_FIRST_TOKEN = vigil_observe::TIME_TO_FIRST_TOKEN_METRIC, Histogram, ["model", "stage"], STREAM,
        vigil_observe::TIME_TO_FIRST_TOKEN_HELP;
    GEN_AI_TIME_PER_OUTPUT_TOKEN = vigil_observe::TIME_PER_OUTPUT_TOKEN_METRIC, Histogram, ["model", "stage"], STREAM,
        vigil_observe::TIME_PER_OUTPUT_TOKEN_HELP;
    GEN_AI_TOKENS = vigil_observe::TOKENS_METRIC, Counter, ["model", "stage", "type"], STREAM,
        vigil_observe::TOKENS_HELP;
    HTTP_DURATION = vigil_observe::HTTP_DURATION_METRIC, Histogram, ["http_request_method", "http_route", "http_response_status_code"], HTTP,
        vigil_observe::HTTP_DURATION_HELP;
    RPC_DURATION = vigil_observe::RPC_DURATION_METRIC, Histogram, ["rpc_system", "rpc_service", "rpc_method", "rpc_grpc_status_code"], HTTP,
        vigil_observe::RPC_DURATION_HELP;
    HTTP_ACTIVE = vigil_observe::HTTP_ACTIVE_METRIC, Gauge, ["http_request_method", "http_route"], HTTP,
        vigil_observe::HTTP_ACTIVE_HELP;
    HTTP_RESPONSE_HEAD = vigil_observe::HTTP_RESPONSE_HEAD_METRIC, Histogram, [], HTTP,
        vigil_observe::HTTP_RESPONSE_HEAD_HELP;
    HTTP_ROUTE_OVERFLOW = vigil_observe::ROUTE_OVERFLOW_METRIC, Counter, [], HTTP,
        vigil_observe::ROUTE_OVERFLOW_HELP;
    QUEUE_WAITING = vigil_observe::QUEUE_WAITING_METRIC, Gauge, ["model", "stage"], QUEUE,
        vigil_observe::QUEUE_WAITING_HELP;
    QUEUE_RUNNING = vigil_observe::QUEUE_RUNNING_METRIC, Gauge, ["model", "stage"], QUEUE,
        vigil_observe::QUEUE_RUNNING_HELP;
    QUEUE_TIME = vigil_observe::QUEUE_TIME_METRIC, Histogram, ["model", "stage"], QUEUE,
        vigil_observe::QUEUE_TIME_HELP;
    BATCHES = vigil_observe::BATCHES_METRIC, Counter, ["model", "stage"], QUEUE,
        vigil_observe::BATCHES_HELP;
    BATCHED = vigil_observe::BATCHED_METRIC, Counter, ["model", "stage"], QUEUE,
        vigil_observe::BATCHED_HELP;
    ANOMALY_SCORE = "vigil_anomaly_score", Gauge, [], MODEL,
        "Anomaly score of the current window, 0 to 1; the threshold is 0.5 for every model (NaN until a model is ready)";
    ANOMALY_RAW_SCORE = "vigil_anomaly_raw_score", Gauge, [], MODEL,
        "The detector's raw score of the current window before it is mapped to 0 to 1: the RMS of the three largest deviations from normal, in robust standard deviations (a ranking without a ceiling; NaN until a model is ready)";
    ANOMALY = "vigil_anomaly", Gauge, [], MODEL,
        "1 while an anomaly event is open, else 0 (NaN until a model is ready); single windows over the threshold do not make an event";
    ANOMALY_EVENT_OPEN = "vigil_anomaly_event_open", Gauge, [], ALWAYS,
        "1 while an anomaly event is open, else 0 (0 until a model is ready)";
    ANOMALY_EVENTS = "vigil_anomaly_events_total", Counter, ["anomaly_type"], ALWAYS,
        "Anomaly events opened, by the type named at onset (every type exists from the start)";
    ANOMALY_EVENT_INFO = "vigil_anomaly_event_info", Gauge, ["event_id", "anomaly_type", "top_feature"], EVENT_OPEN,
        "1 for the anomaly event open now, labelled with its id, the type it opened with and the feature that led it (what an alert rule turns into a page: deploy/prometheus/rules.yml); no series while no event is open";
    ANOMALY_THRESHOLD = "vigil_anomaly_threshold", Gauge, [], ALWAYS,
        "Score at which a window counts as anomalous (0.5: scores are calibrated so every model shares it)";
    ALARM_LEVEL = "vigil_alarm_level", Gauge, [], ALWAYS,
        "The alarm level the false-event budget (VIGIL_FALSE_EVENTS_PER_DAY) sets, in thresholds of the model in use: a window scores 0.5 where its raw score reaches this many thresholds; 1 until a day of scores is held, and while the past day's to two weeks' scores show that 1 keeps the budget";
    MODEL_INFO = "vigil_model_info", Gauge, ["version", "schema_hash", "kind"], MODEL_LOADED,
        "1 for the model in use: model file format version, feature schema hash, detector kind";
    MODEL_TRAINED = "vigil_model_trained_timestamp_seconds", Gauge, [], MODEL,
        "When the model in use was trained, Unix seconds (NaN until a model is ready)";
    MODEL_TRAININGS = "vigil_model_trainings_total", Counter, ["result"], ALWAYS,
        "Models the agent trained on its own windows (cold start, refits, rebaselines) and installed (result ok) or failed to train (result error)";
    AGENT_TICK_DURATION = "vigil_agent_tick_duration_seconds", Histogram, [], ALWAYS,
        "Time the agent spent on one tick: every collector, feature extraction, drift and scoring";
    AGENT_TICKS = "vigil_agent_ticks_total", Counter, [], ALWAYS,
        "Ticks the agent has completed";
    AGENT_COLLECTOR_ERRORS = "vigil_agent_collector_errors_total", Counter, ["collector"], ALWAYS,
        "Ticks on which a collector failed; its signals are missing for that tick and the others go on";
    STORE_DROPPED = "vigil_store_dropped_total", Counter, ["what"], STORE,
        "Writes the local store did not take because its queue was full (a slow disk): ticks and events are dropped, API requests answered 503; the tick never waits";
    STORE_ERRORS = "vigil_store_errors_total", Counter, [], STORE,
        "Store operations that failed (write, retention, size check); each is logged at most once a minute and the agent goes on";
    STORE_BYTES = "vigil_store_bytes", Gauge, [], STORE,
        "Bytes the local store uses (SQLite pages in use), measured after each retention pass (every minute)";
    LABELS = "vigil_labels_total", Counter, ["source"], STORE,
        "Labels stored through the API: human (POST /api/v1/labels, verdicts on events), alertmanager (webhook intervals opened or closed)";
    MODEL_RELOADS = "vigil_model_reloads_total", Counter, ["result"], MODEL_FILE,
        "New versions of the VIGIL_MODEL file the agent noticed: ok (validated and swapped in between two ticks) or refused (unreadable, damaged or for another feature schema; the model in use keeps serving)";
    RETRAINS = "vigil_retrain_total", Counter, ["outcome"], STORE,
        "Retrains on stored windows and labels (hourly and after new labels): promoted (the candidate caught at least what the model in use caught, with at most the margin of extra false events, and was installed), rejected, failed";
    PROFILES = "vigil_profiles_total", Counter, ["trigger", "outcome"], ALWAYS,
        "CPU profiles asked for: trigger request (GET /debug/pprof/profile) or event (an event opened); outcome ok, busy (another profile was running: one at a time per process), cooldown (an automatic profile less than VIGIL_PROFILE_COOLDOWN ago), error (no profiler in this build, or it failed), host_sigprof (the host uses SIGPROF itself: its own handler or ITIMER_PROF; the agent does not take them over)";
    PROFILE_RUNNING = "vigil_profile_running", Gauge, [], ALWAYS,
        "1 while this agent is taking a CPU profile (SIGPROF sampling at 99 Hz), else 0";
    HTTP_CONNECTIONS = "vigil_http_connections", Gauge, [], ALWAYS,
        "Connections open on the agent's HTTP endpoint (at most VIGIL_HTTP_MAX_CONNECTIONS, plus one serving a CPU profile and one being closed)";
    HTTP_CONNECTIONS_SHED = "vigil_http_connections_shed_total", Counter, ["reason"], ALWAYS,
        "Connections the HTTP endpoint closed or could not take: idle_timeout (no complete request in time), evicted (longest-idle closed to admit a new one at the cap), refused (at the cap with every connection busy), accept_error (the OS refused, e.g. out of descriptors)";
}

/// Renders `docs/METRICS.md` from [`CATALOGUE`].
pub fn metrics_markdown() -> String {
    let mut out = String::from(
        "# Metrics\n\n\
         Generated from `agent/src/metrics.rs` by `cargo run -- metrics-doc > docs/METRICS.md`; a test fails \
         when this file and the code differ. Every series is served at `GET /metrics` on the agent's \
         listen address (default `127.0.0.1:9464`), as Prometheus text 0.0.4, or OpenMetrics 1.0 when the \
         scraper asks for it with `Accept: application/openmetrics-text`. Values that cannot be read in a \
         tick are exported as `NaN`, never as zero.\n\n\
         | name | type | labels | present when | description |\n\
         |---|---|---|---|---|\n",
    );
    for d in CATALOGUE {
        let labels = if d.labels.is_empty() {
            String::from("—")
        } else {
            d.labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {}. |\n",
            d.name,
            d.kind.as_str(),
            labels,
            d.present,
            d.help
        ));
    }
    out.push_str(
        "\nLabels: `model` and `stage` come from the `#[vigil::observe]` arguments, capped at 1,000 distinct pairs \
         (more land under `model=\"__overflow__\"`); `anomaly_type` is one of `timeout`, `nan_output`, `oom`, \
         `cancelled`, `panic`, `error`. `gpu` is the NVML device index and `uuid` the device UUID, so both are bounded by the \
         number of GPUs; `collector` is one of `tokio`, `sched`, `alloc`, `process`, `gpu`, `inference`, `features`; `reason` is one of \
         `idle_timeout`, `evicted`, `refused`, `accept_error`; `what` is one of `tick`, `event`, `model`, `request`; `outcome` is `promoted`, `rejected` or `failed`; `result` of `vigil_model_reloads_total` is `ok` or `refused`; \
         `source` is `human` or `alertmanager`; `event_id`, `anomaly_type` and `top_feature` of `vigil_anomaly_event_info` \
         exist for one event at a time (the series goes when the event closes); `result` is `ok` or `error`; `anomaly_type` of \
         `vigil_anomaly_events_total` is one of ",
    );
    let kinds: Vec<String> = vigil_models::AnomalyKind::ALL
        .iter()
        .map(|k| format!("`{}`", k.as_str()))
        .collect();
    out.push_str(&kinds.join(", "));
    out.push_str(
        "; `feature` is a name from the agent's feature schema (about ten per signal, fixed at start).\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vocabulary_reads_the_inference_series_the_observe_runtime_writes() {
        // The vocabulary (features) cannot depend on the observe runtime that names these series;
        // `vigil pull` queries them by the vocabulary's names.
        for k in vocab::signals()
            .filter(|k| k.metric.starts_with("ai_inference_") || k.metric.starts_with("gen_ai_"))
        {
            assert!(
                [
                    vigil_observe::DURATION_METRIC,
                    vigil_observe::ERRORS_METRIC,
                    vigil_observe::ANOMALY_METRIC,
                    vigil_observe::TIME_TO_FIRST_TOKEN_METRIC,
                    vigil_observe::TIME_PER_OUTPUT_TOKEN_METRIC,
                    vigil_observe::TOKENS_METRIC,
                    vigil_observe::QUEUE_WAITING_METRIC,
                    vigil_observe::QUEUE_RUNNING_METRIC,
                    vigil_observe::QUEUE_TIME_METRIC,
                ]
                .contains(&k.metric),
                "{}: {}",
                k.name,
                k.metric
            );
        }
        assert_eq!(vocab::INFERENCE_ERRORS.metric, vigil_observe::ERRORS_METRIC);
        assert_eq!(
            vocab::INFERENCE_ANOMALIES.metric,
            vigil_observe::ANOMALY_METRIC
        );
        assert_eq!(
            vocab::INFERENCE_CALLS.metric,
            vigil_observe::DURATION_METRIC
        );
    }

    #[test]
    fn catalogue_names_are_unique_and_follow_conventions() {
        let mut names: Vec<_> = CATALOGUE.iter().map(|d| d.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CATALOGUE.len(), "duplicate metric name");
        for d in CATALOGUE {
            // The agent's own, `#[observe]`'s, and the OpenTelemetry conventions' namespaces for
            // streamed generation, HTTP and RPC servers.
            assert!(
                [
                    "vigil_",
                    "ai_inference_",
                    "gen_ai_server_",
                    "http_server_",
                    "rpc_server_"
                ]
                .iter()
                .any(|p| d.name.starts_with(p)),
                "{}",
                d.name
            );
            assert_eq!(
                d.kind == MetricType::Counter,
                d.name.ends_with("_total"),
                "{}",
                d.name
            );
            assert!(
                !d.help.ends_with('.'),
                "{}: the registry appends the period",
                d.name
            );
        }
    }

    #[test]
    fn committed_metrics_doc_matches_the_code() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/METRICS.md");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == metrics_markdown(),
            "docs/METRICS.md is out of date: run `cargo run -- metrics-doc > docs/METRICS.md`"
        );
    }
}
