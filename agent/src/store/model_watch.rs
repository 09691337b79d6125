//! Model distribution: when `VIGIL_MODEL` names a file a fleet updates (a ConfigMap, a shared
//! volume), a small thread (`vigil-model-watch`) notices a new version (its modification time, size
//! or inode changed), reads and validates it off the agent's runtime, and hands it to the agent
//! thread, which swaps it in between two ticks. A file that cannot be read, is damaged or was trained
//! on another feature schema is refused and counted, and the model in use keeps serving.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::store::retrain::{Control, Promoted};

/// Default time between looks at the model file.
pub const DEFAULT_MODEL_POLL: Duration = Duration::from_secs(10);
/// A watcher that has not beaten for its poll interval and this long is stuck (`/healthz` says so).
const STUCK_AFTER: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// What identifies a version of the file.
type Version = (Option<SystemTime>, u64, u64);

fn version(path: &Path) -> Option<Version> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok(), m.len(), m.ino()))
}

/// The running watcher; [`ModelWatch::stop`] ends it.
pub(crate) struct ModelWatch {
    /// Beaten every 50 ms while it waits and after each look at the file.
    pub(crate) heartbeat: Arc<crate::threads::Heartbeat>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ModelWatch {
    /// Starts watching `path` every `every`, sending new valid versions through `control`.
    pub(crate) fn start(
        path: PathBuf,
        every: Duration,
        control: SyncSender<Control>,
        registry: &mut Registry,
    ) -> std::io::Result<Self> {
        let reloads = Family::<ResultLabel, Counter>::default();
        crate::metrics::MODEL_RELOADS.register(registry, reloads.clone());
        for result in ["ok", "refused"] {
            let _ = reloads.get_or_create(&ResultLabel { result });
        }
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        // Loading a model file (64 MiB at most) takes seconds at worst.
        let heartbeat = crate::threads::Heartbeat::new("vigil-model-watch", every + STUCK_AFTER);
        let beat = heartbeat.clone();
        let thread = std::thread::Builder::new()
            .name("vigil-model-watch".into())
            .spawn(move || {
                crate::alloc::mark_agent_thread();
                watch(&path, every, &control, &reloads, &s, &beat);
            })?;
        Ok(Self {
            heartbeat,
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread (it notices within 50 ms) and joins it.
    pub(crate) fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Stops the thread and joins it if it ends before `deadline` (reading a large model file may
    /// take longer; it then ends on its own).
    pub(crate) fn stop_by(&mut self, deadline: std::time::Instant) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            crate::threads::join_by(t, deadline, "model watch");
        }
    }
}

impl Drop for ModelWatch {
    fn drop(&mut self) {
        self.stop();
    }
}

fn watch(
    path: &Path,
    every: Duration,
    control: &SyncSender<Control>,
    reloads: &Family<ResultLabel, Counter>,
    stop: &AtomicBool,
    heartbeat: &crate::threads::Heartbeat,
) {
    let mut seen = version(path);
    let count = |result: &'static str| reloads.get_or_create(&ResultLabel { result }).inc();
    loop {
        // Sleep in short steps so shutdown is prompt.
        let mut slept = Duration::ZERO;
        while slept < every {
            heartbeat.beat();
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let step = Duration::from_millis(50).min(every - slept);
            std::thread::sleep(step);
            slept += step;
        }
        let now = version(path);
        if now.is_none() || now == seen {
            // A file that went away (mid-replacement) is looked at again next time.
            continue;
        }
        seen = now;
        let model = match vigil_models::ModelFile::load_regular(path) {
            Ok(m) => m,
            Err(e) => {
                count("refused");
                tracing::warn!(
                    "VIGIL_MODEL={} changed but cannot be used, the model in use keeps serving: {e}",
                    path.display()
                );
                continue;
            }
        };
        let (reply, rx) = tokio::sync::oneshot::channel();
        let promoted = Box::new(Promoted {
            model,
            labelled: Vec::new(),
            own: false,
        });
        if control
            .send(Control::Install(promoted, Some(reply)))
            .is_err()
        {
            return; // the agent has stopped
        }
        match rx.blocking_recv() {
            Ok(Ok(message)) => {
                count("ok");
                tracing::info!("VIGIL_MODEL={} reloaded: {message}", path.display());
            }
            Ok(Err(e)) => {
                count("refused");
                tracing::warn!(
                    "VIGIL_MODEL={} changed but was refused, the model in use keeps serving: {e}",
                    path.display()
                );
            }
            Err(_) => return,
        }
    }
}
