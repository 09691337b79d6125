//! Reading [`Config`] from the `VIGIL_*` environment variables (docs/CONFIG.md). Reading only parses:
//! a value that is not a duration, number or address is an error here, naming the variable; whether
//! a value is in range is [`Config::check`]'s one validation step, which names the variable too.

use std::ffi::OsString;
use std::time::Duration;

use vigil_gpu::GpuMode;

use crate::Error;
use crate::config::duration::{DURATION_SYNTAX, parse_bytes, parse_duration};
use crate::config::settings::{Config, EnvValue};

/// What every Vigil variable's name starts with (spelt apart so tools that list the variables a file
/// reads do not take it for one).
const VAR_PREFIX: &str = concat!("VIGIL", "_");

/// Every `VIGIL_*` variable [`Config::apply_lookup`] reads (docs/CONFIG.md documents each).
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

fn env_error(var: &'static str, value: String, expected: &'static str) -> Error {
    Error::Env {
        var,
        value,
        expected,
    }
}

fn duration(var: &'static str, s: &str) -> Result<Duration, Error> {
    parse_duration(s).ok_or_else(|| env_error(var, s.to_owned(), DURATION_SYNTAX))
}

/// `off`, or a duration.
fn off_or(var: &'static str, s: &str) -> Result<Option<Duration>, Error> {
    if s.trim().eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    duration(var, s).map(Some)
}

fn number<T: std::str::FromStr>(
    var: &'static str,
    s: &str,
    expected: &'static str,
) -> Result<T, Error> {
    s.trim()
        .parse::<T>()
        .map_err(|_| env_error(var, s.to_owned(), expected))
}

impl Config {
    /// The defaults with the `VIGIL_*` environment variables that are set applied
    /// ([`Config::apply_env`]).
    pub fn from_env() -> Result<Config, Error> {
        Config::default().apply_env()
    }

