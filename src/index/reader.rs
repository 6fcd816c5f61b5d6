//! Reads the binary indexes (`modules.*.bin`) that [`super::trie`] writes,
//! in either node layout, and searches them exactly as libkmod does.
//!
//! Offsets in the file are absolute, so one reader serves both layouts
//! (kmod ≥ 34 parent-first, ≤ 33 children-first). An index is checked whole
//! when it is opened: every node must lie inside the file, be well formed,
//! and be reached once (a trie is a tree), keys stay below
//! [`MAX_KEY_LEN`] bytes. A hostile file is therefore rejected up front with
//! an error naming it, and every later walk is linear in the file's size.
//!
//! libkmod has two readers that return values in different orders when
//! priorities tie (see [`ReadMode`]); both orders are reproduced.

use super::fnmatch::fnmatch;
use super::trie::{
    Layout, CHILD_MAX, FLAG_CHILDS, FLAG_PREFIX, FLAG_VALUES, HEADER_LEN, MAGIC, OFFSET_MASK,
    VERSION,
};

/// The format version readers accept: 2, with any minor version.
const MAJOR_VERSION: u32 = VERSION >> 16;

/// The largest index: its offsets have 28 bits, and depmod never writes
/// more. Larger files are refused before they are read.
pub const MAX_INDEX_LEN: usize = OFFSET_MASK as usize;

/// The longest key accepted. kmod's keys are module names, symbols and
/// aliases (which depmod cuts at 4095 bytes); a longer one means a broken
/// or hostile file.
pub const MAX_KEY_LEN: usize = 16 * 1024;

/// How libkmod read the index, which decides the order of values of equal
/// priority.
///
/// modprobe maps every index at start-up (`kmod_load_resources`) and then
/// uses the mapped reader. If one of `modules.dep.bin`, `modules.alias.bin`,
/// `modules.symbols.bin` or `modules.builtin.bin` cannot be mapped (missing,
/// shorter than its header, bad magic or version), it drops them all and
/// reads each file anew per lookup, with the streaming reader, which sorts
/// each node's values as it loads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// `index_mm_*`: values in file order.
    Mapped,
    /// `index_*`: each node's values re-sorted as they are loaded.
    Streamed,
}

/// What is wrong with an index file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Corruption {
    /// Shorter than the header.
    #[error("{len} bytes is too short for an index (the header alone is 12)")]
    TooShort {
        /// The file's size.
        len: usize,
    },
    /// Larger than any index can be.
    #[error("{len} bytes is more than an index can address ({MAX_INDEX_LEN})")]
    TooLarge {
        /// The file's size.
        len: usize,
    },
    /// Not an index.
    #[error("bad magic 0x{found:08x} (expected 0x{MAGIC:08x})")]
    BadMagic {
        /// The first four bytes.
        found: u32,
    },
    /// Another format version.
    #[error("unsupported format version 0x{found:08x} (expected major version {MAJOR_VERSION})")]
    BadVersion {
        /// The version word.
        found: u32,
    },
    /// An offset past the end of the file.
    #[error("a node at offset {offset} lies outside the file")]
    OutOfRange {
        /// The offset.
        offset: u32,
    },
    /// A node that does not fit in the file.
    #[error("the node at offset {offset} runs past the end of the file")]
    Truncated {
        /// The node's offset.
        offset: u32,
    },
    /// A child table beyond 7-bit ASCII, starting at byte 0 (keys are C
    /// strings: no lookup can take a NUL branch, and no depmod writes one),
    /// or with its ends swapped.
    #[error("the node at offset {offset} has an invalid child range {first}..={last}")]
    BadChildRange {
        /// The node's offset.
        offset: u32,
        /// The table's first byte.
        first: u8,
        /// Its last byte.
        last: u8,
    },
    /// A node with two parents (or its own ancestor).
    #[error("the node at offset {offset} is reached twice: the index is not a tree")]
    Shared {
        /// The node's offset.
        offset: u32,
    },
    /// A key longer than [`MAX_KEY_LEN`].
    #[error("a key is longer than {MAX_KEY_LEN} bytes")]
    KeyTooLong,
    /// A listing larger than the file can legitimately hold.
    #[error("listing the index would produce more than {limit} bytes of keys")]
    TooMuchOutput {
        /// The limit.
        limit: usize,
    },
}

