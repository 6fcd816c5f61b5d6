//! Command-line front end: argument parsing, message formatting and exit
//! statuses. The library never prints; everything the user sees is
//! formatted here.

pub mod build;
pub mod check;
pub mod depmod;
pub mod getopt;
pub mod query;
pub mod verify;

use std::io::{self, Write};

use kmodidx::diag::{Diagnostic, Level};

/// Exit status: success.
pub const EXIT_OK: u8 = 0;
/// Exit status: problems found in the modules (`--strict` findings, a
/// dependency cycle) or, for `verify`, differences.
pub const EXIT_PROBLEMS: u8 = 1;
/// Exit status: the run could not complete (usage, unreadable input,
/// output error).
pub const EXIT_FAILED: u8 = 2;

/// Standard output could not be written.
#[derive(Debug)]
pub enum StdoutError {
    /// The reader went away (a broken pipe): stop quietly.
    Closed,
    /// Any other write error.
    Failed(io::Error),
}

impl StdoutError {
    /// Ends the command: quietly for a closed pipe (keeping `status`),
    /// with a message and [`EXIT_FAILED`] otherwise.
    pub fn exit_status(self, prog: &str, status: u8) -> u8 {
        match self {
            StdoutError::Closed => status,
            StdoutError::Failed(e) => {
                eprint_line(&format!(
                    "{prog}: error: cannot write to standard output: {}",
                    kmodidx::util::io_reason(&e)
                ));
                EXIT_FAILED
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

/// Writes one line to standard error. A closed or failing standard error
/// is ignored: there is nowhere left to report it.
pub fn eprint_line(line: &str) {
    let mut err = io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

/// Prints diagnostics as depmod does at verbosity `verbose` (the number of
/// `-v`): `depmod: LEVEL: message` on stderr for errors and warnings, INFO
/// from `-vv`, and the `-v` progress lines on stdout.
pub fn print_depmod(diags: &[Diagnostic], verbose: u32) -> Result<(), StdoutError> {
    let mut err = io::stderr().lock();
    for d in diags {
        match d.level {
            Level::Verbose if verbose >= 1 => {
                drop(err);
                stdout(format!("{d}\n").as_bytes())?;
                err = io::stderr().lock();
            }
            Level::Verbose => {}
            Level::Info if verbose < 2 => {}
            level => {
                let _ = writeln!(err, "depmod: {}: {d}", level.kmod_label());
            }
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
    let mut err = io::stderr().lock();
    for d in diags {
        let word = match d.level {
            Level::Critical | Level::Error => "error",
            Level::Warning if verbosity >= Verbosity::Normal => "warning",
            Level::Info if verbosity >= Verbosity::Verbose => "info",
            _ => continue,
        };
        let _ = writeln!(err, "kmodidx: {word}: {d}");
    }
}
