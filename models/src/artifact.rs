//! The model file: one versioned JSON document, written atomically, loaded with every check.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use vigil_features::FeatureSchema;

use crate::{KMeansDetector, ModelError, OutputFile};

/// Why a model was trained: recorded in [`crate::TrainingSummary::fit_reason`], so code that reacts to a
/// kind of refit (the retrain thread follows a drift refit) matches this, never the notes' words.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FitReason {
    /// The engine's first model, after the warm-up.
    ColdStart,
    /// The clean history doubled since the last fit.
    HistoryDoubled,
    /// [`crate::EngineConfig::refit_every`] ticks since the last fit.
    Scheduled,
    /// Scores drifted above the calibration p90 for a sustained stretch.
    Drift,
    /// A level shift ended an event: fitted on the windows since the change.
    LevelShift,
    /// Outside the engine: `vigil train`, a retrain on stored windows, a benchmark.
    Offline,
}

/// The largest model file [`ModelFile::load`] reads (64 MiB; real models are a few hundred KiB).
pub const MAX_MODEL_FILE_BYTES: u64 = 64 << 20;

/// The model file format this build reads and writes.
pub const FORMAT_VERSION: u32 = 2;

/// What training saw and how the model did on held-out data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingSummary {
    /// Training windows.
    pub rows: usize,
    /// Labels used, by source (`human`, `alertmanager`, ...).
    pub labels_by_source: BTreeMap<String, usize>,
    /// Validation metrics by name (e.g. `false_alarm_rate`).
    pub validation: BTreeMap<String, f64>,
    /// The alert budget the threshold was calibrated to.
    pub alert_budget: f64,
    /// Seconds between rows of the training data (recorded for offline data; the agent's tick live).
    pub tick_seconds: Option<f64>,
    /// What was trained, in words (e.g. why the supervised layer was skipped).
    #[serde(default)]
    pub notes: Vec<String>,
    /// Short feature horizon, ticks.
    #[serde(default = "default_short")]
    pub short_horizon: usize,
    /// Long feature horizon, ticks.
    #[serde(default = "default_long")]
    pub long_horizon: usize,
    /// Why it was trained (`None` in files written before this was recorded).
    #[serde(default)]
    pub fit_reason: Option<FitReason>,
}

fn default_short() -> usize {
    10
}

fn default_long() -> usize {
    60
}

impl Default for TrainingSummary {
    fn default() -> Self {
        Self {
            rows: 0,
            labels_by_source: BTreeMap::new(),
            validation: BTreeMap::new(),
            alert_budget: 0.001,
            tick_seconds: None,
            notes: Vec::new(),
            short_horizon: default_short(),
            long_horizon: default_long(),
            fit_reason: None,
        }
    }
}

/// Everything needed to score windows, and to refuse windows the model was not trained for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelFile {
    /// Always [`FORMAT_VERSION`] when written by this build.
    pub format_version: u32,
    /// Detector kind (`kmeans`).
    pub kind: String,
    /// Hash of the feature schema (16 hex digits), checked against the running agent or input.
    pub schema_hash: String,
    /// Feature names, in order.
    pub feature_names: Vec<String>,
    /// Feature units, parallel to the names.
    pub feature_units: Vec<String>,
    /// The detector.
    pub detector: KMeansDetector,
    /// Training summary.
    pub summary: TrainingSummary,
    /// Creation time, Unix seconds.
    pub created_unix_seconds: f64,
}

fn file_err(path: &str, message: impl Into<String>) -> ModelError {
    ModelError::File {
        path: path.to_owned(),
        message: message.into(),
    }
}

fn all_finite(d: &KMeansDetector) -> bool {
    d.threshold.is_finite()
        && d.settle.is_finite()
        && d.load
            .iter()
            .flatten()
            .all(|(_, s, m)| s.is_finite() && m.is_finite())
        && d.scaler
            .median
            .iter()
            .chain(&d.scaler.scale)
            .all(|v| v.is_finite())
        && d.centroids.iter().flatten().all(|v| v.is_finite())
}

/// The input column a feature comes from: `x.mean_10` → `x`, a counter's rate `x_total_rate.last` →
/// `x_total`, and a known counter's rate `alloc_allocations_rate.last` → `alloc_allocations_total`
/// (how `--record` and the vocabulary name counter columns).
pub fn column_of_feature(feature: &str) -> String {
    let base = feature.rsplit_once('.').map_or(feature, |(b, _)| b);
    match base.strip_suffix("_rate") {
        Some(counter) if counter.ends_with("_total") => counter.to_owned(),
        Some(counter)
            if vigil_features::vocab::lookup(counter)
                .is_some_and(|k| k.kind == vigil_features::SignalKind::Counter) =>
        {
            format!("{counter}_total")
        }
        _ => base.to_owned(),
    }
}

