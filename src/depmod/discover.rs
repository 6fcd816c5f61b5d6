//! Module discovery: walk the module directory (and `external` directories)
//! and keep one file per module name, by kmod's priority rules.

use std::io;

use foldhash::{HashMap, HashMapExt};

use super::config::{Config, Search};
use crate::diag::{lossy, Diagnostic, Kind};
use crate::layout::{is_module_file, modname, PATH_MAX, SKIPPED_NAMES};
use crate::source::{join, EntryKind, Tree};

/// Where the module directory is, in the tree and in kmod's eyes.
#[derive(Debug, Clone)]
pub struct ModuleDir {
    /// Path inside the tree, such as `lib/modules/6.1.0`.
    pub tree_path: Vec<u8>,
    /// The absolute path kmod would use, such as `/lib/modules/6.1.0`. It
    /// decides the paths written to modules.dep for modules outside the
    /// module directory and feeds the priority rules.
    pub kmod_path: Vec<u8>,
}

/// A module file that won its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Module name: the file name up to its first `.`, with `-` as `_`.
    pub name: Vec<u8>,
    /// Absolute path as kmod spells it.
    pub kmod_path: Vec<u8>,
    /// Path relative to the module directory, when the file is inside it.
    pub relpath: Option<Vec<u8>>,
    /// Where to read the file in the tree.
    pub tree_path: Vec<u8>,
}

/// One thing a module-directory walk meets.
#[derive(Debug)]
pub enum Walked<'p> {
    /// A module file.
    Module {
        /// Its file name.
        file_name: &'p [u8],
        /// Its path in the tree.
        tree_path: Vec<u8>,
        /// Its path as kmod spells it.
        kmod_path: Vec<u8>,
    },
    /// A directory that could not be listed.
    Unreadable {
        /// The directory, in the tree.
        tree_dir: &'p [u8],
        /// Why.
        error: io::Error,
    },
    /// An entry whose path reaches `PATH_MAX`; it is not followed (this
    /// also ends walks round symlink loops).
    TooLong {
        /// Its path as kmod spells it.
        kmod_path: Vec<u8>,
    },
    /// An entry that is neither a file nor a directory.
    Special {
        /// Its path as kmod spells it.
        kmod_path: Vec<u8>,
    },
}

/// Walks the directory `tree_dir` as depmod walks a module directory:
/// entries in byte order of their names, `build` and `source` (links to
/// the kernel's build tree) and names `skip` accepts left out, directories
/// (and symlinks to them) descended, files with a module extension
/// reported. `kmod_dir` is the directory as kmod spells it. `visit` returns
/// `false` to end the walk; so does this function then.
pub fn walk_modules(
    tree: &dyn Tree,
    tree_dir: &[u8],
    kmod_dir: &[u8],
    skip: &dyn Fn(&[u8]) -> bool,
    visit: &mut dyn FnMut(Walked<'_>) -> bool,
) -> bool {
    let entries = match tree.read_dir(tree_dir) {
        Ok(entries) => entries,
        Err(error) => return visit(Walked::Unreadable { tree_dir, error }),
    };
    for entry in &entries {
        let name = entry.name.as_slice();
        if matches!(name, b"." | b"..") || SKIPPED_NAMES.contains(&name) || skip(name) {
            continue;
        }
        let tree_path = join(&[tree_dir, name]);
        let kmod_path = [kmod_dir, b"/", name].concat();
        let go_on = if kmod_path.len() >= PATH_MAX {
            visit(Walked::TooLong { kmod_path })
        } else {
            match entry.kind {
                EntryKind::Dir => walk_modules(tree, &tree_path, &kmod_path, skip, visit),
                EntryKind::File if is_module_file(name) => visit(Walked::Module {
                    file_name: name,
                    tree_path,
                    kmod_path,
                }),
                EntryKind::File => true,
                EntryKind::Other => visit(Walked::Special { kmod_path }),
            }
        };
        if !go_on {
            return false;
        }
    }
    true
}

struct Walker<'a> {
    tree: &'a dyn Tree,
    cfg: &'a Config,
    dir: &'a ModuleDir,
    found: Vec<Option<Found>>,
    by_name: HashMap<Vec<u8>, usize>,
    diags: &'a mut Vec<Diagnostic>,
}

