//! The agent's side of the local store: one thread (`vigil-store`) owns the SQLite connection and
//! serves every read and write as a command from a bounded channel. The tick only ever `try_send`s (a
//! slow disk drops ticks, counted, and never stalls the tick or grows memory); HTTP handlers send and
//! await the reply without blocking the agent's runtime; a full queue answers 503.

pub(crate) mod model_watch;
pub(crate) mod retrain;

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::sync::oneshot;
use vigil_models::labels::LabelSource;
use vigil_store::{
    AlertOutcome, LabelQuery, NewLabel, ProfileRecord, Store, StoreError, StoredEvent, StoredLabel,
    StoredModel, Verdict, Webhook, Write,
};

use crate::metrics::{self, FGauge};

/// Commands waiting for the store thread at most (ticks, events, API requests).
pub(crate) const STORE_QUEUE: usize = 4096;
/// Commands the store thread takes into one transaction at most.
const BATCH: usize = 512;
/// How often retention runs.
const RETENTION_EVERY: Duration = Duration::from_secs(60);
/// Rows deleted per retention transaction.
const RETENTION_CHUNK: usize = 5000;

/// Where and how much the agent stores.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoreConfig {
    /// The data directory (`VIGIL_DATA_DIR`, default `./vigil-data`).
    pub dir: PathBuf,
    /// Ticks and events older than this are deleted (`VIGIL_RETENTION_AGE`, default 7 days).
    pub max_age: Duration,
    /// The oldest ticks are deleted while the store uses more (`VIGIL_RETENTION_SIZE`, default 512 MiB).
    pub max_bytes: u64,
    /// Default label confidences.
    pub confidence: vigil_store::Confidence,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("vigil-data"),
            max_age: Duration::from_secs(7 * 86_400),
            max_bytes: 512 << 20,
            confidence: vigil_store::Confidence::default(),
        }
    }
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// What the store thread does, one command at a time (consecutive writes in one transaction).
pub(crate) enum Command {
    Write(Write),
    AddLabel(NewLabel, Reply<StoredLabel>),
    Verdict {
        id: u64,
        verdict: Verdict,
        note: Option<String>,
        reply: Reply<Option<StoredLabel>>,
    },
    Webhook(Webhook, Reply<AlertOutcome>),
    Labels(LabelQuery, Reply<Vec<StoredLabel>>),
    Events {
        from: f64,
        to: f64,
        limit: usize,
        reply: Reply<Vec<StoredEvent>>,
    },
    Summary(Reply<Summary>),
    /// The CPU profile kept with an event.
    Profile(u64, Reply<Option<ProfileRecord>>),
    /// A model the agent installed (`outcome`: `trained`, `loaded`), kept in the model history.
    Model(std::sync::Arc<vigil_models::ModelFile>, &'static str),
    /// Starts a retrain now (`POST /api/v1/model/retrain`).
    RetrainNow(Reply<String>),
    /// Reads and checks a model file (a reload), off the agent's runtime.
    LoadModel(PathBuf, Reply<vigil_models::ModelFile>),
}

/// Label counts, size and model history for `GET /api/v1/status`.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Summary {
    pub(crate) labels: std::collections::BTreeMap<String, u64>,
    pub(crate) bytes: u64,
    pub(crate) ticks: u64,
    pub(crate) events: u64,
    pub(crate) models: Vec<StoredModel>,
    /// The integrity check the store thread runs before anything else: `ok` or `damaged: <why>`
    /// (requests wait for it).
    pub(crate) check: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct WhatLabel {
    what: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SourceLabel {
    source: &'static str,
}

impl SourceLabel {
    /// Bounded label values: every name a CSV might give is `other`.
    fn of(source: &LabelSource) -> Self {
        Self {
            source: match source {
                LabelSource::Human => "human",
                LabelSource::Alertmanager => "alertmanager",
                LabelSource::Other(_) => "other",
            },
        }
    }
}

/// The store's metrics.
#[derive(Clone)]
pub(crate) struct StoreMetrics {
    dropped: Family<WhatLabel, Counter>,
    errors: Counter,
    bytes: FGauge,
    labels: Family<SourceLabel, Counter>,
}

impl StoreMetrics {
    pub(crate) fn new(registry: &mut Registry) -> Self {
        let m = Self {
            dropped: Family::default(),
            errors: Counter::default(),
            bytes: FGauge::default(),
            labels: Family::default(),
        };
        metrics::STORE_DROPPED.register(registry, m.dropped.clone());
        metrics::STORE_ERRORS.register(registry, m.errors.clone());
        metrics::STORE_BYTES.register(registry, m.bytes.clone());
        metrics::LABELS.register(registry, m.labels.clone());
        for what in ["tick", "event", "profile", "model", "request"] {
            let _ = m.dropped.get_or_create(&WhatLabel { what });
        }
        for source in [LabelSource::Human, LabelSource::Alertmanager] {
            let _ = m.labels.get_or_create(&SourceLabel::of(&source));
        }
        m.bytes.set(f64::NAN);
        m
    }
}

/// The sending side: cloned into the tick loop and the HTTP state.
#[derive(Clone)]
pub(crate) struct StoreSink {
    tx: SyncSender<Command>,
    metrics: StoreMetrics,
    pub(crate) confidence: vigil_store::Confidence,
}

/// Why a request could not reach the store.
#[derive(Debug)]
pub(crate) enum Unavailable {
    /// The queue is full (the disk is slow): retry.
    Busy,
    /// The store thread has stopped.
    Stopped,
}

impl StoreSink {
    /// Queues a tick or event write; a full queue drops it (counted).
    pub(crate) fn write(&self, w: Write) {
        let what = match &w {
            Write::Tick(_) => "tick",
            Write::Event(_) => "event",
            Write::Profile(_) => "profile",
        };
        if self.tx.try_send(Command::Write(w)).is_err() {
            self.metrics
                .dropped
                .get_or_create(&WhatLabel { what })
                .inc();
        }
    }

    /// Records an installed model in the history (dropped, counted, when the queue is full).
    pub(crate) fn model(&self, m: std::sync::Arc<vigil_models::ModelFile>, outcome: &'static str) {
        if self.tx.try_send(Command::Model(m, outcome)).is_err() {
            self.metrics
                .dropped
                .get_or_create(&WhatLabel { what: "model" })
                .inc();
        }
    }

    /// Sends a request and waits for its reply without blocking the runtime.
    pub(crate) async fn ask<T>(
        &self,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<Result<T, StoreError>, Unavailable> {
        let (reply, rx) = oneshot::channel();
        match self.tx.try_send(make(reply)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.metrics
                    .dropped
                    .get_or_create(&WhatLabel { what: "request" })
                    .inc();
                return Err(Unavailable::Busy);
            }
            Err(TrySendError::Disconnected(_)) => return Err(Unavailable::Stopped),
        }
        rx.await.map_err(|_| Unavailable::Stopped)
    }

    pub(crate) fn count_labels(&self, source: &LabelSource, n: usize) {
        self.metrics
            .labels
            .get_or_create(&SourceLabel::of(source))
            .inc_by(n as u64);
    }
}

/// The running store thread; dropping every [`StoreSink`] ends it after it wrote what was queued.
pub(crate) struct StoreThread {
    thread: JoinHandle<()>,
    done: Receiver<()>,
    /// Beaten once per loop turn (at least every [`IDLE_WAKE`]).
    pub(crate) heartbeat: std::sync::Arc<crate::threads::Heartbeat>,
}

impl StoreThread {
    /// Waits up to `grace` for the thread to write what was queued and end (every sink must be
    /// dropped first); detaches it after that.
    pub(crate) fn join(self, grace: Duration) {
        match self.done.recv_timeout(grace) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                let _ = self.thread.join();
            }
            Err(RecvTimeoutError::Timeout) => {
                tracing::warn!("vigil store thread did not finish within {grace:?}; detaching it");
            }
        }
    }
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// An exclusive lock on the data directory for the life of the store thread: one agent per
/// directory (two would interleave ticks and reuse event ids).
pub(crate) struct DirLock {
    _file: std::fs::File,
}

fn lock(dir: &Path) -> Result<DirLock, StoreError> {
    use std::os::fd::AsRawFd;
    std::fs::create_dir_all(dir).map_err(|e| StoreError::Io {
        path: dir.to_owned(),
        message: format!("cannot create the data directory: {e}"),
    })?;
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::Io {
            path: path.clone(),
            message: format!("cannot open the lock file: {e}"),
        })?;
    // SAFETY: flock on a descriptor this function owns; no memory is passed.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(StoreError::Io {
            path,
            message: "another process is using this data directory (one agent per directory)"
                .into(),
        });
    }
    Ok(DirLock { _file: file })
}