    /// The defaults with the variables `lookup` returns applied ([`Config::apply_lookup`]).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<OsString>) -> Result<Config, Error> {
        Config::default().apply_lookup(lookup)
    }

    /// Applies the `VIGIL_*` environment variables that are set, on top of these settings. A
    /// `VIGIL_*` variable that is not a setting is logged once with the closest known name.
    pub fn apply_env(self) -> Result<Config, Error> {
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
        self.apply_lookup(|var| std::env::var_os(var))
    }

    /// [`Config::apply_env`] over any lookup function (for tests and config layers). An empty
    /// variable counts as unset. A value that does not parse is an [`Error::Env`] naming the
    /// variable and what it accepts; ranges are checked by [`Config::check`].
    pub fn apply_lookup(
        mut self,
        lookup: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Config, Error> {
        let mut read: Vec<(&'static str, String)> = Vec::new();
        let mut get = |var: &'static str| -> Result<Option<String>, Error> {
            match lookup(var) {
                None => Ok(None),
                Some(v) => match v.into_string() {
                    Ok(s) if s.trim().is_empty() => Ok(None),
                    Ok(s) => {
                        let shown = if var == "VIGIL_TOKEN" {
                            "<hidden>".to_owned()
                        } else {
                            s.clone()
                        };
                        read.push((var, shown));
                        Ok(Some(s))
                    }
                    Err(raw) => Err(Error::Env {
                        var,
                        value: raw.to_string_lossy().into_owned(),
                        expected: "valid UTF-8",
                    }),
                },
            }
        };
        if let Some(s) = get("VIGIL_LISTEN")? {
            self.listen = s.trim().parse().map_err(|_| {
                env_error(
                    "VIGIL_LISTEN",
                    s.clone(),
                    "an IP address and port such as 127.0.0.1:9464 or [::1]:9464",
                )
            })?;
        }
        for (var, field) in [
            ("VIGIL_TICK", &mut self.tick),
            ("VIGIL_STALL_THRESHOLD", &mut self.stall_threshold),
            ("VIGIL_HTTP_IDLE_TIMEOUT", &mut self.http_idle_timeout),
            ("VIGIL_WARMUP", &mut self.warm_up),
            ("VIGIL_RETENTION_AGE", &mut self.retention_age),
            ("VIGIL_PROFILE_COOLDOWN", &mut self.profile_cooldown),
        ] {
            if let Some(s) = get(var)? {
                *field = duration(var, &s)?;
            }
        }
        // `off`, or a duration.
        for (var, field) in [
            ("VIGIL_REFIT_INTERVAL", &mut self.refit_interval),
            ("VIGIL_MODEL_POLL", &mut self.model_poll),
            ("VIGIL_RETRAIN_INTERVAL", &mut self.retrain_interval),
            ("VIGIL_PROFILE_ON_EVENT", &mut self.profile_on_event),
        ] {
            if let Some(s) = get(var)? {
                *field = off_or(var, &s)?;
            }
        }
        if let Some(s) = get("VIGIL_GPU")? {
            self.gpu = GpuMode::parse(&s)
                .ok_or_else(|| env_error("VIGIL_GPU", s.clone(), "auto, off or nvml"))?;
        }
        if let Some(s) = get("VIGIL_PROBE_INTERVAL")? {
            self.probe_interval = Some(duration("VIGIL_PROBE_INTERVAL", &s)?);
        }
        if let Some(s) = get("VIGIL_MODEL")? {
            self.model_path = Some(std::path::PathBuf::from(s));
        }
        if let Some(s) = get("VIGIL_HTTP_MAX_CONNECTIONS")? {
            self.http_max_connections = number(
                "VIGIL_HTTP_MAX_CONNECTIONS",
                &s,
                "a whole number from 1 to 65536",
            )?;
        }
        if let Some(s) = get("VIGIL_DATA_DIR")? {
            self.data_dir = crate::store::parse_data_dir(&s);
        }
        if let Some(s) = get("VIGIL_RETENTION_SIZE")? {
            self.retention_size = parse_bytes(&s).ok_or_else(|| {
                env_error(
                    "VIGIL_RETENTION_SIZE",
                    s.clone(),
                    "a size from 16MiB to 1PiB, e.g. 512MiB or 2GiB",
                )
            })?;
        }
        if let Some(s) = get("VIGIL_TOKEN")? {
            self.token = Some(s.trim().to_owned());
        }
        // Plain numbers (ranges are `check`'s).
        for (var, field, accepts) in [
            (
                "VIGIL_FALSE_EVENTS_PER_DAY",
                &mut self.false_events_per_day,
                "a number from 0.001 to 1000",
            ),
            (
                "VIGIL_LABEL_CONFIDENCE_HUMAN",
                &mut self.label_confidence_human,
                "a number from 0 to 1",
            ),
            (
                "VIGIL_LABEL_CONFIDENCE_ALERTMANAGER",
                &mut self.label_confidence_alertmanager,
                "a number from 0 to 1",
            ),
        ] {
            if let Some(s) = get(var)? {
                *field = number(var, &s, accepts)?;
            }
        }
        if let Some(s) = get("VIGIL_FEATURE_METRICS")? {
            self.feature_metrics = match s.trim().to_ascii_lowercase().as_str() {
                "on" | "true" | "1" => true,
                "off" | "false" | "0" => false,
                _ => return Err(env_error("VIGIL_FEATURE_METRICS", s, "on or off")),
            };
        }
        // Read by #[observe] itself; checked here so a typo fails start-up instead of being ignored.
        if let Some(v) = lookup("ENABLE_AI_OBSERVABILITY") {
            let s = v.to_string_lossy();
            if !s.trim().is_empty() && vigil_observe::parse_enabled(&s).is_none() {
                return Err(env_error(
                    "ENABLE_AI_OBSERVABILITY",
                    s.into_owned(),
                    "true or false",
                ));
            }
        }
        // What each setting reads as now, so an error can tell a value read from one changed since.
        let shown = self.effective_settings();
        for (var, raw) in read {
            if let Some((_, now)) = shown.iter().find(|(v, _)| *v == var) {
                self.from_env.push(EnvValue {
                    var,
                    raw,
                    shown: now.clone(),
                });
            }
        }
        Ok(self)
    }
}

