//! `kmodidx check`: the consistency check of a tree or archive.

use std::path::PathBuf;

use clap::Args;

use kmodidx::build::Options;
use kmodidx::check;

use super::build::{LimitArgs, SymbolArgs};
use super::{eprint_line, stdout, EXIT_FAILED, EXIT_OK, EXIT_PROBLEMS};

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The tree or archive to check (as `build --from` reads it), such as
    /// a finished initramfs.
    #[arg(long, value_name = "DIR|ARCHIVE|-")]
    pub from: PathBuf,

    /// The kernel to check; needed when the input holds several.
    #[arg(long, value_name = "VERSION")]
    pub kernel_version: Option<String>,

    #[command(flatten)]
    pub symbols: SymbolArgs,

    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Runs `check`: 0 when consistent, 1 when problems were found, 2 when the
/// check could not run.
pub fn run(args: &CheckArgs) -> u8 {
    let opts = Options {
        kernel_version: args.kernel_version.clone(),
        limits: args.limits.limits(),
        symbols: args.symbols.symbol_file(),
        ..Options::default()
    };
    let report = match check::check(&args.from, &opts) {
        Ok(report) => report,
        Err(e) => {
            eprint_line(&format!("kmodidx: error: check: {e}"));
            return EXIT_FAILED;
        }
    };
    let status = if report.problems.is_empty() {
        EXIT_OK
    } else {
        EXIT_PROBLEMS
    };
    let text = if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(json) => format!("{json}\n"),
            Err(e) => {
                eprint_line(&format!("kmodidx: error: check: {e}"));
                return EXIT_FAILED;
            }
        }
    } else {
        report.problems.iter().map(|p| format!("{p}\n")).collect()
    };
    if let Err(e) = stdout(text.as_bytes()) {
        return e.status("kmodidx", status, EXIT_FAILED);
    }
    if !args.json {
        eprint_line(&format!(
            "kmodidx: check: {}: kernel {}, {} module(s), {} problem(s)",
            args.from.display(),
            report.kernel_version,
            report.modules,
            report.problems.len()
        ));
    }
    status
}
