//! Module discovery: walk the module directory (and `external` directories)
//! and keep one file per module name, by kmod's priority rules.

use std::io;

use foldhash::{HashMap, HashMapExt};

use super::config::{Config, Search};
use crate::diag::{lossy, Diagnostic, Kind};
use crate::layout::{is_module_file, modname, PATH_MAX, SKIPPED_NAMES};
use crate::source::{join, DirId, EntryKind, Tree};

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
        /// Its file name.
        file_name: &'p [u8],
        /// Its path as kmod spells it.
        kmod_path: Vec<u8>,
    },
    /// A directory (reached through a symlink) that the walk has already
    /// searched: it is not searched again, so that symlink loops end and
    /// links to the same directory do not multiply its modules.
    Revisit {
        /// The link's path as kmod spells it.
        kmod_path: Vec<u8>,
        /// The path the directory was searched by.
        first: Vec<u8>,
    },
}

/// Walks the directory `tree_dir` as depmod walks a module directory:
/// entries in byte order of their names, `build` and `source` (links to
/// the kernel's build tree) and names `skip` accepts left out, directories
/// (and symlinks to them) descended, files with a module extension
/// reported. Each directory is searched once, however many links lead to
/// it (the first path in that order searches it). `kmod_dir` is the
/// directory as kmod spells it. `visit` returns `false` to end the walk; so
/// does this function then.
pub fn walk_modules(
    tree: &dyn Tree,
    tree_dir: &[u8],
    kmod_dir: &[u8],
    skip: &dyn Fn(&[u8]) -> bool,
    visit: &mut dyn FnMut(Walked<'_>) -> bool,
) -> bool {
    let mut seen = HashMap::new();
    walk_from(tree, tree_dir, kmod_dir, skip, visit, &mut seen)
}

fn walk_from(
    tree: &dyn Tree,
    tree_dir: &[u8],
    kmod_dir: &[u8],
    skip: &dyn Fn(&[u8]) -> bool,
    visit: &mut dyn FnMut(Walked<'_>) -> bool,
    seen: &mut HashMap<DirId, Vec<u8>>,
) -> bool {
    if let Some(id) = tree.dir_id(tree_dir) {
        if let Some(first) = seen.get(&id) {
            return visit(Walked::Revisit {
                kmod_path: kmod_dir.to_vec(),
                first: first.clone(),
            });
        }
        seen.insert(id, kmod_dir.to_vec());
    }
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
                EntryKind::Dir => walk_from(tree, &tree_path, &kmod_path, skip, visit, seen),
                EntryKind::File if is_module_file(name) => visit(Walked::Module {
                    file_name: name,
                    tree_path,
                    kmod_path,
                }),
                EntryKind::File => true,
                EntryKind::Other => visit(Walked::Special {
                    file_name: name,
                    kmod_path,
                }),
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
    ranks: Ranks,
    dir: &'a ModuleDir,
    found: Vec<Option<Found>>,
    by_name: HashMap<Vec<u8>, usize>,
    diags: &'a mut Vec<Diagnostic>,
    on_module: &'a mut dyn FnMut(&[u8]),
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
    discover_with(tree, dir, cfg, external_tree_path, diags, &mut |_| {})
}

/// [`discover`], calling `on_module` with the tree path of each module file
/// as the walk meets it, so that a caller can start reading it at once. A
/// file may be met and then lose to a better-ranked copy of its module.
pub fn discover_with(
    tree: &dyn Tree,
    dir: &ModuleDir,
    cfg: &Config,
    external_tree_path: impl Fn(&[u8]) -> Option<Vec<u8>>,
    diags: &mut Vec<Diagnostic>,
    on_module: &mut dyn FnMut(&[u8]),
) -> Result<Vec<Found>, Diagnostic> {
    let mut walker = Walker {
        tree,
        ranks: Ranks::new(cfg),
        dir,
        found: Vec::new(),
        by_name: HashMap::new(),
        diags,
        on_module,
    };
    if let Err(e) = tree.read_dir(&dir.tree_path) {
        return Err(Diagnostic::error(Kind::DirUnreadable {
            path: tree.display(&dir.tree_path),
            reason: crate::util::io_reason(&e),
        }));
    }
    walker.walk(&dir.tree_path, &dir.kmod_path);
    // kmod's list of external directories is the file order reversed.
    for ext in cfg.externals.iter().rev() {
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
        let tree = self.tree;
        let excludes = &self.ranks.excludes;
        let excluded = |name: &[u8]| excludes.contains(name);
        let diags = &mut *self.diags;
        let on_module = &mut *self.on_module;
        let mut modules = Vec::new();
        walk_modules(tree, tree_dir, kmod_dir, &excluded, &mut |walked| {
            match walked {
                Walked::Module {
                    file_name,
                    tree_path,
                    kmod_path,
                } => {
                    on_module(&tree_path);
                    modules.push((file_name.to_vec(), tree_path, kmod_path))
                }
                Walked::Unreadable { tree_dir, error } => {
                    diags.push(Diagnostic::error(Kind::DirUnreadable {
                        path: tree.display(tree_dir),
                        reason: crate::util::io_reason(&error),
                    }))
                }
                Walked::TooLong { kmod_path } => diags.push(Diagnostic::error(Kind::PathTooLong {
                    path: lossy(&kmod_path),
                })),
                Walked::Special {
                    file_name,
                    kmod_path,
                } => diags.push(Diagnostic::error(Kind::UnsupportedFileType {
                    path: lossy(&kmod_path),
                    // A module name on a dangling link or a special file: a
                    // module that cannot be read.
                    module: is_module_file(file_name),
                })),
                Walked::Revisit { kmod_path, first } => {
                    diags.push(Diagnostic::warning(Kind::LinkNotFollowed {
                        path: lossy(&kmod_path),
                        first: lossy(&first),
                    }))
                }
            }
            true
        });
        for (file_name, tree_path, kmod_path) in modules {
            self.add(&file_name, tree_path, kmod_path);
        }
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
            if self.ranks.existing_wins(dirname, existing, &candidate) {
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

/// The configuration as lookups, so that comparing two copies of a module
/// costs the depth of their paths, not the length of the `search` list.
struct Ranks {
    /// Position in kmod's (prepended) search list of each `search`
    /// directory.
    dirs: HashMap<Vec<u8>, i64>,
    /// Position of `built-in`, or -1.
    builtin: i64,
    /// Position of each external directory, counted through the `external`
    /// search entry as kmod counts it.
    externals: HashMap<Vec<u8>, i64>,
    /// Each `override`, with the position of its last occurrence in the
    /// files (the first in kmod's list).
    overrides: HashMap<Vec<u8>, usize>,
    /// `exclude` names.
    excludes: foldhash::HashSet<Vec<u8>>,
}

impl Ranks {
    fn new(cfg: &Config) -> Self {
        let mut ranks = Ranks {
            dirs: HashMap::new(),
            builtin: -1,
            externals: HashMap::new(),
            overrides: HashMap::new(),
            excludes: cfg.excludes.iter().cloned().collect(),
        };
        // kmod's loop over its list, which is the file order reversed; a
        // later position replaces an earlier one, as it does there.
        let mut i = 0i64;
        for search in cfg.searches.iter().rev() {
            match search {
                Search::BuiltIn => ranks.builtin = i,
                Search::External => {
                    for ext in cfg.externals.iter().rev() {
                        ranks.externals.insert(ext.clone(), i);
                        i += 1;
                    }
                }
                Search::Path(dir) => {
                    ranks.dirs.insert(dir.clone(), i);
                }
            }
            i += 1;
        }
        for (at, ov) in cfg.overrides.iter().enumerate() {
            ranks.overrides.insert(ov.clone(), at);
        }
        ranks
    }

    /// Whether the module already found beats `new`, following kmod's rules:
    /// `override` first, then the position in the `search` list (later
    /// entries in kmod's prepended list rank higher). Ties keep the existing
    /// module.
    fn existing_wins(&self, dirname: &[u8], existing: &Found, new: &Found) -> bool {
        let new_path = stem_path(new);
        let old_path = stem_path(existing);
        let relative = |p: &'_ [u8]| -> Option<Vec<u8>> {
            // kmod only compares the prefix bytes here, without a '/' boundary.
            (p.starts_with(dirname) && p.len() > dirname.len())
                .then(|| p[dirname.len() + 1..].to_vec())
        };
        let rel_new = relative(new_path);
        let rel_old = relative(old_path);

        let ov = |rel: &Option<Vec<u8>>| rel.as_ref().and_then(|r| self.overrides.get(r));
        match (ov(&rel_new), ov(&rel_old)) {
            (Some(n), Some(o)) => return n < o,
            (Some(_), None) => return false,
            (None, Some(_)) => return true,
            (None, None) => {}
        }

        // kmod tests the new path against each search directory first, and
        // the old one only if the new one did not match that directory.
        let rel_new = rel_new.as_deref().unwrap_or_default();
        let rel_old = rel_old.as_deref().unwrap_or_default();
        let mut new_prio = -1i64;
        let mut old_prio = -1i64;
        for dir in dir_prefixes(rel_new) {
            if let Some(&rank) = self.dirs.get(dir) {
                new_prio = new_prio.max(rank);
            }
        }
        for dir in dir_prefixes(rel_old) {
            if let Some(&rank) = self.dirs.get(dir) {
                if !dir_prefixes(rel_new).any(|d| d == dir) {
                    old_prio = old_prio.max(rank);
                }
            }
        }
        for ext in dir_prefixes(new_path) {
            if let Some(&rank) = self.externals.get(ext) {
                new_prio = new_prio.max(rank);
            }
        }
        for ext in dir_prefixes(old_path) {
            if let Some(&rank) = self.externals.get(ext) {
                old_prio = old_prio.max(rank);
            }
        }
        if new_prio < 0 {
            new_prio = self.builtin;
        }
        if old_prio < 0 {
            old_prio = self.builtin;
        }
        new_prio <= old_prio
    }
}

/// Every `d` such that `path` lies under the directory `d`: the bytes
/// before each `/` of `path`.
fn dir_prefixes(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.iter()
        .enumerate()
        .filter(|(_, &b)| b == b'/')
        .map(move |(at, _)| &path[..at])
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

    fn existing_wins(cfg: &Config, dirname: &[u8], existing: &Found, new: &Found) -> bool {
        Ranks::new(cfg).existing_wins(dirname, existing, new)
    }

    /// kmod's comparison, literally: its prepended lists (duplicates
    /// included) walked front to back for every comparison.
    fn kmod_existing_wins(
        searches: &[Search],
        overrides: &[Vec<u8>],
        externals: &[Vec<u8>],
        dirname: &[u8],
        existing: &Found,
        new: &Found,
    ) -> bool {
        let new_path = stem_path(new);
        let old_path = stem_path(existing);
        let rel = |p: &[u8]| {
            (p.starts_with(dirname) && p.len() > dirname.len())
                .then(|| p[dirname.len() + 1..].to_vec())
        };
        let (rel_new, rel_old) = (rel(new_path), rel(old_path));
        for ov in overrides {
            if rel_new.as_ref() == Some(ov) {
                return false;
            }
            if rel_old.as_ref() == Some(ov) {
                return true;
            }
        }
        let under = |r: &Option<Vec<u8>>, d: &[u8]| {
            r.as_ref()
                .is_some_and(|r| r.len() > d.len() && r[d.len()] == b'/' && r.starts_with(d))
        };
        let abs_under =
            |p: &[u8], d: &[u8]| p.len() > d.len() && p[d.len()] == b'/' && p.starts_with(d);
        let (mut builtin, mut old_prio, mut new_prio) = (-1i64, -1i64, -1i64);
        let mut i = 0i64;
        for search in searches {
            match search {
                Search::BuiltIn => builtin = i,
                Search::External => {
                    for ext in externals {
                        if abs_under(new_path, ext) {
                            new_prio = i;
                        }
                        if abs_under(old_path, ext) {
                            old_prio = i;
                        }
                        i += 1;
                    }
                }
                Search::Path(d) => {
                    if under(&rel_new, d) {
                        new_prio = i;
                    } else if under(&rel_old, d) {
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

    #[test]
    fn ranks_agree_with_kmods_list_walk() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let words = [
            "updates", "extra", "kernel", "kernel/a", "built-in", "external", "a", "extra/b",
        ];
        let dirs = [
            "/opt/x",
            "/lib/modules/1.0/extra",
            "/opt",
            "/lib/modules/1.0",
        ];
        let paths = [
            "/lib/modules/1.0/kernel/a/foo.ko",
            "/lib/modules/1.0/updates/foo.ko",
            "/lib/modules/1.0/extra/foo.ko",
            "/lib/modules/1.0/extra/b/foo.ko",
            "/lib/modules/1.0/a/foo.ko",
            "/opt/x/foo.ko",
            "/opt/foo.ko",
            "/lib/modules/1.0x/foo.ko",
        ];
        let d = b"/lib/modules/1.0";
        for _ in 0..3000 {
            let mut text = String::new();
            let (mut searches, mut overrides, mut externals) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..next(6) {
                match next(3) {
                    0 => {
                        text.push_str("search");
                        for _ in 0..1 + next(4) {
                            let w = words[next(words.len() as u64) as usize];
                            text.push_str(&format!(" {w}"));
                            searches.insert(
                                0,
                                match w {
                                    "built-in" => Search::BuiltIn,
                                    "external" => Search::External,
                                    p => Search::Path(p.as_bytes().to_vec()),
                                },
                            );
                        }
                        text.push('\n');
                    }
                    1 => {
                        let sub = ["kernel/a", "updates", "extra", "a"][next(4) as usize];
                        text.push_str(&format!("override foo * {sub}\n"));
                        overrides.insert(0, format!("{sub}/foo").into_bytes());
                    }
                    _ => {
                        let dir = dirs[next(dirs.len() as u64) as usize];
                        text.push_str(&format!("external * {dir}\n"));
                        externals.insert(0, dir.as_bytes().to_vec());
                    }
                }
            }
            let mut cfg = Config::default();
            cfg.parse_file("t.conf", text.as_bytes(), b"1.0", &mut Vec::new())
                .unwrap();
            let cfg = cfg.with_defaults();
            if searches.is_empty() {
                searches.push(Search::Path(b"updates".to_vec()));
            }
            let ranks = Ranks::new(&cfg);
            for a in paths {
                for b in paths {
                    let (a, b) = (found(a), found(b));
                    assert_eq!(
                        ranks.existing_wins(d, &a, &b),
                        kmod_existing_wins(&searches, &overrides, &externals, d, &a, &b),
                        "{text}{a:?} vs {b:?}"
                    );
                }
            }
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
