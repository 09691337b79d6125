//! The agent's settings: the builder (environment variables, validation, start) and durations.

pub(crate) mod builder;
pub(crate) mod duration;
