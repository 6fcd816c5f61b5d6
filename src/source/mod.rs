//! Where the input comes from: a filesystem tree seen through [`Tree`].
//!
//! The pipeline never touches the host filesystem directly. It asks a `Tree`
//! for directory listings and file contents by path relative to the tree's
//! root, so a directory and an archive can stand behind the same interface.
//!
//! This stage knows nothing of what a module holds: an archive, which is
//! read once, hands each module's bytes to the caller's [`ModuleParser`]
//! while they go by and keeps only the result.

pub mod archive;
pub mod dir;
pub mod input;
pub mod record;
pub mod stream;

use std::io;
use std::ops::Deref;

pub use archive::{ArchiveOptions, ArchiveTree};
pub use dir::DirTree;
pub use input::{open_input, Input, InputError, STDIN};

/// What an archive does with each module file while it streams past: the
/// bytes are gone afterwards, so whatever is needed of them is made here.
pub trait ModuleParser: Sync {
    /// What is kept of one module.
    type Parsed: Send;
    /// Largest module file accepted, in bytes; a larger one is not read
    /// (and becomes [`ModuleParser::unread`]).
    fn max_size(&self) -> u64;
    /// Makes what is kept from a module file's bytes.
    fn parse(&self, bytes: &[u8]) -> Self::Parsed;
    /// What is kept of a module that could not be read, and why.
    fn unread(&self, reason: String) -> Self::Parsed;
    /// What is kept of a module refused unread (over the size limit).
    fn refused(&self, reason: crate::util::Refused) -> Self::Parsed;
}

/// Identifies a directory, so that a walk following symlinks can tell when it
/// comes back to one it has seen.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DirId {
    /// Device and inode of a directory on disk.
    Inode(u64, u64),
    /// The canonical path of a directory in an archive.
    Path(Vec<u8>),
}

/// What a directory entry is, after following symlinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// Devices, sockets, FIFOs and dangling links: never modules.
    Other,
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's name (one path component).
    pub name: Vec<u8>,
    /// What it is, after following symlinks.
    pub kind: EntryKind,
}

/// File contents: mapped from disk or held in memory.
pub enum Contents {
    /// A file mapped from disk.
    Mapped(memmap2::Mmap),
    /// Bytes in memory.
    Owned(Vec<u8>),
}

impl Deref for Contents {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Contents::Mapped(m) => m,
            Contents::Owned(v) => v,
        }
    }
}

/// A read-only tree of files, addressed by `/`-separated paths relative to
/// its root (no leading `/`, no `.` or `..` components).
pub trait Tree: Sync {
    /// Entries of the directory at `path`, sorted by name bytes. Symlinks are
    /// followed, so a link to a directory is reported as a directory.
    fn read_dir(&self, path: &[u8]) -> io::Result<Vec<DirEntry>>;

    /// Full contents of the file at `path` (following symlinks).
    fn read(&self, path: &[u8]) -> io::Result<Contents>;

    /// Kind of the entry at `path` after following symlinks, if it exists.
    fn kind(&self, path: &[u8]) -> Option<EntryKind>;

    /// Where the symlink at `path` points, if `path` itself is a symlink.
    fn link_target(&self, path: &[u8]) -> Option<Vec<u8>>;

    /// The identity of the directory at `path` (following symlinks), if it
    /// is one.
    fn dir_id(&self, path: &[u8]) -> Option<DirId>;

    /// A human-readable name for `path`, for messages.
    fn display(&self, path: &[u8]) -> String;

    /// Size and SHA-256 of the file at `path` (following symlinks). A
    /// streaming tree computes them while its input goes by.
    fn digest(&self, path: &[u8]) -> io::Result<(u64, [u8; 32])> {
        use sha2::Digest;
        let bytes = self.read(path)?;
        Ok((bytes.len() as u64, sha2::Sha256::digest(&*bytes).into()))
    }

    /// Whether the file at `path` has an execute bit set.
    fn executable(&self, _path: &[u8]) -> bool {
        false
    }
}

/// The longest of `dir` and its ancestors (`a/b/c`, `a/b`, `a`) that
/// `cached` knows, with the part of `dir` below it: where resolving a
/// directory can start, so that a walk down a deep tree resolves one
/// component a level rather than the whole path again. Both tree readers
/// cache resolved directories this way.
pub(crate) fn nearest_cached<T>(
    dir: &[u8],
    cached: impl Fn(&[u8]) -> Option<T>,
) -> Option<(T, &[u8])> {
    let mut end = dir.len();
    while end > 0 {
        if let Some(hit) = cached(&dir[..end]) {
            let rest = dir.get(end + 1..).unwrap_or_default();
            return Some((hit, rest));
        }
        end = dir[..end].iter().rposition(|&b| b == b'/').unwrap_or(0);
    }
    None
}

/// Joins tree-relative path pieces with `/`, skipping empty ones.
pub fn join(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts.iter().filter(|p| !p.is_empty()) {
        if !out.is_empty() {
            out.push(b'/');
        }
        out.extend_from_slice(part);
    }
    out
}

#[cfg(test)]
mod nearest_cached_tests {
    use super::nearest_cached;

    #[test]
    fn finds_the_longest_cached_ancestor_and_the_rest() {
        let cached = |known: &'static [&'static str]| {
            move |d: &[u8]| known.iter().position(|k| k.as_bytes() == d)
        };
        let dir = b"a/b/c".as_slice();
        assert_eq!(
            nearest_cached(dir, cached(&["a", "a/b/c"])),
            Some((1, &b""[..]))
        );
        assert_eq!(
            nearest_cached(dir, cached(&["a", "x"])),
            Some((0, &b"b/c"[..]))
        );
        assert_eq!(nearest_cached(dir, cached(&["a/b"])), Some((0, &b"c"[..])));
        assert_eq!(nearest_cached(dir, cached(&["b/c"])), None);
        assert_eq!(nearest_cached(b"", cached(&[""])), None);
    }
}
