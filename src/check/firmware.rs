//! TEMPORARY adapter, the only one in `check`: whether a `firmware=` file is
//! in a tree, by the rules of the closure's firmware copy (branch
//! `closure`, `closure::firmware::collect`), which is not on main yet. When
//! it lands, replace [`present`] with a call to it, so that the lookup rules
//! have one home.

use crate::layout::{FIRMWARE_DIRS, MODULE_DIRS};
use crate::source::{join, EntryKind, Tree};

/// Compressed variants the kernel's loader tries (`CONFIG_FW_LOADER_COMPRESS`).
const SUFFIXES: [&str; 3] = ["", ".xz", ".zst"];

/// Whether firmware `name` of kernel `version` is in `tree`, where the
/// kernel's loader looks: `lib/firmware` or `usr/lib/firmware`, in
/// `updates/<version>/`, `updates/`, `<version>/` or the root, plain or
/// compressed. Modules live under `module_dir`; on a merged-/usr tree
/// (modules in `usr/lib/modules`) only `usr/lib/firmware` counts, as the
/// closure copies firmware there.
pub fn present(tree: &dyn Tree, module_dir: &str, version: &str, name: &[u8]) -> bool {
    let merged_usr = module_dir == MODULE_DIRS[1];
    let plain = !name.is_empty()
        && name
            .split(|&b| b == b'/')
            .all(|c| !c.is_empty() && c != b"." && c != b"..");
    if !plain {
        return false;
    }
    let subdirs: [Vec<u8>; 4] = [
        join(&[b"updates", version.as_bytes()]),
        b"updates".to_vec(),
        version.as_bytes().to_vec(),
        Vec::new(),
    ];
    FIRMWARE_DIRS
        .iter()
        .filter(|d| !(merged_usr && **d == FIRMWARE_DIRS[0]))
        .any(|root| {
            subdirs.iter().any(|sub| {
                SUFFIXES.iter().any(|suffix| {
                    let file = [name, suffix.as_bytes()].concat();
                    tree.kind(&join(&[root.as_bytes(), sub, &file])) == Some(EntryKind::File)
                })
            })
        })
}
