//! `kmodidx diff OLD NEW`: what changed between two kernels' indexes.
//!
//! Each image is reduced to facts: its modules (name and path), each
//! module's dependencies, aliases, exported symbols (as `modules.symbols`
//! assigns them), soft and weak dependencies, the CRC of each exported
//! symbol (read from the module files, when the image holds them), and the
//! built-in modules and their aliases. The diff lists every fact present on
//! one side only, and every CRC that differs.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use rayon::prelude::*;

use super::Image;
use crate::index::reader::IndexReadError;

/// CRCs by symbol.
pub type Crcs = BTreeMap<Vec<u8>, u64>;

/// One module's facts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModuleFacts {
    /// Its path in `modules.dep` (empty when it is not there, only named
    /// by an alias or symbol).
    pub path: Vec<u8>,
    /// Its dependencies, by name.
    pub deps: BTreeSet<Vec<u8>>,
    /// Its aliases, as `modules.alias.bin` keys them.
    pub aliases: BTreeSet<Vec<u8>>,
    /// The symbols `modules.symbols` says it exports.
    pub symbols: BTreeSet<Vec<u8>>,
    /// Its `softdep` lines (what follows the name).
    pub softdeps: BTreeSet<Vec<u8>>,
    /// Its `weakdep` lines.
    pub weakdeps: BTreeSet<Vec<u8>>,
    /// Exported symbols' CRCs, from the module file.
    pub crcs: Crcs,
}

/// One image's facts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// The kernel.
    pub kernel_version: String,
    /// Every module, by name.
    pub modules: BTreeMap<Vec<u8>, ModuleFacts>,
    /// The built-in modules.
    pub builtin: BTreeSet<Vec<u8>>,
    /// `(module, alias)`.
    pub builtin_aliases: BTreeSet<(Vec<u8>, Vec<u8>)>,
    /// Whether the module files were there to read CRCs from.
    pub crcs_known: bool,
}

/// Gathers an image's facts (reading every module file for CRCs, in
/// parallel, unless the image is an index alone).
pub fn facts(image: &Image) -> Result<Facts, IndexReadError> {
    let mut facts = Facts {
        kernel_version: image.kernel_version().to_string(),
        crcs_known: !image.index_only(),
        ..Facts::default()
    };
    for entry in image.modules()? {
        let module = ModuleFacts {
            path: entry.path.clone(),
            deps: entry.dep_names().into_iter().collect(),
            ..ModuleFacts::default()
        };
        facts.modules.insert(entry.name, module);
    }
    for (alias, module) in image.aliases()? {
        facts
            .modules
            .entry(module)
            .or_default()
            .aliases
            .insert(alias);
    }
    for (symbol, module) in image.symbols()? {
        facts
            .modules
            .entry(module)
            .or_default()
            .symbols
            .insert(symbol);
    }
    for s in &image.config().softdeps {
        facts
            .modules
            .entry(s.module.clone())
            .or_default()
            .softdeps
            .insert(s.raw.clone());
    }
    for w in &image.config().weakdeps {
        facts
            .modules
            .entry(w.module.clone())
            .or_default()
            .weakdeps
            .insert(w.raw.clone());
    }
    facts.builtin = image.builtin()?.into_iter().collect();
    facts.builtin_aliases = image
        .builtin_aliases()?
        .into_iter()
        .map(|(alias, module)| (module, alias))
        .collect();
    if facts.crcs_known {
        let names: Vec<Vec<u8>> = facts.modules.keys().cloned().collect();
        let crcs: Vec<(Vec<u8>, Crcs)> = names
            .into_par_iter()
            .filter_map(|name| {
                let meta = image.module_meta(&name)?;
                let exports = meta.exports?.ok()?;
                let crcs = exports.into_iter().map(|e| (e.name, e.crc)).collect();
                Some((name, crcs))
            })
            .collect();
        for (name, crcs) in crcs {
            if let Some(m) = facts.modules.get_mut(&name) {
                m.crcs = crcs;
            }
        }
    }
    Ok(facts)
}

