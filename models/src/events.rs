//! Events, not rows: a state machine over per-window verdicts that opens an event when the evidence
//! is strong enough, keeps it open with hysteresis, closes it when the score settles, then waits out a
//! cooldown before another can open.

use serde::Serialize;

use crate::AnomalyKind;

/// When events open and close. Every count is in windows (ticks).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EventParams {
    /// An event opens when at least `open_k` of the last `open_n` windows score at or above 0.5.
    pub open_k: usize,
    /// See `open_k`.
    pub open_n: usize,
    /// The event closes after this many settled windows in a row (back in the normal range, which is
    /// below the threshold: hysteresis).
    pub close_after: usize,
    /// After an event closes no new one opens for this many windows.
    pub cooldown: usize,
}

impl Default for EventParams {
    /// 3 of 5 to open, closed after 5 settled windows, 10 windows of cooldown.
    fn default() -> Self {
        Self {
            open_k: 3,
            open_n: 5,
            close_after: 5,
            cooldown: 10,
        }
    }
}

impl EventParams {
    /// Validates: `1 ≤ open_k ≤ open_n ≤ 64`, `close_after ≥ 1`.
    pub fn check(self) -> Result<Self, crate::ModelError> {
        let param = |message: String| crate::ModelError::Param {
            name: "events",
            message,
        };
        if !(1..=self.open_n).contains(&self.open_k) || self.open_n > 64 {
            return Err(param(format!(
                "need 1 <= open_k <= open_n <= 64, got {} of {}",
                self.open_k, self.open_n
            )));
        }
        if self.close_after == 0 {
            return Err(param("close_after must be at least 1".into()));
        }
        Ok(self)
    }
}

/// Why an event ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventEnd {
    /// The score settled below the hysteresis level.
    Settled,
    /// A level that moved and stopped moving for the level-shift horizon: the engine took it as the
    /// new normal and refits on the windows since the change (the event's type becomes
    /// `level_shift`).
    LevelShift,
}

/// One anomaly event. Non-exhaustive: fields may be added; [`Event::open`] builds one outside the
/// engine (a tool writing events to a store).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Event {
    /// Increasing from 1 within one engine.
    pub id: u64,
    /// Time of the first window of the opening evidence (the caller's clock, seconds).
    pub start: f64,
    /// Time the event was declared open (`start` + up to `open_n` windows).
    pub opened: f64,
    /// Time of the last window inside the event; `None` while open.
    pub end: Option<f64>,
    /// Why it ended; `None` while open.
    pub ended: Option<EventEnd>,
    /// Highest score inside the event and when it was seen.
    pub peak: f64,
    /// When the peak was seen.
    pub peak_at: f64,
    /// The anomaly type: at opening, that of the strongest window of the opening evidence; then that
    /// of the peak window (the opening windows may show only the signals that move fastest: a short
    /// mean moves in one or two windows, a median in half its horizon). `opened_as` keeps the first.
    pub anomaly_type: AnomalyKind,
    /// The anomaly type the event opened with.
    pub opened_as: AnomalyKind,
    /// Top features of the peak window: `(feature name, deviation in robust standard deviations)`.
    pub top_features: Vec<(String, f64)>,
    /// Windows inside the event so far.
    pub windows: u64,
}

impl Event {
    /// An event as the engine opens one: number `id`, its first window at `start`, declared open at
    /// `opened`, of type `kind`; its peak is that of its opening (`peak` at `opened`), it has no top
    /// features yet and counts one window. Set the rest as the event goes on.
    pub fn open(id: u64, start: f64, opened: f64, kind: AnomalyKind, peak: f64) -> Self {
        Self {
            id,
            start,
            opened,
            end: None,
            ended: None,
            peak,
            peak_at: opened,
            anomaly_type: kind,
            opened_as: kind,
            top_features: Vec::new(),
            windows: 1,
        }
    }
}

/// What one window did to the event state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    None,
    Opened,
    /// A new peak window of another (known) type: the event's type changed.
    Retyped,
    Closed,
}

/// One scored window as the tracker sees it.
pub(crate) struct WindowVerdict<'a> {
    pub(crate) t: f64,
    pub(crate) value: f64,
    pub(crate) settled: bool,
    pub(crate) kind: AnomalyKind,
    /// Top features by schema index; named (through `names`) only when an event opens or peaks.
    pub(crate) top: &'a [(usize, f64)],
    pub(crate) names: &'a [String],
}

/// An open event also closes after `BELOW_RUNS × close_after` windows in a row below the threshold.
pub(crate) const BELOW_RUNS: usize = 4;

/// A window as remembered for the opening rule: time, score, type, top features.
type Recent = (f64, f64, AnomalyKind, Vec<(usize, f64)>);