/// An index file that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {problem}")]
pub struct IndexReadError {
    /// The file, as given to [`BinIndex::parse`].
    pub file: String,
    /// What is wrong with it.
    pub problem: Corruption,
}

/// One value as stored: its priority and its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Value<'a> {
    /// The priority (depmod: the module's position in its output order).
    pub priority: u32,
    /// The value's bytes.
    pub value: &'a [u8],
}

/// One key/value pair of an index, as [`BinIndex::entries`] lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The whole key.
    pub key: Vec<u8>,
    /// The value's priority.
    pub priority: u32,
    /// The value.
    pub value: Vec<u8>,
}

/// A checked binary index.
#[derive(Debug, Clone)]
pub struct BinIndex {
    bytes: Vec<u8>,
    file: String,
    root: u32,
}

/// One parsed node: positions in the file.
struct Node {
    offset: u32,
    prefix: (usize, usize),
    first: u8,
    last: u8,
    /// Where the child table starts.
    children: usize,
    values: Vec<(u32, (usize, usize))>,
}

impl BinIndex {
    /// Whether kmod would open these bytes as an index at all: at least a
    /// header, the magic number and major version 2. libkmod treats a file
    /// failing this like a missing one.
    pub fn header_ok(bytes: &[u8]) -> bool {
        check_header(bytes).is_ok()
    }

    /// Checks `bytes` (the contents of `file`, named in errors) and opens it.
    pub fn parse(bytes: Vec<u8>, file: impl Into<String>) -> Result<BinIndex, IndexReadError> {
        let file = file.into();
        if bytes.len() > MAX_INDEX_LEN {
            return Err(IndexReadError {
                file,
                problem: Corruption::TooLarge { len: bytes.len() },
            });
        }
        let root = check_header(&bytes).map_err(|problem| IndexReadError {
            file: file.clone(),
            problem,
        })?;
        let index = BinIndex { bytes, file, root };
        index.validate().map_err(|problem| index.error(problem))?;
        Ok(index)
    }

    /// The file name given to [`BinIndex::parse`].
    pub fn file(&self) -> &str {
        &self.file
    }

    fn error(&self, problem: Corruption) -> IndexReadError {
        IndexReadError {
            file: self.file.clone(),
            problem,
        }
    }

    /// The node layout, when the file tells: `None` for an index of at most
    /// one node, which both layouts write identically.
    pub fn layout(&self) -> Option<Layout> {
        let root = self.node(self.root).ok().flatten()?;
        let child = (root.first..=root.last)
            .filter_map(|ch| self.child_offset(&root, ch))
            .find(|&c| c & OFFSET_MASK != 0)?;
        Some(if child & OFFSET_MASK > root.offset {
            Layout::ParentFirst
        } else {
            Layout::ChildrenFirst
        })
    }

