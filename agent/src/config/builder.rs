//! `Agent::builder()`: configuration with documented defaults, environment variables, and start-up.

use crate::http::DEFAULT_LISTEN;
use crate::pipeline::collectors::sched::ProbeGuard;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::runtime::Handle;
use vigil_gpu::{GpuMode, GpuSource};

use crate::config::duration::{DURATION_SYNTAX, parse_duration};
use crate::http::server::HttpLimits;
use crate::pipeline::collectors::{
    AllocCollector, Collector, GpuCollector, InferenceCollector, ProbeConfig, ProcessCollector,
    RuntimeCollector, SchedCollector,
};
use crate::pipeline::features::FeatureConfig;
use crate::store::StoreConfig;
use crate::{AgentHandle, Error, Sampler};
use vigil_features::Horizons;
use vigil_features::drift::DriftReference;

/// Default tick.
pub const DEFAULT_TICK: Duration = Duration::from_secs(1);
/// Default pause between scheduler probes (10 probes per tick at the default tick). With a tick shorter
/// than 400 ms the default is a quarter of the tick instead, so every tick still sees a few probes.
/// Measured with `vigil bench overhead` (docs/BENCHMARKS.md): 25 ms cost the host about 2 % of its p99
/// latency, 100 ms nothing measurable.
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_millis(100);
/// Default cold-start warm-up before the first model is trained.
pub const DEFAULT_WARM_UP: Duration = Duration::from_secs(300);
/// Default interval between refits of the agent's own model on its recent windows.
pub const DEFAULT_REFIT_INTERVAL: Duration = Duration::from_secs(3600);
/// Default false-alarm budget: anomaly events per day that the threshold allows on normal behaviour.
pub const DEFAULT_FALSE_EVENTS_PER_DAY: f64 = 1.0;
/// Default drift window, ticks.
pub const DEFAULT_DRIFT_WINDOW: usize = 300;
/// Default stall threshold.
pub const DEFAULT_STALL_THRESHOLD: Duration = Duration::from_millis(100);

const TICK_RANGE: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(3600));
const PROBE_RANGE: (Duration, Duration) = (Duration::from_millis(1), Duration::from_secs(60));
const STALL_RANGE: (Duration, Duration) = (Duration::from_millis(1), Duration::from_secs(60));
const WARM_UP_RANGE: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(86_400));
const REFIT_RANGE: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(7 * 86_400));
/// Windows of history kept for refits at least (more when the warm-up is longer).
const HISTORY_WINDOWS: usize = 2000;
/// Warm-up windows at most (memory: windows × features × 8 bytes).
const MAX_WARM_UP_WINDOWS: usize = 20_000;
const HTTP_IDLE_RANGE: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(3600));
const HTTP_CONNECTIONS_RANGE: (usize, usize) = (1, 65_536);
const MODEL_POLL_RANGE: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(3600));
const RETRAIN_RANGE: (Duration, Duration) =
    (Duration::from_secs(60), Duration::from_secs(7 * 86_400));
const RETENTION_AGE_RANGE: (Duration, Duration) =
    (Duration::from_secs(3600), Duration::from_secs(365 * 86_400));
/// Smallest store size accepted (one hour of ticks at 1 s fits in a few MiB).
const MIN_RETENTION_BYTES: u64 = 16 << 20;
/// The largest store size accepted (1 PiB): a bigger number is a typo, not a disk.
const MAX_RETENTION_BYTES: u64 = 1 << 50;

/// Entry point: `vigil::Agent::builder()`.
#[derive(Debug)]
pub struct Agent;

impl Agent {
    /// A builder with the defaults: listen on `127.0.0.1:9464`, tick every second, GPU `auto`, a
    /// scheduler probe every 100 ms (a quarter of the tick for ticks below 400 ms), stalls above 100 ms.
    pub fn builder() -> AgentBuilder {
        AgentBuilder::default()
    }
}

/// Consuming builder for the agent. Every setter has a documented default; setters that validate return
/// `Result`. See `docs/CONFIG.md` for the environment variables [`AgentBuilder::from_env`] reads.
#[must_use = "an AgentBuilder does nothing until `.start(&handle)` is called"]
pub struct AgentBuilder {
    listen: SocketAddr,
    tick: Duration,
    gpu: GpuMode,
    gpu_source: Option<Box<dyn GpuSource>>,
    probe: ProbeConfig,
    features: FeatureConfig,
    drift_reference: Option<DriftReference>,
    model_path: Option<std::path::PathBuf>,
    /// True when `model_path` came from `VIGIL_MODEL` (errors name the variable).
    model_from_env: bool,
    warm_up: Duration,
    refit_interval: Option<Duration>,
    false_events_per_day: f64,
    http: HttpLimits,
    /// False while the probe interval is the default (then it follows the tick).
    probe_interval_set: bool,
    /// The local store; `None` = off (no store, no API).
    store: Option<StoreConfig>,
    /// Bearer token for write endpoints off loopback (`VIGIL_TOKEN`).
    token: Option<String>,
    /// Time between retrains on stored windows and labels; `None` = only after new labels.
    retrain_interval: Option<Duration>,
    /// Time between looks at the `model_path` file for a new version; `None` = never.
    model_poll: Option<Duration>,
    /// CPU profiles taken when events open.
    event_profiles: crate::profile::EventProfiles,
}

impl std::fmt::Debug for AgentBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentBuilder")
            .field("listen", &self.listen)
            .field("tick", &self.tick)
            .field("gpu", &self.gpu)
            .field("gpu_source", &self.gpu_source.as_ref().map(|s| s.kind()))
            .field("probe", &self.probe)
            .field("features", &self.features)
            .field("drift_reference", &self.drift_reference.is_some())
            .field("model_path", &self.model_path)
            .field("model_from_env", &self.model_from_env)
            .field("warm_up", &self.warm_up)
            .field("refit_interval", &self.refit_interval)
            .field("false_events_per_day", &self.false_events_per_day)
            .field("http", &self.http)
            .field("probe_interval_set", &self.probe_interval_set)
            .field("store", &self.store)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("retrain_interval", &self.retrain_interval)
            .field("model_poll", &self.model_poll)
            .field("event_profiles", &self.event_profiles)
            .finish()
    }
}