/// In words, how two feature lists differ, by signal: missing, extra, different unit or kind, order.
pub(crate) fn schema_difference(
    model_names: &[String],
    model_units: &[String],
    input_names: &[String],
    input_units: &[String],
) -> String {
    fn signals<'a>(names: &'a [String], units: &'a [String]) -> Vec<(String, Vec<&'a str>)> {
        let mut out: Vec<(String, Vec<&str>)> = Vec::new();
        for (n, u) in names.iter().zip(units) {
            let sig = column_of_feature(n);
            match out.last_mut() {
                Some((last, us)) if *last == sig => us.push(u),
                _ => out.push((sig, vec![u])),
            }
        }
        out
    }
    const SHOWN: usize = 10;
    let list = |v: &[&str]| {
        let mut s = v
            .iter()
            .take(SHOWN)
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ");
        if v.len() > SHOWN {
            s.push_str(&format!(" and {} more", v.len() - SHOWN));
        }
        s
    };
    let model = signals(model_names, model_units);
    let input = signals(input_names, input_units);
    let find = |set: &[(String, Vec<&str>)], name: &str| set.iter().position(|(n, _)| n == name);
    let missing: Vec<&str> = model
        .iter()
        .filter(|(n, _)| find(&input, n).is_none())
        .map(|(n, _)| n.as_str())
        .collect();
    let extra: Vec<&str> = input
        .iter()
        .filter(|(n, _)| find(&model, n).is_none())
        .map(|(n, _)| n.as_str())
        .collect();
    let changed: Vec<&str> = model
        .iter()
        .filter(|(n, us)| find(&input, n).is_some_and(|i| &input[i].1 != us))
        .map(|(n, _)| n.as_str())
        .collect();
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("the input lacks {}", list(&missing)));
    }
    if !extra.is_empty() {
        parts.push(format!("the model was not trained on {}", list(&extra)));
    }
    if !changed.is_empty() {
        parts.push(format!(
            "{} differ in unit, kind (counter or gauge) or feature horizons",
            list(&changed)
        ));
    }
    if parts.is_empty() {
        if model_names == input_names {
            parts.push("same features with different units".to_owned());
        } else {
            parts.push("the same signals in a different column order".to_owned());
        }
    }
    parts.join("; ")
}

impl ModelFile {
    /// Wraps a fitted detector with its schema and summary.
    pub fn new(schema: &FeatureSchema, detector: KMeansDetector, summary: TrainingSummary) -> Self {
        let created_unix_seconds = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        Self {
            format_version: FORMAT_VERSION,
            kind: if detector.tree.is_some() {
                "kmeans+tree"
            } else {
                "kmeans"
            }
            .into(),
            schema_hash: schema.hash_hex(),
            feature_names: schema.names().to_vec(),
            feature_units: schema.units().to_vec(),
            detector,
            summary,
            created_unix_seconds,
        }
    }

