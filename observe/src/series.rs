//! One label set's counters, the bounded table of label sets, and process totals.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::SystemTime;

use crate::AnomalyType;
use crate::trace::TraceContext;

/// Upper bounds of `ai_inference_duration_seconds` buckets: 1 ms to 60 s (plus `+Inf`).
pub const BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
const SLOTS: usize = BUCKETS.len() + 1;
/// [`BUCKETS`] in nanoseconds (a call's duration is compared as an integer), derived at compile time.
const BUCKET_NANOS: [u64; 15] = {
    let mut nanos = [0u64; 15];
    let mut i = 0;
    while i < BUCKETS.len() {
        nanos[i] = (BUCKETS[i] * 1e9 + 0.5) as u64;
        i += 1;
    }
    nanos
};

/// Default cap on distinct `(model, stage)` label sets.
pub const DEFAULT_LABEL_CAP: usize = 1000;
/// The `model` label of calls beyond the cap.
pub const OVERFLOW_LABEL: &str = "__overflow__";
/// Overflow series beyond the cap (one per stage), after which stage overflows too.
const OVERFLOW_STAGES: usize = 64;

static LABEL_CAP: AtomicUsize = AtomicUsize::new(DEFAULT_LABEL_CAP);

/// Sets the cap on distinct `(model, stage)` label sets (at least 1). Label sets seen after the cap is
/// reached are recorded under `model="__overflow__"`.
pub fn set_label_cap(cap: usize) {
    LABEL_CAP.store(cap.max(1), Relaxed);
}

#[derive(Debug, Clone)]
pub(crate) struct Exemplar {
    pub(crate) trace: TraceContext,
    pub(crate) value: f64,
    pub(crate) at: SystemTime,
}

#[derive(Debug, Default)]
pub(crate) struct Exemplars {
    pub(crate) buckets: [Option<Exemplar>; SLOTS],
    pub(crate) anomalies: [Option<Exemplar>; 6],
}

/// A latency histogram over [`BUCKETS`]: non-cumulative counts per bucket (the last slot is `+Inf`)
/// and the sum, in nanoseconds.
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    pub(crate) buckets: [AtomicU64; SLOTS],
    pub(crate) sum_nanos: AtomicU64,
}

