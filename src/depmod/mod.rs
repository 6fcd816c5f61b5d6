//! The depmod pipeline: discovery, ordering, loading, resolution, and the
//! rendering of every index file, with kmod's semantics.

pub mod config;
pub mod discover;
pub mod hash_order;
pub mod kernel_symbols;
pub mod order;
pub mod resolve;

use rayon::prelude::*;

use crate::index::files::IndexError;
use crate::index::files::{self, BuiltinInputs, FileOptions, IndexFile, IndexedModule};
use crate::index::trie::Layout;
use crate::source::{join, Tree};
use config::Config;
use discover::ModuleDir;
use order::DuplicateRule;
pub use resolve::{KernelSymbol, SymbolOptions};

/// Which kmod release's output to reproduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compat {
    /// kmod 34: parent-first tries, first `modules.order` line wins.
    #[default]
    Kmod34,
    /// kmod 33: children-first tries, last `modules.order` line wins.
    Kmod33,
    /// kmod 30 (Debian 12): as kmod 33, without modules.weakdep.
    Kmod30,
}

impl Compat {
    pub fn layout(self) -> Layout {
        match self {
            Compat::Kmod34 => Layout::ParentFirst,
            Compat::Kmod33 | Compat::Kmod30 => Layout::ChildrenFirst,
        }
    }

    pub fn writes_weakdep(self) -> bool {
        self != Compat::Kmod30
    }

    pub fn duplicate_rule(self) -> DuplicateRule {
        match self {
            Compat::Kmod34 => DuplicateRule::FirstWins,
            Compat::Kmod33 | Compat::Kmod30 => DuplicateRule::LastWins,
        }
    }
}

/// Severity of a message, named as kmod prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Critical,
    Error,
    Warning,
    Info,
    /// depmod's verbose (`-v`) progress lines, which it prints to stdout.
    Show,
}

impl Level {
    /// The word kmod prints after the program name.
    pub fn label(self) -> &'static str {
        match self {
            Level::Critical => "FATAL",
            Level::Error => "ERROR",
            Level::Warning => "WARNING",
            Level::Info => "INFO",
            Level::Show => "SHOW",
        }
    }
}

/// A message in kmod's words (without the `depmod: LEVEL: ` prefix), with
/// the facts behind it for machine-readable reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub level: Level,
    pub message: String,
    pub kind: Option<Finding>,
}

/// The problems a pipeline may want to gate on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// A module needs a symbol nothing provides.
    UnknownSymbol { module: String, symbol: String },
    /// A module was built against a different version of a symbol.
    CrcMismatch {
        module: String,
        symbol: String,
        /// The CRC of the provider (kernel or module).
        expected: u64,
        /// The CRC recorded in the module's `__versions`.
        found: u64,
    },
    /// A module file that could not be read or parsed.
    UnreadableModule { module: String, reason: String },
    /// Modules on a dependency cycle.
    Cycle { modules: Vec<String> },
}

impl Diagnostic {
    fn new(level: Level, message: String) -> Self {
        Diagnostic {
            level,
            message,
            kind: None,
        }
    }
    pub fn critical(message: String) -> Self {
        Self::new(Level::Critical, message)
    }
    pub fn error(message: String) -> Self {
        Self::new(Level::Error, message)
    }
    pub fn warning(message: String) -> Self {
        Self::new(Level::Warning, message)
    }
    pub fn info(message: String) -> Self {
        Self::new(Level::Info, message)
    }
    pub fn show(message: String) -> Self {
        Self::new(Level::Show, message)
    }
    /// Attaches the structured facts behind the message.
    pub fn with(mut self, finding: Finding) -> Self {
        self.kind = Some(finding);
        self
    }
}

/// Everything one depmod run needs.
pub struct Request<'a> {
    pub tree: &'a dyn Tree,
    pub module_dir: ModuleDir,
    pub config: Config,
    pub compat: Compat,
    pub symbols: SymbolOptions,
    /// Symbols of the kernel image (from Module.symvers or System.map);
    /// `None` when neither was given.
    pub kernel_symbols: Option<Vec<KernelSymbol>>,
    /// `-w`: warn about duplicate index entries.
    pub warn_duplicates: bool,
    /// Largest decompressed module accepted, in bytes.
    pub decompress_limit: u64,
    /// Maps an `external` directory to its path in the tree, if it is there.
    pub external_in_tree: &'a (dyn Fn(&[u8]) -> Option<Vec<u8>> + Sync),
    /// Index exactly these module files instead of searching (depmod's
    /// `FILES...` operands).
    pub explicit_modules: Option<Vec<discover::Found>>,
    /// Render only the text files, as `depmod -n` prints them.
    pub text_only: bool,
}

