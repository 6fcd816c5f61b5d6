//! Offline queries over one kernel's module index: what modprobe would do
//! on the image, and facts for `why` and `diff`.
//!
//! An [`Image`] is one kernel of a tree or archive: its index files
//! (`modules.dep.bin`, `modules.alias.bin`, `modules.symbols.bin`,
//! `modules.builtin.bin`, `modules.builtin.alias.bin`, `modules.softdep`,
//! `modules.weakdep`), read with [`crate::index::reader`], plus the tree
//! itself for the module files. [`Image::show_depends`] and
//! [`Image::resolve_alias`] reproduce kmod 34.2's
//! `modprobe -C /dev/null --show-depends NAME` and `modprobe -C /dev/null
//! -R NAME` for the image mounted at `/`, byte for byte.

pub mod config;
pub mod diff;
mod message;
mod modprobe;
mod open;
pub mod why;

use crate::index::reader::{BinIndex, Entry, IndexReadError, ReadMode};
use crate::module::{ModuleMeta, ModuleReader, ModuleSource};
use crate::source::{join, EntryKind, Input};
pub use config::{Config, Softdep, Weakdep};
pub use message::{Message, Severity};
pub use modprobe::{Action, Resolution, ShowDepends};
pub use open::{open, OpenError, OpenOptions, Opened};

/// The index files an [`Image`] reads, by name.
pub const INDEX_FILES: [&str; 7] = [
    "modules.dep.bin",
    "modules.alias.bin",
    "modules.symbols.bin",
    "modules.builtin.alias.bin",
    "modules.builtin.bin",
    "modules.softdep",
    "modules.weakdep",
];

/// The largest index file an image may hold: a binary index cannot be
/// larger (see [`crate::index::reader::MAX_INDEX_LEN`]), and no
/// `modules.softdep` comes near it.
pub const MAX_INDEX_FILE_LEN: usize = crate::index::reader::MAX_INDEX_LEN;

/// Where an image's files are, and its index files' contents.
pub struct ImageParts {
    /// The opened input; module files are read from it.
    pub input: Input<ModuleMeta>,
    /// The module directory in the tree, such as `lib/modules`.
    pub module_dir: String,
    /// The kernel version.
    pub kernel_version: String,
    /// The module directory as messages about its files name it (such as
    /// its path on the host).
    pub origin: String,
    /// Contents of the index files present, by name (see [`INDEX_FILES`]);
    /// other names are ignored.
    pub files: Vec<(String, Vec<u8>)>,
    /// The kernel command line to assume (modprobe reads `/proc/cmdline`
    /// for `MODULE.PARAM=VALUE` options and `modprobe.blacklist=`); empty
    /// for none.
    pub kernel_cmdline: Vec<u8>,
    /// The largest decompressed module read (for `why` and `diff`), in
    /// bytes.
    pub max_module_size: u64,
}

/// The binary indexes, each `None` when libkmod could not open it.
struct Indexes {
    dep: Option<BinIndex>,
    alias: Option<BinIndex>,
    symbols: Option<BinIndex>,
    builtin_alias: Option<BinIndex>,
    builtin: Option<BinIndex>,
}

/// A key and a value, such as an alias pattern and its module.
pub type Pair = (Vec<u8>, Vec<u8>);

/// One module as `modules.dep.bin` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleEntry {
    /// The module's name.
    pub name: Vec<u8>,
    /// The path as written in `modules.dep` (relative to the module
    /// directory, or absolute).
    pub path: Vec<u8>,
    /// Its dependencies' paths, as listed (modprobe loads them last first).
    pub deps: Vec<Vec<u8>>,
}

impl ModuleEntry {
    /// The dependencies' module names, as listed (the name libkmod gives a
    /// module file: its base name up to the first `.`, `-` as `_`).
    pub fn dep_names(&self) -> Vec<Vec<u8>> {
        self.deps
            .iter()
            .map(|path| {
                let base = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
                modprobe::modname_normalize(base)
            })
            .collect()
    }
}

/// One kernel's index, opened for queries.
pub struct Image {
    input: Input<ModuleMeta>,
    module_dir: String,
    kernel_version: String,
    /// The module directory as modprobe names it: `/lib/modules/VERSION`.
    dirname: Vec<u8>,
    indexes: Indexes,
    mode: ReadMode,
    config: Config,
    /// What libkmod prints while parsing the configuration.
    config_messages: Vec<Message>,
    /// No module file named by the index exists: the image is an index
    /// alone (a `build` output without `--staged`), and its modules are
    /// taken as installed where the index says.
    index_only: bool,
    max_module_size: u64,
}

