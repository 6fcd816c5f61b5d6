//! Firmware for a closure: every `firmware=` file its modules name, found
//! where the kernel's firmware loader looks.

use std::collections::BTreeSet;

use crate::diag::{lossy, Diagnostic, Kind};
use crate::layout::FIRMWARE_DIRS;
use crate::source::{join, EntryKind, Tree};

/// Compressed variants the kernel's loader tries (`CONFIG_FW_LOADER_COMPRESS`).
pub const SUFFIXES: [&str; 3] = ["", ".xz", ".zst"];

/// One firmware file to copy.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FirmwareFile {
    /// Path in the input tree (and in the output), such as
    /// `lib/firmware/intel/foo.bin.xz`. A symlink is copied as the file it
    /// leads to.
    pub path: Vec<u8>,
}

/// Firmware found and missing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Firmware {
    /// Files to copy, sorted by path, each once.
    pub files: Vec<FirmwareFile>,
    /// A warning per name with no file ([`Kind::FirmwareMissing`]) or
    /// that is not a plain relative path ([`Kind::FirmwareNameUnsafe`]),
    /// sorted by module and name.
    pub missing: Vec<Diagnostic>,
}

/// The firmware directories to search in `tree`: both, unless `lib` is a
/// link to `usr/lib` (`merged_usr`), where only `usr/lib/firmware` is used so
/// that an output unpacked over the image never replaces its `lib` link.
pub fn firmware_roots(merged_usr: bool) -> Vec<&'static str> {
    FIRMWARE_DIRS
        .iter()
        .copied()
        .filter(|d| !(merged_usr && *d == "lib/firmware"))
        .collect()
}

/// Whether a firmware name is a plain relative path (no `..`, no leading
/// `/`, no empty components): anything else could name a file outside the
/// firmware directory.
fn is_plain(name: &[u8]) -> bool {
    !name.is_empty()
        && name
            .split(|&b| b == b'/')
            .all(|c| !c.is_empty() && c != b"." && c != b"..")
}

/// Every file in `tree` the kernel's loader could load for firmware `name`
/// (a plain relative path, see [`collect`]): below each of `roots`, in
/// `updates/<version>/`, `updates/`, `<version>/` and the root itself, with
/// each compressed variant. The one home of these lookup rules, shared by
/// the closure's copy and `kmodidx check`.
pub fn locate(tree: &dyn Tree, roots: &[&str], version: &str, name: &[u8]) -> Vec<Vec<u8>> {
    if !is_plain(name) {
        return Vec::new();
    }
    let subdirs: [Vec<u8>; 4] = [
        join(&[b"updates", version.as_bytes()]),
        b"updates".to_vec(),
        version.as_bytes().to_vec(),
        Vec::new(),
    ];
    let mut found = Vec::new();
    for root in roots {
        for sub in &subdirs {
            for suffix in SUFFIXES {
                let file = [name, suffix.as_bytes()].concat();
                let path = join(&[root.as_bytes(), sub, &file]);
                if tree.kind(&path) == Some(EntryKind::File) {
                    found.push(path);
                }
            }
        }
    }
    found
}

/// Finds the files for `(module, firmware name)` pairs in `tree`, below each
/// of `roots`, in the directories the kernel's loader searches
/// (`updates/<version>/`, `updates/`, `<version>/` and the root itself),
/// with each compressed variant. Every existing candidate is copied, so the
/// loader finds in the image the same file it would find on the full
/// system.
pub fn collect(
    tree: &dyn Tree,
    roots: &[&str],
    version: &str,
    wanted: &[(Vec<u8>, Vec<u8>)],
) -> Firmware {
    let mut files = BTreeSet::new();
    let mut missing = BTreeSet::new();
    for (module, name) in wanted {
        if !is_plain(name) {
            missing.insert((lossy(module), lossy(name), true));
            continue;
        }
        let found = locate(tree, roots, version, name);
        let none = found.is_empty();
        files.extend(found.into_iter().map(|path| FirmwareFile { path }));
        if none {
            missing.insert((lossy(module), lossy(name), false));
        }
    }
    Firmware {
        files: files.into_iter().collect(),
        missing: missing
            .into_iter()
            .map(|(module, firmware, unsafe_name)| {
                Diagnostic::warning(if unsafe_name {
                    Kind::FirmwareNameUnsafe { module, firmware }
                } else {
                    Kind::FirmwareMissing { module, firmware }
                })
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::DirTree;

    #[test]
    fn finds_plain_compressed_versioned_and_linked_firmware() {
        let dir = tempfile::tempdir().unwrap();
        let fw = dir.path().join("lib/firmware");
        std::fs::create_dir_all(fw.join("vendor")).unwrap();
        std::fs::create_dir_all(fw.join("updates/6.1.0")).unwrap();
        std::fs::write(fw.join("vendor/a.bin"), b"a").unwrap();
        std::fs::write(fw.join("b.bin.zst"), b"b").unwrap();
        std::fs::write(fw.join("updates/6.1.0/b.bin"), b"b2").unwrap();
        std::os::unix::fs::symlink("vendor/a.bin", fw.join("link.bin")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", fw.join("escape.bin")).unwrap();
        let tree = DirTree::new(dir.path());
        let want = |m: &str, n: &str| (m.as_bytes().to_vec(), n.as_bytes().to_vec());
        let got = collect(
            &tree,
            &firmware_roots(false),
            "6.1.0",
            &[
                want("m1", "vendor/a.bin"),
                want("m1", "b.bin"),
                want("m2", "link.bin"),
                want("m2", "vendor/a.bin"),
                want("m3", "absent.bin"),
                want("m3", "../../etc/passwd"),
                want("m3", "escape.bin"),
            ],
        );
        let paths: Vec<String> = got
            .files
            .iter()
            .map(|f| String::from_utf8_lossy(&f.path).into_owned())
            .collect();
        assert_eq!(
            paths,
            [
                "lib/firmware/b.bin.zst",
                "lib/firmware/link.bin",
                "lib/firmware/updates/6.1.0/b.bin",
                "lib/firmware/vendor/a.bin",
            ]
        );
        let missing: Vec<String> = got.missing.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            missing,
            [
                "m3: firmware name ../../etc/passwd is not a plain relative path; not looked up",
                "m3: firmware absent.bin is not in the input",
                "m3: firmware escape.bin is not in the input",
            ]
        );
    }

    #[test]
    fn merged_usr_searches_usr_lib_only() {
        assert_eq!(firmware_roots(true), ["usr/lib/firmware"]);
        assert_eq!(firmware_roots(false), FIRMWARE_DIRS);
    }
}
