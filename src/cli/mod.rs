//! Subcommands of the `vigil` binary.

pub(crate) mod demo;
