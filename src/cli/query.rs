//! `kmodidx query ...` and `kmodidx diff`: parse, print, pick exit codes.
//! The work is in [`kmodidx::query`].

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use kmodidx::index::reader::BinIndex;
use kmodidx::query::{self, diff, why, Image, Message, OpenOptions};

use super::build::LimitArgs;
use super::{
    eprint_bytes, eprint_line, print_kmodidx, stdout, StdoutError, Verbosity, EXIT_FAILED, EXIT_OK,
    EXIT_PROBLEMS,
};

#[derive(Debug, Subcommand)]
pub enum QueryCommand {
    /// For each NAME in turn, what `modprobe -C /dev/null --show-depends
    /// NAME` prints for the image mounted at `/`. Exit status: 0 when every
    /// NAME was found, 1 when one was not, 2 when the image could not be
    /// read.
    Deps {
        #[command(flatten)]
        image: ImageArgs,
        /// Module names, aliases, `symbol:` names, or module paths.
        #[arg(required = true, value_name = "NAME")]
        names: Vec<OsString>,
    },
    /// For each ALIAS in turn, what `modprobe -C /dev/null -R ALIAS` prints.
    /// Exit status as for deps.
    Resolve {
        #[command(flatten)]
        image: ImageArgs,
        #[arg(required = true, value_name = "ALIAS")]
        aliases: Vec<OsString>,
    },
    /// Every dependency path from MODULE to DEP, and the symbols behind
    /// each step. Exit status: 0 when MODULE depends on DEP, 1 when not, 2
    /// on errors.
    Why {
        #[command(flatten)]
        image: ImageArgs,
        /// The depending module.
        module: OsString,
        /// The module depended on.
        dep: OsString,
        /// List at most this many paths.
        #[arg(long, value_name = "N", default_value_t = 1000)]
        max_paths: usize,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// A binary index (`modules.*.bin`, either layout) as sorted
    /// `KEY VALUE` lines. Exit status: 0, or 2 when it cannot be read.
    Dump {
        /// The index file.
        #[arg(value_name = "FILE.bin")]
        file: PathBuf,
        /// Print `KEY PRIORITY VALUE` lines.
        #[arg(long)]
        priority: bool,
    },
}

/// Where the image is.
#[derive(Debug, Clone, Args)]
pub struct ImageArgs {
    /// A directory tree, a tar or cpio archive (plain or compressed), or a
    /// `kmodidx build` output; indexed in memory when it has no
    /// modules.dep.bin.
    #[arg(long, value_name = "DIR|ARCHIVE")]
    pub from: PathBuf,

    /// Kernel version to query (needed when the tree holds several).
    #[arg(long, value_name = "V")]
    pub kernel_version: Option<String>,

    /// Module directory inside the tree [default: detected].
    #[arg(long, value_name = "DIR")]
    pub module_dir: Option<String>,

    /// The kernel command line to assume, for `MODULE.PARAM=VALUE` options
    /// and `modprobe.blacklist=` (modprobe reads /proc/cmdline) [default:
    /// empty].
    #[arg(
        long,
        value_name = "TEXT",
        default_value = "",
        hide_default_value = true
    )]
    pub kernel_cmdline: OsString,

    #[command(flatten)]
    pub limits: LimitArgs,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The old image: a tree, an archive or a build output.
    pub old: PathBuf,
    /// The new image.
    pub new: PathBuf,
    /// Kernel version to use in OLD (when it holds several).
    #[arg(long, value_name = "V")]
    pub old_kernel_version: Option<String>,
    /// Kernel version to use in NEW (when it holds several).
    #[arg(long, value_name = "V")]
    pub new_kernel_version: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Runs a `query` subcommand; returns the exit status.
pub fn run(command: &QueryCommand) -> u8 {
    let result = match command {
        QueryCommand::Deps { image, names } => with_image(image, |image| {
            answer_each(names, |name| {
                let a = image.show_depends(name);
                (a.stdout(), a.messages, a.found)
            })
        }),
        QueryCommand::Resolve { image, aliases } => with_image(image, |image| {
            answer_each(aliases, |alias| {
                let a = image.resolve_alias(alias);
                (a.stdout(), a.messages, a.found)
            })
        }),
        QueryCommand::Why {
            image,
            module,
            dep,
            max_paths,
            json,
        } => with_image(image, |image| {
            let answer = why::why(image, module.as_bytes(), dep.as_bytes(), *max_paths)
                .map_err(|e| e.to_string())?;
            let text = if *json {
                format!("{:#}\n", answer.to_json())
            } else {
                answer.to_string()
            };
            let status = if answer.paths.is_empty() {
                EXIT_PROBLEMS
            } else {
                EXIT_OK
            };
            Ok(printed(text.as_bytes(), status))
        }),
        QueryCommand::Dump { file, priority } => dump(file, *priority),
    };
    finish(result)
}

