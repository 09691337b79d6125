//! Incremental drift over a sliding window of live feature vectors.

use crate::{FeatureError, FeatureSchema};

/// Bins for PSI (reference deciles).
const PSI_BINS: usize = 10;
/// Grid for the binned KS statistic (reference 2%-quantiles): its error against the exact statistic is
/// at most the mass of one grid cell, about 0.02 on the reference side.
const KS_BINS: usize = 50;
/// Ring marker for a missing value.
const MISSING: u8 = u8::MAX;

/// Per-feature bin edges and reference proportions, fitted on the training set's feature vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftReference {
    schema_hash: u64,
    names: Vec<String>,
    psi_edges: Vec<Vec<f64>>,
    psi_ref: Vec<Vec<f64>>,
    ks_edges: Vec<Vec<f64>>,
    ks_ref_cdf: Vec<Vec<f64>>,
}

/// Quantile edges at i/bins, deduplicated (a constant feature has one edge).
fn edges(sorted: &[f64], bins: usize) -> Vec<f64> {
    let mut e: Vec<f64> = (1..bins)
        .map(|i| sorted[(i * sorted.len() / bins).min(sorted.len() - 1)])
        .collect();
    e.dedup();
    e
}

/// Bin of `v`: the number of edges strictly below it, so `v ≤ edges[j]` ⇔ bin ≤ j.
fn bin(edges: &[f64], v: f64) -> usize {
    edges.partition_point(|e| *e < v)
}

/// Share of `sorted` (ascending) in each bin of `edges`: `v ≤ edges[j]` ⇔ bin ≤ j, so the values up to
/// bin `j` are the prefix `partition_point(v ≤ edges[j])` — a binary search per edge, not per value.
fn proportions(edges: &[f64], sorted: &[f64]) -> Vec<f64> {
    let mut counts = vec![0.0; edges.len() + 1];
    let mut below = 0;
    for (j, e) in edges.iter().enumerate() {
        let upto = sorted.partition_point(|v| v <= e);
        counts[j] = (upto - below) as f64;
        below = upto;
    }
    counts[edges.len()] = (sorted.len() - below) as f64;
    let n = sorted.len().max(1) as f64;
    counts.iter_mut().for_each(|c| *c /= n);
    counts
}

fn cdf(props: &[f64]) -> Vec<f64> {
    props
        .iter()
        .scan(0.0, |acc, p| {
            *acc += p;
            Some(*acc)
        })
        .collect()
}

impl DriftReference {
    /// Fits a reference from training rows (each a feature vector in `schema` order). Needs at least 20
    /// rows; a feature with no finite value in the reference gets no bins and reports `NaN` drift.
    pub fn fit<'a>(
        schema: &FeatureSchema,
        rows: impl IntoIterator<Item = &'a [f64]>,
    ) -> Result<Self, FeatureError> {
        let f = schema.len();
        // Row references only; each column is gathered, summarised and dropped in turn, so a fit
        // never holds a second copy of the rows.
        let rows: Vec<&[f64]> = rows.into_iter().collect();
        if let Some(bad) = rows.iter().find(|r| r.len() != f) {
            return Err(FeatureError::SchemaMismatch {
                expected: format!("{f} features"),
                got: format!("{} values", bad.len()),
            });
        }
        let n = rows.len();
        if n < 20 {
            return Err(FeatureError::TooFewRows { needed: 20, got: n });
        }
        let mut r = Self {
            schema_hash: schema.hash(),
            names: schema.names().to_vec(),
            psi_edges: Vec::with_capacity(f),
            psi_ref: Vec::with_capacity(f),
            ks_edges: Vec::with_capacity(f),
            ks_ref_cdf: Vec::with_capacity(f),
        };
        let mut c: Vec<f64> = Vec::with_capacity(n);
        for i in 0..f {
            c.clear();
            c.extend(rows.iter().map(|row| row[i]).filter(|v| v.is_finite()));
            c.sort_unstable_by(f64::total_cmp);
            if c.is_empty() {
                r.psi_edges.push(Vec::new());
                r.psi_ref.push(Vec::new());
                r.ks_edges.push(Vec::new());
                r.ks_ref_cdf.push(Vec::new());
                continue;
            }
            let pe = edges(&c, PSI_BINS);
            let ke = edges(&c, KS_BINS);
            r.psi_ref.push(proportions(&pe, &c));
            r.ks_ref_cdf.push(cdf(&proportions(&ke, &c)));
            r.psi_edges.push(pe);
            r.ks_edges.push(ke);
        }
        Ok(r)
    }

    /// Hash of the schema the reference was fitted on.
    pub fn schema_hash(&self) -> u64 {
        self.schema_hash
    }

    /// Feature names, in schema order.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// Bin counts over the last `window` live vectors, updated as vectors enter and leave.
#[derive(Debug, Clone)]
pub struct DriftMonitor {
    reference: DriftReference,
    window: usize,
    len: usize,
    head: usize,
    /// `window × features` bin indices (PSI, KS), row-major; [`MISSING`] for non-finite values.
    psi_ring: Vec<u8>,
    ks_ring: Vec<u8>,
    /// Per feature: counts per bin, and how many live values are present.
    psi_counts: Vec<Vec<u32>>,
    ks_counts: Vec<Vec<u32>>,
    present: Vec<u32>,
}

