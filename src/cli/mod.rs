//! Command-line front end: argument parsing and message formatting. The
//! library never prints; everything the user sees is formatted here.

pub mod build;
pub mod depmod;
pub mod getopt;
pub mod verify;

use std::io::Write;

use kmodidx::depmod::{Diagnostic, Level};

/// Prints diagnostics as kmod does: `depmod: LEVEL: message`, up to `max`.
pub fn print_diagnostics(diags: &[Diagnostic], max: Level) {
    let stderr = std::io::stderr();
    let mut err = stderr.lock();
    for d in diags.iter().filter(|d| d.level <= max) {
        let _ = writeln!(err, "depmod: {}: {}", d.level.label(), d.message);
    }
}
