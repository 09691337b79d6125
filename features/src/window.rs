//! The sliding window: a fixed-capacity ring of recent rows, and feature extraction over it.

use crate::schema::STATS_PER_SIGNAL;
use crate::stats::stats;
use crate::{FeatureError, FeatureSchema, Horizons, Sample, SignalKind, SignalSet};

/// One tick's features over a [`FeatureSchema`]: values and a mask (`true` = present). A missing value
/// is `NaN` with mask `false`, never zero.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureVector {
    values: Vec<f64>,
    mask: Vec<bool>,
    schema_hash: u64,
}

impl FeatureVector {
    /// An all-missing vector for `schema`; reuse it across ticks with [`Window::extract`].
    pub fn new(schema: &FeatureSchema) -> Self {
        Self {
            values: vec![f64::NAN; schema.len()],
            mask: vec![false; schema.len()],
            schema_hash: schema.hash(),
        }
    }

    /// Values in schema order.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// `true` where the value is present (finite).
    pub fn mask(&self) -> &[bool] {
        &self.mask
    }

    /// Hash of the schema the values follow.
    pub fn schema_hash(&self) -> u64 {
        self.schema_hash
    }

    /// Overwrites the values with a stored window's features (same schema, same order); the mask
    /// follows (`NaN` = missing). Fails when the lengths differ.
    pub fn copy_from(&mut self, values: &[f64]) -> Result<(), FeatureError> {
        if values.len() != self.values.len() {
            return Err(FeatureError::SchemaMismatch {
                expected: format!("{} features", self.values.len()),
                got: format!("{} features", values.len()),
            });
        }
        self.values.copy_from_slice(values);
        for (m, v) in self.mask.iter_mut().zip(values) {
            *m = v.is_finite();
        }
        Ok(())
    }
}

/// Median of `v` (reordered in place); `NaN` when empty.
fn median_in_place(v: &mut [f64]) -> f64 {
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    let (_, hi, _) = v.select_nth_unstable_by(n / 2, f64::total_cmp);
    let hi = *hi;
    if n % 2 == 1 {
        hi
    } else {
        let lo = v[..n / 2].iter().copied().fold(f64::NEG_INFINITY, f64::max);
        0.5 * (lo + hi)
    }
}

/// The last `long` rows of raw signals, as a ring buffer allocated once.
///
/// Both live samples ([`Window::push_sample`]) and offline rows ([`Window::push`]: a timestamp in
/// seconds and one value per signal, any tick length) go through the same code. Counters are turned into
/// per-second rates on the way in: a counter that goes down restarted from zero, so its increase is its
/// new value (as Prometheus' `rate()` treats resets), never a huge negative rate.
#[derive(Debug, Clone)]
pub struct Window {
    kinds: Vec<SignalKind>,
    horizons: Horizons,
    schema: FeatureSchema,
    cap: usize,
    len: usize,
    /// Next slot to write.
    head: usize,
    ts: Vec<f64>,
    /// Signal-major: signal `s` occupies `values[s * cap .. (s + 1) * cap]`.
    values: Vec<f64>,
    /// Last valid raw value of each counter and when it was seen.
    prev_raw: Vec<f64>,
    prev_ts: Vec<f64>,
    /// Timestamps relative to the newest row, rebuilt per extraction.
    rel_ts: Vec<f64>,
    /// Scratch for short-horizon medians (allocated once).
    scratch: Vec<f64>,
}

impl Window {
    /// A window over `signals` keeping `horizons.long()` rows.
    pub fn new(signals: &SignalSet, horizons: Horizons) -> Self {
        let cap = horizons.long();
        let n = signals.len();
        Self {
            kinds: signals.specs().iter().map(|s| s.kind).collect(),
            horizons,
            schema: FeatureSchema::new(signals, horizons),
            cap,
            len: 0,
            head: 0,
            ts: vec![f64::NAN; cap],
            values: vec![f64::NAN; n * cap],
            prev_raw: vec![f64::NAN; n],
            prev_ts: vec![f64::NAN; n],
            rel_ts: vec![f64::NAN; cap],
            scratch: Vec::with_capacity(horizons.short()),
        }
    }

    /// The features this window produces.
    pub fn schema(&self) -> &FeatureSchema {
        &self.schema
    }

    /// Rows held (at most the long horizon).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before the first row.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True once the window holds a full long horizon.
    pub fn is_warm(&self) -> bool {
        self.len >= self.cap
    }

