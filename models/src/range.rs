//! The recent range: what each signal's values did over the engine's history span, as a second opinion
//! beside the model.
//!
//! Real service metrics fail in two ways the model's level check reads badly:
//!
//! - **short, extreme excursions** (a counter that jumps to thirty times anything it did for a day, for
//!   two minutes): the model scores each signal's short-horizon median, which one or two extreme rows do
//!   not move;
//! - **excursions that are normal here**: a level the signal already visited in the recent past (a
//!   nightly batch, a failover that happens every few hours) is far from the model's median in robust
//!   standard deviations, yet nothing new.
//!
//! Both are read against the same reference: per signal, the median, minimum and maximum of its last
//! value over the span (the engine's history length, rows older than the short horizon), kept as block
//! summaries so memory is bounded whatever the span (`BLOCKS` blocks × signals × 3 numbers). The span
//! holds every row, events included: what a signal did a few hours ago, anomalous or not, is what it
//! does here — an excursion that recurs at the same size within the span is familiar, and only the
//! first is news (measured on the real corpus: leaving event rows out made every recurrence a new
//! event, 1.7 → 3.1 false events per 3,600 normal ticks). An event's rows join the span only once it
//! has settled ([`RecentRange::hold`], [`RecentRange::release`]), so an ongoing event is never its own
//! reference, and a step that stays still ends as a level shift, after which the range starts again
//! on the new level ([`RecentRange::reset`]). The range reads nothing until the span is
//! full: a range of a few minutes of an idle process says little about what is extreme. The unit of measure is the signal's own
//! range — how far from the median the farthest value went — so the reading is scale-free: multiplying
//! a column by 10⁶ changes nothing. Two readings per window:
//!
//! - the **spike ratio** of a signal: how many of its ranges the second farthest value of the short
//!   horizon lies from the median (above it or below it: two rows, so one glitched row is not an
//!   excursion — what `for:` does in an alerting rule). At [`SPIKE_RATIO`] the window
//!   scores at the model's threshold: a value several times farther out than anything in the span is
//!   anomalous however briefly it lasted;
//! - the **level ratio** of a signal: the same for the short-horizon median. A scored level of that
//!   signal counts at most `MIN_RAW_THRESHOLD × level ratio / SPIKE_RATIO` (in the model's robust
//!   units): it reaches the smallest threshold ([`crate::MIN_RAW_THRESHOLD`]) only [`SPIKE_RATIO`]
//!   ranges out, like a spike. While the range reads, a level therefore alarms only where the signal
//!   went farther than anything in the span by a margin (a level visited within the span never alarms
//!   again), and the model's robust-sd deviation ranks the windows below that; trend readings (slopes,
//!   a leak's growth) are the model's alone.
//!
//! A range is never narrower than the signal's unit floor ([`crate::floor_for`]): a constant column
//! does not turn its first wobble into an infinite ratio.

use std::collections::VecDeque;

/// The spike ratio that scores at the threshold: the short horizon's farthest value lies three times
/// as far from the median as the farthest value of the whole span. Under any distribution whose tail
/// is lighter than a power law, the maximum of a span sits near its top quantile and a value three
/// ranges out is far beyond the next order of magnitude of rarity; heavier tails widen the range they
/// are measured against.
pub const SPIKE_RATIO: f64 = 3.0;

/// Blocks the span is summarised in.
const BLOCKS: usize = 40;

/// A block's per-signal summary: `(min, median, max)`.
type Summary = Box<[(f64, f64, f64)]>;

/// One window's reading against the recent range.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeReading {
    /// The largest spike ratio over the signals (`0` when none is out of its median): the second
    /// farthest value of the short horizon, in ranges.
    pub spike: f64,
    /// Schema index of the `.last` feature of the signal with the largest spike ratio.
    pub spike_feature: usize,
    /// Per schema feature: the level ratio of the feature's signal (`f64::INFINITY` for features of
    /// signals without a reference: they are not held back).
    pub level: Vec<f64>,
}

