//! A real GPU memory leak for the scenes: device memory allocated from this process through the CUDA
//! driver API (`libcuda.so.1`, loaded at run time: no CUDA toolkit, no build-time dependency).
//!
//! The leak is bounded twice: by a cap in bytes and by a share of the memory that was free when the
//! device was opened, whichever is smaller, so it can never fill a card other work is using. Every block
//! is freed when the leak stops, when its owner is dropped (also while a panic unwinds) and, as a last
//! resort, by the driver when the process exits.

use std::ffi::{CStr, c_char, c_int, c_uint, c_void};
use std::sync::Arc;

/// A device allocator: what the leak needs from CUDA (a fake one in the tests).
pub(crate) trait DeviceMemory: Send {
    /// Allocates `bytes` of device memory; returns the device pointer.
    fn alloc(&mut self, bytes: u64) -> Result<u64, String>;
    /// Frees what [`DeviceMemory::alloc`] returned.
    fn free(&mut self, ptr: u64) -> Result<(), String>;
}

impl DeviceMemory for Box<dyn DeviceMemory> {
    fn alloc(&mut self, bytes: u64) -> Result<u64, String> {
        (**self).alloc(bytes)
    }
    fn free(&mut self, ptr: u64) -> Result<(), String> {
        (**self).free(ptr)
    }
}

/// How much a leak may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LeakBounds {
    /// Bytes allocated per step (one step a tick).
    pub(crate) step: u64,
    /// Bytes held at most.
    pub(crate) cap: u64,
}

impl LeakBounds {
    /// `step` bytes a tick, at most `max_bytes` and at most `share` of `free_bytes` (the device's free
    /// memory when it was opened), rounded down to whole steps. Errs when not even one step fits.
    pub(crate) fn new(
        step: u64,
        max_bytes: u64,
        share: f64,
        free_bytes: u64,
    ) -> Result<Self, String> {
        if step == 0 || !(share > 0.0 && share <= 1.0) {
            return Err(format!(
                "a GPU leak needs a step above 0 and a share in (0, 1], not {step} and {share}"
            ));
        }
        // Float to integer: `as` saturates, and the share is at most 1, so this never exceeds free.
        let by_share = (free_bytes as f64 * share) as u64;
        let cap = max_bytes.min(by_share) / step * step;
        if cap == 0 {
            return Err(format!(
                "only {} MiB of GPU memory is free; a {} MiB leak step does not fit in {:.0}% of it",
                free_bytes >> 20,
                step >> 20,
                share * 100.0
            ));
        }
        Ok(Self { step, cap })
    }
}

/// Device memory held on purpose, released on [`Leak::release`] and on drop.
pub(crate) struct Leak<M: DeviceMemory> {
    mem: M,
    bounds: LeakBounds,
    blocks: Vec<u64>,
}

impl<M: DeviceMemory> Leak<M> {
    pub(crate) fn new(mem: M, bounds: LeakBounds) -> Self {
        Self {
            mem,
            bounds,
            blocks: Vec::new(),
        }
    }

    /// Bytes held now.
    pub(crate) fn held(&self) -> u64 {
        self.blocks.len() as u64 * self.bounds.step
    }

    /// Takes one more step unless that would pass the cap. Returns the bytes held after it.
    pub(crate) fn step(&mut self) -> Result<u64, String> {
        if self.held() + self.bounds.step <= self.bounds.cap {
            let ptr = self.mem.alloc(self.bounds.step)?;
            self.blocks.push(ptr);
        }
        Ok(self.held())
    }

