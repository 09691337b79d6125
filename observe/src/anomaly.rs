//! What went wrong in a call, and how errors are classified.

/// The closed set of anomaly types an annotated call can record (bounded label values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AnomalyType {
    /// The call timed out (`tokio::time::error::Elapsed`, `io::ErrorKind::TimedOut`, or a user
    /// classification).
    Timeout,
    /// The call returned, but its output failed the output check (NaN or infinite values).
    NanOutput,
    /// Out of memory (`TryReserveError`, `io::ErrorKind::OutOfMemory`, or a user classification).
    Oom,
    /// An async call was dropped before it completed (client went away, `select!` lost, timeout around
    /// it).
    Cancelled,
    /// The call panicked (recorded, then the panic continues).
    Panic,
    /// Any other error.
    Error,
}

impl AnomalyType {
    /// All types, in label order.
    pub const ALL: [AnomalyType; 6] = [
        AnomalyType::Timeout,
        AnomalyType::NanOutput,
        AnomalyType::Oom,
        AnomalyType::Cancelled,
        AnomalyType::Panic,
        AnomalyType::Error,
    ];

    /// The `anomaly_type` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            AnomalyType::Timeout => "timeout",
            AnomalyType::NanOutput => "nan_output",
            AnomalyType::Oom => "oom",
            AnomalyType::Cancelled => "cancelled",
            AnomalyType::Panic => "panic",
            AnomalyType::Error => "error",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// Whether this anomaly also counts in `ai_inference_errors_total` (the call failed: an `Err`, a
    /// timeout, OOM or a panic; a NaN output or a cancellation is an anomaly but not an error return).
    pub fn is_error(self) -> bool {
        !matches!(self, AnomalyType::NanOutput | AnomalyType::Cancelled)
    }
}

/// Implement for your error type to choose its anomaly type; it takes precedence over the defaults.
///
/// ```
/// use vigil_observe::{AnomalyType, ClassifyAnomaly};
/// enum InferError { Deadline, CudaOom, BadInput }
/// impl ClassifyAnomaly for InferError {
///     fn anomaly_type(&self) -> AnomalyType {
///         match self {
///             InferError::Deadline => AnomalyType::Timeout,
///             InferError::CudaOom => AnomalyType::Oom,
///             InferError::BadInput => AnomalyType::Error,
///         }
///     }
/// }
/// ```
pub trait ClassifyAnomaly {
    /// The anomaly type of this error.
    fn anomaly_type(&self) -> AnomalyType;
}

/// The defaults for any `std::error::Error`: walks the `source()` chain for
/// `tokio::time::error::Elapsed` or `io::ErrorKind::TimedOut` (timeout), `TryReserveError` or
/// `io::ErrorKind::OutOfMemory` (oom); anything else is `error`.
pub fn classify_std_error(e: &(dyn std::error::Error + 'static)) -> AnomalyType {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<tokio::time::error::Elapsed>() {
            return AnomalyType::Timeout;
        }
        if err.is::<std::collections::TryReserveError>() {
            return AnomalyType::Oom;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::TimedOut => return AnomalyType::Timeout,
                std::io::ErrorKind::OutOfMemory => return AnomalyType::Oom,
                _ => {}
            }
        }
        cur = err.source();
    }
    AnomalyType::Error
}

/// Autoref specialisation: `(&&&ErrProbe(&e)).__vigil_anomaly()` picks the most specific of
/// [`ViaUser`] (`E: ClassifyAnomaly`), [`ViaStdError`] (`E: Error + 'static`) and [`ViaAny`].
#[doc(hidden)]
pub struct ErrProbe<'a, E>(pub &'a E);

#[doc(hidden)]
pub trait ViaUser {
    fn __vigil_anomaly(&self) -> AnomalyType;
}

impl<E: ClassifyAnomaly> ViaUser for &&ErrProbe<'_, E> {
    fn __vigil_anomaly(&self) -> AnomalyType {
        self.0.anomaly_type()
    }
}

#[doc(hidden)]
pub trait ViaStdError {
    fn __vigil_anomaly(&self) -> AnomalyType;
}

impl<E: std::error::Error + 'static> ViaStdError for &ErrProbe<'_, E> {
    fn __vigil_anomaly(&self) -> AnomalyType {
        classify_std_error(self.0)
    }
}

#[doc(hidden)]
pub trait ViaAny {
    fn __vigil_anomaly(&self) -> AnomalyType;
}

impl<E> ViaAny for ErrProbe<'_, E> {
    fn __vigil_anomaly(&self) -> AnomalyType {
        AnomalyType::Error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Custom;
    impl ClassifyAnomaly for Custom {
        fn anomaly_type(&self) -> AnomalyType {
            AnomalyType::Oom
        }
    }
    struct Opaque;

    #[derive(Debug)]
    struct Wrapper(std::io::Error);
    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("wrapped")
        }
    }
    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    #[allow(clippy::needless_borrow)] // autoref specialisation needs exactly these references
    fn the_most_specific_classification_wins() {
        let io = std::io::Error::from(std::io::ErrorKind::TimedOut);
        assert_eq!((&&&ErrProbe(&Custom)).__vigil_anomaly(), AnomalyType::Oom);
        assert_eq!((&&&ErrProbe(&io)).__vigil_anomaly(), AnomalyType::Timeout);
        assert_eq!((&&&ErrProbe(&Opaque)).__vigil_anomaly(), AnomalyType::Error);
        let wrapped = Wrapper(std::io::Error::from(std::io::ErrorKind::OutOfMemory));
        assert_eq!((&&&ErrProbe(&wrapped)).__vigil_anomaly(), AnomalyType::Oom);
        let other = std::io::Error::other("disk on fire");
        assert_eq!((&&&ErrProbe(&other)).__vigil_anomaly(), AnomalyType::Error);
    }

    #[test]
    fn reserve_failures_are_oom() {
        let e = Vec::<u8>::new().try_reserve(usize::MAX).unwrap_err();
        assert_eq!(classify_std_error(&e), AnomalyType::Oom);
    }
}
