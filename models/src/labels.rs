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
    /// Who said so.
    pub source: LabelSource,
    /// Confidence, from the `confidence` column or the source's default (human 0.95, others 0.65).
    pub confidence: f64,
    /// The `anomaly_type` column, when given.
    pub kind: Option<crate::AnomalyKind>,
}

/// Who said a label is right. Spelled `human`, `alertmanager` or any other name in CSV files, the
/// store and the API; parsing never fails (an unknown name is another rule or tool).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LabelSource {
    /// A person (the API's verdicts, `vigil labels add`, a CSV row saying `human`): overrides every
    /// other source on the windows it covers; default confidence 0.95.
    Human,
    /// An Alertmanager webhook (an alert that fired and resolved); default confidence 0.65.
    Alertmanager,
    /// Another rule or tool, by name (`injected`, `csv`, a rule's name); default confidence 0.65.
    Other(String),
}

impl LabelSource {
    /// `human` and `alertmanager` in any case (and around spaces); anything else is [`Self::Other`].
    pub fn parse(s: &str) -> Self {
        let s = s.trim();
        if s.eq_ignore_ascii_case("human") {
            Self::Human
        } else if s.eq_ignore_ascii_case("alertmanager") {
            Self::Alertmanager
        } else {
            Self::Other(s.to_owned())
        }
    }

    /// The name as stored and shown.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Human => "human",
            Self::Alertmanager => "alertmanager",
            Self::Other(s) => s,
        }
    }

    /// A person said so.
    pub fn is_human(&self) -> bool {
        *self == Self::Human
    }

    /// Default confidence: people 0.95, alert rules and anything else 0.65.
    pub fn default_confidence(&self) -> f64 {
        if self.is_human() { 0.95 } else { 0.65 }
    }
}

impl std::fmt::Display for LabelSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for LabelSource {
    fn from(s: &str) -> Self {
        Self::parse(s)
    }
}

impl serde::Serialize for LabelSource {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The label of a window at `t`: a human label overrides rule labels on the same windows; among labels
/// of equal standing the most confident wins.
pub fn label_at(labels: &[Label], t: f64) -> Option<&Label> {
    let most_confident = |human_only: bool| {
        labels
            .iter()
            .filter(|l| l.contains(t))
            .filter(|l| !human_only || l.source.is_human())
            .max_by(|a, b| a.confidence.total_cmp(&b.confidence))
    };
    most_confident(true).or_else(|| most_confident(false))
}

/// What a training window carries of its label: `((anomalous, confidence), anomaly type, coarse)`;
/// coarse: the label covers a span around the anomaly rather than exactly its windows (an alert that
/// fired: any source but a person).
pub type WindowLabel = ((bool, f64), Option<crate::AnomalyKind>, bool);

impl Label {
    /// Whether `t` is inside the interval (both ends included).
    pub fn contains(&self, t: f64) -> bool {
        t >= self.start && t <= self.end
    }

    /// What a training window under this label carries of it (`vigil train` and the agent's retrain
    /// prepare rows alike).
    pub fn window_label(&self) -> WindowLabel {
        (
            (self.anomaly, self.confidence),
            self.kind,
            !self.source.is_human(),
        )
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
            confidence: LabelSource::parse(source).default_confidence(),
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

    #[test]
    fn sources_parse_in_any_case_and_keep_other_names() {
        assert_eq!(LabelSource::parse(" Human "), LabelSource::Human);
        assert_eq!(
            LabelSource::parse("ALERTMANAGER"),
            LabelSource::Alertmanager
        );
        let other = LabelSource::parse("injected");
        assert_eq!(other, LabelSource::Other("injected".into()));
        assert_eq!(other.as_str(), "injected");
        assert_eq!(LabelSource::Human.to_string(), "human");
        assert!(!other.is_human());
        assert_eq!(other.default_confidence(), 0.65);
        assert_eq!(LabelSource::Human.default_confidence(), 0.95);
        assert_eq!(
            serde_json::to_string(&LabelSource::Alertmanager).unwrap_or_default(),
            "\"alertmanager\""
        );
    }
}
