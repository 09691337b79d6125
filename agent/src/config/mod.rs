//! The agent's settings: [`settings::Config`] (plain data, defaults, the one validation step), reading
//! it from the environment, the builder that sets it and starts the agent, and durations.

pub(crate) mod builder;
pub(crate) mod duration;
pub(crate) mod env;
pub(crate) mod settings;
