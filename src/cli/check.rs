//! `kmodidx check`: the consistency check of a tree or archive.

use std::path::PathBuf;

use clap::Args;

use kmodidx::build::{Options, SymbolFile};
use kmodidx::check;
use kmodidx::depmod::kernel_symbols::SymbolFileKind;

use super::build::LimitArgs;
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

    /// The kernel's Module.symvers: also report symbols that neither a
    /// present module nor the kernel exports. A path that does not exist
    /// on the host is looked up inside the input.
    #[arg(long, value_name = "FILE", conflicts_with = "system_map")]
    pub symvers: Option<PathBuf>,

    /// The kernel's System.map, for the same check as --symvers.
    #[arg(long, value_name = "FILE")]
    pub system_map: Option<PathBuf>,

    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Runs `check`: 0 when consistent, 1 when problems were found, 2 when the
/// check could not run.
pub fn run(args: &CheckArgs) -> u8 {
    let symbols = match (&args.symvers, &args.system_map) {
        (Some(path), _) => Some((SymbolFileKind::Symvers, path)),
        (None, Some(path)) => Some((SymbolFileKind::SystemMap, path)),
        (None, None) => None,
    };
    let opts = Options {
        kernel_version: args.kernel_version.clone(),
        limits: args.limits.limits(),
        symbols: symbols.map(|(kind, path)| SymbolFile {
            kind,
            path: path.clone(),
        }),
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
        return e.exit_status("kmodidx", status);
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
