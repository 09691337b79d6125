//! The features crate's error type.

/// What can go wrong when building windows, pushing rows or fitting drift references.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FeatureError {
    /// Two signals of a set share a name.
    #[error("signal `{0}` is declared twice")]
    DuplicateSignal(String),
    /// Horizons out of order or zero.
    #[error("invalid horizons: {0}")]
    Horizons(String),
    /// A row has a different number of values than the window has signals.
    #[error("row has {got} values but the window has {expected} signals")]
    RowLength {
        /// Signals in the window.
        expected: usize,
        /// Values in the row.
        got: usize,
    },
    /// Timestamps must strictly increase.
    #[error(
        "timestamp {got} is not after the previous one ({previous}); rows must be sorted without duplicates"
    )]
    TimeNotIncreasing {
        /// The previous timestamp, seconds.
        previous: f64,
        /// The offending timestamp, seconds.
        got: f64,
    },
    /// A timestamp is NaN or infinite.
    #[error("timestamp {0} is not a finite number of seconds")]
    BadTimestamp(f64),
    /// Feature vectors do not match the schema they are used with.
    #[error("feature schema mismatch: expected {expected}, got {got}")]
    SchemaMismatch {
        /// Hash (or length) expected.
        expected: String,
        /// Hash (or length) found.
        got: String,
    },
    /// A drift reference needs data.
    #[error("a drift reference needs at least {needed} rows, got {got}")]
    TooFewRows {
        /// Rows needed.
        needed: usize,
        /// Rows given.
        got: usize,
    },
}
