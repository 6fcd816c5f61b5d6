//! Command-line front end: argument parsing, message formatting and exit
//! statuses. The library never prints; everything the user sees is
//! formatted here.

pub mod build;
pub mod check;
pub mod depmod;
pub mod docs;
pub mod getopt;
pub mod query;
pub mod verify;

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use kmodidx::diag::{Diagnostic, Level};

/// Exit status: success.
pub const EXIT_OK: u8 = 0;
/// Exit status: problems found in the modules (`--strict` findings, a
/// dependency cycle) or, for `verify`, differences.
pub const EXIT_PROBLEMS: u8 = 1;
/// Exit status: the run could not complete (usage, unreadable input,
/// output error).
pub const EXIT_FAILED: u8 = 2;

/// Set when a message could not be written to standard error for another
/// reason than a closed pipe; the run then ends with a failure status
/// ([`final_status`]), as there is nowhere left to say so.
static STDERR_LOST: AtomicBool = AtomicBool::new(false);

/// Standard output could not be written.
#[derive(Debug)]
pub enum StdoutError {
    /// The reader went away (a broken pipe): stop quietly.
    Closed,
    /// Any other write error.
    Failed(io::Error),
}

impl StdoutError {
    /// Ends the command: quietly with `closed` for a closed pipe, with a
    /// message on stderr and `failed` otherwise.
    pub fn status<T>(self, prog: &str, closed: T, failed: T) -> T {
        match self {
            StdoutError::Closed => closed,
            StdoutError::Failed(e) => {
                eprint_line(&format!(
                    "{prog}: error: cannot write to standard output: {}",
                    kmodidx::util::io_reason(&e)
                ));
                failed
            }
        }
    }
}

impl From<io::Error> for StdoutError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::BrokenPipe {
            StdoutError::Closed
        } else {
            StdoutError::Failed(e)
        }
    }
}

/// Writes `bytes` to standard output and flushes them.
pub fn stdout(bytes: &[u8]) -> Result<(), StdoutError> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()?;
    Ok(())
}

/// Writes `bytes` to standard error. A closed pipe is ignored (the reader
/// left); any other failure is remembered for [`final_status`].
pub fn eprint_bytes(bytes: &[u8]) {
    if let Err(e) = io::stderr().lock().write_all(bytes) {
        if e.kind() != io::ErrorKind::BrokenPipe {
            STDERR_LOST.store(true, Ordering::Relaxed);
        }
    }
}

/// Writes one line to standard error (see [`eprint_bytes`] for failures).
pub fn eprint_line(line: &str) {
    eprint_bytes(format!("{line}\n").as_bytes());
}

/// The exit status of a run that would end with `status`: `failed` instead
/// of success when a message could not be written to standard error
/// (other than to a closed pipe), so that a lost message never passes for
/// a clean run.
pub fn final_status(status: u8, failed: u8) -> u8 {
    if status == EXIT_OK && STDERR_LOST.load(Ordering::Relaxed) {
        failed
    } else {
        status
    }
}

/// Prints a clap outcome that is not a parsed command line: help and
/// version on stdout (status 0), usage errors on stderr (status 2). Help
/// that cannot be written gets a message and [`EXIT_FAILED`], or ends
/// quietly when the reader went away.
pub fn clap_outcome(e: &clap::Error) -> u8 {
    let status = u8::try_from(e.exit_code()).unwrap_or(EXIT_FAILED);
    match e.print() {
        Ok(()) => status,
        Err(err) if !e.use_stderr() => {
            StdoutError::from(err).status("kmodidx", status, EXIT_FAILED)
        }
        Err(err) => {
            if err.kind() != io::ErrorKind::BrokenPipe {
                STDERR_LOST.store(true, Ordering::Relaxed);
            }
            status
        }
    }
}

/// Prints diagnostics as depmod does at verbosity `verbose` (the number of
/// `-v`): `depmod: LEVEL: message` on stderr for errors and warnings, INFO
/// from `-vv`, and the `-v` progress lines on stdout.
pub fn print_depmod(diags: &[Diagnostic], verbose: u32) -> Result<(), StdoutError> {
    for d in diags {
        match d.level {
            Level::Verbose if verbose >= 1 => stdout(format!("{d}\n").as_bytes())?,
            Level::Verbose => {}
            Level::Info if verbose < 2 => {}
            level => eprint_line(&format!("depmod: {}: {d}", level.kmod_label())),
        }
    }
    Ok(())
}

/// How much `build` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    /// Errors only.
    Quiet,
    /// Errors and warnings.
    Normal,
    /// Also information and progress.
    Verbose,
}

/// Prints diagnostics as `kmodidx: warning: <kmod's words>` (or `error`,
/// `info`) on stderr. kmod's `-v` progress lines are never printed here.
pub fn print_kmodidx(diags: &[Diagnostic], verbosity: Verbosity) {
    let mut text = String::new();
    for d in diags {
        let word = match d.level {
            Level::Critical | Level::Error => "error",
            Level::Warning if verbosity >= Verbosity::Normal => "warning",
            Level::Info if verbosity >= Verbosity::Verbose => "info",
            _ => continue,
        };
        text.push_str(&format!("kmodidx: {word}: {d}\n"));
    }
    eprint_bytes(text.as_bytes());
}

/// How `build` and `verify` resolve `--modules` SPECs.
pub fn resolver() -> kmodidx::build::ResolverHandle {
    kmodidx::build::ResolverHandle(std::sync::Arc::new(kmodidx::query::ModprobeResolver))
}
