//! The binary index format of `modules.*.bin` (kmod's "index v2.1").
//!
//! A radix trie: every node has an optional compressed prefix, an optional
//! child table covering the byte range `first..=last`, and an optional list of
//! `(priority, value)` pairs. Offsets are big-endian `u32`s whose top nibble
//! flags which parts the target node has.
//!
//! Node *contents* are fully determined by the inserted keys and the order in
//! which values were added, so we mirror kmod's insertion rules exactly
//! (including where a value of equal priority lands). Node *placement* differs
//! between kmod releases, see [`Layout`].

use std::fmt;

/// The file's first word.
pub(crate) const MAGIC: u32 = 0xB007_F457;
/// Format version 2.1 (major in the high half).
pub(crate) const VERSION: u32 = 0x0002_0001;
/// Flag of a node offset: the node has a prefix.
pub(crate) const FLAG_PREFIX: u32 = 0x8000_0000;
/// Flag of a node offset: the node has values.
pub(crate) const FLAG_VALUES: u32 = 0x4000_0000;
/// Flag of a node offset: the node has a child table.
pub(crate) const FLAG_CHILDS: u32 = 0x2000_0000;
/// Offsets keep their top nibble for flags.
pub(crate) const OFFSET_MASK: u32 = 0x0FFF_FFFF;
/// Size of the file header: magic, version and root offset.
pub(crate) const HEADER_LEN: u32 = 12;
/// Child tables cover 7-bit ASCII only: keys are bytes below this.
pub(crate) const CHILD_MAX: u8 = 128;

/// Where nodes are placed in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// kmod 34 and later: each node before its children (pre-order).
    ParentFirst,
    /// kmod 33 and older: children before their parent (post-order).
    ChildrenFirst,
}

/// A key byte kmod's format cannot store: one outside 7-bit ASCII (kmod's
/// child table has 128 slots; kmod itself indexes out of bounds), or a NUL
/// (keys are C strings: the NUL would end the key in the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonAsciiKey {
    /// The key.
    pub key: Vec<u8>,
}

impl fmt::Display for NonAsciiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "index key {:?} has a NUL byte or a byte outside 7-bit ASCII",
            String::from_utf8_lossy(&self.key)
        )
    }
}

impl std::error::Error for NonAsciiKey {}

/// An index bigger than the 256 MiB its offsets can address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("index of {bytes} bytes exceeds the format's 256 MiB limit")]
pub struct IndexTooLarge {
    /// Size the index would have.
    pub bytes: u64,
}

/// Bytes of [`Trie::bytes`]: prefixes and values live there, back to back,
/// rather than in an allocation each (an index has tens of thousands of
/// nodes), and a split only cuts a prefix's span in two.
#[derive(Clone, Copy, Default)]
struct Span {
    start: usize,
    len: usize,
}

#[derive(Default)]
struct Node {
    prefix: Span,
    /// Children sorted by their branch byte.
    children: Vec<(u8, usize)>,
    /// Values in file order: ascending priority, newest first among equals.
    values: Vec<(u32, Span)>,
}

/// An in-memory index, built by [`Trie::insert`] and encoded by [`Trie::encode`].
pub struct Trie {
    nodes: Vec<Node>,
    bytes: Vec<u8>,
}

impl Default for Trie {
    fn default() -> Self {
        Self::new()
    }
}

impl Trie {
    /// An empty trie.
    pub fn new() -> Self {
        Trie {
            nodes: vec![Node::default()],
            bytes: Vec::new(),
        }
    }

    fn span(&self, span: Span) -> &[u8] {
        &self.bytes[span.start..span.start + span.len]
    }

    fn store(&mut self, bytes: &[u8]) -> Span {
        let span = Span {
            start: self.bytes.len(),
            len: bytes.len(),
        };
        self.bytes.extend_from_slice(bytes);
        span
    }

    /// Adds `value` under `key`. Returns `Ok(true)` when the key already held
    /// an identical value (kmod reports these with `-w`).
    pub fn insert(&mut self, key: &[u8], value: &[u8], priority: u32) -> Result<bool, NonAsciiKey> {
        if key.iter().any(|&b| b == 0 || b >= CHILD_MAX) {
            return Err(NonAsciiKey { key: key.to_vec() });
        }
        let mut node = 0;
        let mut i = 0;
        loop {
            // Make the node's prefix a prefix of the rest of the key, splitting
            // the node where they diverge.
            let prefix = self.nodes[node].prefix;
            let common = self
                .span(prefix)
                .iter()
                .zip(&key[i..])
                .take_while(|(a, b)| a == b)
                .count();
            if common < prefix.len {
                self.split(node, common);
            }
            i += common;

            let Some(&ch) = key.get(i) else {
                return Ok(self.add_value(node, value, priority));
            };
            match self.child(node, ch) {
                Some(next) => {
                    node = next;
                    i += 1;
                }
                None => {
                    let child = self.nodes.len();
                    let prefix = self.store(&key[i + 1..]);
                    let value = self.store(value);
                    self.nodes.push(Node {
                        prefix,
                        children: Vec::new(),
                        values: vec![(priority, value)],
                    });
                    let children = &mut self.nodes[node].children;
                    let pos = children.partition_point(|&(c, _)| c < ch);
                    children.insert(pos, (ch, child));
                    return Ok(false);
                }
            }
        }
    }

