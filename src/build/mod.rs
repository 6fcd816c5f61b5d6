//! The whole hermetic build as library calls: [`build`] opens the input,
//! finds the module directory, loads the configuration and symbol files,
//! runs depmod and plans the output with its manifest, all in memory;
//! [`write_to_path`] or [`write_to_stream`] then writes the result.
//!
//! Nothing here prints: messages come back as [`Diagnostic`]s, in
//! [`Built::diagnostics`] or in the [`BuildError`], which also carries the
//! kernel version when it was found.

mod closure;
mod locate;

use std::io::Write;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::depmod::config::{self, ConfigLocation};
use crate::depmod::discover::{walk_modules, ModuleDir, Walked};
use crate::depmod::kernel_symbols::{self, SymbolFileKind};
use crate::depmod::{self, Compat, DepmodError, KernelSymbol, Request, SymbolOptions};
use crate::diag::{Category, Diagnostic};
use crate::index::files::IndexFile;
use crate::layout::CONFIG_DIRS;
use crate::module::{MetaParser, ModuleMeta, ModuleReader};
use crate::output::manifest::{self, Manifest, ManifestFile, ManifestOptions, MANIFEST_NAME};
use crate::output::write::{self, FileSource, OutputError, OutputFormat, Plan, PlannedFile};
use crate::source::dir::read_host_file;
use crate::source::record::Recording;
use crate::source::{
    join, open_input, ArchiveOptions, DirTree, EntryKind, Input, InputError, Tree,
};

/// What the manifest's input digest covers ([`Options::input_digest`]).
pub use crate::output::manifest::DigestScope;
pub use locate::{lib_is_usr_lib, locate, LocateError, Located};

/// Size limits, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest file read (`--max-file-size`): a module, stored and
    /// decompressed, and every other input file. It also bounds what an
    /// archive keeps in memory (see the README's memory bound).
    pub max_module_size: u64,
    /// Largest decompressed archive read.
    pub max_input_size: u64,
}

impl Default for Limits {
    /// 128 MiB per file, 16 GiB per archive. A distribution kernel's
    /// largest modules are a few tens of MiB (Debian's cloud kernels: under
    /// 5 MiB); only unstripped debug builds come near 128 MiB, and they can
    /// raise the limit. The worst case memory grows with it (the README).
    fn default() -> Self {
        Limits {
            max_module_size: 128 << 20,
            max_input_size: 16 << 30,
        }
    }
}

/// The kernel's own symbols, to check modules against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymbolFile {
    /// `Module.symvers` or `System.map`.
    pub kind: SymbolFileKind,
    /// Where it is: on the host, or (when no such host file exists) inside
    /// the input.
    pub path: PathBuf,
}

/// What to build, and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// The kernel to index; needed when the input holds several.
    pub kernel_version: Option<String>,
    /// The module directory inside the input, such as `lib/modules`;
    /// detected when `None` (see [`locate`]).
    pub module_dir: Option<String>,
    /// Which kmod release's output to reproduce.
    pub compat: Compat,
    /// Also copy the module tree into the output.
    pub staged: bool,
    /// Timestamp of every output entry.
    pub mtime: u64,
    /// Size limits.
    pub limits: Limits,
    /// depmod.d directories (or files) on the host, before the input's own.
    pub config_dirs: Vec<PathBuf>,
    /// Whether the depmod.d files inside the input apply.
    pub input_config: bool,
    /// The architecture's symbol prefix (`depmod -P`).
    pub symbol_prefix: Option<u8>,
    /// Check modules against the kernel's symbols (`depmod -e -E`/`-F`).
    pub symbols: Option<SymbolFile>,
    /// Fail with [`Failure::Strict`] when a module needs an unknown symbol,
    /// disagrees about a CRC, or cannot be read.
    pub strict: bool,
    /// What the manifest's input digest covers. [`DigestScope::Metadata`]
    /// (the default) hashes what depmod took from each module;
    /// [`DigestScope::Parsed`] the parts of each module that depmod parses,
    /// which a directory input reads anyway; [`DigestScope::Whole`] reads
    /// and hashes every module whole; [`DigestScope::Off`] leaves the
    /// digest empty.
    pub input_digest: DigestScope,
    /// Where an archive's module bytes are kept for a staged output (an
    /// anonymous file there); `None` keeps none, which suffices when the
    /// output is not written (as for `verify`).
    pub spill_dir: Option<PathBuf>,
    /// Directory input only: host directories (such as `/nix/store`) that
    /// absolute symlinks may lead into; every other link resolves inside
    /// the input.
    pub follow_links_under: Vec<PathBuf>,
    /// Index (and stage) only the closure of these SPECs (`--modules`).
    pub closure: Option<ClosureRequest>,
}

