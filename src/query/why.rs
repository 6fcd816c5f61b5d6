//! `query why MODULE DEP`: every dependency path from one module to
//! another, and the symbols that make each step a dependency.
//!
//! An edge `A -> B` exists when A needs a symbol that `modules.symbols`
//! says B exports, which is how depmod derives `modules.dep`. The symbols
//! a module needs are read from its file in the image.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;

use super::Image;

/// Why `module` depends on `dependency`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Why {
    /// The depending module.
    pub module: Vec<u8>,
    /// The module depended on.
    pub dependency: Vec<u8>,
    /// Each path lists module names from `module` to `dependency`; shortest
    /// first, then in name order.
    pub paths: Vec<Vec<Vec<u8>>>,
    /// More paths exist than were asked for.
    pub truncated: bool,
    /// The edges on the listed paths, by name.
    pub edges: Vec<Edge>,
}

/// One direct dependency and the symbols behind it, in the order the
/// depending module imports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    /// The depending module.
    pub from: Vec<u8>,
    /// The module it needs.
    pub to: Vec<u8>,
    /// The symbols it needs from it.
    pub symbols: Vec<Vec<u8>>,
}

/// Why the question cannot be answered.
#[derive(Debug, thiserror::Error)]
pub enum WhyError {
    /// A name that `modules.dep.bin` does not know (the name, the module
    /// directory).
    #[error("module {0} is not in {1}/modules.dep.bin")]
    UnknownModule(String, String),
    /// A module whose file is not in the image.
    #[error("{0}: the module file is not in the image, so the symbols it needs are unknown")]
    NoModuleFile(String),
}

/// A module depended on, with the symbols that make it so.
type Target = (Vec<u8>, Vec<Vec<u8>>);

