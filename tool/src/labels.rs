//! Labels CSV: `start,end,label[,anomaly_type][,source][,confidence]`.

use std::path::Path;

use crate::input::{InputError, parse_timestamp, quoted};

pub use vigil_models::labels::{Label, LabelSource, label_at};

/// Reads a labels CSV (`start,end,label[,anomaly_type,source,confidence]`), naming the line and column
/// of any bad value.
pub fn read_labels(path: &Path) -> Result<Vec<Label>, InputError> {
    let file = std::fs::File::open(path)
        .map_err(|e| InputError::file(path, format!("cannot open: {e}")))?;
    let mut r = crate::input::csv_reader(file);
    let headers: Vec<String> = r
        .headers()
        .map_err(|e| InputError::file(path, format!("cannot read the header: {e}")))?
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let (Some(start), Some(end), Some(label)) = (col("start"), col("end"), col("label")) else {
        return Err(InputError::file(
            path,
            "the header needs `start,end,label` (optional: anomaly_type, source, confidence)",
        ));
    };
    let source = col("source");
    let confidence = col("confidence");
    let kind_col = col("anomaly_type");
    let mut out = Vec::new();
    for rec in r.records() {
        let rec = rec.map_err(|e| InputError::file(path, format!("malformed CSV: {e}")))?;
        let line = rec.position().map_or(0, |p| p.line());
        let err = |c: usize, m: String| InputError {
            file: path.to_owned(),
            line: Some(line),
            column: headers.get(c).cloned(),
            message: m,
        };
        let ts = |c: usize| {
            let v = rec.get(c).unwrap_or("");
            let t = parse_timestamp(v)
                .ok_or_else(|| err(c, format!("`{}` is not a timestamp", quoted(v))))?;
            match vigil_features::time::out_of_range(t) {
                Some(why) => Err(err(c, format!("timestamp {why}"))),
                None => Ok(t),
            }
        };
        let (s, e) = (ts(start)?, ts(end)?);
        if e < s {
            return Err(err(end, "end is before start".into()));
        }
        let anomaly = match rec
            .get(label)
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
            .as_str()
        {
            "anomaly" => true,
            "normal" => false,
            other => {
                return Err(err(
                    label,
                    format!("`{}` is not `anomaly` or `normal`", quoted(other)),
                ));
            }
        };
        let source = source
            .and_then(|c| rec.get(c))
            .filter(|v| !v.trim().is_empty())
            .map_or(LabelSource::Human, LabelSource::parse);
        let conf = match confidence.and_then(|c| rec.get(c).map(|v| (c, v.trim()))) {
            Some((_, "")) | None => source.default_confidence(),
            Some((c, v)) => match v.parse::<f64>() {
                Ok(x) if (0.0..=1.0).contains(&x) => x,
                _ => {
                    return Err(err(
                        c,
                        format!("`{}` is not a confidence between 0 and 1", quoted(v)),
                    ));
                }
            },
        };
        let kind = match kind_col.and_then(|c| rec.get(c).map(|v| (c, v.trim()))) {
            Some((_, "")) | None => None,
            Some((c, v)) => match vigil_models::AnomalyKind::parse(v) {
                Some(k) => Some(k),
                None => {
                    let known: Vec<&str> = vigil_models::AnomalyKind::ALL
                        .iter()
                        .map(|k| k.as_str())
                        .collect();
                    return Err(err(
                        c,
                        format!(
                            "`{}` is not an anomaly type ({})",
                            quoted(v),
                            known.join(", ")
                        ),
                    ));
                }
            },
        };
        out.push(Label {
            start: s,
            end: e,
            anomaly,
            source,
            confidence: conf,
            kind,
        });
    }
    Ok(out)
}