impl Default for AgentBuilder {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN,
            tick: DEFAULT_TICK,
            gpu: GpuMode::Auto,
            gpu_source: None,
            probe: ProbeConfig {
                interval: DEFAULT_PROBE_INTERVAL,
                stall_threshold: DEFAULT_STALL_THRESHOLD,
            },
            features: FeatureConfig {
                horizons: Horizons::default(),
                export_values: true,
                drift_window: DEFAULT_DRIFT_WINDOW,
            },
            drift_reference: None,
            model_path: None,
            model_from_env: false,
            warm_up: DEFAULT_WARM_UP,
            refit_interval: Some(DEFAULT_REFIT_INTERVAL),
            false_events_per_day: DEFAULT_FALSE_EVENTS_PER_DAY,
            http: HttpLimits::default(),
            probe_interval_set: false,
            store: Some(StoreConfig::default()),
            token: None,
            retrain_interval: Some(crate::store::retrain::DEFAULT_RETRAIN_INTERVAL),
            model_poll: Some(crate::store::model_watch::DEFAULT_MODEL_POLL),
            event_profiles: crate::profile::EventProfiles::default(),
        }
    }
}

/// The probe interval when none is set: [`DEFAULT_PROBE_INTERVAL`], or a quarter of a shorter tick.
fn default_probe_interval(tick: Duration) -> Duration {
    DEFAULT_PROBE_INTERVAL.min(tick / 4).max(PROBE_RANGE.0)
}

/// A duration as the `VIGIL_*` variables write it (the largest unit that divides it: `1d`, `2h`,
/// `10m`, `30s`, `250ms`, `100us`, else nanoseconds); [`crate::parse_duration`] reads it back exactly.
fn format_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    for (unit, size) in [
        ("d", 86_400_000_000_000u128),
        ("h", 3_600_000_000_000),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
    ] {
        if ns > 0 && ns.is_multiple_of(size) {
            return format!("{}{unit}", ns / size);
        }
    }
    format!("{ns}ns")
}

fn check_range(
    setting: &'static str,
    d: Duration,
    (lo, hi): (Duration, Duration),
) -> Result<Duration, Error> {
    if d < lo || d > hi {
        return Err(Error::Config {
            setting,
            message: format!("{d:?} is outside the accepted range {lo:?} to {hi:?}"),
        });
    }
    Ok(d)
}

impl AgentBuilder {
    /// Address of the HTTP endpoint (`/metrics`, `/healthz`). Default `127.0.0.1:9464`; port 0 picks a free
    /// port ([`AgentHandle::local_addr`] tells which).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// How often the agent samples. Default 1 s; accepted 10 ms to 1 h.
    pub fn tick(mut self, tick: Duration) -> Result<Self, Error> {
        self.tick = check_range("tick", tick, TICK_RANGE)?;
        Ok(self)
    }

    /// How to find GPUs. Default [`GpuMode::Auto`].
    pub fn gpu(mut self, mode: GpuMode) -> Self {
        self.gpu = mode;
        self
    }

    /// Uses this GPU source instead of the one [`AgentBuilder::gpu`] would open (a scripted
    /// [`vigil_gpu::FakeGpu`] in tests and fault-injection runs).
    pub fn gpu_source(mut self, source: impl GpuSource + 'static) -> Self {
        self.gpu_source = Some(Box::new(source));
        self
    }

    /// Pause between scheduler probes. Default 100 ms (10 tiny tasks a second), or a quarter of the tick
    /// when the tick is shorter than 400 ms; accepted 1 ms to 60 s.
    pub fn probe_interval(mut self, interval: Duration) -> Result<Self, Error> {
        self.probe.interval = check_range("probe_interval", interval, PROBE_RANGE)?;
        self.probe_interval_set = true;
        Ok(self)
    }

    /// A probe not polled within this time counts as a stall. Default 100 ms; accepted 1 ms to 60 s.
    pub fn stall_threshold(mut self, threshold: Duration) -> Result<Self, Error> {
        self.probe.stall_threshold = check_range("stall_threshold", threshold, STALL_RANGE)?;
        Ok(self)
    }

    /// Short and long feature horizons in ticks. Default 10 and 60 (the window keeps the long horizon).
    pub fn horizons(mut self, horizons: Horizons) -> Self {
        self.features.horizons = horizons;
        self
    }

    /// Export every feature as `vigil_feature_value{feature}` (about ten series per signal). Default on.
    pub fn feature_metrics(mut self, on: bool) -> Self {
        self.features.export_values = on;
        self
    }

    /// Live feature vectors the drift monitor compares with the reference. Default 300 ticks; accepted
    /// 10 to 100,000.
    pub fn drift_window(mut self, ticks: usize) -> Result<Self, Error> {
        if !(10..=100_000).contains(&ticks) {
            return Err(Error::Config {
                setting: "drift_window",
                message: format!("{ticks} ticks is outside the accepted range 10 to 100000"),
            });
        }
        self.features.drift_window = ticks;
        Ok(self)
    }

    /// Start with this drift reference (fitted on this agent's feature schema; `start` fails otherwise).
    /// It can also be set later with [`AgentHandle::set_drift_reference`].
    pub fn drift_reference(mut self, reference: DriftReference) -> Self {
        self.drift_reference = Some(reference);
        self
    }

    /// Score with this model file (from `vigil train`) from the first tick instead of a cold start. `start`
    /// fails when it cannot be read, is damaged, or was trained on another feature schema.
    pub fn model_path(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.model_path = Some(path.into());
        self.model_from_env = false;
        self
    }

    /// Cold start: how long to collect windows before training the first model on its own thread.
    /// Default 5 minutes; accepted 1 s to 24 h (at least 50 windows are collected whatever the tick).
    pub fn warm_up(mut self, warm_up: Duration) -> Result<Self, Error> {
        self.warm_up = check_range("warm_up", warm_up, WARM_UP_RANGE)?;
        Ok(self)
    }

    /// How often the agent refits its own model on its recent windows (windows inside or just before
    /// anomaly events are never used), or `None` for never. Default 1 hour; accepted 1 s to 7 days.
    /// Early on the model is also refitted each time its history has doubled. A model from
    /// [`AgentBuilder::model_path`] is never refitted.
    pub fn refit_interval(mut self, every: Option<Duration>) -> Result<Self, Error> {
        self.refit_interval = match every {
            Some(d) => Some(check_range("refit_interval", d, REFIT_RANGE)?),
            None => None,
        };
        Ok(self)
    }

    /// False anomaly events per day the detector's threshold allows on normal behaviour (it is
    /// calibrated on windows held out of each fit). Default 1; accepted 0.001 to 1,000.
    pub fn false_events_per_day(mut self, n: f64) -> Result<Self, Error> {
        if !(0.001..=1000.0).contains(&n) {
            return Err(Error::Config {
                setting: "false_events_per_day",
                message: format!("{n} is outside the accepted range 0.001 to 1000"),
            });
        }
        self.false_events_per_day = n;
        Ok(self)
    }

    /// Where the local store lives (windows, scores, events, labels, model history), or `None` to
    /// run without it (and without the labels/events API). Default `./vigil-data`.
    pub fn data_dir(mut self, dir: Option<std::path::PathBuf>) -> Self {
        self.store = dir.map(|dir| StoreConfig {
            dir,
            ..self.store.take().unwrap_or_default()
        });
        self
    }