impl Histogram {
    /// An empty histogram (for statics: the HTTP layer's process-wide one).
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) const fn new() -> Self {
        Self {
            buckets: [const { AtomicU64::new(0) }; SLOTS],
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// The bucket of a duration: the first whose upper bound it does not exceed (`le`).
    #[inline]
    pub(crate) fn bucket_of(nanos: u64) -> usize {
        BUCKET_NANOS.partition_point(|b| *b < nanos)
    }

    /// Counts one duration; returns its bucket.
    #[inline]
    pub(crate) fn observe(&self, nanos: u64) -> usize {
        let b = Self::bucket_of(nanos);
        self.buckets[b].fetch_add(1, Relaxed);
        self.sum_nanos.fetch_add(nanos, Relaxed);
        b
    }
}

/// What streamed generations under one label set did ([`crate::stream`]); nothing is exported for a
/// label set until a stream ran under it.
#[derive(Debug, Default)]
pub(crate) struct Generation {
    pub(crate) streamed: AtomicBool,
    /// From the stream's start to its first item.
    pub(crate) first_token: Histogram,
    /// Per completed stream of at least two tokens: (last item − first item) / (tokens − 1).
    pub(crate) per_output_token: Histogram,
    pub(crate) input_tokens: AtomicU64,
    pub(crate) output_tokens: AtomicU64,
}

/// A host's request queue under one label set ([`crate::queue`]); nothing is exported for a label set
/// until a queue was made for it.
#[derive(Debug, Default)]
pub(crate) struct QueueCounts {
    pub(crate) used: AtomicBool,
    pub(crate) waiting: AtomicI64,
    pub(crate) running: AtomicI64,
    /// Time from joining the queue to starting.
    pub(crate) time: Histogram,
    pub(crate) batches: AtomicU64,
    pub(crate) batched: AtomicU64,
}

/// Counters of one `(model, stage)` label set. Leaked once created (the table is bounded), so calls hold a
/// `&'static Series` without reference counting.
#[derive(Debug)]
pub(crate) struct Series {
    pub(crate) model: Box<str>,
    pub(crate) stage: Box<str>,
    /// Call durations.
    pub(crate) duration: Histogram,
    pub(crate) errors: AtomicU64,
    pub(crate) anomalies: [AtomicU64; 6],
    /// Written only by failing calls that carry a trace id.
    pub(crate) exemplars: Mutex<Exemplars>,
    /// Streamed generation.
    pub(crate) generation: Generation,
    /// The host's queue.
    pub(crate) queue: QueueCounts,
}

impl Series {
    fn new(model: &str, stage: &str) -> Self {
        Self {
            model: model.into(),
            stage: stage.into(),
            duration: Histogram::default(),
            errors: AtomicU64::new(0),
            anomalies: Default::default(),
            exemplars: Mutex::new(Exemplars::default()),
            generation: Generation::default(),
            queue: QueueCounts::default(),
        }
    }

    /// Counts one call's duration; returns its bucket.
    #[inline]
    pub(crate) fn observe(&self, nanos: u64) -> usize {
        self.duration.observe(nanos)
    }

    pub(crate) fn record_failure(
        &self,
        kind: AnomalyType,
        bucket: usize,
        secs: f64,
        trace: Option<TraceContext>,
    ) {
        if kind.is_error() {
            self.errors.fetch_add(1, Relaxed);
        }
        self.anomalies[kind.index()].fetch_add(1, Relaxed);
        if let Some(trace) = trace {
            let e = Exemplar {
                trace,
                value: secs,
                at: SystemTime::now(),
            };
            let mut ex = self
                .exemplars
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            ex.buckets[bucket] = Some(e.clone());
            ex.anomalies[kind.index()] = Some(Exemplar { value: 1.0, ..e });
        }
    }
}

#[derive(Default)]
struct Table {
    /// FNV hash of (model, stage) → series with that hash.
    by_hash: HashMap<u64, Vec<&'static Series>>,
    /// Every series, in creation order (for encoding).
    all: Vec<&'static Series>,
    distinct: usize,
}

static TABLE: RwLock<Option<Table>> = RwLock::new(None);

fn fnv(model: &str, stage: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in model.bytes().chain([0xff]).chain(stage.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn find(t: &Table, h: u64, model: &str, stage: &str) -> Option<&'static Series> {
    t.by_hash
        .get(&h)?
        .iter()
        .find(|s| &*s.model == model && &*s.stage == stage)
        .copied()
}

/// Label sets a thread resolved last, newest first: a label from an argument is usually one of a few
/// models, and a hit costs two short string comparisons instead of a hash, a read lock and a map
/// lookup. Bounded (four entries per thread) and never stale: a series is never removed, and a label
/// set the table sent to overflow goes there again.
const RECENT: usize = 4;

/// A label set (model, stage) and its series.
type Entry = (Box<str>, Box<str>, &'static Series);

struct Recent {
    entries: [Option<Entry>; RECENT],
}

thread_local! {
    static RECENTLY: std::cell::RefCell<Recent> = const {
        std::cell::RefCell::new(Recent { entries: [None, None, None, None] })
    };
}

/// The series for `(model, stage)`: from this thread's recent label sets, else from the table.
#[inline]
pub(crate) fn series_cached(model: &str, stage: &str) -> &'static Series {
    let hit = RECENTLY.try_with(|r| {
        let r = r.try_borrow().ok()?;
        r.entries
            .iter()
            .flatten()
            .find(|(m, s, _)| **m == *model && **s == *stage)
            .map(|(_, _, series)| *series)
    });
    match hit {
        Ok(Some(s)) => s,
        _ => remember(model, stage),
    }
}

#[cold]
fn remember(model: &str, stage: &str) -> &'static Series {
    let s = series(model, stage);
    let _ = RECENTLY.try_with(|r| {
        if let Ok(mut r) = r.try_borrow_mut() {
            r.entries.rotate_right(1);
            r.entries[0] = Some((model.into(), stage.into(), s));
        }
    });
    s
}

/// The series for `(model, stage)`, created on first use; beyond the cap, an overflow series.
pub(crate) fn series(model: &str, stage: &str) -> &'static Series {
    let h = fnv(model, stage);
    {
        let t = TABLE.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = t.as_ref().and_then(|t| find(t, h, model, stage)) {
            return s;
        }
    }
    let mut guard = TABLE.write().unwrap_or_else(PoisonError::into_inner);
    let t = guard.get_or_insert_with(Table::default);
    if let Some(s) = find(t, h, model, stage) {
        return s;
    }
    let cap = LABEL_CAP.load(Relaxed);
    let (model, stage, h) = if t.distinct < cap {
        t.distinct += 1;
        (model, stage, h)
    } else {
        let stage_kept = t.all.len() < cap + OVERFLOW_STAGES;
        let stage = if stage_kept { stage } else { OVERFLOW_LABEL };
        let h = fnv(OVERFLOW_LABEL, stage);
        if let Some(s) = find(t, h, OVERFLOW_LABEL, stage) {
            return s;
        }
        (OVERFLOW_LABEL, stage, h)
    };
    let s: &'static Series = Box::leak(Box::new(Series::new(model, stage)));
    t.by_hash.entry(h).or_default().push(s);
    t.all.push(s);
    s
}

