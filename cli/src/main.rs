//! The `confu` command line: `generate`, `eval`, `inspect`, `train`, `bench`. Without `--model`,
//! `generate` and `eval` use the embedded testbed model ([`embedded`]).
//! Backends are cargo features (`cpu` default, `wgpu`, `cuda`) chosen at run time by `--device`.

mod backend;
mod bench;
mod bench_spec;
mod check;
mod draft_args;
mod embedded;
mod eval;
mod generate;
mod inspect;
mod out_paths;
mod output;
mod plot;
mod progress;
mod train;
mod train_head;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Speculative decoding with EAGLE-3 draft heads and ConFu, on CPU, WGPU and CUDA.
#[derive(Debug, Parser)]
#[command(name = "confu", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a continuation of a prompt, streaming the text.
    Generate(generate::GenerateArgs),
    /// Compare vanilla and speculative decoding on Spec-Bench-format prompts.
    Eval(eval::EvalArgs),
    /// Describe a checkpoint folder: architecture, sizes, parameters, dtypes, tokenizer.
    Inspect(inspect::InspectArgs),
    /// Train tokenizers, target LMs and draft heads.
    #[command(subcommand)]
    Train(train::TrainCommand),
    /// Measure speed.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Run the reference checks (HF parity, official EAGLE-3 runs, ConFu reference runs, greedy
    /// speculative == vanilla) on a device, one line per check.
    Check(check::CheckArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CONFU_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    backend_cpu::keep_freed_memory();
    // A mistyped CONFU_POLL is refused here rather than silently read as "on".
    if let Err(e) = backend_cpu::polling_setting() {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let result = backend_cpu::on_pool(move || run(cli.command));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output went away (`| head`): nothing is lost that anyone reads.
        Err(e) if output::is_closed_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> confu_core::Result<()> {
    match command {
        Command::Generate(args) => {
            let device = args.device.clone();
            backend::dispatch(&device, args)
        }
        Command::Eval(args) => {
            let device = args.device.clone();
            backend::dispatch(&device, args)
        }
        Command::Check(args) => {
            let device = args.device.clone();
            backend::dispatch(&device, args)
        }
        Command::Inspect(args) => inspect::run(args),
        Command::Train(cmd) => train::run(cmd),
        Command::Bench(bench::BenchCommand::Decode(args)) => {
            let device = args.device.clone();
            backend::dispatch(&device, args)
        }
        Command::Bench(bench::BenchCommand::Spec(args)) => {
            let device = args.device.clone();
            backend::dispatch(&device, args)
        }
    }
}

/// A path argument: anything but the empty string (which would silently mean "here").
pub fn non_empty_path(s: &str) -> std::result::Result<std::path::PathBuf, String> {
    if s.is_empty() {
        Err("an empty path is not a path".into())
    } else {
        Ok(std::path::PathBuf::from(s))
    }
}