    fn u32_at(&self, at: usize) -> Option<u32> {
        let b = self.bytes.get(at..at.checked_add(4)?)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// The NUL-terminated string at `at`: its range, and where it ends.
    fn string_at(&self, at: usize) -> Option<(usize, usize)> {
        let len = self.bytes.get(at..)?.iter().position(|&b| b == 0)?;
        Some((at, at + len))
    }

    /// Reads the node a flagged offset points to; `None` for offset 0 (no
    /// node) or an empty node at the very end of the file.
    fn node(&self, flagged: u32) -> Result<Option<Node>, Corruption> {
        let offset = flagged & OFFSET_MASK;
        if offset == 0 {
            return Ok(None);
        }
        let truncated = Corruption::Truncated { offset };
        let mut p = offset as usize;
        if p > self.bytes.len() || (p == self.bytes.len() && flagged & !OFFSET_MASK != 0) {
            return Err(Corruption::OutOfRange { offset });
        }
        let mut prefix = (p, p);
        if flagged & FLAG_PREFIX != 0 {
            prefix = self.string_at(p).ok_or(truncated.clone())?;
            p = prefix.1 + 1;
        }
        let (mut first, mut last, mut children) = (CHILD_MAX, 0, p);
        if flagged & FLAG_CHILDS != 0 {
            let range = self.bytes.get(p..p + 2).ok_or(truncated.clone())?;
            (first, last) = (range[0], range[1]);
            if first == 0 || first > last || last >= CHILD_MAX {
                return Err(Corruption::BadChildRange {
                    offset,
                    first,
                    last,
                });
            }
            children = p + 2;
            p = children + 4 * (usize::from(last - first) + 1);
            if p > self.bytes.len() {
                return Err(truncated);
            }
        }
        let mut values = Vec::new();
        if flagged & FLAG_VALUES != 0 {
            let count = self.u32_at(p).ok_or(truncated.clone())?;
            p += 4;
            // Each value takes at least 5 bytes: bound the count by the file.
            if count as usize > (self.bytes.len() - p.min(self.bytes.len())) / 5 {
                return Err(truncated);
            }
            values.reserve(count as usize);
            for _ in 0..count {
                let priority = self.u32_at(p).ok_or(truncated.clone())?;
                let value = self.string_at(p + 4).ok_or(truncated.clone())?;
                p = value.1 + 1;
                values.push((priority, value));
            }
        }
        Ok(Some(Node {
            offset,
            prefix,
            first,
            last,
            children,
            values,
        }))
    }

    fn prefix<'s>(&'s self, node: &Node) -> &'s [u8] {
        &self.bytes[node.prefix.0..node.prefix.1]
    }

    fn child_offset(&self, node: &Node, ch: u8) -> Option<u32> {
        if node.first <= ch && ch <= node.last {
            self.u32_at(node.children + 4 * usize::from(ch - node.first))
        } else {
            None
        }
    }

    /// The child on byte `ch`. Opening checked every node, so a failure
    /// here cannot happen; it reads as "no child".
    fn child(&self, node: &Node, ch: u8) -> Option<Node> {
        self.node(self.child_offset(node, ch)?).ok().flatten()
    }

    fn root(&self) -> Option<Node> {
        self.node(self.root).ok().flatten()
    }

    fn value<'s>(&'s self, (priority, (start, end)): (u32, (usize, usize))) -> Value<'s> {
        Value {
            priority,
            value: &self.bytes[start..end],
        }
    }

    /// The node's values in the order libkmod's reader holds them.
    fn node_values(&self, node: &Node, mode: ReadMode) -> Vec<Value<'_>> {
        let stored = node.values.iter().map(|&v| self.value(v));
        match mode {
            ReadMode::Mapped => stored.collect(),
            ReadMode::Streamed => {
                let mut sorted = Vec::with_capacity(node.values.len());
                for v in stored {
                    add_value(&mut sorted, v);
                }
                sorted
            }
        }
    }

    /// Walks every node once, checking each; iterative, so deep tries
    /// cannot exhaust the stack.
    fn validate(&self) -> Result<(), Corruption> {
        let mut seen = std::collections::HashSet::new();
        let mut stack = vec![(self.root, 0usize)];
        while let Some((flagged, depth)) = stack.pop() {
            let Some(node) = self.node(flagged)? else {
                continue;
            };
            if !seen.insert(node.offset) {
                return Err(Corruption::Shared {
                    offset: node.offset,
                });
            }
            let depth = depth + self.prefix(&node).len();
            if depth > MAX_KEY_LEN {
                return Err(Corruption::KeyTooLong);
            }
            for ch in node.first..=node.last {
                if let Some(child) = self.child_offset(&node, ch) {
                    stack.push((child, depth + 1));
                }
            }
        }
        Ok(())
    }

    /// Every value with its key, keys in byte order (the trie's order),
    /// each key's values in file order (ascending priority). The keys listed
    /// may total at most 256 times the file's size plus 1 MiB, which no
    /// index written by depmod comes near.
    pub fn entries(&self) -> Result<Vec<Entry>, IndexReadError> {
        let limit = self.bytes.len().saturating_mul(256).saturating_add(1 << 20);
        let mut out = Vec::new();
        let mut emitted = 0usize;
        // (node, key length before the node's prefix); the key is rebuilt
        // as the walk goes down.
        let mut key: Vec<u8> = Vec::new();
        let mut stack: Vec<(u32, usize, Option<u8>)> = vec![(self.root, 0, None)];
        while let Some((flagged, depth, branch)) = stack.pop() {
            let node = match self.node(flagged) {
                Ok(Some(node)) => node,
                Ok(None) => continue,
                Err(problem) => return Err(self.error(problem)),
            };
            key.truncate(depth);
            key.extend(branch);
            key.extend_from_slice(self.prefix(&node));
            if key.len() > MAX_KEY_LEN {
                return Err(self.error(Corruption::KeyTooLong));
            }
            for &v in &node.values {
                emitted = emitted.saturating_add(key.len());
                if emitted > limit {
                    return Err(self.error(Corruption::TooMuchOutput { limit }));
                }
                let v = self.value(v);
                out.push(Entry {
                    key: key.clone(),
                    priority: v.priority,
                    value: v.value.to_vec(),
                });
            }
            let here = key.len();
            for ch in (node.first..=node.last).rev() {
                if let Some(child) = self.child_offset(&node, ch) {
                    stack.push((child, here, Some(ch)));
                }
            }
        }
        Ok(out)
    }

    /// The first value stored under exactly `key`, as libkmod's
    /// `index_search` returns it.
    pub fn search(&self, key: &[u8], mode: ReadMode) -> Option<&[u8]> {
        let mut node = self.root()?;
        let mut i = 0;
        loop {
            let prefix = self.prefix(&node);
            if key.get(i..i + prefix.len()) != Some(prefix) {
                return None;
            }
            i += prefix.len();
            let Some(&ch) = key.get(i) else {
                return self.node_values(&node, mode).first().map(|v| v.value);
            };
            node = self.child(&node, ch)?;
            i += 1;
        }
    }

    /// Every value whose key, read as an fnmatch pattern, matches `key`, in
    /// the order libkmod's `index_searchwild` returns them: by priority, and
    /// among equal priorities as its reader in `mode` leaves them.
    pub fn search_wild(&self, key: &[u8], mode: ReadMode) -> Vec<Value<'_>> {
        let mut out = Vec::new();
        let Some(mut node) = self.root() else {
            return out;
        };
        let mut key = key;
        loop {
            let prefix = self.prefix(&node);
            for (j, &ch) in prefix.iter().enumerate() {
                if matches!(ch, b'*' | b'?' | b'[') {
                    let pattern = prefix[j..].to_vec();
                    let subkey = key.get(j..).unwrap_or(&[]);
                    self.wild_subtree(node, pattern, true, subkey, mode, &mut out);
                    return out;
                }
                if key.get(j) != Some(&ch) {
                    return out;
                }
            }
            key = &key[prefix.len()..];
            for wild in [b'*', b'?', b'['] {
                if let Some(child) = self.child(&node, wild) {
                    self.wild_subtree(child, vec![wild], false, key, mode, &mut out);
                }
            }
            let Some((&ch, rest)) = key.split_first() else {
                for v in self.node_values(&node, mode) {
                    add_value(&mut out, v);
                }
                return out;
            };
            match self.child(&node, ch) {
                Some(child) => node = child,
                None => return out,
            }
            key = rest;
        }
    }

    /// libkmod's `index_searchwild__all`: every node under `top` whose
    /// pattern (`pattern`, then the path below) matches `subkey`, children
    /// before their parent. `pattern` holds `top`'s prefix (or the part of
    /// it from the first wildcard) when `prefix_pushed`.
    fn wild_subtree<'s>(
        &'s self,
        top: Node,
        pattern: Vec<u8>,
        prefix_pushed: bool,
        subkey: &[u8],
        mode: ReadMode,
        out: &mut Vec<Value<'s>>,
    ) {
        enum Step {
            Enter(Node, usize, Option<u8>, bool),
            Leave(Node, usize),
        }
        let mut buf = pattern;
        // `Enter(node, buf length before it, branch byte, prefix pushed)`.
        let base = buf.len();
        let mut stack = vec![Step::Enter(top, base, None, prefix_pushed)];
        while let Some(step) = stack.pop() {
            match step {
                Step::Enter(node, depth, branch, prefix_pushed) => {
                    buf.truncate(depth);
                    buf.extend(branch);
                    if !prefix_pushed {
                        buf.extend_from_slice(self.prefix(&node));
                    }
                    let here = buf.len();
                    let children: Vec<(u8, Node)> = (node.first..=node.last)
                        .filter_map(|ch| Some((ch, self.child(&node, ch)?)))
                        .collect();
                    stack.push(Step::Leave(node, here));
                    for (ch, child) in children.into_iter().rev() {
                        stack.push(Step::Enter(child, here, Some(ch), false));
                    }
                }
                Step::Leave(node, here) => {
                    buf.truncate(here);
                    if !node.values.is_empty() && fnmatch(&buf, subkey) {
                        for v in self.node_values(&node, mode) {
                            add_value(out, v);
                        }
                    }
                }
            }
        }
    }
}

