//! A [`Tree`] backed by a real directory.

use std::fs;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use super::{Contents, DirEntry, EntryKind, Tree};

/// A directory on disk, read in place and never modified.
pub struct DirTree {
    root: PathBuf,
}

impl DirTree {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DirTree { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn host_path(&self, path: &[u8]) -> PathBuf {
        if path.is_empty() {
            self.root.clone()
        } else {
            self.root.join(std::ffi::OsStr::from_bytes(path))
        }
    }
}

fn kind_of(meta: &fs::Metadata) -> EntryKind {
    if meta.is_file() {
        EntryKind::File
    } else if meta.is_dir() {
        EntryKind::Dir
    } else {
        EntryKind::Other
    }
}

impl Tree for DirTree {
    fn read_dir(&self, path: &[u8]) -> io::Result<Vec<DirEntry>> {
        let dir = self.host_path(path);
        let mut entries = Vec::new();
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let file_type = entry.file_type()?;
            let kind = if file_type.is_symlink() {
                // A dangling link is not an error here: it is just not a module.
                fs::metadata(entry.path())
                    .map(|m| kind_of(&m))
                    .unwrap_or(EntryKind::Other)
            } else if file_type.is_file() {
                EntryKind::File
            } else if file_type.is_dir() {
                EntryKind::Dir
            } else {
                EntryKind::Other
            };
            entries.push(DirEntry {
                name: entry.file_name().into_vec(),
                kind,
            });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    fn read(&self, path: &[u8]) -> io::Result<Contents> {
        let file = fs::File::open(self.host_path(path))?;
        let len = file.metadata()?.len();
        if len == 0 {
            return Ok(Contents::Owned(Vec::new()));
        }
        // SAFETY: the tree is treated as read-only input; if another process
        // truncates a file while we map it, reading may fault, as with any
        // mmap-based reader (kmod included).
        let map = unsafe { memmap2::Mmap::map(&file)? };
        Ok(Contents::Mapped(map))
    }

    fn kind(&self, path: &[u8]) -> Option<EntryKind> {
        fs::metadata(self.host_path(path)).ok().map(|m| kind_of(&m))
    }

    fn link_target(&self, path: &[u8]) -> Option<Vec<u8>> {
        fs::read_link(self.host_path(path))
            .ok()
            .map(|t| t.into_os_string().into_vec())
    }

    fn display(&self, path: &[u8]) -> String {
        self.host_path(path).display().to_string()
    }

    fn executable(&self, path: &[u8]) -> bool {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(self.host_path(path)).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
    }
}
