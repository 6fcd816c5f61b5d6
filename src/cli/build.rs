//! `kmodidx build`: index a module tree hermetically.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

use kmodidx::depmod::config::{self, ConfigLocation, DEFAULT_CONFIG_DIRS};
use kmodidx::depmod::discover::ModuleDir;
use kmodidx::depmod::kernel_symbols::{parse_symvers, parse_system_map};
use kmodidx::depmod::{self, Compat, Diagnostic, Request, SymbolOptions};
use kmodidx::output::report;
use std::io::Write;

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use kmodidx::output::manifest::{self, Manifest, ManifestFile, ManifestOptions, MANIFEST_NAME};
use kmodidx::output::write::{self, FileSource, OutputFormat, Plan, PlannedFile};
use kmodidx::source::record::Recording;
use kmodidx::source::{join, open_input, ArchiveOptions, DirTree, EntryKind, Input, Tree};

/// Module directories kmodidx recognises, relative to the tree root.
const MODULE_DIRS: [&str; 2] = ["lib/modules", "usr/lib/modules"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompatArg {
    /// kmod 34 (the default): parent-first index tries.
    Kmod34,
    /// kmod 33: children-first tries; last duplicate in modules.order wins.
    Kmod33,
    /// kmod 30 (Debian 12): as kmod33, and no modules.weakdep.
    Kmod30,
}

impl From<CompatArg> for Compat {
    fn from(c: CompatArg) -> Self {
        match c {
            CompatArg::Kmod34 => Compat::Kmod34,
            CompatArg::Kmod33 => Compat::Kmod33,
            CompatArg::Kmod30 => Compat::Kmod30,
        }
    }
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The input: a directory holding <module-dir>/<version>/, or a tar
    /// (ustar, GNU, pax) or cpio (newc, crc; concatenated archives too)
    /// archive, optionally compressed with gzip, xz or zstd. The kind is
    /// recognised from the content, not the name.
    #[arg(long, value_name = "DIR|ARCHIVE")]
    pub from: PathBuf,

    /// Where to write: a directory, or an archive whose form follows the
    /// name (.tar, .tar.gz/.tgz, .tar.xz, .tar.zst, .cpio, .cpio.gz,
    /// .cpio.xz, .cpio.zst).
    #[arg(long, value_name = "PATH")]
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
}

/// The options that decide what is written (recorded in the manifest, and
/// reused by `verify --from`).
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
    #[arg(long, value_enum, default_value = "kmod34")]
    pub compat: CompatArg,

    /// Also copy the module tree (modules, modules.order, modules.builtin,
    /// modules.builtin.modinfo) into the output, beside the index.
    #[arg(long)]
    pub staged: bool,

    /// Timestamp of every output entry, in seconds since the epoch
    /// [default: $SOURCE_DATE_EPOCH, else 0].
    #[arg(long, value_name = "SECONDS")]
    pub mtime: Option<u64>,

    /// Largest decompressed module to accept, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 1024)]
    pub max_module_size: u64,

    /// Largest decompressed archive to read, in MiB (a guard against
    /// decompression bombs).
    #[arg(long, value_name = "MIB", default_value_t = 16384)]
    pub max_input_size: u64,

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
    pub symbol_prefix: Option<char>,
}

fn parse_prefix(s: &str) -> Result<char, String> {
    let mut chars = s.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if c.is_ascii() => Ok(c),
        _ => Err("expected a single ASCII character".into()),
    }
}

/// Symbol checks and how their findings are reported; these change what is
/// reported, not what is indexed.
#[derive(Debug, Clone, Default, Args)]
pub struct CheckOptions {
    /// The kernel's Module.symvers: report unknown symbols and CRC
    /// mismatches (as depmod -e -E). A path that does not exist on the host
    /// is looked up inside the input.
    #[arg(long, value_name = "FILE", conflicts_with = "system_map")]
    pub symvers: Option<PathBuf>,

    /// The kernel's System.map: report unknown symbols (as depmod -e -F).
    /// A path that does not exist on the host is looked up inside the input.
    #[arg(long, value_name = "FILE")]
    pub system_map: Option<PathBuf>,

    /// Exit with status 1, writing no index, when a module needs an unknown
    /// symbol, disagrees about a symbol's CRC, or cannot be read.
    #[arg(long)]
    pub strict: bool,

