//! Alertmanager webhooks (payload version 4) as labels: a firing alert opens an anomaly interval at
//! `startsAt`, the resolved notification closes it at `endsAt`; joined on `fingerprint` + `startsAt`.

use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, Transaction, params};
use serde::Serialize;
use vigil_features::time::parse_timestamp;
use vigil_models::AnomalyKind;

/// One alert of a webhook, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookAlert {
    /// `true` for `firing`, `false` for `resolved`.
    pub firing: bool,
    /// Alertmanager's fingerprint of the label set.
    pub fingerprint: String,
    /// Unix seconds.
    pub starts_at: f64,
    /// Unix seconds; `None` while firing (Alertmanager sends year 1).
    pub ends_at: Option<f64>,
    /// The alert's labels.
    pub labels: BTreeMap<String, String>,
    /// The `summary` annotation, when present.
    pub summary: Option<String>,
}

impl WebhookAlert {
    /// The `anomaly_type` label when it names a Vigil type.
    pub fn anomaly_type(&self) -> Option<AnomalyKind> {
        self.labels
            .get("anomaly_type")
            .and_then(|v| AnomalyKind::parse(v))
    }

    fn note(&self) -> String {
        let name = self.labels.get("alertname").map_or("alert", String::as_str);
        let mut note = format!("alertmanager: {name}");
        if let Some(t) = self
            .labels
            .get("anomaly_type")
            .filter(|v| AnomalyKind::parse(v).is_none())
        {
            note.push_str(&format!(" (anomaly_type {t})"));
        }
        if let Some(s) = &self.summary {
            note.push_str(": ");
            note.push_str(s);
        }
        note.truncate(crate::labels::MAX_NOTE_BYTES.min(note.len()));
        note
    }
}

/// A checked webhook payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    /// Its alerts.
    pub alerts: Vec<WebhookAlert>,
}

/// What a webhook changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AlertOutcome {
    /// New anomaly intervals (firing alerts seen for the first time).
    pub opened: usize,
    /// Intervals closed by a resolved notification.
    pub closed: usize,
    /// Notifications that changed nothing (repeats).
    pub unchanged: usize,
}

/// Most alerts accepted in one payload.
pub const MAX_ALERTS: usize = 1000;

fn obj<'a>(
    v: &'a serde_json::Value,
    what: &str,
) -> Result<&'a serde_json::Map<String, serde_json::Value>, String> {
    v.as_object()
        .ok_or_else(|| format!("{what} must be a JSON object"))
}

fn string<'a>(
    o: &'a serde_json::Map<String, serde_json::Value>,
    key: &str,
    what: &str,
) -> Result<&'a str, String> {
    match o.get(key) {
        Some(serde_json::Value::String(s)) => Ok(s),
        Some(_) => Err(format!("{what}.{key} must be a string")),
        None => Err(format!("{what} has no `{key}`")),
    }
}

impl Webhook {
    /// Parses and checks a webhook body; [`crate::StoreError::Invalid`] says what is wrong (nothing
    /// is stored from a payload that fails).
    pub fn parse(body: &[u8]) -> Result<Self, crate::StoreError> {
        Self::parse_checked(body).map_err(crate::StoreError::Invalid)
    }

