//! A [`Tree`] wrapper that remembers which files the pipeline read, so that
//! the manifest can name (and hash) exactly the inputs that shaped the output.

use std::collections::BTreeSet;
use std::io;
use std::sync::Mutex;

use super::{Contents, DirEntry, DirId, EntryKind, Tree};

/// A tree that notes every file read through it.
pub struct Recording<'a> {
    inner: &'a dyn Tree,
    used: Mutex<BTreeSet<Vec<u8>>>,
}

impl<'a> Recording<'a> {
    /// Wraps `inner`.
    pub fn new(inner: &'a dyn Tree) -> Self {
        Recording {
            inner,
            used: Mutex::new(BTreeSet::new()),
        }
    }

    /// The files read so far, sorted by path bytes.
    pub fn used(&self) -> Vec<Vec<u8>> {
        let used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        used.iter().cloned().collect()
    }

    fn note(&self, path: &[u8]) {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        used.insert(path.to_vec());
    }
}

impl Tree for Recording<'_> {
    fn read_dir(&self, path: &[u8]) -> io::Result<Vec<DirEntry>> {
        self.inner.read_dir(path)
    }

    fn read(&self, path: &[u8]) -> io::Result<Contents> {
        let contents = self.inner.read(path)?;
        self.note(path);
        Ok(contents)
    }

    fn kind(&self, path: &[u8]) -> Option<EntryKind> {
        self.inner.kind(path)
    }

    fn dir_id(&self, path: &[u8]) -> Option<DirId> {
        self.inner.dir_id(path)
    }

    fn link_target(&self, path: &[u8]) -> Option<Vec<u8>> {
        self.inner.link_target(path)
    }

    fn display(&self, path: &[u8]) -> String {
        self.inner.display(path)
    }

    fn digest(&self, path: &[u8]) -> io::Result<(u64, [u8; 32])> {
        self.inner.digest(path)
    }

    fn executable(&self, path: &[u8]) -> bool {
        self.inner.executable(path)
    }
}
