//! Feature names, units and the schema hash every model file records.

use crate::{SignalKind, SignalSet};

/// Short and long horizons, in ticks (samples), whatever the tick length is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Horizons {
    short: usize,
    long: usize,
}

impl Default for Horizons {
    /// 10 and 60 ticks.
    fn default() -> Self {
        Self {
            short: 10,
            long: 60,
        }
    }
}

impl Horizons {
    /// `2 ≤ short ≤ long ≤ 100_000`.
    pub fn new(short: usize, long: usize) -> Result<Self, crate::FeatureError> {
        if short < 2 || short > long || long > 100_000 {
            return Err(crate::FeatureError::Horizons(format!(
                "need 2 <= short <= long <= 100000 ticks, got short={short}, long={long}"
            )));
        }
        Ok(Self { short, long })
    }

    /// Short horizon, ticks.
    pub fn short(&self) -> usize {
        self.short
    }

    /// Long horizon, ticks (also the window's capacity).
    pub fn long(&self) -> usize {
        self.long
    }
}

/// Statistics computed per signal, in schema order.
pub(crate) const STATS_PER_SIGNAL: usize = 11;

/// The ordered list of features a window produces, with units and a stable hash.
///
/// For every signal (counters first turned into per-second rates, named `<signal>_rate`):
/// `last`, then `mean`, `std`, `max`, `slope` over the short horizon, the same over the long horizon,
/// `change` = last − long-horizon mean, and the `median` over the short horizon (a level that one spike
/// does not move). Names read `<base>.<stat>_<ticks>`, e.g.
/// `tokio_alive_tasks.slope_60`. A host without a GPU has no `gpu*` features and so its own hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureSchema {
    names: Vec<String>,
    units: Vec<String>,
    hash: u64,
}

impl FeatureSchema {
    /// The schema of a window over `signals` with `horizons`.
    pub fn new(signals: &SignalSet, horizons: Horizons) -> Self {
        let (s, l) = (horizons.short, horizons.long);
        let mut names = Vec::with_capacity(signals.len() * STATS_PER_SIGNAL);
        let mut units = Vec::with_capacity(names.capacity());
        for spec in signals.specs() {
            let (base, unit) = match spec.kind {
                SignalKind::Gauge => (spec.name.to_string(), spec.unit.as_str().to_owned()),
                SignalKind::Counter => (
                    format!("{}_rate", spec.name),
                    format!("{}/s", spec.unit.as_str()),
                ),
            };
            let slope_unit = format!("{unit}/s");
            let entries: [(String, &str); STATS_PER_SIGNAL] = [
                ("last".into(), &unit),
                (format!("mean_{s}"), &unit),
                (format!("std_{s}"), &unit),
                (format!("max_{s}"), &unit),
                (format!("slope_{s}"), &slope_unit),
                (format!("mean_{l}"), &unit),
                (format!("std_{l}"), &unit),
                (format!("max_{l}"), &unit),
                (format!("slope_{l}"), &slope_unit),
                (format!("change_{l}"), &unit),
                (format!("median_{s}"), &unit),
            ];
            for (stat, u) in entries {
                names.push(format!("{base}.{stat}"));
                units.push(u.to_owned());
            }
        }
        Self::from_parts(names, units)
    }

    /// A schema from explicit names and units (model files, CSV headers).
    pub fn from_parts(names: Vec<String>, units: Vec<String>) -> Self {
        let hash = schema_hash(&names, &units);
        Self { names, units, hash }
    }

    /// Feature names in order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Units, parallel to [`FeatureSchema::names`].
    pub fn units(&self) -> &[String] {
        &self.units
    }

    /// Number of features.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when there are no features.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Stable 64-bit hash of the ordered names and units (FNV-1a; the same in every process, build and
    /// platform).
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// The hash as 16 lowercase hex digits, as model files and metrics show it.
    pub fn hash_hex(&self) -> String {
        format!("{:016x}", self.hash)
    }
}

fn schema_hash(names: &[String], units: &[String]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
    };
    eat(b"vigil-features/schema/v1\x1e");
    for (n, u) in names.iter().zip(units) {
        eat(n.as_bytes());
        eat(b"\x1f");
        eat(u.as_bytes());
        eat(b"\x1e");
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SignalSpec, Unit};

    fn set(specs: Vec<SignalSpec>) -> SignalSet {
        SignalSet::new(specs).unwrap()
    }

    #[test]
    fn names_and_units_follow_the_documented_pattern() {
        let s = FeatureSchema::new(
            &set(vec![
                SignalSpec::gauge("tasks", Unit::Count),
                SignalSpec::counter("allocs", Unit::Bytes),
            ]),
            Horizons::new(5, 30).unwrap(),
        );
        assert_eq!(s.len(), 22);
        assert_eq!(s.names()[0], "tasks.last");
        assert_eq!(s.names()[4], "tasks.slope_5");
        assert_eq!(s.units()[4], "count/s");
        assert_eq!(s.names()[9], "tasks.change_30");
        assert_eq!(s.names()[10], "tasks.median_5");
        assert_eq!(s.names()[11], "allocs_rate.last");
        assert_eq!(s.units()[11], "bytes/s");
        assert_eq!(s.units()[19], "bytes/s/s");
    }

    #[test]
    fn hash_is_a_fixed_value_across_runs_and_processes() {
        // A golden value: if this changes, every stored model file's schema hash changes with it.
        let s = FeatureSchema::new(
            &set(vec![
                SignalSpec::gauge("tokio_alive_tasks", Unit::Count),
                SignalSpec::counter("alloc_allocations", Unit::Count),
            ]),
            Horizons::default(),
        );
        assert_eq!(s.hash_hex(), "c87bac012f6394b1");
    }

    #[test]
    fn hash_changes_when_a_feature_is_added_or_reordered() {
        let a = SignalSpec::gauge("a", Unit::Count);
        let b = SignalSpec::gauge("b", Unit::Bytes);
        let h = Horizons::default();
        let ab = FeatureSchema::new(&set(vec![a.clone(), b.clone()]), h);
        let ba = FeatureSchema::new(&set(vec![b.clone(), a.clone()]), h);
        let a_only = FeatureSchema::new(&set(vec![a.clone()]), h);
        let other_h = FeatureSchema::new(
            &set(vec![a.clone(), b.clone()]),
            Horizons::new(5, 60).unwrap(),
        );
        assert_ne!(ab.hash(), ba.hash());
        assert_ne!(ab.hash(), a_only.hash());
        assert_ne!(ab.hash(), other_h.hash());
        assert_eq!(ab.hash(), FeatureSchema::new(&set(vec![a, b]), h).hash());
    }

    #[test]
    fn horizons_are_validated() {
        assert!(Horizons::new(1, 10).is_err());
        assert!(Horizons::new(20, 10).is_err());
        assert!(Horizons::new(10, 10).is_ok());
    }
}
