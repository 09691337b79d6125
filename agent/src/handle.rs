//! The running agent: its thread, its shutdown, and what the host can read from it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use vigil_features::drift::DriftReference;
use vigil_features::{FeatureSchema, FeatureVector, Sample};
use vigil_models::{Event, Score};

use crate::http::{self, HttpState};
use crate::pipeline::collectors::sched::ProbeGuard;
use crate::{Error, Sampler};

/// The channels between the agent thread, the store thread (retrains) and the API: the model in use,
/// model controls (install, rollback) and the last retrain's outcome.
pub(crate) struct Wiring {
    pub(crate) model_tx: watch::Sender<Option<Arc<vigil_models::ModelFile>>>,
    pub(crate) model_rx: watch::Receiver<Option<Arc<vigil_models::ModelFile>>>,
    pub(crate) control_tx: std::sync::mpsc::SyncSender<crate::store::retrain::Control>,
    control_rx: std::sync::mpsc::Receiver<crate::store::retrain::Control>,
    pub(crate) retrain_tx: watch::Sender<Option<crate::store::retrain::LastRetrain>>,
    retrain_rx: watch::Receiver<Option<crate::store::retrain::LastRetrain>>,
    model_path: Option<std::path::PathBuf>,
    /// The store's sending side and thread, when the store is on.
    pub(crate) store: Option<(crate::store::StoreSink, crate::store::StoreThread)>,
    /// Who may use the write endpoints.
    pub(crate) access: Option<crate::http::access::WriteAccess>,
    /// The model file watcher, when `VIGIL_MODEL` is set.
    pub(crate) watch: Option<crate::store::model_watch::ModelWatch>,
    /// CPU profiles (on request and when events open).
    profiler: crate::profile::Profiler,
}

impl Wiring {
    pub(crate) fn new(
        sampler: &Sampler,
        model_path: Option<std::path::PathBuf>,
        profiler: crate::profile::Profiler,
    ) -> Self {
        let (model_tx, model_rx) = watch::channel(sampler.model().cloned());
        // Room for a promoted model and a few API requests; more are refused, not queued.
        let (control_tx, control_rx) = std::sync::mpsc::sync_channel(4);
        let (retrain_tx, retrain_rx) = watch::channel(None);
        Self {
            model_tx,
            model_rx,
            control_tx,
            control_rx,
            retrain_tx,
            retrain_rx,
            model_path,
            store: None,
            access: None,
            watch: None,
            profiler,
        }
    }
}

/// How long shutdown (or dropping the handle) waits in all for the agent's threads — the agent
/// thread, the scheduler probe, the model watcher, then the store thread writing what was queued —
/// before leaving the rest to finish on their own: one deadline for all of them, so a host's
/// shutdown is never held longer than this.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// The running agent. Dropping it stops the agent, like [`AgentHandle::shutdown`].
#[must_use = "dropping the AgentHandle stops the agent"]
pub struct AgentHandle {
    local_addr: SocketAddr,
    tick: Duration,
    registry: Arc<Registry>,
    latest: watch::Receiver<Arc<Sample>>,
    latest_features: watch::Receiver<Arc<FeatureVector>>,
    latest_score: watch::Receiver<Option<Score>>,
    latest_event: watch::Receiver<Option<Event>>,
    events: tokio::sync::broadcast::Sender<crate::EventNotice>,
    schema: FeatureSchema,
    references: std::sync::mpsc::SyncSender<DriftReference>,
    shutdown: watch::Sender<bool>,
    done: Option<std::sync::mpsc::Receiver<()>>,
    thread: Option<JoinHandle<()>>,
    probe: Option<ProbeGuard>,
    store: Option<crate::store::StoreThread>,
    watch: Option<crate::store::model_watch::ModelWatch>,
    /// The CPU profiler, to cut a running profile short at shutdown.
    profiler: crate::profile::Profiler,
}