/// Locks and opens the store (start-up: errors come back to the builder) and returns it with the
/// largest event id stored, so new events continue the numbering.
pub(crate) fn open(cfg: &StoreConfig) -> Result<(Store, DirLock, u64), StoreError> {
    let lock = lock(&cfg.dir)?;
    // The integrity check reads the whole file: it runs on the store thread (see `run`).
    let store = Store::open_unchecked(&cfg.dir)?;
    let max = store.max_event_id()?;
    Ok((store, lock, max))
}

/// Starts the store thread over an opened store.
pub(crate) fn spawn(
    (mut store, lock): (Store, DirLock),
    cfg: StoreConfig,
    schema: vigil_store::SchemaInfo,
    metrics: StoreMetrics,
    mut retrainer: Option<crate::store::retrain::Retrainer>,
) -> Result<(StoreSink, StoreThread), std::io::Error> {
    if let Err(e) = store.register_schema(&schema) {
        tracing::warn!("store: cannot record the feature schema: {e}");
        metrics.errors.inc();
    }
    let (tx, rx) = std::sync::mpsc::sync_channel(STORE_QUEUE);
    let (done_tx, done) = std::sync::mpsc::sync_channel(1);
    let m = metrics.clone();
    let confidence = cfg.confidence;
    let heartbeat = crate::threads::Heartbeat::new("vigil-store", STUCK_AFTER);
    let beat = heartbeat.clone();
    let thread = std::thread::Builder::new()
        .name("vigil-store".into())
        .spawn(move || {
            crate::alloc::mark_agent_thread();
            run(store, &cfg, &rx, &m, retrainer.as_mut(), &beat);
            drop(lock);
            let _ = done_tx.send(());
        })?;
    Ok((
        StoreSink {
            tx,
            metrics,
            confidence,
        },
        StoreThread {
            thread,
            done,
            heartbeat,
        },
    ))
}