    /// Store retention: ticks and events older than `max_age` are deleted, and the oldest ticks while
    /// the store uses more than `max_bytes`; labels are never deleted. Defaults 7 days and 512 MiB;
    /// accepted 1 h to 365 days and 16 MiB to 1 PiB.
    pub fn retention(mut self, max_age: Duration, max_bytes: u64) -> Result<Self, Error> {
        let max_age = check_range("retention_age", max_age, RETENTION_AGE_RANGE)?;
        if !(MIN_RETENTION_BYTES..=MAX_RETENTION_BYTES).contains(&max_bytes) {
            return Err(Error::Config {
                setting: "retention_size",
                message: format!("{max_bytes} bytes is outside 16 MiB to 1 PiB"),
            });
        }
        if let Some(s) = &mut self.store {
            s.max_age = max_age;
            s.max_bytes = max_bytes;
        }
        Ok(self)
    }

    /// How often the agent looks at its model file ([`AgentBuilder::model_path`], `VIGIL_MODEL`) for a
    /// new version, which it validates and swaps in (a refused one is counted and the model in use
    /// keeps serving); `None` = never. Default 10 s; accepted 100 ms to 1 h.
    pub fn model_poll(mut self, every: Option<Duration>) -> Result<Self, Error> {
        self.model_poll = match every {
            Some(d) => Some(check_range("model_poll", d, MODEL_POLL_RANGE)?),
            None => None,
        };
        Ok(self)
    }

    /// How often the agent retrains on its stored windows and labels, promoting the result only when
    /// it does at least as well as the model in use on the newest windows; `None` = only when new
    /// labels arrive. Default 1 hour; accepted 1 min to 7 days. Needs the store.
    pub fn retrain_interval(mut self, every: Option<Duration>) -> Result<Self, Error> {
        self.retrain_interval = match every {
            Some(d) => Some(check_range("retrain_interval", d, RETRAIN_RANGE)?),
            None => None,
        };
        Ok(self)
    }

    /// The CPU profile taken when an event opens: its `length` (`None` = never; default 10 s, accepted
    /// 1 s to 60 s) and the least time between two of them (`cooldown`, default 10 min). The profile is
    /// kept in the store with the event (`GET /api/v1/events/{id}/profile`); none is taken while
    /// another profile runs. Needs the store and a build with CPU profiles
    /// ([`crate::profiling_available`]).
    pub fn event_profiles(
        mut self,
        length: Option<Duration>,
        cooldown: Duration,
    ) -> Result<Self, Error> {
        self.event_profiles = crate::profile::EventProfiles {
            length: match length {
                Some(d) => Some(check_range(
                    "event_profiles",
                    d,
                    crate::profile::EVENT_PROFILE_RANGE,
                )?),
                None => None,
            },
            cooldown: check_range(
                "event_profiles cooldown",
                cooldown,
                crate::profile::COOLDOWN_RANGE,
            )?,
        };
        Ok(self)
    }

