//! A scripted GPU for tests, benchmarks and fault injection.

use std::fmt;

use crate::{GpuDevice, GpuError, GpuReading, GpuSource};

type Script = Box<dyn FnMut(u64, &mut [GpuReading]) -> Result<(), GpuError> + Send>;

/// A GPU source whose readings come from a script: a closure called once per tick with the tick number
/// (0, 1, 2, ...) and one reading per device to fill. Returning `Err` simulates a failing device.
///
/// ```
/// use vigil_gpu::{FakeGpu, GpuReading, GpuSource};
///
/// // One 80 GiB device leaking 1 GiB per tick.
/// let mut gpu = FakeGpu::leaking(80 << 30, 10 << 30, 1 << 30);
/// let mut out = [GpuReading::MISSING];
/// gpu.sample(&mut out).unwrap();
/// gpu.sample(&mut out).unwrap();
/// assert_eq!(out[0].memory_used_bytes, (11u64 << 30) as f64);
/// ```
pub struct FakeGpu {
    devices: Vec<GpuDevice>,
    script: Script,
    tick: u64,
}

impl fmt::Debug for FakeGpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeGpu")
            .field("devices", &self.devices)
            .field("tick", &self.tick)
            .finish_non_exhaustive()
    }
}

impl FakeGpu {
    /// `device_count` fake devices driven by `script`.
    pub fn new(
        device_count: u32,
        script: impl FnMut(u64, &mut [GpuReading]) -> Result<(), GpuError> + Send + 'static,
    ) -> Self {
        let devices = (0..device_count)
            .map(|index| GpuDevice {
                index,
                uuid: format!("GPU-00000000-0000-0000-0000-{index:012}"),
                name: "Vigil fake GPU".to_owned(),
            })
            .collect();
        Self {
            devices,
            script: Box::new(script),
            tick: 0,
        }
    }

    /// One device with constant memory use, 35% utilisation, 55 °C and 180 W.
    pub fn steady(total_bytes: u64, used_bytes: u64) -> Self {
        Self::leaking(total_bytes, used_bytes, 0)
    }

    /// One device whose used memory grows by `leak_bytes_per_tick` every tick (capped at the total), the
    /// shape of a GPU memory leak.
    pub fn leaking(total_bytes: u64, start_used_bytes: u64, leak_bytes_per_tick: u64) -> Self {
        Self::new(1, move |tick, out| {
            let used = start_used_bytes
                .saturating_add(leak_bytes_per_tick.saturating_mul(tick))
                .min(total_bytes);
            for r in out.iter_mut() {
                *r = GpuReading {
                    utilization_ratio: 0.35,
                    memory_utilization_ratio: 0.2,
                    temperature_celsius: 55.0,
                    power_watts: 180.0,
                    process_memory_bytes: used as f64,
                    ..GpuReading::memory(used as f64, total_bytes as f64)
                };
            }
            Ok(())
        })
    }
}

impl GpuSource for FakeGpu {
    fn kind(&self) -> &'static str {
        "fake"
    }

    fn devices(&self) -> &[GpuDevice] {
        &self.devices
    }

    fn sample(&mut self, out: &mut [GpuReading]) -> Result<(), GpuError> {
        let tick = self.tick;
        self.tick += 1;
        (self.script)(tick, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_sees_consecutive_ticks_and_can_fail() {
        let mut gpu = FakeGpu::new(2, |tick, out| {
            if tick == 1 {
                return Err(GpuError::Device {
                    index: 1,
                    message: "GPU is lost".into(),
                });
            }
            for (i, r) in out.iter_mut().enumerate() {
                *r = GpuReading::memory(tick as f64 * 10.0 + i as f64, 100.0);
            }
            Ok(())
        });
        assert_eq!(gpu.devices().len(), 2);
        let mut out = [GpuReading::MISSING; 2];
        gpu.sample(&mut out).unwrap();
        assert_eq!(out[1].memory_used_bytes, 1.0);
        assert!(gpu.sample(&mut out).is_err());
        gpu.sample(&mut out).unwrap();
        assert_eq!(out[0].memory_used_bytes, 20.0);
        assert_eq!(out[0].memory_free_bytes, 80.0);
    }

    #[test]
    fn leak_is_capped_at_total_memory() {
        let mut gpu = FakeGpu::leaking(100, 90, 6);
        let mut out = [GpuReading::MISSING];
        for _ in 0..5 {
            gpu.sample(&mut out).unwrap();
        }
        assert_eq!(out[0].memory_used_bytes, 100.0);
        assert_eq!(out[0].memory_free_bytes, 0.0);
    }
}