    /// Write every diagnostic as JSON to this file (written even when the
    /// build fails).
    #[arg(long, value_name = "FILE.json")]
    pub report: Option<PathBuf>,
}

fn parse_format(s: &str) -> Result<OutputFormat, String> {
    OutputFormat::parse(s).ok_or_else(|| {
        "expected one of dir, tar, tar.gz, tar.xz, tar.zst, cpio, cpio.gz, cpio.xz, cpio.zst"
            .to_string()
    })
}

impl BuildOptions {
    /// The mtime to use: `--mtime`, else `SOURCE_DATE_EPOCH`, else 0.
    pub fn resolved_mtime(&self) -> Result<u64, String> {
        if let Some(t) = self.mtime {
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

    fn compat_name(&self) -> &'static str {
        match self.compat {
            CompatArg::Kmod34 => "kmod34",
            CompatArg::Kmod33 => "kmod33",
            CompatArg::Kmod30 => "kmod30",
        }
    }

    /// Options as recorded in a manifest.
    pub fn from_manifest(
        m: &Manifest,
        max_module_size: u64,
        max_input_size: u64,
    ) -> Result<Self, String> {
        let compat = match m.options.compat.as_str() {
            "kmod34" => CompatArg::Kmod34,
            "kmod33" => CompatArg::Kmod33,
            "kmod30" => CompatArg::Kmod30,
            other => {
                return Err(format!(
                    "the manifest names an unknown compat mode {other:?}"
                ))
            }
        };
        let symbol_prefix = match m.options.symbol_prefix.as_deref() {
            None => None,
            Some(p) => {
                Some(parse_prefix(p).map_err(|e| format!("the manifest's symbol_prefix: {e}"))?)
            }
        };
        Ok(BuildOptions {
            kernel_version: Some(m.kernel_version.clone()),
            module_dir: Some(m.module_dir.clone()),
            compat,
            staged: m.options.staged,
            mtime: Some(m.options.mtime),
            max_module_size,
            max_input_size,
            config_dirs: m.options.config_dirs.iter().map(PathBuf::from).collect(),
            no_input_config: !m.options.input_config,
            symbol_prefix,
        })
    }
}

/// What one build produces, before anything is written.
pub struct Built {
    pub input: Input,
    pub plan: Plan,
    pub manifest: Manifest,
    /// Every message of the run (already printed).
    pub diagnostics: Vec<Diagnostic>,
}

/// A build that produced nothing, with the messages gathered on the way.
pub struct Failure {
    pub message: String,
    pub kernel_version: Option<String>,
    pub diagnostics: Vec<Diagnostic>,
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure {
            message,
            kernel_version: None,
            diagnostics: Vec::new(),
        }
    }
}

/// Runs `build`; returns the process exit status.
pub fn run(args: &BuildArgs) -> Result<i32, String> {
    let format = args
        .format
        .unwrap_or_else(|| OutputFormat::from_name(&args.out));
    if same_place(&args.from, &args.out) {
        return Err(format!(
            "--out {} is the input; kmodidx build never modifies its input (use `kmodidx depmod` for in-place updates)",
            args.out.display()
        ));
    }
    let spill_dir = match args.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let built = match produce(
        &args.from,
        &args.options,
        &args.checks,
        Some(&spill_dir),
        !args.no_manifest,
    ) {
        Ok(built) => built,
        Err(failure) => {
            if let Some(path) = &args.checks.report {
                let bytes = report::render(
                    failure.kernel_version.as_deref(),
                    &failure.diagnostics,
                    "failed",
                );
                write_report(path, &bytes)?;
            }
            return Err(failure.message);
        }
    };
    let strict_failures = built
        .diagnostics
        .iter()
        .filter(|d| report::is_strict_failure(d))
        .count();
    let strict_failed = args.checks.strict && strict_failures > 0;
    if let Some(path) = &args.checks.report {
        let status = if strict_failed {
            "strict_failure"
        } else {
            "ok"
        };
        let bytes = report::render(
            Some(&built.manifest.kernel_version),
            &built.diagnostics,
            status,
        );
        write_report(path, &bytes)?;
    }
    if strict_failed {
        eprintln!(
            "kmodidx: error: --strict: {strict_failures} problem(s) with modules or symbols (listed above); nothing was written"
        );
        return Ok(1);
    }
    if built.input.is_dir() && format == OutputFormat::Dir {
        let rel = format!(
            "{}/{}",
            built.manifest.module_dir, built.manifest.kernel_version
        );
        if same_place(&args.from.join(&rel), &args.out.join(&rel)) {
            return Err(format!(
                "--out {} would write into the input tree; kmodidx build never modifies its input (use `kmodidx depmod` for in-place updates)",
                args.out.display()
            ));
        }
    }
    let mut plan = built.plan;
    let manifest_bytes = built.manifest.to_bytes();
    if !args.no_manifest && args.manifest.is_none() {
        plan.files.push(planned(
            MANIFEST_NAME.as_bytes().to_vec(),
            0o644,
            FileSource::Bytes(manifest_bytes.clone().into()),
        ));
        plan.sort();
    }
    let mtime = args.options.resolved_mtime()?;
    write::write_output(&plan, built.input.tree(), format, &args.out, mtime)
        .map_err(|e| e.to_string())?;
    if let (Some(path), false) = (&args.manifest, args.no_manifest) {
        write::write_file_atomically(path, |mut w| {
            w.write_all(&manifest_bytes)
                .and_then(|()| w.flush())
                .map_err(|source| write::OutputError::Io {
                    action: "cannot write",
                    path: path.clone(),
                    source,
                })
        })
        .map_err(|e| e.to_string())?;
    }
    Ok(0)
}

