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
    /// Train a model from CSV files (timestamp + numeric signal columns).
    Train(cli::train::TrainArgs),
    /// Score every row of a CSV with a model (streaming).
    Score(cli::score::ScoreArgs),
    /// Evaluate a model against labelled intervals.
    Eval(cli::eval::EvalArgs),
    /// Show what a model file holds.
    Inspect(cli::inspect::InspectArgs),
    /// Benchmarks that need the whole product: `vigil bench detect` (faults injected into a real
    /// server, the agent's detector beside the static rules).
    Bench(cli::bench::BenchArgs),
    /// Print docs/METRICS.md (the catalogue of exported metrics) to standard output.
    MetricsDoc,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => cli::demo::run(args),
        Command::Train(args) => cli::train::run(args),
        Command::Score(args) => cli::score::run(args),
        Command::Eval(args) => cli::eval::run(args),
        Command::Inspect(args) => cli::inspect::run(args),
        Command::Bench(args) => cli::bench::run(args),
        Command::MetricsDoc => {
            use std::io::Write;
            std::io::stdout()
                .lock()
                .write_all(vigil::agent::metrics_markdown().as_bytes())
                .map_err(anyhow::Error::from)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`vigil inspect m.json | head`): stop quietly like other Unix tools.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vigil: error: {e:#}");
            // Bad input (CSV, labels, model files) and refused outputs (one of the inputs) are exit
            // code 2; everything else 1.
            let refused_output = e.chain().any(|c| {
                c.downcast_ref::<vigil_models::OutputError>()
                    .is_some_and(|o| o.source.is_none())
            });
            if refused_output || e.chain().any(|c| c.is::<cli::input::InputError>()) {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