    /// Frees every block; returns the first error (the rest are still freed).
    pub(crate) fn release(&mut self) -> Result<(), String> {
        let mut first = Ok(());
        for ptr in self.blocks.drain(..) {
            if let Err(e) = self.mem.free(ptr)
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        first
    }
}

impl<M: DeviceMemory> Drop for Leak<M> {
    fn drop(&mut self) {
        if let Err(e) = self.release() {
            tracing::warn!("freeing the injected GPU leak: {e}");
        }
    }
}

type CuResult = c_int;
type CuDevice = c_int;
type CuContext = *mut c_void;

/// The driver entry points the leak uses, resolved once.
struct Driver {
    // Kept alive for as long as the function pointers below are used.
    _lib: libloading::Library,
    get_error_name: unsafe extern "C" fn(CuResult, *mut *const c_char) -> CuResult,
    device_get_count: unsafe extern "C" fn(*mut c_int) -> CuResult,
    device_get: unsafe extern "C" fn(*mut CuDevice, c_int) -> CuResult,
    device_get_uuid: unsafe extern "C" fn(*mut [u8; 16], CuDevice) -> CuResult,
    primary_ctx_retain: unsafe extern "C" fn(*mut CuContext, CuDevice) -> CuResult,
    primary_ctx_release: unsafe extern "C" fn(CuDevice) -> CuResult,
    ctx_set_current: unsafe extern "C" fn(CuContext) -> CuResult,
    mem_get_info: unsafe extern "C" fn(*mut usize, *mut usize) -> CuResult,
    mem_alloc: unsafe extern "C" fn(*mut u64, usize) -> CuResult,
    mem_free: unsafe extern "C" fn(u64) -> CuResult,
}

impl Driver {
    fn load(path: &str) -> Result<Self, String> {
        // SAFETY: loading the NVIDIA driver library runs its initialisers, which have no preconditions
        // on this process.
        let lib = unsafe { libloading::Library::new(path) }.map_err(|e| {
            format!(
                "cannot load the CUDA driver ({path}): {e}; a real GPU leak needs an NVIDIA driver \
                 (no CUDA toolkit needed)"
            )
        })?;
        macro_rules! sym {
            ($($name:literal),+) => {{
                let mut found = None;
                $(
                    if found.is_none() {
                        // SAFETY: the type matches the CUDA driver API's declaration of this symbol.
                        found = unsafe { lib.get(concat!($name, "\0").as_bytes()) }
                            .ok()
                            .map(|s: libloading::Symbol<'_, _>| *s);
                    }
                )+
                found.ok_or_else(|| {
                    format!("{path} has no {}: the NVIDIA driver is too old", [$($name),+][0])
                })?
            }};
        }
        let get_error_name = sym!("cuGetErrorName");
        let init: unsafe extern "C" fn(c_uint) -> CuResult = sym!("cuInit");
        let d = Self {
            get_error_name,
            device_get_count: sym!("cuDeviceGetCount"),
            device_get: sym!("cuDeviceGet"),
            device_get_uuid: sym!("cuDeviceGetUuid_v2", "cuDeviceGetUuid"),
            primary_ctx_retain: sym!("cuDevicePrimaryCtxRetain"),
            primary_ctx_release: sym!("cuDevicePrimaryCtxRelease_v2", "cuDevicePrimaryCtxRelease"),
            ctx_set_current: sym!("cuCtxSetCurrent"),
            mem_get_info: sym!("cuMemGetInfo_v2"),
            mem_alloc: sym!("cuMemAlloc_v2"),
            mem_free: sym!("cuMemFree_v2"),
            _lib: lib,
        };
        // SAFETY: cuInit takes flags (must be 0) and may be called more than once.
        d.check("cuInit", unsafe { init(0) })?;
        Ok(d)
    }

    fn check(&self, what: &str, r: CuResult) -> Result<(), String> {
        if r == 0 {
            return Ok(());
        }
        let mut name: *const c_char = std::ptr::null();
        // SAFETY: the driver writes a pointer to a static string, or leaves it null for unknown codes.
        let known = unsafe { (self.get_error_name)(r, &mut name) } == 0 && !name.is_null();
        let name = if known {
            // SAFETY: non-null, NUL-terminated and static, as the driver API documents.
            unsafe { CStr::from_ptr(name) }
                .to_string_lossy()
                .into_owned()
        } else {
            "unknown error".to_owned()
        };
        Err(format!("{what} failed: {name} ({r})"))
    }
}

/// One CUDA device with its primary context retained (released on drop).
pub(crate) struct CudaDevice {
    driver: Driver,
    device: CuDevice,
    ctx: CuContext,
    /// CUDA's device ordinal (may differ from NVML's index; match devices by [`CudaDevice::uuid`]).
    pub(crate) ordinal: i32,
    /// The device's UUID as NVML and `nvidia-smi` print it (`GPU-xxxxxxxx-xxxx-...`).
    pub(crate) uuid: String,
}

// SAFETY: a CUDA context is not tied to a thread; every call below makes it current on the calling
// thread first (`cuCtxSetCurrent`), which the driver API allows from any thread.
unsafe impl Send for CudaDevice {}
// SAFETY: as above; the driver API is thread-safe.
unsafe impl Sync for CudaDevice {}

impl std::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaDevice")
            .field("ordinal", &self.ordinal)
            .field("uuid", &self.uuid)
            .finish_non_exhaustive()
    }
}

