//! Dependency resolution: the symbol table, who needs whom, kmod's
//! topological order, and its dependency-cycle report.

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use std::collections::VecDeque;

use super::hash_order::{sort_in_hash_order, SYMBOL_BUCKETS};
use crate::diag::{lossy, Diagnostic, Kind};
use crate::module::ModuleMeta;

/// A module ready for resolution, already in output order.
#[derive(Debug, Clone)]
pub struct LoadedModule {
    /// Module name.
    pub name: Vec<u8>,
    /// The path used in messages.
    pub display_path: String,
    /// What its file holds.
    pub meta: ModuleMeta,
}

/// Symbol options (`-P`, `-E`/`-F`, `-e`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SymbolOptions {
    /// A prefix byte stripped from symbol names (`-P`); 0 when unset.
    pub prefix: u8,
    /// Compare CRCs against the kernel's (`-E Module.symvers`).
    pub check_crcs: bool,
    /// Warn about unknown symbols and CRC mismatches (`-e`).
    pub report: bool,
    /// Record each dependency found as a verbose message (kmod's `-v`
    /// lines "needs SYMBOL from PROVIDER"): one per edge, so only when
    /// someone prints them.
    pub needs: bool,
}

/// A kernel-provided symbol, from Module.symvers or System.map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelSymbol {
    /// Symbol name.
    pub name: Vec<u8>,
    /// CRC (0 from System.map).
    pub crc: u64,
    /// Fake symbols are added with kmod's prefix already removed.
    pub prefix_removed: bool,
}

struct SymbolEntry {
    owner: Option<usize>,
    crc: u64,
}

/// The result of resolution, naming symbols by the modules' (and the
/// kernel's) own copies of their names.
pub struct Resolution<'a> {
    /// Owned symbols in kmod's hash-table order: `(name, owner)`.
    pub symbols: Vec<(&'a [u8], usize)>,
    /// For each module, all its (transitive) dependencies, in load order.
    pub dependencies: Vec<Vec<usize>>,
}

/// Resolution failed because modules depend on each other in a loop.
#[derive(Debug)]
pub struct CycleError {
    /// kmod's report lines, to print as errors.
    pub report: Vec<Diagnostic>,
}

/// Every module's direct dependencies (the modules whose exports it uses),
/// as [`resolve`] finds them, without the load order, cycle check or any
/// report. Kernel symbols are not needed: a symbol a module exports wins
/// over the kernel's, and one only the kernel exports makes no dependency.
pub fn direct_graph(modules: &[LoadedModule], prefix: u8) -> Vec<Vec<usize>> {
    let quiet = SymbolOptions {
        prefix,
        ..SymbolOptions::default()
    };
    let mut ignored = Vec::new();
    let symbols = build_symbol_table(modules, None, quiet, &mut ignored);
    direct_dependencies(modules, &symbols, quiet, &mut ignored)
}

/// Builds the symbol table, every module's dependencies and their load order; reports unknown symbols and CRC mismatches as `opts` asks, and fails with kmod's report on a cycle.
pub fn resolve<'a>(
    modules: &'a [LoadedModule],
    kernel: Option<&'a [KernelSymbol]>,
    opts: SymbolOptions,
    diags: &mut Vec<Diagnostic>,
) -> Result<Resolution<'a>, CycleError> {
    let table = SymbolTable::build(modules, kernel, opts, diags);
    let dependencies = dependencies(modules, &table, opts, diags)?;
    Ok(Resolution {
        symbols: table.owned(),
        dependencies,
    })
}

/// Every symbol of a run and who exports it, the first step of
/// [`resolve`]: enough for `modules.symbols`, so the caller can render
/// that while [`dependencies`] runs.
pub struct SymbolTable<'a> {
    table: HashMap<&'a [u8], SymbolEntry>,
}

impl<'a> SymbolTable<'a> {
    /// The table of the kernel's symbols and the modules' exports (see
    /// [`resolve`]); reports modules whose exports cannot be read.
    pub fn build(
        modules: &'a [LoadedModule],
        kernel: Option<&'a [KernelSymbol]>,
        opts: SymbolOptions,
        diags: &mut Vec<Diagnostic>,
    ) -> Self {
        SymbolTable {
            table: build_symbol_table(modules, kernel, opts, diags),
        }
    }