/// Per-signal recent range over the span; see the module documentation.
#[derive(Debug, Clone)]
pub struct RecentRange {
    /// Schema index of each signal's `.last` feature.
    last: Vec<usize>,
    /// Unit of each signal's `.last` feature.
    units: Vec<String>,
    /// Per schema feature: its signal.
    signal_of: Vec<Option<usize>>,
    tick_seconds: f64,
    /// The newest rows' last values (the short horizon).
    newest: VecDeque<Box<[f64]>>,
    short: usize,
    /// The block being filled, per signal.
    block: Vec<Vec<f64>>,
    block_len: usize,
    /// Rows the span covers.
    span: usize,
    blocks: VecDeque<Summary>,
    /// Per signal: `(lo, centre, hi)` over the blocks, recomputed when a block completes.
    reference: Vec<(f64, f64, f64)>,
    /// Rows in the complete blocks.
    rows: usize,
    /// Rows the reference needs before it reads anything: the whole span at first, `again_rows`
    /// after a reset.
    min_rows: usize,
    again_rows: usize,
    /// Rows that left the short horizon while an event was open (at most the span): they join the
    /// span when the event settles, and are dropped when it ends as a level shift.
    held: VecDeque<Box<[f64]>>,
    holding: bool,
    /// Per signal: `(lowest, median, highest)` of the windows a model given at start was trained on,
    /// the reference until the span is full (empty: none).
    seed: Vec<(f64, f64, f64)>,
}

impl RecentRange {
    /// A range over `span` rows, short horizon `short`, for a schema with these feature names and
    /// units: it reads once the span is full, and once it holds `again_rows` rows after a
    /// [`RecentRange::reset`].
    pub fn new(
        names: &[String],
        units: &[String],
        short: usize,
        span: usize,
        again_rows: usize,
        tick_seconds: f64,
    ) -> Self {
        let mut last = Vec::new();
        let mut signal_units = Vec::new();
        let mut bases: Vec<&str> = Vec::new();
        for (i, name) in names.iter().enumerate() {
            if let Some(base) = name.strip_suffix(".last") {
                last.push(i);
                signal_units.push(units.get(i).cloned().unwrap_or_default());
                bases.push(base);
            }
        }
        let signal_of = names
            .iter()
            .map(|n| {
                let base = n.rsplit_once('.').map_or(n.as_str(), |(b, _)| b);
                bases.iter().position(|b| *b == base)
            })
            .collect();
        let signals = last.len();
        let block_len = span.div_ceil(BLOCKS).max(1);
        Self {
            last,
            units: signal_units,
            signal_of,
            tick_seconds,
            newest: VecDeque::with_capacity(short.max(1) + 1),
            short: short.max(1),
            block: vec![Vec::with_capacity(block_len); signals],
            block_len,
            span: span.max(1),
            blocks: VecDeque::with_capacity(BLOCKS + 1),
            reference: Vec::new(),
            rows: 0,
            min_rows: span.max(block_len),
            again_rows: again_rows.clamp(block_len, span.max(block_len)),
            held: VecDeque::new(),
            holding: false,
            seed: Vec::new(),
        }
    }

    /// Forgets the span (a level shift: the old range no longer describes normal).
    pub fn reset(&mut self) {
        self.newest.clear();
        self.block.iter_mut().for_each(Vec::clear);
        self.blocks.clear();
        self.reference.clear();
        self.rows = 0;
        self.min_rows = self.again_rows;
        self.held.clear();
        self.holding = false;
        self.seed.clear();
    }

    /// Reads from `again_rows` rows on, as after a reset (a model given at start already knows what
    /// normal looks like: the range need not wait for a whole span beside it).
    pub fn sooner(&mut self) {
        self.min_rows = self.again_rows;
    }