impl std::fmt::Debug for AgentHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentHandle")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl AgentHandle {
    pub(crate) fn spawn(
        listener: std::net::TcpListener,
        tick: Duration,
        mut sampler: Sampler,
        registry: Arc<Registry>,
        probe: ProbeGuard,
        (limits, server_metrics): (
            crate::http::server::HttpLimits,
            crate::http::server::ServerMetrics,
        ),
        wiring: Wiring,
    ) -> Result<Self, Error> {
        let Wiring {
            model_tx,
            model_rx: latest_model,
            control_tx,
            control_rx,
            retrain_tx: _,
            retrain_rx,
            model_path,
            store,
            access,
            watch,
            profiler,
        } = wiring;
        let handle_profiler = profiler.clone();
        let access = access.unwrap_or_else(|| {
            crate::http::access::WriteAccess::new(crate::http::DEFAULT_LISTEN, None)
        });
        let (sink, store_thread) = match store {
            Some((s, t)) => (Some(s), Some(t)),
            None => (None, None),
        };
        let spawn_err = |what| move |source| Error::Spawn { what, source };
        let local_addr = listener.local_addr().map_err(spawn_err("HTTP listener"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(spawn_err("agent runtime"))?;
        let listener = {
            let _enter = runtime.enter();
            tokio::net::TcpListener::from_std(listener).map_err(spawn_err("HTTP listener"))?
        };
        let (score_tx, latest_score) = watch::channel(None);
        let (event_tx, latest_event) = watch::channel(None);
        let threads = store_thread
            .iter()
            .map(|t| t.heartbeat.clone())
            .chain(watch.iter().map(|w| w.heartbeat.clone()))
            .collect();
        let state = Arc::new(HttpState {
            threads,
            registry: registry.clone(),
            started: Instant::now(),
            last_tick_ms: AtomicU64::new(u64::MAX),
            ticks: AtomicU64::new(0),
            tick,
            exposition: http::Exposition::default(),
            api: Arc::new(crate::http::api::Api {
                store: sink.clone(),
                access,
                score: latest_score.clone(),
                event: latest_event.clone(),
                model: latest_model.clone(),
                drift_max_psi: sampler.drift_max_psi(),
                control: control_tx,
                model_path,
                retrain: retrain_rx,
                profiler: profiler.clone(),
            }),
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (latest_tx, latest) = watch::channel(Arc::new(sampler.sample().clone()));
        let (features_tx, latest_features) = watch::channel(Arc::new(sampler.features().clone()));
        let schema = sampler.feature_schema().clone();
        let events = sampler.event_sender();
        let notices = events.subscribe();
        // Capacity 1 and try_send: setting references faster than ticks keeps only what fits.
        let (references, references_rx) = std::sync::mpsc::sync_channel(1);
        let (done_tx, done) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("vigil-agent".into())
            .spawn(move || {
                crate::alloc::mark_agent_thread();
                runtime.block_on(async move {
                    let server = crate::threads::spawn_named(
                        &tokio::runtime::Handle::current(),
                        "vigil-http",
                        http::serve(
                            listener,
                            state.clone(),
                            limits,
                            server_metrics,
                            shutdown_rx.clone(),
                        ),
                    );
                    let mut outputs = Outputs {
                        samples: latest_tx,
                        features: features_tx,
                        scores: score_tx,
                        event: event_tx,
                        references: references_rx,
                        store: sink,
                        notices,
                        model: model_tx,
                        control: control_rx,
                        profiler,
                    };
                    tick_loop(&mut sampler, tick, &mut outputs, &state, shutdown_rx).await;
                    if let Some(server) = server {
                        let _ = server.await;
                    }
                });
                let _ = done_tx.send(());
            })
            .map_err(spawn_err("agent thread"))?;
        Ok(Self {
            local_addr,
            tick,
            registry,
            latest,
            latest_features,
            latest_score,
            latest_event,
            events,
            schema,
            references,
            shutdown,
            done: Some(done),
            thread: Some(thread),
            probe: Some(probe),
            store: store_thread,
            watch,
            profiler: handle_profiler,
        })
    }

    /// The address the HTTP endpoint listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// How often the agent ticks.
    pub fn tick(&self) -> Duration {
        self.tick
    }

    /// The most recent sample (all `NaN` before the first tick).
    pub fn latest_sample(&self) -> Arc<Sample> {
        self.latest.borrow().clone()
    }

    /// A receiver that changes once per tick, for hosts that want to follow samples as they come.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Sample>> {
        self.latest.clone()
    }

    /// The features of the most recent tick (all missing before the first).
    pub fn latest_features(&self) -> Arc<FeatureVector> {
        self.latest_features.borrow().clone()
    }

    /// A receiver that changes once per tick with that tick's features.
    pub fn subscribe_features(&self) -> watch::Receiver<Arc<FeatureVector>> {
        self.latest_features.clone()
    }

    /// The anomaly score of the most recent tick; `None` while the cold start warms up or trains.
    pub fn latest_score(&self) -> Option<Score> {
        self.latest_score.borrow().clone()
    }

    /// The anomaly event open now, if any (updated every tick).
    pub fn current_event(&self) -> Option<Event> {
        self.latest_event.borrow().clone()
    }

    /// Event notices from now on: [`crate::EventNotice::Opened`] when an event opens (type, top
    /// features), [`crate::EventNotice::Retyped`] when a stronger peak names another type,
    /// [`crate::EventNotice::Closed`] when it ends. At most 64 are buffered for a receiver
    /// that does not keep up; it then gets `RecvError::Lagged` and continues with the newest.
    pub fn subscribe_events(&self) -> tokio::sync::broadcast::Receiver<crate::EventNotice> {
        self.events.subscribe()
    }

    /// A receiver that changes once per tick with that tick's score.
    pub fn subscribe_scores(&self) -> watch::Receiver<Option<Score>> {
        self.latest_score.clone()
    }

    /// The agent's feature schema: names, units and the hash model files must match.
    pub fn feature_schema(&self) -> &FeatureSchema {
        &self.schema
    }

    /// Starts comparing live features with `reference` (fitted on [`AgentHandle::feature_schema`]) from
    /// the next tick; `vigil_feature_drift_psi{feature}` and `vigil_feature_drift_max_psi` follow. A
    /// reference for another schema is refused with an error saying so.
    pub fn set_drift_reference(&self, reference: DriftReference) -> Result<(), Error> {
        crate::pipeline::sampler::check_reference(&self.schema, &reference)?;
        self.references
            .try_send(reference)
            .map_err(|e| Error::Config {
                setting: "drift_reference",
                message: match e {
                    std::sync::mpsc::TrySendError::Full(_) => {
                        "a reference is already waiting for the next tick; try again after it"
                            .into()
                    }
                    std::sync::mpsc::TrySendError::Disconnected(_) => {
                        "the agent has stopped".into()
                    }
                },
            })
    }

    /// The current metrics in Prometheus text format 0.0.4, exactly what `GET /metrics` serves.
    pub fn metrics_text(&self) -> String {
        http::encode(&self.registry, false).unwrap_or_default()
    }

    /// Stops the agent: the tick loop ends, the HTTP endpoint closes, the probe thread exits. Waits up to
    /// one second (`SHUTDOWN_GRACE`) for the agent's threads, all of them together (it blocks the
    /// caller that long at most), then detaches what has not stopped, with a warning.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        let left = || deadline.saturating_duration_since(Instant::now());
        // A running CPU profile stops sampling first, so its requester gets a JSON 503 while the
        // HTTP endpoint drains (rather than a closed connection), and the host is not sampled on.
        self.profiler.cut_short();
        let _ = self.shutdown.send(true);
        if let Some(mut probe) = self.probe.take() {
            probe.0.stop_by(deadline);
        }
        if let Some(mut w) = self.watch.take() {
            w.stop_by(deadline);
        }
        if let (Some(done), Some(thread)) = (self.done.take(), self.thread.take()) {
            match done.recv_timeout(left()) {
                Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = thread.join();
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    tracing::warn!(
                        "vigil agent thread did not stop within {SHUTDOWN_GRACE:?}; detaching it"
                    );
                }
            }
        }
        // The agent thread held the last senders: the store thread writes what was queued and ends.
        if let Some(store) = self.store.take() {
            store.join(left());
        }
    }
}

