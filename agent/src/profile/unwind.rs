//! Stacks through code built without frame pointers: DWARF call-frame information, read inside the
//! SIGPROF handler (x86_64 Linux).
//!
//! Rust, C and C++ binaries carry `.eh_frame` (the table exceptions and panics unwind with) whether or
//! not they keep frame pointers, and the loader maps it with the code (`PT_GNU_EH_FRAME` points at its
//! sorted index, `.eh_frame_hdr`). When a profile starts, [`Unwinder::new`] lists every loaded object
//! (`dl_iterate_phdr`), keeps each one's code range and parsed index, and pins shared libraries with
//! `dlopen(RTLD_NOLOAD)` so that none is unmapped while the handler may read its tables (the pins are
//! released when the profile ends). In the handler, [`Unwinder::walk`] looks up each frame's
//! address in its object's index, evaluates the frame's CFI row with gimli (into fixed arrays held by
//! the unwinder: nothing is allocated, no lock is taken) and reads the return address and saved frame
//! pointer from the stack through the caller's fault-safe reader. A frame without CFI (JIT code, a
//! hand-written stub) takes one frame-pointer step instead; the walk stops where neither gives a
//! frame above the current one.
//!
//! What it holds while a profile runs: one entry per loaded object (about 200 bytes) and gimli's
//! rule arrays (about 5 KiB). Unlike `perf --call-graph dwarf` and samply, which copy each sample's
//! registers and top of stack (8–32 KiB a sample) and unwind afterwards, nothing per sample is kept
//! beyond its return addresses, so the stack table's bound is unchanged.

use std::ffi::{CStr, c_void};

use gimli::{
    BaseAddresses, CfaRule, EhFrame, EhFrameHdr, EndianSlice, LittleEndian, ParsedEhFrameHdr,
    Register, RegisterRule, UnwindContext, UnwindContextStorage, UnwindSection, UnwindTableRow,
    X86_64,
};

use super::sampler::{Regs, frame_pointer_step, walk_with};

type Slice = EndianSlice<'static, LittleEndian>;

/// gimli's unwind context with its rules in fixed arrays: evaluating a row allocates nothing. A
/// frame that saves more than 32 registers (none on x86_64 saves more than 16) is not unwound.
pub(crate) struct Fixed;

impl UnwindContextStorage<usize> for Fixed {
    type Rules = [(Register, RegisterRule<usize>); 32];
    type Stack = [UnwindTableRow<usize, Self>; 4];
}

/// One loaded object: its code, and its unwind tables in its own mapped memory.
struct Module {
    start: u64,
    end: u64,
    bases: BaseAddresses,
    hdr: ParsedEhFrameHdr<Slice>,
    eh_frame: EhFrame<Slice>,
}

/// The loaded objects' unwind tables and gimli's context; see the module documentation.
pub(crate) struct Unwinder {
    /// Sorted by code start.
    modules: Vec<Module>,
    ctx: Box<UnwindContext<usize, Fixed>>,
    /// `dlopen(RTLD_NOLOAD)` handles keeping the shared libraries mapped; closed on drop.
    pins: Vec<*mut c_void>,
    /// The stack the walk runs on ([`Unwinder::walk_on_own_stack`]); null where it could not be
    /// mapped (the walk then takes frame-pointer steps only).
    stack: *mut u8,
}

/// The walk's own stack: evaluating CFI takes a few kilobytes (more in a debug build), more than a
/// thread's alternate signal stack has (Rust gives every thread one of 8 KiB or so, and SIGPROF
/// runs on it). Mapped for the profile; only the pages a walk touches become resident.
const WALK_STACK: usize = 256 * 1024;

/// What `dl_iterate_phdr` reports of one object.
struct Found {
    name: Vec<u8>,
    /// Executable segments.
    code: Vec<(u64, u64)>,
    /// Every loaded segment.
    loads: Vec<(u64, u64)>,
    /// `.eh_frame_hdr`: address and length.
    hdr: Option<(u64, u64)>,
}