    /// Starts from what a model given at start was trained on: per schema feature `(lowest, median,
    /// highest)` of its training windows. Until the span is full, that is the reference, widened by
    /// the rows seen since; so a model trained offline scores its first rows the way the engine that
    /// trained it would have (`vigil score --model` against `vigil score` over the same history).
    pub fn seed(&mut self, per_feature: &[(f64, f64, f64)]) {
        let seed: Vec<(f64, f64, f64)> = self
            .last
            .iter()
            .map(|&i| {
                per_feature
                    .get(i)
                    .copied()
                    .filter(|(lo, m, hi)| lo.is_finite() && m.is_finite() && hi.is_finite())
                    .unwrap_or((f64::NAN, f64::NAN, f64::NAN))
            })
            .collect();
        if seed.iter().any(|s| s.1.is_finite()) {
            self.seed = seed;
        }
    }

    /// An event opened: rows leaving the short horizon from now on (the onset's among them) wait
    /// until it ends, so an ongoing event never becomes its own reference.
    pub fn hold(&mut self) {
        self.holding = true;
    }

    /// The event settled: the rows it held join the span (a recurrence of the same excursion is
    /// familiar from now on).
    pub fn release(&mut self) {
        self.holding = false;
        while let Some(row) = self.held.pop_front() {
            self.admit(&row);
        }
    }

    /// Reads a window (a full feature row) against the range and keeps its last values among the
    /// newest; `None` until the span holds `min_rows` rows. `known`, per schema feature, is the
    /// extent of what a model was trained on (`(lowest, highest)`): the range reaches at least that
    /// far, so a level the model learned as normal (a person's `normal` label among them) is never
    /// a spike.
    pub fn read(&mut self, row: &[f64], known: Option<&[(f64, f64)]>) -> Option<RangeReading> {
        let values: Box<[f64]> = self
            .last
            .iter()
            .map(|&i| row.get(i).copied().unwrap_or(f64::NAN))
            .collect();
        self.newest.push_back(values);
        while self.newest.len() > self.short {
            if let Some(old) = self.newest.pop_front() {
                if self.holding {
                    if self.held.len() >= self.span {
                        self.held.pop_front();
                    }
                    self.held.push_back(old);
                } else {
                    self.admit(&old);
                }
            }
        }
        let live = self.rows >= self.min_rows && !self.reference.is_empty();
        if !live && self.seed.is_empty() {
            return None;
        }
        // Before the span is full: the seed, widened by what the blocks so far saw.
        let merged: Vec<(f64, f64, f64)>;
        let reference = if live {
            &self.reference
        } else {
            merged = self
                .seed
                .iter()
                .enumerate()
                .map(|(s, &(lo, m, hi))| match self.reference.get(s) {
                    Some(&(a, _, b)) if a.is_finite() && b.is_finite() => (lo.min(a), m, hi.max(b)),
                    _ => (lo, m, hi),
                })
                .collect();
            &merged
        };
        let mut spike = 0.0f64;
        let mut spike_feature = self.last.first().copied().unwrap_or(0);
        let mut level_of = vec![f64::INFINITY; self.last.len()];
        let mut column = Vec::with_capacity(self.short);
        for (s, &(lo, centre, hi)) in reference.iter().enumerate() {
            let (lo, hi) = match known.and_then(|k| k.get(self.last[s])) {
                Some(&(a, b)) => (lo.min(a), hi.max(b)),
                None => (lo, hi),
            };
            column.clear();
            column.extend(self.newest.iter().map(|v| v[s]).filter(|v| v.is_finite()));
            if column.is_empty() || !centre.is_finite() {
                continue;
            }
            let floor = crate::floor_for(&self.units[s], centre, self.tick_seconds);
            let (up, down) = ((hi - centre).max(floor), (centre - lo).max(floor));
            let out = |v: f64| {
                if v >= centre {
                    (v - centre) / up
                } else {
                    (centre - v) / down
                }
            };
            // The second farthest value on each side: one row alone (a scrape glitch, a counter
            // reset) is not an excursion; two rows of the short horizon are.
            let level = median(&mut column);
            let n = column.len();
            let (low, high) = (column[1.min(n - 1)], column[n.saturating_sub(2)]);
            let r = out(high).max(out(low));
            if r > spike {
                spike = r;
                spike_feature = self.last[s];
            }
            level_of[s] = out(level);
        }
        let level = self
            .signal_of
            .iter()
            .map(|s| s.map_or(f64::INFINITY, |s| level_of[s]))
            .collect();
        Some(RangeReading {
            spike,
            spike_feature,
            level,
        })
    }

