//! The demo and the benchmark harness of the `vigil` command (`vigil demo`, `vigil bench detect |
//! corpus | feedback | gpu | overhead | memory | soak`): a small inference server with the agent
//! linked in, synthetic load, injected faults ([`scenes`]), and the yardsticks built on them. The
//! `vigil` binary offers these commands; hosts link none of it.

pub mod alloc;

/// The unit tests count allocations as the `vigil` binary does (the scenes read the live heap).
#[cfg(test)]
#[global_allocator]
static ALLOC: alloc::SwitchableCounting = alloc::SwitchableCounting;

pub mod bench;
mod corpus;
pub mod demo;
mod feedback;
mod gpucheck;
mod joint;
mod memory;
mod overhead;
mod scenes;
mod soak;
