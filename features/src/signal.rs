//! Signal descriptions: what a raw value means.

use std::borrow::Cow;
use std::sync::Arc;

/// Unit of a raw signal, in base units (Prometheus conventions).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    /// A plain count (tasks, threads, file descriptors, events).
    Count,
    /// A dimensionless ratio, usually in `[0, 1]`.
    Ratio,
    /// Seconds.
    Seconds,
    /// Bytes.
    Bytes,
    /// Events per second.
    PerSecond,
    /// Degrees Celsius.
    Celsius,
    /// Watts.
    Watts,
    /// A number of unknown scale (CSV columns the vocabulary does not know).
    Value,
}

impl Unit {
    /// Short name used in schemas and docs (`count`, `ratio`, `seconds`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "count",
            Unit::Ratio => "ratio",
            Unit::Seconds => "seconds",
            Unit::Bytes => "bytes",
            Unit::PerSecond => "per_second",
            Unit::Celsius => "celsius",
            Unit::Watts => "watts",
            Unit::Value => "value",
        }
    }
}

/// Whether a signal is a point-in-time level or a monotonic total.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignalKind {
    /// A level that can go up and down (queue depth, resident memory).
    Gauge,
    /// A cumulative, monotonically increasing total (allocations since start). Feature extraction turns
    /// counters into per-second rates; a decrease means the source restarted.
    Counter,
}

/// One named raw signal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SignalSpec {
    /// Stable snake_case name, e.g. `tokio_alive_tasks` or `gpu0_memory_used_bytes`.
    pub name: Cow<'static, str>,
    /// Unit of the value.
    pub unit: Unit,
    /// Gauge or cumulative counter.
    pub kind: SignalKind,
}

impl SignalSpec {
    /// A gauge with a static name.
    pub const fn gauge(name: &'static str, unit: Unit) -> Self {
        Self {
            name: Cow::Borrowed(name),
            unit,
            kind: SignalKind::Gauge,
        }
    }

    /// A cumulative counter with a static name.
    pub const fn counter(name: &'static str, unit: Unit) -> Self {
        Self {
            name: Cow::Borrowed(name),
            unit,
            kind: SignalKind::Counter,
        }
    }

    /// A gauge or counter whose name is built at run time (per-device GPU signals).
    pub fn named(name: String, unit: Unit, kind: SignalKind) -> Self {
        Self {
            name: Cow::Owned(name),
            unit,
            kind,
        }
    }
}

/// The ordered list of signals one agent collects. Cheap to clone (shared).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalSet {
    specs: Arc<[SignalSpec]>,
}

impl SignalSet {
    /// Builds a set; duplicate names are rejected with the name that repeats.
    pub fn new(specs: Vec<SignalSpec>) -> Result<Self, crate::FeatureError> {
        let mut names: Vec<&str> = specs.iter().map(|s| s.name.as_ref()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(crate::FeatureError::DuplicateSignal(w[0].to_owned()));
        }
        Ok(Self {
            specs: specs.into(),
        })
    }

    /// Number of signals.
    pub fn len(&self) -> usize {
        self.specs.len()
    }

    /// True when no signal is collected.
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// The signals, in collection order.
    pub fn specs(&self) -> &[SignalSpec] {
        &self.specs
    }

    /// Position of the signal called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.specs.iter().position(|s| s.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_signal_names_are_rejected_by_name() {
        let err = SignalSet::new(vec![
            SignalSpec::gauge("a", Unit::Count),
            SignalSpec::gauge("b", Unit::Count),
            SignalSpec::counter("a", Unit::Count),
        ])
        .unwrap_err();
        assert_eq!(err, crate::FeatureError::DuplicateSignal("a".into()));
        assert!(err.to_string().contains("`a`"), "{err}");
    }
}