    /// A row leaves the short horizon: into the block being filled.
    fn admit(&mut self, values: &[f64]) {
        for (b, v) in self.block.iter_mut().zip(values) {
            if v.is_finite() {
                b.push(*v);
            }
        }
        self.rows += 1;
        let filled = self.rows.is_multiple_of(self.block_len);
        if !filled {
            return;
        }
        let summary: Summary = self
            .block
            .iter_mut()
            .map(|b| {
                if b.is_empty() {
                    return (f64::NAN, f64::NAN, f64::NAN);
                }
                let (min, max) = b
                    .iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, c), v| {
                        (a.min(*v), c.max(*v))
                    });
                let m = median(b);
                b.clear();
                (min, m, max)
            })
            .collect();
        if self.blocks.len() == BLOCKS {
            self.blocks.pop_front();
            self.rows -= self.block_len;
        }
        self.blocks.push_back(summary);
        self.summarise();
    }

    /// The reference of every signal from the blocks: the lowest minimum, the median of the medians,
    /// the highest maximum.
    fn summarise(&mut self) {
        let signals = self.last.len();
        let mut medians = Vec::with_capacity(self.blocks.len());
        self.reference = (0..signals)
            .map(|s| {
                medians.clear();
                let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
                for b in &self.blocks {
                    let (min, m, max) = b[s];
                    if m.is_finite() {
                        medians.push(m);
                        lo = lo.min(min);
                        hi = hi.max(max);
                    }
                }
                if medians.is_empty() {
                    (f64::NAN, f64::NAN, f64::NAN)
                } else {
                    (lo, median(&mut medians), hi)
                }
            })
            .collect();
    }
}

#[cfg(test)]
impl RecentRange {
    fn read_alone(&mut self, row: &[f64]) -> Option<RangeReading> {
        self.read(row, None)
    }
}

