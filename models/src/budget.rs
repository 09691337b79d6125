//! The operator's false-event budget in charge of when events open.
//!
//! The detector's readings give each window a *severity*: its raw score over the model's threshold
//! (`1` is where the constants of the readings put an alarm). An event opens when `open_k` of the last
//! `open_n` windows are at or above the alarm level `L`, that is when the *opening statistic* — the
//! `open_k`-th largest severity of the last `open_n` windows — reaches `L`. So the number of events a
//! level gives is the number of times the opening statistic climbs to it, which the engine can count
//! on its own past: [`AlarmLevel`] keeps that statistic over the last [`MEMORY_DAYS`] days (block
//! maxima, at most [`MAX_BLOCKS`] numbers whatever the tick) and sets `L` so that the expected number
//! of climbs per day on that memory is the budget.
//!
//! - **Counted at the event level.** Climbs are counted as clusters (runs declustering: exceedances
//!   separated by fewer windows than the cooldown belong to one cluster, as no second event can open
//!   between them), so neighbouring windows that share their data count once. The cooldown, not
//!   `close_after + cooldown`: an event also closes when its leading signal settles while others
//!   still deviate, so two events can be a cooldown apart. Every window
//!   the engine scored is in the memory, anomalies included: the budget then bounds all events, and
//!   false events stay at or below it.
//! - **Events, not only climbs.** An event can close while its climb goes on (its leading signal
//!   settled) and another open a cooldown later; where the memory holds at least [`TAIL_PEAKS`]
//!   events and more of them than climbs of the level in force, the allowance is divided by that
//!   ratio (measured on the shared corpus at 4 a day: 6.8 false events a day without it, 2.9 with).
//! - **Out of sample by construction.** Each severity was read by the model in place when the window
//!   arrived, before any fit could learn from it.
//! - **A tail for small budgets.** Where the memory holds at least [`TAIL_PEAKS`] times the budget's
//!   allowance, the level is read off the cluster peaks (an empirical quantile); below, a generalised
//!   Pareto tail is fitted to the [`TAIL_PEAKS`] highest peaks (peaks over threshold, as SPOT does —
//!   Siffer et al., KDD 2017) by probability-weighted moments (Hosking and Wallis, 1987), on the log of
//!   the severity (spike ratios have power-law tails; their logs have light ones), and the level is the
//!   tail's quantile for the budget's share of those peaks.
//! - **Until a day has been seen** (a budget per day needs a day of evidence, and a daily cycle a whole
//!   one) the level is `1`: the readings' own constants decide, as before this module.

use std::collections::VecDeque;

/// Days of opening statistics the level is read from: two weeks hold every weekday twice, so a
/// weekly pattern is part of normal.
pub const MEMORY_DAYS: f64 = 14.0;

/// Highest number of block maxima kept (4 bytes each: 128 KiB); at coarse ticks every window is its own
/// block, at a one-second tick a block is 37 windows.
pub const MAX_BLOCKS: usize = 32_768;

/// Cluster peaks the tail is fitted to: fewer make a generalised Pareto fit by moments wander (its
/// shape's standard error is about `1/√n`), many more reach down into the body of the distribution.
pub const TAIL_PEAKS: usize = 20;

/// The shape of the fitted tail is kept within `±0.5`: beyond `+0.5` the tail has no finite variance
/// and a fit by moments on [`TAIL_PEAKS`] peaks no longer means anything; below `−0.5` it ends within
/// a few scales of its threshold, which twenty peaks cannot show.
const MAX_SHAPE: f64 = 0.5;

/// How unlikely, under the budget, the count of climbs above the readings' own alarm point must be
/// (either way, as a Poisson tail) before the budget moves the level off it: one recalibration in
/// twenty would move it by chance where the point keeps the budget.
const EVIDENCE: f64 = 0.05;

/// The level before a day has been seen: the readings' own alarm point.
pub const PRIOR_LEVEL: f64 = 1.0;

/// The fitted tail, for reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TailFit {
    /// Days of opening statistics the level was read from.
    pub days: f64,
    /// Clusters above the base level (the peaks read).
    pub peaks: usize,
    /// Log severity the excesses are measured from.
    pub base: f64,
    /// Generalised Pareto scale and shape of the excesses (`None` when the level was read off the
    /// peaks directly).
    pub scale_shape: Option<(f64, f64)>,
}

