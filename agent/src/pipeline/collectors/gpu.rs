//! GPU signals from a [`vigil_gpu::GpuSource`].

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use vigil_features::SignalSpec;
use vigil_features::vocab;
use vigil_gpu::{GpuReading, GpuSource};

use super::{CollectError, Collector};
use crate::metrics::{self as m, FGauge};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct GpuLabels {
    gpu: String,
    uuid: String,
}

/// How each per-device signal is read, in [`vocab::GPU`] order (its names and units come from there).
const FIELDS: [fn(&GpuReading) -> f64; vocab::GPU.len()] = [
    |r| r.memory_used_bytes,
    |r| r.memory_free_bytes,
    |r| r.memory_total_bytes,
    |r| r.utilization_ratio,
    |r| r.memory_utilization_ratio,
    |r| r.temperature_celsius,
    |r| r.power_watts,
    |r| r.process_memory_bytes,
];

/// Polls the source and exports one series per device and field. Gauges for each device are created
/// once at start, so a tick does no label hashing.
pub(crate) struct GpuCollector {
    source: Box<dyn GpuSource>,
    readings: Vec<GpuReading>,
    /// `gauges[device][field]`, fields in [`FIELDS`] order.
    gauges: Vec<[FGauge; FIELDS.len()]>,
}

impl GpuCollector {
    pub(crate) fn new(source: Box<dyn GpuSource>, registry: &mut Registry) -> Self {
        let available = FGauge::default();
        available.set(if source.devices().is_empty() {
            0.0
        } else {
            1.0
        });
        m::GPU_AVAILABLE.register(registry, available);
        let defs = [
            m::GPU_MEMORY_USED,
            m::GPU_MEMORY_FREE,
            m::GPU_MEMORY_TOTAL,
            m::GPU_UTILIZATION,
            m::GPU_MEMORY_UTILIZATION,
            m::GPU_TEMPERATURE,
            m::GPU_POWER,
            m::GPU_PROCESS_MEMORY,
        ];
        let families: Vec<Family<GpuLabels, FGauge>> =
            defs.iter().map(|_| Family::default()).collect();
        let gauges = source
            .devices()
            .iter()
            .map(|d| {
                let labels = GpuLabels {
                    gpu: d.index.to_string(),
                    uuid: d.uuid.clone(),
                };
                std::array::from_fn(|f| families[f].get_or_create(&labels).clone())
            })
            .collect();
        if !source.devices().is_empty() {
            for (def, family) in defs.iter().zip(families) {
                def.register(registry, family);
            }
        }
        let readings = vec![GpuReading::MISSING; source.devices().len()];
        Self {
            source,
            readings,
            gauges,
        }
    }
}

impl Collector for GpuCollector {
    fn name(&self) -> &'static str {
        "gpu"
    }

    fn signals(&self) -> Vec<SignalSpec> {
        self.source
            .devices()
            .iter()
            .flat_map(|d| {
                vocab::GPU
                    .iter()
                    .map(move |k| k.spec_named(format!("gpu{}_{}", d.index, k.name)))
            })
            .collect()
    }

    fn collect(&mut self, out: &mut [f64]) -> Result<(), CollectError> {
        self.readings.fill(GpuReading::MISSING);
        // A failed tick may still carry partial readings (other devices); export what there is.
        let result = self.source.sample(&mut self.readings);
        let mut slots = out.iter_mut();
        for (reading, gauges) in self.readings.iter().zip(&self.gauges) {
            for (get, gauge) in FIELDS.iter().zip(gauges) {
                let v = get(reading);
                gauge.set(v);
                if let Some(slot) = slots.next() {
                    *slot = v;
                }
            }
        }
        result.map_err(|e| CollectError(e.to_string()))
    }
}
