//! Subcommands of the `vigil` binary.

pub(crate) mod demo;
pub(crate) mod eval;
pub(crate) mod input;
pub(crate) mod inspect;
pub(crate) mod labels;
pub(crate) mod offline;
pub(crate) mod png;
pub(crate) mod score;
pub(crate) mod train;