/// Runs `diff`; returns the exit status.
pub fn run_diff(args: &DiffArgs) -> u8 {
    let facts = |from: &Path, version: &Option<String>| -> Result<diff::Facts, String> {
        let image = open_image(&ImageArgs {
            from: from.to_path_buf(),
            kernel_version: version.clone(),
            module_dir: None,
            kernel_cmdline: OsString::new(),
            limits: args.limits,
        })?;
        diff::facts(&image).map_err(|e| e.to_string())
    };
    let result = (|| {
        let old = facts(&args.old, &args.old_kernel_version)?;
        let new = facts(&args.new, &args.new_kernel_version)?;
        let result = diff::diff(&old, &new);
        if !result.crcs_compared {
            eprint_line("kmodidx: note: CRCs were not compared: an image holds no module files");
        }
        let text = if args.json {
            format!("{:#}\n", result.to_json())
        } else if result.is_empty() {
            String::new()
        } else {
            format!(
                "--- {} ({})\n+++ {} ({})\n{result}",
                args.old.display(),
                result.old_version,
                args.new.display(),
                result.new_version
            )
        };
        let status = if result.is_empty() {
            EXIT_OK
        } else {
            EXIT_PROBLEMS
        };
        Ok(printed(text.as_bytes(), status))
    })();
    finish(result)
}

/// Prints `text`, giving `status`; a closed pipe keeps `status` (the
/// reader had what it wanted).
fn printed(text: &[u8], status: u8) -> Result<u8, StdoutError> {
    match stdout(text) {
        Ok(()) | Err(StdoutError::Closed) => Ok(status),
        Err(e) => Err(e),
    }
}

/// The exit status for a result: a message and 2 for trouble.
fn finish(result: Result<Result<u8, StdoutError>, String>) -> u8 {
    match result {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => e.status("kmodidx", EXIT_FAILED, EXIT_FAILED),
        Err(message) => {
            eprint_line(&format!("kmodidx: error: {message}"));
            EXIT_FAILED
        }
    }
}

fn open_image(args: &ImageArgs) -> Result<Image, String> {
    let opened = query::open(
        &args.from,
        &OpenOptions {
            kernel_version: args.kernel_version.clone(),
            module_dir: args.module_dir.clone(),
            kernel_cmdline: args.kernel_cmdline.clone().into_vec(),
            limits: args.limits.limits(),
        },
    )
    .map_err(|e| e.to_string())?;
    // Indexing in memory says what depmod would say about the tree.
    print_kmodidx(&opened.diagnostics, Verbosity::Normal);
    Ok(opened.image)
}

fn with_image(
    args: &ImageArgs,
    f: impl FnOnce(&Image) -> Result<Result<u8, StdoutError>, String>,
) -> Result<Result<u8, StdoutError>, String> {
    f(&open_image(args)?)
}

/// Answers each NAME in turn as a separate modprobe run would: its
/// messages on stderr, its lines on stdout. 1 when a NAME was not found.
fn answer_each(
    names: &[OsString],
    answer: impl Fn(&[u8]) -> (Vec<u8>, Vec<Message>, bool),
) -> Result<Result<u8, StdoutError>, String> {
    let mut status = EXIT_OK;
    for name in names {
        let (out, messages, found) = answer(name.as_bytes());
        // Names are bytes: written as they are, not as UTF-8.
        let mut err: Vec<u8> = Vec::new();
        for m in &messages {
            err.extend_from_slice(&m.to_bytes());
            err.push(b'\n');
        }
        eprint_bytes(&err);
        if let Err(e) = stdout(&out) {
            // A closed pipe ends the answers quietly, with the status so far.
            return Ok(match e {
                StdoutError::Closed => Ok(status),
                e => Err(e),
            });
        }
        if !found {
            status = EXIT_PROBLEMS;
        }
    }
    Ok(Ok(status))
}

fn dump(file: &Path, priority: bool) -> Result<Result<u8, StdoutError>, String> {
    // Refuses devices (/dev/zero) and anything over the per-file limit.
    let limit = kmodidx::build::Limits::default().max_module_size;
    let bytes = kmodidx::source::dir::read_host_file(file, limit)
        .map_err(|e| format!("{}: {}", file.display(), kmodidx::util::io_reason(&e)))?;
    let entries = BinIndex::parse(bytes, file.display().to_string())
        .and_then(|index| index.entries())
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for e in entries {
        escape_into(&e.key, true, &mut out);
        out.push(b' ');
        if priority {
            out.extend_from_slice(format!("{} ", e.priority).as_bytes());
        }
        escape_into(&e.value, false, &mut out);
        out.push(b'\n');
    }
    Ok(printed(&out, EXIT_OK))
}

/// Bytes as `query dump` writes them: printable ASCII as is, except `\`
/// (and, in keys, space); anything else as `\xNN`.
fn escape_into(bytes: &[u8], key: bool, out: &mut Vec<u8>) {
    for &b in bytes {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b' ' if key => out.extend_from_slice(b"\\x20"),
            0x20..=0x7e => out.push(b),
            _ => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
        }
    }
}