/// libkmod's `add_value`: before the first value whose priority is not
/// lower, so that among equals the newest comes first.
fn add_value<'a>(list: &mut Vec<Value<'a>>, v: Value<'a>) {
    let pos = list.partition_point(|x| x.priority < v.priority);
    list.insert(pos, v);
}

fn check_header(bytes: &[u8]) -> Result<u32, Corruption> {
    let word = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    if bytes.len() < HEADER_LEN as usize {
        return Err(Corruption::TooShort { len: bytes.len() });
    }
    let magic = word(0);
    if magic != MAGIC {
        return Err(Corruption::BadMagic { found: magic });
    }
    let version = word(4);
    if version >> 16 != MAJOR_VERSION {
        return Err(Corruption::BadVersion { found: version });
    }
    Ok(word(8))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::trie::Trie;

    fn sample() -> Trie {
        let mut t = Trie::new();
        for (k, v, p) in [
            ("pci:v00008086d*", "e1000e", 3),
            ("pci:v00008086d0000100E*", "e1000", 1),
            ("pci:v0000*", "generic", 9),
            ("usb:v1234p?", "usbthing", 4),
            ("fs_vfat", "vfat", 2),
            ("fs_vfat", "vfat2", 2),
            ("acpi[0-9]x", "acpi_x", 5),
            ("a", "short", 0),
        ] {
            t.insert(k.as_bytes(), v.as_bytes(), p).unwrap();
        }
        t
    }

    fn both_layouts() -> Vec<BinIndex> {
        [Layout::ParentFirst, Layout::ChildrenFirst]
            .into_iter()
            .map(|l| BinIndex::parse(sample().encode(l).unwrap(), "sample.bin").unwrap())
            .collect()
    }

    #[test]
    fn reads_both_layouts_alike() {
        let [parent, children] = both_layouts().try_into().unwrap();
        assert_eq!(parent.layout(), Some(Layout::ParentFirst));
        assert_eq!(children.layout(), Some(Layout::ChildrenFirst));
        assert_eq!(parent.entries().unwrap(), children.entries().unwrap());
        let keys: Vec<Vec<u8>> = parent
            .entries()
            .unwrap()
            .into_iter()
            .map(|e| e.key)
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(keys.len(), 8);
    }

    #[test]
    fn exact_search_and_tie_order() {
        for index in both_layouts() {
            assert_eq!(index.search(b"a", ReadMode::Mapped), Some(&b"short"[..]));
            assert_eq!(index.search(b"fs_vfa", ReadMode::Mapped), None);
            // Equal priorities: stored newest first; the streaming reader
            // reverses them.
            assert_eq!(
                index.search(b"fs_vfat", ReadMode::Mapped),
                Some(&b"vfat2"[..])
            );
            assert_eq!(
                index.search(b"fs_vfat", ReadMode::Streamed),
                Some(&b"vfat"[..])
            );
        }
    }

    #[test]
    fn wildcard_search() {
        for index in both_layouts() {
            let names = |key: &str| -> Vec<String> {
                index
                    .search_wild(key.as_bytes(), ReadMode::Mapped)
                    .iter()
                    .map(|v| String::from_utf8_lossy(v.value).into_owned())
                    .collect()
            };
            assert_eq!(
                names("pci:v00008086d0000100Esv0"),
                ["e1000", "e1000e", "generic"]
            );
            assert_eq!(names("usb:v1234pZ"), ["usbthing"]);
            assert_eq!(names("usb:v1234pZZ"), Vec::<String>::new());
            assert_eq!(names("acpi7x"), ["acpi_x"]);
            assert_eq!(names("fs_vfat"), ["vfat", "vfat2"]);
        }
    }

    #[test]
    fn empty_index() {
        let index = BinIndex::parse(Trie::new().encode(Layout::ParentFirst).unwrap(), "e").unwrap();
        assert!(index.entries().unwrap().is_empty());
        assert_eq!(index.search(b"", ReadMode::Mapped), None);
        assert!(index.search_wild(b"x", ReadMode::Mapped).is_empty());
        assert_eq!(index.layout(), None);
    }

    fn header(root: u32) -> Vec<u8> {
        let mut b = MAGIC.to_be_bytes().to_vec();
        b.extend_from_slice(&0x0002_0001u32.to_be_bytes());
        b.extend_from_slice(&root.to_be_bytes());
        b
    }

    fn problem(bytes: Vec<u8>) -> Corruption {
        BinIndex::parse(bytes, "hostile.bin").unwrap_err().problem
    }

    #[test]
    fn rejects_bad_headers() {
        assert_eq!(problem(vec![0xB0, 0x07]), Corruption::TooShort { len: 2 });
        let mut b = header(12);
        b[0] = 0;
        assert!(matches!(problem(b), Corruption::BadMagic { .. }));
        let mut b = header(12);
        b[4..8].copy_from_slice(&0x0001_0002u32.to_be_bytes());
        assert!(matches!(problem(b), Corruption::BadVersion { .. }));
        assert!(!BinIndex::header_ok(&[]));
        let err = BinIndex::parse(vec![1, 2, 3], "x/modules.dep.bin").unwrap_err();
        assert!(err.to_string().starts_with("x/modules.dep.bin: "), "{err}");
    }

    #[test]
    fn rejects_offsets_out_of_range() {
        assert_eq!(
            problem(header(FLAG_VALUES | 1000)),
            Corruption::OutOfRange { offset: 1000 }
        );
        // A child pointer past the end.
        let mut b = header(FLAG_CHILDS | 12);
        b.extend_from_slice(b"aa");
        b.extend_from_slice(&(FLAG_VALUES | 0x0FFF_FFFF).to_be_bytes());
        assert!(matches!(problem(b), Corruption::OutOfRange { .. }));
    }

    #[test]
    fn rejects_truncated_nodes() {
        // A prefix without its NUL.
        let mut b = header(FLAG_PREFIX | 12);
        b.extend_from_slice(b"abc");
        assert!(matches!(problem(b), Corruption::Truncated { .. }));
        // A child table longer than the file.
        let mut b = header(FLAG_CHILDS | 12);
        b.extend_from_slice(&[b'a', b'z', 0, 0]);
        assert!(matches!(problem(b), Corruption::Truncated { .. }));
        // A value count far beyond what the file holds.
        let mut b = header(FLAG_VALUES | 12);
        b.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(problem(b), Corruption::Truncated { .. }));
        // A value without its NUL.
        let mut b = header(FLAG_VALUES | 12);
        b.extend_from_slice(&1u32.to_be_bytes());
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(b"oops");
        assert!(matches!(problem(b), Corruption::Truncated { .. }));
    }

    #[test]
    fn rejects_bad_child_ranges() {
        let mut b = header(FLAG_CHILDS | 12);
        b.extend_from_slice(b"za");
        assert!(matches!(problem(b), Corruption::BadChildRange { .. }));
        let mut b = header(FLAG_CHILDS | 12);
        b.extend_from_slice(&[0x80, 0x81, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(matches!(problem(b), Corruption::BadChildRange { .. }));
        // A branch on NUL would put a NUL inside a key (found by fuzzing:
        // the key could not be written back).
        let mut b = header(FLAG_CHILDS | 12);
        b.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            problem(b),
            Corruption::BadChildRange {
                offset: 12,
                first: 0,
                last: 1
            }
        );
    }

    #[test]
    fn rejects_loops_and_shared_nodes() {
        // The root is its own child.
        let mut b = header(FLAG_CHILDS | 12);
        b.extend_from_slice(b"aa");
        b.extend_from_slice(&(FLAG_CHILDS | 12).to_be_bytes());
        assert_eq!(problem(b), Corruption::Shared { offset: 12 });
        // Two slots pointing at one node (a DAG: exponential walks).
        let mut b = header(FLAG_CHILDS | 12);
        b.extend_from_slice(b"ab");
        b.extend_from_slice(&(FLAG_VALUES | 22).to_be_bytes());
        b.extend_from_slice(&(FLAG_VALUES | 22).to_be_bytes());
        b.extend_from_slice(&1u32.to_be_bytes());
        b.extend_from_slice(&7u32.to_be_bytes());
        b.extend_from_slice(b"v\0");
        assert_eq!(problem(b), Corruption::Shared { offset: 22 });
    }

    #[test]
    fn rejects_overlong_keys() {
        // A chain of nodes, each with a one-byte branch and a long prefix.
        let mut b = header(0);
        let mut next = 12u32;
        b[8..12].copy_from_slice(&(FLAG_PREFIX | FLAG_CHILDS | next).to_be_bytes());
        for _ in 0..40 {
            let prefix = vec![b'x'; 500];
            let node_len = prefix.len() as u32 + 1 + 2 + 4;
            next += node_len;
            b.extend_from_slice(&prefix);
            b.push(0);
            b.extend_from_slice(b"yy");
            b.extend_from_slice(&(FLAG_PREFIX | FLAG_CHILDS | next).to_be_bytes());
        }
        b.extend_from_slice(b"end\0aa\0\0\0\0");
        assert_eq!(problem(b), Corruption::KeyTooLong);
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut next = crate::util::xorshift(0x9E37_79B9_7F4A_7C15u64);
        let good = sample().encode(Layout::ParentFirst).unwrap();
        for round in 0..20_000 {
            let mut b = good.clone();
            // Flip a few bytes after the magic and version.
            for _ in 0..1 + round % 4 {
                let at = 8 + (next() as usize) % (b.len() - 8);
                b[at] = next() as u8;
            }
            if let Ok(index) = BinIndex::parse(b, "fuzz") {
                let _ = index.entries();
                let _ = index.search(b"pci:v00008086d0000100E", ReadMode::Streamed);
                let _ = index.search_wild(b"pci:v00008086d0000100Esv", ReadMode::Mapped);
                let _ = index.layout();
            }
        }
    }
}