/// What a fact is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A module of `modules.dep` (the item is its path).
    Module,
    /// One of a module's dependencies (by name).
    Dep,
    /// One of a module's aliases (as `modules.alias.bin` keys them).
    Alias,
    /// A symbol the module exports (as `modules.symbols` assigns it).
    Symbol,
    /// An exported symbol's CRC.
    Crc,
    /// A `softdep` line of the module (what follows its name).
    Softdep,
    /// A `weakdep` line of the module.
    Weakdep,
    /// A built-in module.
    Builtin,
    /// An alias of a built-in module.
    BuiltinAlias,
}

impl Kind {
    /// The word printed and used in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Module => "module",
            Kind::Dep => "dep",
            Kind::Alias => "alias",
            Kind::Symbol => "symbol",
            Kind::Crc => "crc",
            Kind::Softdep => "softdep",
            Kind::Weakdep => "weakdep",
            Kind::Builtin => "builtin",
            Kind::BuiltinAlias => "builtin-alias",
        }
    }
}

/// Whether a fact appeared, disappeared, or changed its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// Only in the old image.
    Removed,
    /// Only in the new image.
    Added,
    /// In both, with another value.
    Changed,
}

/// One difference.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Difference {
    /// The module the fact is about.
    pub module: Vec<u8>,
    /// What kind of fact.
    pub kind: Kind,
    /// The fact: a dependency, alias, symbol, softdep or weakdep; a
    /// module's path for an added or removed module; the symbol of a CRC;
    /// empty for `builtin` and a moved module.
    pub item: Vec<u8>,
    /// How it changed.
    pub change: Change,
    /// For `Changed`: the old value (a path, or a CRC as `0x%08x`).
    pub old: Vec<u8>,
    /// For `Changed`: the new value.
    pub new: Vec<u8>,
}

/// The differences between two images, sorted by module, then kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff {
    /// The old image's kernel version.
    pub old_version: String,
    /// The new image's kernel version.
    pub new_version: String,
    /// Every difference.
    pub differences: Vec<Difference>,
    /// False when either image holds no module files: CRCs were not
    /// compared.
    pub crcs_compared: bool,
}

impl Diff {
    /// Whether the images are equal in every fact compared.
    pub fn is_empty(&self) -> bool {
        self.differences.is_empty()
    }

    /// The diff as JSON (see the README for the schema).
    pub fn to_json(&self) -> serde_json::Value {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let changes: Vec<serde_json::Value> = self
            .differences
            .iter()
            .map(|d| {
                let mut v = serde_json::json!({
                    "change": match d.change {
                        Change::Added => "added",
                        Change::Removed => "removed",
                        Change::Changed => "changed",
                    },
                    "kind": d.kind.name(),
                    "module": text(&d.module),
                });
                let field = match d.kind {
                    Kind::Module => "path",
                    Kind::Dep => "dependency",
                    Kind::Alias | Kind::BuiltinAlias => "alias",
                    Kind::Symbol | Kind::Crc => "symbol",
                    Kind::Softdep => "softdep",
                    Kind::Weakdep => "weakdep",
                    Kind::Builtin => "",
                };
                // A moved module has its paths in `old` and `new`.
                let moved = d.kind == Kind::Module && d.change == Change::Changed;
                if !field.is_empty() && !moved {
                    v[field] = text(&d.item).into();
                }
                if d.change == Change::Changed {
                    v["old"] = text(&d.old).into();
                    v["new"] = text(&d.new).into();
                }
                v
            })
            .collect();
        serde_json::json!({
            "schema": 1,
            "old": { "kernel_version": self.old_version },
            "new": { "kernel_version": self.new_version },
            "equal": self.is_empty(),
            "crcs_compared": self.crcs_compared,
            "changes": changes,
        })
    }
}

impl fmt::Display for Difference {
    /// `+ KIND MODULE ITEM`, `- KIND MODULE ITEM`, or
    /// `~ KIND MODULE [ITEM] OLD -> NEW`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let sign = match self.change {
            Change::Added => '+',
            Change::Removed => '-',
            Change::Changed => '~',
        };
        write!(f, "{sign} {} {}", self.kind.name(), text(&self.module))?;
        if !self.item.is_empty() {
            write!(f, " {}", text(&self.item))?;
        }
        if self.change == Change::Changed {
            write!(f, " {} -> {}", text(&self.old), text(&self.new))?;
        }
        Ok(())
    }
}

