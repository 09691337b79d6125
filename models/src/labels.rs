//! Labels: intervals a person or an alert rule marked `anomaly` or `normal`, with a confidence, and
//! the rule that decides a window's label where several cover it.

/// One labelled interval.
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    /// First second covered (Unix seconds).
    pub start: f64,
    /// Last second covered (Unix seconds).
    pub end: f64,
    /// `anomaly` (true) or `normal` (false).
    pub anomaly: bool,
    /// Who said so: `human`, `alertmanager`, or another rule's name.
    pub source: String,
    /// Confidence, from the `confidence` column or the source's default (human 0.95, others 0.65).
    pub confidence: f64,
    /// The `anomaly_type` column, when given.
    pub kind: Option<crate::AnomalyKind>,
}

/// Default confidence of a label source: people 0.95, alert rules and anything else 0.65.
pub fn default_confidence(source: &str) -> f64 {
    if source.eq_ignore_ascii_case("human") {
        0.95
    } else {
        0.65
    }
}

/// The label of a window at `t`: a human label overrides rule labels on the same windows; among labels
/// of equal standing the most confident wins.
pub fn label_at(labels: &[Label], t: f64) -> Option<&Label> {
    let most_confident = |human_only: bool| {
        labels
            .iter()
            .filter(|l| l.contains(t))
            .filter(|l| !human_only || l.source.eq_ignore_ascii_case("human"))
            .max_by(|a, b| a.confidence.total_cmp(&b.confidence))
    };
    most_confident(true).or_else(|| most_confident(false))
}

impl Label {
    /// Whether `t` is inside the interval (both ends included).
    pub fn contains(&self, t: f64) -> bool {
        t >= self.start && t <= self.end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(start: f64, end: f64, anomaly: bool, source: &str) -> Label {
        Label {
            start,
            end,
            anomaly,
            source: source.into(),
            confidence: default_confidence(source),
            kind: None,
        }
    }

    #[test]
    fn a_human_label_overrides_rule_labels_on_the_same_windows() {
        let labels = [
            l(0.0, 10.0, false, "alertmanager"),
            l(5.0, 6.0, true, "human"),
        ];
        let at = |t| label_at(&labels, t).map(|l| (l.anomaly, l.confidence));
        assert_eq!(at(2.0), Some((false, 0.65)));
        assert_eq!(at(5.5), Some((true, 0.95)));
        assert_eq!(at(11.0), None);
    }
}
