//! Command-line front end: argument parsing and message formatting. The
//! library never prints; everything the user sees is formatted here.

pub mod build;
pub mod depmod;
pub mod getopt;
pub mod verify;

use std::io::Write;

use kmodidx::depmod::{Diagnostic, Level};

/// Prints diagnostics as depmod does at verbosity `verbose` (the number of
/// `-v`): `depmod: LEVEL: message` on stderr for errors and warnings, INFO
/// from `-vv`, and the `-v` progress lines on stdout.
pub fn print_diagnostics(diags: &[Diagnostic], verbose: u32) {
    let stderr = std::io::stderr();
    let mut err = stderr.lock();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for d in diags {
        match d.level {
            Level::Show if verbose >= 1 => {
                let _ = writeln!(out, "{}", d.message);
            }
            Level::Show => {}
            Level::Info if verbose < 2 => {}
            level => {
                let _ = writeln!(err, "depmod: {}: {}", level.label(), d.message);
            }
        }
    }
}