/// A closure build (`--modules`): which modules, whether to write
/// `modules.load`, and how SPECs are resolved. See [`crate::closure`].
#[derive(Debug, Clone)]
pub struct ClosureRequest {
    /// Roots, exclusions and allowed-missing names, as expanded SPEC lists.
    pub selection: crate::closure::Selection,
    /// Also write `modules.load`, the closure in load order.
    pub load_list: bool,
    /// Resolves SPECs as modprobe does (`crate::query` provides it).
    pub resolver: ResolverHandle,
}

/// A shared [`Resolver`](crate::closure::Resolver).
#[derive(Clone)]
pub struct ResolverHandle(pub std::sync::Arc<dyn crate::closure::Resolver>);

impl std::fmt::Debug for ResolverHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResolverHandle")
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            kernel_version: None,
            module_dir: None,
            compat: Compat::default(),
            staged: false,
            mtime: 0,
            limits: Limits::default(),
            config_dirs: Vec::new(),
            input_config: true,
            symbol_prefix: None,
            symbols: None,
            strict: false,
            input_digest: DigestScope::Metadata,
            spill_dir: None,
            follow_links_under: Vec::new(),
            closure: None,
        }
    }
}

/// A manifest's options that this kmodidx cannot rebuild with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestOptionsError {
    /// An unknown `compat` value.
    #[error("the manifest names an unknown compat mode {0:?}")]
    Compat(String),
    /// A `symbol_prefix` that is not one ASCII character.
    #[error("the manifest's symbol_prefix {0:?} is not a single ASCII character")]
    SymbolPrefix(String),
}

impl Options {
    /// The options a manifest records, to rebuild what it describes. A
    /// closure build's SPECs are resolved with `resolver`.
    pub fn from_manifest(
        m: &Manifest,
        limits: Limits,
        resolver: &ResolverHandle,
    ) -> Result<Self, ManifestOptionsError> {
        let compat = Compat::from_name(&m.options.compat)
            .ok_or_else(|| ManifestOptionsError::Compat(m.options.compat.clone()))?;
        let symbol_prefix = match m.options.symbol_prefix.as_deref() {
            None => None,
            Some(p) => {
                Some(single_ascii(p).ok_or_else(|| ManifestOptionsError::SymbolPrefix(p.into()))?)
            }
        };
        Ok(Options {
            kernel_version: Some(m.kernel_version.clone()),
            module_dir: Some(m.module_dir.clone()),
            compat,
            staged: m.options.staged,
            mtime: m.options.mtime,
            limits,
            config_dirs: m.options.config_dirs.iter().map(PathBuf::from).collect(),
            input_config: m.options.input_config,
            symbol_prefix,
            input_digest: m.input.scope,
            follow_links_under: m
                .options
                .follow_links_under
                .iter()
                .map(PathBuf::from)
                .collect(),
            closure: m.options.closure.as_ref().map(|c| ClosureRequest {
                selection: crate::closure::Selection {
                    roots: c.modules.clone(),
                    exclude: c.exclude.clone(),
                    allow_missing: c.allow_missing.clone(),
                },
                load_list: c.load_list,
                resolver: resolver.clone(),
            }),
            ..Options::default()
        })
    }
}

/// The byte of a one-character ASCII string.
pub fn single_ascii(s: &str) -> Option<u8> {
    match s.as_bytes() {
        [b] if b.is_ascii() => Some(*b),
        _ => None,
    }
}

/// A finished build, in memory.
pub struct Built {
    /// The input path given.
    pub from: PathBuf,
    /// The opened input (staged output copies its module files).
    pub input: Input<ModuleMeta>,
    /// The kernel indexed.
    pub kernel_version: String,
    /// The module directory inside the input, such as `lib/modules`.
    pub module_dir: String,
    /// The index files, in kmod's order.
    pub files: Vec<IndexFile>,
    /// The module files indexed (paths in the input), in modules.dep order.
    pub modules: Vec<Vec<u8>>,
    /// Everything the output holds except the manifest.
    pub plan: Plan,
    /// The manifest describing the output.
    pub manifest: Manifest,
    /// Every message, in the order kmod would print them.
    pub diagnostics: Vec<Diagnostic>,
}