/// Median of finite values (sorts in place); `NaN` when empty.
fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable_by(f64::total_cmp);
    crate::scaler::median_of(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> (Vec<String>, Vec<String>) {
        let names = ["a.last", "a.median_10", "b.last", "b.median_10"]
            .map(String::from)
            .to_vec();
        (names, vec![String::new(); 4])
    }

    fn range() -> RecentRange {
        let (n, u) = names();
        RecentRange::new(&n, &u, 10, 200, 100, 60.0)
    }

    /// A row where both signals read `a` and `b` (last and median alike).
    fn row(a: f64, b: f64) -> [f64; 4] {
        [a, a, b, b]
    }

    fn noise(i: usize) -> f64 {
        ((i * 7919) % 101) as f64 / 100.0 - 0.5
    }

    #[test]
    fn reads_nothing_until_the_span_holds_enough_rows() {
        let mut r = range();
        for i in 0..200 {
            assert!(
                r.read_alone(&row(10.0 + noise(i), 1.0)).is_none(),
                "row {i}"
            );
        }
        let mut seen = false;
        for i in 200..260 {
            seen |= r.read_alone(&row(10.0 + noise(i), 1.0)).is_some();
        }
        assert!(seen);
    }

    #[test]
    fn a_short_extreme_value_is_a_spike_and_a_familiar_level_is_inside_the_range() {
        for scale in [1e-6, 1.0, 1e6] {
            let mut r = range();
            for i in 0..400 {
                r.read_alone(&row((10.0 + noise(i)) * scale, 1.0 + noise(i + 3)));
            }
            let quiet = r
                .read_alone(&row(10.0 * scale, 1.0))
                .expect("warm after 400 rows");
            assert!(quiet.spike < 1.0, "scale {scale}: {quiet:?}");
            // One value five ranges above the median is a glitch, not an excursion; two are a
            // spike of about 10, led by a.last.
            let once = r
                .read_alone(&row((10.0 + 5.0) * scale, 1.0))
                .expect("warm after 400 rows");
            assert!(once.spike < 1.0, "scale {scale}: {once:?}");
            let spiked = r
                .read_alone(&row((10.0 + 5.0) * scale, 1.0))
                .expect("warm after 400 rows");
            assert!(
                (spiked.spike - 10.0).abs() < 0.5,
                "scale {scale}: {spiked:?}"
            );
            assert_eq!(spiked.spike_feature, 0);
            // The level (median of the short horizon) has not moved: inside the range.
            assert!(spiked.level[1] < 1.0, "scale {scale}: {spiked:?}");
            assert!(spiked.level[3] < 1.0, "scale {scale}: {spiked:?}");
        }
    }

    #[test]
    fn a_recurring_excursion_is_familiar_and_a_reset_forgets_it() {
        let mut r = range();
        for i in 0..400 {
            r.read_alone(&row(10.0 + noise(i), 1.0));
        }
        r.read_alone(&row(20.0, 1.0));
        let first = r.read_alone(&row(20.0, 1.0)).expect("warm");
        assert!(first.spike > SPIKE_RATIO, "{first:?}");
        // Twenty rows at 20 join the span once older than the short horizon: the next visit is
        // inside the range, as a spike and as a level.
        for _ in 0..20 {
            r.read_alone(&row(20.0, 1.0));
        }
        for i in 0..20 {
            r.read_alone(&row(10.0 + noise(i), 1.0));
        }
        r.read_alone(&row(20.0, 1.0));
        let familiar = r.read_alone(&row(20.0, 1.0)).expect("warm");
        assert!(familiar.spike < 1.01, "{familiar:?}");
        r.reset();
        assert!(r.read_alone(&row(10.0, 1.0)).is_none());
    }

    #[test]
    fn what_a_model_was_trained_on_is_never_a_spike() {
        let mut r = range();
        for i in 0..400 {
            r.read_alone(&row(10.0 + noise(i), 1.0));
        }
        // The model's windows reached 20 on signal a (a nightly batch a person called normal).
        let known = [(9.0, 20.0), (9.0, 20.0), (1.0, 1.0), (1.0, 1.0)];
        r.read(&row(20.0, 1.0), Some(&known));
        let taught = r.read(&row(20.0, 1.0), Some(&known)).expect("warm");
        assert!(taught.spike < 1.01, "{taught:?}");
        let alone = r.read_alone(&row(20.0, 1.0)).expect("warm");
        assert!(alone.spike > SPIKE_RATIO, "{alone:?}");
    }

    #[test]
    fn a_constant_column_has_its_unit_floor_and_gaps_are_skipped() {
        let (n, mut u) = names();
        u[2] = "count".into();
        let mut r = RecentRange::new(&n, &u, 10, 200, 100, 1.0);
        for i in 0..400 {
            let b = if i % 50 == 7 { f64::NAN } else { 3.0 };
            r.read_alone(&row(10.0 + noise(i), b));
        }
        // One task more than a constant 3: one unit floor (1 count) out, not an infinite ratio.
        r.read_alone(&row(10.0, 4.0));
        let one_more = r.read_alone(&row(10.0, 4.0)).expect("warm");
        assert!(one_more.spike <= 1.0 + 1e-9, "{one_more:?}");
        r.read_alone(&row(10.0, 9.0));
        let many_more = r.read_alone(&row(10.0, 9.0)).expect("warm");
        assert!(many_more.spike > SPIKE_RATIO, "{many_more:?}");
        assert_eq!(many_more.spike_feature, 2);
    }
}
