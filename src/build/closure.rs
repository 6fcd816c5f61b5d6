//! The closure stage of a build (`--modules`): the whole kernel is loaded
//! and indexed in memory, the closure is computed over that graph, and
//! depmod's resolution and rendering run again over the closure's modules
//! alone, as depmod would over the staged subset.

use crate::closure::{self, firmware, Closure, ClosureError, KernelIndex, Lookup, Node, Softdeps};
use crate::depmod::{self, resolve, Loaded, Outcome, Request};
use crate::diag::Diagnostic;
use crate::source::{join, Tree};

use super::{ClosureRequest, Failure};

/// What the closure stage produces besides the closure's index.
pub(super) struct ClosureBuild {
    /// Every module of the kernel (tree paths): the closure is a function
    /// of all of them, so all count as inputs.
    pub all_modules: Vec<Vec<u8>>,
    /// Firmware to copy (tree paths), when staged.
    pub firmware: Vec<Vec<u8>>,
    /// `modules.load`, when asked for.
    pub load_list: Option<Vec<u8>>,
}

/// Runs the closure stage: the closure's index, whose diagnostics are those
/// of depmod over the staged subset, then the closure's own warnings.
pub(super) fn run(
    request: &Request<'_>,
    tree: &dyn Tree,
    (module_dir, version): (&str, &str),
    wanted: &ClosureRequest,
    staged: bool,
) -> Result<(Outcome, ClosureBuild), Failure> {
    let mut diags: Vec<Diagnostic> = Vec::new();
    let loaded = depmod::load(request, &mut diags).map_err(Failure::Depmod)?;
    let all_modules: Vec<Vec<u8>> = loaded.found.iter().map(|f| f.tree_path.clone()).collect();

    // The whole kernel's index, in memory, for resolving SPECs as modprobe
    // resolves them against an installed kernel. Its messages are those of
    // the full tree, not of the output: dropped.
    let full = depmod::index(request, loaded.clone(), Vec::new()).map_err(Failure::Depmod)?;
    let names: Vec<Vec<u8>> = loaded.modules.iter().map(|m| m.name.clone()).collect();
    let resolved = wanted
        .resolver
        .0
        .resolve(&KernelIndex {
            module_dir,
            version,
            files: &full.files,
            names: &names,
        })
        .map_err(ClosureError::Resolver)?;
    let lookup = &*resolved.lookup;

    let graph = graph(&loaded, request.symbols.prefix, resolved.softdeps);
    let closure = closure::compute(&graph, lookup, &wanted.selection)?;

    let load_list = wanted
        .load_list
        .then(|| load_list(&loaded, &graph, &closure, lookup));
    let firmware = if staged {
        let wanted_fw: Vec<(Vec<u8>, Vec<u8>)> = closure
            .modules
            .iter()
            .flat_map(|&m| {
                let module = &loaded.modules[m];
                module
                    .meta
                    .firmware
                    .iter()
                    .map(|f| (module.name.clone(), f.clone()))
            })
            .collect();
        let roots = firmware::firmware_roots(super::lib_is_usr_lib(tree));
        let found = firmware::collect(tree, &roots, version, &wanted_fw);
        (
            found.files.into_iter().map(|f| f.path).collect(),
            found.missing,
        )
    } else {
        (Vec::new(), Vec::new())
    };

    let subset = loaded.subset(&closure.modules);
    let mut outcome = depmod::index(request, subset, diags).map_err(Failure::Depmod)?;
    outcome.diagnostics.extend(closure.notes.iter().cloned());
    outcome.diagnostics.extend(firmware.1);
    let built = ClosureBuild {
        all_modules,
        firmware: firmware.0,
        load_list,
    };
    Ok((outcome, built))
}

/// The typed graph the closure is computed over, in depmod's order.
fn graph(loaded: &Loaded, prefix: u8, softdeps: Vec<Softdeps>) -> Vec<Node> {
    resolve::direct_graph(&loaded.modules, prefix)
        .into_iter()
        .zip(&loaded.modules)
        .zip(softdeps)
        .map(|((deps, m), softdeps)| Node {
            name: m.name.clone(),
            deps,
            softdeps,
            weakdeps: closure::weakdeps_from_modinfo(m.meta.weakdeps.iter().map(Vec::as_slice)),
        })
        .collect()
}

/// `modules.load`: the closure's module paths (as `modules.dep` writes
/// them), one per line, in load order.
fn load_list(loaded: &Loaded, graph: &[Node], closure: &Closure, lookup: &dyn Lookup) -> Vec<u8> {
    let mut out = Vec::new();
    for m in closure::load_order(graph, closure, lookup) {
        let f = &loaded.found[m];
        out.extend_from_slice(f.relpath.as_deref().unwrap_or(&f.kmod_path));
        out.push(b'\n');
    }
    out
}

/// The path of `modules.load` in the output.
pub(super) fn load_list_path(tree_path: &[u8]) -> Vec<u8> {
    join(&[tree_path, b"modules.load"])
}