impl fmt::Display for Diff {
    /// One line per difference.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.differences.iter().try_for_each(|d| writeln!(f, "{d}"))
    }
}

/// Compares two images' facts.
pub fn diff(old: &Facts, new: &Facts) -> Diff {
    let mut out = Vec::new();
    let empty = ModuleFacts::default();
    let names: BTreeSet<&Vec<u8>> = old.modules.keys().chain(new.modules.keys()).collect();
    let diff_sets = |out: &mut Vec<Difference>,
                     module: &[u8],
                     kind,
                     a: &BTreeSet<Vec<u8>>,
                     b: &BTreeSet<Vec<u8>>| {
        for item in a.difference(b) {
            out.push(change(module, kind, item, Change::Removed));
        }
        for item in b.difference(a) {
            out.push(change(module, kind, item, Change::Added));
        }
    };
    for name in names {
        let (a, b) = (old.modules.get(name), new.modules.get(name));
        // Entries created only by an alias or symbol of a module missing
        // from modules.dep have no path.
        let (pa, pb) = (
            a.map_or(&b""[..], |m| &m.path[..]),
            b.map_or(&b""[..], |m| &m.path[..]),
        );
        match (pa.is_empty(), pb.is_empty()) {
            (false, true) => out.push(change(name, Kind::Module, pa, Change::Removed)),
            (true, false) => out.push(change(name, Kind::Module, pb, Change::Added)),
            (false, false) if pa != pb => out.push(Difference {
                module: name.clone(),
                kind: Kind::Module,
                item: Vec::new(),
                change: Change::Changed,
                old: pa.to_vec(),
                new: pb.to_vec(),
            }),
            _ => {}
        }
        let (a, b) = (a.unwrap_or(&empty), b.unwrap_or(&empty));
        diff_sets(&mut out, name, Kind::Dep, &a.deps, &b.deps);
        diff_sets(&mut out, name, Kind::Alias, &a.aliases, &b.aliases);
        diff_sets(&mut out, name, Kind::Symbol, &a.symbols, &b.symbols);
        diff_sets(&mut out, name, Kind::Softdep, &a.softdeps, &b.softdeps);
        diff_sets(&mut out, name, Kind::Weakdep, &a.weakdeps, &b.weakdeps);
        for (symbol, crc) in &a.crcs {
            if let Some(new_crc) = b.crcs.get(symbol).filter(|c| *c != crc) {
                out.push(Difference {
                    module: name.clone(),
                    kind: Kind::Crc,
                    item: symbol.clone(),
                    change: Change::Changed,
                    old: format!("0x{crc:08x}").into_bytes(),
                    new: format!("0x{new_crc:08x}").into_bytes(),
                });
            }
        }
    }
    for m in old.builtin.difference(&new.builtin) {
        out.push(change(m, Kind::Builtin, b"", Change::Removed));
    }
    for m in new.builtin.difference(&old.builtin) {
        out.push(change(m, Kind::Builtin, b"", Change::Added));
    }
    for (m, alias) in old.builtin_aliases.difference(&new.builtin_aliases) {
        out.push(change(m, Kind::BuiltinAlias, alias, Change::Removed));
    }
    for (m, alias) in new.builtin_aliases.difference(&old.builtin_aliases) {
        out.push(change(m, Kind::BuiltinAlias, alias, Change::Added));
    }
    out.sort();
    Diff {
        old_version: old.kernel_version.clone(),
        new_version: new.kernel_version.clone(),
        differences: out,
        crcs_compared: old.crcs_known && new.crcs_known,
    }
}

fn change(module: &[u8], kind: Kind, item: &[u8], change: Change) -> Difference {
    Difference {
        module: module.to_vec(),
        kind,
        item: item.to_vec(),
        change,
        old: Vec::new(),
        new: Vec::new(),
    }
}
