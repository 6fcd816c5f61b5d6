//! Closures: the modules an image needs for a chosen set of root modules.
//!
//! An initramfs or a vendor_boot image holds a few chosen modules (the
//! roots) plus everything they pull in. This module computes that set over a
//! typed module graph, as a pure function of the graph and the SPECs:
//!
//! * the roots, each a module name or an alias resolved as modprobe resolves
//!   it (by a [`Lookup`]);
//! * their hard dependencies (depmod's symbol resolution);
//! * every softdep `pre:` and `post:` target and *its* closure, and every
//!   weakdep and its closure, each target resolved as modprobe resolves
//!   softdep names (a target may be an alias, and may match several
//!   modules);
//! * built-in modules satisfy a root or a target and are not copied.
//!
//! `--exclude` SPECs remove modules: the walk never enters them, so what only
//! they pulled in goes too, and every edge from a kept module into an
//! excluded one is reported. [`load_order`] orders a closure for
//! `modules.load`.
//!
//! One difference from modprobe, on purpose: kmod uses only the *first*
//! softdep line that matches a module (`kmod_module_get_softdeps` stops at
//! the first match), so of btrfs's four `softdep=pre: ...` modinfo entries
//! modprobe honours one. A closure takes every target of every softdep
//! line, a superset of what modprobe loads, which is what an image that
//! must boot needs.

pub mod firmware;
pub mod order;

use std::collections::{BTreeMap, BTreeSet};

use crate::diag::{Diagnostic, Edge, Kind};
use crate::index::files::IndexFile;

pub use order::load_order;

/// One module of the graph. Indexes into the graph's module list identify
/// modules; the list is in depmod's output order (`modules.order` first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    /// Module name, as depmod spells it (`_`, never `-`).
    pub name: Vec<u8>,
    /// Direct hard dependencies (modules whose symbols this one uses).
    pub deps: Vec<usize>,
    /// The module's soft dependencies.
    pub softdeps: Softdeps,
    /// Weak dependency targets (names or aliases), from `weakdep=`.
    pub weakdeps: Vec<Vec<u8>>,
}

/// Softdep targets, names or aliases to look up, from `softdep=` modinfo
/// entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Softdeps {
    /// Loaded before the module.
    pub pre: Vec<Vec<u8>>,
    /// Loaded after the module.
    pub post: Vec<Vec<u8>>,
}

/// Weakdep targets from every `weakdep=` value of a module (kmod splits a
/// `weakdep MOD ...` line into whitespace-separated names).
pub fn weakdeps_from_modinfo<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Vec<Vec<u8>> {
    values
        .into_iter()
        .flat_map(|v| v.split(|b| b.is_ascii_whitespace()))
        .filter(|w| !w.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// What a name or alias resolves to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// A module of the graph.
    Module(usize),
    /// A module built into the kernel, by name: satisfied, nothing to copy.
    Builtin(Vec<u8>),
}

/// Resolves a SPEC (a module name or an alias) to modules, as modprobe's
/// lookup does. An empty answer means the SPEC matches nothing.
pub trait Lookup {
    /// Every module `spec` resolves to, in the resolver's order.
    fn lookup(&self, spec: &[u8]) -> Vec<Target>;
}

/// A whole kernel's index, in memory, as a [`Resolver`] sees it.
pub struct KernelIndex<'a> {
    /// The module directory inside the tree, such as `lib/modules`.
    pub module_dir: &'a str,
    /// The kernel version.
    pub version: &'a str,
    /// Every index file of the whole kernel.
    pub files: &'a [IndexFile],
    /// The module names, in the graph's order ([`Target::Module`] indexes
    /// into this).
    pub names: &'a [Vec<u8>],
}

/// What a [`Resolver`] makes of a kernel: SPEC lookup, and every module's
/// softdeps as modprobe reads them from `modules.softdep`.
pub struct Resolved<'a> {
    /// Resolves SPECs and softdep and weakdep targets.
    pub lookup: Box<dyn Lookup + 'a>,
    /// Each module's softdeps (in the order of [`KernelIndex::names`]),
    /// every matching softdep line taken.
    pub softdeps: Vec<Softdeps>,
}