    /// Checks internal consistency: version, kind, widths, finite numbers, and that the stored hash is
    /// the hash of the stored names and units.
    pub fn validate(&self, path: &str) -> Result<(), ModelError> {
        if self.format_version != FORMAT_VERSION {
            return Err(file_err(
                path,
                format!(
                    "format version {} is not supported (this build reads version {FORMAT_VERSION}); retrain with this vigil or use a matching vigil release",
                    self.format_version
                ),
            ));
        }
        if self.kind != "kmeans" && self.kind != "kmeans+tree" {
            return Err(file_err(
                path,
                format!("unknown detector kind `{}`", self.kind),
            ));
        }
        let w = self.feature_names.len();
        let d = &self.detector;
        let dim = d.scored.len();
        let widths_ok = self.feature_units.len() == w
            && d.feature_names.len() == w
            && d.scaler.median.len() == w
            && d.scaler.scale.len() == w
            && dim > 0
            && d.scored.windows(2).all(|p| p[0] < p[1])
            && d.scored.last().is_some_and(|i| *i < w)
            && !d.centroids.is_empty()
            && d.centroids.iter().all(|c| c.len() == dim)
            && (d.load.is_empty() || d.load.len() == dim)
            && (d.sustain.is_empty() || d.sustain.len() == dim)
            && d.sustain.iter().flatten().all(|p| *p < w)
            && d.load.iter().flatten().all(|(l, _, _)| *l < w)
            && (d.extent.is_empty() || d.extent.len() == w);
        if !widths_ok {
            return Err(file_err(
                path,
                "inconsistent feature counts inside the file; it is corrupt: retrain",
            ));
        }
        if d.type_profiles
            .iter()
            .any(|(_, p)| p.len() != dim || p.iter().any(|v| !v.is_finite()))
        {
            return Err(file_err(
                path,
                "an anomaly-type profile in the file is malformed; it is corrupt: retrain",
            ));
        }
        if let Some(i) = d
            .extent
            .iter()
            .position(|(lo, hi)| !(lo.is_finite() && hi.is_finite() && lo <= hi))
        {
            return Err(file_err(
                path,
                format!(
                    "detector.extent of feature {i} is not a range (lowest <= highest); the file was edited or is corrupt: retrain"
                ),
            ));
        }
        if let Some(tree) = &d.tree
            && !tree.is_valid(dim + 1)
        {
            return Err(file_err(
                path,
                "the decision tree in the file is malformed; it is corrupt: retrain",
            ));
        }
        if !all_finite(d) || d.threshold <= 0.0 || d.scaler.scale.iter().any(|s| *s <= 0.0) {
            return Err(file_err(
                path,
                "non-finite or non-positive numbers in the detector; the file is corrupt: retrain",
            ));
        }
        // Values a trained model always has; outside them the file was edited (a threshold of 1e308
        // never alarms, a negative settle never closes an event).
        let (lo, hi) = (
            crate::kmeans::MIN_RAW_THRESHOLD,
            crate::kmeans::MAX_RAW_THRESHOLD,
        );
        if !(lo..=hi).contains(&d.threshold) {
            return Err(file_err(
                path,
                format!(
                    "detector.threshold {} is outside {lo} to {hi}; the file was edited or is corrupt: retrain",
                    d.threshold
                ),
            ));
        }
        if !(0.0..=d.threshold).contains(&d.settle) {
            return Err(file_err(
                path,
                format!(
                    "detector.settle {} is outside 0 to the threshold ({}); the file was edited or is corrupt: retrain",
                    d.settle, d.threshold
                ),
            ));
        }
        if let Some(t) = self.summary.tick_seconds
            && !(t.is_finite() && t > 0.0 && t <= 86_400.0)
        {
            return Err(file_err(
                path,
                format!(
                    "summary.tick_seconds {t} is not a tick (above 0, at most a day); the file was edited or is corrupt: retrain"
                ),
            ));
        }
        if !(d.scaler.median.iter().all(|m| m.is_finite())) {
            return Err(file_err(
                path,
                "a median in detector.scaler is not finite; the file is corrupt: retrain",
            ));
        }
        let (short, long) = (self.summary.short_horizon, self.summary.long_horizon);
        if let Err(e) = vigil_features::Horizons::new(short, long) {
            return Err(file_err(
                path,
                format!(
                    "its feature horizons (short {short}, long {long} ticks) are invalid: {e}; the file was edited or is corrupt: retrain"
                ),
            ));
        }
        let schema =
            FeatureSchema::from_parts(self.feature_names.clone(), self.feature_units.clone());
        if schema.hash_hex() != self.schema_hash {
            return Err(file_err(
                path,
                format!(
                    "schema hash {} does not match its feature list ({}); the file was edited or is corrupt: retrain",
                    self.schema_hash,
                    schema.hash_hex()
                ),
            ));
        }
        Ok(())
    }

    /// Refuses a model trained for another feature schema, naming the signals (columns) that differ.
    pub fn check_schema(&self, schema: &FeatureSchema) -> Result<(), ModelError> {
        if self.schema_hash != schema.hash_hex() {
            return Err(ModelError::SchemaMismatch {
                expected: format!(
                    "schema {} ({} features)",
                    self.schema_hash,
                    self.feature_names.len()
                ),
                got: format!("schema {} ({} features)", schema.hash_hex(), schema.len()),
                detail: schema_difference(
                    &self.feature_names,
                    &self.feature_units,
                    schema.names(),
                    schema.units(),
                ),
            });
        }
        Ok(())
    }

    /// The JSON document (floats round-trip bit for bit).
    pub fn to_json(&self) -> Result<String, ModelError> {
        self.validate("<memory>")?;
        serde_json::to_string_pretty(self).map_err(|e| file_err("<memory>", e.to_string()))
    }

    /// Parses and validates a JSON document; `path` names it in errors.
    pub fn from_json(text: &str, path: &str) -> Result<Self, ModelError> {
        let file: Self = serde_json::from_str(text).map_err(|e| {
            let what = if e.is_eof() {
                "is truncated (ends in the middle of the document)".to_owned()
            } else if e.to_string().contains("null") {
                format!("has a missing or non-finite number ({e})")
            } else {
                format!("is not a valid model file ({e})")
            };
            file_err(path, format!("{what}; retrain or restore the file"))
        })?;
        file.validate(path)?;
        Ok(file)
    }

