//! Optional tokio-console support (cargo feature `console`).

#[cfg(not(tokio_unstable))]
compile_error!(
    "the `console` feature of vigil needs RUSTFLAGS=\"--cfg tokio_unstable\": tokio only emits the task \
     instrumentation tokio-console reads in unstable builds. Build with \
     RUSTFLAGS=\"--cfg tokio_unstable\" (and a separate CARGO_TARGET_DIR), or turn the feature off."
);

/// A tokio-console layer for the host to compose into its own `tracing_subscriber::registry()`. Its gRPC
/// server runs on a thread of its own (default `127.0.0.1:6669`, `TOKIO_CONSOLE_*` variables apply).
///
/// ```no_run
/// use tracing_subscriber::prelude::*;
/// tracing_subscriber::registry().with(vigil_agent::console_layer()).init();
/// ```
pub fn console_layer<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    console_subscriber::ConsoleLayer::builder()
        .with_default_env()
        .spawn()
}