/// The alarm level that spends the false-event budget; see the module documentation.
#[derive(Debug, Clone)]
pub struct AlarmLevel {
    open_k: usize,
    open_n: usize,
    /// The last `open_n` severities.
    recent: VecDeque<f64>,
    /// Windows per block, and declustering gap in blocks.
    per_block: usize,
    gap: usize,
    block: f32,
    filled: usize,
    blocks: VecDeque<f32>,
    cap: usize,
    windows_per_day: f64,
    events_per_day: f64,
    /// Blocks between two readings of the level (an hour of windows), and since the last.
    every: usize,
    since: usize,
    level: f64,
    fit: Option<TailFit>,
    /// Blocks completed since the start, and the block each event in the memory opened in.
    blocks_seen: u64,
    opened: VecDeque<u64>,
}

impl AlarmLevel {
    /// A level for `events_per_day` at rows `tick_seconds` apart, for events that open on `open_k` of
    /// `open_n` windows and wait `cooldown` windows after one closes before the next can open.
    pub fn new(
        events_per_day: f64,
        tick_seconds: f64,
        open_k: usize,
        open_n: usize,
        cooldown: usize,
    ) -> Self {
        let tick = if tick_seconds.is_finite() && tick_seconds > 0.0 {
            tick_seconds
        } else {
            1.0
        };
        let windows_per_day = 86_400.0 / tick;
        let memory = (MEMORY_DAYS * windows_per_day).ceil() as usize;
        let per_block = memory.div_ceil(MAX_BLOCKS).max(1);
        let cap = memory.div_ceil(per_block).max(1);
        let hour = (3_600.0 / tick).ceil() as usize;
        Self {
            open_k: open_k.clamp(1, open_n.clamp(1, 64)),
            open_n: open_n.clamp(1, 64),
            recent: VecDeque::with_capacity(open_n.clamp(1, 64) + 1),
            per_block,
            gap: cooldown.div_ceil(per_block).max(1),
            block: 0.0,
            filled: 0,
            blocks: VecDeque::with_capacity(cap.min(4096)),
            cap,
            windows_per_day,
            events_per_day: if events_per_day.is_finite() && events_per_day > 0.0 {
                events_per_day
            } else {
                1.0
            },
            every: hour.div_ceil(per_block).max(1),
            since: 0,
            level: PRIOR_LEVEL,
            fit: None,
            blocks_seen: 0,
            opened: VecDeque::new(),
        }
    }

    /// Records that the engine opened an event (the count of events the memory holds corrects the
    /// count of climbs where events split: see [`AlarmLevel::recalibrate`]).
    pub fn opened(&mut self) {
        if self.opened.len() >= self.cap {
            self.opened.pop_front();
        }
        self.opened.push_back(self.blocks_seen);
    }

    /// The alarm level on the severity (raw score over threshold): a window alarms at or above it.
    pub fn level(&self) -> f64 {
        self.level
    }

    /// How the level was last read (`None`: the prior).
    pub fn fit(&self) -> Option<TailFit> {
        self.fit
    }

    /// Records one scored window's severity (non-finite or negative severities count as `0`, infinite
    /// ones as the largest finite `f32`).
    pub fn observe(&mut self, severity: f64) {
        let s = if severity.is_nan() || severity < 0.0 {
            0.0
        } else {
            severity.min(f32::MAX as f64)
        };
        if self.recent.len() == self.open_n {
            self.recent.pop_front();
        }
        self.recent.push_back(s);
        let stat = self.opening_statistic();
        self.block = self.block.max(stat as f32);
        self.filled += 1;
        if self.filled < self.per_block {
            return;
        }
        if self.blocks.len() == self.cap {
            self.blocks.pop_front();
        }
        self.blocks.push_back(self.block);
        self.blocks_seen += 1;
        let oldest = self.blocks_seen.saturating_sub(self.blocks.len() as u64);
        while self.opened.front().is_some_and(|&b| b < oldest) {
            self.opened.pop_front();
        }
        self.block = 0.0;
        self.filled = 0;
        self.since += 1;
        if self.since >= self.every {
            self.since = 0;
            self.recalibrate();
        }
    }

    /// The `open_k`-th largest of the last `open_n` severities (windows not yet seen count as `0`).
    fn opening_statistic(&self) -> f64 {
        // At most `open_n` (≤ 64, checked by `EventParams::check`) values: sorted on the stack,
        // once per scored window.
        let mut v = [0.0f64; 64];
        let n = self.recent.len().min(v.len());
        if n < self.open_k {
            return 0.0;
        }
        for (slot, s) in v.iter_mut().zip(&self.recent) {
            *slot = *s;
        }
        let v = &mut v[..n];
        v.sort_unstable_by(|a, b| b.total_cmp(a));
        v[self.open_k - 1]
    }

