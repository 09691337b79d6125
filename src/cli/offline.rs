//! The offline pipeline shared by `train`, `score` and `eval`: CSV rows → the same feature window the
//! agent uses → a detector.

use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use ndarray::ArrayView1;
use vigil::features::{FeatureVector, Horizons, Window};
use vigil_models::{Detector, ModelFile, Score};

use super::input::{CsvSource, InputError};

/// A byte-based progress bar on stderr (hidden when stderr is not a terminal).
pub(crate) fn progress(total: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb.set_message(what.to_owned());
    pb
}

/// Loads a model; damage is input error (exit 2).
pub(crate) fn load_model(path: &Path) -> anyhow::Result<ModelFile> {
    ModelFile::load(path).map_err(|e| anyhow::Error::new(InputError::file(path, e.to_string())))
}

/// Streams `csv` through the model's window and detector, calling `each(source, score)` per row
/// (`None` inside the warm-up).
pub(crate) fn score_csv(
    model: &ModelFile,
    csv: &Path,
    mut each: impl FnMut(&CsvSource, Option<&Score>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut src = CsvSource::open(csv)?;
    let horizons = Horizons::new(model.summary.short_horizon, model.summary.long_horizon)?;
    let mut window = Window::new(src.signals(), horizons);
    model.check_schema(window.schema()).map_err(|e| {
        InputError::file(
            csv,
            format!("{e} (the CSV's columns do not match the columns the model was trained on)"),
        )
    })?;
    let mut fv = FeatureVector::new(window.schema());
    let pb = progress(src.size(), "scoring");
    let mut n: u64 = 0;
    while src.next_row()? {
        window.push(src.timestamp, &src.values)?;
        if window.is_warm() {
            window.extract(&mut fv)?;
            let s = model.detector.score(ArrayView1::from(fv.values()));
            each(&src, Some(&s))?;
        } else {
            each(&src, None)?;
        }
        n += 1;
        if n.is_multiple_of(8192) {
            pb.set_position(src.position());
        }
    }
    pb.finish_and_clear();
    Ok(())
}
