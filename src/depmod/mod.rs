//! The depmod pipeline: discovery, ordering, loading, resolution, and the
//! rendering of every index file, with kmod's semantics.

pub mod config;
pub mod discover;
pub mod hash_order;
pub mod kernel_symbols;
pub mod order;
pub mod resolve;

use rayon::prelude::*;

use crate::diag::{Diagnostic, Kind};
use crate::index::files::IndexError;
use crate::index::files::{self, BuiltinInputs, FileOptions, IndexFile, IndexedModule};
use crate::index::trie::Layout;
use crate::module::ModuleSource;
use crate::source::{join, Tree};
use config::Config;
use discover::ModuleDir;
use order::DuplicateRule;
pub use resolve::{KernelSymbol, SymbolOptions};

/// Which kmod release's output to reproduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
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
    /// Every mode, newest first.
    pub const ALL: [Compat; 3] = [Compat::Kmod34, Compat::Kmod33, Compat::Kmod30];

    /// The mode's name: `kmod34`, `kmod33` or `kmod30` (as `--compat`, the
    /// manifest and `KMODIDX_COMPAT` spell it).
    pub fn name(self) -> &'static str {
        match self {
            Compat::Kmod34 => "kmod34",
            Compat::Kmod33 => "kmod33",
            Compat::Kmod30 => "kmod30",
        }
    }

    /// The mode called `name` (see [`Compat::name`]).
    pub fn from_name(name: &str) -> Option<Compat> {
        Compat::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The index trie layout this release writes.
    pub fn layout(self) -> Layout {
        match self {
            Compat::Kmod34 => Layout::ParentFirst,
            Compat::Kmod33 | Compat::Kmod30 => Layout::ChildrenFirst,
        }
    }

    /// Whether this release writes modules.weakdep.
    pub fn writes_weakdep(self) -> bool {
        self != Compat::Kmod30
    }

    /// Which of a module's duplicate modules.order lines counts.
    pub fn duplicate_rule(self) -> DuplicateRule {
        match self {
            Compat::Kmod34 => DuplicateRule::FirstWins,
            Compat::Kmod33 | Compat::Kmod30 => DuplicateRule::LastWins,
        }
    }
}

/// Everything one depmod run needs.
pub struct Request<'a> {
    /// The tree holding the module directory (configuration is already
    /// loaded into `config`).
    pub tree: &'a dyn Tree,
    /// Where each module's metadata comes from.
    pub modules: &'a dyn ModuleSource,
    /// The module directory to index.
    pub module_dir: ModuleDir,
    /// The depmod.d configuration.
    pub config: Config,
    /// Which kmod release's output to reproduce.
    pub compat: Compat,
    /// Symbol checks.
    pub symbols: SymbolOptions,
    /// Symbols of the kernel image (from Module.symvers or System.map);
    /// `None` when neither was given.
    pub kernel_symbols: Option<Vec<KernelSymbol>>,
    /// `-w`: warn about duplicate index entries.
    pub warn_duplicates: bool,
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
    /// Every index file, in kmod's order.
    pub files: Vec<IndexFile>,
    /// Every message, in kmod's order.
    pub diagnostics: Vec<Diagnostic>,
    /// The tree paths of the modules indexed, in output order.
    pub module_paths: Vec<Vec<u8>>,
    /// How many of them were read (the others are reported as unreadable
    /// and indexed without dependencies).
    pub readable_modules: usize,
}

/// Why no index could be produced. The messages gathered so far come along.
#[derive(Debug, thiserror::Error)]
pub enum DepmodError {
    /// The module directory could not be listed. The diagnostic is a
    /// [`Kind::DirUnreadable`].
    #[error("{0}")]
    ModuleDir(Diagnostic, Vec<Diagnostic>),
    /// More modules than the index format can number.
    #[error("{count} modules found; the index format allows at most 65534")]
    TooManyModules {
        /// How many.
        count: usize,
        /// Messages so far.
        diagnostics: Vec<Diagnostic>,
    },
    /// Modules depend on each other in a cycle (the report is the last of
    /// the diagnostics).
    #[error("modules depend on each other in a cycle")]
    Cycle {
        /// Messages so far, ending with kmod's cycle report.
        diagnostics: Vec<Diagnostic>,
    },
    /// An index could not be encoded.
    #[error("{source}")]
    Index {
        /// Why.
        source: IndexError,
        /// Messages so far.
        diagnostics: Vec<Diagnostic>,
    },
    /// An input file the tree refused to read: over the size limit, or not
    /// a regular file. Indexing without it would silently give another
    /// result.
    #[error("{path}: {reason}")]
    Refused {
        /// The file, as kmod would name it.
        path: String,
        /// Why.
        reason: crate::util::Refused,
        /// Messages so far.
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
            | DepmodError::Index { diagnostics: d, .. }
            | DepmodError::Refused { diagnostics: d, .. } => d,
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
    let order_file = read_input(req, "modules.order", &mut diags)?;
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
            let meta = req.modules.module_meta(&f.tree_path);
            let meta = match req.compat {
                Compat::Kmod34 => meta.for_kmod34(),
                Compat::Kmod33 | Compat::Kmod30 => meta,
            };
            resolve::LoadedModule {
                name: f.name.clone(),
                display_path: String::from_utf8_lossy(&f.kmod_path).into_owned(),
                meta,
            }
        })
        .collect();
    if let Some((m, reason)) = loaded.iter().find_map(|m| m.meta.refusal().map(|r| (m, r))) {
        return Err(DepmodError::Refused {
            path: m.display_path.clone(),
            reason,
            diagnostics: diags,
        });
    }
    let readable_modules = loaded
        .iter()
        .filter(|m| match &m.meta.exports {
            Some(Err(crate::module::LoadError::Elf(crate::module::elf::ElfError::NoData))) => true,
            Some(Err(_)) => false,
            _ => true,
        })
        .count();

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
            read_input(req, "modules.builtin", &mut diags)?,
            read_input(req, "modules.builtin.modinfo", &mut diags)?,
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
            module_paths: order.iter().map(|&i| found[i].tree_path.clone()).collect(),
            readable_modules,
        }),
        Err(source) => Err(DepmodError::Index {
            source,
            diagnostics: diags,
        }),
    }
}

/// Reads a metadata file from the module directory. A missing or unreadable
/// file is reported as kmod reports it and treated as absent; one the tree
/// refuses (a FIFO, a device, a file over the size limit) stops the run.
fn read_input(
    req: &Request<'_>,
    name: &str,
    diags: &mut Vec<Diagnostic>,
) -> Result<Option<Vec<u8>>, DepmodError> {
    let path = join(&[&req.module_dir.tree_path, name.as_bytes()]);
    match req.tree.read(&path) {
        Ok(contents) => Ok(Some(contents.to_vec())),
        Err(e) => {
            let dir = crate::diag::lossy(&req.module_dir.kmod_path);
            if let Some(reason) = crate::util::Refused::of(&e) {
                return Err(DepmodError::Refused {
                    path: format!("{dir}/{name}"),
                    reason: reason.clone(),
                    diagnostics: std::mem::take(diags),
                });
            }
            diags.push(Diagnostic::warning(Kind::InputMissing {
                name: name.to_string(),
                dir,
                reason: crate::util::io_reason(&e),
            }));
            Ok(None)
        }
    }
}
