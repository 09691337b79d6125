//! Feature engineering for Vigil.
//!
//! This crate is pure and synchronous: no tokio, no I/O. It holds the vocabulary every other crate shares
//! and the code that turns raw signals into what detectors see:
//!
//! - a [`SignalSpec`] names one raw runtime signal (unit, gauge or cumulative counter), a [`SignalSet`] is
//!   the ordered list of signals one agent collects, and a [`Sample`] is one tick of values over that set
//!   (`NaN` = missing, never a silent zero);
//! - a [`Window`] keeps the last rows in a ring buffer allocated once and yields a [`FeatureVector`] per
//!   tick over a [`FeatureSchema`] (ordered names, units and a stable hash): level, spread, trend and
//!   change per signal over a short and a long horizon, counters as per-second rates;
//! - [`vocab`] defines every signal the agent knows once (unit, kind, family, how it is read, metric);
//! - [`drift`] compares live feature distributions with a training reference (PSI and two-sample KS).
//!
//! The same code serves live samples from the agent and offline rows (timestamp + numeric columns, any
//! tick length) for the CLI, so online and offline features are identical.

pub mod drift;
mod error;
mod sample;
mod schema;
mod signal;
mod stats;
pub mod time;
pub mod vocab;
mod window;

pub use error::FeatureError;
pub use sample::Sample;
pub use schema::{FeatureSchema, Horizons};
pub use signal::{SignalKind, SignalSet, SignalSpec, Unit};
pub use window::{FeatureVector, Window};
