//! The per-call guard the macro expansion creates.

use std::sync::OnceLock;

use crate::clock::{self, Stamp};
use crate::series::{Series, series, series_cached};
use crate::{AnomalyType, trace};

/// A call site whose labels are both literals: the series is resolved once.
#[doc(hidden)]
pub struct CallSite {
    series: OnceLock<&'static Series>,
    model: &'static str,
    stage: &'static str,
}

impl CallSite {
    #[doc(hidden)]
    pub const fn new(model: &'static str, stage: &'static str) -> Self {
        Self {
            series: OnceLock::new(),
            model,
            stage,
        }
    }
}

/// One annotated call in progress. Finishing it records the duration and the outcome; dropping it
/// unfinished records `panic` (while unwinding) or `cancelled` (an async call dropped before completion).
#[must_use]
#[derive(Debug)]
pub struct Call {
    series: &'static Series,
    start: Stamp,
    finished: bool,
}

/// Starts a call for labels known only at run time.
#[doc(hidden)]
#[inline]
pub fn begin(model: &str, stage: &str) -> Call {
    Call::start(series_cached(model, stage))
}

/// Starts a call at a site with literal labels.
#[doc(hidden)]
#[inline]
pub fn begin_at(site: &'static CallSite) -> Call {
    Call::start(site.series.get_or_init(|| series(site.model, site.stage)))
}

impl Call {
    #[inline]
    fn start(series: &'static Series) -> Self {
        Self {
            series,
            start: clock::now(),
            finished: false,
        }
    }

    /// Records the call's duration and, when `anomaly` is `Some`, the failure (with the current trace id
    /// as exemplar, when there is one).
    #[inline]
    pub fn finish(mut self, anomaly: Option<AnomalyType>) {
        self.finished = true;
        self.record(anomaly);
    }

    #[inline]
    fn record(&self, anomaly: Option<AnomalyType>) {
        let nanos = clock::elapsed_nanos(self.start);
        let bucket = self.series.observe(nanos);
        if let Some(kind) = anomaly {
            self.series
                .record_failure(kind, bucket, nanos as f64 / 1e9, trace::current());
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if !self.finished {
            let kind = if std::thread::panicking() {
                AnomalyType::Panic
            } else {
                AnomalyType::Cancelled
            };
            self.record(Some(kind));
        }
    }
}
