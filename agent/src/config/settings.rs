//! [`Config`]: every setting of the agent as plain data with documented defaults, and the one
//! validation step ([`Config::check`]) that turns it into a [`CheckedConfig`], the only form the agent
//! starts from (linfa's params → checked params).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use vigil_features::Horizons;
use vigil_gpu::GpuMode;

use crate::Error;
use crate::http::DEFAULT_LISTEN;
use crate::http::server::{DEFAULT_HTTP_IDLE_TIMEOUT, DEFAULT_HTTP_MAX_CONNECTIONS, HttpLimits};
use crate::pipeline::collectors::ProbeConfig;
use crate::pipeline::features::FeatureConfig;
use crate::profile::{
    COOLDOWN_RANGE, DEFAULT_EVENT_PROFILE, DEFAULT_EVENT_PROFILE_COOLDOWN, EVENT_PROFILE_RANGE,
    EventProfiles,
};
use crate::store::StoreConfig;

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
/// Default false-event budget: anomaly events per day the alarm level allows on normal behaviour.
pub const DEFAULT_FALSE_EVENTS_PER_DAY: f64 = vigil_models::DEFAULT_FALSE_EVENTS_PER_DAY;
/// Default drift window, ticks.
pub const DEFAULT_DRIFT_WINDOW: usize = 300;
/// Default stall threshold.
pub const DEFAULT_STALL_THRESHOLD: Duration = Duration::from_millis(100);

pub(crate) const PROBE_FLOOR: Duration = Duration::from_millis(1);
/// Warm-up windows at most (memory: windows × features × 8 bytes).
const MAX_WARM_UP_WINDOWS: usize = 20_000;

/// A duration setting's accepted range and what its error says it accepts.
struct Range {
    lo: Duration,
    hi: Duration,
    accepts: &'static str,
}

const fn range(lo: Duration, hi: Duration, accepts: &'static str) -> Range {
    Range { lo, hi, accepts }
}

const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

const fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

const DAY: u64 = 86_400;
const TICK: Range = range(ms(10), secs(3600), "a duration from 10ms to 1h");
const PROBE: Range = range(PROBE_FLOOR, secs(60), "a duration from 1ms to 60s");
const STALL: Range = range(ms(1), secs(60), "a duration from 1ms to 60s");
const WARM_UP: Range = range(secs(1), secs(DAY), "a duration from 1s to 24h");
const REFIT: Range = range(secs(1), secs(7 * DAY), "off or a duration from 1s to 7d");
const HTTP_IDLE: Range = range(ms(100), secs(3600), "a duration from 100ms to 1h");
const MODEL_POLL: Range = range(ms(100), secs(3600), "off or a duration from 100ms to 1h");
const RETRAIN: Range = range(secs(60), secs(7 * DAY), "off or a duration from 1m to 7d");
const RETENTION_AGE: Range = range(secs(3600), secs(365 * DAY), "a duration from 1h to 365d");
const PROFILE: Range = range(
    EVENT_PROFILE_RANGE.0,
    EVENT_PROFILE_RANGE.1,
    "off or a duration from 1s to 60s",
);
const COOLDOWN: Range = range(
    COOLDOWN_RANGE.0,
    COOLDOWN_RANGE.1,
    "a duration from 0s to 7d",
);
const HTTP_CONNECTIONS: (usize, usize) = (1, 65_536);
const DRIFT_WINDOW: (usize, usize) = (10, 100_000);
/// Smallest store size accepted (one hour of ticks at 1 s fits in a few MiB).
const MIN_RETENTION_BYTES: u64 = 16 << 20;
/// The largest store size accepted (1 PiB): a bigger number is a typo, not a disk.
const MAX_RETENTION_BYTES: u64 = 1 << 50;

