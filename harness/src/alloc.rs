//! The `vigil` binary's allocator: `vigil::CountingAlloc` over the system allocator, with a switch for
//! `vigil bench overhead`, whose arms measure the host with and without allocation counting in one
//! process.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether allocations go through `vigil::CountingAlloc` (always, except in the arms of
/// `vigil bench overhead` that measure the host without it).
static COUNTING: AtomicBool = AtomicBool::new(true);
static COUNTED: vigil::CountingAlloc = vigil::CountingAlloc::system();

/// The binary's allocator: `vigil::CountingAlloc` over the system allocator, with a switch so that one
/// process can measure the host with and without allocation counting. Both paths allocate from the
/// system allocator, so either may free what the other allocated (only the counts are then off, which
/// only the overhead benchmark does).
pub struct SwitchableCounting;

/// Turns allocation counting on or off for the whole process.
pub fn set_alloc_counting(on: bool) {
    COUNTING.store(on, Ordering::Relaxed);
}

// SAFETY: every method forwards to the system allocator, directly or through CountingAlloc (which
// forwards to it unchanged), with the caller's guarantees.
unsafe impl GlobalAlloc for SwitchableCounting {
    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { COUNTED.alloc(layout) }
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc(layout) }
        }
    }

    #[inline(always)]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { COUNTED.alloc_zeroed(layout) }
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    #[inline(always)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if COUNTING.load(Ordering::Relaxed) {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { COUNTED.dealloc(ptr, layout) }
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[inline(always)]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { COUNTED.realloc(ptr, layout, new_size) }
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }
}
