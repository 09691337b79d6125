//! Labels CSV: `start,end,label[,anomaly_type][,source][,confidence]`.

use std::path::Path;

use super::input::{InputError, parse_timestamp};

/// One labelled interval.
#[derive(Debug, Clone)]
pub(crate) struct Label {
    pub(crate) start: f64,
    pub(crate) end: f64,
    pub(crate) anomaly: bool,
    pub(crate) source: String,
}

impl Label {
    pub(crate) fn contains(&self, t: f64) -> bool {
        t >= self.start && t <= self.end
    }
}

pub(crate) fn read_labels(path: &Path) -> Result<Vec<Label>, InputError> {
    let file = std::fs::File::open(path)
        .map_err(|e| InputError::file(path, format!("cannot open: {e}")))?;
    let mut r = csv::ReaderBuilder::new().flexible(false).from_reader(file);
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
            parse_timestamp(v).ok_or_else(|| err(c, format!("`{v}` is not a timestamp")))
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
                    format!("`{other}` is not `anomaly` or `normal`"),
                ));
            }
        };
        out.push(Label {
            start: s,
            end: e,
            anomaly,
            source: source
                .and_then(|c| rec.get(c))
                .filter(|v| !v.trim().is_empty())
                .unwrap_or("human")
                .trim()
                .to_owned(),
        });
    }
    Ok(out)
}