    /// The symbols modules export, with their owners, in kmod's hash-table
    /// order ([`Resolution::symbols`]).
    pub fn owned(&self) -> Vec<(&'a [u8], usize)> {
        let owned: Vec<(&[u8], usize)> = self
            .table
            .iter()
            .filter_map(|(&name, entry)| entry.owner.map(|o| (name, o)))
            .collect();
        sort_in_hash_order(owned, SYMBOL_BUCKETS, |entry| entry.0)
    }
}

/// For each module, all its (transitive) dependencies in load order
/// ([`Resolution::dependencies`]), the rest of [`resolve`] after the symbol
/// table: reports unknown symbols and CRC mismatches as `opts` asks, and
/// fails with kmod's report on a cycle.
pub fn dependencies(
    modules: &[LoadedModule],
    table: &SymbolTable<'_>,
    opts: SymbolOptions,
    diags: &mut Vec<Diagnostic>,
) -> Result<Vec<Vec<usize>>, CycleError> {
    let direct = direct_dependencies(modules, &table.table, opts, diags);
    let load_rank = topological_rank(&direct).map_err(|remaining| CycleError {
        report: report_cycles(modules, &direct, &remaining),
    })?;
    Ok((0..modules.len())
        .map(|m| {
            let mut all = closure(m, &direct);
            all.sort_by_key(|&d| load_rank[d]);
            all
        })
        .collect())
}

/// kmod adds symbols in order and a later one replaces an earlier one of the
/// same name: kernel symbols first, then each module's exports.
fn build_symbol_table<'a>(
    modules: &'a [LoadedModule],
    kernel: Option<&'a [KernelSymbol]>,
    opts: SymbolOptions,
    diags: &mut Vec<Diagnostic>,
) -> HashMap<&'a [u8], SymbolEntry> {
    let mut table = HashMap::new();
    let unowned = |crc| SymbolEntry { owner: None, crc };
    if let Some(kernel) = kernel {
        for sym in kernel {
            let name = if sym.prefix_removed {
                sym.name.as_slice()
            } else {
                strip_prefix(&sym.name, None, opts.prefix)
            };
            table.insert(name, unowned(sym.crc));
        }
        // Symbols the kernel's loader provides without exporting them; kmod
        // adds these whenever it loaded kernel symbols.
        table.insert(b"__this_module", unowned(0));
        table.insert(b"_GLOBAL_OFFSET_TABLE_", unowned(0));
        if lookup(&table, b"TOC.", opts.prefix).is_none() {
            table.insert(b"TOC.", unowned(0));
        }
    }
    for (idx, module) in modules.iter().enumerate() {
        match &module.meta.exports {
            Some(Ok(exports)) => {
                for e in exports {
                    let name = strip_prefix(&e.name, e.name_after_empty.as_deref(), opts.prefix);
                    table.insert(
                        name,
                        SymbolEntry {
                            owner: Some(idx),
                            crc: e.crc,
                        },
                    );
                }
            }
            Some(Err(crate::module::LoadError::Elf(crate::module::elf::ElfError::NoData)))
            | None => {}
            Some(Err(e)) => diags.push(Diagnostic::error(Kind::UnreadableModule {
                module: module.display_path.clone(),
                reason: e.to_string(),
            })),
        }
    }
    table
}

/// Strips the `-P` prefix byte. With no prefix set (0), kmod still "strips"
/// the NUL of an empty name and so reads the string stored after it.
fn strip_prefix<'a>(name: &'a [u8], after_empty: Option<&'a [u8]>, prefix: u8) -> &'a [u8] {
    match name.first() {
        Some(&first) if first == prefix => &name[1..],
        None if prefix == 0 => after_empty.unwrap_or_default(),
        _ => name,
    }
}

/// kmod's symbol lookup: a leading `.` (ppc64 function descriptors: `.foo`
/// is `foo`), then the `-P` prefix byte, are ignored.
fn lookup<'t>(
    table: &'t HashMap<&[u8], SymbolEntry>,
    name: &[u8],
    prefix: u8,
) -> Option<&'t SymbolEntry> {
    let name = name.strip_prefix(b".").unwrap_or(name);
    let name = match name.first() {
        Some(&first) if first == prefix => &name[1..],
        _ => name,
    };
    table.get(name)
}

