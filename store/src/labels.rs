//! Labels as stored and as the API takes them.

use serde::Serialize;
use vigil_models::AnomalyKind;
use vigil_models::labels::LabelSource;

use crate::StoreError;

/// A verdict on an interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Something was wrong.
    Anomaly,
    /// Nothing was wrong (on an event: a false alarm).
    Normal,
}

impl Verdict {
    /// `anomaly` / `normal`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Anomaly => "anomaly",
            Verdict::Normal => "normal",
        }
    }

    /// Parses `anomaly` / `normal` (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "anomaly" => Some(Verdict::Anomaly),
            "normal" => Some(Verdict::Normal),
            _ => None,
        }
    }
}

/// Default confidence per source (DESIGN §7): people 0.95, Alertmanager rules 0.65.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Confidence {
    /// Labels from people (`POST /api/v1/labels`, verdicts, `vigil labels add`).
    pub human: f64,
    /// Labels from Alertmanager webhooks.
    pub alertmanager: f64,
}

impl Default for Confidence {
    fn default() -> Self {
        Self {
            human: 0.95,
            alertmanager: 0.65,
        }
    }
}

/// A label to add.
#[derive(Debug, Clone, PartialEq)]
pub struct NewLabel {
    /// Unix seconds.
    pub start: f64,
    /// Unix seconds; `None` = still open (an alert that has not resolved).
    pub end: Option<f64>,
    /// The verdict.
    pub verdict: Verdict,
    /// The anomaly type, when known.
    pub anomaly_type: Option<AnomalyKind>,
    /// Who said so (`human`, `alertmanager`, `csv`, ...).
    pub source: LabelSource,
    /// 0 to 1.
    pub confidence: f64,
    /// Free text.
    pub note: Option<String>,
    /// The event this is a verdict on.
    pub event_id: Option<u64>,
}

/// Longest note kept, in bytes.
pub const MAX_NOTE_BYTES: usize = 4096;

impl NewLabel {
    pub(crate) fn check(&self) -> Result<(), StoreError> {
        if !self.start.is_finite() {
            return Err(StoreError::Invalid("start is not a time".into()));
        }
        if let Some(why) = vigil_features::time::out_of_range(self.start) {
            return Err(StoreError::Invalid(format!("start {why}")));
        }
        if let Some(e) = self.end {
            if !e.is_finite() {
                return Err(StoreError::Invalid("end is not a time".into()));
            }
            if let Some(why) = vigil_features::time::out_of_range(e) {
                return Err(StoreError::Invalid(format!("end {why}")));
            }
            if e < self.start {
                return Err(StoreError::Invalid(format!(
                    "end ({}) is before start ({})",
                    crate::fmt_t(e),
                    crate::fmt_t(self.start)
                )));
            }
        }
        if !(0.0..=1.0).contains(&self.confidence) {
            return Err(StoreError::Invalid(format!(
                "confidence {} is not between 0 and 1",
                self.confidence
            )));
        }
        if self.source.as_str().trim().is_empty() || self.source.as_str().len() > 64 {
            return Err(StoreError::Invalid(
                "source must be 1 to 64 characters".into(),
            ));
        }
        if self.note.as_ref().is_some_and(|n| n.len() > MAX_NOTE_BYTES) {
            return Err(StoreError::Invalid(format!(
                "note is longer than {MAX_NOTE_BYTES} bytes"
            )));
        }
        Ok(())
    }
}

/// Which labels to list.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LabelQuery {
    /// Unix seconds (inclusive).
    pub from: f64,
    /// Unix seconds (inclusive).
    pub to: f64,
    /// At most this many.
    pub limit: usize,
}

impl Default for LabelQuery {
    fn default() -> Self {
        Self {
            from: f64::MIN,
            to: f64::MAX,
            limit: usize::MAX,
        }
    }
}

/// A stored label, as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredLabel {
    /// Id.
    pub id: i64,
    /// RFC 3339.
    pub start: String,
    /// RFC 3339; `None` while an alert still fires.
    pub end: Option<String>,
    /// `anomaly` / `normal`.
    pub label: Verdict,
    /// Anomaly type, when known.
    pub anomaly_type: Option<String>,
    /// Who said so.
    pub source: LabelSource,
    /// 0 to 1.
    pub confidence: f64,
    /// Free text.
    pub note: Option<String>,
    /// The event it is a verdict on.
    pub event_id: Option<u64>,
    /// Alertmanager's fingerprint.
    pub fingerprint: Option<String>,
    /// When it was stored, RFC 3339.
    pub created: String,
    /// Unix seconds of start.
    #[serde(skip)]
    pub start_unix: f64,
    /// Unix seconds of end.
    #[serde(skip)]
    pub end_unix: Option<f64>,
}

impl StoredLabel {
    /// As the detector's training reads it; an open interval ends at `now`.
    pub fn to_label(&self, now: f64) -> vigil_models::labels::Label {
        vigil_models::labels::Label {
            start: self.start_unix,
            end: self.end_unix.unwrap_or(now).max(self.start_unix),
            anomaly: self.label == Verdict::Anomaly,
            source: self.source.clone(),
            confidence: self.confidence,
            kind: self.anomaly_type.as_deref().and_then(AnomalyKind::parse),
        }
    }
}

pub(crate) fn label_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredLabel> {
    let start: f64 = r.get(1)?;
    let end: Option<f64> = r.get(2)?;
    let label: String = r.get(3)?;
    Ok(StoredLabel {
        id: r.get(0)?,
        start: crate::fmt_t(start),
        end: end.map(crate::fmt_t),
        label: Verdict::parse(&label).unwrap_or(Verdict::Anomaly),
        anomaly_type: r.get(4)?,
        source: LabelSource::parse(&r.get::<_, String>(5)?),
        confidence: r.get(6)?,
        note: r.get(7)?,
        event_id: r
            .get::<_, Option<i64>>(8)?
            .and_then(|v| u64::try_from(v).ok()),
        fingerprint: r.get(9)?,
        created: crate::fmt_t(r.get(10)?),
        start_unix: start,
        end_unix: end,
    })
}
