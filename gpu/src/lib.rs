//! GPU signal sources for Vigil.
//!
//! Everything the agent knows about GPUs comes through one small trait, [`GpuSource`]. Three sources
//! implement it:
//!
//! - [`NvmlSource`] (feature `nvml`, on by default): NVIDIA devices through NVML. `libnvidia-ml.so.1` is
//!   loaded at run time, so a binary built with the feature runs fine on a machine without a GPU.
//! - [`FakeGpu`]: a scripted source for tests and fault injection (a memory leak, a lost device).
//! - [`NoGpu`]: no devices at all.
//!
//! [`open`] picks one from a [`GpuMode`]. Values a device does not support (power on some SKUs,
//! utilization under MIG) are `NaN` in the [`GpuReading`], never errors.

mod fake;
mod none;
#[cfg(feature = "nvml")]
mod nvml;
mod reading;

pub use fake::FakeGpu;
pub use none::NoGpu;
#[cfg(feature = "nvml")]
pub use nvml::NvmlSource;
pub use reading::{GpuDevice, GpuReading};

/// Errors from GPU sources.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// No usable GPU library or driver (NVML could not be loaded or initialised).
    #[error("GPU monitoring is unavailable: {0}")]
    Unavailable(String),
    /// A device call failed this tick (for example the GPU fell off the bus).
    #[error("GPU {index}: {message}")]
    Device {
        /// Device index as NVML numbers it.
        index: u32,
        /// What failed.
        message: String,
    },
}

/// A source of per-device GPU readings, polled once per agent tick from the agent's own thread.
///
/// The device list is fixed when the source is created; [`GpuSource::sample`] fills one reading per
/// device, in the same order. Calls may block for a few milliseconds (NVML talks to the driver), which is
/// why only the agent thread calls them.
pub trait GpuSource: Send {
    /// Short name of the source: `nvml`, `fake` or `none`.
    fn kind(&self) -> &'static str;
    /// The devices this source reports on.
    fn devices(&self) -> &[GpuDevice];
    /// Fills `out` (one entry per device) with this tick's readings. Values that cannot be read are left
    /// `NaN`; an `Err` means the whole tick's GPU data is unusable and is counted by the agent.
    fn sample(&mut self, out: &mut [GpuReading]) -> Result<(), GpuError>;
}

/// How the agent should find GPUs (`VIGIL_GPU`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GpuMode {
    /// Use NVML when it loads; otherwise run without GPU signals (one log line, no error).
    #[default]
    Auto,
    /// Never look for GPUs.
    Off,
    /// Require NVML: starting the agent fails when it cannot be loaded.
    Nvml,
}

impl GpuMode {
    /// Parses `auto`, `off` or `nvml` (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Some(Self::Auto),
            "off" => Some(Self::Off),
            "nvml" => Some(Self::Nvml),
            _ => None,
        }
    }

    /// The name [`GpuMode::parse`] reads back.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Off => "off",
            Self::Nvml => "nvml",
        }
    }
}

/// Opens the source a [`GpuMode`] asks for.
///
/// `Auto` never fails: when NVML is absent it returns [`NoGpu`] and the reason, for the caller to log
/// once. `Nvml` fails with [`GpuError::Unavailable`] when NVML is absent or the crate was built without
/// the `nvml` feature.
pub fn open(mode: GpuMode) -> Result<(Box<dyn GpuSource>, Option<String>), GpuError> {
    match mode {
        GpuMode::Off => Ok((Box::new(NoGpu), None)),
        GpuMode::Auto => match open_nvml() {
            Ok(src) => Ok((src, None)),
            Err(e) => Ok((Box::new(NoGpu), Some(e.to_string()))),
        },
        GpuMode::Nvml => open_nvml().map(|src| (src, None)),
    }
}

#[cfg(feature = "nvml")]
fn open_nvml() -> Result<Box<dyn GpuSource>, GpuError> {
    Ok(Box::new(NvmlSource::init()?))
}

#[cfg(not(feature = "nvml"))]
fn open_nvml() -> Result<Box<dyn GpuSource>, GpuError> {
    Err(GpuError::Unavailable(
        "vigil-gpu was built without the `nvml` feature; rebuild with it to read NVIDIA GPUs"
            .into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_mode_parses_documented_values_only() {
        assert_eq!(GpuMode::parse("AUTO"), Some(GpuMode::Auto));
        assert_eq!(GpuMode::parse("off"), Some(GpuMode::Off));
        assert_eq!(GpuMode::parse("nvml"), Some(GpuMode::Nvml));
        for m in [GpuMode::Auto, GpuMode::Off, GpuMode::Nvml] {
            assert_eq!(GpuMode::parse(m.as_str()), Some(m));
        }
        assert_eq!(GpuMode::parse("cuda"), None);
        // Only what docs/CONFIG.md lists: no silent synonyms.
        for undocumented in ["none", "false", "0", "no", ""] {
            assert_eq!(GpuMode::parse(undocumented), None, "{undocumented}");
        }
    }

    #[test]
    fn auto_without_nvml_library_falls_back_to_no_gpu_with_a_reason() {
        // This machine (and CI) has no libnvidia-ml.so.1; on a GPU host the source is NVML instead.
        let (src, reason) = open(GpuMode::Auto).unwrap();
        if src.kind() == "none" {
            assert!(reason.is_some_and(|r| !r.is_empty()));
            assert!(src.devices().is_empty());
        } else {
            assert_eq!(src.kind(), "nvml");
        }
    }

    #[test]
    fn off_never_touches_nvml() {
        let (src, reason) = open(GpuMode::Off).unwrap();
        assert_eq!(src.kind(), "none");
        assert!(reason.is_none());
    }
}