fn lookup_entry<'t>(
    table: &'t HashMap<&[u8], SymbolEntry>,
    name: &[u8],
    prefix: u8,
) -> Option<(&'t [u8], &'t SymbolEntry)> {
    let entry = lookup(table, name, prefix)?;
    let name = name.strip_prefix(b".").unwrap_or(name);
    let key = match name.first() {
        Some(&first) if first == prefix => &name[1..],
        _ => name,
    };
    table.get_key_value(key).map(|(k, _)| (*k, entry))
}

/// Each module's direct dependencies, unique, in first-reference order.
fn direct_dependencies(
    modules: &[LoadedModule],
    symbols: &HashMap<&[u8], SymbolEntry>,
    opts: SymbolOptions,
    diags: &mut Vec<Diagnostic>,
) -> Vec<Vec<usize>> {
    modules
        .iter()
        .map(|module| {
            let mut deps: Vec<usize> = Vec::new();
            for import in module.meta.imports.iter().flat_map(|i| i.iter()) {
                let symbol = || lossy(import.name);
                let Some((key, sym)) = lookup_entry(symbols, import.name, opts.prefix) else {
                    if opts.report && !import.weak {
                        diags.push(Diagnostic::warning(Kind::UnknownSymbol {
                            module: module.display_path.clone(),
                            symbol: symbol(),
                        }));
                    }
                    continue;
                };
                if opts.check_crcs && sym.crc != import.crc && !import.weak && opts.report {
                    diags.push(Diagnostic::warning(Kind::CrcMismatch {
                        module: module.display_path.clone(),
                        symbol: symbol(),
                        expected: sym.crc,
                        found: import.crc,
                    }));
                }
                if let Some(owner) = sym.owner {
                    if !deps.contains(&owner) {
                        deps.push(owner);
                        if opts.needs {
                            diags.push(Diagnostic::verbose(Kind::Needs {
                                module: module.display_path.clone(),
                                symbol: lossy(key),
                                provider: modules[owner].display_path.clone(),
                            }));
                        }
                    }
                }
            }
            deps
        })
        .collect()
}

/// kmod's topological sort: a stack of modules nobody needs, seeded in
/// module order. Returns each module's rank (modules needed by others get
/// higher ranks), or on a cycle the count of remaining users per module.
fn topological_rank(direct: &[Vec<usize>]) -> Result<Vec<usize>, Vec<usize>> {
    let n = direct.len();
    let mut users = vec![0usize; n];
    for deps in direct {
        for &d in deps {
            users[d] += 1;
        }
    }
    let mut stack: Vec<usize> = (0..n).filter(|&i| users[i] == 0).collect();
    let mut rank = vec![usize::MAX; n];
    let mut sorted = 0;
    while let Some(src) = stack.pop() {
        rank[src] = sorted;
        sorted += 1;
        for &dst in &direct[src] {
            users[dst] -= 1;
            if users[dst] == 0 {
                stack.push(dst);
            }
        }
    }
    if sorted < n {
        Err(users)
    } else {
        Ok(rank)
    }
}

fn closure(module: usize, direct: &[Vec<usize>]) -> Vec<usize> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut todo: Vec<usize> = direct[module].iter().rev().copied().collect();
    while let Some(m) = todo.pop() {
        if seen.insert(m) {
            out.push(m);
            todo.extend(direct[m].iter().rev());
        }
    }
    out
}

/// The modules a cycle report still has to start from: kmod's circular
/// `kmod_list`, front first.
struct Roots(VecDeque<usize>);

impl Roots {
    /// `kmod_list_remove_data`: it unlinks the node and returns the node
    /// that followed it as the list's new head, so removing anything but
    /// the head also rotates the list. This decides which module the next
    /// cycle report starts from (kmod's `detect-loop` scenario shows it).
    fn remove(&mut self, module: usize) {
        if let Some(at) = self.0.iter().position(|&r| r == module) {
            self.0.remove(at);
            if !self.0.is_empty() {
                let len = self.0.len();
                self.0.rotate_left(at % len);
            }
        }
    }
}

