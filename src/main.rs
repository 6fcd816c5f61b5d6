//! The `kmodidx` command.

mod cli;

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "kmodidx",
    version,
    propagate_version = true,
    about = "Hermetic, byte-identical kernel module indexing (a depmod replacement)",
    long_about = "Hermetic, byte-identical kernel module indexing (a depmod replacement).\n\n\
        kmodidx writes every modules.* file that kmod 34.2's depmod writes, byte for byte, \
        from a module tree or archive it never modifies: `kmodidx build` for image \
        pipelines, `kmodidx verify` to check an output, and `kmodidx depmod` (or kmodidx \
        invoked as depmod) as a drop-in for depmod itself."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Index a module tree or archive into a directory or archive.
    ///
    /// Writes every modules.* file kmod's depmod writes, from a filesystem
    /// tree or an archive, into a directory or an archive, with a manifest.
    /// Exit status: 0 on success, 1 when problems were found in the modules
    /// (--strict findings, a dependency cycle, a --modules SPEC that
    /// matches nothing), 2 when the run could not complete.
    // Boxed: the build options outweigh the other commands' by far.
    Build(Box<cli::build::BuildArgs>),
    /// Check an output against its manifest or a fresh build.
    ///
    /// Checks an output directory or archive against its manifest, or (with
    /// --from) against a fresh build. Exit status: 0 when all matches, 1
    /// when something differs, 2 on errors.
    Verify(cli::verify::VerifyArgs),
    /// Offline queries on a tree, archive or build output.
    ///
    /// What modprobe would load (deps), resolve (resolve), why a module
    /// needs another (why), and a binary index as text (dump).
    #[command(subcommand)]
    Query(cli::query::QueryCommand),
    /// Compare two trees, archives or build outputs.
    ///
    /// Compares modules, dependencies, aliases, exported symbols and CRCs.
    /// Exit status: 0 when equal, 1 when different, 2 on errors.
    Diff(cli::query::DiffArgs),
    /// Check a tree or archive (such as an initramfs) for consistency.
    ///
    /// Checks the modules and dependencies that modules.dep names, needed
    /// symbols (with --symvers/--system-map), firmware= files, and index
    /// files equal to a fresh build. Exit status: 0 when consistent, 1 when
    /// problems were found, 2 when the check could not run.
    Check(cli::check::CheckArgs),
    /// Drop-in replacement for kmod's depmod (see `kmodidx depmod -h`).
    ///
    /// Takes kmod 34.2's depmod options and behaves as it does (see
    /// `kmodidx depmod -h` and depmod(8)). Also used when kmodidx is invoked
    /// as `depmod`, for example through a symlink.
    #[command(disable_help_flag = true, disable_version_flag = true)]
    Depmod {
        /// depmod's own options and arguments.
        #[arg(allow_hyphen_values = true, trailing_var_arg = true, num_args = 0..)]
        args: Vec<OsString>,
    },
    /// Print a shell completion script.
    ///
    /// Prints a completion script for SHELL (bash, zsh, fish, elvish,
    /// powershell) on standard output, for example
    /// `kmodidx completions bash > /etc/bash_completion.d/kmodidx`.
    Completions(cli::docs::CompletionsArgs),
    /// Print a man page (roff) on standard output, or write them all with
    /// --out-dir.
    #[command(hide = true)]
    Man(cli::docs::ManArgs),
}

/// Tunes glibc's malloc for a build's short life. Malloc settings in the
/// environment (MALLOC_ARENA_MAX, or `glibc.malloc` in GLIBC_TUNABLES) win.
///
/// * Arenas are capped at half the cores (at least two). By default every
///   thread gets its own arena, and memory one worker frees (the large,
///   short-lived decompressed module images) is not reused by another, so
///   peak memory grows with fragmentation; with fewer arenas it stays near
///   one image per core. Measured on this 2-core machine with the setting
///   below: Debian's 6.12 kernel (.ko.xz) peaks at 58 to 60 MiB instead of
///   61 to 62 MiB, and no run gets slower.
/// * Blocks up to 32 MiB (the largest glibc allows) come from the arenas
///   rather than from a fresh mapping each, and freed memory is kept for
///   reuse rather than handed back to the kernel below 128 MiB: the
///   megabyte-sized buffers of the index files and of module reads were
///   mapped, zeroed page by page and unmapped again. Measured on Debian's
///   6.1 amd64 tree (4023 modules): about 5% less wall and CPU time, peak
///   RSS about the same (48 to 49 MiB); on the 6.12 `.ko.xz` tree the
///   peak grows from 51 to 60 MiB (depmod 34.2 peaks at 71 MiB there).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    const M_TRIM_THRESHOLD: i32 = -1;
    const M_MMAP_THRESHOLD: i32 = -3;
    const M_ARENA_MAX: i32 = -8;
    if std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc.")) {
        return;
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let arenas = i32::try_from((cores / 2).max(2)).unwrap_or(i32::MAX);
    // SAFETY: mallopt only changes allocator settings; it runs before any
    // other thread exists.
    unsafe {
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            mallopt(M_ARENA_MAX, arenas);
        }
        mallopt(M_MMAP_THRESHOLD, 32 << 20);
        mallopt(M_TRIM_THRESHOLD, 128 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

fn main() -> ExitCode {
    tune_allocator();
    // Answer as depmod when called by that name, taking its command line
    // exactly as depmod would.
    let argv: Vec<OsString> = std::env::args_os().collect();
    let invoked_as = argv.first().map(Path::new).and_then(Path::file_name);
    if invoked_as.is_some_and(|name| name == "depmod") {
        let prog = argv[0].to_string_lossy().into_owned();
        return depmod_status(cli::depmod::run(&prog, &argv[1..]));
    }

    // Usage errors exit with status 2 (clap's), help and version with 0.
    let cli = match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => return ExitCode::from(cli::clap_outcome(&e)),
    };
    let status = match &cli.command {
        Command::Build(args) => cli::build::run(args),
        Command::Verify(args) => cli::verify::run(args),
        Command::Query(command) => cli::query::run(command),
        Command::Diff(args) => cli::query::run_diff(args),
        Command::Check(args) => cli::check::run(args),
        Command::Depmod { args } => return depmod_status(cli::depmod::run("depmod", args)),
        Command::Completions(args) => cli::docs::completions(Cli::command(), args),
        Command::Man(args) => cli::docs::man(Cli::command(), args),
    };
    ExitCode::from(cli::final_status(status, cli::EXIT_FAILED))
}

/// depmod's exit statuses are small; anything else is a failure (1, as
/// depmod's own failures), and so is a message lost on standard error.
fn depmod_status(status: i32) -> ExitCode {
    let status = u8::try_from(status).unwrap_or(1);
    ExitCode::from(cli::final_status(status, 1))
}
