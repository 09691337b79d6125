//! `Agent::builder()`: sets the fields of a [`Config`]; [`AgentBuilder::start`] (in `start.rs`)
//! checks it once and starts the agent.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use vigil_gpu::{GpuMode, GpuSource};

use crate::Error;
use crate::config::settings::{CheckedConfig, Config};
use vigil_features::Horizons;
use vigil_features::drift::DriftReference;

/// Entry point: `vigil::Agent::builder()`.
#[derive(Debug)]
pub struct Agent;

impl Agent {
    /// A builder with the defaults ([`Config::default`]): listen on `127.0.0.1:9464`, tick every
    /// second, GPU `auto`, a scheduler probe every 100 ms (a quarter of the tick for ticks below
    /// 400 ms), stalls above 100 ms.
    pub fn builder() -> AgentBuilder {
        AgentBuilder::default()
    }

    /// A builder that starts from these settings (e.g. [`Config::from_env`] changed in code).
    pub fn with_config(config: Config) -> AgentBuilder {
        AgentBuilder {
            config,
            ..AgentBuilder::default()
        }
    }
}

/// Consuming builder for the agent. Each setter sets one field of its [`Config`] (documented there
/// and in `docs/CONFIG.md`) and nothing else; [`AgentBuilder::start`] validates them all at once
/// ([`Config::check`]), so a bad value is an error from `start` naming the setting, or the variable
/// it came from.
#[must_use = "an AgentBuilder does nothing until `.start(&handle)` is called"]
#[derive(Default)]
pub struct AgentBuilder {
    pub(crate) config: Config,
    pub(crate) gpu_source: Option<Box<dyn GpuSource>>,
    pub(crate) drift_reference: Option<DriftReference>,
}

impl std::fmt::Debug for AgentBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentBuilder")
            .field("config", &self.config)
            .field("gpu_source", &self.gpu_source.as_ref().map(|s| s.kind()))
            .field("drift_reference", &self.drift_reference.is_some())
            .finish()
    }
}

impl AgentBuilder {
    /// The settings so far (not checked yet).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Replaces every setting with `config` (the GPU source and drift reference stay).
    pub fn with_config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Checks the settings so far ([`Config::check`]): what [`AgentBuilder::start`] would start with.
    pub fn check(&self) -> Result<CheckedConfig, Error> {
        self.config.clone().check()
    }