    /// The bearer token write endpoints require when the agent listens off loopback. Without one, an
    /// agent bound off loopback with the store on does not start.
    pub fn token(mut self, token: impl Into<String>) -> Result<Self, Error> {
        let t: String = token.into();
        if t.trim().len() < 16 || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::Config {
                setting: "token",
                message: "a token needs at least 16 characters and no whitespace".into(),
            });
        }
        self.token = Some(t);
        Ok(self)
    }

    /// Default confidence of labels from people and from Alertmanager (0.95 and 0.65), each 0 to 1.
    pub fn label_confidence(mut self, human: f64, alertmanager: f64) -> Result<Self, Error> {
        for (name, v) in [("human", human), ("alertmanager", alertmanager)] {
            if !(0.0..=1.0).contains(&v) {
                return Err(Error::Config {
                    setting: "label_confidence",
                    message: format!("{name} confidence {v} is not between 0 and 1"),
                });
            }
        }
        if let Some(s) = &mut self.store {
            s.confidence = vigil_store::Confidence {
                human,
                alertmanager,
            };
        }
        Ok(self)
    }

    /// The settings this builder starts with, as `(variable, value)` in the names and syntax of the
    /// `VIGIL_*` variables (docs/CONFIG.md; each value parses back to itself), whether they came from
    /// the environment, a setter or the default; the token is shown as `<set>`, never its value.
    /// [`AgentBuilder::start`] logs them once, on one line.
    pub fn effective_settings(&self) -> Vec<(&'static str, String)> {
        let d = |d: Duration| format_duration(d);
        let opt = |o: Option<Duration>| o.map_or_else(|| "off".to_owned(), format_duration);
        let probe = if self.probe_interval_set {
            self.probe.interval
        } else {
            default_probe_interval(self.tick)
        };
        let gpu = match &self.gpu_source {
            Some(s) => format!("{} (a source the host set)", s.kind()),
            None => self.gpu.as_str().to_owned(),
        };
        let store = self.store.as_ref();
        let confidence = store.map_or_else(vigil_store::Confidence::default, |c| c.confidence);
        vec![
            ("VIGIL_LISTEN", self.listen.to_string()),
            ("VIGIL_TICK", d(self.tick)),
            ("VIGIL_GPU", gpu),
            ("VIGIL_PROBE_INTERVAL", d(probe)),
            ("VIGIL_STALL_THRESHOLD", d(self.probe.stall_threshold)),
            (
                "VIGIL_FEATURE_METRICS",
                if self.features.export_values {
                    "on"
                } else {
                    "off"
                }
                .to_owned(),
            ),
            ("VIGIL_WARMUP", d(self.warm_up)),
            ("VIGIL_REFIT_INTERVAL", opt(self.refit_interval)),
            (
                "VIGIL_FALSE_EVENTS_PER_DAY",
                self.false_events_per_day.to_string(),
            ),
            (
                "VIGIL_MODEL",
                self.model_path
                    .as_ref()
                    .map_or_else(|| "(none)".to_owned(), |p| p.display().to_string()),
            ),
            ("VIGIL_MODEL_POLL", opt(self.model_poll)),
            (
                "VIGIL_DATA_DIR",
                store.map_or_else(|| "off".to_owned(), |c| c.dir.display().to_string()),
            ),
            (
                "VIGIL_RETENTION_AGE",
                store.map_or_else(|| "-".to_owned(), |c| d(c.max_age)),
            ),
            (
                "VIGIL_RETENTION_SIZE",
                store.map_or_else(|| "-".to_owned(), |c| c.max_bytes.to_string()),
            ),
            ("VIGIL_RETRAIN_INTERVAL", opt(self.retrain_interval)),
            ("VIGIL_LABEL_CONFIDENCE_HUMAN", confidence.human.to_string()),
            (
                "VIGIL_LABEL_CONFIDENCE_ALERTMANAGER",
                confidence.alertmanager.to_string(),
            ),
            (
                "VIGIL_TOKEN",
                if self.token.is_some() {
                    "<set>"
                } else {
                    "(none)"
                }
                .to_owned(),
            ),
            ("VIGIL_PROFILE_ON_EVENT", opt(self.event_profiles.length)),
            ("VIGIL_PROFILE_COOLDOWN", d(self.event_profiles.cooldown)),
            (
                "VIGIL_HTTP_MAX_CONNECTIONS",
                self.http.max_connections.to_string(),
            ),
            ("VIGIL_HTTP_IDLE_TIMEOUT", d(self.http.idle_timeout)),
        ]
    }

    /// The engine settings this builder gives (tick, horizons, warm-up in windows, refits, budget):
    /// what `vigil score` needs to replay a recording exactly as this agent scored it live.
    pub fn engine_config(&self) -> vigil_models::EngineConfig {
        let tick = self.tick.as_secs_f64();
        let warm_up_windows =
            ((self.warm_up.as_secs_f64() / tick).ceil() as usize).clamp(50, MAX_WARM_UP_WINDOWS);
        vigil_models::EngineConfig {
            horizons: self.features.horizons,
            tick_seconds: tick,
            warm_up_windows,
            refit_every: self
                .refit_interval
                .map_or(0, |d| ((d.as_secs_f64() / tick).ceil() as usize).max(1)),
            history_windows: HISTORY_WINDOWS.max(warm_up_windows),
            false_events_per_day: self.false_events_per_day,
            ..vigil_models::EngineConfig::default()
        }
    }

    /// Most connections the HTTP endpoint keeps open at once. Default 256; accepted 1 to 65,536. At the
    /// cap, a new connection closes the one that has waited longest for a request.
    pub fn http_max_connections(mut self, n: usize) -> Result<Self, Error> {
        let (lo, hi) = HTTP_CONNECTIONS_RANGE;
        if !(lo..=hi).contains(&n) {
            return Err(Error::Config {
                setting: "http_max_connections",
                message: format!("{n} is outside the accepted range {lo} to {hi}"),
            });
        }
        self.http.max_connections = n;
        Ok(self)
    }

    /// How long an HTTP connection may take to send a complete request head, counted from its opening or
    /// its previous response (header-read and keep-alive idle timeout in one). Default 30 s; accepted
    /// 100 ms to 1 h.
    pub fn http_idle_timeout(mut self, timeout: Duration) -> Result<Self, Error> {
        self.http.idle_timeout = check_range("http_idle_timeout", timeout, HTTP_IDLE_RANGE)?;
        Ok(self)
    }

    /// Applies the `VIGIL_*` environment variables that are set (see `docs/CONFIG.md`). An empty variable
    /// counts as unset. A bad value is an [`Error::Env`] naming the variable and what it accepts.
    pub fn from_env(self) -> Result<Self, Error> {
        // A misspelt variable would be ignored silently: say so once, with the closest known name.
        let keys: Vec<String> = std::env::vars_os()
            .filter_map(|(k, _)| k.into_string().ok())
            .collect();
        for (unknown, closest) in unknown_vars(keys.iter().map(String::as_str)) {
            tracing::warn!(
                "{unknown} is set but is not a Vigil setting and is ignored; did you mean {closest}? \
                 (docs/CONFIG.md lists them)"
            );
        }
        self.from_lookup(|var| std::env::var_os(var))
    }

    /// [`AgentBuilder::from_env`] over any lookup function (for tests and config layers).
    pub fn from_lookup(
        mut self,
        lookup: impl Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Result<Self, Error> {
        let get = |var: &'static str| -> Result<Option<String>, Error> {
            match lookup(var) {
                None => Ok(None),
                Some(v) => match v.into_string() {
                    Ok(s) if s.trim().is_empty() => Ok(None),
                    Ok(s) => Ok(Some(s)),
                    Err(raw) => Err(Error::Env {
                        var,
                        value: raw.to_string_lossy().into_owned(),
                        expected: "valid UTF-8",
                    }),
                },
            }
        };
        let duration = |var: &'static str, s: String| {
            parse_duration(&s).ok_or(Error::Env {
                var,
                value: s,
                expected: DURATION_SYNTAX,
            })
        };
        // Range errors from env values also name the variable.
        let in_range =
            |var: &'static str, value: String, d: Duration, range: (Duration, Duration)| {
                check_range(var, d, range).map_err(|_| Error::Env {
                    var,
                    value,
                    expected: match var {
                        "VIGIL_TICK" => "a duration from 10ms to 1h",
                        "VIGIL_WARMUP" => "a duration from 1s to 24h",
                        "VIGIL_REFIT_INTERVAL" => "off or a duration from 1s to 7d",
                        "VIGIL_HTTP_IDLE_TIMEOUT" => "a duration from 100ms to 1h",
                        "VIGIL_MODEL_POLL" => "off or a duration from 100ms to 1h",
                        "VIGIL_RETRAIN_INTERVAL" => "off or a duration from 1m to 7d",
                        "VIGIL_PROFILE_ON_EVENT" => "off or a duration from 1s to 60s",
                        "VIGIL_PROFILE_COOLDOWN" => "a duration from 0s to 7d",
                        _ => "a duration from 1ms to 60s",
                    },
                })
            };
        // `off`, or a duration in range.
        let off_or = |var: &'static str, s: String, range: (Duration, Duration)| {
            if s.trim().eq_ignore_ascii_case("off") {
                return Ok(None);
            }
            let d = duration(var, s.clone())?;
            in_range(var, s, d, range).map(Some)
        };
        if let Some(s) = get("VIGIL_LISTEN")? {
            self.listen = s.trim().parse().map_err(|_| Error::Env {
                var: "VIGIL_LISTEN",
                value: s.clone(),
                expected: "an IP address and port such as 127.0.0.1:9464 or [::1]:9464",
            })?;
        }
        if let Some(s) = get("VIGIL_TICK")? {
            let d = duration("VIGIL_TICK", s.clone())?;
            self.tick = in_range("VIGIL_TICK", s, d, TICK_RANGE)?;
        }
        if let Some(s) = get("VIGIL_GPU")? {
            self.gpu = GpuMode::parse(&s).ok_or(Error::Env {
                var: "VIGIL_GPU",
                value: s,
                expected: "auto, off or nvml",
            })?;
        }
        if let Some(s) = get("VIGIL_PROBE_INTERVAL")? {
            let d = duration("VIGIL_PROBE_INTERVAL", s.clone())?;
            self.probe.interval = in_range("VIGIL_PROBE_INTERVAL", s, d, PROBE_RANGE)?;
            self.probe_interval_set = true;
        }
        if let Some(s) = get("VIGIL_STALL_THRESHOLD")? {
            let d = duration("VIGIL_STALL_THRESHOLD", s.clone())?;
            self.probe.stall_threshold = in_range("VIGIL_STALL_THRESHOLD", s, d, STALL_RANGE)?;
        }
        if let Some(s) = get("VIGIL_MODEL")? {
            self.model_path = Some(std::path::PathBuf::from(s));
            self.model_from_env = true;
        }
        if let Some(s) = get("VIGIL_HTTP_IDLE_TIMEOUT")? {
            let d = duration("VIGIL_HTTP_IDLE_TIMEOUT", s.clone())?;
            self.http.idle_timeout = in_range("VIGIL_HTTP_IDLE_TIMEOUT", s, d, HTTP_IDLE_RANGE)?;
        }
        if let Some(s) = get("VIGIL_HTTP_MAX_CONNECTIONS")? {
            let (lo, hi) = HTTP_CONNECTIONS_RANGE;
            self.http.max_connections = s
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| (lo..=hi).contains(n))
                .ok_or(Error::Env {
                    var: "VIGIL_HTTP_MAX_CONNECTIONS",
                    value: s,
                    expected: "a whole number from 1 to 65536",
                })?;
        }
        if let Some(s) = get("VIGIL_WARMUP")? {
            let d = duration("VIGIL_WARMUP", s.clone())?;
            self.warm_up = in_range("VIGIL_WARMUP", s, d, WARM_UP_RANGE)?;
        }
        if let Some(s) = get("VIGIL_REFIT_INTERVAL")? {
            self.refit_interval = off_or("VIGIL_REFIT_INTERVAL", s, REFIT_RANGE)?;
        }
        if let Some(s) = get("VIGIL_FALSE_EVENTS_PER_DAY")? {
            self.false_events_per_day = s
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|n| (0.001..=1000.0).contains(n))
                .ok_or(Error::Env {
                    var: "VIGIL_FALSE_EVENTS_PER_DAY",
                    value: s,
                    expected: "a number from 0.001 to 1000",
                })?;
        }
        if let Some(s) = get("VIGIL_DATA_DIR")? {
            self = self.data_dir(crate::store::parse_data_dir(&s));
        }
        if let Some(s) = get("VIGIL_RETENTION_AGE")? {
            let d = duration("VIGIL_RETENTION_AGE", s.clone())?;
            let d = check_range("VIGIL_RETENTION_AGE", d, RETENTION_AGE_RANGE).map_err(|_| {
                Error::Env {
                    var: "VIGIL_RETENTION_AGE",
                    value: s,
                    expected: "a duration from 1h to 365d",
                }
            })?;
            if let Some(st) = &mut self.store {
                st.max_age = d;
            }
        }
        if let Some(s) = get("VIGIL_RETENTION_SIZE")? {
            let b = crate::config::duration::parse_bytes(&s)
                .filter(|b| (MIN_RETENTION_BYTES..=MAX_RETENTION_BYTES).contains(b))
                .ok_or(Error::Env {
                    var: "VIGIL_RETENTION_SIZE",
                    value: s,
                    expected: "a size from 16MiB to 1PiB, e.g. 512MiB or 2GiB",
                })?;
            if let Some(st) = &mut self.store {
                st.max_bytes = b;
            }
        }
        if let Some(s) = get("VIGIL_MODEL_POLL")? {
            self.model_poll = off_or("VIGIL_MODEL_POLL", s, MODEL_POLL_RANGE)?;
        }
        if let Some(s) = get("VIGIL_RETRAIN_INTERVAL")? {
            self.retrain_interval = off_or("VIGIL_RETRAIN_INTERVAL", s, RETRAIN_RANGE)?;
        }
        if let Some(s) = get("VIGIL_PROFILE_ON_EVENT")? {
            self.event_profiles.length = off_or(
                "VIGIL_PROFILE_ON_EVENT",
                s,
                crate::profile::EVENT_PROFILE_RANGE,
            )?;
        }
        if let Some(s) = get("VIGIL_PROFILE_COOLDOWN")? {
            let d = duration("VIGIL_PROFILE_COOLDOWN", s.clone())?;
            self.event_profiles.cooldown = in_range(
                "VIGIL_PROFILE_COOLDOWN",
                s,
                d,
                crate::profile::COOLDOWN_RANGE,
            )?;
        }
        if let Some(s) = get("VIGIL_TOKEN")? {
            self = self.token(s.trim().to_owned()).map_err(|_| Error::Env {
                var: "VIGIL_TOKEN",
                value: "<hidden>".into(),
                expected: "at least 16 characters without whitespace",
            })?;
        }
        for (var, human) in [
            ("VIGIL_LABEL_CONFIDENCE_HUMAN", true),
            ("VIGIL_LABEL_CONFIDENCE_ALERTMANAGER", false),
        ] {
            if let Some(s) = get(var)? {
                let v = s
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|v| (0.0..=1.0).contains(v))
                    .ok_or(Error::Env {
                        var,
                        value: s,
                        expected: "a number from 0 to 1",
                    })?;
                if let Some(st) = &mut self.store {
                    if human {
                        st.confidence.human = v;
                    } else {
                        st.confidence.alertmanager = v;
                    }
                }
            }
        }
        // Read by #[observe] itself; checked here so a typo fails start-up instead of being ignored.
        if let Some(s) = get("ENABLE_AI_OBSERVABILITY")?
            && vigil_observe::parse_enabled(&s).is_none()
        {
            return Err(Error::Env {
                var: "ENABLE_AI_OBSERVABILITY",
                value: s,
                expected: "true or false",
            });
        }
        if let Some(s) = get("VIGIL_FEATURE_METRICS")? {
            self.features.export_values = match s.trim().to_ascii_lowercase().as_str() {
                "on" | "true" | "1" => true,
                "off" | "false" | "0" => false,
                _ => {
                    return Err(Error::Env {
                        var: "VIGIL_FEATURE_METRICS",
                        value: s,
                        expected: "on or off",
                    });
                }
            };
        }
        Ok(self)
    }

    /// Builds the collectors and the sampler without starting any thread or socket, except the
    /// scheduler probe thread (returned; dropping it stops it). For hosts that drive ticks themselves,
    /// and for benchmarks.
    pub fn build_sampler(
        &mut self,
        handle: &Handle,
    ) -> Result<(Sampler, Registry, ProbeGuard), Error> {
        let mut registry = Registry::default();
        let mut collectors: Vec<Box<dyn Collector>> = Vec::new();
        collectors.push(Box::new(RuntimeCollector::new(handle, &mut registry)));
        let probe_config = ProbeConfig {
            interval: if self.probe_interval_set {
                self.probe.interval
            } else {
                default_probe_interval(self.tick)
            },
            ..self.probe
        };
        let (sched, probe) =
            SchedCollector::start(handle, probe_config, &mut registry).map_err(|source| {
                Error::Spawn {
                    what: "scheduler probe thread",
                    source,
                }
            })?;
        collectors.push(Box::new(sched));
        if crate::alloc::alloc_tracking_enabled() {
            collectors.push(Box::new(AllocCollector::new(&mut registry)));
        } else {
            tracing::info!(
                "vigil::CountingAlloc is not the global allocator: allocation signals are off"
            );
        }
        match ProcessCollector::new(&mut registry) {
            Ok(c) => collectors.push(Box::new(c)),
            Err(e) => tracing::warn!("process signals are off: {e}"),
        }
        let source = match self.gpu_source.take() {
            Some(s) => s,
            None => {
                let (source, reason) = vigil_gpu::open(self.gpu)?;
                if let Some(reason) = reason {
                    tracing::info!("no GPU signals: {reason}");
                }
                source
            }
        };
        collectors.push(Box::new(GpuCollector::new(source, &mut registry)));
        collectors.push(Box::new(InferenceCollector::new()));
        let model_origin = match &self.model_path {
            Some(p) if self.model_from_env => format!("VIGIL_MODEL={}", p.display()),
            Some(p) => format!("model_path {}", p.display()),
            None => String::new(),
        };
        let model = match &self.model_path {
            Some(p) => Some(vigil_models::ModelFile::load_regular(p).map_err(|source| Error::Model {
                origin: model_origin.clone(),
                source,
                hint: if self.model_from_env {
                    ". Fix or unset VIGIL_MODEL (unset, the agent trains its own model after a warm-up)"
                } else {
                    ""
                },
            })?),
            None => None,
        };
        let scoring = crate::pipeline::sampler::ScoringConfig {
            model,
            model_origin,
            engine: self.engine_config(),
        };
        let mut sampler = Sampler::new(collectors, self.features, scoring, &mut registry)?;
        if let Some(reference) = self.drift_reference.take() {
            sampler.set_drift_reference(reference)?;
        }
        Ok((sampler, registry, ProbeGuard(probe)))
    }

    /// Binds the HTTP endpoint, builds every collector and starts the agent on its own named OS thread
    /// (`vigil-agent`, with its own current-thread runtime) plus the scheduler probe thread
    /// (`vigil-probe`). `handle` is the host runtime to monitor.
    ///
    /// Errors: a bad setting, a port that cannot be bound, `VIGIL_GPU=nvml` without NVML, or the OS
    /// refusing a thread. Nothing keeps running after an error.
    pub fn start(mut self, handle: &Handle) -> Result<AgentHandle, Error> {
        let listener = std::net::TcpListener::bind(self.listen).map_err(|source| Error::Bind {
            addr: self.listen,
            source,
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| Error::Bind {
                addr: self.listen,
                source,
            })?;
        let access = crate::http::access::WriteAccess::new(self.listen, self.token.clone());
        if self.store.is_some() && access.exposed() && self.token.is_none() {
            return Err(Error::Config {
                setting: "token",
                message: format!(
                    "the agent would listen on {} (reachable from other hosts) with its write \
                     endpoints (labels, verdicts, Alertmanager webhook) open to anyone: set \
                     VIGIL_TOKEN (callers send `Authorization: Bearer <token>`), bind to \
                     127.0.0.1, or set VIGIL_DATA_DIR=off to run without the store and its API",
                    self.listen
                ),
            });
        }
        // The store first: a data directory in use or damaged fails start-up before any thread runs.
        let opened = match &self.store {
            Some(cfg) => Some(crate::store::open(cfg).map_err(|source| Error::Store {
                dir: cfg.dir.clone(),
                source,
            })?),
            None => None,
        };
        let (mut sampler, mut registry, probe) = self.build_sampler(handle)?;
        let settings: Vec<String> = self
            .effective_settings()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        tracing::info!("vigil agent starting with {}", settings.join(" "));
        let server_metrics = crate::http::server::ServerMetrics::new(&mut registry);
        if let Some(notice) = access.exposure_notice() {
            tracing::warn!("{notice}");
        }
        let profiler = crate::profile::Profiler::new(self.event_profiles, &mut registry);
        let mut wiring = crate::handle::Wiring::new(&sampler, self.model_path.clone(), profiler);
        if let (Some(path), Some(every)) = (&self.model_path, self.model_poll) {
            wiring.watch = Some(
                crate::store::model_watch::ModelWatch::start(
                    path.clone(),
                    every,
                    wiring.control_tx.clone(),
                    &mut registry,
                )
                .map_err(|source| Error::Spawn {
                    what: "model watch thread",
                    source,
                })?,
            );
        }
        let store = match (opened, self.store.take()) {
            (Some((store, lock, max_event)), Some(cfg)) => {
                sampler.continue_event_ids_after(max_event);
                let metrics = crate::store::StoreMetrics::new(&mut registry);
                let schema = sampler.store_schema();
                let dir = cfg.dir.clone();
                let retrainer = crate::store::retrain::Retrainer::new(
                    self.retrain_interval,
                    self.engine_config(),
                    sampler.feature_schema().clone(),
                    wiring.model_rx.clone(),
                    wiring.control_tx.clone(),
                    crate::store::retrain::metrics(&mut registry),
                    wiring.retrain_tx.clone(),
                );
                let (sink, thread) =
                    crate::store::spawn((store, lock), cfg, schema, metrics, Some(retrainer))
                        .map_err(|source| Error::Spawn {
                            what: "store thread",
                            source,
                        })?;
                tracing::info!(dir = %dir.display(), "vigil store open");
                Some((sink, thread))
            }
            _ => None,
        };
        AgentHandle::spawn(
            listener,
            self.tick,
            sampler,
            Arc::new(registry),
            probe,
            (self.http, server_metrics),
            {
                wiring.store = store;
                wiring.access = Some(access);
                wiring
            },
        )
    }
}

