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

use crate::builder::ProbeGuard;
use crate::http::{self, HttpState};
use crate::{Error, Sampler};

/// How long shutdown waits for the agent thread before leaving it to finish on its own.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

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
        (limits, server_metrics): (crate::server::HttpLimits, crate::server::ServerMetrics),
    ) -> Result<Self, Error> {
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
        let state = Arc::new(HttpState {
            registry: registry.clone(),
            started: Instant::now(),
            last_tick_ms: AtomicU64::new(u64::MAX),
            ticks: AtomicU64::new(0),
            tick,
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (latest_tx, latest) = watch::channel(Arc::new(sampler.sample().clone()));
        let (features_tx, latest_features) = watch::channel(Arc::new(sampler.features().clone()));
        let schema = sampler.feature_schema().clone();
        let (score_tx, latest_score) = watch::channel(None);
        let (event_tx, latest_event) = watch::channel(None);
        let events = sampler.event_sender();
        // Capacity 1 and try_send: setting references faster than ticks keeps only what fits.
        let (references, references_rx) = std::sync::mpsc::sync_channel(1);
        let (done_tx, done) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("vigil-agent".into())
            .spawn(move || {
                crate::alloc::mark_agent_thread();
                runtime.block_on(async move {
                    let server = tokio::spawn(http::serve(
                        listener,
                        state.clone(),
                        limits,
                        server_metrics,
                        shutdown_rx.clone(),
                    ));
                    let outputs = Outputs {
                        samples: latest_tx,
                        features: features_tx,
                        scores: score_tx,
                        event: event_tx,
                        references: references_rx,
                    };
                    tick_loop(&mut sampler, tick, &outputs, &state, shutdown_rx).await;
                    let _ = server.await;
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
    /// features), [`crate::EventNotice::Closed`] when it ends. At most 64 are buffered for a receiver
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
        crate::sampler::check_reference(&self.schema, &reference)?;
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
    /// five seconds for the agent thread (it blocks the caller that long at most).
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(mut probe) = self.probe.take() {
            probe.0.stop();
        }
        if let (Some(done), Some(thread)) = (self.done.take(), self.thread.take()) {
            match done.recv_timeout(SHUTDOWN_GRACE) {
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
}

async fn tick_loop(
    sampler: &mut Sampler,
    tick: Duration,
    out: &Outputs,
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
    }
}