/// Finds every module, in kmod's search order: the module directory, then
/// each `external` directory. Directory entries are visited in byte order of
/// their names, which decides between two equally ranked copies of a module
/// (kmod keeps whichever its `readdir` returned first).
pub fn discover(
    tree: &dyn Tree,
    dir: &ModuleDir,
    cfg: &Config,
    external_tree_path: impl Fn(&[u8]) -> Option<Vec<u8>>,
    diags: &mut Vec<Diagnostic>,
) -> Result<Vec<Found>, Diagnostic> {
    let mut walker = Walker {
        tree,
        cfg,
        dir,
        found: Vec::new(),
        by_name: HashMap::new(),
        diags,
    };
    if let Err(e) = tree.read_dir(&dir.tree_path) {
        return Err(Diagnostic::error(Kind::DirUnreadable {
            path: tree.display(&dir.tree_path),
            reason: crate::util::io_reason(&e),
        }));
    }
    walker.walk(&dir.tree_path, &dir.kmod_path);
    for ext in &cfg.externals {
        match external_tree_path(ext) {
            Some(tree_path) if tree.kind(&tree_path) == Some(EntryKind::Dir) => {
                walker.walk(&tree_path, ext);
            }
            // kmod ignores external directories that do not exist.
            _ => {}
        }
    }
    Ok(walker.found.into_iter().flatten().collect())
}

impl Walker<'_> {
    fn walk(&mut self, tree_dir: &[u8], kmod_dir: &[u8]) {
        let (tree, cfg) = (self.tree, self.cfg);
        let excluded = |name: &[u8]| cfg.excludes.iter().any(|e| e == name);
        walk_modules(tree, tree_dir, kmod_dir, &excluded, &mut |walked| {
            match walked {
                Walked::Module {
                    file_name,
                    tree_path,
                    kmod_path,
                } => self.add(file_name, tree_path, kmod_path),
                Walked::Unreadable { tree_dir, error } => {
                    self.diags.push(Diagnostic::error(Kind::DirUnreadable {
                        path: tree.display(tree_dir),
                        reason: crate::util::io_reason(&error),
                    }))
                }
                Walked::TooLong { kmod_path } => {
                    self.diags.push(Diagnostic::error(Kind::PathTooLong {
                        path: lossy(&kmod_path),
                    }))
                }
                Walked::Special { kmod_path } => {
                    self.diags
                        .push(Diagnostic::error(Kind::UnsupportedFileType {
                            path: lossy(&kmod_path),
                        }))
                }
            }
            true
        });
    }

    fn add(&mut self, file_name: &[u8], tree_path: Vec<u8>, kmod_path: Vec<u8>) {
        let name = modname(file_name);
        let dirname = &self.dir.kmod_path;
        let relpath = (kmod_path.starts_with(dirname)
            && kmod_path.get(dirname.len()) == Some(&b'/'))
        .then(|| kmod_path[dirname.len() + 1..].to_vec());
        let candidate = Found {
            name: name.clone(),
            kmod_path,
            relpath,
            tree_path,
        };
        if let Some(&slot) = self.by_name.get(&name) {
            let existing = self.found[slot].as_ref().expect("indexed slots are filled");
            if existing_wins(self.cfg, dirname, existing, &candidate) {
                return;
            }
            self.found[slot] = None;
        }
        self.by_name.insert(name, self.found.len());
        self.found.push(Some(candidate));
    }
}

