//! Feature engineering for Vigil.
//!
//! This crate is pure and synchronous: no tokio, no I/O. It holds the vocabulary every other crate shares:
//! a [`SignalSpec`] names one raw runtime signal (its unit and whether it is a gauge or a cumulative
//! counter), a [`SignalSet`] is the ordered list of signals one agent collects, and a [`Sample`] is one
//! tick of values over that set, with `NaN` meaning "missing" (never a silent zero).

mod sample;
mod signal;

pub use sample::Sample;
pub use signal::{SignalKind, SignalSet, SignalSpec, Unit};
