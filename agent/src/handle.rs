//! The running agent: its thread, its shutdown, and what the host can read from it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use vigil_features::Sample;

use crate::builder::ProbeGuard;
use crate::http::{self, HttpState};
use crate::{Error, Sampler};

/// How long shutdown waits for the agent thread before leaving it to finish on its own.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The running agent. Dropping it stops the agent, like [`AgentHandle::shutdown`].
#[must_use = "dropping the AgentHandle stops the agent"]
pub struct AgentHandle {
    local_addr: SocketAddr,
    registry: Arc<Registry>,
    latest: watch::Receiver<Arc<Sample>>,
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
        let (done_tx, done) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("vigil-agent".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let server =
                        tokio::spawn(http::serve(listener, state.clone(), shutdown_rx.clone()));
                    tick_loop(&mut sampler, tick, &latest_tx, &state, shutdown_rx).await;
                    let _ = server.await;
                });
                let _ = done_tx.send(());
            })
            .map_err(spawn_err("agent thread"))?;
        Ok(Self {
            local_addr,
            registry,
            latest,
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

    /// The most recent sample (all `NaN` before the first tick).
    pub fn latest_sample(&self) -> Arc<Sample> {
        self.latest.borrow().clone()
    }

    /// A receiver that changes once per tick, for hosts that want to follow samples as they come.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Sample>> {
        self.latest.clone()
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

async fn tick_loop(
    sampler: &mut Sampler,
    tick: Duration,
    latest: &watch::Sender<Arc<Sample>>,
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
        let sample = sampler.tick();
        state.mark_tick();
        // Nobody may be listening; that is fine.
        latest.send_replace(Arc::new(sample.clone()));
    }
}