/// The files to write and the messages produced on the way.
#[derive(Debug)]
pub struct Outcome {
    pub files: Vec<IndexFile>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Why no index could be produced. The messages gathered so far come along.
#[derive(Debug, thiserror::Error)]
pub enum DepmodError {
    #[error("{}", .0.message)]
    ModuleDir(Diagnostic, Vec<Diagnostic>),
    #[error("{count} modules found; the index format allows at most 65534")]
    TooManyModules {
        count: usize,
        diagnostics: Vec<Diagnostic>,
    },
    #[error("modules depend on each other in a cycle")]
    Cycle { diagnostics: Vec<Diagnostic> },
    #[error("{source}")]
    Index {
        source: IndexError,
        diagnostics: Vec<Diagnostic>,
    },
}

impl DepmodError {
    /// Messages produced before the failure (including a cycle report).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            DepmodError::ModuleDir(_, d)
            | DepmodError::TooManyModules { diagnostics: d, .. }
            | DepmodError::Cycle { diagnostics: d }
            | DepmodError::Index { diagnostics: d, .. } => d,
        }
    }
}

/// Runs the whole pipeline and returns the rendered files.
pub fn run(req: &Request<'_>) -> Result<Outcome, DepmodError> {
    let mut diags = Vec::new();
    let found = match &req.explicit_modules {
        Some(files) => files.clone(),
        None => match discover::discover(
            req.tree,
            &req.module_dir,
            &req.config,
            req.external_in_tree,
            &mut diags,
        ) {
            Ok(found) => found,
            Err(fatal) => return Err(DepmodError::ModuleDir(fatal, diags)),
        },
    };
    if found.len() >= usize::from(u16::MAX) {
        return Err(DepmodError::TooManyModules {
            count: found.len(),
            diagnostics: diags,
        });
    }

    let names: Vec<&[u8]> = found.iter().map(|f| f.name.as_slice()).collect();
    let uncrelpaths: Vec<Option<Vec<u8>>> = found
        .iter()
        .map(|f| {
            f.relpath
                .as_ref()
                .map(|r| order::uncompressed_relpath(r, &f.name))
        })
        .collect();
    let order_file = read_input(req, "modules.order", &mut diags);
    let order_path = format!(
        "{}/modules.order",
        String::from_utf8_lossy(&req.module_dir.kmod_path)
    );
    let order = order::module_order(
        &names,
        &uncrelpaths,
        order_file.as_deref().map(|t| (order_path.as_str(), t)),
        req.compat.duplicate_rule(),
        &mut diags,
    );

    // Decompression and parsing dominate the run time; they are independent
    // per module, and collecting in order keeps the result thread-count free.
    let loaded: Vec<resolve::LoadedModule> = order
        .par_iter()
        .map(|&i| {
            let f = &found[i];
            let meta = req.tree.module_meta(&f.tree_path, req.decompress_limit);
            resolve::LoadedModule {
                name: f.name.clone(),
                display_path: String::from_utf8_lossy(&f.kmod_path).into_owned(),
                meta,
            }
        })
        .collect();

    let resolution = match resolve::resolve(
        &loaded,
        req.kernel_symbols.as_deref(),
        req.symbols,
        &mut diags,
    ) {
        Ok(r) => r,
        Err(cycle) => {
            diags.extend(cycle.report);
            return Err(DepmodError::Cycle { diagnostics: diags });
        }
    };

    let indexed: Vec<IndexedModule> = loaded
        .into_iter()
        .zip(&order)
        .zip(resolution.dependencies)
        .map(|((m, &i), dependencies)| IndexedModule {
            name: m.name,
            path: found[i]
                .relpath
                .clone()
                .unwrap_or_else(|| found[i].kmod_path.clone()),
            aliases: m.meta.aliases,
            softdeps: m.meta.softdeps,
            weakdeps: m.meta.weakdeps,
            dependencies,
        })
        .collect();

    // The binary indexes (and so the builtin inputs) are not part of the
    // text-only output; kmod does not even open those inputs then.
    let (builtin, builtin_modinfo) = if req.text_only {
        (None, None)
    } else {
        (
            read_input(req, "modules.builtin", &mut diags),
            read_input(req, "modules.builtin.modinfo", &mut diags),
        )
    };
    let opts = FileOptions {
        layout: req.compat.layout(),
        weakdep: req.compat.writes_weakdep(),
        warn_duplicates: req.warn_duplicates,
        text_only: req.text_only,
    };
    let inputs = BuiltinInputs {
        builtin: builtin.as_deref(),
        builtin_modinfo: builtin_modinfo.as_deref(),
    };
    match files::render(&indexed, &resolution.symbols, &inputs, opts, &mut diags) {
        Ok(files) => Ok(Outcome {
            files,
            diagnostics: diags,
        }),
        Err(source) => Err(DepmodError::Index {
            source,
            diagnostics: diags,
        }),
    }
}

/// Reads a metadata file from the module directory. A missing or unreadable
/// file is reported as kmod reports it and treated as absent.
fn read_input(req: &Request<'_>, name: &str, diags: &mut Vec<Diagnostic>) -> Option<Vec<u8>> {
    let path = join(&[&req.module_dir.tree_path, name.as_bytes()]);
    match req.tree.read(&path) {
        Ok(contents) => Some(contents.to_vec()),
        Err(e) => {
            diags.push(Diagnostic::warning(format!(
                "could not open {name} at {}: {}",
                String::from_utf8_lossy(&req.module_dir.kmod_path),
                crate::util::io_reason(&e)
            )));
            None
        }
    }
}