    /// Adds a live sample taken at `t_secs` (a monotonic clock in seconds; wall-clock time may step back).
    pub fn push_sample(&mut self, sample: &Sample, t_secs: f64) -> Result<(), FeatureError> {
        self.push(t_secs, sample.values())
    }

    /// Adds one row: a timestamp in seconds and one raw value per signal (`NaN` = missing).
    pub fn push(&mut self, t_secs: f64, raw: &[f64]) -> Result<(), FeatureError> {
        if !t_secs.is_finite() {
            return Err(FeatureError::BadTimestamp(t_secs));
        }
        if raw.len() != self.kinds.len() {
            return Err(FeatureError::RowLength {
                expected: self.kinds.len(),
                got: raw.len(),
            });
        }
        if self.len > 0 {
            let previous = self.ts[(self.head + self.cap - 1) % self.cap];
            if t_secs <= previous {
                return Err(FeatureError::TimeNotIncreasing {
                    previous,
                    got: t_secs,
                });
            }
        }
        let slot = self.head;
        self.ts[slot] = t_secs;
        for (s, (&x, kind)) in raw.iter().zip(&self.kinds).enumerate() {
            let v = match kind {
                SignalKind::Gauge => x,
                SignalKind::Counter => {
                    let (prev, prev_t) = (self.prev_raw[s], self.prev_ts[s]);
                    let rate = if x.is_finite() && prev.is_finite() {
                        let increase = if x >= prev { x - prev } else { x };
                        increase / (t_secs - prev_t)
                    } else {
                        f64::NAN
                    };
                    if x.is_finite() {
                        self.prev_raw[s] = x;
                        self.prev_ts[s] = t_secs;
                    }
                    rate
                }
            };
            self.values[s * self.cap + slot] = v;
        }
        self.head = (slot + 1) % self.cap;
        self.len = (self.len + 1).min(self.cap);
        Ok(())
    }

    /// Ring positions of the last `k` rows as at most two contiguous ranges, oldest first.
    fn segments(&self, k: usize) -> [std::ops::Range<usize>; 2] {
        let start = (self.head + self.cap - k) % self.cap;
        if start + k <= self.cap {
            [start..start + k, 0..0]
        } else {
            [start..self.cap, 0..(start + k - self.cap)]
        }
    }

    /// Computes this tick's features into `out` (allocation-free). Horizons longer than the rows held
    /// use the rows there are; before the first row everything is missing.
    pub fn extract(&mut self, out: &mut FeatureVector) -> Result<(), FeatureError> {
        if out.values.len() != self.schema.len() || out.schema_hash != self.schema.hash() {
            return Err(FeatureError::SchemaMismatch {
                expected: self.schema.hash_hex(),
                got: format!("{:016x}", out.schema_hash),
            });
        }
        out.values.fill(f64::NAN);
        if self.len == 0 {
            out.mask.fill(false);
            return Ok(());
        }
        let newest = (self.head + self.cap - 1) % self.cap;
        let t0 = self.ts[newest];
        for (r, t) in self.rel_ts.iter_mut().zip(&self.ts) {
            *r = t - t0;
        }
        let short = self.segments(self.horizons.short().min(self.len));
        let long = self.segments(self.horizons.long().min(self.len));
        let ts = &self.rel_ts;
        let scratch = &mut self.scratch;
        for (s, chunk) in out.values.chunks_exact_mut(STATS_PER_SIGNAL).enumerate() {
            let ring = &self.values[s * self.cap..(s + 1) * self.cap];
            let seg = |r: &[std::ops::Range<usize>; 2]| {
                [
                    (&ring[r[0].clone()], &ts[r[0].clone()]),
                    (&ring[r[1].clone()], &ts[r[1].clone()]),
                ]
            };
            let last = ring[newest];
            let a = stats(seg(&short));
            let b = stats(seg(&long));
            scratch.clear();
            for r in &short {
                scratch.extend(ring[r.clone()].iter().filter(|v| !v.is_nan()));
            }
            let median = median_in_place(scratch);
            chunk.copy_from_slice(&[
                last,
                a.mean,
                a.std,
                a.max,
                a.slope,
                b.mean,
                b.std,
                b.max,
                b.slope,
                last - b.mean,
                median,
            ]);
        }
        for (m, v) in out.mask.iter_mut().zip(&out.values) {
            *m = v.is_finite();
        }
        Ok(())
    }
}
