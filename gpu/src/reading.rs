//! Device identity and one tick's readings.

/// One GPU as the source sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuDevice {
    /// Index (NVML numbering); exported as the `gpu` label.
    pub index: u32,
    /// Stable UUID (`GPU-…`); exported as the `uuid` label.
    pub uuid: String,
    /// Product name, e.g. `NVIDIA H100 80GB HBM3`.
    pub name: String,
}

/// One device's readings for one tick. Every field is `NaN` when the device does not report it.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GpuReading {
    /// Framebuffer memory in use, bytes (NVML `memory_info().used`, excludes reserved memory).
    pub memory_used_bytes: f64,
    /// Framebuffer memory free, bytes.
    pub memory_free_bytes: f64,
    /// Framebuffer memory installed, bytes.
    pub memory_total_bytes: f64,
    /// Fraction of the last sample period in which a kernel ran, `[0, 1]`.
    pub utilization_ratio: f64,
    /// Fraction of the last sample period in which device memory was read or written, `[0, 1]`.
    pub memory_utilization_ratio: f64,
    /// Core temperature, °C.
    pub temperature_celsius: f64,
    /// Power draw, watts.
    pub power_watts: f64,
    /// GPU memory used by this process on the device, bytes (`NaN` when the driver cannot attribute it).
    pub process_memory_bytes: f64,
}

impl GpuReading {
    /// A reading with every value missing.
    pub const MISSING: Self = Self {
        memory_used_bytes: f64::NAN,
        memory_free_bytes: f64::NAN,
        memory_total_bytes: f64::NAN,
        utilization_ratio: f64::NAN,
        memory_utilization_ratio: f64::NAN,
        temperature_celsius: f64::NAN,
        power_watts: f64::NAN,
        process_memory_bytes: f64::NAN,
    };

    /// A reading with the three memory values set and everything else missing.
    pub fn memory(used_bytes: f64, total_bytes: f64) -> Self {
        Self {
            memory_used_bytes: used_bytes,
            memory_free_bytes: (total_bytes - used_bytes).max(0.0),
            memory_total_bytes: total_bytes,
            ..Self::MISSING
        }
    }
}

impl Default for GpuReading {
    fn default() -> Self {
        Self::MISSING
    }
}
