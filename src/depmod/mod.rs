//! The depmod pipeline: discovery, ordering, loading, resolution, and the
//! rendering of every index file, with kmod's semantics.

pub mod config;
pub mod discover;
pub mod hash_order;
pub mod kernel_symbols;
pub mod order;
pub mod resolve;

use foldhash::HashMap;

use rayon::prelude::*;

use crate::diag::{Diagnostic, Kind};
use crate::index::files::IndexError;
use crate::index::files::{self, BuiltinInputs, FileOptions, IndexFile, IndexedModule};
use crate::index::trie::Layout;
use crate::module::{ModuleMeta, ModuleSource};
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
    let loaded = load(req, &mut diags)?;
    index(req, loaded, diags)
}

/// The modules of a run, found, ordered and loaded: everything before
/// resolution.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The module files, in output order.
    pub found: Vec<discover::Found>,
    /// Their metadata, in the same order.
    pub modules: Vec<resolve::LoadedModule>,
}

impl Loaded {
    /// The modules at `keep` (indexes into this run's order, ascending), as
    /// depmod would find and order them in a tree holding only those files.
    ///
    /// Filtering keeps depmod's order: modules listed in `modules.order`
    /// rank by their own line there, and the others by kmod's hash order,
    /// which depends only on each module's own name (its bucket, then the
    /// name within the bucket); neither depends on which other modules exist.
    pub fn subset(&self, keep: &[usize]) -> Loaded {
        Loaded {
            found: keep.iter().map(|&i| self.found[i].clone()).collect(),
            modules: keep.iter().map(|&i| self.modules[i].clone()).collect(),
        }
    }
}