    fn child(&self, node: usize, ch: u8) -> Option<usize> {
        let children = &self.nodes[node].children;
        children
            .binary_search_by_key(&ch, |&(c, _)| c)
            .ok()
            .map(|pos| children[pos].1)
    }

    /// Splits `node` after `at` prefix bytes: the node keeps the head of its
    /// prefix and gets a single child holding everything it had before.
    fn split(&mut self, node: usize, at: usize) {
        let old = std::mem::take(&mut self.nodes[node]);
        let branch = self.bytes[old.prefix.start + at];
        let tail = Node {
            prefix: Span {
                start: old.prefix.start + at + 1,
                len: old.prefix.len - at - 1,
            },
            children: old.children,
            values: old.values,
        };
        let tail_id = self.nodes.len();
        self.nodes.push(tail);
        let head = &mut self.nodes[node];
        head.prefix = Span {
            start: old.prefix.start,
            len: at,
        };
        head.children = vec![(branch, tail_id)];
    }

    /// Inserts before the first value whose priority is not lower, as kmod
    /// does; returns whether an identical value was already present.
    fn add_value(&mut self, node: usize, value: &[u8], priority: u32) -> bool {
        let duplicate = self.nodes[node]
            .values
            .iter()
            .any(|&(_, v)| self.span(v) == value);
        let span = self.store(value);
        let values = &mut self.nodes[node].values;
        let pos = values.partition_point(|(p, _)| *p < priority);
        values.insert(pos, (priority, span));
        duplicate
    }

    /// Encodes the index in kmod's file format with the given node layout.
    /// Fails only when the index would not fit the format's 28-bit offsets.
    pub fn encode(&self, layout: Layout) -> Result<Vec<u8>, IndexTooLarge> {
        let sizes = self.node_sizes();
        let total = u64::from(HEADER_LEN) + sizes[0].total;
        if total > u64::from(OFFSET_MASK) {
            return Err(IndexTooLarge { bytes: total });
        }
        let mut out = Vec::with_capacity(total as usize);
        out.extend_from_slice(&MAGIC.to_be_bytes());
        out.extend_from_slice(&VERSION.to_be_bytes());
        match layout {
            Layout::ParentFirst => {
                out.extend_from_slice(&(HEADER_LEN | self.flags(0)).to_be_bytes());
                self.write_parent_first(&sizes, &mut out);
            }
            Layout::ChildrenFirst => {
                out.extend_from_slice(&[0; 4]);
                let root = self.write_children_first(&mut out);
                out[8..12].copy_from_slice(&root.to_be_bytes());
            }
        }
        Ok(out)
    }

    fn flags(&self, node: usize) -> u32 {
        let n = &self.nodes[node];
        let mut flags = 0;
        if !n.children.is_empty() {
            flags |= FLAG_CHILDS;
        }
        if n.prefix.len > 0 {
            flags |= FLAG_PREFIX;
        }
        if !n.values.is_empty() {
            flags |= FLAG_VALUES;
        }
        flags
    }

    /// Byte size of each node alone and of its whole subtree.
    fn node_sizes(&self) -> Vec<NodeSize> {
        let mut sizes = vec![NodeSize::default(); self.nodes.len()];
        // Post-order without recursion: a node is sized once all its
        // children are (ids say nothing about depth after splits).
        let mut stack = vec![(0usize, false)];
        while let Some((id, children_done)) = stack.pop() {
            let n = &self.nodes[id];
            if !children_done {
                stack.push((id, true));
                stack.extend(n.children.iter().map(|&(_, c)| (c, false)));
                continue;
            }
            let mut own = 0u64;
            let mut total = 0u64;
            if let (Some(first), Some(last)) = (n.children.first(), n.children.last()) {
                own += 2 + 4 * (u64::from(last.0 - first.0) + 1);
                total += n.children.iter().map(|&(_, c)| sizes[c].total).sum::<u64>();
            }
            if n.prefix.len > 0 {
                own += n.prefix.len as u64 + 1;
            }
            if !n.values.is_empty() {
                own += 4;
                own += n
                    .values
                    .iter()
                    .map(|(_, v)| 4 + v.len as u64 + 1)
                    .sum::<u64>();
            }
            // Saturating: `encode` rejects an index this large anyway.
            sizes[id] = NodeSize {
                own: u32::try_from(own).unwrap_or(u32::MAX),
                total: total + own,
            };
        }
        sizes
    }