    /// [`Config::listen`].
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.config.listen = addr;
        self
    }

    /// [`Config::tick`].
    pub fn tick(mut self, tick: Duration) -> Self {
        self.config.tick = tick;
        self
    }

    /// [`Config::gpu`].
    pub fn gpu(mut self, mode: GpuMode) -> Self {
        self.config.gpu = mode;
        self
    }

    /// Uses this GPU source instead of the one [`Config::gpu`] would open (a scripted
    /// [`vigil_gpu::FakeGpu`] in tests and fault-injection runs).
    pub fn gpu_source(mut self, source: impl GpuSource + 'static) -> Self {
        self.gpu_source = Some(Box::new(source));
        self
    }

    /// [`Config::probe_interval`].
    pub fn probe_interval(mut self, interval: Duration) -> Self {
        self.config.probe_interval = Some(interval);
        self
    }

    /// [`Config::stall_threshold`].
    pub fn stall_threshold(mut self, threshold: Duration) -> Self {
        self.config.stall_threshold = threshold;
        self
    }

    /// [`Config::horizons`].
    pub fn horizons(mut self, horizons: Horizons) -> Self {
        self.config.horizons = horizons;
        self
    }

    /// [`Config::feature_metrics`].
    pub fn feature_metrics(mut self, on: bool) -> Self {
        self.config.feature_metrics = on;
        self
    }

    /// [`Config::drift_window`].
    pub fn drift_window(mut self, ticks: usize) -> Self {
        self.config.drift_window = ticks;
        self
    }

    /// Start with this drift reference (fitted on this agent's feature schema; `start` fails otherwise).
    /// It can also be set later with [`AgentHandle::set_drift_reference`].
    pub fn drift_reference(mut self, reference: DriftReference) -> Self {
        self.drift_reference = Some(reference);
        self
    }

    /// [`Config::model_path`]: `start` fails when the file cannot be read, is damaged, or was trained
    /// on another feature schema.
    pub fn model_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.model_path = Some(path.into());
        self
    }

    /// [`Config::warm_up`].
    pub fn warm_up(mut self, warm_up: Duration) -> Self {
        self.config.warm_up = warm_up;
        self
    }

    /// [`Config::refit_interval`] (windows inside or just before anomaly events are never used; early
    /// on the model is also refitted each time its history has doubled; a model from
    /// [`AgentBuilder::model_path`] is never refitted).
    pub fn refit_interval(mut self, every: Option<Duration>) -> Self {
        self.config.refit_interval = every;
        self
    }

    /// [`Config::false_events_per_day`]: the false-event budget the alarm level spends.
    pub fn false_events_per_day(mut self, n: f64) -> Self {
        self.config.false_events_per_day = n;
        self
    }

    /// [`Config::data_dir`].
    pub fn data_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.config.data_dir = dir;
        self
    }

    /// [`Config::retention_age`] and [`Config::retention_size`]: ticks and events older than
    /// `max_age` are deleted, and the oldest ticks while the store uses more than `max_bytes`;
    /// labels are never deleted.
    pub fn retention(mut self, max_age: Duration, max_bytes: u64) -> Self {
        self.config.retention_age = max_age;
        self.config.retention_size = max_bytes;
        self
    }

    /// [`Config::model_poll`]: a new version of the model file is validated and swapped in (a
    /// refused one is counted and the model in use keeps serving).
    pub fn model_poll(mut self, every: Option<Duration>) -> Self {
        self.config.model_poll = every;
        self
    }

    /// [`Config::retrain_interval`]: the result is promoted only when it does at least as well as
    /// the model in use on the newest windows. Needs the store.
    pub fn retrain_interval(mut self, every: Option<Duration>) -> Self {
        self.config.retrain_interval = every;
        self
    }

    /// [`Config::profile_on_event`] and [`Config::profile_cooldown`]: the profile is kept in the
    /// store with the event (`GET /api/v1/events/{id}/profile`); none is taken while another profile
    /// runs. Needs the store and a build with CPU profiles ([`crate::profiling_available`]).
    pub fn event_profiles(mut self, length: Option<Duration>, cooldown: Duration) -> Self {
        self.config.profile_on_event = length;
        self.config.profile_cooldown = cooldown;
        self
    }

    /// [`Config::token`]. Without one, an agent bound off loopback with the store on does not start.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.config.token = Some(token.into());
        self
    }

    /// [`Config::label_confidence_human`] and [`Config::label_confidence_alertmanager`].
    pub fn label_confidence(mut self, human: f64, alertmanager: f64) -> Self {
        self.config.label_confidence_human = human;
        self.config.label_confidence_alertmanager = alertmanager;
        self
    }

    /// [`Config::http_max_connections`]. At the cap, a new connection closes the one that has waited
    /// longest for a request.
    pub fn http_max_connections(mut self, n: usize) -> Self {
        self.config.http_max_connections = n;
        self
    }

    /// [`Config::http_idle_timeout`] (header-read and keep-alive idle timeout in one).
    pub fn http_idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.http_idle_timeout = timeout;
        self
    }

    /// Applies the `VIGIL_*` environment variables that are set ([`Config::apply_env`]): call it first
    /// and override in code afterwards. A value that does not parse is an [`Error::Env`] naming the
    /// variable and what it accepts; one out of range is, from `start`.
    pub fn from_env(mut self) -> Result<Self, Error> {
        self.config = self.config.apply_env()?;
        Ok(self)
    }

    /// [`AgentBuilder::from_env`] over any lookup function (for tests and config layers).
    pub fn from_lookup(
        mut self,
        lookup: impl Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Result<Self, Error> {
        self.config = self.config.apply_lookup(lookup)?;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setters_only_set_fields_and_start_checks_them_once() {
        // A setter takes any value; the one validation step refuses it, naming the setting.
        let b = Agent::builder()
            .tick(Duration::from_secs(7200))
            .data_dir(None);
        assert_eq!(b.config().tick, Duration::from_secs(7200));
        let err = b.check().unwrap_err();
        assert!(err.to_string().contains("tick"), "{err}");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let err = b.start(rt.handle()).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Config {
                    setting: "tick",
                    ..
                }
            ),
            "{err:?}"
        );
        // A whole config, changed in code, starts a builder.
        let config = Config {
            probe_interval: Some(Duration::from_millis(5)),
            ..Config::default()
        };
        let b = Agent::with_config(config);
        assert_eq!(
            b.check().unwrap().resolved_probe_interval(),
            Duration::from_millis(5)
        );
    }
}