    fn parse_checked(body: &[u8]) -> Result<Self, String> {
        let v: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
        let top = obj(&v, "the payload")?;
        let version = string(top, "version", "the payload")?;
        if version != "4" {
            return Err(format!(
                "webhook payload version `{version}` is not supported (Alertmanager sends version 4)"
            ));
        }
        let alerts = match top.get("alerts") {
            Some(serde_json::Value::Array(a)) => a,
            Some(_) => return Err("`alerts` must be an array".into()),
            None => return Err("the payload has no `alerts`".into()),
        };
        if alerts.len() > MAX_ALERTS {
            return Err(format!(
                "{} alerts in one payload; at most {MAX_ALERTS} (set max_alerts in the receiver)",
                alerts.len()
            ));
        }
        let mut out = Vec::with_capacity(alerts.len());
        for (i, a) in alerts.iter().enumerate() {
            let what = format!("alerts[{i}]");
            let a = obj(a, &what)?;
            let firing = match string(a, "status", &what)? {
                "firing" => true,
                "resolved" => false,
                s => return Err(format!("{what}.status `{s}` is not `firing` or `resolved`")),
            };
            let fingerprint = string(a, "fingerprint", &what)?.trim().to_owned();
            if fingerprint.is_empty() || fingerprint.len() > 128 {
                return Err(format!("{what}.fingerprint must be 1 to 128 characters"));
            }
            let time = |key: &str| -> Result<Option<f64>, String> {
                let s = string(a, key, &what)?;
                // Alertmanager writes the zero time (year 1) for "not set".
                if s.starts_with("0001-01-01") {
                    return Ok(None);
                }
                parse_timestamp(s)
                    .map(Some)
                    .ok_or_else(|| format!("{what}.{key} `{s}` is not an RFC 3339 time"))
            };
            let starts_at =
                time("startsAt")?.ok_or_else(|| format!("{what}.startsAt is not set"))?;
            let ends_at = time("endsAt")?;
            let ends_at = if firing { None } else { ends_at };
            if !firing && ends_at.is_none() {
                return Err(format!("{what} is resolved but has no endsAt"));
            }
            if ends_at.is_some_and(|e| e < starts_at) {
                return Err(format!("{what}.endsAt is before its startsAt"));
            }
            let mut labels = BTreeMap::new();
            match a.get("labels") {
                Some(serde_json::Value::Object(l)) => {
                    for (k, v) in l {
                        let v = v
                            .as_str()
                            .ok_or_else(|| format!("{what}.labels.{k} must be a string"))?;
                        labels.insert(k.clone(), v.to_owned());
                    }
                }
                Some(_) => return Err(format!("{what}.labels must be an object")),
                None => return Err(format!("{what} has no `labels`")),
            }
            let summary = a
                .get("annotations")
                .and_then(|x| x.get("summary"))
                .and_then(|s| s.as_str())
                .map(str::to_owned);
            out.push(WebhookAlert {
                firing,
                fingerprint,
                starts_at,
                ends_at,
                labels,
                summary,
            });
        }
        Ok(Self { alerts: out })
    }
}

/// Applies `hook` inside `tx`.
pub(crate) fn apply(
    tx: &Transaction<'_>,
    hook: &Webhook,
    confidence: f64,
    now: f64,
) -> rusqlite::Result<AlertOutcome> {
    let mut out = AlertOutcome::default();
    for a in &hook.alerts {
        let existing: Option<(i64, Option<f64>)> = tx
            .query_row(
                "SELECT id, end_t FROM labels WHERE fingerprint = ?1 AND start = ?2",
                params![a.fingerprint, a.starts_at],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        match (existing, a.ends_at) {
            (None, end) => {
                tx.execute(
                    "INSERT INTO labels(start, end_t, label, anomaly_type, source, confidence, note,
                     event_id, fingerprint, created)
                     VALUES (?1, ?2, 'anomaly', ?3, 'alertmanager', ?4, ?5, NULL, ?6, ?7)",
                    params![
                        a.starts_at,
                        end,
                        a.anomaly_type().map(AnomalyKind::as_str),
                        confidence,
                        a.note(),
                        a.fingerprint,
                        now,
                    ],
                )?;
                if end.is_some() {
                    out.closed += 1;
                } else {
                    out.opened += 1;
                }
            }
            (Some((id, None)), Some(end)) => {
                tx.execute(
                    "UPDATE labels SET end_t = ?1 WHERE id = ?2",
                    params![end, id],
                )?;
                out.closed += 1;
            }
            (Some(_), _) => out.unchanged += 1,
        }
    }
    Ok(out)
}