    /// Pre-order: each node, then its children in byte order. Offsets are
    /// known up front from the subtree sizes. Iterative, so deep tries
    /// cannot exhaust the stack.
    fn write_parent_first(&self, sizes: &[NodeSize], out: &mut Vec<u8>) {
        let mut stack = vec![(0usize, HEADER_LEN)];
        let mut child_offsets = Vec::new();
        while let Some((id, offset)) = stack.pop() {
            debug_assert_eq!(out.len() as u32, offset);
            let children = &self.nodes[id].children;
            child_offsets.clear();
            // `encode` checked that every offset fits in 28 bits.
            let mut next = offset + sizes[id].own;
            for &(_, child) in children {
                child_offsets.push((child, next));
                next += sizes[child].total as u32;
            }
            let flagged: Vec<u32> = child_offsets
                .iter()
                .map(|&(c, off)| off | self.flags(c))
                .collect();
            self.write_node_body(id, &flagged, out);
            stack.extend(child_offsets.iter().rev().copied());
        }
    }

    /// Post-order: children (in byte order) before their parent, each
    /// offset being where the node landed. Returns the root's flagged offset.
    fn write_children_first(&self, out: &mut Vec<u8>) -> u32 {
        let mut written = vec![0u32; self.nodes.len()];
        let mut stack = vec![(0usize, false)];
        while let Some((id, children_done)) = stack.pop() {
            let children = &self.nodes[id].children;
            if !children_done {
                stack.push((id, true));
                stack.extend(children.iter().rev().map(|&(_, c)| (c, false)));
                continue;
            }
            let child_offsets: Vec<u32> = children.iter().map(|&(_, c)| written[c]).collect();
            written[id] = out.len() as u32 | self.flags(id);
            self.write_node_body(id, &child_offsets, out);
        }
        written[0]
    }

    /// Writes one node; `child_offsets` is parallel to `children`.
    fn write_node_body(&self, id: usize, child_offsets: &[u32], out: &mut Vec<u8>) {
        let n = &self.nodes[id];
        if n.prefix.len > 0 {
            out.extend_from_slice(self.span(n.prefix));
            out.push(0);
        }
        if let (Some(first), Some(last)) = (n.children.first(), n.children.last()) {
            out.push(first.0);
            out.push(last.0);
            let mut slots = n.children.iter().zip(child_offsets).peekable();
            for ch in first.0..=last.0 {
                match slots.next_if(|((c, _), _)| *c == ch) {
                    Some((_, off)) => out.extend_from_slice(&off.to_be_bytes()),
                    None => out.extend_from_slice(&[0; 4]),
                }
            }
        }
        if !n.values.is_empty() {
            out.extend_from_slice(&(n.values.len() as u32).to_be_bytes());
            for &(priority, value) in &n.values {
                out.extend_from_slice(&priority.to_be_bytes());
                out.extend_from_slice(self.span(value));
                out.push(0);
            }
        }
    }
}

#[derive(Clone, Copy, Default)]
struct NodeSize {
    own: u32,
    total: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_index_is_a_bare_root() {
        let bytes = Trie::new().encode(Layout::ParentFirst).unwrap();
        assert_eq!(bytes, [0xB0, 0x07, 0xF4, 0x57, 0, 2, 0, 1, 0, 0, 0, 12]);
        assert_eq!(Trie::new().encode(Layout::ChildrenFirst).unwrap(), bytes);
    }

    #[test]
    fn single_key() {
        let mut t = Trie::new();
        assert_eq!(t.insert(b"ab", b"v", 3), Ok(false));
        let bytes = t.encode(Layout::ParentFirst).unwrap();
        // root: childs flag, first='a', last='a', one offset.
        let mut want = vec![0xB0, 0x07, 0xF4, 0x57, 0, 2, 0, 1];
        want.extend_from_slice(&(12 | FLAG_CHILDS).to_be_bytes());
        want.extend_from_slice(b"aa");
        want.extend_from_slice(&(18 | FLAG_PREFIX | FLAG_VALUES).to_be_bytes());
        want.extend_from_slice(b"b\0");
        want.extend_from_slice(&1u32.to_be_bytes());
        want.extend_from_slice(&3u32.to_be_bytes());
        want.extend_from_slice(b"v\0");
        assert_eq!(bytes, want);
    }

    #[test]
    fn split_and_value_order() {
        let mut t = Trie::new();
        t.insert(b"abcd", b"x", 1).unwrap();
        t.insert(b"ab", b"y", 5).unwrap();
        t.insert(b"ab", b"z", 5).unwrap();
        assert_eq!(t.insert(b"ab", b"w", 2), Ok(false));
        assert_eq!(t.insert(b"ab", b"y", 9), Ok(true));
        // Node "ab": values sorted by priority, newest first among equals.
        let ab = t.nodes.iter().find(|n| n.values.len() == 4).unwrap();
        let order: Vec<&[u8]> = ab.values.iter().map(|&(_, v)| t.span(v)).collect();
        assert_eq!(order, [b"w".as_slice(), b"z", b"y", b"y"]);
    }

    #[test]
    fn rejects_non_ascii_keys() {
        assert!(Trie::new().insert(&[b'a', 0xc3], b"v", 0).is_err());
        // A NUL would end the key in the file, and shift what follows.
        assert!(Trie::new().insert(b"a\0b", b"v", 0).is_err());
        assert!(Trie::new().insert(&[0x7f], b"v", 0).is_ok());
    }
}