impl DriftMonitor {
    /// A monitor comparing the last `window` vectors (at least 1) with `reference`.
    pub fn new(reference: DriftReference, window: usize) -> Self {
        let window = window.max(1);
        let f = reference.names.len();
        let psi_counts = reference
            .psi_edges
            .iter()
            .map(|e| vec![0; e.len() + 1])
            .collect();
        let ks_counts = reference
            .ks_edges
            .iter()
            .map(|e| vec![0; e.len() + 1])
            .collect();
        Self {
            window,
            len: 0,
            head: 0,
            psi_ring: vec![MISSING; window * f],
            ks_ring: vec![MISSING; window * f],
            psi_counts,
            ks_counts,
            present: vec![0; f],
            reference,
        }
    }

    /// The reference in use.
    pub fn reference(&self) -> &DriftReference {
        &self.reference
    }

    /// Live vectors held (at most the window).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before the first vector.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds one live feature vector (in the reference's schema order); the oldest leaves once the window
    /// is full. Allocation-free.
    pub fn push(&mut self, features: &[f64]) -> Result<(), FeatureError> {
        let f = self.reference.names.len();
        if features.len() != f {
            return Err(FeatureError::SchemaMismatch {
                expected: format!("{f} features"),
                got: format!("{} values", features.len()),
            });
        }
        let row = self.head * f;
        for (i, &v) in features.iter().enumerate() {
            let (old_p, old_k) = (self.psi_ring[row + i], self.ks_ring[row + i]);
            if self.len == self.window && old_p != MISSING {
                self.psi_counts[i][usize::from(old_p)] -= 1;
                self.ks_counts[i][usize::from(old_k)] -= 1;
                self.present[i] -= 1;
            }
            let (pe, ke) = (&self.reference.psi_edges[i], &self.reference.ks_edges[i]);
            if v.is_finite() && !pe.is_empty() {
                // Edges number < 255, so bin indices fit in u8 below MISSING.
                let (bp, bk) = (bin(pe, v), bin(ke, v));
                self.psi_counts[i][bp] += 1;
                self.ks_counts[i][bk] += 1;
                self.present[i] += 1;
                self.psi_ring[row + i] = bp as u8;
                self.ks_ring[row + i] = bk as u8;
            } else {
                self.psi_ring[row + i] = MISSING;
                self.ks_ring[row + i] = MISSING;
            }
        }
        self.head = (self.head + 1) % self.window;
        self.len = (self.len + 1).min(self.window);
        Ok(())
    }

    /// PSI of feature `i` over the live window; `NaN` when it has no live or reference values.
    pub fn psi_of(&self, i: usize) -> f64 {
        match (self.reference.psi_ref.get(i), self.psi_counts.get(i)) {
            (Some(r), Some(c)) if self.present[i] > 0 && !r.is_empty() => {
                let mut s = 0.0;
                let n = f64::from(self.present[i]);
                for (e, a) in r.iter().zip(c) {
                    let e = e.max(super::PSI_EPSILON);
                    let a = (f64::from(*a) / n).max(super::PSI_EPSILON);
                    s += (a - e) * (a / e).ln();
                }
                s
            }
            _ => f64::NAN,
        }
    }

    /// Binned KS statistic of feature `i` (evaluated at the reference's 2% quantiles).
    pub fn ks_of(&self, i: usize) -> f64 {
        match (self.reference.ks_ref_cdf.get(i), self.ks_counts.get(i)) {
            (Some(r), Some(c)) if self.present[i] > 0 && !r.is_empty() => {
                let n = f64::from(self.present[i]);
                let mut acc = 0.0;
                let mut d: f64 = 0.0;
                for (rc, cnt) in r.iter().zip(c) {
                    acc += f64::from(*cnt) / n;
                    d = d.max((acc - rc).abs());
                }
                d.min(1.0)
            }
            _ => f64::NAN,
        }
    }

    /// PSI and KS for every feature.
    pub fn report(&self) -> DriftReport {
        let f = self.reference.names.len();
        DriftReport {
            names: self.reference.names.clone(),
            psi: (0..f).map(|i| self.psi_of(i)).collect(),
            ks: (0..f).map(|i| self.ks_of(i)).collect(),
        }
    }
}

/// PSI and KS per feature at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftReport {
    /// Feature names, in schema order.
    pub names: Vec<String>,
    /// PSI per feature (`NaN` = no data).
    pub psi: Vec<f64>,
    /// KS per feature (`NaN` = no data).
    pub ks: Vec<f64>,
}

impl DriftReport {
    /// The largest PSI over features with data; `NaN` when none has.
    pub fn max_psi(&self) -> f64 {
        self.psi
            .iter()
            .copied()
            .filter(|p| !p.is_nan())
            .fold(f64::NAN, f64::max)
    }

    /// The `n` features with the largest PSI, largest first: `(name, psi, ks)`.
    pub fn top(&self, n: usize) -> Vec<(&str, f64, f64)> {
        let mut idx: Vec<usize> = (0..self.psi.len())
            .filter(|i| !self.psi[*i].is_nan())
            .collect();
        idx.sort_by(|a, b| self.psi[*b].total_cmp(&self.psi[*a]));
        idx.into_iter()
            .take(n)
            .map(|i| (self.names[i].as_str(), self.psi[i], self.ks[i]))
            .collect()
    }
}