/// Runs `f` over every series, in creation order. The table's lock is held only to copy the list
/// of series (pointers, at most the label cap plus the overflow stages): `f` runs without it, so a
/// host call that creates a new `(model, stage)` series never waits for a scrape or a tick's sum.
pub(crate) fn for_each(mut f: impl FnMut(&'static Series)) {
    // Readers (the agent's tick, scrapes) decide and calibrate the calls' clock, never the calls.
    crate::clock::tend();
    let all: Vec<&'static Series> = {
        let t = TABLE.read().unwrap_or_else(PoisonError::into_inner);
        t.as_ref().map(|t| t.all.clone()).unwrap_or_default()
    };
    for s in all {
        f(s);
    }
}

/// Process-wide totals over every series since start, for the agent's per-tick signals.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Totals {
    /// Completed, failed, cancelled or panicked calls (streamed generations included: one call each).
    pub calls: u64,
    /// Calls counted in `ai_inference_errors_total`.
    pub errors: u64,
    /// Anomalies per type, in [`AnomalyType::ALL`] order.
    pub anomalies: [u64; 6],
    /// Non-cumulative call counts per duration bucket ([`BUCKETS`], then `+Inf`), over the label sets
    /// that never streamed: a streamed generation lasts as long as its answer, so its duration is read
    /// by its time to first token and time per output token instead of mixing into the calls' latency.
    pub buckets: [u64; 16],
    /// Sum of call durations, seconds (the label sets of `buckets`).
    pub duration_seconds: f64,
    /// Streamed generations' time to first token, per bucket ([`crate::stream`]).
    pub first_token: [u64; 16],
    /// Streamed generations' time per output token, per bucket.
    pub per_output_token: [u64; 16],
    /// Output tokens of streamed generations.
    pub output_tokens: u64,
    /// Input tokens the host reported.
    pub input_tokens: u64,
    /// A stream ran under some label set since start.
    pub streamed: bool,
    /// Requests waiting in the host's queues now ([`crate::queue`]).
    pub queue_waiting: i64,
    /// Requests running after their queue now.
    pub queue_running: i64,
    /// Queue times, per bucket.
    pub queue_time: [u64; 16],
    /// A queue was made under some label set since start.
    pub queued: bool,
    /// HTTP and gRPC requests the HTTP layer measured (feature `http`): their time to the response
    /// head, per bucket (a streamed response's whole duration is its answer's length, not a latency).
    pub http_head: [u64; 16],
    /// Requests the layer counted as ended (the `http_server_request_duration_seconds` and
    /// `rpc_server_call_duration_seconds` counts).
    pub http_requests: u64,
    /// Of those, the failed ones (HTTP 5xx; gRPC UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED,
    /// INTERNAL, UNAVAILABLE, DATA_LOSS).
    pub http_errors: u64,
    /// The HTTP layer measured a request since start.
    pub http_served: bool,
}