/// What every Vigil variable's name starts with (spelt apart so tools that list the variables a file
/// reads do not take it for one).
const VAR_PREFIX: &str = concat!("VIGIL", "_");

/// Every `VIGIL_*` variable [`AgentBuilder::from_env`] reads (docs/CONFIG.md documents each).
pub(crate) const ENV_VARS: [&str; 22] = [
    "VIGIL_DATA_DIR",
    "VIGIL_FALSE_EVENTS_PER_DAY",
    "VIGIL_FEATURE_METRICS",
    "VIGIL_GPU",
    "VIGIL_HTTP_IDLE_TIMEOUT",
    "VIGIL_HTTP_MAX_CONNECTIONS",
    "VIGIL_LABEL_CONFIDENCE_ALERTMANAGER",
    "VIGIL_LABEL_CONFIDENCE_HUMAN",
    "VIGIL_LISTEN",
    "VIGIL_MODEL",
    "VIGIL_MODEL_POLL",
    "VIGIL_PROBE_INTERVAL",
    "VIGIL_PROFILE_COOLDOWN",
    "VIGIL_PROFILE_ON_EVENT",
    "VIGIL_REFIT_INTERVAL",
    "VIGIL_RETENTION_AGE",
    "VIGIL_RETENTION_SIZE",
    "VIGIL_RETRAIN_INTERVAL",
    "VIGIL_STALL_THRESHOLD",
    "VIGIL_TICK",
    "VIGIL_TOKEN",
    "VIGIL_WARMUP",
];