/// Builds the [`Lookup`] of a kernel from its index: modprobe's view of the
/// kernel installed. The build pipeline sits below the code that
/// reproduces modprobe (`crate::query`), so the caller hands one in.
pub trait Resolver: Send + Sync {
    /// The lookup for `index`, or why the index cannot be read.
    fn resolve<'a>(&self, index: &KernelIndex<'a>) -> Result<Resolved<'a>, String>;
}

/// Which SPECs to close over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// The roots (`--modules`).
    pub roots: Vec<String>,
    /// Modules to leave out, with what only they pull in (`--exclude`).
    pub exclude: Vec<String>,
    /// Roots allowed to match nothing (`--allow-missing`), compared with
    /// `-` and `_` equal.
    pub allow_missing: Vec<String>,
}

/// The closure could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClosureError {
    /// The kernel's index could not be read to resolve SPECs.
    #[error("cannot resolve --modules SPECs: {0}")]
    Resolver(String),
    /// Roots that match nothing, not allowed by `--allow-missing`.
    #[error("--modules: no module matches {}", .specs.join(", "))]
    NoMatch {
        /// The SPECs, in the order given.
        specs: Vec<String>,
    },
}

/// A computed closure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Closure {
    /// The modules to ship, by graph index, ascending (depmod's order).
    pub modules: Vec<usize>,
    /// Built-in modules that satisfied a root or a target, sorted.
    pub builtin: Vec<Vec<u8>>,
    /// What each root resolved to, in the order given (duplicates removed).
    pub roots: Vec<(String, Vec<Target>)>,
    /// Warnings (a root allowed to be missing, what `--exclude` broke),
    /// sorted and without repeats.
    pub notes: Vec<Diagnostic>,
}

fn same_name(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .all(|(x, y)| x == y || (matches!(x, b'-' | b'_') && matches!(y, b'-' | b'_')))
}

/// Caches lookups: a target named by many modules is resolved once.
struct Cached<'a> {
    lookup: &'a dyn Lookup,
    seen: BTreeMap<Vec<u8>, Vec<Target>>,
}

impl Cached<'_> {
    fn get(&mut self, spec: &[u8]) -> &[Target] {
        let lookup = self.lookup;
        self.seen
            .entry(spec.to_vec())
            .or_insert_with(|| lookup.lookup(spec))
    }
}