    /// Back to the readings' own alarm point.
    fn prior(&mut self) {
        self.level = PRIOR_LEVEL;
        self.fit = None;
    }

    /// Peaks of the clusters of blocks at or above `base`.
    fn clusters(&self, base: f32) -> Vec<f32> {
        let mut peaks = Vec::new();
        let mut current: Option<f32> = None;
        let mut below = 0usize;
        for &b in &self.blocks {
            if b >= base {
                current = Some(current.map_or(b, |p| p.max(b)));
                below = 0;
            } else if let Some(p) = current {
                below += 1;
                if below >= self.gap {
                    peaks.push(p);
                    current = None;
                }
            }
        }
        if let Some(p) = current {
            peaks.push(p);
        }
        peaks
    }

    /// Reads the level again from the memory.
    fn recalibrate(&mut self) {
        let days = (self.blocks.len() * self.per_block) as f64 / self.windows_per_day;
        if days < 1.0 {
            self.prior();
            return;
        }
        let allowed = self.events_per_day * days;
        // The readings' own alarm point stands unless the memory shows, beyond chance, that it
        // breaks the budget or leaves it unspent: its climbs are counted against a Poisson count
        // with the budget's mean.
        let at_prior = self.clusters(PRIOR_LEVEL as f32).len();
        if poisson_at_least(at_prior, allowed) >= EVIDENCE
            && poisson_at_most(at_prior, allowed) >= EVIDENCE
        {
            self.prior();
            return;
        }
        // Where the memory holds enough events to tell, the climbs the level in force gives are
        // checked against the events the engine really opened: an event can close while its climb
        // goes on (its leading signal settled) and another open a cooldown later, so a climb may be
        // several events. The allowance is divided by that ratio (never multiplied: fewer events
        // than climbs are climbs that came while the engine was busy).
        let events = self.opened.len();
        let climbs = self.clusters(self.level as f32).len();
        let allowed = if events >= TAIL_PEAKS && climbs > 0 && events > climbs {
            allowed * climbs as f64 / events as f64
        } else {
            allowed
        };
        let want = TAIL_PEAKS.max(allowed.ceil() as usize + 1);
        let mut sorted: Vec<f32> = self.blocks.iter().copied().collect();
        sorted.sort_unstable_by(|a, b| b.total_cmp(a));
        // The highest base with at least `want` clusters above it: a base at the i-th largest block
        // has at most i clusters, so the search starts at `want` and steps down the order.
        let mut best: Vec<f32> = Vec::new();
        let mut i = want;
        while i <= sorted.len() {
            let base = sorted[i - 1];
            if base <= 0.0 {
                break;
            }
            let peaks = self.clusters(base);
            if peaks.len() > best.len() {
                best = peaks;
            }
            if best.len() >= want {
                break;
            }
            i = (i + i / 8).max(i + 1);
        }
        if best.len() < TAIL_PEAKS.min(want) {
            // Too few distinct excursions to read a tail from (a quiet or constant series): the
            // readings' own alarm point.
            self.prior();
            return;
        }
        best.sort_unstable_by(|a, b| b.total_cmp(a));
        let logs: Vec<f64> = best
            .iter()
            .map(|&p| (p as f64).max(f64::MIN_POSITIVE).ln())
            .collect();
        if allowed >= TAIL_PEAKS as f64 {
            // Enough allowed events to read the level off the peaks: between the last peak the
            // budget allows and the first it does not.
            let m = (allowed.floor() as usize).min(logs.len() - 1);
            let l = 0.5 * (logs[m - 1] + logs[m]);
            self.level = l.exp();
            self.fit = Some(TailFit {
                days,
                peaks: logs.len(),
                base: logs[logs.len() - 1],
                scale_shape: None,
            });
            return;
        }
        // Peaks over threshold: the TAIL_PEAKS highest peaks' excesses over the next one (or over the
        // lowest when there are no more).
        let k = TAIL_PEAKS.min(logs.len());
        let base = if logs.len() > k { logs[k] } else { logs[k - 1] };
        let excesses: Vec<f64> = logs[..k].iter().map(|l| (l - base).max(0.0)).collect();
        let (scale, shape) = gpd_pwm(&excesses);
        let p = allowed / k as f64;
        let y = gpd_quantile(scale, shape, p);
        self.level = (base + y).exp();
        self.fit = Some(TailFit {
            days,
            peaks: logs.len(),
            base,
            scale_shape: Some((scale, shape)),
        });
    }
}