/// The `VIGIL_*` names among `keys` that are not Vigil settings, each with the closest known name.
pub(crate) fn unknown_vars<'a>(
    keys: impl IntoIterator<Item = &'a str>,
) -> Vec<(String, &'static str)> {
    keys.into_iter()
        .filter(|k| k.starts_with(VAR_PREFIX) && !ENV_VARS.contains(k))
        .map(|k| {
            let closest = ENV_VARS
                .iter()
                .min_by_key(|v| edit_distance(k, v))
                .copied()
                .unwrap_or(ENV_VARS[0]);
            (k.to_owned(), closest)
        })
        .collect()
}

/// Levenshtein distance between two ASCII-ish names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::ffi::OsString;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn effective_settings_name_every_variable_once_read_back_as_set_and_hide_the_token() {
        let set = [
            ("VIGIL_LISTEN", "0.0.0.0:9999"),
            ("VIGIL_TICK", "500ms"),
            ("VIGIL_GPU", "off"),
            ("VIGIL_PROBE_INTERVAL", "10ms"),
            ("VIGIL_STALL_THRESHOLD", "250ms"),
            ("VIGIL_FEATURE_METRICS", "off"),
            ("VIGIL_WARMUP", "2m"),
            ("VIGIL_REFIT_INTERVAL", "off"),
            ("VIGIL_FALSE_EVENTS_PER_DAY", "0.5"),
            ("VIGIL_MODEL", "/models/m.json"),
            ("VIGIL_MODEL_POLL", "30s"),
            ("VIGIL_DATA_DIR", "/var/lib/vigil"),
            ("VIGIL_RETENTION_AGE", "2d"),
            ("VIGIL_RETENTION_SIZE", "1073741824"),
            ("VIGIL_RETRAIN_INTERVAL", "6h"),
            ("VIGIL_LABEL_CONFIDENCE_HUMAN", "0.9"),
            ("VIGIL_LABEL_CONFIDENCE_ALERTMANAGER", "0.5"),
            ("VIGIL_TOKEN", "s3cret-token-value"),
            ("VIGIL_PROFILE_ON_EVENT", "5s"),
            ("VIGIL_PROFILE_COOLDOWN", "1h"),
            ("VIGIL_HTTP_MAX_CONNECTIONS", "32"),
            ("VIGIL_HTTP_IDLE_TIMEOUT", "2s"),
        ];
        let b = Agent::builder().from_lookup(env(&set)).unwrap();
        let shown = b.effective_settings();
        let mut names: Vec<&str> = shown.iter().map(|(k, _)| *k).collect();
        names.sort_unstable();
        let mut known = ENV_VARS.to_vec();
        known.sort_unstable();
        assert_eq!(names, known, "every variable, once");
        for (k, v) in set {
            let got = &shown.iter().find(|(n, _)| *n == k).unwrap().1;
            if k == "VIGIL_TOKEN" {
                assert_eq!(got, "<set>");
            } else {
                assert_eq!(got, v, "{k}");
            }
        }
        // Read back: the effective settings, fed to the builder again, give the same settings.
        let again: Vec<(&str, &str)> = shown
            .iter()
            .filter(|(k, _)| *k != "VIGIL_TOKEN")
            .map(|(k, v)| (*k, v.as_str()))
            .chain([("VIGIL_TOKEN", "s3cret-token-value")])
            .collect();
        let b2 = Agent::builder().from_lookup(env(&again)).unwrap();
        assert_eq!(b2.effective_settings(), shown);
        // Defaults are shown too (the probe interval that follows a short tick included).
        let d = Agent::builder()
            .tick(Duration::from_millis(200))
            .unwrap()
            .effective_settings();
        let get = |k: &str| d.iter().find(|(n, _)| *n == k).unwrap().1.clone();
        assert_eq!(get("VIGIL_TICK"), "200ms");
        assert_eq!(get("VIGIL_PROBE_INTERVAL"), "50ms");
        assert_eq!(get("VIGIL_TOKEN"), "(none)");
        assert_eq!(get("VIGIL_DATA_DIR"), "vigil-data");
    }

    #[test]
    fn durations_are_written_in_their_largest_exact_unit_and_read_back() {
        for (d, text) in [
            (Duration::from_secs(86_400), "1d"),
            (Duration::from_secs(7_200), "2h"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_micros(1_500), "1500us"),
            (Duration::from_nanos(7), "7ns"),
            (Duration::ZERO, "0ns"),
        ] {
            assert_eq!(format_duration(d), text);
            assert_eq!(crate::parse_duration(text), Some(d), "{text}");
        }
    }

    #[test]
    fn env_values_override_defaults() {
        let b = Agent::builder()
            .from_lookup(env(&[
                ("VIGIL_LISTEN", "0.0.0.0:9999"),
                ("VIGIL_TICK", "500ms"),
                ("VIGIL_GPU", "off"),
                ("VIGIL_PROBE_INTERVAL", "10ms"),
                ("VIGIL_STALL_THRESHOLD", "250ms"),
                ("VIGIL_FEATURE_METRICS", "off"),
                ("VIGIL_HTTP_MAX_CONNECTIONS", "32"),
                ("VIGIL_HTTP_IDLE_TIMEOUT", "2s"),
                ("VIGIL_PROFILE_ON_EVENT", "5s"),
                ("VIGIL_PROFILE_COOLDOWN", "1h"),
                ("VIGIL_MODEL_POLL", "off"),
            ]))
            .unwrap();
        assert_eq!(
            b.event_profiles,
            crate::profile::EventProfiles {
                length: Some(Duration::from_secs(5)),
                cooldown: Duration::from_secs(3600),
            }
        );
        assert_eq!(b.model_poll, None);
        let off = Agent::builder()
            .from_lookup(env(&[("VIGIL_PROFILE_ON_EVENT", "OFF")]))
            .unwrap();
        assert_eq!(off.event_profiles.length, None);
        assert_eq!(b.http.max_connections, 32);
        assert_eq!(b.http.idle_timeout, Duration::from_secs(2));
        assert_eq!(b.listen, "0.0.0.0:9999".parse().unwrap());
        assert_eq!(b.tick, Duration::from_millis(500));
        assert_eq!(b.gpu, GpuMode::Off);
        assert_eq!(b.probe.interval, Duration::from_millis(10));
        assert_eq!(b.probe.stall_threshold, Duration::from_millis(250));
        assert!(!b.features.export_values);
    }

    #[test]
    fn unset_and_empty_variables_keep_defaults() {
        let b = Agent::builder()
            .from_lookup(env(&[("VIGIL_TICK", "  ")]))
            .unwrap();
        assert_eq!(b.tick, DEFAULT_TICK);
        assert_eq!(b.listen, DEFAULT_LISTEN);
    }

    #[test]
    fn every_bad_value_names_its_variable_and_what_it_accepts() {
        let cases = [
            ("VIGIL_LISTEN", "localhost", "IP address and port"),
            ("VIGIL_LISTEN", "127.0.0.1", "IP address and port"),
            ("VIGIL_TICK", "fast", "duration"),
            ("VIGIL_TICK", "1ms", "10ms to 1h"),
            ("VIGIL_TICK", "-1s", "duration"),
            ("VIGIL_GPU", "cuda", "auto, off or nvml"),
            ("VIGIL_PROBE_INTERVAL", "0s", "1ms to 60s"),
            ("VIGIL_STALL_THRESHOLD", "10 parsecs", "duration"),
            ("VIGIL_FEATURE_METRICS", "maybe", "on or off"),
            ("ENABLE_AI_OBSERVABILITY", "perhaps", "true or false"),
            ("VIGIL_WARMUP", "0s", "1s to 24h"),
            ("VIGIL_HTTP_IDLE_TIMEOUT", "1ms", "100ms to 1h"),
            ("VIGIL_HTTP_IDLE_TIMEOUT", "soon", "duration"),
            ("VIGIL_HTTP_MAX_CONNECTIONS", "0", "1 to 65536"),
            ("VIGIL_HTTP_MAX_CONNECTIONS", "lots", "1 to 65536"),
            (
                "VIGIL_PROFILE_ON_EVENT",
                "61s",
                "off or a duration from 1s to 60s",
            ),
            ("VIGIL_PROFILE_ON_EVENT", "always", "duration"),
            ("VIGIL_PROFILE_COOLDOWN", "8d", "0s to 7d"),
            ("VIGIL_PROFILE_COOLDOWN", "off", "duration"),
            (
                "VIGIL_MODEL_POLL",
                "1ms",
                "off or a duration from 100ms to 1h",
            ),
            (
                "VIGIL_RETRAIN_INTERVAL",
                "1s",
                "off or a duration from 1m to 7d",
            ),
            ("VIGIL_REFIT_INTERVAL", "never", "duration"),
            // Too large to hold is not "too small".
            ("VIGIL_RETENTION_SIZE", "99999999999GiB", "16MiB to 1PiB"),
            ("VIGIL_RETENTION_SIZE", "1MiB", "16MiB to 1PiB"),
        ];
        for (var, value, expected) in cases {
            let err = Agent::builder()
                .from_lookup(env(&[(var, value)]))
                .unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(var), "{var}={value}: {msg}");
            assert!(msg.contains(expected), "{var}={value}: {msg}");
            assert!(matches!(err, Error::Env { .. }));
        }
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_values_are_errors_not_panics() {
        use std::os::unix::ffi::OsStringExt;
        let err = Agent::builder()
            .from_lookup(|k| (k == "VIGIL_GPU").then(|| OsString::from_vec(vec![0xff, 0xfe])))
            .unwrap_err();
        assert!(err.to_string().contains("VIGIL_GPU"), "{err}");
    }

    #[test]
    fn the_default_probe_interval_follows_short_ticks() {
        assert_eq!(
            default_probe_interval(Duration::from_secs(1)),
            DEFAULT_PROBE_INTERVAL
        );
        assert_eq!(
            default_probe_interval(Duration::from_millis(100)),
            Duration::from_millis(25)
        );
        assert_eq!(
            default_probe_interval(Duration::from_millis(10)),
            Duration::from_micros(2500)
        );
        let b = Agent::builder()
            .probe_interval(Duration::from_millis(7))
            .unwrap();
        assert!(b.probe_interval_set);
    }

    #[test]
    fn setters_validate_ranges() {
        let err = Agent::builder()
            .tick(Duration::from_secs(7200))
            .unwrap_err();
        assert!(err.to_string().contains("tick"), "{err}");
        assert!(Agent::builder().stall_threshold(Duration::ZERO).is_err());
        assert!(
            Agent::builder()
                .probe_interval(Duration::from_millis(5))
                .is_ok()
        );
    }

    #[test]
    fn unknown_vigil_variables_are_named_with_the_closest_known_one() {
        // Misspellings built from the prefix (docs_in_sync scans this file's quoted names).
        let v = |rest: &str| format!("{VAR_PREFIX}{rest}");
        let keys = [
            v("TICKK"),
            v("TICK"),
            "PATH".to_owned(),
            v("DATADIR"),
            v("TOKN"),
            "VIGILANT".to_owned(),
        ];
        let found = unknown_vars(keys.iter().map(String::as_str));
        let known = |rest: &str| {
            let name = v(rest);
            ENV_VARS.iter().copied().find(|k| *k == name).unwrap()
        };
        let want: Vec<(String, &str)> = vec![
            (v("TICKK"), known("TICK")),
            (v("DATADIR"), known("DATA_DIR")),
            (v("TOKN"), known("TOKEN")),
        ];
        assert_eq!(found, want);
        assert!(unknown_vars(ENV_VARS).is_empty());
    }

    #[test]
    fn the_list_of_known_variables_is_what_from_lookup_reads() {
        let src = include_str!("builder.rs");
        // Every quoted variable name in this file (test names are built from the prefix instead).
        let read: std::collections::BTreeSet<&str> = src
            .split('"')
            .skip(1)
            .step_by(2)
            .filter(|v| {
                v.starts_with(VAR_PREFIX)
                    && v.len() > VAR_PREFIX.len()
                    && v.chars().all(|c| c.is_ascii_uppercase() || c == '_')
            })
            .collect();
        let known: std::collections::BTreeSet<&str> = ENV_VARS.into_iter().collect();
        assert_eq!(read, known);
    }
}