/// # Safety
/// Called by `dl_iterate_phdr` with its `info` and our `data` (a `Vec<Found>`).
unsafe extern "C" fn each_object(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut c_void,
) -> libc::c_int {
    // SAFETY: see the function's contract; the program headers are the loader's, valid during the
    // call.
    let (found, info) = unsafe { (&mut *data.cast::<Vec<Found>>(), &*info) };
    let phdrs: &[libc::Elf64_Phdr] = if info.dlpi_phdr.is_null() {
        &[]
    } else {
        // SAFETY: `dlpi_phnum` headers at `dlpi_phdr`, as the loader reports them.
        unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) }
    };
    let name = if info.dlpi_name.is_null() {
        Vec::new()
    } else {
        // SAFETY: a NUL-terminated name the loader owns.
        unsafe { CStr::from_ptr(info.dlpi_name) }
            .to_bytes()
            .to_vec()
    };
    let base = info.dlpi_addr;
    let mut f = Found {
        name,
        code: Vec::new(),
        loads: Vec::new(),
        hdr: None,
    };
    for ph in phdrs {
        let start = base.wrapping_add(ph.p_vaddr);
        let end = start.wrapping_add(ph.p_memsz);
        match ph.p_type {
            libc::PT_LOAD => {
                f.loads.push((start, end));
                if ph.p_flags & libc::PF_X != 0 {
                    f.code.push((start, end));
                }
            }
            libc::PT_GNU_EH_FRAME => f.hdr = Some((start, ph.p_memsz)),
            _ => {}
        }
    }
    found.push(f);
    0
}

