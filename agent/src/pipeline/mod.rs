//! What runs every tick: the collectors, the sampler that fills one sample from them, the feature
//! window and the scoring stage (the engine with its metrics, events and training thread).

pub(crate) mod collectors;
pub(crate) mod features;
pub(crate) mod sampler;
pub(crate) mod scoring;