fn write_report(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            format!(
                "cannot create {}: {}",
                parent.display(),
                kmodidx::util::io_reason(&e)
            )
        })?;
    }
    write::write_file_atomically(path, |mut w| {
        w.write_all(bytes)
            .and_then(|()| w.flush())
            .map_err(|source| write::OutputError::Io {
                action: "cannot write",
                path: path.to_path_buf(),
                source,
            })
    })
    .map_err(|e| e.to_string())
}

fn planned(path: Vec<u8>, mode: u32, source: FileSource) -> PlannedFile {
    let (size, sha256) = match &source {
        FileSource::Bytes(b) => (b.len() as u64, Sha256::digest(b).into()),
        FileSource::Tree(_) => (0, [0; 32]),
    };
    PlannedFile {
        path,
        mode,
        size,
        sha256,
        source,
    }
}

/// Opens the input, runs the pipeline and plans the output. Messages are
/// printed; a failure comes back as the error text.
/// Without `record_inputs` the manifest's input digest is left empty (for a
/// build that writes no manifest), which spares hashing every module.
pub fn produce(
    from: &Path,
    opts: &BuildOptions,
    checks: &CheckOptions,
    spill_dir: Option<&Path>,
    record_inputs: bool,
) -> Result<Built, Failure> {
    // Symbol files that are not on the host are looked up in the input,
    // so an archive must keep them while it streams.
    let symbol_file = checks.symvers.as_ref().or(checks.system_map.as_ref());
    let keep: Vec<Vec<u8>> = symbol_file
        .filter(|p| !p.exists())
        .map(|p| input_path(p))
        .into_iter()
        .collect();
    let archive_opts = ArchiveOptions {
        max_input_size: opts.max_input_size.saturating_mul(1 << 20),
        max_module_size: opts.max_module_size.saturating_mul(1 << 20),
        spill_dir: if opts.staged {
            spill_dir.map(Path::to_path_buf)
        } else {
            None
        },
        keep,
        hash_modules: record_inputs || opts.staged,
        ..ArchiveOptions::default()
    };
    let input = open_input(from, &archive_opts).map_err(|e| e.to_string())?;
    for note in input.notes() {
        eprintln!("kmodidx: warning: {note}");
    }
    let tree = input.tree();
    let (module_dir, version) = locate(tree, from, opts)?;
    let mtime = opts.resolved_mtime()?;

    let tree_path = join(&[module_dir.as_bytes(), version.as_bytes()]);
    let kmod_path = [b"/", tree_path.as_slice()].concat();
    let recording = Recording::new(tree);
    // Only --config files are read from the host, never modules.
    let host = DirTree::new("/").hash_modules(false);
    let mut diagnostics = Vec::new();

    // Configuration: --config directories first, then the input's own.
    let host_config: Vec<Vec<u8>> = opts.config_dirs.iter().map(|d| host_path(d)).collect();
    let mut locations: Vec<ConfigLocation<'_>> = host_config
        .iter()
        .zip(&opts.config_dirs)
        .map(|(path, shown)| ConfigLocation {
            tree: &host,
            path: path.clone(),
            display: shown.display().to_string(),
        })
        .collect();
    if !opts.no_input_config {
        locations.extend(DEFAULT_CONFIG_DIRS.iter().map(|dir| ConfigLocation {
            tree: &recording,
            path: dir.trim_start_matches('/').as_bytes().to_vec(),
            display: dir.to_string(),
        }));
    }
    let config = config::load(&locations, version.as_bytes(), &mut diagnostics);

    let prefix = opts.symbol_prefix.map_or(0, |c| c as u8);
    let kernel_symbols = match symbol_file {
        None => None,
        Some(path) => {
            let bytes = if path.exists() {
                std::fs::read(path)
                    .map_err(|e| format!("{}: {}", path.display(), kmodidx::util::io_reason(&e)))?
            } else {
                let inner = input_path(path);
                recording
                    .read(&inner)
                    .map_err(|e| {
                        format!(
                            "{}: not on this machine, and not in the input ({})",
                            path.display(),
                            kmodidx::util::io_reason(&e)
                        )
                    })?
                    .to_vec()
            };
            let shown = path.display().to_string();
            Some(if checks.symvers.is_some() {
                parse_symvers(&bytes, &shown, &mut diagnostics)
            } else {
                parse_system_map(&bytes, &shown, prefix, &mut diagnostics)
            })
        }
    };

    // External directories are image paths: look for them in the input.
    let external_in_tree = |p: &[u8]| p.strip_prefix(b"/").map(<[u8]>::to_vec);
    let request = Request {
        tree: &recording,
        module_dir: ModuleDir {
            tree_path: tree_path.clone(),
            kmod_path,
        },
        config,
        compat: opts.compat.into(),
        symbols: SymbolOptions {
            prefix,
            check_crcs: checks.symvers.is_some(),
            report: kernel_symbols.is_some(),
        },
        kernel_symbols,
        warn_duplicates: false,
        decompress_limit: opts.max_module_size.saturating_mul(1 << 20),
        external_in_tree: &external_in_tree,
        explicit_modules: None,
        text_only: false,
    };
    let outcome = match depmod::run(&request) {
        Ok(outcome) => outcome,
        Err(e) => {
            diagnostics.extend_from_slice(e.diagnostics());
            super::print_diagnostics(&diagnostics, 0);
            return Err(Failure {
                message: format!("{e}; nothing was written"),
                kernel_version: Some(version),
                diagnostics,
            });
        }
    };
    diagnostics.extend(outcome.diagnostics.iter().cloned());
    super::print_diagnostics(&diagnostics, 0);

    let mut plan = Plan::default();
    for file in &outcome.files {
        plan.files.push(planned(
            join(&[&tree_path, file.name.as_bytes()]),
            0o644,
            FileSource::Bytes(file.bytes.clone().into()),
        ));
    }
    if opts.staged {
        let mut paths = Vec::new();
        for name in [
            "modules.order",
            "modules.builtin",
            "modules.builtin.modinfo",
        ] {
            let p = join(&[&tree_path, name.as_bytes()]);
            if tree.kind(&p) == Some(EntryKind::File) {
                paths.push(p);
            }
        }
        staged_modules(tree, &tree_path, &mut paths);
        let staged: Vec<PlannedFile> = paths
            .par_iter()
            .map(|p| {
                let (size, sha256) = tree.digest(p).map_err(|e| {
                    format!("{}: {}", tree.display(p), kmodidx::util::io_reason(&e))
                })?;
                Ok(PlannedFile {
                    path: p.clone(),
                    mode: if tree.executable(p) { 0o755 } else { 0o644 },
                    size,
                    sha256,
                    source: FileSource::Tree(p.clone()),
                })
            })
            .collect::<Result<_, String>>()?;
        plan.files.extend(staged);
    }
    plan.sort();

    let used = if record_inputs {
        recording.used()
    } else {
        Vec::new()
    };
    let digests: Vec<(Vec<u8>, [u8; 32])> = used
        .par_iter()
        .map(|p| {
            tree.digest(p)
                .map(|(_, sha)| (p.clone(), sha))
                .map_err(|e| format!("{}: {}", tree.display(p), kmodidx::util::io_reason(&e)))
        })
        .collect::<Result<_, String>>()?;
    let manifest = Manifest {
        schema: manifest::SCHEMA,
        tool: format!("kmodidx {}", env!("CARGO_PKG_VERSION")),
        kernel_version: version,
        module_dir,
        options: ManifestOptions {
            compat: opts.compat_name().to_string(),
            staged: opts.staged,
            mtime,
            input_config: !opts.no_input_config,
            config_dirs: opts
                .config_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect(),
            symbol_prefix: opts.symbol_prefix.map(String::from),
        },
        input: manifest::input_digest(&digests),
        files: plan
            .files
            .iter()
            .map(|f| ManifestFile {
                path: String::from_utf8_lossy(&f.path).into_owned(),
                size: f.size,
                mode: manifest::mode_text(f.mode),
                sha256: manifest::hex(&f.sha256),
            })
            .collect(),
    };
    Ok(Built {
        input,
        plan,
        manifest,
        diagnostics,
    })
}