/// Computes the closure of `selection` over `graph`.
pub fn compute(
    graph: &[Node],
    lookup: &dyn Lookup,
    selection: &Selection,
) -> Result<Closure, ClosureError> {
    let mut cache = Cached {
        lookup,
        seen: BTreeMap::new(),
    };
    let mut notes: Vec<Kind> = Vec::new();

    let mut excluded = BTreeSet::new();
    for spec in dedup(&selection.exclude) {
        let targets = cache.get(spec.as_bytes());
        let modules: Vec<usize> = targets
            .iter()
            .filter_map(|t| match t {
                Target::Module(m) => Some(*m),
                Target::Builtin(_) => None,
            })
            .collect();
        if modules.is_empty() {
            notes.push(Kind::ExcludeMatchedNothing { spec: spec.clone() });
        }
        excluded.extend(modules);
    }

    let mut roots = Vec::new();
    let mut missing = Vec::new();
    for spec in dedup(&selection.roots) {
        let targets = cache.get(spec.as_bytes()).to_vec();
        if targets.is_empty() {
            if selection.allow_missing.iter().any(|a| same_name(a, spec)) {
                notes.push(Kind::SpecMissingAllowed { spec: spec.clone() });
            } else {
                missing.push(spec.clone());
            }
        }
        roots.push((spec.clone(), targets));
    }
    if !missing.is_empty() {
        return Err(ClosureError::NoMatch { specs: missing });
    }

    let mut kept = BTreeSet::new();
    let mut builtin = BTreeSet::new();
    let mut queue: Vec<usize> = Vec::new();
    for (spec, targets) in &roots {
        for t in targets {
            match t {
                Target::Builtin(name) => {
                    builtin.insert(name.clone());
                }
                Target::Module(m) if excluded.contains(m) => {
                    notes.push(Kind::RootExcluded {
                        spec: spec.clone(),
                        module: text(&graph[*m].name),
                    });
                }
                Target::Module(m) => {
                    if kept.insert(*m) {
                        queue.push(*m);
                    }
                }
            }
        }
    }

    while let Some(m) = queue.pop() {
        let node = &graph[m];
        let mut wanted: Vec<(Target, Edge)> = node
            .deps
            .iter()
            .map(|&d| (Target::Module(d), Edge::Dependency))
            .collect();
        let named = [
            (&node.softdeps.pre, Edge::SoftPre),
            (&node.softdeps.post, Edge::SoftPost),
            (&node.weakdeps, Edge::Weak),
        ];
        for (list, edge) in named {
            for target in list {
                wanted.extend(cache.get(target).iter().map(|t| (t.clone(), edge)));
            }
        }
        for (target, edge) in wanted {
            match target {
                Target::Builtin(name) => {
                    builtin.insert(name);
                }
                Target::Module(d) if excluded.contains(&d) => {
                    notes.push(Kind::ExclusionBroke {
                        module: text(&node.name),
                        wants: text(&graph[d].name),
                        edge,
                    });
                }
                Target::Module(d) => {
                    if kept.insert(d) {
                        queue.push(d);
                    }
                }
            }
        }
    }

    Ok(Closure {
        modules: kept.into_iter().collect(),
        builtin: builtin.into_iter().collect(),
        roots,
        notes: sorted_warnings(notes),
    })
}

/// Warnings in a fixed order (by their text), each once: the order in
/// which the walk met them depends on the order of the roots.
fn sorted_warnings(kinds: Vec<Kind>) -> Vec<Diagnostic> {
    let mut notes: Vec<(String, Kind)> = kinds.into_iter().map(|k| (k.to_string(), k)).collect();
    notes.sort_by(|a, b| a.0.cmp(&b.0));
    notes.dedup_by(|a, b| a.0 == b.0);
    notes
        .into_iter()
        .map(|(_, k)| Diagnostic::warning(k))
        .collect()
}

