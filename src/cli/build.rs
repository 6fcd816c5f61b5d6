//! `kmodidx build`: index a module tree hermetically.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::Args;

use kmodidx::build::{self, BuildError, Failure, Limits, ManifestPlace, Options, SymbolFile};
use kmodidx::depmod::kernel_symbols::SymbolFileKind;
use kmodidx::depmod::Compat;
use kmodidx::output::manifest::DigestScope;
use kmodidx::output::report::{Report, Status};
use kmodidx::output::write::{self, OutputFormat, FORMAT_NAMES};

use super::{eprint_line, print_kmodidx, Verbosity, EXIT_FAILED, EXIT_OK, EXIT_PROBLEMS};

/// The `--out` and `--from` name of standard output and input.
const STDIO: &str = "-";

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The input: a directory holding <module-dir>/<version>/, or a tar
    /// (ustar, GNU, pax) or cpio (newc, crc; concatenated archives too)
    /// archive, optionally compressed with gzip, xz or zstd; `-` reads an
    /// archive from standard input. The kind is recognised from the
    /// content, not the name.
    #[arg(long, value_name = "DIR|ARCHIVE|-")]
    pub from: PathBuf,

    /// Where to write: a directory (a name without an extension), or an
    /// archive whose form follows the name (.tar, .tar.gz/.tgz, .tar.xz,
    /// .tar.zst, .cpio, .cpio.gz, .cpio.xz, .cpio.zst); `-` writes an
    /// archive (tar unless --format says otherwise) to standard output.
    #[arg(long, value_name = "PATH|-")]
    pub out: PathBuf,

    /// Output form, overriding the guess from the --out name.
    #[arg(long, value_name = "FORM", value_parser = parse_format)]
    pub format: Option<OutputFormat>,

    #[command(flatten)]
    pub options: BuildOptions,

    #[command(flatten)]
    pub checks: CheckOptions,

    /// Write the manifest here instead of at the root of the output.
    #[arg(long, value_name = "PATH", conflicts_with = "no_manifest")]
    pub manifest: Option<PathBuf>,

    /// Write no manifest.
    #[arg(long)]
    pub no_manifest: bool,

    /// What the manifest's input digest covers: `metadata`, what depmod
    /// takes from each module (its exports, needed symbols, CRCs, aliases,
    /// soft and weak dependencies, firmware), the cheapest; `parsed`, the
    /// bytes of each module that depmod parses (ELF and section headers,
    /// symbol, string, modinfo, version and CRC tables); or `whole`, every
    /// byte of every module file (as `sha256sum` sees them), which reads
    /// each module whole. Other input files are always digested whole.
    #[arg(
        long,
        value_name = "SCOPE",
        default_value = "metadata",
        value_parser = scope_parser(),
        conflicts_with = "no_manifest"
    )]
    pub input_digest: DigestScope,

    /// Also write the kernel version that was indexed, and a newline, to
    /// this file, for build systems that learn it only from the input (the
    /// Bazel rule's kernel_version_file). Written only when the build
    /// succeeds.
    #[arg(long, value_name = "PATH")]
    pub kernel_version_file: Option<PathBuf>,

    /// Print errors only, no warnings.
    #[arg(long, short, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Also print information (such as configuration lines for other
    /// kernels) and progress.
    #[arg(long, short)]
    pub verbose: bool,
}

/// The options that decide what is written (recorded in the manifest).
#[derive(Debug, Clone, Args)]
pub struct BuildOptions {
    /// Kernel version to index (needed when the tree holds several).
    #[arg(long, value_name = "V")]
    pub kernel_version: Option<String>,

    /// Module directory inside the tree [default: detected; lib/modules, or
    /// usr/lib/modules on merged-/usr trees].
    #[arg(long, value_name = "DIR")]
    pub module_dir: Option<String>,

    /// Which kmod release's output to reproduce byte for byte.
    #[arg(long, value_name = "MODE", default_value = "kmod34", value_parser = compat_parser())]
    pub compat: Compat,

    /// Also copy the module tree (modules, modules.order, modules.builtin,
    /// modules.builtin.modinfo) into the output, beside the index.
    #[arg(long)]
    pub staged: bool,

    /// Timestamp of every output entry, in seconds since the epoch
    /// [default: $SOURCE_DATE_EPOCH, else 0].
    #[arg(long, value_name = "SECONDS")]
    pub mtime: Option<u64>,

    #[command(flatten)]
    pub limits: LimitArgs,