/// Finds the dependency paths from `module` to `dependency`, listing at
/// most `max_paths` of them.
pub fn why(
    image: &Image,
    module: &[u8],
    dependency: &[u8],
    max_paths: usize,
) -> Result<Why, WhyError> {
    let unknown = |name: &[u8]| {
        WhyError::UnknownModule(
            String::from_utf8_lossy(name).into_owned(),
            String::from_utf8_lossy(image.dirname()).into_owned(),
        )
    };
    let root = image.module(module).ok_or_else(|| unknown(module))?;
    let target = image
        .module(dependency)
        .ok_or_else(|| unknown(dependency))?;
    let mut result = Why {
        module: root.name.clone(),
        dependency: target.name.clone(),
        paths: Vec::new(),
        truncated: false,
        edges: Vec::new(),
    };
    if root.name == target.name {
        result.paths.push(vec![root.name]);
        return Ok(result);
    }
    // The modules that can lie on a path: the root and its dependencies.
    let mut closure: Vec<Vec<u8>> = vec![root.name.clone()];
    closure.extend(root.dep_names());
    if !closure.contains(&target.name) {
        return Ok(result);
    }
    let members: HashSet<&[u8]> = closure.iter().map(Vec::as_slice).collect();

    // Direct edges inside the closure, with their symbols.
    let mut edges: HashMap<Vec<u8>, Vec<Target>> = HashMap::new();
    for name in &closure {
        let meta = image
            .module_meta(name)
            .ok_or_else(|| WhyError::NoModuleFile(String::from_utf8_lossy(name).into_owned()))?;
        let mut out: Vec<Target> = Vec::new();
        for import in meta.imports.iter().flat_map(|i| i.iter()) {
            let symbol = import.name.strip_prefix(b".").unwrap_or(import.name);
            let Some(owner) = image.symbol_owner(symbol) else {
                continue;
            };
            if owner == *name || !members.contains(owner.as_slice()) {
                continue;
            }
            match out.iter_mut().find(|(to, _)| *to == owner) {
                Some((_, symbols)) => {
                    if !symbols.iter().any(|s| s == symbol) {
                        symbols.push(symbol.to_vec());
                    }
                }
                None => out.push((owner, vec![symbol.to_vec()])),
            }
        }
        edges.insert(name.clone(), out);
    }

    // Modules from which the target can be reached (the target included).
    let mut reaches: HashSet<Vec<u8>> = HashSet::from([target.name.clone()]);
    loop {
        let before = reaches.len();
        for (from, tos) in &edges {
            if !reaches.contains(from) && tos.iter().any(|(to, _)| reaches.contains(to)) {
                reaches.insert(from.clone());
            }
        }
        if reaches.len() == before {
            break;
        }
    }

    // Depth-first enumeration of simple paths, pruned to edges that lead
    // to the target, so each branch ends in a path.
    let mut path = vec![root.name.clone()];
    let mut next_edge = vec![0usize];
    let no_edges = Vec::new();
    while let Some(&at) = next_edge.last() {
        let here = path.last().cloned().unwrap_or_default();
        let tos = edges.get(&here).unwrap_or(&no_edges);
        let Some((to, _)) = tos.get(at) else {
            path.pop();
            next_edge.pop();
            continue;
        };
        if let Some(i) = next_edge.last_mut() {
            *i += 1;
        }
        if !reaches.contains(to) || path.contains(to) {
            continue;
        }
        if *to == target.name {
            if result.paths.len() == max_paths {
                result.truncated = true;
                break;
            }
            let mut found = path.clone();
            found.push(to.clone());
            result.paths.push(found);
            continue;
        }
        path.push(to.clone());
        next_edge.push(0);
    }
    result
        .paths
        .sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));

    let used: BTreeSet<(&[u8], &[u8])> = result
        .paths
        .iter()
        .flat_map(|p| p.windows(2).map(|w| (w[0].as_slice(), w[1].as_slice())))
        .collect();
    let mut listed: BTreeMap<super::Pair, Vec<Vec<u8>>> = BTreeMap::new();
    for (from, to) in used {
        let symbols = edges
            .get(from)
            .and_then(|tos| tos.iter().find(|(t, _)| t == to))
            .map(|(_, s)| s.clone())
            .unwrap_or_default();
        listed.insert((from.to_vec(), to.to_vec()), symbols);
    }
    result.edges = listed
        .into_iter()
        .map(|((from, to), symbols)| Edge { from, to, symbols })
        .collect();
    Ok(result)
}

impl Why {
    /// The answer as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        serde_json::json!({
            "module": text(&self.module),
            "dependency": text(&self.dependency),
            "paths": self.paths.iter().map(|p| p.iter().map(|m| text(m)).collect::<Vec<_>>()).collect::<Vec<_>>(),
            "truncated": self.truncated,
            "edges": self.edges.iter().map(|e| serde_json::json!({
                "from": text(&e.from),
                "to": text(&e.to),
                "symbols": e.symbols.iter().map(|s| text(s)).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })
    }
}

impl fmt::Display for Why {
    /// `N path(s) from A to B:`, one indented line per path, then
    /// `symbols:` with one line per edge (`A -> B: sym sym ...`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let (module, dependency) = (text(&self.module), text(&self.dependency));
        if self.paths.is_empty() {
            return writeln!(f, "{module} does not depend on {dependency}");
        }
        let count = self.paths.len();
        let noun = if count == 1 { "path" } else { "paths" };
        writeln!(f, "{count} {noun} from {module} to {dependency}:")?;
        for path in &self.paths {
            let names: Vec<String> = path.iter().map(|m| text(m)).collect();
            writeln!(f, "  {}", names.join(" -> "))?;
        }
        if self.truncated {
            writeln!(f, "  (more paths not listed; raise --max-paths)")?;
        }
        if !self.edges.is_empty() {
            writeln!(f, "symbols:")?;
            for e in &self.edges {
                let symbols: Vec<String> = e.symbols.iter().map(|s| text(s)).collect();
                writeln!(
                    f,
                    "  {} -> {}: {}",
                    text(&e.from),
                    text(&e.to),
                    symbols.join(" ")
                )?;
            }
        }
        Ok(())
    }
}