/// Why a build produced nothing. The messages gathered so far, and the
/// kernel version once found, come along.
#[derive(Debug, thiserror::Error)]
#[error("{failure}")]
pub struct BuildError {
    /// What went wrong (boxed: a failure can be large, a result should
    /// not be).
    pub failure: Box<Failure>,
    /// The kernel being indexed, when it was found.
    pub kernel_version: Option<String>,
    /// Every message up to the failure (including a cycle report).
    pub diagnostics: Vec<Diagnostic>,
}

impl BuildError {
    /// Whether the failure is a problem found in the modules (a dependency
    /// cycle, `--strict` findings) rather than a run that could not
    /// complete.
    pub fn is_module_problem(&self) -> bool {
        matches!(
            *self.failure,
            Failure::Strict { .. }
                | Failure::Depmod(DepmodError::Cycle { .. })
                | Failure::Closure(_)
        )
    }
}

/// What went wrong in a build.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The input could not be opened or read.
    #[error(transparent)]
    Input(#[from] InputError),
    /// No (single) kernel to index.
    #[error(transparent)]
    Locate(#[from] LocateError),
    /// The symbol file could not be read.
    #[error("{}: {reason}", path.display())]
    SymbolFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// depmod could not produce an index (a cycle, ...).
    #[error("{0}; nothing was written")]
    Depmod(#[source] DepmodError),
    /// An input file to copy or hash could not be read.
    #[error("{path}: {reason}")]
    Read {
        /// The file, as the input names it.
        path: String,
        /// Why.
        reason: String,
    },
    /// A closure could not be computed (a root SPEC matches nothing).
    #[error("{0}; nothing was written")]
    Closure(#[from] crate::closure::ClosureError),
    /// A module's file name holds a byte that would inject or split lines
    /// of `modules.dep` and the other text files (kmod writes it anyway;
    /// the depmod drop-in does as kmod does).
    #[error("`{path}`: the module's file name holds {byte}, which would corrupt the line format of modules.dep and the other index files; nothing was written (rename the module)")]
    ModuleName {
        /// The module, as depmod names it, with the byte escaped.
        path: String,
        /// The byte, in words (`a newline`, `a colon`, ...).
        byte: String,
    },
    /// `strict` was set and modules have problems.
    #[error("--strict: {count} problem(s) with modules or symbols; nothing was written")]
    Strict {
        /// How many diagnostics count against `strict`.
        count: usize,
    },
    /// The depmod.d configuration could not be loaded.
    #[error("{0}; nothing was written")]
    Config(#[from] config::ConfigError),
    /// `--follow-links-under` with an archive, which never reads the
    /// machine's files.
    #[error("{}: --follow-links-under applies to directory input only; an archive never reads this machine's files", .0.display())]
    FollowLinksInArchive(PathBuf),
    /// Module files exist, but none could be read: an index of nothing is
    /// never written silently.
    #[error("{}", none_readable_text(*.count, .first, .link_target.as_deref(), .prefix.as_deref()))]
    NoneReadable {
        /// How many module files could not be read.
        count: usize,
        /// The first few, as kmod names them.
        first: Vec<String>,
        /// Where the first one links to, if it is an absolute symlink.
        link_target: Option<String>,
        /// For a directory input whose modules are absolute links: the
        /// directory they all lie under, for `--follow-links-under`.
        prefix: Option<String>,
    },
}

fn none_readable_text(
    count: usize,
    first: &[String],
    link_target: Option<&str>,
    prefix: Option<&str>,
) -> String {
    let more = match count.saturating_sub(first.len()) {
        0 => String::new(),
        n => format!(" and {n} more"),
    };
    let hint = match (link_target, prefix) {
        (Some(target), Some(prefix)) => format!(
            "; they are symlinks to absolute paths such as {target}, which resolve inside the input: to read them on this machine, pass --follow-links-under {prefix}"
        ),
        (Some(target), None) => format!(
            "; they are symlinks to absolute paths such as {target} outside the archive"
        ),
        _ => "; see the messages above".to_string(),
    };
    format!(
        "none of the {count} module files found could be read ({}{more}); nothing was written{hint}",
        first.join(", ")
    )
}

/// Opens `from` as [`build`] reads it: an archive keeps what `opts` needs
/// (a symbol file inside the input, the module bytes of a staged output),
/// and its modules are parsed as it streams past.
pub fn open(from: &Path, opts: &Options) -> Result<Input<ModuleMeta>, BuildError> {
    // Symbol files that are not on the host are looked up in the input,
    // so an archive must keep them while it streams.
    let symbols_in_input = opts.symbols.as_ref().filter(|s| !s.path.exists());
    let archive_opts = ArchiveOptions {
        max_input_size: opts.limits.max_input_size,
        spill_dir: if opts.staged {
            opts.spill_dir.clone()
        } else {
            None
        },
        keep: symbols_in_input
            .map(|s| input_path(&s.path))
            .into_iter()
            .collect(),
        follow_links_under: opts.follow_links_under.clone(),
        keep_firmware: opts.staged && opts.closure.is_some(),
    };
    let parser = MetaParser {
        max_module_size: opts.limits.max_module_size,
        digest: opts.input_digest.module_digest(),
    };
    let input = open_input(from, &archive_opts, &parser).map_err(|e| BuildError {
        failure: Box::new(e.into()),
        kernel_version: None,
        diagnostics: Vec::new(),
    })?;
    if !input.is_dir() && !opts.follow_links_under.is_empty() {
        return Err(BuildError {
            failure: Box::new(Failure::FollowLinksInArchive(from.to_path_buf())),
            kernel_version: None,
            diagnostics: Vec::new(),
        });
    }
    Ok(input)
}

/// Runs the build: everything up to the bytes to write, in memory.
pub fn build(from: &Path, opts: &Options) -> Result<Built, BuildError> {
    let input = open(from, opts)?;
    build_opened(from, input, opts)
}

/// [`build`] over an input already opened with [`open`] and the same
/// options (so that a caller can look at the input first).
pub fn build_opened(
    from: &Path,
    input: Input<ModuleMeta>,
    opts: &Options,
) -> Result<Built, BuildError> {
    let mut diagnostics = Vec::new();
    let fail = |failure: Failure, version: Option<&str>, diagnostics: Vec<Diagnostic>| BuildError {
        failure: Box::new(failure),
        kernel_version: version.map(str::to_string),
        diagnostics,
    };
    let tree = input.tree();
    let limit = opts.limits.max_module_size;
    let Located {
        module_dir,
        kernel_version: version,
    } = locate(
        tree,
        from,
        opts.module_dir.as_deref(),
        opts.kernel_version.as_deref(),
    )
    .map_err(|e| fail(e.into(), None, Vec::new()))?;

    let tree_path = join(&[module_dir.as_bytes(), version.as_bytes()]);
    let recording = Recording::new(tree);
    // Only --config files are read from the host, never modules.
    let host = DirTree::new("/").max_file_size(limit);
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
    if opts.input_config {
        locations.extend(CONFIG_DIRS.iter().map(|dir| ConfigLocation {
            tree: &recording,
            path: dir.as_bytes().to_vec(),
            display: format!("/{dir}"),
        }));
    }
    let config = match config::load(&locations, version.as_bytes(), &mut diagnostics) {
        Ok(config) => config,
        Err(e) => return Err(fail(e.into(), Some(&version), diagnostics)),
    };

    let prefix = opts.symbol_prefix.unwrap_or(0);
    let kernel_symbols = match &opts.symbols {
        None => None,
        Some(file) => match load_symbols(file, &recording, prefix, limit, &mut diagnostics) {
            Ok(symbols) => Some(symbols),
            Err(failure) => return Err(fail(failure, Some(&version), diagnostics)),
        },
    };

    let modules = ModuleReader::new(&input, opts.limits.max_module_size)
        .hashing(opts.input_digest == DigestScope::Whole || opts.staged)
        .digests(opts.input_digest.module_digest());
    // External directories are image paths: look for them in the input.
    let external_in_tree = |p: &[u8]| p.strip_prefix(b"/").map(<[u8]>::to_vec);
    let request = Request {
        tree: &recording,
        modules: &modules,
        module_dir: ModuleDir {
            tree_path: tree_path.clone(),
            kmod_path: [b"/", tree_path.as_slice()].concat(),
        },
        config,
        compat: opts.compat,
        symbols: SymbolOptions {
            prefix,
            check_crcs: matches!(&opts.symbols, Some(s) if s.kind == SymbolFileKind::Symvers),
            report: kernel_symbols.is_some(),
            // kmod's -v lines are never printed by a build.
            needs: false,
        },
        kernel_symbols,
        warn_duplicates: false,
        external_in_tree: &external_in_tree,
        explicit_modules: None,
        text_only: false,
    };
    let mut closure_built = None;
    let outcome = match &opts.closure {
        None => depmod::run(&request).map_err(Failure::Depmod),
        Some(wanted) => {
            let place = (module_dir.as_str(), version.as_str());
            closure::run(&request, tree, place, wanted, opts.staged).map(|(outcome, built)| {
                closure_built = Some(built);
                outcome
            })
        }
    };
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(failure) => {
            if let Failure::Depmod(e) = &failure {
                diagnostics.extend_from_slice(e.diagnostics());
            }
            return Err(fail(failure, Some(&version), diagnostics));
        }
    };
    diagnostics.extend(outcome.diagnostics.iter().cloned());
    if outcome.readable_modules == 0 {
        if let Some(failure) = none_readable(tree, input.is_dir(), &diagnostics) {
            return Err(fail(failure, Some(&version), diagnostics));
        }
    }
    if let Some(failure) = outcome.module_paths.iter().find_map(|p| {
        let written = p
            .strip_prefix(tree_path.as_slice())
            .and_then(|rest| rest.strip_prefix(b"/"))
            .unwrap_or(p);
        line_breaking_byte(written).map(|byte| Failure::ModuleName {
            path: format!("/{}", String::from_utf8_lossy(p).escape_debug()),
            byte: byte_name(byte),
        })
    }) {
        return Err(fail(failure, Some(&version), diagnostics));
    }
    let count = diagnostics.iter().filter(|d| d.is_strict_finding()).count();
    if opts.strict && count > 0 {
        return Err(fail(Failure::Strict { count }, Some(&version), diagnostics));
    }

    // Hashing the index files (megabytes) is spread over the threads.
    let mut plan = Plan {
        files: outcome
            .files
            .par_iter()
            .map(|file| {
                let path = join(&[&tree_path, file.name.as_bytes()]);
                PlannedFile::bytes(path, &file.bytes[..])
            })
            .collect(),
    };
    if let Some(list) = closure_built.as_ref().and_then(|c| c.load_list.clone()) {
        plan.files.push(PlannedFile::bytes(
            closure::load_list_path(&tree_path),
            list,
        ));
    }
    if opts.staged {
        let staged = match &closure_built {
            None => staged_files(tree, &tree_path),
            Some(c) => {
                let mut paths = module_dir_inputs(tree, &tree_path);
                paths.extend(outcome.module_paths.iter().cloned());
                paths.extend(c.firmware.iter().cloned());
                planned_copies(tree, &paths)
            }
        };
        match staged {
            Ok(staged) => plan.files.extend(staged),
            Err(failure) => return Err(fail(failure, Some(&version), diagnostics)),
        }
    }
    plan.sort();

    // A closure is a function of the whole kernel's modules (and the
    // firmware it copies), not only of the modules it keeps.
    let (extra_modules, extra_files): (&[Vec<u8>], &[Vec<u8>]) = match &closure_built {
        Some(c) => (&c.all_modules, &c.firmware),
        None => (&[], &[]),
    };
    let digests = match input_digests(
        tree,
        &recording,
        &modules,
        &outcome,
        extra_modules,
        extra_files,
        opts.input_digest,
    ) {
        Ok(digests) => digests,
        Err(failure) => return Err(fail(failure, Some(&version), diagnostics)),
    };
    let manifest = Manifest {
        schema: manifest::SCHEMA,
        tool: format!("kmodidx {}", env!("CARGO_PKG_VERSION")),
        kernel_version: version.clone(),
        module_dir: module_dir.clone(),
        options: ManifestOptions {
            compat: opts.compat.name().to_string(),
            staged: opts.staged,
            mtime: opts.mtime,
            input_config: opts.input_config,
            config_dirs: opts
                .config_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect(),
            symbol_prefix: opts.symbol_prefix.map(|b| char::from(b).to_string()),
            follow_links_under: opts
                .follow_links_under
                .iter()
                .map(|d| d.display().to_string())
                .collect(),
            closure: opts.closure.as_ref().map(|c| manifest::ManifestClosure {
                modules: c.selection.roots.clone(),
                exclude: c.selection.exclude.clone(),
                allow_missing: c.selection.allow_missing.clone(),
                load_list: c.load_list,
            }),
        },
        input: manifest::input_digest(opts.input_digest, &digests),
        files: plan
            .files
            .iter()
            .map(|f| ManifestFile {
                path: String::from_utf8_lossy(&f.path).into_owned(),
                size: f.size,
                mode: manifest::mode_text(f.mode),
                sha256: crate::util::hex(&f.sha256),
            })
            .collect(),
    };
    Ok(Built {
        from: from.to_path_buf(),
        input,
        kernel_version: version,
        module_dir,
        files: outcome.files,
        modules: outcome.module_paths,
        plan,
        manifest,
        diagnostics,
    })
}

/// `(path, sha256)` pairs of input files.
type FileDigests = Vec<(Vec<u8>, [u8; 32])>;

/// `(path, sha256)` of every input file the build used, modules digested
/// as `scope` says and other files whole.
fn input_digests(
    tree: &dyn Tree,
    recording: &Recording<'_>,
    modules: &ModuleReader<'_>,
    outcome: &depmod::Outcome,
    extra_modules: &[Vec<u8>],
    extra_files: &[Vec<u8>],
    scope: DigestScope,
) -> Result<FileDigests, Failure> {
    if scope == DigestScope::Off {
        return Ok(Vec::new());
    }
    let module_paths: std::collections::HashSet<&[u8]> = outcome
        .module_paths
        .iter()
        .chain(extra_modules)
        .map(Vec::as_slice)
        .collect();
    let mut others = recording.used();
    others.extend(extra_files.iter().cloned());
    others.sort();
    others.dedup();
    others.retain(|p| !module_paths.contains(p.as_slice()));
    let whole = |p: &Vec<u8>| {
        tree.digest(p)
            .map(|(_, sha)| (p.clone(), sha))
            .map_err(|e| read_failure(tree, p, &e))
    };
    let mut digests = others
        .par_iter()
        .map(whole)
        .collect::<Result<Vec<_>, _>>()?;
    let mut listed: Vec<&Vec<u8>> = outcome.module_paths.iter().chain(extra_modules).collect();
    listed.sort();
    listed.dedup();
    let module_digests = listed
        .par_iter()
        .map(|p| match scope {
            // A module that could not be read or decompressed has no
            // metadata or parsed digest: its whole file stands in.
            DigestScope::Metadata | DigestScope::Parsed => match modules.digest(p) {
                Some(sha) => Ok(((*p).clone(), sha)),
                None => whole(p),
            },
            DigestScope::Whole | DigestScope::Off => whole(p),
        })
        .collect::<Result<Vec<_>, _>>()?;
    digests.extend(module_digests);
    Ok(digests)
}

fn read_failure(tree: &dyn Tree, path: &[u8], e: &std::io::Error) -> Failure {
    Failure::Read {
        path: tree.display(path),
        reason: crate::util::io_reason(e),
    }
}

/// The first byte of a module path, as the text files write it, that would
/// break their line formats: a newline ends a line in every one of them, a
/// `:` ends the module's path in `modules.dep`, spaces and tabs separate
/// its dependencies (and the fields of the other files), and the other
/// control bytes have no business in a line either.
fn line_breaking_byte(path: &[u8]) -> Option<u8> {
    path.iter()
        .copied()
        .find(|&b| b.is_ascii_control() || b == b' ' || b == b':')
}

fn byte_name(b: u8) -> String {
    match b {
        b'\n' => "a newline".into(),
        b'\t' => "a tab".into(),
        b' ' => "a space".into(),
        b':' => "a colon".into(),
        b => format!("the control byte 0x{b:02x}"),
    }
}

/// Reads and parses the kernel's symbol file: from the host if it exists
/// there, else from the input.
fn load_symbols(
    file: &SymbolFile,
    input: &dyn Tree,
    prefix: u8,
    limit: u64,
    diags: &mut Vec<Diagnostic>,
) -> Result<Vec<KernelSymbol>, Failure> {
    let bytes = if file.path.exists() {
        read_host_file(&file.path, limit).map_err(|e| Failure::SymbolFile {
            path: file.path.clone(),
            reason: crate::util::io_reason(&e),
        })?
    } else {
        input
            .read(&input_path(&file.path))
            .map_err(|e| Failure::SymbolFile {
                path: file.path.clone(),
                reason: format!(
                    "not on this machine, and not in the input ({})",
                    crate::util::io_reason(&e)
                ),
            })?
            .to_vec()
    };
    let shown = file.path.display().to_string();
    Ok(kernel_symbols::parse(
        file.kind, &bytes, &shown, prefix, diags,
    ))
}

/// When module files exist but none could be read: the failure naming the
/// first few and, for absolute links in a directory input, the
/// `--follow-links-under` directory that would let them be read.
fn none_readable(tree: &dyn Tree, is_dir: bool, diagnostics: &[Diagnostic]) -> Option<Failure> {
    let unreadable: Vec<&str> = diagnostics
        .iter()
        .filter(|d| d.category() == Category::UnreadableModule)
        .filter_map(Diagnostic::module)
        .collect();
    if unreadable.is_empty() {
        return None;
    }
    // Absolute link targets: in a symlink forest (Nix's buildEnv, say)
    // every module points into a store outside the input.
    let targets: Vec<Vec<u8>> = unreadable
        .iter()
        .take(1000)
        .filter_map(|m| tree.link_target(m.trim_start_matches('/').as_bytes()))
        .filter(|t| t.first() == Some(&b'/'))
        .collect();
    let prefix = targets.first().filter(|_| is_dir).map(|first| {
        // The directory they all lie in (the store itself for Nix).
        let parts = |t: &[u8]| -> Vec<Vec<u8>> {
            let mut p: Vec<Vec<u8>> = t
                .split(|&b| b == b'/')
                .filter(|c| !c.is_empty())
                .map(<[u8]>::to_vec)
                .collect();
            p.pop();
            p
        };
        let mut common = parts(first);
        for other in &targets[1..] {
            let other = parts(other);
            let same = common
                .iter()
                .zip(&other)
                .take_while(|(a, b)| a == b)
                .count();
            common.truncate(same);
        }
        if common.starts_with(&[b"nix".to_vec(), b"store".to_vec()]) {
            common.truncate(2);
        }
        format!("/{}", crate::diag::lossy(&common.join(&b'/')))
    });
    Some(Failure::NoneReadable {
        count: unreadable.len(),
        first: unreadable.iter().take(3).map(|m| m.to_string()).collect(),
        link_target: targets.first().map(|t| crate::diag::lossy(t)),
        prefix,
    })
}

/// The module directory's input files that a staged output keeps as they
/// are: `modules.order`, `modules.builtin`, `modules.builtin.modinfo`.
fn module_dir_inputs(tree: &dyn Tree, dir: &[u8]) -> Vec<Vec<u8>> {
    [
        "modules.order",
        "modules.builtin",
        "modules.builtin.modinfo",
    ]
    .iter()
    .map(|name| join(&[dir, name.as_bytes()]))
    .filter(|p| tree.kind(p) == Some(EntryKind::File))
    .collect()
}

/// The module directory's own files and every module file under it, walked
/// as discovery walks it, planned as copies.
fn staged_files(tree: &dyn Tree, dir: &[u8]) -> Result<Vec<PlannedFile>, Failure> {
    let mut paths = module_dir_inputs(tree, dir);
    let kmod_dir = [b"/", dir].concat();
    walk_modules(tree, dir, &kmod_dir, &|_| false, &mut |walked| {
        if let Walked::Module { tree_path, .. } = walked {
            paths.push(tree_path);
        }
        true
    });
    planned_copies(tree, &paths)
}

/// Input files planned as copies at the same paths.
fn planned_copies(tree: &dyn Tree, paths: &[Vec<u8>]) -> Result<Vec<PlannedFile>, Failure> {
    paths
        .par_iter()
        .map(|p| {
            let (size, sha256) = tree.digest(p).map_err(|e| read_failure(tree, p, &e))?;
            Ok(PlannedFile {
                path: p.clone(),
                mode: if tree.executable(p) { 0o755 } else { 0o644 },
                size,
                sha256,
                source: FileSource::Tree(p.clone()),
            })
        })
        .collect()
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

/// A path named by the user, as a path inside the input.
fn input_path(p: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = p.as_os_str().as_bytes();
    bytes.strip_prefix(b"/").unwrap_or(bytes).to_vec()
}

/// Where the manifest goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestPlace {
    /// At the root of the output, as `kmodidx.manifest.json`.
    InOutput,
    /// In a file of its own.
    At(PathBuf),
    /// Nowhere.
    Nowhere,
}

impl ManifestPlace {
    /// The manifest's own file, when it has one.
    pub fn file(&self) -> Option<&Path> {
        match self {
            ManifestPlace::At(path) => Some(path),
            _ => None,
        }
    }
}

/// Why a built index could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The output would replace or write into the input.
    #[error("{}: this is the input, or inside it; kmodidx build never modifies its input (use `kmodidx depmod` for in-place updates)", .0.display())]
    IntoInput(PathBuf),
    /// A file of its own (the report, the manifest, ...) would be the
    /// output, or inside a directory output.
    #[error("{}: the {what} file must not be the output {} or lie inside it (`verify` checks every file of an output and would find it as an extra one); write it beside the output", path.display(), out.display())]
    InsideOutput {
        /// `report`, `manifest`, ...
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The output.
        out: PathBuf,
    },
    /// Two files of their own would be written to the same place.
    #[error("{}: the {first} and the {second} would be written to the same file", path.display())]
    SameFile {
        /// What the first is (`report`, ...).
        first: &'static str,
        /// What the second is.
        second: &'static str,
        /// The path.
        path: PathBuf,
    },
    /// Writing failed.
    #[error(transparent)]
    Output(#[from] OutputError),
}

/// Checks, before anything is built, that the files written beside the
/// output (`side`: what each is, such as `report`, and its path) are
/// neither the output nor inside a directory output, nor one another.
pub fn check_places(
    out: &Path,
    format: OutputFormat,
    side: &[(&'static str, &Path)],
) -> Result<(), WriteError> {
    let out_at = resolved(out);
    let side: Vec<(&'static str, &Path, PathBuf)> = side
        .iter()
        .map(|&(what, path)| (what, path, resolved(path)))
        .collect();
    for (i, (what, path, at)) in side.iter().enumerate() {
        if *at == out_at || (format == OutputFormat::Dir && at.starts_with(&out_at)) {
            return Err(WriteError::InsideOutput {
                what,
                path: path.to_path_buf(),
                out: out.to_path_buf(),
            });
        }
        if let Some((first, _, _)) = side[..i].iter().find(|(_, _, other)| other == at) {
            return Err(WriteError::SameFile {
                first,
                second: what,
                path: path.to_path_buf(),
            });
        }
    }
    Ok(())
}

/// Where a path leads: its longest existing ancestor with symlinks and `..`
/// resolved, followed by the rest as written.
fn resolved(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut rest = Vec::new();
    let mut at = abs.as_path();
    loop {
        if let Ok(real) = at.canonicalize() {
            return rest.iter().rev().fold(real, |p, name| p.join(name));
        }
        match (at.parent(), at.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name);
                at = parent;
            }
            _ => return abs,
        }
    }
}

/// The plan with the manifest added when it goes into the output.
fn final_plan(built: &Built, manifest: &ManifestPlace) -> Plan {
    let mut plan = built.plan.clone();
    if *manifest == ManifestPlace::InOutput {
        plan.files.push(PlannedFile::bytes(
            MANIFEST_NAME.as_bytes().to_vec(),
            built.manifest.to_bytes(),
        ));
        plan.sort();
    }
    plan
}

fn write_manifest_file(built: &Built, manifest: &ManifestPlace) -> Result<(), WriteError> {
    if let Some(path) = manifest.file() {
        write::write_or_stream(path, &built.manifest.to_bytes())?;
    }
    Ok(())
}

/// Writes `built` to `out` as `format`, and the manifest where asked.
/// Refuses to replace the input or write into it.
pub fn write_to_path(
    built: &Built,
    out: &Path,
    format: OutputFormat,
    manifest: &ManifestPlace,
) -> Result<(), WriteError> {
    if same_place(&built.from, out) {
        return Err(WriteError::IntoInput(out.to_path_buf()));
    }
    if built.input.is_dir() && format == OutputFormat::Dir {
        let rel = format!("{}/{}", built.module_dir, built.kernel_version);
        if same_place(&built.from.join(&rel), &out.join(&rel)) {
            return Err(WriteError::IntoInput(out.to_path_buf()));
        }
    }
    let plan = final_plan(built, manifest);
    write::write_output(
        &plan,
        built.input.tree(),
        format,
        out,
        built.manifest.options.mtime,
        manifest.file(),
    )?;
    write_manifest_file(built, manifest)
}

/// Writes `built` as an archive of `format` to `w` (errors call it
/// `name`), and the manifest where asked.
pub fn write_to_stream(
    built: &Built,
    w: &mut dyn Write,
    name: &Path,
    format: OutputFormat,
    manifest: &ManifestPlace,
) -> Result<(), WriteError> {
    let plan = final_plan(built, manifest);
    write::write_archive(
        &plan,
        built.input.tree(),
        format,
        name,
        built.manifest.options.mtime,
        w,
    )?;
    write_manifest_file(built, manifest)
}

/// Whether two paths name the same existing file or directory.
pub fn same_place(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
