//! The `kmodidx` command.

mod cli;

use std::ffi::OsString;
use std::path::Path;
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
    /// Check an output directory or archive against its manifest, or
    /// (with --from) against a fresh build. Exit status: 0 when all
    /// matches, 1 when something differs, 2 on errors.
    Verify(cli::verify::VerifyArgs),
    /// Drop-in replacement for kmod's depmod, with its options and
    /// behaviour (see `kmodidx depmod -h`). Also used when kmodidx is
    /// invoked as `depmod`, for example through a symlink.
    #[command(disable_help_flag = true)]
    Depmod {
        /// depmod's own options and arguments.
        #[arg(allow_hyphen_values = true, trailing_var_arg = true, num_args = 0..)]
        args: Vec<OsString>,
    },
}

fn main() -> ExitCode {
    // Answer as depmod when called by that name, taking its command line
    // exactly as depmod would.
    let argv: Vec<OsString> = std::env::args_os().collect();
    let invoked_as = argv.first().map(Path::new).and_then(Path::file_name);
    if invoked_as.is_some_and(|name| name == "depmod") {
        let prog = argv[0].to_string_lossy().into_owned();
        return ExitCode::from(cli::depmod::run(&prog, &argv[1..]) as u8);
    }

    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Build(args) => cli::build::run(args),
        Command::Verify(args) => cli::verify::run(args),
        Command::Depmod { args } => Ok(cli::depmod::run("depmod", args)),
    };
    match result {
        Ok(status) => ExitCode::from(status as u8),
        Err(message) => {
            eprintln!("kmodidx: error: {message}");
            ExitCode::FAILURE
        }
    }
}
