//! Reading modules out of an input: by path from a directory, or as parsed
//! while an archive streamed past.

use foldhash::{HashMap, HashMapExt};
use std::cell::RefCell;
use std::io::Read;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use super::{LoadError, ModuleDigest, ModuleMeta};
use crate::source::{ArchiveTree, DirTree, Input, ModuleParser, Tree};

/// A per-thread read buffer larger than this is freed after use rather than
/// kept for the next module.
const KEEP_BUFFER: usize = 16 << 20;

/// Where the depmod stage gets each module's metadata from.
pub trait ModuleSource: Sync {
    /// What depmod needs from the module file at `path` (a path of the
    /// input tree). A module that cannot be read comes back as
    /// [`ModuleMeta::failed`].
    fn module_meta(&self, path: &[u8]) -> ModuleMeta;
}

/// Parses modules into [`ModuleMeta`] while an archive streams past.
#[derive(Debug, Clone, Copy)]
pub struct MetaParser {
    /// Largest module accepted, stored or decompressed, in bytes.
    pub max_module_size: u64,
    /// The digest to take of each module ([`ModuleMeta::digest`]).
    pub digest: ModuleDigest,
}

impl ModuleParser for MetaParser {
    type Parsed = ModuleMeta;

    fn max_size(&self) -> u64 {
        self.max_module_size
    }

    fn parse(&self, bytes: &[u8]) -> ModuleMeta {
        ModuleMeta::read_bytes(bytes, self.max_module_size, self.digest)
    }

    fn unread(&self, reason: String) -> ModuleMeta {
        ModuleMeta::failed(LoadError::Io(reason))
    }

    fn refused(&self, reason: crate::util::Refused) -> ModuleMeta {
        ModuleMeta::failed(LoadError::Refused(reason))
    }
}

/// Reads modules from an [`Input`], or from any [`Tree`].
pub struct ModuleReader<'a> {
    from: From<'a>,
    max_module_size: u64,
    hash: bool,
    digest: ModuleDigest,
    /// Digests of the directory modules read so far.
    digests: Mutex<HashMap<Vec<u8>, [u8; 32]>>,
}

enum From<'a> {
    Dir(&'a DirTree),
    Archive(&'a ArchiveTree<ModuleMeta>),
    Tree(&'a dyn Tree),
}

impl<'a> ModuleReader<'a> {
    /// Reads modules of `input`, each at most `max_module_size` bytes
    /// decompressed. Archive modules were parsed while it was opened (with
    /// [`MetaParser`]).
    pub fn new(input: &'a Input<ModuleMeta>, max_module_size: u64) -> Self {
        match input {
            Input::Dir(dir) => Self::dir(dir, max_module_size),
            Input::Archive(archive) => Self::from(From::Archive(archive), max_module_size),
        }
    }

    /// Reads modules of a directory tree.
    pub fn dir(tree: &'a DirTree, max_module_size: u64) -> Self {
        Self::from(From::Dir(tree), max_module_size)
    }

    /// Reads modules of any tree, whole, through [`Tree::read`].
    pub fn tree(tree: &'a dyn Tree, max_module_size: u64) -> Self {
        Self::from(From::Tree(tree), max_module_size)
    }

    fn from(from: From<'a>, max_module_size: u64) -> Self {
        ModuleReader {
            from,
            max_module_size,
            hash: false,
            digest: ModuleDigest::None,
            digests: Mutex::new(HashMap::new()),
        }
    }

    /// Also hashes directory modules while their bytes are at hand, so
    /// that [`Tree::digest`] needs no second read (off by default: without
    /// it, only the parts of each module depmod parses are read).
    pub fn hashing(mut self, on: bool) -> Self {
        self.hash = on;
        self
    }

    /// Also takes `digest` of each module, for [`ModuleReader::digest`]
    /// (none by default). Archive modules are digested while the archive is
    /// opened, as its [`MetaParser`] asks.
    pub fn digests(mut self, digest: ModuleDigest) -> Self {
        self.digest = digest;
        self
    }

    /// The digest ([`ModuleMeta::digest`]) of a module read so far; `None`
    /// when it was not read, not digested, or could not be read or
    /// decompressed.
    pub fn digest(&self, path: &[u8]) -> Option<[u8; 32]> {
        match &self.from {
            From::Archive(archive) => archive.parsed(path).ok()?.digest,
            From::Dir(_) | From::Tree(_) => self.digests.lock().ok()?.get(path).copied(),
        }
    }

    fn remember(&self, path: &[u8], meta: &ModuleMeta) {
        if let (Some(sha), Ok(mut digests)) = (meta.digest, self.digests.lock()) {
            digests.insert(path.to_vec(), sha);
        }
    }

    fn read_dir_module(&self, tree: &DirTree, path: &[u8]) -> ModuleMeta {
        thread_local! {
            // A reused buffer: cheaper than mapping thousands of small files.
            static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        }
        let limit = self.max_module_size;
        // Never blocks, refuses special files; the size is checked below.
        let (file, len) = match tree.open(path) {
            Ok(opened) => opened,
            Err(e) => return ModuleMeta::failed(LoadError::from_io(&e)),
        };
        BUFFER.with_borrow_mut(|buf| {
            let meta = if !self.hash {
                ModuleMeta::read_file(&file, len, buf, limit, self.digest)
            } else if len > limit {
                ModuleMeta::failed(LoadError::Refused(crate::util::Refused::TooLarge {
                    size: Some(len),
                    limit,
                    decompressed: false,
                }))
            } else {
                buf.clear();
                match (&file).take(len).read_to_end(buf) {
                    Ok(_) => {
                        let digest = (buf.len() as u64, Sha256::digest(&buf[..]).into());
                        tree.remember_digest(path, digest);
                        ModuleMeta::read_bytes(buf, limit, self.digest)
                    }
                    Err(e) => ModuleMeta::failed(LoadError::from_io(&e)),
                }
            };
            // One large module must not pin its size in every worker for
            // the rest of the run.
            if buf.capacity() > KEEP_BUFFER {
                *buf = Vec::new();
            }
            meta
        })
    }
}

impl ModuleSource for ModuleReader<'_> {
    fn module_meta(&self, path: &[u8]) -> ModuleMeta {
        let meta = match &self.from {
            From::Dir(tree) => self.read_dir_module(tree, path),
            From::Archive(archive) => {
                return match archive.parsed(path) {
                    Ok(meta) => meta.clone(),
                    Err(e) => ModuleMeta::failed(LoadError::from_io(&e)),
                }
            }
            From::Tree(tree) => match tree.read(path) {
                Ok(bytes) => ModuleMeta::read_bytes(&bytes, self.max_module_size, self.digest),
                Err(e) => ModuleMeta::failed(LoadError::from_io(&e)),
            },
        };
        self.remember(path, &meta);
        meta
    }
}