/// Path of a module up to the end of its name stem (no extension): what
/// kmod compares against `search`, `override` and `external` entries.
fn stem_path(m: &Found) -> &[u8] {
    let file_start = m
        .kmod_path
        .iter()
        .rposition(|&b| b == b'/')
        .map_or(0, |i| i + 1);
    &m.kmod_path[..file_start + m.name.len()]
}

/// Whether the module already found beats `new`, following kmod's rules:
/// `override` first, then the position in the `search` list (later entries in
/// kmod's prepended list rank higher). Ties keep the existing module.
fn existing_wins(cfg: &Config, dirname: &[u8], existing: &Found, new: &Found) -> bool {
    let new_path = stem_path(new);
    let old_path = stem_path(existing);
    let relative = |p: &'_ [u8]| -> Option<Vec<u8>> {
        // kmod only compares the prefix bytes here, without a '/' boundary.
        (p.starts_with(dirname) && p.len() > dirname.len()).then(|| p[dirname.len() + 1..].to_vec())
    };
    let rel_new = relative(new_path);
    let rel_old = relative(old_path);

    for ov in &cfg.overrides {
        if rel_new.as_deref() == Some(ov.as_slice()) {
            return false;
        }
        if rel_old.as_deref() == Some(ov.as_slice()) {
            return true;
        }
    }

    let under = |rel: &Option<Vec<u8>>, dir: &[u8]| {
        rel.as_ref()
            .is_some_and(|r| r.len() > dir.len() && r[dir.len()] == b'/' && r.starts_with(dir))
    };
    let abs_under = |path: &[u8], dir: &[u8]| {
        path.len() > dir.len() && path[dir.len()] == b'/' && path.starts_with(dir)
    };

    let (mut builtin, mut old_prio, mut new_prio) = (-1i64, -1i64, -1i64);
    let mut i = 0i64;
    for search in &cfg.searches {
        match search {
            Search::BuiltIn => builtin = i,
            Search::External => {
                for ext in &cfg.externals {
                    if abs_under(new_path, ext) {
                        new_prio = i;
                    }
                    if abs_under(old_path, ext) {
                        old_prio = i;
                    }
                    i += 1;
                }
            }
            // kmod tests the new path first and the old one only if the new
            // one did not match this entry.
            Search::Path(dir) => {
                if under(&rel_new, dir) {
                    new_prio = i;
                } else if under(&rel_old, dir) {
                    old_prio = i;
                }
            }
        }
        i += 1;
    }
    if new_prio < 0 {
        new_prio = builtin;
    }
    if old_prio < 0 {
        old_prio = builtin;
    }
    new_prio <= old_prio
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(path: &str) -> Found {
        let file = path.rsplit('/').next().unwrap();
        Found {
            name: modname(file.as_bytes()),
            kmod_path: path.as_bytes().to_vec(),
            relpath: None,
            tree_path: Vec::new(),
        }
    }

    #[test]
    fn updates_beats_kernel_by_default() {
        let cfg = Config::default().with_defaults();
        let d = b"/lib/modules/1.0";
        let kernel = found("/lib/modules/1.0/kernel/a/foo.ko");
        let updates = found("/lib/modules/1.0/updates/foo.ko");
        assert!(!existing_wins(&cfg, d, &kernel, &updates));
        assert!(existing_wins(&cfg, d, &updates, &kernel));
        // Two equally ranked copies: the first one found stays.
        let other = found("/lib/modules/1.0/kernel/b/foo.ko");
        assert!(existing_wins(&cfg, d, &kernel, &other));
    }

    #[test]
    fn override_wins_over_search() {
        let mut cfg = Config::default().with_defaults();
        cfg.overrides.push(b"kernel/a/foo".to_vec());
        let d = b"/lib/modules/1.0";
        let kernel = found("/lib/modules/1.0/kernel/a/foo.ko");
        let updates = found("/lib/modules/1.0/updates/foo.ko");
        assert!(existing_wins(&cfg, d, &kernel, &updates));
    }
}