/// Finds, orders and loads the modules (depmod's steps before resolution).
pub fn load(req: &Request<'_>, diags: &mut Vec<Diagnostic>) -> Result<Loaded, DepmodError> {
    // Reading and parsing dominate the run time, and each module is
    // independent: the other threads start on the module files as the walk
    // (one thread) meets them, a batch at a time. What they parse is kept
    // by tree path and put in output order below, so the result is the same
    // whatever the timing.
    let early: std::sync::Mutex<HashMap<Vec<u8>, ModuleMeta>> = Default::default();
    let (found, order) = match &req.explicit_modules {
        Some(files) => {
            let order = output_order(req, files, diags)?;
            (files.clone(), order)
        }
        None => rayon::scope(|s| {
            // Modules go to the threads a few at a time: a job (and a
            // thread woken for it) per module cost the walking thread more
            // than the walk itself.
            const BATCH: usize = 16;
            let parse = |batch: Vec<Vec<u8>>| {
                let early = &early;
                s.spawn(move |_| {
                    let parsed: Vec<(Vec<u8>, ModuleMeta)> = batch
                        .into_iter()
                        .map(|path| {
                            let meta = req.modules.module_meta(&path);
                            (path, meta)
                        })
                        .collect();
                    early
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .extend(parsed);
                });
            };
            let mut batch = Vec::with_capacity(BATCH);
            let found = discover::discover_with(
                req.tree,
                &req.module_dir,
                &req.config,
                req.external_in_tree,
                diags,
                &mut |tree_path| {
                    batch.push(tree_path.to_vec());
                    if batch.len() == BATCH {
                        parse(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)));
                    }
                },
            )
            .map_err(|fatal| DepmodError::ModuleDir(fatal, std::mem::take(diags)))?;
            parse(batch);
            // The order is worked out while the other threads parse.
            let order = output_order(req, &found, diags)?;
            Ok::<_, DepmodError>((found, order))
        })?,
    };

    // Modules the walk did not hand out (an explicit list) are read now.
    let mut early = early
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let parsed: Vec<Option<ModuleMeta>> = order
        .iter()
        .map(|&i| early.remove(&found[i].tree_path))
        .collect();
    drop(early);
    let modules: Vec<resolve::LoadedModule> = order
        .par_iter()
        .zip(parsed)
        .map(|(&i, parsed)| {
            let f = &found[i];
            let meta = parsed.unwrap_or_else(|| req.modules.module_meta(&f.tree_path));
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
    if let Some((m, reason)) = modules
        .iter()
        .find_map(|m| m.meta.refusal().map(|r| (m, r)))
    {
        return Err(DepmodError::Refused {
            path: m.display_path.clone(),
            reason,
            diagnostics: std::mem::take(diags),
        });
    }
    let mut found: Vec<Option<discover::Found>> = found.into_iter().map(Some).collect();
    let found = order.iter().filter_map(|&i| found[i].take()).collect();
    Ok(Loaded { found, modules })
}

/// The permutation of `found` that kmod writes modules in: its hash order,
/// then `modules.order` (see [`order::module_order`]).
fn output_order(
    req: &Request<'_>,
    found: &[discover::Found],
    diags: &mut Vec<Diagnostic>,
) -> Result<Vec<usize>, DepmodError> {
    if found.len() >= usize::from(u16::MAX) {
        return Err(DepmodError::TooManyModules {
            count: found.len(),
            diagnostics: std::mem::take(diags),
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
    let order_file = read_input(req, "modules.order", diags)?;
    let order_path = format!(
        "{}/modules.order",
        String::from_utf8_lossy(&req.module_dir.kmod_path)
    );
    Ok(order::module_order(
        &names,
        &uncrelpaths,
        order_file.as_deref().map(|t| (order_path.as_str(), t)),
        req.compat.duplicate_rule(),
        diags,
    ))
}

/// Resolves the loaded modules and renders every index file (depmod's
/// steps after loading). `diags` holds the messages so far.
pub fn index(
    req: &Request<'_>,
    loaded: Loaded,
    mut diags: Vec<Diagnostic>,
) -> Result<Outcome, DepmodError> {
    let Loaded { found, mut modules } = loaded;
    let readable_modules = modules
        .iter()
        .filter(|m| match &m.meta.exports {
            Some(Err(crate::module::LoadError::Elf(crate::module::elf::ElfError::NoData))) => true,
            Some(Err(_)) => false,
            _ => true,
        })
        .count();

    // The files made from the modules' own metadata (aliases, soft and weak
    // dependencies, devnames, the builtin inputs) do not wait for
    // resolution: they are rendered on the other threads while it runs.
    // Messages keep kmod's order: resolution's, then the builtin inputs',
    // then each file's.
    let mut indexed: Vec<IndexedModule> = modules
        .iter_mut()
        .zip(&found)
        .map(|(m, f)| IndexedModule {
            name: m.name.clone(),
            path: f.relpath.clone().unwrap_or_else(|| f.kmod_path.clone()),
            aliases: std::mem::take(&mut m.meta.aliases),
            softdeps: std::mem::take(&mut m.meta.softdeps),
            weakdeps: std::mem::take(&mut m.meta.weakdeps),
            dependencies: Vec::new(),
        })
        .collect();
    let opts = FileOptions {
        layout: req.compat.layout(),
        weakdep: req.compat.writes_weakdep(),
        warn_duplicates: req.warn_duplicates,
        text_only: req.text_only,
    };
    let mut table_diags = Vec::new();
    let mut dependency_diags = Vec::new();
    let mut input_diags = Vec::new();
    let (resolution, early) = rayon::join(
        || {
            // The symbol files need only who exports what: they are
            // rendered while the dependencies are worked out.
            let table = resolve::SymbolTable::build(
                &modules,
                req.kernel_symbols.as_deref(),
                req.symbols,
                &mut table_diags,
            );
            let symbols = table.owned();
            let (dependencies, symbol_files) = rayon::join(
                || resolve::dependencies(&modules, &table, req.symbols, &mut dependency_diags),
                || files::render_symbol_files(&indexed, &symbols, opts),
            );
            dependencies.map(|dependencies| (symbols, dependencies, symbol_files))
        },
        || {
            // The binary indexes (and so the builtin inputs) are not part of
            // the text-only output; kmod does not even open those inputs then.
            let (builtin, modinfo) = if req.text_only {
                (None, None)
            } else {
                (
                    read_input(req, "modules.builtin", &mut input_diags)?,
                    read_input(req, "modules.builtin.modinfo", &mut input_diags)?,
                )
            };
            let inputs = BuiltinInputs {
                builtin: builtin.as_deref(),
                builtin_modinfo: modinfo.as_deref(),
            };
            let early = files::render_unresolved(&indexed, &inputs, opts);
            Ok((builtin, modinfo, early))
        },
    );
    diags.extend(table_diags);
    diags.extend(dependency_diags);
    let (symbols, dependencies, symbol_files) = match resolution {
        Ok(r) => r,
        Err(cycle) => {
            diags.extend(cycle.report);
            return Err(DepmodError::Cycle { diagnostics: diags });
        }
    };
    diags.extend(input_diags);
    let (builtin, builtin_modinfo, early) = match early {
        Ok(early) => early,
        // read_input moved the branch's messages into the error: put the
        // earlier ones before them.
        Err(DepmodError::Refused {
            path,
            reason,
            diagnostics,
        }) => {
            diags.extend(diagnostics);
            return Err(DepmodError::Refused {
                path,
                reason,
                diagnostics: diags,
            });
        }
        Err(other) => return Err(other),
    };
    for (m, dependencies) in indexed.iter_mut().zip(dependencies) {
        m.dependencies = dependencies;
    }
    let inputs = BuiltinInputs {
        builtin: builtin.as_deref(),
        builtin_modinfo: builtin_modinfo.as_deref(),
    };
    match files::render_resolved(
        &indexed,
        &symbols,
        &inputs,
        opts,
        early.and(symbol_files),
        &mut diags,
    ) {
        Ok(files) => Ok(Outcome {
            files,
            diagnostics: diags,
            module_paths: found.into_iter().map(|f| f.tree_path).collect(),
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