impl Image {
    /// Opens an image from its parts. Fails only on a corrupt binary index;
    /// one that libkmod would not open at all (missing, bad magic or
    /// version) is treated as absent, as libkmod treats it.
    pub fn from_parts(parts: ImageParts) -> Result<Image, IndexReadError> {
        let dirname = format!("/{}/{}", parts.module_dir, parts.kernel_version).into_bytes();
        let dirname_text = String::from_utf8_lossy(&dirname).into_owned();
        let mut indexes = Indexes {
            dep: None,
            alias: None,
            symbols: None,
            builtin_alias: None,
            builtin: None,
        };
        let mut softdep = None;
        let mut weakdep = None;
        let mut mapped = [false; 5];
        for (name, bytes) in parts.files {
            let slot = match name.as_str() {
                "modules.dep.bin" => (&mut indexes.dep, 0),
                "modules.alias.bin" => (&mut indexes.alias, 1),
                "modules.symbols.bin" => (&mut indexes.symbols, 2),
                "modules.builtin.alias.bin" => (&mut indexes.builtin_alias, 3),
                "modules.builtin.bin" => (&mut indexes.builtin, 4),
                "modules.softdep" => {
                    softdep = Some(bytes);
                    continue;
                }
                "modules.weakdep" => {
                    weakdep = Some(bytes);
                    continue;
                }
                _ => continue,
            };
            if BinIndex::header_ok(&bytes) {
                *slot.0 = Some(BinIndex::parse(bytes, format!("{}/{name}", parts.origin))?);
                mapped[slot.1] = true;
            }
        }
        // modprobe maps the indexes in this order and gives up on all of
        // them at the first that fails, except the optional builtin aliases.
        let mode = if mapped[0] && mapped[1] && mapped[2] && mapped[4] {
            ReadMode::Mapped
        } else {
            ReadMode::Streamed
        };
        let mut config = Config::default();
        let mut config_messages = Vec::new();
        // Configuration files are read in name order: modules.softdep,
        // modules.weakdep, then `-C /dev/null`, which holds nothing.
        for (name, contents) in [("modules.softdep", softdep), ("modules.weakdep", weakdep)] {
            if let Some(contents) = contents {
                config.parse_file(
                    &format!("{dirname_text}/{name}"),
                    &contents,
                    &mut config_messages,
                );
            }
        }
        config.parse_kernel_cmdline(&parts.kernel_cmdline, &mut config_messages);
        let mut image = Image {
            input: parts.input,
            module_dir: parts.module_dir,
            kernel_version: parts.kernel_version,
            dirname,
            indexes,
            mode,
            config,
            config_messages,
            index_only: false,
            max_module_size: parts.max_module_size,
        };
        let modules = image.modules()?;
        image.index_only = !modules.is_empty()
            && !modules
                .iter()
                .any(|m| image.file_exists(&image.image_path(&m.path)));
        Ok(image)
    }

    /// The kernel version.
    pub fn kernel_version(&self) -> &str {
        &self.kernel_version
    }

    /// The module directory in the tree, such as `lib/modules`.
    pub fn module_dir(&self) -> &str {
        &self.module_dir
    }

    /// Where modprobe looks: `/lib/modules/VERSION`.
    pub fn dirname(&self) -> &[u8] {
        &self.dirname
    }

    /// The configuration modprobe reads (softdeps, weakdeps, ...).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether the image holds no module file at all, only an index (its
    /// modules are then taken as present where the index names them).
    pub fn index_only(&self) -> bool {
        self.index_only
    }

    /// How modprobe would read the indexes (which decides the order of
    /// equally ranked matches).
    pub fn read_mode(&self) -> ReadMode {
        self.mode
    }

    /// The path of a `modules.dep` entry in the image: relative ones are
    /// under the module directory.
    pub fn image_path(&self, dep_path: &[u8]) -> Vec<u8> {
        if dep_path.starts_with(b"/") {
            dep_path.to_vec()
        } else {
            [&self.dirname[..], b"/", dep_path].concat()
        }
    }

    /// Whether `stat` would find `image_path` (an absolute path in the
    /// image). `.` and `..` are resolved by name.
    pub fn file_exists(&self, image_path: &[u8]) -> bool {
        if self.index_only {
            return true;
        }
        let path = tree_path(image_path);
        path.is_empty() || self.input.tree().kind(&path).is_some()
    }

    /// Every module of `modules.dep.bin`, by name.
    pub fn modules(&self) -> Result<Vec<ModuleEntry>, IndexReadError> {
        let Some(dep) = &self.indexes.dep else {
            return Ok(Vec::new());
        };
        Ok(dep
            .entries()?
            .into_iter()
            .map(|Entry { key, value, .. }| parse_dep_value(key, &value))
            .collect())
    }

    /// The module `name` (as modprobe normalizes it) in `modules.dep.bin`.
    pub fn module(&self, name: &[u8]) -> Option<ModuleEntry> {
        let name = modprobe::modname_normalize(name);
        let value = self.indexes.dep.as_ref()?.search(&name, self.mode)?;
        Some(parse_dep_value(name, value))
    }

