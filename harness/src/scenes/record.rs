//! `--record DIR`: each scene's per-tick signals as the CSV `vigil train/score/eval` read, and the
//! injected faults as a labels CSV, so every scene can be replayed offline.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use vigil::features::Sample;
use vigil::models::{AnomalyKind, OutputFile};

use super::Tick;

/// When the sample was taken, Unix seconds.
pub(crate) fn unix_seconds(s: &Sample) -> f64 {
    s.timestamp()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// One scene's recording, written atomically when finished.
pub(crate) struct Recorder {
    signals: csv::Writer<OutputFile>,
    signals_path: PathBuf,
    labels_path: PathBuf,
    header_written: bool,
    /// Injected faults: (start, end, kind), in Unix seconds.
    faults: Vec<(f64, f64, AnomalyKind)>,
    open: Option<(f64, f64, AnomalyKind)>,
}

impl Recorder {
    /// Starts `DIR/NAME.csv` and `DIR/NAME.labels.csv` (created when finished).
    pub(crate) fn create(dir: &Path, name: &str) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("{}: cannot create the directory: {e}", dir.display()))?;
        let signals_path = dir.join(format!("{name}.csv"));
        let labels_path = dir.join(format!("{name}.labels.csv"));
        let out = OutputFile::create(&signals_path, &[])?;
        Ok(Self {
            signals: csv::Writer::from_writer(out),
            signals_path,
            labels_path,
            header_written: false,
            faults: Vec::new(),
            open: None,
        })
    }

    pub(crate) fn push(&mut self, tick: &Tick) -> anyhow::Result<()> {
        let s = &tick.sample;
        if !self.header_written {
            let mut header = vec!["timestamp".to_owned()];
            header.extend(
                s.signals()
                    .specs()
                    .iter()
                    .map(vigil::features::vocab::column_name),
            );
            self.signals.write_record(&header)?;
            self.header_written = true;
        }
        let t = unix_seconds(s);
        let mut row = Vec::with_capacity(s.values().len() + 1);
        row.push(format!("{t:.3}"));
        row.extend(s.values().iter().map(|v| {
            if v.is_finite() {
                format!("{v}")
            } else {
                String::new()
            }
        }));
        self.signals.write_record(&row)?;
        match (&mut self.open, tick.fault) {
            (Some(o), Some(k)) if o.2 == k => o.1 = t,
            (open, fault) => {
                if let Some(o) = open.take() {
                    self.faults.push(o);
                }
                *open = fault.map(|k| (t, t, k));
            }
        }
        Ok(())
    }

    /// Writes the labels and makes both files visible; returns their paths.
    pub(crate) fn finish(mut self) -> anyhow::Result<(PathBuf, PathBuf)> {
        if let Some(o) = self.open.take() {
            self.faults.push(o);
        }
        let out = self
            .signals
            .into_inner()
            .map_err(|e| anyhow::anyhow!("{}: {}", self.signals_path.display(), e.error()))?;
        out.commit()?;
        let mut labels = csv::Writer::from_writer(OutputFile::create(&self.labels_path, &[])?);
        labels.write_record(["start", "end", "label", "anomaly_type", "source"])?;
        for (start, end, kind) in &self.faults {
            labels.write_record([
                format!("{start:.3}"),
                format!("{end:.3}"),
                "anomaly".to_owned(),
                kind.as_str().to_owned(),
                "injected".to_owned(),
            ])?;
        }
        labels
            .into_inner()
            .map_err(|e| anyhow::anyhow!("{}: {}", self.labels_path.display(), e.error()))?
            .commit()?;
        Ok((self.signals_path, self.labels_path))
    }
}
