//! The feature stage of a tick: window → feature vector → (optional) metrics and drift.

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use vigil_features::drift::{DriftMonitor, DriftReference};
use vigil_features::{
    FeatureError, FeatureSchema, FeatureVector, Horizons, Sample, SignalSet, Window,
};

use crate::metrics::{self as m, FGauge};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FeatureLabel {
    feature: String,
}

/// Owns the window and the live drift monitor; everything is allocated at construction (or when a
/// reference arrives), nothing per tick.
pub(crate) struct FeatureStage {
    window: Window,
    vector: FeatureVector,
    started: Instant,
    /// One gauge per feature when feature metrics are on.
    value_gauges: Option<Vec<FGauge>>,
    drift_window: usize,
    drift: Option<DriftMonitor>,
    psi_family: Family<FeatureLabel, FGauge>,
    psi_gauges: Vec<FGauge>,
    max_psi: FGauge,
}

/// Settings of the feature stage.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FeatureConfig {
    pub(crate) horizons: Horizons,
    pub(crate) export_values: bool,
    pub(crate) drift_window: usize,
}

impl FeatureStage {
    pub(crate) fn new(signals: &SignalSet, config: FeatureConfig, registry: &mut Registry) -> Self {
        let window = Window::new(signals, config.horizons);
        let vector = FeatureVector::new(window.schema());
        let value_gauges = config.export_values.then(|| {
            let family = Family::<FeatureLabel, FGauge>::default();
            let gauges = window
                .schema()
                .names()
                .iter()
                .map(|n| {
                    family
                        .get_or_create(&FeatureLabel { feature: n.clone() })
                        .clone()
                })
                .collect();
            m::FEATURE_VALUE.register(registry, family);
            gauges
        });
        let psi_family = Family::<FeatureLabel, FGauge>::default();
        m::FEATURE_DRIFT_PSI.register(registry, psi_family.clone());
        let max_psi = FGauge::default();
        max_psi.set(f64::NAN);
        m::FEATURE_DRIFT_MAX_PSI.register(registry, max_psi.clone());
        Self {
            window,
            vector,
            started: Instant::now(),
            value_gauges,
            drift_window: config.drift_window,
            drift: None,
            psi_family,
            psi_gauges: Vec::new(),
            max_psi,
        }
    }

    pub(crate) fn schema(&self) -> &FeatureSchema {
        self.window.schema()
    }

    pub(crate) fn is_warm(&self) -> bool {
        self.window.is_warm()
    }

    pub(crate) fn vector(&self) -> &FeatureVector {
        &self.vector
    }

    /// Replaces the drift reference (its schema was checked by the caller).
    pub(crate) fn set_reference(&mut self, reference: DriftReference) {
        if self.psi_gauges.is_empty() {
            self.psi_gauges = reference
                .names()
                .iter()
                .map(|n| {
                    self.psi_family
                        .get_or_create(&FeatureLabel { feature: n.clone() })
                        .clone()
                })
                .collect();
        }
        self.drift = Some(DriftMonitor::new(reference, self.drift_window));
    }

    /// Pushes the sample (timestamped with a monotonic clock), extracts features, updates metrics.
    pub(crate) fn update(&mut self, sample: &Sample) -> Result<(), FeatureError> {
        let t = self.started.elapsed().as_secs_f64();
        self.window.push_sample(sample, t)?;
        self.window.extract(&mut self.vector)?;
        if let Some(gauges) = &self.value_gauges {
            for (g, v) in gauges.iter().zip(self.vector.values()) {
                g.set(*v);
            }
        }
        if let Some(drift) = &mut self.drift {
            drift.push(self.vector.values())?;
            let mut max = f64::NAN;
            for (i, g) in self.psi_gauges.iter().enumerate() {
                let p = drift.psi_of(i);
                g.set(p);
                if !p.is_nan() {
                    max = if max.is_nan() { p } else { max.max(p) };
                }
            }
            self.max_psi.set(max);
        }
        Ok(())
    }
}