/// Every setting of the agent, as plain data. Start from [`Config::default`] (the documented
/// defaults) or [`Config::from_env`], change any field, then [`Config::check`] it once: the agent
/// starts only from the [`CheckedConfig`] that returns. `docs/CONFIG.md` documents each field under
/// its environment variable (`tick` is `VIGIL_TICK`, and so on).
///
/// ```
/// let mut config = vigil_agent::Config::from_lookup(|var| {
///     (var == "VIGIL_TICK").then(|| "250ms".into())
/// })?;
/// config.data_dir = None;
/// let checked = config.check()?;
/// assert_eq!(checked.tick, std::time::Duration::from_millis(250));
/// # Ok::<(), vigil_agent::Error>(())
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct Config {
    /// Address of the HTTP endpoint (`/metrics`, `/healthz`, the API). Default `127.0.0.1:9464`;
    /// port 0 picks a free port.
    pub listen: SocketAddr,
    /// How often the agent samples. Default 1 s; accepted 10 ms to 1 h.
    pub tick: Duration,
    /// How to find GPUs. Default [`GpuMode::Auto`].
    pub gpu: GpuMode,
    /// Pause between scheduler probes; `None` (the default) = 100 ms, or a quarter of a tick shorter
    /// than 400 ms. Accepted 1 ms to 60 s.
    pub probe_interval: Option<Duration>,
    /// A probe not polled within this time counts as a stall. Default 100 ms; accepted 1 ms to 60 s.
    pub stall_threshold: Duration,
    /// Short and long feature horizons in ticks. Default 10 and 60.
    pub horizons: Horizons,
    /// Export every feature as `vigil_feature_value{feature}`. Default on.
    pub feature_metrics: bool,
    /// Live feature vectors the drift monitor compares with its reference. Default 300; accepted 10
    /// to 100,000.
    pub drift_window: usize,
    /// A model file from `vigil train` to score with from the first tick; `None` = cold start.
    pub model_path: Option<PathBuf>,
    /// Cold start: how long to collect windows before the first model. Default 5 min; accepted 1 s
    /// to 24 h.
    pub warm_up: Duration,
    /// How often the agent refits its own model; `None` = never. Default 1 h; accepted 1 s to 7 d.
    pub refit_interval: Option<Duration>,
    /// False anomaly events per day the alarm level allows once a day of scores is held (see
    /// `vigil_models::budget`). Default 0.1; accepted 0.001 to 1,000.
    pub false_events_per_day: f64,
    /// Most connections the HTTP endpoint keeps open. Default 256; accepted 1 to 65,536.
    pub http_max_connections: usize,
    /// Time a connection has to send a complete request. Default 30 s; accepted 100 ms to 1 h.
    pub http_idle_timeout: Duration,
    /// The local store's directory; `None` = no store and no labels/events API. Default
    /// `./vigil-data`.
    pub data_dir: Option<PathBuf>,
    /// Store retention by age. Default 7 d; accepted 1 h to 365 d.
    pub retention_age: Duration,
    /// Store retention by size, bytes. Default 512 MiB; accepted 16 MiB to 1 PiB.
    pub retention_size: u64,
    /// How often the agent retrains on stored windows and labels; `None` = only on new labels.
    /// Default 1 h; accepted 1 min to 7 d.
    pub retrain_interval: Option<Duration>,
    /// How often the agent looks at `model_path` for a new version; `None` = never. Default 10 s;
    /// accepted 100 ms to 1 h.
    pub model_poll: Option<Duration>,
    /// Length of the CPU profile taken when an event opens; `None` = never. Default 10 s; accepted
    /// 1 s to 60 s.
    pub profile_on_event: Option<Duration>,
    /// Least time between two automatic profiles. Default 10 min; accepted 0 s to 7 d.
    pub profile_cooldown: Duration,
    /// Bearer token the API requires off loopback: at least 16 characters, no whitespace.
    /// Never printed (`Debug` and the effective settings show `<set>`).
    pub token: Option<String>,
    /// Default confidence of labels from people. Default 0.95; accepted 0 to 1.
    pub label_confidence_human: f64,
    /// Default confidence of labels from Alertmanager. Default 0.65; accepted 0 to 1.
    pub label_confidence_alertmanager: f64,
    /// Values read from the environment: so that an error names the variable and the text it held.
    pub(crate) from_env: Vec<EnvValue>,
}