/// How often the store thread wakes up without commands (to collect a retrain, run retention).
const IDLE_WAKE: Duration = Duration::from_secs(1);
/// A store thread that has not come round its loop for this long is stuck (`/healthz` says so): a
/// batch of writes or a retention chunk takes milliseconds, a request at most seconds.
const STUCK_AFTER: Duration = Duration::from_secs(60);

fn run(
    mut store: Store,
    cfg: &StoreConfig,
    rx: &Receiver<Command>,
    m: &StoreMetrics,
    mut retrainer: Option<&mut crate::store::retrain::Retrainer>,
    heartbeat: &crate::threads::Heartbeat,
) {
    let mut last_retention: Option<Instant> = None;
    let mut writes: Vec<Write> = Vec::with_capacity(BATCH);
    let mut logged_error = None::<Instant>;
    let mut fail = |e: &StoreError, what: &str| {
        m.errors.inc();
        // At most one log line a minute: a failing disk must not flood the host's logs.
        if logged_error.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
            tracing::warn!("store: {what} failed: {e}");
            logged_error = Some(Instant::now());
        }
    };
    // The integrity check (the whole file; seconds for hundreds of MiB) runs here rather than on
    // the host's thread in `start`. A damaged store is reported (log, vigil_store_errors_total,
    // `GET /api/v1/status`) and the agent goes on: each write that fails is counted as any is.
    heartbeat.beat();
    let checking = Instant::now();
    let check = match store.quick_check() {
        Ok(()) => {
            tracing::info!(
                seconds = checking.elapsed().as_secs_f64(),
                "store: integrity check ok"
            );
            "ok".to_owned()
        }
        Err(e) => {
            m.errors.inc();
            tracing::error!("store: {e}");
            format!("damaged: {e}")
        }
    };
    loop {
        heartbeat.beat();
        if last_retention.is_none_or(|t| t.elapsed() >= RETENTION_EVERY) {
            match store.enforce_retention(
                now_unix(),
                cfg.max_age.as_secs_f64(),
                cfg.max_bytes,
                RETENTION_CHUNK,
            ) {
                Ok(p) if p.ticks + p.events + p.models + p.profiles > 0 => {
                    tracing::info!(
                        ticks = p.ticks,
                        events = p.events,
                        models = p.models,
                        profiles = p.profiles,
                        "store: retention deleted old rows"
                    );
                }
                Ok(_) => {}
                Err(e) => fail(&e, "retention"),
            }
            match store.used_bytes() {
                Ok(b) => {
                    m.bytes.set(b as f64);
                }
                Err(e) => fail(&e, "size check"),
            }
            last_retention = Some(Instant::now());
        }
        if let Some(r) = retrainer.as_deref_mut() {
            r.poll(&mut store);
        }
        let first = match rx.recv_timeout(IDLE_WAKE) {
            Ok(c) => c,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(cmd) = next.take() {
            taken += 1;
            match cmd {
                Command::Write(w) => writes.push(w),
                other => {
                    // Keep order: what was queued before a request is written before it is served.
                    flush(&mut store, &mut writes, &mut fail);
                    serve(&mut store, other, cfg, retrainer.as_deref_mut(), &check);
                }
            }
            if taken < BATCH {
                next = rx.try_recv().ok();
            }
        }
        flush(&mut store, &mut writes, &mut fail);
    }
}