    /// Also apply the depmod.d files of this directory (or file) outside
    /// the input; repeatable. They take precedence over the input's own
    /// depmod.d files of the same name.
    #[arg(long = "config", value_name = "DIR")]
    pub config_dirs: Vec<PathBuf>,

    /// Ignore the depmod.d files inside the input (etc/depmod.d,
    /// run/depmod.d, usr/local/lib/depmod.d, usr/lib/depmod.d, lib/depmod.d).
    #[arg(long)]
    pub no_input_config: bool,

    /// Symbol prefix of the architecture, stripped from symbol names (as
    /// depmod -P).
    #[arg(long, value_name = "CHAR", value_parser = parse_prefix)]
    pub symbol_prefix: Option<u8>,

    /// Directory input only: let absolute symlinks whose target lies under
    /// PREFIX (such as /nix/store) resolve on this machine; repeatable.
    /// Every other link still resolves inside the input.
    #[arg(long = "follow-links-under", value_name = "PREFIX")]
    pub follow_links_under: Vec<PathBuf>,
    #[command(flatten)]
    pub closure: ClosureArgs,
}

/// A closure build: only some modules and what they pull in.
#[derive(Debug, Clone, Args)]
pub struct ClosureArgs {
    /// Index (and with --staged, copy) only these modules and everything
    /// they pull in: dependencies, softdep and weakdep targets and their
    /// closures, and their firmware. A SPEC is a module name or an alias
    /// (fs-vfat, pci:v..., symbol:NAME), resolved as modprobe does.
    /// Repeatable; takes comma-separated lists; @FILE reads one SPEC per
    /// line (# starts a comment).
    #[arg(long = "modules", value_name = "SPEC,...|@FILE")]
    pub modules: Vec<String>,

    /// Leave out the modules a SPEC resolves to, and what only they pull
    /// in; what the exclusion breaks is reported. Repeatable; lists and
    /// @FILE as for --modules.
    #[arg(long, value_name = "SPEC,...|@FILE", requires = "modules")]
    pub exclude: Vec<String>,

    /// A --modules SPEC that may match nothing (a warning instead of an
    /// error; - and _ are equal). Repeatable; lists and @FILE as for
    /// --modules.
    #[arg(long, value_name = "NAME,...|@FILE", requires = "modules")]
    pub allow_missing: Vec<String>,

    /// Also write modules.load: the closure's modules, one per line, in an
    /// order that loads (dependencies first).
    #[arg(long, requires = "modules")]
    pub load_list: bool,
}

impl ClosureArgs {
    /// The closure request, with SPEC lists and @FILEs expanded; `None`
    /// without --modules.
    fn request(&self) -> Result<Option<build::ClosureRequest>, String> {
        use kmodidx::closure::{expand_specs, Selection};
        if self.modules.is_empty() {
            return Ok(None);
        }
        let expand = |option: &str, values: &[String]| {
            expand_specs(option, values).map_err(|e| e.to_string())
        };
        Ok(Some(build::ClosureRequest {
            selection: Selection {
                roots: expand("--modules", &self.modules)?,
                exclude: expand("--exclude", &self.exclude)?,
                allow_missing: expand("--allow-missing", &self.allow_missing)?,
            },
            load_list: self.load_list,
            resolver: super::resolver(),
        }))
    }
}

/// Size limits, shared by `build` and `verify`.
#[derive(Debug, Clone, Copy, Args)]
pub struct LimitArgs {
    /// Largest file to read, in MiB: every module (as stored and
    /// decompressed) and every other input file. A larger one stops the
    /// build with an error naming it.
    #[arg(long = "max-file-size", visible_alias = "max-module-size", value_name = "MIB", default_value_t = Limits::default().max_module_size >> 20)]
    pub max_module_size: u64,

    /// Largest decompressed archive to read, in MiB (a guard against
    /// decompression bombs).
    #[arg(long, value_name = "MIB", default_value_t = 16384)]
    pub max_input_size: u64,
}

impl LimitArgs {
    /// The limits in bytes.
    pub fn limits(self) -> Limits {
        Limits {
            max_module_size: self.max_module_size.saturating_mul(1 << 20),
            max_input_size: self.max_input_size.saturating_mul(1 << 20),
        }
    }
}

fn compat_parser() -> impl TypedValueParser<Value = Compat> {
    PossibleValuesParser::new(Compat::ALL.map(Compat::name))
        .map(|name| Compat::from_name(&name).unwrap_or_default())
}