/// `P(X ≥ c)` for a Poisson count of mean `mean`.
fn poisson_at_least(c: usize, mean: f64) -> f64 {
    if c == 0 {
        return 1.0;
    }
    (1.0 - poisson_at_most(c - 1, mean)).clamp(0.0, 1.0)
}

/// `P(X ≤ c)` for a Poisson count of mean `mean`.
fn poisson_at_most(c: usize, mean: f64) -> f64 {
    if mean <= 0.0 {
        return 1.0;
    }
    let mut log_term = -mean;
    let mut sum = log_term.exp();
    for i in 1..=c {
        log_term += mean.ln() - (i as f64).ln();
        sum += log_term.exp();
    }
    sum.clamp(0.0, 1.0)
}

/// Generalised Pareto scale and shape of `excesses` by probability-weighted moments (Hosking and
/// Wallis, 1987), the shape kept within `±MAX_SHAPE`; an exponential with the mean excess when the
/// moments do not define a shape.
fn gpd_pwm(excesses: &[f64]) -> (f64, f64) {
    let n = excesses.len();
    let mean = excesses.iter().sum::<f64>() / n.max(1) as f64;
    if n < 2 || mean <= 0.0 {
        return (mean.max(f64::MIN_POSITIVE), 0.0);
    }
    let mut y = excesses.to_vec();
    y.sort_unstable_by(f64::total_cmp);
    // a1 = E[Y (1 − F(Y))] with plotting positions (i − 0.35) / n.
    let a1 = y
        .iter()
        .enumerate()
        .map(|(i, v)| v * (1.0 - (i as f64 + 0.65) / n as f64))
        .sum::<f64>()
        / n as f64;
    let d = mean - 2.0 * a1;
    if d <= 0.0 {
        return (mean, 0.0);
    }
    let shape = (2.0 - mean / d).clamp(-MAX_SHAPE, MAX_SHAPE);
    // Scale from the mean given the shape: E[Y] = σ / (1 − ξ).
    let scale = (mean * (1.0 - shape)).max(f64::MIN_POSITIVE);
    (scale, shape)
}