/// The `VIGIL_*` names among `keys` that are not Vigil settings, each with the closest known name.
pub(crate) fn unknown_vars<'a>(
    keys: impl IntoIterator<Item = &'a str>,
) -> Vec<(String, &'static str)> {
    keys.into_iter()
        .filter(|k| k.starts_with(VAR_PREFIX) && !ENV_VARS.contains(k))
        .map(|k| {
            // Variable names are upper case: a lower-case spelling is the same name, mistyped.
            let upper = k.to_ascii_uppercase();
            let closest = ENV_VARS
                .iter()
                .min_by_key(|v| edit_distance(&upper, v))
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
        let checked = Config::from_lookup(env(&set)).unwrap().check().unwrap();
        let shown = checked.effective_settings();
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
        assert!(
            !format!("{checked:?}").contains("s3cret"),
            "Debug never shows the token"
        );
        // Read back: the effective settings, fed to the reader again, give the same settings.
        let again: Vec<(&str, &str)> = shown
            .iter()
            .filter(|(k, _)| *k != "VIGIL_TOKEN")
            .map(|(k, v)| (*k, v.as_str()))
            .chain([("VIGIL_TOKEN", "s3cret-token-value")])
            .collect();
        let c2 = Config::from_lookup(env(&again)).unwrap();
        assert_eq!(c2.effective_settings(), shown);
        // Defaults are shown too (the probe interval that follows a short tick included).
        let c = Config {
            tick: Duration::from_millis(200),
            ..Config::default()
        };
        let d = c.effective_settings();
        let get = |k: &str| d.iter().find(|(n, _)| *n == k).unwrap().1.clone();
        assert_eq!(get("VIGIL_TICK"), "200ms");
        assert_eq!(get("VIGIL_PROBE_INTERVAL"), "50ms");
        assert_eq!(get("VIGIL_TOKEN"), "(none)");
        assert_eq!(get("VIGIL_DATA_DIR"), "vigil-data");
    }

    #[test]
    fn env_values_override_defaults() {
        let c = Config::from_lookup(env(&[
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
        assert_eq!(c.profile_on_event, Some(Duration::from_secs(5)));
        assert_eq!(c.profile_cooldown, Duration::from_secs(3600));
        assert_eq!(c.model_poll, None);
        let off = Config::from_lookup(env(&[("VIGIL_PROFILE_ON_EVENT", "OFF")])).unwrap();
        assert_eq!(off.profile_on_event, None);
        assert_eq!(c.http_max_connections, 32);
        assert_eq!(c.http_idle_timeout, Duration::from_secs(2));
        assert_eq!(c.listen, "0.0.0.0:9999".parse().unwrap());
        assert_eq!(c.tick, Duration::from_millis(500));
        assert_eq!(c.gpu, GpuMode::Off);
        assert_eq!(c.probe_interval, Some(Duration::from_millis(10)));
        assert_eq!(c.stall_threshold, Duration::from_millis(250));
        assert!(!c.feature_metrics);
        // Applied on top of values set in code: only the variables that are set change.
        let base = Config {
            warm_up: Duration::from_secs(7),
            ..Config::default()
        };
        let c = base.apply_lookup(env(&[("VIGIL_TICK", "2s")])).unwrap();
        assert_eq!(
            (c.warm_up, c.tick),
            (Duration::from_secs(7), Duration::from_secs(2))
        );
    }

    #[test]
    fn unset_and_empty_variables_keep_defaults() {
        let c = Config::from_lookup(env(&[("VIGIL_TICK", "  ")])).unwrap();
        assert_eq!(c.tick, crate::DEFAULT_TICK);
        assert_eq!(c.listen, crate::DEFAULT_LISTEN);
        assert!(c.from_env.is_empty());
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
            ("VIGIL_FALSE_EVENTS_PER_DAY", "NaN", "0.001 to 1000"),
            ("VIGIL_LABEL_CONFIDENCE_HUMAN", "1.5", "0 to 1"),
            ("VIGIL_RETENTION_AGE", "10m", "1h to 365d"),
            // Too large to hold is not "too small".
            ("VIGIL_RETENTION_SIZE", "99999999999GiB", "16MiB to 1PiB"),
            ("VIGIL_RETENTION_SIZE", "1MiB", "16MiB to 1PiB"),
            ("VIGIL_RETENTION_SIZE", "2PiB", "16MiB to 1PiB"),
        ];
        for (var, value, expected) in cases {
            // Parsing, then the one validation step: either may refuse, both name the variable.
            let err = Config::from_lookup(env(&[(var, value)]))
                .and_then(Config::check)
                .unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(var), "{var}={value}: {msg}");
            assert!(msg.contains(value), "{var}={value}: {msg}");
            assert!(msg.contains(expected), "{var}={value}: {msg}");
            assert!(matches!(err, Error::Env { .. }), "{var}={value}: {err:?}");
        }
        // The token's text is never echoed.
        let err = Config::from_lookup(env(&[("VIGIL_TOKEN", "short")]))
            .and_then(Config::check)
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("VIGIL_TOKEN") && !msg.contains("short"),
            "{msg}"
        );
    }

    #[test]
    fn a_value_read_from_a_variable_then_changed_in_code_is_named_by_its_field() {
        let mut c = Config::from_lookup(env(&[("VIGIL_TICK", "5s")])).unwrap();
        c.tick = Duration::from_secs(7200);
        let err = c.check().unwrap_err();
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
        assert!(err.to_string().contains("2h"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_values_are_errors_not_panics() {
        use std::os::unix::ffi::OsStringExt;
        let err = Config::from_lookup(|k| {
            (k == "VIGIL_GPU").then(|| OsString::from_vec(vec![0xff, 0xfe]))
        })
        .unwrap_err();
        assert!(err.to_string().contains("VIGIL_GPU"), "{err}");
    }

    #[test]
    fn the_largest_retention_the_message_names_is_accepted() {
        let set = [("VIGIL_RETENTION_SIZE", "1PiB")];
        let checked = Config::from_lookup(env(&set)).unwrap().check().unwrap();
        assert_eq!(checked.retention_size, 1 << 50);
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
            v("tick"),
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
            (v("tick"), known("TICK")),
        ];
        assert_eq!(found, want);
        assert!(unknown_vars(ENV_VARS).is_empty());
    }

    #[test]
    fn the_list_of_known_variables_is_what_apply_lookup_reads() {
        let src = include_str!("env.rs");
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