fn scope_parser() -> impl TypedValueParser<Value = DigestScope> {
    PossibleValuesParser::new(["metadata", "parsed", "whole"]).map(|name| match name.as_str() {
        "whole" => DigestScope::Whole,
        "parsed" => DigestScope::Parsed,
        _ => DigestScope::Metadata,
    })
}

fn parse_prefix(s: &str) -> Result<u8, String> {
    build::single_ascii(s).ok_or_else(|| "expected a single ASCII character".into())
}

fn parse_format(s: &str) -> Result<OutputFormat, String> {
    OutputFormat::parse(s).ok_or_else(|| format!("expected one of {}", FORMAT_NAMES.join(", ")))
}

/// The kernel's own symbols, to check modules against.
#[derive(Debug, Clone, Default, Args)]
pub struct SymbolArgs {
    /// The kernel's Module.symvers: report unknown symbols and CRC
    /// mismatches (as depmod -e -E). A path that does not exist on the host
    /// is looked up inside the input.
    #[arg(long, value_name = "FILE", conflicts_with = "system_map")]
    pub symvers: Option<PathBuf>,

    /// The kernel's System.map: report unknown symbols (as depmod -e -F).
    /// A path that does not exist on the host is looked up inside the input.
    #[arg(long, value_name = "FILE")]
    pub system_map: Option<PathBuf>,
}

impl SymbolArgs {
    /// The symbol file given, if any.
    pub fn symbol_file(&self) -> Option<SymbolFile> {
        match (&self.symvers, &self.system_map) {
            (Some(path), _) => Some((SymbolFileKind::Symvers, path)),
            (None, Some(path)) => Some((SymbolFileKind::SystemMap, path)),
            (None, None) => None,
        }
        .map(|(kind, path)| SymbolFile {
            kind,
            path: path.clone(),
        })
    }
}

/// Symbol checks and how their findings are reported; these change what is
/// reported, not what is indexed.
#[derive(Debug, Clone, Default, Args)]
pub struct CheckOptions {
    #[command(flatten)]
    pub symbols: SymbolArgs,

    /// Exit with status 1, writing no index, when a module needs an unknown
    /// symbol, disagrees about a symbol's CRC, or cannot be read.
    #[arg(long)]
    pub strict: bool,

    /// Write every diagnostic as JSON to this file (written even when the
    /// build fails).
    #[arg(long, value_name = "FILE.json")]
    pub report: Option<PathBuf>,
}

/// `--mtime`, else `SOURCE_DATE_EPOCH`, else 0.
fn resolved_mtime(mtime: Option<u64>) -> Result<u64, String> {
    if let Some(t) = mtime {
        return Ok(t);
    }
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map_err(|_| format!("SOURCE_DATE_EPOCH={v:?} is not a whole number of seconds")),
        _ => Ok(0),
    }
}

fn error(message: impl std::fmt::Display) -> u8 {
    eprint_line(&format!("kmodidx: error: {message}"));
    EXIT_FAILED
}

/// Where the output goes.
enum Target<'a> {
    Path(&'a Path, OutputFormat),
    Stdout(OutputFormat),
}

fn target(args: &BuildArgs) -> Result<Target<'_>, String> {
    if args.from.as_os_str() == STDIO && std::io::stdin().is_terminal() {
        return Err("--from - reads an archive from standard input, which is a terminal; pipe or redirect an archive into it".into());
    }
    if args.out.as_os_str() == STDIO {
        let format = args
            .format
            .unwrap_or(OutputFormat::Tar(write::Compression::None));
        if format == OutputFormat::Dir {
            return Err(
                "--out - writes an archive to standard output; --format dir needs a directory name"
                    .into(),
            );
        }
        if std::io::stdout().is_terminal() {
            return Err("--out - would write an archive to a terminal; redirect standard output to a file or a pipe".into());
        }
        return Ok(Target::Stdout(format));
    }
    let format = match args.format {
        Some(format) => format,
        None => OutputFormat::for_path(&args.out).map_err(|e| e.to_string())?,
    };
    Ok(Target::Path(&args.out, format))
}