/// `GPU-` and the 16 bytes in the 8-4-4-4-12 layout NVML uses.
pub(crate) fn uuid_string(b: &[u8; 16]) -> String {
    let hex =
        |r: std::ops::Range<usize>| b[r].iter().map(|x| format!("{x:02x}")).collect::<String>();
    format!(
        "GPU-{}-{}-{}-{}-{}",
        hex(0..4),
        hex(4..6),
        hex(6..8),
        hex(8..10),
        hex(10..16)
    )
}

impl CudaDevice {
    /// Loads `libcuda.so.1`, initialises the driver and retains device `ordinal`'s primary context (the
    /// context a CUDA runtime program would use; creating it takes some device memory, as it does in
    /// any serving process).
    pub(crate) fn open(ordinal: i32) -> Result<Self, String> {
        Self::open_from("libcuda.so.1", ordinal)
    }

    pub(crate) fn open_from(path: &str, ordinal: i32) -> Result<Self, String> {
        let driver = Driver::load(path)?;
        let mut count: c_int = 0;
        // SAFETY: a valid out-pointer.
        driver.check("cuDeviceGetCount", unsafe {
            (driver.device_get_count)(&mut count)
        })?;
        if ordinal < 0 || ordinal >= count {
            return Err(format!(
                "CUDA device {ordinal} does not exist ({count} device(s) visible)"
            ));
        }
        let mut device: CuDevice = 0;
        // SAFETY: a valid out-pointer and an ordinal below the device count.
        driver.check("cuDeviceGet", unsafe {
            (driver.device_get)(&mut device, ordinal)
        })?;
        let mut raw = [0u8; 16];
        // SAFETY: CUuuid is 16 bytes.
        driver.check("cuDeviceGetUuid", unsafe {
            (driver.device_get_uuid)(&mut raw, device)
        })?;
        let mut ctx: CuContext = std::ptr::null_mut();
        // SAFETY: a valid out-pointer and device handle.
        driver.check("cuDevicePrimaryCtxRetain", unsafe {
            (driver.primary_ctx_retain)(&mut ctx, device)
        })?;
        Ok(Self {
            driver,
            device,
            ctx,
            ordinal,
            uuid: uuid_string(&raw),
        })
    }

    fn make_current(&self) -> Result<(), String> {
        // SAFETY: the context is retained until drop.
        self.driver.check("cuCtxSetCurrent", unsafe {
            (self.driver.ctx_set_current)(self.ctx)
        })
    }

    /// Free and total device memory, bytes.
    pub(crate) fn mem_info(&self) -> Result<(u64, u64), String> {
        self.make_current()?;
        let (mut free, mut total) = (0usize, 0usize);
        // SAFETY: valid out-pointers, a current context.
        self.driver.check("cuMemGetInfo", unsafe {
            (self.driver.mem_get_info)(&mut free, &mut total)
        })?;
        Ok((free as u64, total as u64))
    }
}

