//! The `vigil` command-line tool.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[global_allocator]
static ALLOC: vigil::CountingAlloc = vigil::CountingAlloc::system();

/// Vigil: runtime anomaly agent for tokio-based AI inference services.
#[derive(Debug, Parser)]
#[command(name = "vigil", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a small inference server with the agent linked in, under synthetic load, printing one line of
    /// key signals per tick. Every VIGIL_* variable applies.
    Demo(cli::demo::DemoArgs),
    /// Print docs/METRICS.md (the catalogue of exported metrics) to standard output.
    MetricsDoc,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => cli::demo::run(args),
        Command::MetricsDoc => {
            print!("{}", vigil::agent::metrics_markdown());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigil: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