fn flush(store: &mut Store, writes: &mut Vec<Write>, fail: &mut impl FnMut(&StoreError, &str)) {
    if writes.is_empty() {
        return;
    }
    if let Err(e) = store.write_batch(writes) {
        fail(&e, "writing ticks, events and profiles");
    }
    writes.clear();
}

/// Serves one request; stored labels make a retrain due soon.
fn serve(
    store: &mut Store,
    cmd: Command,
    cfg: &StoreConfig,
    mut retrainer: Option<&mut crate::store::retrain::Retrainer>,
    check: &str,
) {
    let now = now_unix();
    let mut labels_stored = false;
    // A reply nobody waits for any more (the client went away) is dropped.
    match cmd {
        Command::Write(_) => {}
        Command::AddLabel(l, reply) => {
            let r = store.add_label(&l, now);
            labels_stored = r.is_ok();
            let _ = reply.send(r);
        }
        Command::Verdict {
            id,
            verdict,
            note,
            reply,
        } => {
            let r = store.verdict(id, verdict, note, cfg.confidence.human, now);
            labels_stored = matches!(r, Ok(Some(_)));
            let _ = reply.send(r);
        }
        Command::Webhook(hook, reply) => {
            let r = store.apply_webhook(&hook, cfg.confidence.alertmanager, now);
            labels_stored = r.as_ref().is_ok_and(|o| o.opened + o.closed > 0);
            let _ = reply.send(r);
        }
        Command::RetrainNow(reply) => {
            let message = match retrainer.as_deref_mut() {
                Some(r) => r.request_now(),
                None => "retraining is off",
            };
            let _ = reply.send(Ok(message.to_owned()));
        }
        Command::LoadModel(path, reply) => {
            let r = vigil_models::ModelFile::load_regular(&path)
                .map_err(|e| StoreError::Invalid(format!("{}: {e}", path.display())));
            let _ = reply.send(r);
        }
        Command::Labels(q, reply) => {
            let _ = reply.send(store.labels(&q));
        }
        Command::Profile(id, reply) => {
            let _ = reply.send(store.profile(id));
        }
        Command::Events {
            from,
            to,
            limit,
            reply,
        } => {
            let _ = reply.send(store.events(from, to, limit));
        }
        Command::Model(m, outcome) => {
            let figures = serde_json::json!({
                "rows": m.summary.rows,
                "raw_threshold": m.detector.threshold,
                "kind": m.kind,
                "schema_hash": m.schema_hash,
            });
            let r = m
                .to_json()
                .map_err(|e| StoreError::Invalid(e.to_string()))
                .and_then(|json| {
                    store.add_model(
                        m.created_unix_seconds,
                        outcome,
                        &m.summary.notes.join("; "),
                        &figures,
                        &json,
                    )
                });
            if let Err(e) = r {
                tracing::warn!("store: cannot record the installed model: {e}");
            }
        }
        Command::Summary(reply) => {
            let r = (|| {
                let stats = store.stats()?;
                Ok(Summary {
                    labels: store.label_counts()?.into_iter().collect(),
                    bytes: stats.bytes,
                    ticks: stats.ticks,
                    events: stats.events,
                    models: store.models(5)?,
                    check: check.to_owned(),
                })
            })();
            let _ = reply.send(r);
        }
    }
    if labels_stored && let Some(r) = retrainer {
        r.labels_arrived();
    }
}