/// The excess `y` with `P(Y > y) = p` under a generalised Pareto tail.
fn gpd_quantile(scale: f64, shape: f64, p: f64) -> f64 {
    let p = p.clamp(f64::MIN_POSITIVE, 1.0);
    if shape.abs() < 1e-9 {
        -scale * p.ln()
    } else {
        scale / shape * (p.powf(-shape) - 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic generator in (0, 1).
    fn uniforms(seed: u64) -> impl FnMut() -> f64 {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        move || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }
    }

    /// Events a level gives over severities, by the engine's rule: one opens when `k` of the last
    /// `n` windows are at or above the level, closes after `close` windows in a row below it, and
    /// no other opens during the `cooldown` after.
    fn events(sev: &[f64], level: f64, k: usize, n: usize, close: usize, cooldown: usize) -> usize {
        let mut count = 0;
        let mut i = n - 1;
        while i < sev.len() {
            let hits = sev[i + 1 - n..=i].iter().filter(|&&s| s >= level).count();
            if hits < k {
                i += 1;
                continue;
            }
            count += 1;
            let (mut quiet, mut j) = (0, i + 1);
            while j < sev.len() && quiet < close {
                quiet = if sev[j] < level { quiet + 1 } else { 0 };
                j += 1;
            }
            i = j + cooldown;
        }
        count
    }

    /// Severities like an AR(1) process's: neighbouring windows share their data.
    fn series(days: f64, tick: f64, seed: u64) -> Vec<f64> {
        let mut u = uniforms(seed);
        let n = (days * 86_400.0 / tick) as usize;
        let mut x = 0.0f64;
        (0..n)
            .map(|_| {
                // Approximately normal from twelve uniforms.
                let e: f64 = (0..12).map(|_| u()).sum::<f64>() - 6.0;
                x = 0.8 * x + 0.6 * e;
                0.2 * x.exp()
            })
            .collect()
    }

    #[test]
    fn before_a_day_the_readings_decide() {
        let mut a = AlarmLevel::new(1.0, 300.0, 3, 5, 10);
        for s in series(0.9, 300.0, 1) {
            a.observe(s);
        }
        assert_eq!(a.level(), PRIOR_LEVEL);
        assert!(a.fit().is_none());
    }

    #[test]
    fn the_level_spends_the_budget_on_data_it_has_not_seen() {
        // Calibrated on 14 days, then held on 28 new days of the same process: the events it gives
        // there stay near the budget, and a smaller budget gives a higher level and fewer events.
        let (tick, k, n) = (300.0, 3, 5);
        let mut found = Vec::new();
        for budget in [0.25, 1.0, 4.0] {
            let mut a = AlarmLevel::new(budget, tick, k, n, 10);
            for s in series(14.0, tick, 7) {
                a.observe(s);
            }
            let level = a.level();
            assert!(level.is_finite() && level > 0.0, "{level}");
            let fresh = series(28.0, tick, 8);
            let per_day = events(&fresh, level, k, n, 5, 10) as f64 / 28.0;
            found.push((budget, level, per_day));
        }
        for (budget, level, per_day) in &found {
            assert!(
                *per_day <= 1.5 * budget && *per_day >= budget / 4.0,
                "budget {budget}: level {level:.3} gave {per_day:.2} events a day ({found:?})"
            );
        }
        assert!(
            found[0].1 > found[1].1 && found[1].1 > found[2].1,
            "{found:?}"
        );
        assert!(found[0].2 < found[2].2, "{found:?}");
    }

    #[test]
    fn memory_is_bounded_at_any_tick() {
        let mut a = AlarmLevel::new(1.0, 0.01, 3, 5, 10);
        for i in 0..2_000_000u64 {
            a.observe((i % 97) as f64 / 97.0);
        }
        assert!(a.blocks.len() <= MAX_BLOCKS);
        assert!(a.blocks.capacity() <= 2 * MAX_BLOCKS);
    }

    #[test]
    fn a_heavy_tail_gets_a_higher_level_than_an_exponential_one() {
        // Pareto excesses (shape 0.4) against exponential ones of the same mean: the tail read for a
        // small share must be farther out for the heavy one.
        let mut u = uniforms(3);
        let heavy: Vec<f64> = (0..20)
            .map(|_| (u().powf(-0.4) - 1.0) / 0.4)
            .collect::<Vec<_>>();
        let mean = heavy.iter().sum::<f64>() / 20.0;
        let light: Vec<f64> = (0..20).map(|_| -mean * u().ln()).collect();
        let (sh, kh) = gpd_pwm(&heavy);
        let (sl, kl) = gpd_pwm(&light);
        assert!(kh > kl, "shapes {kh} vs {kl}");
        assert!(gpd_quantile(sh, kh, 0.01) > gpd_quantile(sl, kl, 0.01));
        // Exponential limit.
        assert!((gpd_quantile(2.0, 0.0, (-1.0f64).exp()) - 2.0).abs() < 1e-9);
    }

    #[test]
    fn non_finite_severities_do_not_poison_the_level() {
        let mut a = AlarmLevel::new(1.0, 300.0, 3, 5, 10);
        let mut s = series(3.0, 300.0, 5);
        for (i, v) in s.iter_mut().enumerate() {
            if i % 101 == 0 {
                *v = f64::INFINITY;
            } else if i % 103 == 0 {
                *v = f64::NAN;
            }
        }
        for v in s {
            a.observe(v);
        }
        assert!(a.level().is_finite() && a.level() > 0.0, "{}", a.level());
    }

    #[test]
    fn events_that_split_their_climbs_raise_the_level() {
        // The same severities twice, at a budget of 4 a day: once with one event per climb of the
        // level, once with every climb opening two events (as when an event closes on its settled
        // lead and another opens a cooldown later). The second must end with a higher level, so
        // that the events, not the climbs, keep the budget.
        let sev = series(20.0, 300.0, 11);
        let run = |per_climb: usize| {
            let mut a = AlarmLevel::new(4.0, 300.0, 3, 5, 10);
            let mut above = false;
            for &s in &sev {
                a.observe(s);
                let now = a.opening_statistic() >= a.level();
                if now && !above {
                    for _ in 0..per_climb {
                        a.opened();
                    }
                }
                above = now;
            }
            a.level()
        };
        let (one, two) = (run(1), run(2));
        assert!(two > one * 1.05, "one event a climb: {one}, two: {two}");
    }
}