    /// Writes the file atomically through [`OutputFile`] (temporary file in the same directory, fsync,
    /// rename; symlinks followed, devices written through), so a crash never leaves half a model where
    /// agents hot-reload it.
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        self.save_checked(path, &[])
    }

    /// [`ModelFile::save`], refusing an output that is one of `inputs` (the files it was trained from).
    pub fn save_checked(&self, path: &Path, inputs: &[&Path]) -> Result<(), ModelError> {
        let json = self.to_json()?;
        OutputFile::write_all_and_commit(path, inputs, json.as_bytes()).map_err(ModelError::Output)
    }

    /// [`ModelFile::load`] for long-lived threads (the agent's start, its model watcher, a reload): a
    /// path that is not a regular file — a FIFO, a device, a directory — is refused before it is
    /// opened, so a thread never blocks in `open()` on whatever a user put at the path.
    pub fn load_regular(path: &Path) -> Result<Self, ModelError> {
        let shown = path.display().to_string();
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() => Self::load(path),
            Ok(_) => Err(file_err(
                &shown,
                "is not a regular file (a FIFO, device or directory); the agent reads model files \
                 written by `vigil train`",
            )),
            Err(e) => Err(file_err(&shown, format!("cannot read: {e}"))),
        }
    }

    /// Reads and validates a model file. Files larger than [`MAX_MODEL_FILE_BYTES`] are refused before
    /// they are read whole.
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        use std::io::Read;
        let shown = path.display().to_string();
        let file =
            std::fs::File::open(path).map_err(|e| file_err(&shown, format!("cannot read: {e}")))?;
        let mut bytes = Vec::new();
        file.take(MAX_MODEL_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| file_err(&shown, format!("cannot read: {e}")))?;
        if bytes.len() as u64 > MAX_MODEL_FILE_BYTES {
            return Err(file_err(
                &shown,
                format!(
                    "is larger than {} MiB; a model file is a few hundred KiB: is this the right path?",
                    MAX_MODEL_FILE_BYTES >> 20
                ),
            ));
        }
        let text = String::from_utf8(bytes).map_err(|_| {
            file_err(
                &shown,
                "is not UTF-8 text, so not a model file from `vigil train`; check the path",
            )
        })?;
        Self::from_json(&text, &shown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(signals: &[(&str, &str)]) -> (Vec<String>, Vec<String>) {
        let mut n = Vec::new();
        let mut u = Vec::new();
        for (s, unit) in signals {
            for stat in ["last", "mean_10"] {
                n.push(format!("{s}.{stat}"));
                u.push((*unit).to_owned());
            }
        }
        (n, u)
    }

    #[test]
    fn schema_differences_name_the_columns() {
        let (mn, mu) = names(&[
            ("cpu", "ratio"),
            ("reqs_total_rate", "count/s"),
            ("rss", "bytes"),
        ]);
        let (inn, inu) = names(&[
            ("cpu", "count"),
            ("reqs_total_rate", "count/s"),
            ("gpu", "bytes"),
        ]);
        let d = schema_difference(&mn, &mu, &inn, &inu);
        assert!(d.contains("the input lacks `rss`"), "{d}");
        assert!(d.contains("not trained on `gpu`"), "{d}");
        assert!(d.contains("`cpu` differ in unit"), "{d}");
        let (rn, ru) = names(&[
            ("rss", "bytes"),
            ("cpu", "ratio"),
            ("reqs_total_rate", "count/s"),
        ]);
        let d = schema_difference(&mn, &mu, &rn, &ru);
        assert!(d.contains("different column order"), "{d}");
        assert_eq!(column_of_feature("reqs_total_rate.slope_60"), "reqs_total");
        assert_eq!(column_of_feature("x_rate.last"), "x_rate");
        assert_eq!(
            column_of_feature("alloc_allocations_rate.last"),
            "alloc_allocations_total"
        );
    }

    #[test]
    fn oversized_and_binary_model_files_are_refused_before_parsing() {
        let dir = std::env::temp_dir().join(format!("vigil-artifact-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let big = dir.join("big.json");
        let f = std::fs::File::create(&big).unwrap();
        f.set_len(MAX_MODEL_FILE_BYTES + 10).unwrap();
        let err = ModelFile::load(&big).unwrap_err().to_string();
        assert!(
            err.contains("larger than 64 MiB") && err.contains("big.json"),
            "{err}"
        );
        if Path::new("/dev/zero").exists() {
            let err = ModelFile::load(Path::new("/dev/zero"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("larger than"), "{err}");
        }
        std::fs::write(&big, [0xff, 0xfe, 0x00]).unwrap();
        let err = ModelFile::load(&big).unwrap_err().to_string();
        assert!(err.contains("not UTF-8"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