/// Every module file under the module directory, walked as discovery walks
/// it (symlinks followed, `build` and `source` skipped).
fn staged_modules(tree: &dyn Tree, dir: &[u8], out: &mut Vec<Vec<u8>>) {
    const EXTENSIONS: [&[u8]; 4] = [b".ko", b".ko.gz", b".ko.xz", b".ko.zst"];
    let Ok(entries) = tree.read_dir(dir) else {
        return;
    };
    for entry in entries {
        if matches!(entry.name.as_slice(), b"build" | b"source") {
            continue;
        }
        let path = join(&[dir, &entry.name]);
        if path.len() >= 4096 {
            continue;
        }
        match entry.kind {
            EntryKind::Dir => staged_modules(tree, &path, out),
            EntryKind::File
                if EXTENSIONS
                    .iter()
                    .any(|e| entry.name.len() > e.len() && entry.name.ends_with(e)) =>
            {
                out.push(path)
            }
            _ => {}
        }
    }
}

/// A host path as a path inside the host tree rooted at `/`.
fn host_path(p: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    abs.as_os_str()
        .as_bytes()
        .strip_prefix(b"/")
        .unwrap_or_default()
        .to_vec()
}

/// A path named on the command line, as a path inside the input.
fn input_path(p: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = p.as_os_str().as_bytes();
    bytes.strip_prefix(b"/").unwrap_or(bytes).to_vec()
}

