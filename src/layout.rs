//! Where kmod expects things: the facts about file names and directories
//! that every stage shares, each kept here once.

/// File name endings that make a file a module.
pub const MODULE_EXTENSIONS: [&str; 4] = [".ko", ".ko.gz", ".ko.xz", ".ko.zst"];

/// Whether a file name is a module's: one of [`MODULE_EXTENSIONS`], after
/// at least one more byte.
pub fn is_module_file(name: &[u8]) -> bool {
    MODULE_EXTENSIONS
        .iter()
        .any(|ext| name.len() > ext.len() && name.ends_with(ext.as_bytes()))
}

/// The module name kmod derives from a file name: up to the first `.`, with
/// `-` as `_`.
pub fn modname(file_name: &[u8]) -> Vec<u8> {
    file_name
        .iter()
        .take_while(|&&b| b != b'.')
        .map(|&b| if b == b'-' { b'_' } else { b })
        .collect()
}

/// Module directories, relative to a tree's root, in the order they are
/// tried: `lib/modules`, and `usr/lib/modules` on merged-/usr systems.
pub const MODULE_DIRS: [&str; 2] = ["lib/modules", "usr/lib/modules"];

/// The module directory kmod uses by default (`depmod -m`).
pub const DEFAULT_MODULE_DIR: &str = MODULE_DIRS[0];

/// Entry names depmod never descends into under a module directory (links
/// to the kernel's build tree).
pub const SKIPPED_NAMES: [&[u8]; 2] = [b"build", b"source"];

/// kmod 34's depmod.d directories, relative to the root, in precedence
/// order (the first holding a file name wins).
pub const CONFIG_DIRS: [&str; 5] = [
    "etc/depmod.d",
    "run/depmod.d",
    "usr/local/lib/depmod.d",
    "usr/lib/depmod.d",
    "lib/depmod.d",
];

/// Firmware directories, relative to a tree's root, where the kernel's
/// loader looks: `lib/firmware`, and `usr/lib/firmware` on merged-/usr
/// systems (where `lib` leads to `usr/lib`).
pub const FIRMWARE_DIRS: [&str; 2] = ["lib/firmware", "usr/lib/firmware"];

/// Longest path kmod handles (`PATH_MAX`, counting the final NUL).
pub const PATH_MAX: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(modname(b"snd-hda-intel.ko.xz"), b"snd_hda_intel");
        assert_eq!(modname(b"foo.bar.ko"), b"foo");
        assert!(is_module_file(b"a.ko.zst"));
        assert!(!is_module_file(b".ko"));
        assert!(!is_module_file(b"a.ko.bz2"));
    }
}