impl Unwinder {
    /// Lists the loaded objects and their unwind tables (outside the signal handler: it allocates
    /// and takes the loader's lock). Objects without an `.eh_frame_hdr` index, or that cannot be
    /// pinned, are left out: their frames take frame-pointer steps.
    pub(crate) fn new() -> Self {
        let mut found: Vec<Found> = Vec::new();
        // SAFETY: `each_object` matches the callback type and reads `data` as the Vec it is.
        unsafe {
            libc::dl_iterate_phdr(Some(each_object), (&raw mut found).cast());
        }
        let mut modules = Vec::new();
        let mut pins = Vec::new();
        for f in found {
            let Some((hdr_at, hdr_len)) = f.hdr else {
                continue;
            };
            // The main program (no name) and the vDSO are never unmapped; a shared library is
            // pinned for the profile's length.
            let vdso = f.name.starts_with(b"linux-vdso") || f.name.starts_with(b"linux-gate");
            if !f.name.is_empty() && !vdso {
                let Ok(path) = std::ffi::CString::new(f.name.clone()) else {
                    continue;
                };
                // SAFETY: a NUL-terminated path; RTLD_NOLOAD only takes a reference to an object
                // that is already loaded (it never loads or initialises one).
                let handle =
                    unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD) };
                if handle.is_null() {
                    continue;
                }
                pins.push(handle);
            }
            let Ok(hdr_len) = usize::try_from(hdr_len) else {
                continue;
            };
            // SAFETY: the PT_GNU_EH_FRAME segment of a loaded object, mapped while it stays loaded
            // (pinned above, or never unloaded).
            let hdr_bytes: &'static [u8] =
                unsafe { std::slice::from_raw_parts(hdr_at as *const u8, hdr_len) };
            let bases = BaseAddresses::default().set_eh_frame_hdr(hdr_at);
            let Ok(hdr) = EhFrameHdr::new(hdr_bytes, LittleEndian).parse(&bases, 8) else {
                continue;
            };
            let gimli::Pointer::Direct(eh_at) = hdr.eh_frame_ptr() else {
                continue;
            };
            if hdr.table().is_none() {
                continue;
            }
            // `.eh_frame`'s length is not in the index: the rest of its loaded segment bounds it.
            let Some(&(_, seg_end)) = f.loads.iter().find(|(s, e)| *s <= eh_at && eh_at < *e)
            else {
                continue;
            };
            let Ok(eh_len) = usize::try_from(seg_end - eh_at) else {
                continue;
            };
            // SAFETY: inside a loaded segment of the same object (mapped as above).
            let eh_bytes: &'static [u8] =
                unsafe { std::slice::from_raw_parts(eh_at as *const u8, eh_len) };
            let eh_frame = EhFrame::new(eh_bytes, LittleEndian);
            for &(start, end) in &f.code {
                modules.push(Module {
                    start,
                    end,
                    bases: bases.clone().set_eh_frame(eh_at).set_text(start),
                    hdr: hdr.clone(),
                    eh_frame,
                });
            }
        }
        modules.sort_by_key(|m| m.start);
        // SAFETY: a fresh private anonymous mapping; checked below.
        let stack = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                WALK_STACK,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        Self {
            modules,
            ctx: Box::new(UnwindContext::new_in()),
            pins,
            stack: if stack == libc::MAP_FAILED {
                std::ptr::null_mut()
            } else {
                stack.cast()
            },
        }
    }

    /// [`Unwinder::walk`] on the unwinder's own stack (see [`WALK_STACK`]); without one, a
    /// frame-pointer walk. Allocates nothing and takes no lock: callable in a signal handler.
    pub(crate) fn walk_on_own_stack(
        &mut self,
        r: Regs,
        pipe: (i32, i32),
        out: &mut [u64],
    ) -> usize {
        if self.stack.is_null() {
            return super::sampler::frame_pointer_walk(
                r,
                |at| super::sampler::read_word(at, pipe),
                out,
            );
        }
        struct Job<'a> {
            unwinder: &'a mut Unwinder,
            regs: Regs,
            pipe: (i32, i32),
            out: &'a mut [u64],
            depth: usize,
        }
        extern "C" fn run(job: *mut c_void) {
            // SAFETY: `job` is the Job below, alive and ours for the call.
            let job = unsafe { &mut *job.cast::<Job<'_>>() };
            let pipe = job.pipe;
            job.depth =
                job.unwinder
                    .walk(job.regs, |at| super::sampler::read_word(at, pipe), job.out);
        }
        // SAFETY: `WALK_STACK` bytes mapped at `stack`, used by one walk at a time (the sampler
        // calls this under its BUSY flag).
        let top = unsafe { self.stack.add(WALK_STACK) };
        let mut job = Job {
            unwinder: self,
            regs: r,
            pipe,
            out,
            depth: 0,
        };
        // SAFETY: `top` ends a mapped stack nobody else uses now; `run` takes the Job's address.
        unsafe { call_on_stack(top, run, (&raw mut job).cast()) };
        job.depth
    }

    /// Walks the stack from the interrupted registers into `out` (innermost first: `r.pc`, then
    /// return addresses); returns the depth. `read` reads one word of memory or says it cannot.
    /// Allocates nothing and takes no lock: callable in a signal handler.
    pub(crate) fn walk(
        &mut self,
        r: Regs,
        read: impl Fn(u64) -> Option<u64>,
        out: &mut [u64],
    ) -> usize {
        walk_with(r, out, |at, r| {
            self.step(at, r, &read)
                .or_else(|| frame_pointer_step(r, &read))
        })
    }

    /// One frame up through the CFI row of `at`; `None` without one (or with a rule it does not
    /// follow: a CFA expression, a register other than rsp and rbp).
    fn step(&mut self, at: u64, r: Regs, read: &impl Fn(u64) -> Option<u64>) -> Option<Regs> {
        let i = self
            .modules
            .partition_point(|m| m.start <= at)
            .checked_sub(1)?;
        let m = &self.modules[i];
        if at >= m.end {
            return None;
        }
        let table = m.hdr.table()?;
        let row = table
            .unwind_info_for_address(&m.eh_frame, &m.bases, &mut self.ctx, at, |s, b, o| {
                s.cie_from_offset(b, o)
            })
            .ok()?;
        let cfa = match *row.cfa() {
            CfaRule::RegisterAndOffset { register, offset } => {
                let base = if register == X86_64::RSP {
                    r.sp
                } else if register == X86_64::RBP {
                    r.fp
                } else {
                    return None;
                };
                base.wrapping_add_signed(offset)
            }
            CfaRule::Expression(_) => return None,
        };
        let pc = match row.register(X86_64::RA) {
            Some(RegisterRule::Offset(o)) => read(cfa.wrapping_add_signed(o))?,
            _ => return None,
        };
        let fp = match row.register(X86_64::RBP) {
            None | Some(RegisterRule::SameValue) => r.fp,
            Some(RegisterRule::Offset(o)) => read(cfa.wrapping_add_signed(o))?,
            Some(RegisterRule::ValOffset(o)) => cfa.wrapping_add_signed(o),
            Some(RegisterRule::Undefined) => 0,
            Some(_) => return None,
        };
        Some(Regs { pc, sp: cfa, fp })
    }
}

/// Calls `f(arg)` with the stack pointer at `top` (aligned down to 16 bytes), then comes back to the
/// caller's stack. `f` must not unwind (an `extern "C"` function aborts on a panic instead).
///
/// # Safety
/// `top` is the end of writable memory that nothing else uses while `f` runs, large enough for it.
unsafe fn call_on_stack(top: *mut u8, f: extern "C" fn(*mut c_void), arg: *mut c_void) {
    // SAFETY: see the function's contract. r12 is callee-saved, so `f` gives it back unchanged and
    // it carries the caller's stack pointer across the call.
    unsafe {
        std::arch::asm!(
            "mov r12, rsp",
            "mov rsp, {top}",
            "and rsp, -16",
            "call {f}",
            "mov rsp, r12",
            top = in(reg) top,
            f = in(reg) f,
            in("rdi") arg,
            out("r12") _,
            clobber_abi("C"),
        );
    }
}

