//! One tick of raw signal values.

use std::time::SystemTime;

use crate::{SignalSet, SignalSpec};

/// One tick of raw signals over a [`SignalSet`]. `NaN` marks a value that is missing this tick (a collector
/// failed, a device does not report it); it is never replaced by zero.
///
/// A `Sample` is allocated once and refilled every tick: [`Sample::reset`] marks everything missing and
/// collectors write their slice through [`Sample::values_mut`].
#[derive(Debug, Clone)]
pub struct Sample {
    signals: SignalSet,
    timestamp: SystemTime,
    values: Vec<f64>,
}

impl Sample {
    /// A sample with every value missing.
    pub fn new(signals: SignalSet) -> Self {
        let values = vec![f64::NAN; signals.len()];
        Self {
            signals,
            timestamp: SystemTime::UNIX_EPOCH,
            values,
        }
    }

    /// Marks every value missing and stamps the sample with `timestamp`.
    pub fn reset(&mut self, timestamp: SystemTime) {
        self.timestamp = timestamp;
        self.values.fill(f64::NAN);
    }

    /// Wall-clock time of the tick.
    pub fn timestamp(&self) -> SystemTime {
        self.timestamp
    }

    /// The signal set this sample covers.
    pub fn signals(&self) -> &SignalSet {
        &self.signals
    }

    /// Values in signal order.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// Values in signal order, for collectors to fill.
    pub fn values_mut(&mut self) -> &mut [f64] {
        &mut self.values
    }

    /// The value of the signal called `name`; `None` when no such signal exists, `Some(NaN)` when it is
    /// missing this tick.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.signals.index_of(name).map(|i| self.values[i])
    }

    /// `(signal, value)` pairs in signal order.
    pub fn iter(&self) -> impl Iterator<Item = (&SignalSpec, f64)> {
        self.signals.specs().iter().zip(self.values.iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Unit;

    #[test]
    fn reset_marks_every_value_missing() {
        let set = SignalSet::new(vec![
            SignalSpec::gauge("a", Unit::Count),
            SignalSpec::gauge("b", Unit::Bytes),
        ])
        .unwrap();
        let mut s = Sample::new(set);
        s.values_mut().copy_from_slice(&[1.0, 2.0]);
        assert_eq!(s.get("b"), Some(2.0));
        s.reset(SystemTime::now());
        assert!(s.get("a").is_some_and(f64::is_nan));
        assert_eq!(s.get("zzz"), None);
    }
}
