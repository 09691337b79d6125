//! The `vigil` binary's own subcommands: train, score, eval, inspect, labels, events, export, pull.
//! What they share with the harness (CSV and label input, the engine over rows, the HTTP client, the
//! plots) is `vigil-tool` (`tool/`); `vigil demo` and `vigil bench` are the harness
//! (`vigil-harness`, `harness/`).

pub(crate) mod eval;
pub(crate) mod inspect;
pub(crate) mod pull;
pub(crate) mod score;
pub(crate) mod store;
pub(crate) mod train;
