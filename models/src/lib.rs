//! Vigil anomaly detectors and model files. Filled by the detector issue; empty until then.