impl Drop for Unwinder {
    fn drop(&mut self) {
        if !self.stack.is_null() {
            // SAFETY: the mapping made in `new`, unmapped once.
            unsafe {
                libc::munmap(self.stack.cast(), WALK_STACK);
            }
        }
        for &h in &self.pins {
            // SAFETY: each handle came from a successful dlopen in `new` and is closed once.
            unsafe {
                libc::dlclose(h);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// One function of the chain: what the walk saw, from `e`.
    type Link = fn((i32, i32)) -> (Vec<u64>, Vec<u64>);

    /// The registers where this asm block runs, and the stack seen from there: `e` calls it.
    #[inline(never)]
    fn e(pipe: (i32, i32)) -> (Vec<u64>, Vec<u64>) {
        let (pc, sp, fp): (u64, u64, u64);
        // SAFETY: reads three registers into outputs; touches no memory.
        unsafe {
            std::arch::asm!(
                "lea {0}, [rip]",
                "mov {1}, rsp",
                "mov {2}, rbp",
                out(reg) pc,
                out(reg) sp,
                out(reg) fp,
                options(nomem, nostack, preserves_flags)
            );
        }
        let read = |at: u64| super::super::sampler::read_word(at, pipe);
        let mut u = Unwinder::new();
        // Frame by frame through the CFI alone (no frame-pointer steps).
        let mut r = Regs { pc, sp, fp };
        let mut by_cfi = Vec::new();
        for i in 0..4 {
            let at = if i == 0 { r.pc } else { r.pc - 1 };
            r = u
                .step(at, r, &read)
                .unwrap_or_else(|| panic!("no CFI step at frame {i} ({at:#x})"));
            by_cfi.push(r.pc);
        }
        let mut walked = vec![0u64; 64];
        let depth = u.walk(Regs { pc, sp, fp }, read, &mut walked);
        walked.truncate(depth);
        // The same walk on the unwinder's own stack (as the signal handler runs it).
        let mut own = vec![0u64; 64];
        let depth = u.walk_on_own_stack(Regs { pc, sp, fp }, pipe, &mut own);
        own.truncate(depth);
        assert_eq!(own, walked);
        (by_cfi, walked)
    }

    #[inline(never)]
    fn d(pipe: (i32, i32)) -> (Vec<u64>, Vec<u64>) {
        let mut r = e(std::hint::black_box(pipe));
        r.0.push(std::hint::black_box(0));
        r
    }

    #[inline(never)]
    fn c(pipe: (i32, i32)) -> (Vec<u64>, Vec<u64>) {
        let mut r = d(std::hint::black_box(pipe));
        r.0.push(std::hint::black_box(0));
        r
    }

    #[inline(never)]
    fn b(pipe: (i32, i32)) -> (Vec<u64>, Vec<u64>) {
        let mut r = c(std::hint::black_box(pipe));
        r.0.push(std::hint::black_box(0));
        r
    }

    #[inline(never)]
    fn a(pipe: (i32, i32)) -> (Vec<u64>, Vec<u64>) {
        let mut r = b(std::hint::black_box(pipe));
        r.0.push(std::hint::black_box(0));
        r
    }

    /// A five-deep chain walked by its DWARF rows alone: each step lands in the caller, in order,
    /// and the whole walk goes on past the chain (the test harness's frames, to the thread's start).
    #[test]
    fn a_call_chain_unwinds_by_its_call_frame_information() {
        let mut fds = [-1; 2];
        assert_eq!(
            unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) },
            0
        );
        let (by_cfi, walked) = a((fds[1], fds[0]));
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        // Each return address lies in its caller: d, c, b, a (functions of a few hundred bytes).
        let at = |f: Link| f as *const () as u64;
        let callers = [at(d), at(c), at(b), at(a)];
        for (i, (ret, f)) in by_cfi.iter().zip(callers).enumerate() {
            assert!(
                (f..f + 4096).contains(ret),
                "step {i}: {ret:#x} is not in its caller at {f:#x} ({by_cfi:x?})"
            );
        }
        assert_eq!(walked[1..5], by_cfi[..4], "{walked:x?}");
        assert!(
            walked.len() > 6,
            "the walk stopped at the chain: {walked:x?}"
        );
    }
}
