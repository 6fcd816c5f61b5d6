//! The `kmodidx` command.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "kmodidx",
    version,
    about = "Hermetic, byte-identical kernel module indexing (a depmod replacement)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Index the modules of a filesystem tree into an output directory,
    /// writing every modules.* file kmod's depmod writes.
    Build(cli::build::BuildArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Build(args) => cli::build::run(args),
    };
    match result {
        Ok(status) => ExitCode::from(status as u8),
        Err(message) => {
            eprintln!("kmodidx: error: {message}");
            ExitCode::FAILURE
        }
    }
}