impl Drop for AgentHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What the tick loop publishes and receives.
struct Outputs {
    samples: watch::Sender<Arc<Sample>>,
    features: watch::Sender<Arc<FeatureVector>>,
    scores: watch::Sender<Option<Score>>,
    event: watch::Sender<Option<Event>>,
    references: std::sync::mpsc::Receiver<DriftReference>,
    /// The store (ticks and events are queued to it); `None` when it is off.
    store: Option<crate::store::StoreSink>,
    /// The model in use (for `GET /api/v1/status`).
    model: watch::Sender<Option<Arc<vigil_models::ModelFile>>>,
    /// Model controls (a promoted retrain, reload, rollback), applied between ticks.
    control: std::sync::mpsc::Receiver<crate::store::retrain::Control>,
    /// Event notices, drained every tick for the store.
    notices: tokio::sync::broadcast::Receiver<crate::EventNotice>,
    /// Takes a CPU profile when an event opens.
    profiler: crate::profile::Profiler,
}

async fn tick_loop(
    sampler: &mut Sampler,
    tick: Duration,
    out: &mut Outputs,
    state: &HttpState,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        while let Ok(reference) = out.references.try_recv() {
            // Checked against the schema by the sender; a failure here cannot happen but is logged.
            if let Err(e) = sampler.set_drift_reference(reference) {
                tracing::warn!("drift reference refused: {e}");
            }
        }
        let sample = Arc::new(sampler.tick().clone());
        state.mark_tick();
        // Nobody may be listening; that is fine.
        out.samples.send_replace(sample);
        out.features
            .send_replace(Arc::new(sampler.features().clone()));
        out.scores.send_replace(sampler.score().cloned());
        let open = sampler.current_event();
        if out.event.borrow().as_ref() != open {
            out.event.send_replace(open.cloned());
        }
        while let Ok(c) = out.control.try_recv() {
            if let Some((m, outcome)) = sampler.control(c) {
                if let (Some(store), Some(outcome)) = (&out.store, outcome) {
                    store.model(m.clone(), outcome);
                }
                out.model.send_replace(Some(m));
            }
        }
        let model = sampler.model();
        let changed = match (out.model.borrow().as_ref(), model) {
            (Some(a), Some(b)) => !Arc::ptr_eq(a, b),
            (None, None) => false,
            _ => true,
        };
        if changed {
            if let (Some(store), Some(m)) = (&out.store, model) {
                store.model(m.clone(), "trained");
            }
            out.model.send_replace(model.cloned());
        }
        // Notices are drained every tick, store or not (a lagging receiver only loses old ones).
        while let Ok(notice) = out.notices.try_recv() {
            if let Some(store) = &out.store {
                if let crate::EventNotice::Opened(e) = &notice {
                    // Sampled on its own thread; stored with the event below once done.
                    out.profiler.on_event(e.id);
                }
                let (crate::EventNotice::Opened(e)
                | crate::EventNotice::Retyped(e)
                | crate::EventNotice::Closed(e)) = notice;
                store.write(vigil_store::Write::Event(e));
            }
        }
        if let Some(store) = &out.store {
            for p in out.profiler.take_finished() {
                store.write(vigil_store::Write::Profile(p));
            }
            store.write(sampler.tick_record());
        }
        state.exposition.published();
    }
}
