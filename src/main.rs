//! The `vigil` command-line tool.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// `vigil::CountingAlloc` over the system allocator, with the switch `vigil bench overhead` uses to
/// measure the host with and without allocation counting.
#[global_allocator]
static ALLOC: vigil_harness::alloc::SwitchableCounting = vigil_harness::alloc::SwitchableCounting;

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
    Demo(vigil_harness::demo::DemoArgs),
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
    Bench(vigil_harness::bench::BenchArgs),
    /// Labels in the local store: add, list, import (a labels CSV or Alertmanager webhook payloads).
    Labels(cli::store::LabelsArgs),
    /// Anomaly events in the local store (JSON lines).
    Events(cli::store::EventsArgs),
    /// Write the local store's ticks as the CSV `vigil train/score/eval` read.
    Export(cli::store::ExportArgs),
    /// Read the agents' signal history from Prometheus into one CSV per instance (fleet training).
    Pull(cli::pull::PullArgs),
    /// Print docs/METRICS.md (the catalogue of exported metrics) to standard output.
    MetricsDoc,
}

/// The error and its causes, each said once: a message that already quotes its cause (the agent's
/// start-up errors do, so they read whole on their own) is not followed by it again.
fn error_chain(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if msg.contains(&text) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&text);
    }
    msg
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => vigil_harness::demo::run(args),
        Command::Train(args) => cli::train::run(args),
        Command::Score(args) => cli::score::run(args),
        Command::Eval(args) => cli::eval::run(args),
        Command::Inspect(args) => cli::inspect::run(args),
        Command::Bench(args) => vigil_harness::bench::run(args),
        Command::Labels(args) => cli::store::labels(args),
        Command::Events(args) => cli::store::events(args),
        Command::Export(args) => cli::store::export(args),
        Command::Pull(args) => cli::pull::run(args),
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
            eprintln!("vigil: error: {}", error_chain(&e));
            // Bad input (CSV, labels, model files, flag values, settings the agent refuses, label values
            // the store refuses) and
            // refused outputs (one of the inputs, a store's file) are exit code 2; everything else 1.
            let refused_output = e.chain().any(|c| {
                c.downcast_ref::<vigil_models::OutputError>()
                    .is_some_and(|o| o.source.is_none())
            });
            let bad_input = e.chain().any(|c| {
                c.is::<vigil_tool::input::InputError>()
                    || c.is::<vigil_tool::UsageError>()
                    || matches!(
                        c.downcast_ref::<vigil::store::StoreError>(),
                        Some(vigil::store::StoreError::Invalid(_))
                    )
                    // A setting the agent refuses (a VIGIL_* value, a flag such as demo's --tick).
                    || matches!(
                        c.downcast_ref::<vigil::agent::Error>(),
                        Some(vigil::agent::Error::Env { .. } | vigil::agent::Error::Config { .. })
                    )
            });
            if refused_output || bad_input {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