/// The SPECs in the order given, each once.
fn dedup(specs: &[String]) -> Vec<&String> {
    let mut seen = BTreeSet::new();
    specs.iter().filter(|s| seen.insert(s.as_str())).collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Why a SPEC list could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SpecListError {
    /// An `@FILE` that could not be read.
    #[error("{}: {}", path.display(), crate::util::io_reason(source))]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// An empty SPEC (`--modules ''`, or `a,,b`).
    #[error("{option}: an empty SPEC in {value:?}")]
    Empty {
        /// The option (`--modules`).
        option: String,
        /// The value given.
        value: String,
    },
}

/// Expands the values of a SPEC option (`--modules`, `--exclude`): each
/// value is a comma-separated list of SPECs, or `@FILE`, a file with one
/// SPEC per line where `#` starts a comment and blank lines are skipped.
pub fn expand_specs(option: &str, values: &[String]) -> Result<Vec<String>, SpecListError> {
    let mut out = Vec::new();
    for value in values {
        if let Some(path) = value.strip_prefix('@') {
            // A SPEC list is a short text file: refuse devices such as
            // /dev/zero and anything larger than 16 MiB.
            const MAX_SPEC_FILE: u64 = 16 << 20;
            let bytes =
                crate::source::dir::read_host_file(std::path::Path::new(path), MAX_SPEC_FILE)
                    .map_err(|source| SpecListError::Read {
                        path: path.into(),
                        source,
                    })?;
            out.extend(parse_spec_file(&String::from_utf8_lossy(&bytes)));
            continue;
        }
        for spec in value.split(',') {
            let spec = spec.trim();
            if spec.is_empty() {
                return Err(SpecListError::Empty {
                    option: option.to_string(),
                    value: value.clone(),
                });
            }
            out.push(spec.to_string());
        }
    }
    Ok(out)
}

/// The SPECs of an `@FILE`: one per line, `#` to the end of a line is a
/// comment, surrounding blanks are ignored.
pub fn parse_spec_file(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lookup for tests: names (with `-` and `_` equal) and exact aliases.
    struct Names<'a> {
        graph: &'a [Node],
        aliases: &'a [(&'a str, Target)],
    }

    impl Lookup for Names<'_> {
        fn lookup(&self, spec: &[u8]) -> Vec<Target> {
            let norm: Vec<u8> = spec
                .iter()
                .map(|&b| if b == b'-' { b'_' } else { b })
                .collect();
            if let Some(i) = self.graph.iter().position(|n| n.name == norm) {
                return vec![Target::Module(i)];
            }
            self.aliases
                .iter()
                .filter(|(a, _)| a.as_bytes() == spec)
                .map(|(_, t)| t.clone())
                .collect()
        }
    }

    fn node(name: &str, deps: &[usize]) -> Node {
        Node {
            name: name.as_bytes().to_vec(),
            deps: deps.to_vec(),
            ..Node::default()
        }
    }

    fn sel(roots: &[&str]) -> Selection {
        Selection {
            roots: roots.iter().map(|s| s.to_string()).collect(),
            ..Selection::default()
        }
    }

    fn names(graph: &[Node], c: &Closure) -> Vec<String> {
        c.modules.iter().map(|&m| text(&graph[m].name)).collect()
    }

    #[test]
    fn weakdep_words() {
        assert_eq!(
            weakdeps_from_modinfo([b"x y".as_slice(), b" z"]),
            [b"x".to_vec(), b"y".to_vec(), b"z".to_vec()]
        );
    }

    #[test]
    fn hard_dependencies_and_unrelated_modules() {
        let g = [
            node("a", &[1]),
            node("b", &[2]),
            node("c", &[]),
            node("d", &[]),
        ];
        let l = Names {
            graph: &g,
            aliases: &[],
        };
        let c = compute(&g, &l, &sel(&["a"])).unwrap();
        assert_eq!(names(&g, &c), ["a", "b", "c"]);
        assert!(c.notes.is_empty());
    }

    #[test]
    fn softdep_targets_and_their_closures_by_alias() {
        let mut g = vec![
            node("btrfs", &[1]),
            node("libcrc", &[]),
            node("crc_intel", &[3]),
            node("helper", &[]),
            node("post_mod", &[]),
            node("weak_mod", &[6]),
            node("weak_dep", &[]),
            node("unrelated", &[]),
        ];
        g[0].softdeps = Softdeps {
            pre: vec![b"crypto-crc".to_vec()],
            post: vec![b"post-mod".to_vec()],
        };
        g[1].weakdeps = vec![b"weak_mod".to_vec()];
        let aliases = [
            ("crypto-crc", Target::Module(2)),
            ("crypto-crc", Target::Builtin(b"crc_generic".to_vec())),
        ];
        let l = Names {
            graph: &g,
            aliases: &aliases,
        };
        let c = compute(&g, &l, &sel(&["btrfs"])).unwrap();
        assert_eq!(
            names(&g, &c),
            [
                "btrfs",
                "libcrc",
                "crc_intel",
                "helper",
                "post_mod",
                "weak_mod",
                "weak_dep"
            ]
        );
        assert_eq!(c.builtin, [b"crc_generic".to_vec()]);
    }

    #[test]
    fn builtin_roots_are_satisfied_and_not_copied() {
        let g = [node("a", &[])];
        let aliases = [("fs-ext4", Target::Builtin(b"ext4".to_vec()))];
        let l = Names {
            graph: &g,
            aliases: &aliases,
        };
        let c = compute(&g, &l, &sel(&["fs-ext4"])).unwrap();
        assert!(c.modules.is_empty());
        assert_eq!(c.builtin, [b"ext4".to_vec()]);
    }

    #[test]
    fn specs_that_match_nothing_are_errors_unless_allowed() {
        let g = [node("a_b", &[])];
        let l = Names {
            graph: &g,
            aliases: &[],
        };
        let err = compute(&g, &l, &sel(&["a-b", "nope", "gone_too"])).unwrap_err();
        assert_eq!(
            err,
            ClosureError::NoMatch {
                specs: vec!["nope".into(), "gone_too".into()]
            }
        );
        assert_eq!(
            err.to_string(),
            "--modules: no module matches nope, gone_too"
        );
        let mut s = sel(&["a-b", "nope", "gone_too"]);
        s.allow_missing = vec!["nope".into(), "gone-too".into()];
        let c = compute(&g, &l, &s).unwrap();
        assert_eq!(names(&g, &c), ["a_b"]);
        assert_eq!(
            c.notes,
            [
                Diagnostic::warning(Kind::SpecMissingAllowed {
                    spec: "gone_too".into()
                }),
                Diagnostic::warning(Kind::SpecMissingAllowed {
                    spec: "nope".into()
                }),
            ]
        );
    }

    #[test]
    fn exclusion_drops_what_only_it_pulled_in_and_reports_breakage() {
        // a -> b -> c; a -> d -> c; b's softdep pre: e; f softdep post: b
        let mut g = vec![
            node("a", &[1, 3]),
            node("b", &[2]),
            node("c", &[]),
            node("d", &[2]),
            node("e", &[]),
            node("f", &[]),
        ];
        g[1].softdeps.pre = vec![b"e".to_vec()];
        g[5].softdeps.post = vec![b"b".to_vec()];
        let l = Names {
            graph: &g,
            aliases: &[],
        };
        let mut s = sel(&["a", "f", "b"]);
        s.exclude = vec!["b".into(), "zzz".into()];
        let c = compute(&g, &l, &s).unwrap();
        // e was pulled in only by b and goes with it; c stays (d needs it).
        assert_eq!(names(&g, &c), ["a", "c", "d", "f"]);
        let kinds: Vec<Kind> = c.notes.iter().map(|d| d.kind.clone()).collect();
        assert_eq!(
            kinds,
            [
                Kind::ExcludeMatchedNothing { spec: "zzz".into() },
                Kind::RootExcluded {
                    spec: "b".into(),
                    module: "b".into()
                },
                Kind::ExclusionBroke {
                    module: "a".into(),
                    wants: "b".into(),
                    edge: Edge::Dependency
                },
                Kind::ExclusionBroke {
                    module: "f".into(),
                    wants: "b".into(),
                    edge: Edge::SoftPost
                },
            ]
        );
        assert_eq!(
            c.notes[2].to_string(),
            "a needs b, which --exclude removed: a will not load"
        );
    }

    #[test]
    fn closure_is_independent_of_root_order_and_repeats() {
        let g = [node("a", &[2]), node("b", &[2]), node("c", &[])];
        let l = Names {
            graph: &g,
            aliases: &[],
        };
        let one = compute(&g, &l, &sel(&["a", "b"])).unwrap();
        let two = compute(&g, &l, &sel(&["b", "a", "b"])).unwrap();
        assert_eq!(one.modules, two.modules);
        assert_eq!(two.roots.len(), 2);
    }

    #[test]
    fn spec_lists() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("list");
        std::fs::write(&file, "# initramfs\nvirtio_blk  # disk\n\n  fs-vfat\n").unwrap();
        let got = expand_specs(
            "--modules",
            &["a,b".into(), format!("@{}", file.display()), "c".into()],
        )
        .unwrap();
        assert_eq!(got, ["a", "b", "virtio_blk", "fs-vfat", "c"]);
        assert!(matches!(
            expand_specs("--modules", &["a,,b".into()]),
            Err(SpecListError::Empty { .. })
        ));
        let err = expand_specs("--modules", &["@/nonexistent/list".into()]).unwrap_err();
        assert!(err.to_string().starts_with("/nonexistent/list: "), "{err}");
    }
}
