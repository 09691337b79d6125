//! The agent's error type.

use std::net::SocketAddr;

/// Everything that can go wrong while configuring or starting the agent. Run-time problems never come
/// back as errors: they are counted (`vigil_agent_collector_errors_total`), logged and survived.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An environment variable holds a value the agent cannot use.
    #[error("environment variable {var}={value:?} is invalid: expected {expected}")]
    Env {
        /// The variable, e.g. `VIGIL_TICK`.
        var: &'static str,
        /// What it held.
        value: String,
        /// What it accepts.
        expected: &'static str,
    },
    /// A builder setting is out of range.
    #[error("invalid agent setting `{setting}`: {message}")]
    Config {
        /// The setting, e.g. `tick`.
        setting: &'static str,
        /// What is wrong and what is accepted.
        message: String,
    },
    /// The HTTP endpoint could not bind.
    #[error(
        "cannot listen on {addr}: {source}. Is another process (or a second agent) using the port? \
         Set VIGIL_LISTEN to a free address, e.g. 127.0.0.1:0 for any free port"
    )]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// GPU monitoring was required (`VIGIL_GPU=nvml`) but is not available.
    #[error("{0}. Set VIGIL_GPU=auto to run without GPU signals")]
    Gpu(#[from] vigil_gpu::GpuError),
    /// The model file (`VIGIL_MODEL` or `.model_path`) cannot be used; the agent does not start with a
    /// wrong model.
    #[error("cannot use the anomaly model {origin}: {source}{hint}")]
    Model {
        /// Where the path came from and what it is: `VIGIL_MODEL=/etc/vigil/model.json` or
        /// `model_path /etc/vigil/model.json`.
        origin: String,
        /// What is wrong with the file.
        #[source]
        source: vigil_models::ModelError,
        /// What to do beyond what `source` says (may be empty).
        hint: &'static str,
    },
    /// The local store (`VIGIL_DATA_DIR`) cannot be used.
    #[error(
        "cannot use the data directory {}: {source}. Set VIGIL_DATA_DIR to a writable directory of \
         this process's own, or VIGIL_DATA_DIR=off to run without the store and its API",
        dir.display()
    )]
    Store {
        /// The data directory.
        dir: std::path::PathBuf,
        /// What went wrong.
        #[source]
        source: vigil_store::StoreError,
    },
    /// A thread or the agent's own runtime could not be created.
    #[error("cannot start the agent's {what}: {source}")]
    Spawn {
        /// Which part: `agent thread`, `probe thread`, `runtime`.
        what: &'static str,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
}