/// Runs `build`; returns the exit status.
pub fn run(args: &BuildArgs) -> u8 {
    let verbosity = if args.quiet {
        Verbosity::Quiet
    } else if args.verbose {
        Verbosity::Verbose
    } else {
        Verbosity::Normal
    };
    let target = match target(args) {
        Ok(target) => target,
        Err(message) => return error(message),
    };
    let manifest = match (&args.manifest, args.no_manifest) {
        (_, true) => ManifestPlace::Nowhere,
        (Some(path), false) => ManifestPlace::At(path.clone()),
        (None, false) => ManifestPlace::InOutput,
    };
    if let Target::Path(out, format) = target {
        let side: Vec<(&'static str, &Path)> = [
            ("report", args.checks.report.as_deref()),
            ("manifest", manifest.file()),
            ("kernel version", args.kernel_version_file.as_deref()),
        ]
        .into_iter()
        .filter_map(|(what, path)| Some((what, path?)))
        .collect();
        if let Err(e) = build::check_places(out, format, &side) {
            return error(e);
        }
    }
    let mtime = match resolved_mtime(args.options.mtime) {
        Ok(mtime) => mtime,
        Err(message) => return error(message),
    };
    let o = &args.options;
    let closure = match o.closure.request() {
        Ok(closure) => closure,
        Err(message) => return error(message),
    };
    let opts = Options {
        kernel_version: o.kernel_version.clone(),
        module_dir: o.module_dir.clone(),
        compat: o.compat,
        staged: o.staged,
        mtime,
        limits: o.limits.limits(),
        config_dirs: o.config_dirs.clone(),
        input_config: !o.no_input_config,
        symbol_prefix: o.symbol_prefix,
        symbols: args.checks.symbols.symbol_file(),
        strict: args.checks.strict,
        input_digest: if args.no_manifest {
            DigestScope::Off
        } else {
            args.input_digest
        },
        follow_links_under: o.follow_links_under.clone(),
        spill_dir: Some(match &target {
            Target::Path(out, _) => match out.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            },
            Target::Stdout(_) => std::env::temp_dir(),
        }),
        closure,
    };
    if verbosity == Verbosity::Verbose {
        eprint_line(&format!("kmodidx: info: reading {}", args.from.display()));
    }
    let built = match build::build(&args.from, &opts) {
        Ok(built) => built,
        Err(e) => return failed(args, &e, verbosity),
    };
    for note in built.input.notes() {
        if verbosity >= Verbosity::Normal {
            eprint_line(&format!("kmodidx: warning: {note}"));
        }
    }
    print_kmodidx(&built.diagnostics, verbosity);
    if let Some(path) = &args.checks.report {
        let report = Report::new(
            Some(&built.kernel_version),
            &built.diagnostics,
            Status::Ok,
            None,
        );
        if let Err(e) = kmodidx::output::report::write(path, &report) {
            return error(e);
        }
    }
    let written = match target {
        Target::Path(out, format) => build::write_to_path(&built, out, format, &manifest),
        Target::Stdout(format) => {
            let mut stdout = std::io::stdout().lock();
            let result = build::write_to_stream(
                &built,
                &mut stdout,
                Path::new("<stdout>"),
                format,
                &manifest,
            );
            match result {
                // The reader went away: end quietly, as the output was not
                // complete.
                Err(build::WriteError::Output(write::OutputError::Io { source, .. }))
                    if source.kind() == std::io::ErrorKind::BrokenPipe =>
                {
                    return EXIT_FAILED
                }
                other => other,
            }
        }
    };
    if let Err(e) = written {
        return error(e);
    }
    if let Some(path) = &args.kernel_version_file {
        let line = format!("{}\n", built.kernel_version);
        if let Err(e) = write::write_or_stream(path, line.as_bytes()) {
            return error(e);
        }
    }
    if verbosity == Verbosity::Verbose {
        eprint_line(&format!(
            "kmodidx: info: indexed {} module(s) of {}/{} into {}",
            built.modules.len(),
            built.module_dir,
            built.kernel_version,
            args.out.display()
        ));
    }
    EXIT_OK
}

/// Reports a failed build: its messages, the report, the error; returns 1
/// for problems in the modules, 2 otherwise.
fn failed(args: &BuildArgs, e: &BuildError, verbosity: Verbosity) -> u8 {
    print_kmodidx(&e.diagnostics, verbosity);
    if let Some(path) = &args.checks.report {
        let status = match *e.failure {
            Failure::Strict { .. } => Status::StrictFailure,
            _ => Status::Failed,
        };
        let text = e.to_string();
        let report = Report::new(
            e.kernel_version.as_deref(),
            &e.diagnostics,
            status,
            Some(&text),
        );
        if let Err(write_error) = kmodidx::output::report::write(path, &report) {
            error(write_error);
        }
    }
    error(e);
    if e.is_module_problem() {
        EXIT_PROBLEMS
    } else {
        EXIT_FAILED
    }
}