impl Drop for CudaDevice {
    fn drop(&mut self) {
        // SAFETY: pairs with the retain in `open`.
        let r = unsafe { (self.driver.primary_ctx_release)(self.device) };
        if let Err(e) = self.driver.check("cuDevicePrimaryCtxRelease", r) {
            tracing::warn!("{e}");
        }
    }
}

impl DeviceMemory for Arc<CudaDevice> {
    fn alloc(&mut self, bytes: u64) -> Result<u64, String> {
        self.make_current()?;
        let size = usize::try_from(bytes).map_err(|_| format!("{bytes} bytes do not fit"))?;
        let mut ptr = 0u64;
        // SAFETY: a valid out-pointer, a current context.
        self.driver.check("cuMemAlloc", unsafe {
            (self.driver.mem_alloc)(&mut ptr, size)
        })?;
        Ok(ptr)
    }

    fn free(&mut self, ptr: u64) -> Result<(), String> {
        self.make_current()?;
        // SAFETY: `ptr` came from cuMemAlloc on this context and is freed once (`Leak` drains it).
        self.driver
            .check("cuMemFree", unsafe { (self.driver.mem_free)(ptr) })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Counts what is held, and can refuse.
    #[derive(Clone, Default)]
    pub(crate) struct Fake(pub Arc<Mutex<FakeState>>);

    #[derive(Default)]
    pub(crate) struct FakeState {
        live: std::collections::BTreeMap<u64, u64>,
        next: u64,
        fail_alloc: bool,
    }

    impl Fake {
        pub(crate) fn live_bytes(&self) -> u64 {
            self.0.lock().map_or(0, |s| s.live.values().sum())
        }
    }

    impl DeviceMemory for Fake {
        fn alloc(&mut self, bytes: u64) -> Result<u64, String> {
            let mut s = self.0.lock().map_err(|e| e.to_string())?;
            if s.fail_alloc {
                return Err("cuMemAlloc failed: CUDA_ERROR_OUT_OF_MEMORY (2)".into());
            }
            s.next += 1;
            let p = s.next;
            s.live.insert(p, bytes);
            Ok(p)
        }
        fn free(&mut self, ptr: u64) -> Result<(), String> {
            let mut s = self.0.lock().map_err(|e| e.to_string())?;
            s.live
                .remove(&ptr)
                .map(|_| ())
                .ok_or_else(|| format!("double free of {ptr}"))
        }
    }

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    #[test]
    fn bounds_take_the_smaller_of_cap_and_share_in_whole_steps() {
        // Plenty free: the byte cap rules.
        let b = LeakBounds::new(256 * MIB, 8 * GIB, 0.25, 140 * GIB).unwrap();
        assert_eq!(b.cap, 8 * GIB);
        // Little free: a quarter of it, rounded down to whole steps (10 GiB / 4 = 2.5 GiB → 2.5 GiB).
        let b = LeakBounds::new(256 * MIB, 8 * GIB, 0.25, 10 * GIB).unwrap();
        assert_eq!(b.cap, 10 * GIB / 4);
        let b = LeakBounds::new(256 * MIB, 8 * GIB, 0.25, 3 * GIB).unwrap();
        assert_eq!(b.cap, 3 * 256 * MIB, "768 MiB of 3 GiB's quarter (768 MiB)");
        let b = LeakBounds::new(300 * MIB, 8 * GIB, 0.25, 3 * GIB).unwrap();
        assert_eq!(b.cap, 2 * 300 * MIB, "whole steps only");
        // Not one step fits: a clear error, not a leak of nothing.
        let e = LeakBounds::new(256 * MIB, 8 * GIB, 0.25, GIB - 1).unwrap_err();
        assert!(e.contains("free"), "{e}");
        assert!(LeakBounds::new(0, GIB, 0.5, GIB).is_err());
        assert!(LeakBounds::new(MIB, GIB, 0.0, GIB).is_err());
        assert!(LeakBounds::new(MIB, GIB, f64::NAN, GIB).is_err());
        assert!(LeakBounds::new(MIB, GIB, 1.5, GIB).is_err());
    }

    #[test]
    fn the_leak_grows_by_steps_stops_at_its_cap_and_frees_everything_on_release() {
        let fake = Fake::default();
        let bounds = LeakBounds::new(256 * MIB, GIB, 1.0, 80 * GIB).unwrap();
        let mut leak = Leak::new(fake.clone(), bounds);
        let held: Vec<u64> = (0..6).map(|_| leak.step().unwrap()).collect();
        assert_eq!(
            held,
            [256 * MIB, 512 * MIB, 768 * MIB, GIB, GIB, GIB],
            "grows a step a tick, then holds at the cap"
        );
        assert_eq!(fake.live_bytes(), GIB);
        leak.release().unwrap();
        assert_eq!(fake.live_bytes(), 0);
        assert_eq!(leak.held(), 0);
        // Released means it can leak again from zero.
        assert_eq!(leak.step().unwrap(), 256 * MIB);
    }

    #[test]
    fn dropping_the_leak_frees_it_even_while_a_panic_unwinds() {
        let fake = Fake::default();
        let bounds = LeakBounds::new(MIB, 64 * MIB, 1.0, GIB).unwrap();
        let f = fake.clone();
        let joined = std::thread::spawn(move || {
            let mut leak = Leak::new(f, bounds);
            for _ in 0..10 {
                leak.step().unwrap();
            }
            panic!("the fault thread dies while holding 10 MiB");
        })
        .join();
        assert!(joined.is_err(), "the thread panicked");
        assert_eq!(fake.live_bytes(), 0, "freed by the unwinding drop");
    }

    #[test]
    fn a_failed_allocation_is_an_error_and_holds_nothing_extra() {
        let fake = Fake::default();
        let mut leak = Leak::new(fake.clone(), LeakBounds::new(MIB, GIB, 1.0, GIB).unwrap());
        leak.step().unwrap();
        fake.0.lock().unwrap().fail_alloc = true;
        let e = leak.step().unwrap_err();
        assert!(e.contains("OUT_OF_MEMORY"), "{e}");
        assert_eq!(leak.held(), MIB);
        drop(leak);
        assert_eq!(fake.live_bytes(), 0);
    }

    #[test]
    fn without_a_driver_opening_a_device_says_what_is_missing() {
        let e = CudaDevice::open_from("/nonexistent/libcuda.so.1", 0).unwrap_err();
        assert!(e.contains("cannot load the CUDA driver"), "{e}");
        assert!(e.contains("/nonexistent/libcuda.so.1"), "{e}");
        assert!(e.contains("NVIDIA driver"), "{e}");
        // The real library name: absent here (no GPU) it is the same clear error; on a GPU host a device.
        match CudaDevice::open(0) {
            Ok(d) => assert!(d.uuid.starts_with("GPU-"), "{d:?}"),
            Err(e) => assert!(
                e.contains("CUDA") || e.contains("cu"),
                "an error that names the driver: {e}"
            ),
        }
    }

    #[test]
    fn a_library_that_is_not_the_driver_is_refused_by_name() {
        // libc loads but has no CUDA entry points.
        let e = CudaDevice::open_from("libc.so.6", 0).unwrap_err();
        assert!(e.contains("has no cuGetErrorName"), "{e}");
    }

    #[test]
    fn uuids_print_the_way_nvml_prints_them() {
        let b: [u8; 16] = [
            0x1d, 0x2c, 0x3b, 0x4a, 0x59, 0x68, 0x77, 0x86, 0x95, 0xa4, 0xb3, 0xc2, 0xd1, 0xe0,
            0xff, 0x01,
        ];
        assert_eq!(uuid_string(&b), "GPU-1d2c3b4a-5968-7786-95a4-b3c2d1e0ff01");
    }
}