/// Top features by name.
fn named(top: &[(usize, f64)], names: &[String]) -> Vec<(String, f64)> {
    top.iter()
        .map(|(i, z)| (names.get(*i).cloned().unwrap_or_default(), *z))
        .collect()
}

/// The open/close/cooldown state machine.
#[derive(Debug, Clone)]
pub(crate) struct EventTracker {
    params: EventParams,
    /// The last `open_n` windows: (time, value, kind, top features).
    recent: std::collections::VecDeque<Recent>,
    open: Option<Event>,
    quiet_run: usize,
    /// Windows in a row below the threshold inside the open event.
    below_run: usize,
    cooldown_left: usize,
    next_id: u64,
}

impl EventTracker {
    pub(crate) fn new(params: EventParams) -> Self {
        Self {
            params,
            recent: std::collections::VecDeque::with_capacity(params.open_n + 1),
            open: None,
            quiet_run: 0,
            below_run: 0,
            cooldown_left: 0,
            next_id: 1,
        }
    }

    /// Numbers the next event `last + 1` (ids stay unique across restarts over one store).
    pub(crate) fn continue_after(&mut self, last: u64) {
        self.next_id = self.next_id.max(last.saturating_add(1));
    }

    pub(crate) fn current(&self) -> Option<&Event> {
        self.open.as_ref()
    }

    /// True while an event is open or its cooldown runs.
    pub(crate) fn busy(&self) -> bool {
        self.open.is_some() || self.cooldown_left > 0
    }

    /// Feeds one scored window.
    pub(crate) fn push(&mut self, w: &WindowVerdict<'_>) -> (Transition, Option<Event>) {
        let p = self.params;
        if self.recent.len() == p.open_n {
            self.recent.pop_front();
        }
        self.recent
            .push_back((w.t, w.value, w.kind, w.top.to_vec()));
        if let Some(ev) = &mut self.open {
            ev.windows += 1;
            let mut retyped = false;
            if w.value > ev.peak {
                ev.peak = w.value;
                ev.peak_at = w.t;
                ev.top_features = named(w.top, w.names);
                if w.kind != AnomalyKind::Unknown && w.kind != ev.anomaly_type {
                    ev.anomaly_type = w.kind;
                    retyped = true;
                }
            }
            if w.settled {
                self.quiet_run += 1;
            } else {
                self.quiet_run = 0;
            }
            if w.value < 0.5 {
                self.below_run += 1;
            } else {
                self.below_run = 0;
            }
            // Settled (back in the normal range) for `close_after` windows, or no window at the
            // threshold for `BELOW_RUNS × close_after`: a score that hovers between normal and the
            // threshold (a signal wandering inside its widened range) is no evidence that the event
            // goes on.
            if self.quiet_run >= p.close_after || self.below_run >= BELOW_RUNS * p.close_after {
                return (Transition::Closed, self.close(w.t, EventEnd::Settled));
            }
            if retyped {
                return (Transition::Retyped, Some(ev.clone()));
            }
            return (Transition::None, None);
        }
        if self.cooldown_left > 0 {
            self.cooldown_left -= 1;
            return (Transition::None, None);
        }
        let over = self.recent.iter().filter(|r| r.1 >= 0.5).count();
        if over < p.open_k {
            return (Transition::None, None);
        }
        // The evidence starts at the first over-threshold window still in view.
        let first = self.recent.iter().find(|r| r.1 >= 0.5);
        let strongest = self
            .recent
            .iter()
            .filter(|r| r.1 >= 0.5)
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let (Some(first), Some(strongest)) = (first, strongest) else {
            return (Transition::None, None);
        };
        let ev = Event {
            id: self.next_id,
            start: first.0,
            opened: w.t,
            end: None,
            ended: None,
            peak: strongest.1,
            peak_at: strongest.0,
            anomaly_type: strongest.2,
            opened_as: strongest.2,
            top_features: named(&strongest.3, w.names),
            windows: self.recent.iter().filter(|r| r.0 >= first.0).count() as u64,
        };
        self.next_id += 1;
        self.quiet_run = 0;
        self.below_run = 0;
        self.open = Some(ev.clone());
        (Transition::Opened, Some(ev))
    }

    /// Closes the open event (if any) at `t` for `why`, starting the cooldown.
    pub(crate) fn close(&mut self, t: f64, why: EventEnd) -> Option<Event> {
        let mut ev = self.open.take()?;
        ev.end = Some(t);
        ev.ended = Some(why);
        if why == EventEnd::LevelShift {
            ev.anomaly_type = AnomalyKind::LevelShift;
        }
        self.quiet_run = 0;
        self.below_run = 0;
        self.cooldown_left = self.params.cooldown;
        self.recent.clear();
        Some(ev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(values: &[f64], params: EventParams) -> Vec<(usize, Transition, Option<Event>)> {
        let mut t = EventTracker::new(params);
        let top = vec![(0, 9.0)];
        let names = vec!["x.last".to_owned()];
        values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let (tr, ev) = t.push(&WindowVerdict {
                    t: i as f64,
                    value: *v,
                    settled: *v < 0.4,
                    kind: AnomalyKind::TaskLeak,
                    top: &top,
                    names: &names,
                });
                (i, tr, ev)
            })
            .filter(|(_, tr, _)| *tr != Transition::None)
            .collect()
    }

