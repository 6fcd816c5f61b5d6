//! Where the input comes from: a filesystem tree seen through [`Tree`].
//!
//! The pipeline never touches the host filesystem directly. It asks a `Tree`
//! for directory listings and file contents by path relative to the tree's
//! root, so a directory and an archive can stand behind the same interface.

pub mod archive;
pub mod dir;
pub mod input;
pub mod record;
pub mod stream;

use std::io;
use std::ops::Deref;

use crate::module::{LoadError, ModuleMeta};

pub use archive::{ArchiveOptions, ArchiveTree};
pub use dir::DirTree;
pub use input::{open_input, Input, InputError};

/// What a directory entry is, after following symlinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    /// Devices, sockets, FIFOs and dangling links: never modules.
    Other,
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: Vec<u8>,
    pub kind: EntryKind,
}

/// File contents: mapped from disk or held in memory.
pub enum Contents {
    Mapped(memmap2::Mmap),
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

    /// A human-readable name for `path`, for messages.
    fn display(&self, path: &[u8]) -> String;

    /// What depmod needs from the module file at `path`. By default the file
    /// is read and parsed on demand; a tree that streams its input (an
    /// archive) can parse modules as they go by and return the stored result.
    fn module_meta(&self, path: &[u8], decompress_limit: u64) -> ModuleMeta {
        match self.read(path) {
            Ok(bytes) => ModuleMeta::from_file_bytes(&bytes, decompress_limit),
            Err(e) => ModuleMeta::failed(LoadError::Io(crate::util::io_reason(&e))),
        }
    }

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
