//! The offline pipeline shared by `train`, `score` and `eval`: CSV rows → the same feature window the
//! agent uses → a detector.

use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use ndarray::ArrayView1;
use vigil::features::{FeatureVector, Horizons, Window};
use vigil_models::{Detector, ModelFile, Score};

use super::input::{CsvSource, InputError, ReadOptions};

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

/// Nearest-rank quantile of a sorted slice; `NaN` when it is empty.
pub(crate) fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Loads a model; damage is input error (exit 2).
pub(crate) fn load_model(path: &Path) -> anyhow::Result<ModelFile> {
    ModelFile::load(path).map_err(|e| anyhow::Error::new(InputError::file(path, e.to_string())))
}

/// Refuses a window whose features overflowed (values so large that their squares are infinite),
/// naming the column, instead of training a model that cannot be saved or scoring garbage.
pub(crate) fn check_features_finite(
    fv: &FeatureVector,
    names: &[String],
    src: &CsvSource,
) -> Result<(), InputError> {
    if let Some(i) = fv.values().iter().position(|v| v.is_infinite()) {
        let feature = names.get(i).map_or("?", String::as_str);
        let column = vigil_models::signal_of_feature(feature);
        return Err(InputError {
            file: src.path().to_owned(),
            line: Some(src.line),
            column: Some(column.to_owned()),
            message: format!(
                "values this large overflow the window statistics (feature `{feature}` is infinite); \
                 rescale the column (e.g. bytes to GiB) so its values stay below about 1e150"
            ),
        });
    }
    Ok(())
}

/// Too few rows for one window (or for training): names the file and how many rows are needed.
pub(crate) fn too_few_rows(path: &Path, rows: u64, needed: usize, what: &str) -> InputError {
    InputError::file(
        path,
        format!("has {rows} data row(s); {what} needs at least {needed} rows"),
    )
}

/// Streams `csv` through the model's window and detector, calling `each(source, score)` per row
/// (`None` inside the warm-up).
pub(crate) fn score_csv(
    model: &ModelFile,
    csv: &Path,
    options: ReadOptions,
    mut each: impl FnMut(&CsvSource, Option<&Score>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut src = CsvSource::open(csv, options)?;
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
            check_features_finite(&fv, &model.feature_names, &src)?;
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
    if let Some(report) = src.skipped_report() {
        eprintln!("vigil: {report}");
    }
    let long = model.summary.long_horizon;
    if n < long as u64 {
        return Err(too_few_rows(
            csv,
            n,
            long,
            &format!("one window of the model's long horizon ({long} ticks)"),
        )
        .into());
    }
    Ok(())
}