fn same_place(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Finds the module directory and kernel version to index.
fn locate(tree: &dyn Tree, from: &Path, args: &BuildOptions) -> Result<(String, String), String> {
    let module_dirs: Vec<String> = match &args.module_dir {
        Some(dir) => vec![dir.trim_matches('/').to_string()],
        None => MODULE_DIRS
            .iter()
            .filter(|d| !(**d == "lib/modules" && lib_is_usr_lib(tree)))
            .map(|d| d.to_string())
            .collect(),
    };
    let mut candidates: Vec<(String, String)> = Vec::new();
    for dir in &module_dirs {
        let Ok(entries) = tree.read_dir(dir.as_bytes()) else {
            continue;
        };
        for entry in entries.iter().filter(|e| e.kind == EntryKind::Dir) {
            let version = String::from_utf8_lossy(&entry.name).into_owned();
            if args.kernel_version.as_ref().is_none_or(|v| *v == version) {
                candidates.push((dir.clone(), version));
            }
        }
    }
    let root = from.display();
    match candidates.len() {
        1 => Ok(candidates.remove(0)),
        0 => Err(match &args.kernel_version {
            Some(v) => format!(
                "{root}: no {} directory for kernel version {v}",
                module_dirs.iter().map(|d| format!("{d}/{v}")).collect::<Vec<_>>().join(" or ")
            ),
            None => format!(
                "{root}: no kernel module directory found (looked for {})",
                module_dirs.iter().map(|d| format!("{d}/<version>")).collect::<Vec<_>>().join(" and ")
            ),
        }),
        _ => Err(format!(
            "{root}: several kernels found; pick one with --kernel-version (and --module-dir if needed):\n{}",
            candidates
                .iter()
                .map(|(d, v)| format!("  {d}/{v}"))
                .collect::<Vec<_>>()
                .join("\n")
        )),
    }
}

/// On a merged-/usr tree, `lib` is a symlink to `usr/lib`, and modules
/// belong under `usr/lib/modules`.
fn lib_is_usr_lib(tree: &dyn Tree) -> bool {
    tree.link_target(b"lib").is_some_and(|t| {
        matches!(
            t.as_slice(),
            b"usr/lib" | b"/usr/lib" | b"usr/lib/" | b"/usr/lib/" | b"./usr/lib"
        )
    })
}