/// Reproduces kmod's cycle report: a depth-first walk from each module left
/// over by the topological sort, printing every path that returns to its
/// starting module, then the number of distinct modules on those paths.
fn report_cycles(
    modules: &[LoadedModule],
    direct: &[Vec<usize>],
    users: &[usize],
) -> Vec<Diagnostic> {
    struct Vertex {
        module: usize,
        parent: Option<usize>,
        depth: usize,
    }
    let n = modules.len();
    let name = |m: usize| String::from_utf8_lossy(&modules[m].name).into_owned();
    let mut roots = Roots((0..n).filter(|&i| users[i] > 0).collect());
    let stack_capacity = roots.0.len();
    let mut visited = vec![false; n];
    let mut in_cycles: HashSet<usize> = HashSet::new();
    let mut report = Vec::new();

    while let Some(root) = roots.0.pop_front() {
        let mut vertices = vec![Vertex {
            module: root,
            parent: None,
            depth: 0,
        }];
        let mut stack = vec![0usize];
        while let Some(v) = stack.pop() {
            let m = vertices[v].module;
            if visited[m] && m == root {
                let mut path = Vec::new();
                let mut p = vertices[v].parent;
                while let Some(pv) = p {
                    path.push(vertices[pv].module);
                    in_cycles.insert(vertices[pv].module);
                    p = vertices[pv].parent;
                }
                path.reverse();
                for &pm in &path {
                    roots.remove(pm);
                }
                let mut line: Vec<String> = path.iter().map(|&pm| name(pm)).collect();
                line.push(name(m));
                report.push(Diagnostic::error(Kind::Cycle { modules: line }));
                continue;
            }
            visited[m] = true;
            if direct[m].is_empty() {
                roots.remove(m);
                continue;
            }
            // kmod would overflow its fixed stack here (an assertion aborts
            // it), or walk a loop that excludes the root forever; stop with
            // an explanation instead.
            if stack.len() + direct[m].len() > stack_capacity || vertices[v].depth > n {
                report.push(Diagnostic::error(Kind::CyclesTooTangled {
                    module: name(m),
                }));
                return report;
            }
            for &dep in &direct[m] {
                vertices.push(Vertex {
                    module: dep,
                    parent: Some(v),
                    depth: vertices[v].depth + 1,
                });
                stack.push(vertices.len() - 1);
            }
        }
    }
    report.push(Diagnostic::error(Kind::CycleCount {
        count: in_cycles.len(),
    }));
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modules(names: &[&str]) -> Vec<LoadedModule> {
        names
            .iter()
            .map(|n| LoadedModule {
                name: n.as_bytes().to_vec(),
                display_path: format!("/{n}.ko"),
                meta: ModuleMeta::default(),
            })
            .collect()
    }

    fn report(names: &[&str], direct: &[Vec<usize>]) -> Vec<String> {
        let users = topological_rank(direct).expect_err("graph has a cycle");
        report_cycles(&modules(names), direct, &users)
            .into_iter()
            .map(|d| d.to_string())
            .collect()
    }

    #[test]
    fn simple_cycle_is_reported_as_kmod_does() {
        // a -> b -> c -> a, and d needs a.
        let direct = vec![vec![1], vec![2], vec![0], vec![0]];
        assert_eq!(
            report(&["a", "b", "c", "d"], &direct),
            [
                "Cycle detected: a -> b -> c -> a",
                "Found 3 modules in dependency cycles!"
            ]
        );
    }

    #[test]
    fn a_walk_kmod_never_finishes_stops_with_an_explanation() {
        // a <-> b, both need r; r needs c, and c <-> d. From r, kmod's walk
        // goes round c <-> d for ever; kmodidx must stop.
        let direct = vec![vec![1, 2], vec![0], vec![3], vec![4], vec![3]];
        // (kmod's walk from a reaches r, then c, and loops there before it
        // has printed anything.)
        let lines = report(&["a", "b", "r", "c", "d"], &direct);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("too tangled"), "{lines:?}");
        assert!(lines[0].ends_with("include c"), "{lines:?}");
    }

    #[test]
    fn removing_a_root_makes_its_successor_the_head() {
        // kmod_list_remove_data returns the removed node's successor.
        let mut roots = Roots([1, 2, 3, 4].into());
        roots.remove(3);
        assert_eq!(Vec::from(roots.0.clone()), [4, 1, 2]);
        roots.remove(2);
        assert_eq!(Vec::from(roots.0.clone()), [4, 1]);
        roots.remove(9);
        assert_eq!(Vec::from(roots.0.clone()), [4, 1]);
        roots.remove(4);
        roots.remove(1);
        assert!(roots.0.is_empty());
    }

    #[test]
    fn topological_rank_orders_providers_after_users() {
        // 0 needs 1, 1 needs 2.
        let rank = topological_rank(&[vec![1], vec![2], vec![]]).unwrap();
        assert!(rank[0] < rank[1] && rank[1] < rank[2]);
    }

    /// A module exporting `exports` (`(name, string after an empty name)`)
    /// and needing `imports` (`(name, weak)`).
    fn module(
        name: &str,
        exports: &[(&str, Option<&str>)],
        imports: &[(&str, bool)],
    ) -> LoadedModule {
        let mut needs = crate::module::Imports::default();
        for &(symbol, weak) in imports {
            needs.push(symbol.as_bytes(), 0, weak);
        }
        LoadedModule {
            name: name.as_bytes().to_vec(),
            display_path: format!("/{name}.ko"),
            meta: ModuleMeta {
                exports: Some(Ok(exports
                    .iter()
                    .map(|&(export, after)| crate::module::Export {
                        name: export.as_bytes().to_vec(),
                        crc: 0,
                        name_after_empty: after.map(|a| a.as_bytes().to_vec()),
                    })
                    .collect())),
                imports: Some(needs),
                ..ModuleMeta::default()
            },
        }
    }

    /// Each module's dependencies by name, and the owned symbols by name.
    fn resolved(modules: &[LoadedModule], prefix: u8) -> (Vec<Vec<String>>, Vec<(String, String)>) {
        let opts = SymbolOptions {
            prefix,
            ..SymbolOptions::default()
        };
        let r = resolve(modules, None, opts, &mut Vec::new()).expect("no cycle");
        let name = |m: usize| String::from_utf8_lossy(&modules[m].name).into_owned();
        let deps = r
            .dependencies
            .iter()
            .map(|d| d.iter().map(|&m| name(m)).collect())
            .collect();
        let symbols = r
            .symbols
            .iter()
            .map(|(s, m)| (String::from_utf8_lossy(s).into_owned(), name(*m)))
            .collect();
        (deps, symbols)
    }

    #[test]
    fn an_empty_export_name_stands_for_the_string_after_it() {
        // kmod "strips" its NUL symbol prefix from an empty `__crc_` name
        // and so adds the next string of .strtab as the export.
        let modules = [
            module("provider", &[("", Some("hidden"))], &[]),
            module("user", &[], &[("hidden", false)]),
        ];
        let (deps, symbols) = resolved(&modules, 0);
        assert_eq!(deps, [vec![], vec!["provider".to_string()]]);
        assert_eq!(symbols, [("hidden".to_string(), "provider".to_string())]);

        // With a real prefix (-P) the empty name stays empty.
        let (deps, symbols) = resolved(&modules, b'_');
        assert_eq!(deps, [Vec::<String>::new(), vec![]]);
        assert_eq!(symbols, [(String::new(), "provider".to_string())]);
    }

    #[test]
    fn ppc64_dot_imports_find_undotted_exports() {
        let modules = [
            module("provider", &[("foo", None)], &[]),
            module("user", &[], &[(".foo", false)]),
        ];
        let (deps, _) = resolved(&modules, 0);
        assert_eq!(deps[1], ["provider"]);
    }

    #[test]
    fn the_symbol_prefix_is_dropped_from_exports_and_imports() {
        let modules = [
            module("provider", &[("_bar", None)], &[]),
            module("prefixed", &[], &[("_bar", false)]),
            module("dotted", &[], &[("._bar", false)]),
            module("bare", &[], &[("bar", false)]),
            module("other", &[], &[("__bar", false)]),
        ];
        let (deps, symbols) = resolved(&modules, b'_');
        assert_eq!(symbols, [("bar".to_string(), "provider".to_string())]);
        for user in 1..4 {
            assert_eq!(deps[user], ["provider"], "{}", modules[user].display_path);
        }
        // Only one prefix byte goes.
        assert!(deps[4].is_empty());
        // Without -P nothing is stripped but the dot.
        let (deps, _) = resolved(&modules, 0);
        assert_eq!(deps[1], ["provider"]);
        assert_eq!(deps[2], ["provider"]);
        assert!(deps[3].is_empty() && deps[4].is_empty());
    }

    #[test]
    fn the_last_module_to_export_a_symbol_owns_it() {
        let modules = [
            module("first", &[("shared", None)], &[]),
            module("second", &[("shared", None)], &[]),
            module("user", &[], &[("shared", true)]),
        ];
        let (deps, symbols) = resolved(&modules, 0);
        // A weak import of an existing export is still a dependency.
        assert_eq!(deps[2], ["second"]);
        assert_eq!(symbols, [("shared".to_string(), "second".to_string())]);
    }
}