    #[test]
    fn single_spikes_do_not_open_events() {
        let mut v = vec![0.1; 100];
        for i in (5..100).step_by(7) {
            v[i] = 0.9;
        }
        assert!(run(&v, EventParams::default()).is_empty());
    }

    #[test]
    fn an_event_opens_on_k_of_n_stays_open_with_hysteresis_and_closes_when_the_score_settles() {
        let mut v = vec![0.1; 60];
        // Onset at 10; a dip to 0.45 (not settled: settled is below 0.4 here) and single quiet
        // windows keep it open; it settles from 30 on.
        for x in &mut v[10..30] {
            *x = 0.8;
        }
        v[15] = 0.45;
        v[20] = 0.2;
        let out = run(&v, EventParams::default());
        assert_eq!(out.len(), 2, "{out:?}");
        let (i, tr, ev) = &out[0];
        assert_eq!((*i, *tr), (12, Transition::Opened));
        let ev = ev.as_ref().unwrap();
        assert_eq!((ev.id, ev.start, ev.opened), (1, 10.0, 12.0));
        let (i, tr, ev) = &out[1];
        assert_eq!((*i, *tr), (34, Transition::Closed));
        let ev = ev.as_ref().unwrap();
        assert_eq!(ev.end, Some(34.0));
        assert_eq!(ev.ended, Some(EventEnd::Settled));
        assert_eq!(ev.windows, 25);
    }

    #[test]
    fn no_event_opens_during_the_cooldown() {
        let mut v = vec![0.1; 80];
        for x in &mut v[10..20] {
            *x = 0.9;
        }
        // Closed at 24 (five quiet windows 20..=24); cooldown 25..=34; evidence at 27..=29 ignored,
        // evidence from 40 opens event 2.
        for x in &mut v[27..30] {
            *x = 0.9;
        }
        for x in &mut v[40..45] {
            *x = 0.9;
        }
        let out = run(&v, EventParams::default());
        let opened: Vec<usize> = out
            .iter()
            .filter(|o| o.1 == Transition::Opened)
            .map(|o| o.0)
            .collect();
        assert_eq!(opened, vec![12, 42], "{out:?}");
        assert_eq!(out.last().unwrap().2.as_ref().unwrap().id, 2);
    }

    #[test]
    fn the_type_follows_the_peak_window() {
        let mut t = EventTracker::new(EventParams::default());
        let names = vec!["x.last".to_owned()];
        let top = vec![(0, 9.0)];
        let mut push = |i: usize, value: f64, kind: AnomalyKind| {
            t.push(&WindowVerdict {
                t: i as f64,
                value,
                settled: value < 0.4,
                kind,
                top: &top,
                names: &names,
            })
        };
        let mut out = Vec::new();
        for i in 0..3 {
            out.push(push(i, 0.7, AnomalyKind::AllocStorm));
        }
        assert_eq!(out[2].0, Transition::Opened);
        // Weaker windows of another type do not retype; a stronger one does, once; an unknown
        // peak keeps the type.
        assert_eq!(
            push(3, 0.6, AnomalyKind::LatencyRegression).0,
            Transition::None
        );
        let (tr, ev) = push(4, 0.9, AnomalyKind::LatencyRegression);
        assert_eq!(tr, Transition::Retyped);
        let ev = ev.unwrap();
        assert_eq!(ev.anomaly_type, AnomalyKind::LatencyRegression);
        assert_eq!(ev.opened_as, AnomalyKind::AllocStorm);
        assert_eq!(
            push(5, 0.95, AnomalyKind::LatencyRegression).0,
            Transition::None
        );
        assert_eq!(push(6, 0.99, AnomalyKind::Unknown).0, Transition::None);
        let closed = (7..20)
            .map(|i| push(i, 0.1, AnomalyKind::Unknown))
            .find(|o| o.0 == Transition::Closed)
            .unwrap()
            .1
            .unwrap();
        assert_eq!(closed.anomaly_type, AnomalyKind::LatencyRegression);
    }

    #[test]
    fn params_are_checked() {
        let bad = EventParams {
            open_k: 6,
            ..EventParams::default()
        };
        assert!(bad.check().is_err());
        assert!(EventParams::default().check().is_ok());
    }
}
