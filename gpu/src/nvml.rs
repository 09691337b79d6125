//! NVIDIA GPUs through NVML.

use nvml_wrapper::Nvml;
use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::NvmlError;

use crate::{GpuDevice, GpuError, GpuReading, GpuSource};

/// NVIDIA devices read through NVML (`libnvidia-ml.so.1`, loaded at run time).
///
/// The device list is read once at [`NvmlSource::init`]; each tick re-resolves devices by index, reads
/// memory, utilisation, temperature and power, and this process's memory from the running compute
/// processes. Calls a device does not support leave `NaN`.
///
/// Inside a container NVML reports host PIDs, so this process's own GPU memory may not be attributable:
/// it is then reported as `0` on devices where the process is not found.
///
/// A device in MIG mode is read as a whole GPU (its memory is the sum over its instances); its
/// process memory is `NaN` (not attributable per instance) and utilisation is `NaN` (NVML does not
/// report it under MIG). Per-instance readings are not supported; a warning says so at start.
pub struct NvmlSource {
    nvml: Nvml,
    devices: Vec<GpuDevice>,
    /// Per device: MIG mode is on.
    mig: Vec<bool>,
    pid: u32,
}

impl std::fmt::Debug for NvmlSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvmlSource")
            .field("devices", &self.devices)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: NvmlError) -> GpuError {
    let hint = match e {
        NvmlError::LibloadingError(_) => {
            " (libnvidia-ml.so.1 not found: no NVIDIA driver on this host, or it is not on the loader path)"
        }
        NvmlError::DriverNotLoaded => " (the NVIDIA kernel driver is not loaded)",
        NvmlError::NoPermission => " (permission denied: run with access to /dev/nvidia*)",
        _ => "",
    };
    GpuError::Unavailable(format!("NVML: {e}{hint}"))
}

/// `Ok(None)` for values a device does not support, `Err` for real failures.
fn optional<T>(r: Result<T, NvmlError>) -> Result<Option<T>, NvmlError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(
            NvmlError::NotSupported | NvmlError::FailedToLoadSymbol(_) | NvmlError::NoPermission,
        ) => Ok(None),
        Err(e) => Err(e),
    }
}

impl NvmlSource {
    /// Loads NVML and lists devices. Fails with [`GpuError::Unavailable`] when the library or driver is
    /// absent.
    pub fn init() -> Result<Self, GpuError> {
        let nvml = Nvml::init().map_err(unavailable)?;
        let count = nvml.device_count().map_err(unavailable)?;
        let mut devices = Vec::with_capacity(count as usize);
        let mut mig = Vec::with_capacity(count as usize);
        for index in 0..count {
            let dev = nvml.device_by_index(index).map_err(|e| GpuError::Device {
                index,
                message: e.to_string(),
            })?;
            devices.push(GpuDevice {
                index,
                uuid: dev
                    .uuid()
                    .unwrap_or_else(|_| format!("GPU-unknown-{index}")),
                name: dev.name().unwrap_or_else(|_| "unknown".to_owned()),
            });
            // Not supported (most GPUs) reads as MIG off.
            let on = dev.mig_mode().is_ok_and(|m| m.current == 1);
            if on {
                tracing::warn!(
                    "GPU {index} is in MIG mode: Vigil reads it as one GPU (memory summed over its \
                     instances); per-instance readings are not supported and this process's GPU \
                     memory on it reads NaN"
                );
            }
            mig.push(on);
        }
        Ok(Self {
            nvml,
            devices,
            mig,
            pid: std::process::id(),
        })
    }

    /// Keeps only the devices `keep` accepts (for example one device, to measure a tick's cost per
    /// device). Readings then come in the order of the devices kept.
    pub fn retain_devices(&mut self, mut keep: impl FnMut(&GpuDevice) -> bool) {
        let mut flags = self.mig.iter();
        let (devices, mig): (Vec<GpuDevice>, Vec<bool>) = self
            .devices
            .drain(..)
            .map(|d| (d, flags.next().copied().unwrap_or(false)))
            .filter(|(d, _)| keep(d))
            .unzip();
        self.devices = devices;
        self.mig = mig;
    }

    fn read(&self, index: u32, mig: bool, r: &mut GpuReading) -> Result<(), NvmlError> {
        let dev = self.nvml.device_by_index(index)?;
        let mem = dev.memory_info()?;
        r.memory_used_bytes = mem.used as f64;
        r.memory_free_bytes = mem.free as f64;
        r.memory_total_bytes = mem.total as f64;
        if let Some(u) = optional(dev.utilization_rates())? {
            r.utilization_ratio = f64::from(u.gpu) / 100.0;
            r.memory_utilization_ratio = f64::from(u.memory) / 100.0;
        }
        if let Some(t) = optional(dev.temperature(TemperatureSensor::Gpu))? {
            r.temperature_celsius = f64::from(t);
        }
        if let Some(mw) = optional(dev.power_usage())? {
            r.power_watts = f64::from(mw) / 1000.0;
        }
        if mig {
            // The parent device's process list is not per instance: say "unknown", not a wrong 0.
            return Ok(());
        }
        if let Some(procs) = optional(dev.running_compute_processes())? {
            r.process_memory_bytes = procs
                .iter()
                .filter(|p| p.pid == self.pid)
                .map(|p| match p.used_gpu_memory {
                    UsedGpuMemory::Used(b) => b as f64,
                    UsedGpuMemory::Unavailable => f64::NAN,
                })
                // Not `sum()`: an empty f64 sum is -0.0, exported as `-0`.
                .fold(0.0, |a, b| a + b);
        }
        Ok(())
    }
}

impl GpuSource for NvmlSource {
    fn kind(&self) -> &'static str {
        "nvml"
    }

    fn devices(&self) -> &[GpuDevice] {
        &self.devices
    }

    fn sample(&mut self, out: &mut [GpuReading]) -> Result<(), GpuError> {
        let mut first_err = None;
        for ((dev, &mig), r) in self.devices.iter().zip(&self.mig).zip(out.iter_mut()) {
            *r = GpuReading::MISSING;
            if let Err(e) = self.read(dev.index, mig, r) {
                first_err.get_or_insert(GpuError::Device {
                    index: dev.index,
                    message: e.to_string(),
                });
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a host with an NVIDIA driver this reads real devices; elsewhere it checks the error says why.
    #[test]
    fn nvml_reads_devices_or_explains_why_not() {
        match NvmlSource::init() {
            Ok(mut src) => {
                let mut out = vec![GpuReading::MISSING; src.devices().len()];
                src.sample(&mut out).unwrap();
                for (d, r) in src.devices().iter().zip(&out) {
                    assert!(d.uuid.starts_with("GPU-"), "{d:?}");
                    assert!(r.memory_total_bytes > 0.0, "{d:?}: {r:?}");
                    assert!(r.memory_used_bytes <= r.memory_total_bytes);
                    eprintln!("{d:?}: {r:?}");
                }
            }
            Err(GpuError::Unavailable(msg)) => assert!(msg.contains("NVML"), "{msg}"),
            Err(e) => panic!("unexpected error kind: {e}"),
        }
    }
}
