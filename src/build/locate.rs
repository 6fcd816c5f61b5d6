//! Finding the module directory and kernel version to index.

use std::path::{Path, PathBuf};

use crate::layout::MODULE_DIRS;
use crate::source::{EntryKind, Tree};

/// The kernel found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The module directory, such as `lib/modules`.
    pub module_dir: String,
    /// The kernel version.
    pub kernel_version: String,
}

/// Why no single kernel was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocateError {
    /// No kernel at all.
    #[error("{}: no kernel module directory found (looked for {})", input.display(), looked_for(dirs, "<version>", " and "))]
    NoKernel {
        /// The input.
        input: PathBuf,
        /// The module directories looked in.
        dirs: Vec<String>,
    },
    /// Not the kernel asked for.
    #[error("{}: no {} directory for kernel version {version}; {}", input.display(), looked_for(dirs, version, " or "), found_list(found))]
    NoSuchVersion {
        /// The input.
        input: PathBuf,
        /// The version asked for.
        version: String,
        /// The module directories looked in.
        dirs: Vec<String>,
        /// The kernels there are, as `module_dir/version`.
        found: Vec<String>,
    },
    /// Several kernels and none chosen.
    #[error("{}: several kernels found; pick one with --kernel-version (and --module-dir if needed):\n{}", input.display(), found.iter().map(|f| format!("  {f}")).collect::<Vec<_>>().join("\n"))]
    SeveralKernels {
        /// The input.
        input: PathBuf,
        /// The kernels there are, as `module_dir/version`.
        found: Vec<String>,
    },
}

fn looked_for(dirs: &[String], version: &str, sep: &str) -> String {
    dirs.iter()
        .map(|d| format!("{d}/{version}"))
        .collect::<Vec<_>>()
        .join(sep)
}

fn found_list(found: &[String]) -> String {
    if found.is_empty() {
        "no kernel versions were found there".to_string()
    } else {
        format!("found: {}", found.join(", "))
    }
}

/// Finds the module directory and kernel version to index in `tree` (the
/// input called `input` in messages): `module_dir` or, when `None`,
/// `lib/modules` and `usr/lib/modules` (only the latter on a merged-/usr
/// tree, where `lib` links to `usr/lib`); then `version`, or the only
/// kernel there is.
pub fn locate(
    tree: &dyn Tree,
    input: &Path,
    module_dir: Option<&str>,
    version: Option<&str>,
) -> Result<Located, LocateError> {
    let dirs: Vec<String> = match module_dir {
        Some(dir) => vec![dir.trim_matches('/').to_string()],
        None => MODULE_DIRS
            .iter()
            .filter(|d| !(**d == MODULE_DIRS[0] && lib_is_usr_lib(tree)))
            .map(|d| d.to_string())
            .collect(),
    };
    let mut all: Vec<Located> = Vec::new();
    for dir in &dirs {
        let Ok(entries) = tree.read_dir(dir.as_bytes()) else {
            continue;
        };
        for entry in entries.iter().filter(|e| e.kind == EntryKind::Dir) {
            all.push(Located {
                module_dir: dir.clone(),
                kernel_version: String::from_utf8_lossy(&entry.name).into_owned(),
            });
        }
    }
    let shown = |l: &Located| format!("{}/{}", l.module_dir, l.kernel_version);
    let mut chosen: Vec<Located> = all
        .iter()
        .filter(|l| version.is_none_or(|v| v == l.kernel_version))
        .cloned()
        .collect();
    match (chosen.len(), version) {
        (1, _) => Ok(chosen.remove(0)),
        (0, Some(v)) => Err(LocateError::NoSuchVersion {
            input: input.to_path_buf(),
            version: v.to_string(),
            dirs,
            found: all.iter().map(shown).collect(),
        }),
        (0, None) => Err(LocateError::NoKernel {
            input: input.to_path_buf(),
            dirs,
        }),
        _ => Err(LocateError::SeveralKernels {
            input: input.to_path_buf(),
            found: chosen.iter().map(shown).collect(),
        }),
    }
}

/// On a merged-/usr tree, `lib` is a symlink to `usr/lib`, and modules
/// belong under `usr/lib/modules`.
pub fn lib_is_usr_lib(tree: &dyn Tree) -> bool {
    tree.link_target(b"lib").is_some_and(|t| {
        matches!(
            t.as_slice(),
            b"usr/lib" | b"/usr/lib" | b"usr/lib/" | b"/usr/lib/" | b"./usr/lib"
        )
    })
}
