//! The consistency check of a finished tree or archive (such as an
//! initramfs): [`check`] indexes the modules present in memory with
//! [`build::build`] and compares the result with what the input holds.
//!
//! It finds modules that `modules.dep` names but that are absent,
//! dependencies that are absent, needed symbols that nothing exports (when
//! the kernel's symbols are given) or disagree about their CRCs, absent `firmware=` files, and index
//! files that are missing or differ from what `build` writes for the
//! modules present. Every finding is a [`Problem`]: data, with one line of
//! text as its `Display`.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Serialize;

use crate::build::{self, BuildError, Built, Options};
use crate::closure::firmware;
use crate::diag::{lossy, Kind};
use crate::index::files::IndexFile;
use crate::module::{ModuleReader, ModuleSource};
use crate::source::join;

/// One inconsistency. Modules are named by their path under the kernel's
/// module directory, as `modules.dep` names them. In JSON each problem is
/// an object whose `kind` is the variant's name in snake case, with the
/// variant's fields as keys.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    /// `modules.dep` names a module file that is absent.
    #[error("{module}: module listed in modules.dep is missing")]
    ModuleMissing {
        /// The module's path.
        module: String,
    },
    /// A dependency `modules.dep` gives a module is absent.
    #[error("{module}: missing dependency {dependency}")]
    DependencyMissing {
        /// The module's path.
        module: String,
        /// The dependency's path.
        dependency: String,
    },
    /// A needed symbol is exported by no present module nor the kernel.
    #[error("{module}: needs unknown symbol {symbol}")]
    UnknownSymbol {
        /// The module's path.
        module: String,
        /// The symbol.
        symbol: String,
    },
    /// A module was built against another version of a symbol (with
    /// `Module.symvers`): the kernel would refuse to load it.
    #[error("{module}: disagrees about version of symbol {symbol}")]
    CrcMismatch {
        /// The module's path.
        module: String,
        /// The symbol.
        symbol: String,
    },
    /// A present module could not be read.
    #[error("{module}: cannot read module: {reason}")]
    UnreadableModule {
        /// The module's path.
        module: String,
        /// Why.
        reason: String,
    },
    /// A `firmware=` file of a present module is absent.
    #[error("{module}: missing firmware {firmware}")]
    FirmwareMissing {
        /// The module's path.
        module: String,
        /// The firmware name, as the module gives it.
        firmware: String,
    },
    /// An index file `build` writes is absent.
    #[error("{file}: index file is missing")]
    IndexMissing {
        /// The file's path in the input.
        file: String,
    },
    /// An index file differs from what `build` writes for the modules
    /// present.
    #[error("{file}: index file is stale (differs from a fresh build)")]
    IndexStale {
        /// The file's path in the input.
        file: String,
    },
}

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The kernel checked.
    pub kernel_version: String,
    /// The module directory, such as `lib/modules`.
    pub module_dir: String,
    /// How many modules are present.
    pub modules: usize,
    /// Every problem, sorted and each once.
    pub problems: Vec<Problem>,
}

/// Checks the input at `from`, indexed with `opts` (its kernel version,
/// module directory, symbol file, limits and compatibility mode; `staged`
/// and the input digest are not used). A failure means the check could not
/// run: the input is unreadable, no single kernel is in it, or its modules
/// cannot be indexed (a dependency cycle: see
/// [`BuildError::is_module_problem`]).
pub fn check(from: &Path, opts: &Options) -> Result<Report, BuildError> {
    let opts = Options {
        staged: false,
        input_digest: build::DigestScope::Off,
        strict: false,
        spill_dir: None,
        ..opts.clone()
    };
    let built = build::build(from, &opts)?;
    let mut problems = BTreeSet::new();
    let base = join(&[built.module_dir.as_bytes(), built.kernel_version.as_bytes()]);
    let shown = |path: &[u8]| -> String {
        lossy(
            path.strip_prefix(base.as_slice())
                .and_then(|p| p.strip_prefix(b"/"))
                .unwrap_or(path),
        )
    };

    dependencies(&built, &base, &shown, &mut problems);
    for d in &built.diagnostics {
        match &d.kind {
            Kind::UnknownSymbol { module, symbol } => {
                problems.insert(Problem::UnknownSymbol {
                    module: relative(module, &built),
                    symbol: symbol.clone(),
                });
            }
            Kind::CrcMismatch { module, symbol, .. } => {
                problems.insert(Problem::CrcMismatch {
                    module: relative(module, &built),
                    symbol: symbol.clone(),
                });
            }
            Kind::UnreadableModule { module, reason } => {
                problems.insert(Problem::UnreadableModule {
                    module: relative(module, &built),
                    reason: reason.clone(),
                });
            }
            _ => {}
        }
    }
    firmware_files(&built, &opts, &shown, &mut problems);
    index_files(&built, &base, &built.files, &mut problems);
    Ok(Report {
        kernel_version: built.kernel_version.clone(),
        module_dir: built.module_dir.clone(),
        modules: built.modules.len(),
        problems: problems.into_iter().collect(),
    })
}