/// Adds a histogram's bucket counts to `acc`.
pub(crate) fn add_buckets(acc: &mut [u64; SLOTS], h: &Histogram) {
    for (a, b) in acc.iter_mut().zip(&h.buckets) {
        *a += b.load(Relaxed);
    }
}

/// Sums every series (a copy of the series list, then relaxed loads); the crate root adds the HTTP
/// layer's counts.
pub(crate) fn totals() -> Totals {
    let mut t = Totals::default();
    let mut nanos: u64 = 0;
    for_each(|s| {
        // Each bucket read once: the calls count and the latency buckets agree.
        let mut calls = [0u64; SLOTS];
        add_buckets(&mut calls, &s.duration);
        t.calls += calls.iter().sum::<u64>();
        if s.generation.streamed.load(Relaxed) {
            t.streamed = true;
            let g = &s.generation;
            add_buckets(&mut t.first_token, &g.first_token);
            add_buckets(&mut t.per_output_token, &g.per_output_token);
            t.output_tokens += g.output_tokens.load(Relaxed);
            t.input_tokens += g.input_tokens.load(Relaxed);
        } else {
            for (acc, c) in t.buckets.iter_mut().zip(calls) {
                *acc += c;
            }
            nanos = nanos.wrapping_add(s.duration.sum_nanos.load(Relaxed));
        }
        if s.queue.used.load(Relaxed) {
            t.queued = true;
            let q = &s.queue;
            t.queue_waiting += q.waiting.load(Relaxed).max(0);
            t.queue_running += q.running.load(Relaxed).max(0);
            add_buckets(&mut t.queue_time, &q.time);
        }
        t.errors += s.errors.load(Relaxed);
        for (acc, a) in t.anomalies.iter_mut().zip(&s.anomalies) {
            *acc += a.load(Relaxed);
        }
    });
    t.duration_seconds = nanos as f64 / 1e9;
    t
}

#[cfg(test)]
mod lock_tests {
    use super::*;

    #[test]
    fn bucket_bounds_in_nanoseconds_are_the_published_ones() {
        for (n, b) in BUCKET_NANOS.iter().zip(BUCKETS) {
            assert_eq!(*n as f64 / 1e9, b);
        }
        assert_eq!(Histogram::bucket_of(0), 0);
        assert_eq!(
            Histogram::bucket_of(1_000_000),
            0,
            "le: a bound is inside its bucket"
        );
        assert_eq!(Histogram::bucket_of(1_000_001), 1);
        assert_eq!(Histogram::bucket_of(u64::MAX), BUCKETS.len());
    }

    #[test]
    fn the_per_thread_cache_gives_the_tables_series_and_stays_bounded() {
        let a = series_cached("cache-test-a", "predict");
        assert!(std::ptr::eq(a, series("cache-test-a", "predict")));
        // More label sets than the cache holds: each still maps to its own series, and old ones
        // come back from the table.
        let many: Vec<String> = (0..RECENT * 3).map(|i| format!("cache-test-{i}")).collect();
        for m in &many {
            let s = series_cached(m, "predict");
            assert_eq!(&*s.model, m.as_str());
            assert!(std::ptr::eq(s, series_cached(m, "predict")));
        }
        assert!(std::ptr::eq(a, series_cached("cache-test-a", "predict")));
        RECENTLY.with_borrow(|r| assert_eq!(r.entries.iter().flatten().count(), RECENT));
        // Same model, other stage: another series.
        let b = series_cached("cache-test-a", "rerank");
        assert!(!std::ptr::eq(a, b));
    }

    #[test]
    fn a_new_series_is_created_while_every_series_is_being_read() {
        let _ = series("lock-test", "before");
        let (tx, rx) = std::sync::mpsc::channel();
        let mut created = false;
        for_each(|_| {
            if created {
                return;
            }
            created = true;
            // Another thread (a host's request) creates a series while this one reads: with the
            // table locked for the whole walk it would wait until the walk ends, i.e. forever here.
            let tx = tx.clone();
            std::thread::spawn(move || {
                let s = series("lock-test", "during");
                let _ = tx.send(s.stage.to_string());
            });
            let got = rx.recv_timeout(std::time::Duration::from_secs(10));
            assert_eq!(got.ok().as_deref(), Some("during"));
        });
        assert!(created);
    }
}
