//! The source used when there is no GPU.

use crate::{GpuDevice, GpuError, GpuReading, GpuSource};

/// A source with no devices: the agent exports `vigil_gpu_available 0` and no per-device series.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoGpu;

impl GpuSource for NoGpu {
    fn kind(&self) -> &'static str {
        "none"
    }

    fn devices(&self) -> &[GpuDevice] {
        &[]
    }

    fn sample(&mut self, _out: &mut [GpuReading]) -> Result<(), GpuError> {
        Ok(())
    }
}
