//! The feature metrics of a tick: the engine's feature vector → (optional) per-feature gauges and drift.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use vigil_features::drift::{DriftMonitor, DriftReference};
use vigil_features::{FeatureError, FeatureSchema, FeatureVector, Horizons};

use crate::metrics::{self as m, FGauge};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FeatureLabel {
    feature: String,
}

/// Owns the live drift monitor and the feature gauges; everything is allocated at construction (or when
/// a reference arrives), nothing per tick.
pub(crate) struct FeatureStage {
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
    pub(crate) fn new(
        schema: &FeatureSchema,
        config: FeatureConfig,
        registry: &mut Registry,
    ) -> Self {
        let value_gauges = config.export_values.then(|| {
            let family = Family::<FeatureLabel, FGauge>::default();
            let gauges = schema
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
            value_gauges,
            drift_window: config.drift_window,
            drift: None,
            psi_family,
            psi_gauges: Vec::new(),
            max_psi,
        }
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

    /// The `vigil_feature_drift_max_psi` gauge (shared: the API's status reads it).
    pub(crate) fn max_psi(&self) -> FGauge {
        self.max_psi.clone()
    }

    /// Updates the feature gauges and the drift monitor with this tick's features.
    pub(crate) fn update(&mut self, vector: &FeatureVector) -> Result<(), FeatureError> {
        if let Some(gauges) = &self.value_gauges {
            for (g, v) in gauges.iter().zip(vector.values()) {
                g.set(*v);
            }
        }
        if let Some(drift) = &mut self.drift {
            drift.push(vector.values())?;
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
