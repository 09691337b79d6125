//! The model file: one versioned JSON document, written atomically, loaded with every check.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use vigil_features::FeatureSchema;

use crate::{KMeansDetector, ModelError};

/// The model file format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

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
        && d.scaler
            .median
            .iter()
            .chain(&d.scaler.scale)
            .all(|v| v.is_finite())
        && d.centroids.iter().flatten().all(|v| v.is_finite())
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
        let widths_ok = self.feature_units.len() == w
            && d.feature_names.len() == w
            && d.scaler.median.len() == w
            && d.scaler.scale.len() == w
            && !d.centroids.is_empty()
            && d.centroids.iter().all(|c| c.len() == w);
        if !widths_ok {
            return Err(file_err(
                path,
                "inconsistent feature counts inside the file; it is corrupt: retrain",
            ));
        }
        if d.type_profiles
            .iter()
            .any(|(_, p)| p.len() != w || p.iter().any(|v| !v.is_finite()))
        {
            return Err(file_err(
                path,
                "an anomaly-type profile in the file is malformed; it is corrupt: retrain",
            ));
        }
        if let Some(tree) = &d.tree
            && !tree.is_valid(w + 1)
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

    /// Refuses a model trained for another feature schema.
    pub fn check_schema(&self, schema: &FeatureSchema) -> Result<(), ModelError> {
        if self.schema_hash != schema.hash_hex() {
            return Err(ModelError::SchemaMismatch {
                expected: format!(
                    "schema {} ({} features)",
                    self.schema_hash,
                    self.feature_names.len()
                ),
                got: format!("schema {} ({} features)", schema.hash_hex(), schema.len()),
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

    /// Writes the file atomically (temporary file in the same directory, fsync, rename), so a crash
    /// never leaves half a model where agents hot-reload it.
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        use std::io::Write;
        let shown = path.display().to_string();
        let json = self.to_json()?;
        let tmp = path.with_extension("tmp-vigil");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(json.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            file_err(&shown, format!("cannot write: {e}"))
        })
    }

    /// Reads and validates a model file.
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| file_err(&shown, format!("cannot read: {e}")))?;
        Self::from_json(&text, &shown)
    }
}