/// One setting read from a variable.
#[derive(Clone, Debug)]
pub(crate) struct EnvValue {
    pub(crate) var: &'static str,
    /// What the variable held (`<hidden>` for the token).
    pub(crate) raw: String,
    /// The setting's effective value right after it was read, to tell whether code changed it since.
    pub(crate) shown: String,
}

impl Default for Config {
    fn default() -> Self {
        let store = StoreConfig::default();
        let confidence = vigil_store::Confidence::default();
        Self {
            listen: DEFAULT_LISTEN,
            tick: DEFAULT_TICK,
            gpu: GpuMode::Auto,
            probe_interval: None,
            stall_threshold: DEFAULT_STALL_THRESHOLD,
            horizons: Horizons::default(),
            feature_metrics: true,
            drift_window: DEFAULT_DRIFT_WINDOW,
            model_path: None,
            warm_up: DEFAULT_WARM_UP,
            refit_interval: Some(DEFAULT_REFIT_INTERVAL),
            false_events_per_day: DEFAULT_FALSE_EVENTS_PER_DAY,
            http_max_connections: DEFAULT_HTTP_MAX_CONNECTIONS,
            http_idle_timeout: DEFAULT_HTTP_IDLE_TIMEOUT,
            data_dir: Some(store.dir),
            retention_age: store.max_age,
            retention_size: store.max_bytes,
            retrain_interval: Some(crate::store::retrain::DEFAULT_RETRAIN_INTERVAL),
            model_poll: Some(crate::store::model_watch::DEFAULT_MODEL_POLL),
            profile_on_event: Some(DEFAULT_EVENT_PROFILE),
            profile_cooldown: DEFAULT_EVENT_PROFILE_COOLDOWN,
            token: None,
            label_confidence_human: confidence.human,
            label_confidence_alertmanager: confidence.alertmanager,
            from_env: Vec::new(),
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = f.debug_struct("Config");
        for (var, value) in self.effective_settings() {
            s.field(var, &value);
        }
        s.finish()
    }
}

/// The probe interval when none is set: [`DEFAULT_PROBE_INTERVAL`], or a quarter of a shorter tick.
pub(crate) fn default_probe_interval(tick: Duration) -> Duration {
    DEFAULT_PROBE_INTERVAL.min(tick / 4).max(PROBE_FLOOR)
}

/// A duration as the `VIGIL_*` variables write it (the largest unit that divides it: `1d`, `2h`,
/// `10m`, `30s`, `250ms`, `100us`, else nanoseconds); [`crate::parse_duration`] reads it back exactly.
pub(crate) fn format_duration(d: Duration) -> String {
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

fn on_off(on: bool) -> String {
    if on { "on" } else { "off" }.to_owned()
}

impl Config {
    /// The settings as `(variable, value)` in the names and syntax of the `VIGIL_*` variables
    /// (docs/CONFIG.md; each value parses back to itself), whether they came from the environment,
    /// code or the default; the token is shown as `<set>`, never its value. The agent logs them
    /// once at start, on one line.
    pub fn effective_settings(&self) -> Vec<(&'static str, String)> {
        let d = |d: Duration| format_duration(d);
        let opt = |o: Option<Duration>| o.map_or_else(|| "off".to_owned(), format_duration);
        let store = self.data_dir.is_some();
        let if_store = |s: String| if store { s } else { "-".to_owned() };
        vec![
            ("VIGIL_LISTEN", self.listen.to_string()),
            ("VIGIL_TICK", d(self.tick)),
            ("VIGIL_GPU", self.gpu.as_str().to_owned()),
            ("VIGIL_PROBE_INTERVAL", d(self.resolved_probe_interval())),
            ("VIGIL_STALL_THRESHOLD", d(self.stall_threshold)),
            ("VIGIL_FEATURE_METRICS", on_off(self.feature_metrics)),
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
                self.data_dir
                    .as_ref()
                    .map_or_else(|| "off".to_owned(), |p| p.display().to_string()),
            ),
            ("VIGIL_RETENTION_AGE", if_store(d(self.retention_age))),
            (
                "VIGIL_RETENTION_SIZE",
                if_store(self.retention_size.to_string()),
            ),
            ("VIGIL_RETRAIN_INTERVAL", opt(self.retrain_interval)),
            (
                "VIGIL_LABEL_CONFIDENCE_HUMAN",
                self.label_confidence_human.to_string(),
            ),
            (
                "VIGIL_LABEL_CONFIDENCE_ALERTMANAGER",
                self.label_confidence_alertmanager.to_string(),
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
            ("VIGIL_PROFILE_ON_EVENT", opt(self.profile_on_event)),
            ("VIGIL_PROFILE_COOLDOWN", d(self.profile_cooldown)),
            (
                "VIGIL_HTTP_MAX_CONNECTIONS",
                self.http_max_connections.to_string(),
            ),
            ("VIGIL_HTTP_IDLE_TIMEOUT", d(self.http_idle_timeout)),
        ]
    }

    /// The probe interval in effect: the one set, or the default that follows the tick.
    pub fn resolved_probe_interval(&self) -> Duration {
        self.probe_interval
            .unwrap_or_else(|| default_probe_interval(self.tick))
    }

    /// The text `var` held when this setting was read from it, if the setting still has the value
    /// read (code did not change it since).
    pub(crate) fn env_text(&self, var: &str) -> Option<&str> {
        let read = self.from_env.iter().rev().find(|e| e.var == var)?;
        let now = self
            .effective_settings()
            .into_iter()
            .find(|(v, _)| *v == var)?
            .1;
        (now == read.shown).then_some(read.raw.as_str())
    }

    /// The error for a setting out of range: named by its variable (with the text it held) when the
    /// value came from the environment, by its field otherwise.
    fn invalid(
        &self,
        setting: &'static str,
        var: Option<&'static str>,
        accepts: &'static str,
        value: String,
    ) -> Error {
        match var.and_then(|v| Some((v, self.env_text(v)?))) {
            Some((var, raw)) => Error::Env {
                var,
                value: raw.to_owned(),
                expected: accepts,
            },
            None => Error::Config {
                setting,
                message: format!("{value} is not accepted: expected {accepts}"),
            },
        }
    }

    fn check_duration(
        &self,
        setting: &'static str,
        var: &'static str,
        d: Option<Duration>,
        r: &Range,
    ) -> Result<(), Error> {
        match d {
            Some(d) if d < r.lo || d > r.hi => {
                Err(self.invalid(setting, Some(var), r.accepts, format_duration(d)))
            }
            _ => Ok(()),
        }
    }

    /// The one validation step: every setting in its range, and the settings that depend on each
    /// other consistent. The error names the variable (and what it held) for a value read from the
    /// environment, the field otherwise, and says what is accepted.
    pub fn check(self) -> Result<CheckedConfig, Error> {
        let durations: [(&str, &str, Option<Duration>, &Range); 11] = [
            ("tick", "VIGIL_TICK", Some(self.tick), &TICK),
            (
                "probe_interval",
                "VIGIL_PROBE_INTERVAL",
                self.probe_interval,
                &PROBE,
            ),
            (
                "stall_threshold",
                "VIGIL_STALL_THRESHOLD",
                Some(self.stall_threshold),
                &STALL,
            ),
            ("warm_up", "VIGIL_WARMUP", Some(self.warm_up), &WARM_UP),
            (
                "refit_interval",
                "VIGIL_REFIT_INTERVAL",
                self.refit_interval,
                &REFIT,
            ),
            (
                "http_idle_timeout",
                "VIGIL_HTTP_IDLE_TIMEOUT",
                Some(self.http_idle_timeout),
                &HTTP_IDLE,
            ),
            (
                "model_poll",
                "VIGIL_MODEL_POLL",
                self.model_poll,
                &MODEL_POLL,
            ),
            (
                "retrain_interval",
                "VIGIL_RETRAIN_INTERVAL",
                self.retrain_interval,
                &RETRAIN,
            ),
            (
                "retention_age",
                "VIGIL_RETENTION_AGE",
                Some(self.retention_age),
                &RETENTION_AGE,
            ),
            (
                "profile_on_event",
                "VIGIL_PROFILE_ON_EVENT",
                self.profile_on_event,
                &PROFILE,
            ),
            (
                "profile_cooldown",
                "VIGIL_PROFILE_COOLDOWN",
                Some(self.profile_cooldown),
                &COOLDOWN,
            ),
        ];
        for (setting, var, d, r) in durations {
            self.check_duration(setting, var, d, r)?;
        }
        let (lo, hi) = HTTP_CONNECTIONS;
        if !(lo..=hi).contains(&self.http_max_connections) {
            return Err(self.invalid(
                "http_max_connections",
                Some("VIGIL_HTTP_MAX_CONNECTIONS"),
                "a whole number from 1 to 65536",
                self.http_max_connections.to_string(),
            ));
        }
        let (lo, hi) = DRIFT_WINDOW;
        if !(lo..=hi).contains(&self.drift_window) {
            return Err(self.invalid(
                "drift_window",
                None,
                "a number of ticks from 10 to 100000",
                self.drift_window.to_string(),
            ));
        }
        if !(0.001..=1000.0).contains(&self.false_events_per_day) {
            return Err(self.invalid(
                "false_events_per_day",
                Some("VIGIL_FALSE_EVENTS_PER_DAY"),
                "a number from 0.001 to 1000",
                self.false_events_per_day.to_string(),
            ));
        }
        if !(MIN_RETENTION_BYTES..=MAX_RETENTION_BYTES).contains(&self.retention_size) {
            return Err(self.invalid(
                "retention_size",
                Some("VIGIL_RETENTION_SIZE"),
                "a size from 16MiB to 1PiB, e.g. 512MiB or 2GiB",
                format!("{} bytes", self.retention_size),
            ));
        }
        for (setting, var, v) in [
            (
                "label_confidence_human",
                "VIGIL_LABEL_CONFIDENCE_HUMAN",
                self.label_confidence_human,
            ),
            (
                "label_confidence_alertmanager",
                "VIGIL_LABEL_CONFIDENCE_ALERTMANAGER",
                self.label_confidence_alertmanager,
            ),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(self.invalid(
                    setting,
                    Some(var),
                    "a number from 0 to 1",
                    v.to_string(),
                ));
            }
        }
        if let Some(t) = &self.token
            && (t.trim().len() < 16 || t.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(self.invalid(
                "token",
                Some("VIGIL_TOKEN"),
                "at least 16 characters without whitespace",
                "the token (not shown)".to_owned(),
            ));
        }
        // Settings that depend on each other.
        if self.data_dir.is_some() && !self.listen.ip().is_loopback() && self.token.is_none() {
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
        Ok(CheckedConfig(self))
    }
}

/// A [`Config`] that passed [`Config::check`]: every setting in range and consistent. Read its
/// fields through `Deref`; change them through [`CheckedConfig::into_inner`] and check again.
#[derive(Clone, Debug)]
pub struct CheckedConfig(Config);

impl std::ops::Deref for CheckedConfig {
    type Target = Config;

    fn deref(&self) -> &Config {
        &self.0
    }
}

impl CheckedConfig {
    /// The settings, to change and check again.
    pub fn into_inner(self) -> Config {
        self.0
    }

    /// The engine settings these give (tick, horizons, warm-up in windows, refits, budget): what
    /// `vigil score` needs to replay a recording exactly as this agent scored it live.
    pub fn engine_config(&self) -> vigil_models::EngineConfig {
        let tick = self.tick.as_secs_f64();
        let warm_up_windows =
            ((self.warm_up.as_secs_f64() / tick).ceil() as usize).clamp(50, MAX_WARM_UP_WINDOWS);
        let mut cfg = vigil_models::EngineConfig::agent(
            tick,
            warm_up_windows,
            self.refit_interval.map_or(0, |d| {
                vigil_models::EngineConfig::ticks_in(d.as_secs_f64(), tick)
            }),
            self.false_events_per_day,
        );
        cfg.horizons = self.horizons;
        cfg
    }

    pub(crate) fn probe(&self) -> ProbeConfig {
        ProbeConfig {
            interval: self.resolved_probe_interval(),
            stall_threshold: self.stall_threshold,
        }
    }

    pub(crate) fn features(&self) -> FeatureConfig {
        FeatureConfig {
            horizons: self.horizons,
            export_values: self.feature_metrics,
            drift_window: self.drift_window,
        }
    }

    pub(crate) fn http(&self) -> HttpLimits {
        HttpLimits {
            max_connections: self.http_max_connections,
            idle_timeout: self.http_idle_timeout,
        }
    }

    pub(crate) fn event_profiles(&self) -> EventProfiles {
        EventProfiles {
            length: self.profile_on_event,
            cooldown: self.profile_cooldown,
        }
    }

    pub(crate) fn store(&self) -> Option<StoreConfig> {
        Some(StoreConfig {
            dir: self.data_dir.clone()?,
            max_age: self.retention_age,
            max_bytes: self.retention_size,
            confidence: vigil_store::Confidence {
                human: self.label_confidence_human,
                alertmanager: self.label_confidence_alertmanager,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let c = Config {
            probe_interval: Some(Duration::from_millis(7)),
            tick: Duration::from_millis(10),
            ..Config::default()
        };
        assert_eq!(c.resolved_probe_interval(), Duration::from_millis(7));
    }

    #[test]
    fn the_defaults_pass_and_each_field_out_of_range_is_named() {
        let ok = Config::default().check().unwrap();
        assert_eq!(ok.tick, DEFAULT_TICK);
        assert_eq!(ok.engine_config().warm_up_windows, 300);
        type Edit = fn(&mut Config);
        let cases: [(&str, Edit); 16] = [
            ("tick", |c| c.tick = Duration::from_secs(7200)),
            ("probe_interval", |c| {
                c.probe_interval = Some(Duration::ZERO)
            }),
            ("stall_threshold", |c| c.stall_threshold = Duration::ZERO),
            ("warm_up", |c| c.warm_up = Duration::ZERO),
            ("refit_interval", |c| {
                c.refit_interval = Some(Duration::from_secs(8 * 86_400))
            }),
            ("http_idle_timeout", |c| {
                c.http_idle_timeout = Duration::ZERO
            }),
            ("model_poll", |c| c.model_poll = Some(Duration::ZERO)),
            ("retrain_interval", |c| {
                c.retrain_interval = Some(Duration::from_secs(1))
            }),
            ("retention_age", |c| {
                c.retention_age = Duration::from_secs(60)
            }),
            ("retention_size", |c| c.retention_size = 1 << 20),
            ("profile_on_event", |c| {
                c.profile_on_event = Some(Duration::from_secs(61))
            }),
            ("http_max_connections", |c| c.http_max_connections = 0),
            ("drift_window", |c| c.drift_window = 5),
            ("false_events_per_day", |c| {
                c.false_events_per_day = f64::NAN
            }),
            ("label_confidence_human", |c| {
                c.label_confidence_human = -0.1
            }),
            ("token", |c| c.token = Some("has space in it, long".into())),
        ];
        for (name, edit) in cases {
            let mut c = Config::default();
            edit(&mut c);
            match c.check() {
                Err(Error::Config { setting, message }) => {
                    assert_eq!(setting, name, "{message}");
                    assert!(message.contains("expected"), "{name}: {message}");
                }
                other => panic!("{name}: {other:?}"),
            }
        }
        // `off` is always accepted for the settings that have it.
        let mut c = Config::default();
        (
            c.refit_interval,
            c.model_poll,
            c.retrain_interval,
            c.profile_on_event,
        ) = (None, None, None, None);
        assert!(c.check().is_ok());
    }

    #[test]
    fn off_loopback_with_the_store_needs_a_token() {
        let mut c = Config {
            listen: "0.0.0.0:0".parse().unwrap(),
            ..Config::default()
        };
        let err = c.clone().check().unwrap_err();
        assert!(
            matches!(
                &err,
                Error::Config {
                    setting: "token",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("VIGIL_TOKEN"), "{err}");
        let mut no_store = c.clone();
        no_store.data_dir = None;
        assert!(no_store.check().is_ok());
        c.token = Some("0123456789abcdef".into());
        let checked = c.check().unwrap();
        assert_eq!(
            checked.effective_settings()[17],
            ("VIGIL_TOKEN", "<set>".to_owned())
        );
    }
}