    /// Every `(alias pattern, module)` of `modules.alias.bin`.
    pub fn aliases(&self) -> Result<Vec<Pair>, IndexReadError> {
        pairs(self.indexes.alias.as_ref())
    }

    /// Every `(symbol, module)` of `modules.symbols.bin` (without the
    /// `symbol:` prefix).
    pub fn symbols(&self) -> Result<Vec<Pair>, IndexReadError> {
        Ok(pairs(self.indexes.symbols.as_ref())?
            .into_iter()
            .map(|(k, v)| {
                (
                    k.strip_prefix(b"symbol:").map_or(k.clone(), <[u8]>::to_vec),
                    v,
                )
            })
            .collect())
    }

    /// The module exporting `symbol`, per `modules.symbols.bin`.
    pub fn symbol_owner(&self, symbol: &[u8]) -> Option<Vec<u8>> {
        let key = [b"symbol:", symbol].concat();
        self.indexes
            .symbols
            .as_ref()?
            .search(&key, self.mode)
            .map(<[u8]>::to_vec)
    }

    /// The names of `modules.builtin.bin`.
    pub fn builtin(&self) -> Result<Vec<Vec<u8>>, IndexReadError> {
        Ok(pairs(self.indexes.builtin.as_ref())?
            .into_iter()
            .map(|(k, _)| k)
            .collect())
    }

    /// Every `(alias pattern, module)` of `modules.builtin.alias.bin`.
    pub fn builtin_aliases(&self) -> Result<Vec<Pair>, IndexReadError> {
        pairs(self.indexes.builtin_alias.as_ref())
    }

    /// Whether `name` is in `modules.builtin.bin`.
    pub fn is_builtin(&self, name: &[u8]) -> bool {
        self.indexes
            .builtin
            .as_ref()
            .is_some_and(|b| b.search(name, self.mode).is_some())
    }

    /// What modprobe knows of a module file: its exports (with CRCs), the
    /// symbols it needs, its modinfo. Reads the file named by
    /// `modules.dep`; `None` when the module is not there.
    pub fn module_meta(&self, name: &[u8]) -> Option<ModuleMeta> {
        let entry = self.module(name)?;
        let path = tree_path(&self.image_path(&entry.path));
        if self.input.tree().kind(&path) != Some(EntryKind::File) {
            return None;
        }
        Some(ModuleReader::new(&self.input, self.max_module_size).module_meta(&path))
    }

    /// `modprobe -C /dev/null --show-depends NAME` on the image.
    pub fn show_depends(&self, name: &[u8]) -> ShowDepends {
        modprobe::show_depends(self, name)
    }

    /// `modprobe -C /dev/null -R NAME` on the image.
    pub fn resolve_alias(&self, name: &[u8]) -> Resolution {
        modprobe::resolve_alias(self, name)
    }

    /// The modules a module's weak dependencies resolve to, as libkmod's
    /// `kmod_module_get_weakdeps` finds them (first matching `weakdep`
    /// line; each name looked up as modprobe looks up a name).
    pub fn weakdeps(&self, module: &[u8]) -> Vec<Vec<u8>> {
        modprobe::weakdeps(self, module)
    }

    /// The modules a module's soft dependencies resolve to: `(pre, post)`,
    /// as `kmod_module_get_softdeps` finds them.
    pub fn softdeps(&self, module: &[u8]) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        modprobe::softdeps(self, module)
    }
}

/// `name` and a `modules.dep` line's value (`path: dep dep ...`).
fn parse_dep_value(name: Vec<u8>, value: &[u8]) -> ModuleEntry {
    let (path, deps) = match value.iter().position(|&b| b == b':') {
        Some(colon) => (&value[..colon], &value[colon + 1..]),
        None => (value, &b""[..]),
    };
    ModuleEntry {
        name,
        path: path.to_vec(),
        deps: deps
            .split(|&b| b == b' ' || b == b'\t')
            .filter(|d| !d.is_empty())
            .map(<[u8]>::to_vec)
            .collect(),
    }
}

fn pairs(index: Option<&BinIndex>) -> Result<Vec<Pair>, IndexReadError> {
    let Some(index) = index else {
        return Ok(Vec::new());
    };
    Ok(index
        .entries()?
        .into_iter()
        .map(|e| (e.key, e.value))
        .collect())
}

/// An absolute image path as a tree path: components joined without the
/// leading `/`, `.` dropped and `..` taken by name (staying at the root, as
/// `/..` is `/`).
fn tree_path(image_path: &[u8]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in image_path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    join(&parts)
}

#[cfg(test)]
mod tests {
    use super::tree_path;

    #[test]
    fn image_paths() {
        assert_eq!(tree_path(b"/lib/modules/v/a.ko"), b"lib/modules/v/a.ko");
        assert_eq!(tree_path(b"//./x/../y.ko"), b"y.ko");
        assert_eq!(tree_path(b"/../x"), b"x");
    }
}