/// A module path from a diagnostic (kmod's absolute image path) relative
/// to the kernel's module directory.
fn relative(module: &str, built: &Built) -> String {
    let prefix = format!("/{}/{}/", built.module_dir, built.kernel_version);
    module.strip_prefix(&prefix).unwrap_or(module).to_string()
}

/// The tree path of a `modules.dep` entry: relative to the kernel's module
/// directory, or an absolute image path.
fn dep_path(base: &[u8], entry: &[u8]) -> Vec<u8> {
    match entry.strip_prefix(b"/") {
        Some(absolute) => absolute.to_vec(),
        None => join(&[base, entry]),
    }
}

/// Every module the input's `modules.dep` names, and every dependency it
/// gives, must be there. Without a `modules.dep` there is nothing to
/// follow; [`index_files`] reports it missing.
fn dependencies(
    built: &Built,
    base: &[u8],
    shown: &dyn Fn(&[u8]) -> String,
    problems: &mut BTreeSet<Problem>,
) {
    let tree = built.input.tree();
    let Ok(text) = tree.read(&join(&[base, b"modules.dep"])) else {
        return;
    };
    let exists = |entry: &[u8]| tree.kind(&dep_path(base, entry)).is_some();
    for line in text.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let module = &line[..colon];
        if !exists(module) {
            problems.insert(Problem::ModuleMissing {
                module: shown(&dep_path(base, module)),
            });
        }
        for dep in line[colon + 1..]
            .split(|&b| b == b' ')
            .filter(|d| !d.is_empty())
        {
            if !exists(dep) {
                problems.insert(Problem::DependencyMissing {
                    module: shown(&dep_path(base, module)),
                    dependency: shown(&dep_path(base, dep)),
                });
            }
        }
    }
}

/// Every `firmware=` file of every present module must be there.
fn firmware_files(
    built: &Built,
    opts: &Options,
    shown: &dyn Fn(&[u8]) -> String,
    problems: &mut BTreeSet<Problem>,
) {
    let tree = built.input.tree();
    let roots = firmware::firmware_roots(build::lib_is_usr_lib(tree));
    let reader = ModuleReader::new(&built.input, opts.limits.max_module_size);
    for path in &built.modules {
        for name in reader.module_meta(path).firmware {
            if firmware::locate(tree, &roots, &built.kernel_version, &name).is_empty() {
                problems.insert(Problem::FirmwareMissing {
                    module: shown(path),
                    firmware: lossy(&name),
                });
            }
        }
    }
}

/// Every index file `build` writes must be there, byte for byte.
fn index_files(built: &Built, base: &[u8], fresh: &[IndexFile], problems: &mut BTreeSet<Problem>) {
    let tree = built.input.tree();
    for file in fresh {
        let path = join(&[base, file.name.as_bytes()]);
        let shown = lossy(&path);
        match tree.read(&path) {
            Err(_) => problems.insert(Problem::IndexMissing { file: shown }),
            Ok(bytes) if *bytes != *file.bytes => {
                problems.insert(Problem::IndexStale { file: shown })
            }
            Ok(_) => false,
        };
    }
}