/// The data directory as the builder resolves it: `off` disables the store.
pub(crate) fn parse_data_dir(s: &str) -> Option<PathBuf> {
    let t = s.trim();
    (!t.eq_ignore_ascii_case("off")).then(|| Path::new(t).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(t: f64) -> Write {
        Write::Tick(vigil_store::TickRecord {
            t,
            schema: "0".into(),
            sample: vec![1.0],
            features: None,
            score: None,
            raw: None,
            event_id: None,
        })
    }

    #[tokio::test]
    async fn a_stuck_store_drops_ticks_and_refuses_requests_without_waiting() {
        let mut registry = Registry::default();
        let metrics = StoreMetrics::new(&mut registry);
        // A store thread that never takes anything (a disk that hangs): the queue holds 2.
        let (tx, _rx) = std::sync::mpsc::sync_channel(2);
        let sink = StoreSink {
            tx,
            metrics: metrics.clone(),
            confidence: vigil_store::Confidence::default(),
        };
        let started = Instant::now();
        for i in 0..10 {
            sink.write(tick(f64::from(i)));
        }
        let r = sink
            .ask(|reply| Command::Labels(LabelQuery::default(), reply))
            .await;
        assert!(matches!(r, Err(Unavailable::Busy)));
        // Nothing waited on the disk, and every dropped write is counted.
        assert!(started.elapsed() < Duration::from_secs(1));
        let dropped = |what: &'static str| metrics.dropped.get_or_create(&WhatLabel { what }).get();
        assert_eq!(dropped("tick"), 8);
        assert_eq!(dropped("request"), 1);
    }

    #[test]
    fn the_data_directory_is_locked_to_one_agent() {
        let dir = std::env::temp_dir().join(format!("vigil-lock-{}", std::process::id()));
        let first = lock(&dir).unwrap();
        let e = lock(&dir).err().unwrap().to_string();
        assert!(e.contains("another process"), "{e}");
        drop(first);
        assert!(lock(&dir).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn off_disables_the_store() {
        assert_eq!(parse_data_dir(" OFF "), None);
        assert_eq!(
            parse_data_dir("/var/lib/vigil"),
            Some(PathBuf::from("/var/lib/vigil"))
        );
    }
}
