//! Helpers the agent's own threads share: their priority, how they start and stop, and their sign of
//! life. A module of its own so that the folders that run threads (pipeline, store, http, profile)
//! need none of each other for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, sync_channel};
use std::time::{Duration, Instant};

/// A long-lived thread's sign of life: it beats at least once per loop turn; one that has not beaten
/// for `limit` is stuck (blocked in a call that does not return: a hung disk, a path that blocks in
/// `open`), and `/healthz` answers 503 naming it.
#[derive(Debug)]
pub(crate) struct Heartbeat {
    pub(crate) name: &'static str,
    limit: Duration,
    epoch: Instant,
    /// Milliseconds after `epoch` of the last beat.
    last_ms: AtomicU64,
}

impl Heartbeat {
    pub(crate) fn new(name: &'static str, limit: Duration) -> Arc<Self> {
        Arc::new(Self {
            name,
            limit,
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
        })
    }

    pub(crate) fn beat(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// How long since the last beat, when that is longer than the limit.
    pub(crate) fn stuck_for(&self) -> Option<Duration> {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let age = Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)));
        (age > self.limit).then_some(age)
    }
}

/// Lowers the calling thread to the lowest CPU priority (nice 19), so a fit never competes with the
/// host's workers for a core. On Linux a nice value is per thread; elsewhere, and when the OS refuses,
/// the thread keeps its priority.
pub(crate) fn lowest_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority with `who = 0` only changes the calling thread's nice value; it reads
        // and writes no memory of ours.
        let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
        if r != 0 {
            tracing::debug!("the training thread keeps its priority: setpriority failed");
        }
    }
}

/// Runs `work` on a new thread named `name` at the lowest CPU priority, inside a private one-thread
/// rayon pool (`{name}-pool`), as an agent thread (its allocations are the agent's); its result comes
/// back on the returned channel and the thread ends.
pub(crate) fn spawn_low_priority<T: Send + 'static>(
    name: &'static str,
    work: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<(std::thread::JoinHandle<()>, Receiver<T>)> {
    let (tx, rx) = sync_channel(1);
    let handle = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            crate::alloc::mark_agent_thread();
            lowest_priority();
            let result = match rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .thread_name(move |_| format!("{name}-pool"))
                .start_handler(|_| {
                    crate::alloc::mark_agent_thread();
                    lowest_priority();
                })
                .build()
            {
                Ok(pool) => pool.install(work),
                Err(e) => {
                    tracing::warn!("no private pool for {name} ({e}); running on this thread");
                    work()
                }
            };
            // A fit's temporaries (tens of MB for a retrain on the store's windows) are freed by
            // now; glibc keeps such pages (its trim threshold rises with every large free), and a
            // host's resident memory would climb a step with each fit. Handed back here, on this
            // low-priority thread.
            release_free_memory();
            let _ = tx.send(result);
        })?;
    Ok((handle, rx))
}

/// Hands the allocator's free pages back to the system (glibc's `malloc_trim`, which walks every
/// arena; with another allocator this does nothing, and that allocator's own policy applies). Called
/// after work that frees a lot at once: a fit, a flood of connections.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) fn release_free_memory() {
    // SAFETY: malloc_trim only walks glibc's own arenas; it takes no pointers and is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn release_free_memory() {}

/// Spawns `task` on `runtime` as a task named `name` (`vigil-…`), so that in `tokio-console` and
/// tokio's task traces a host's operator tells the agent's tasks from the host's own. Tokio names
/// tasks only in its task traces (`--cfg tokio_unstable` and its `tracing` feature, which the
/// `console` feature turns on); otherwise the task is spawned unnamed. `None` when the runtime is
/// shutting down (the task would not run anyway).
pub(crate) fn spawn_named<F>(
    runtime: &tokio::runtime::Handle,
    name: &'static str,
    task: F,
) -> Option<tokio::task::JoinHandle<F::Output>>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    #[cfg(all(tokio_unstable, feature = "console"))]
    {
        tokio::task::Builder::new()
            .name(name)
            .spawn_on(task, runtime)
            .ok()
    }
    #[cfg(not(all(tokio_unstable, feature = "console")))]
    {
        let _ = name;
        Some(runtime.spawn(task))
    }
}

/// Joins `thread` if it ends before `deadline`; detaches it otherwise (it was told to stop and ends on
/// its own).
pub(crate) fn join_by(thread: std::thread::JoinHandle<()>, deadline: Instant, what: &str) {
    while !thread.is_finished() {
        if Instant::now() >= deadline {
            tracing::warn!("vigil {what} thread did not stop in time; detaching it");
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = thread.join();
}

/// Task names are visible only where tokio traces its tasks: this runs in CI's `tokio_unstable` build
/// with the `console` feature (`.ci/run`).
#[cfg(all(test, tokio_unstable, feature = "console"))]
mod named_tasks {
    use std::sync::{Arc, Mutex};
    use tracing::field::{Field, Visit};
    use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

    /// Records the `task.name` field of every span opened.
    #[derive(Clone, Default)]
    struct Names(Arc<Mutex<Vec<String>>>);

    struct NameOf<'a>(&'a mut Option<String>);

    impl Visit for NameOf<'_> {
        fn record_str(&mut self, field: &Field, value: &str) {
            if field.name() == "task.name" {
                *self.0 = Some(value.to_owned());
            }
        }
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            if field.name() == "task.name" {
                *self.0 = Some(format!("{value:?}").trim_matches('"').to_owned());
            }
        }
    }

    impl<S: tracing::Subscriber> Layer<S> for Names {
        fn on_new_span(
            &self,
            attrs: &tracing::span::Attributes<'_>,
            _: &tracing::span::Id,
            _: Context<'_, S>,
        ) {
            let mut name = None;
            attrs.record(&mut NameOf(&mut name));
            if let (Some(n), Ok(mut all)) = (name, self.0.lock()) {
                all.push(n);
            }
        }
    }

    #[test]
    fn the_agent_s_tasks_carry_their_names() -> Result<(), Box<dyn std::error::Error>> {
        let names = Names::default();
        let subscriber = tracing_subscriber::registry().with(names.clone());
        let _guard = tracing::subscriber::set_default(subscriber);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = super::spawn_named(rt.handle(), "vigil-test-task", async { 7 })
            .ok_or("the runtime refused the task")?;
        assert_eq!(rt.block_on(handle)?, 7);
        let seen = names.0.lock().map_err(|e| e.to_string())?.clone();
        assert!(
            seen.iter().any(|n| n == "vigil-test-task"),
            "task names seen: {seen:?}"
        );
        Ok(())
    }
}
