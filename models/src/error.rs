//! The models crate's error type.

/// What can go wrong fitting, loading or using a model. Messages say what to do.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Training needs more rows than it got.
    #[error(
        "training needs at least {needed} windows, got {got}; collect more data (a longer warm-up or more CSV rows)"
    )]
    TooFewRows {
        /// Rows needed.
        needed: usize,
        /// Rows given.
        got: usize,
    },
    /// A parameter is out of range.
    #[error("invalid parameter `{name}`: {message}")]
    Param {
        /// The parameter.
        name: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Input width or schema differs from the model's.
    #[error(
        "schema mismatch: the model expects {expected}, the input has {got}: {detail}; retrain on this input's features or use the matching model"
    )]
    SchemaMismatch {
        /// What the model expects.
        expected: String,
        /// What the input has.
        got: String,
        /// Which signals differ, in words.
        detail: String,
    },
    /// The model file could not be used.
    #[error("model file {path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// The output file could not be written (or would have overwritten an input).
    #[error(transparent)]
    Output(crate::OutputError),
    /// The thread training a model ended without sending one (it panicked or could not start).
    #[error(
        "the training thread stopped before it sent a model; the engine tries again at the next refit"
    )]
    TrainerStopped,
    /// k-means failed.
    #[error("clustering failed: {0}")]
    Clustering(String),
}
