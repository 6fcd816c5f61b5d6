//! A [`Tree`] backed by a real directory.
//!
//! Symlinks are resolved by kmodidx itself, component by component, with the
//! directory as the root: an absolute target such as `/usr/lib` means
//! `<root>/usr/lib`, and `..` never climbs above the root. A tree built from
//! an image directory therefore reads only that image, never the host, even
//! when the image holds `lib -> /usr/lib` or a link pointing out of it.
//! (Rooted at `/`, this is exactly how the host resolves paths.)

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use super::{Contents, DirEntry, EntryKind, Tree};

/// Size and SHA-256 of a file.
pub type FileDigest = (u64, [u8; 32]);

/// Symlinks followed in one lookup before giving up, as Linux's ELOOP limit.
const MAX_LINKS: usize = 40;

/// A directory on disk, read in place and never modified.
pub struct DirTree {
    root: PathBuf,
    /// Resolved form of directories already looked up.
    dirs: Mutex<HashMap<Vec<u8>, Vec<u8>>>,
    /// Size and SHA-256 of files already hashed by a reader (see
    /// [`DirTree::remember_digest`]), so the manifest never reads a module
    /// twice.
    digests: Mutex<HashMap<Vec<u8>, FileDigest>>,
    /// Resolved paths of entries seen in listings that are not symlinks.
    plain: Mutex<HashSet<Vec<u8>>>,
}

impl DirTree {
    /// The tree rooted at the directory `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DirTree {
            root: root.into(),
            dirs: Mutex::new(HashMap::new()),
            digests: Mutex::new(HashMap::new()),
            plain: Mutex::new(HashSet::new()),
        }
    }

    /// Opens the file at `path` (symlinks resolved inside the root), for a
    /// reader that wants more control than [`Tree::read`] gives.
    pub fn open(&self, path: &[u8]) -> io::Result<fs::File> {
        fs::File::open(self.host_path(path)?)
    }

    /// Where the entry at `path` is on the host (symlinks resolved inside
    /// the root).
    pub fn host_path(&self, path: &[u8]) -> io::Result<PathBuf> {
        Ok(self.host(&self.resolve(path)?))
    }

    /// Records the size and SHA-256 of the file at `path`, computed by a
    /// reader that had its bytes at hand; [`Tree::digest`] then returns them
    /// without reading the file again.
    pub fn remember_digest(&self, path: &[u8], digest: FileDigest) {
        if let Ok(mut digests) = self.digests.lock() {
            digests.insert(path.to_vec(), digest);
        }
    }

    fn host(&self, resolved: &[u8]) -> PathBuf {
        if resolved.is_empty() {
            self.root.clone()
        } else {
            self.root.join(std::ffi::OsStr::from_bytes(resolved))
        }
    }

    /// `path` with every symlink replaced by its target, inside the root.
    /// A missing last component is fine (the caller's open then fails).
    fn resolve(&self, path: &[u8]) -> io::Result<Vec<u8>> {
        // Directories are looked up again and again: cache them.
        let (parent, name) = match path.iter().rposition(|&b| b == b'/') {
            Some(slash) => (&path[..slash], &path[slash + 1..]),
            None => (&b""[..], path),
        };
        let cached = self.dirs.lock().ok().and_then(|d| d.get(parent).cloned());
        let base = match cached {
            Some(base) => base,
            None => {
                let base = self.resolve_from(Vec::new(), parent, true)?.join(&b'/');
                if let Ok(mut dirs) = self.dirs.lock() {
                    dirs.insert(parent.to_vec(), base.clone());
                }
                base
            }
        };
        let joined = super::join(&[&base, name]);
        // Entries a directory listing showed as plain (not symlinks) need no
        // further lookup.
        if self.plain.lock().is_ok_and(|p| p.contains(&joined)) {
            return Ok(joined);
        }
        self.resolve_from(split(&base), name, false)
            .map(|c| c.join(&b'/'))
    }

    fn resolve_from(
        &self,
        start: Vec<Vec<u8>>,
        path: &[u8],
        whole: bool,
    ) -> io::Result<Vec<Vec<u8>>> {
        let mut resolved = start;
        let mut pending: Vec<Vec<u8>> = split(path).into_iter().rev().collect();
        let mut links = 0;
        while let Some(part) = pending.pop() {
            match part.as_slice() {
                b"" | b"." => continue,
                b".." => {
                    resolved.pop();
                    continue;
                }
                _ => {}
            }
            resolved.push(part);
            let host = self.host(&resolved.join(&b'/'));
            let meta = match fs::symlink_metadata(&host) {
                Ok(meta) => meta,
                Err(_) if pending.is_empty() && !whole => return Ok(resolved),
                Err(e) => return Err(e),
            };
            if !meta.file_type().is_symlink() {
                continue;
            }
            links += 1;
            if links > MAX_LINKS {
                return Err(io::Error::from_raw_os_error(40)); // ELOOP
            }
            let target = fs::read_link(&host)?.into_os_string().into_vec();
            resolved.pop();
            if target.first() == Some(&b'/') {
                resolved.clear();
            }
            pending.extend(split(&target).into_iter().rev());
        }
        Ok(resolved)
    }
}

fn split(path: &[u8]) -> Vec<Vec<u8>> {
    path.split(|&b| b == b'/')
        .filter(|p| !p.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
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

fn join_name(dir: &[u8], name: &[u8]) -> Vec<u8> {
    super::join(&[dir, name])
}

impl Tree for DirTree {
    fn read_dir(&self, path: &[u8]) -> io::Result<Vec<DirEntry>> {
        let resolved = self.resolve(path)?;
        let dir = self.host(&resolved);
        let mut entries = Vec::new();
        let mut plain = Vec::new();
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let file_type = entry.file_type()?;
            let name = entry.file_name().into_vec();
            let kind = if file_type.is_symlink() {
                // A dangling or looping link is not an error here: it is
                // just not a module.
                self.kind(&join_name(path, &name))
                    .unwrap_or(EntryKind::Other)
            } else {
                plain.push(super::join(&[&resolved, &name]));
                if file_type.is_file() {
                    EntryKind::File
                } else if file_type.is_dir() {
                    EntryKind::Dir
                } else {
                    EntryKind::Other
                }
            };
            entries.push(DirEntry { name, kind });
        }
        if let Ok(mut known) = self.plain.lock() {
            known.extend(plain);
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    fn read(&self, path: &[u8]) -> io::Result<Contents> {
        let file = fs::File::open(self.host_path(path)?)?;
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
        let host = self.host_path(path).ok()?;
        fs::metadata(host).ok().map(|m| kind_of(&m))
    }

    fn link_target(&self, path: &[u8]) -> Option<Vec<u8>> {
        let (parent, name) = match path.iter().rposition(|&b| b == b'/') {
            Some(slash) => (&path[..slash], &path[slash + 1..]),
            None => (&b""[..], path),
        };
        let dir = self.host_path(parent).ok()?;
        fs::read_link(dir.join(std::ffi::OsStr::from_bytes(name)))
            .ok()
            .map(|t| t.into_os_string().into_vec())
    }

    fn display(&self, path: &[u8]) -> String {
        self.host(path).display().to_string()
    }

    fn digest(&self, path: &[u8]) -> io::Result<(u64, [u8; 32])> {
        if let Some(known) = self.digests.lock().ok().and_then(|d| d.get(path).copied()) {
            return Ok(known);
        }
        let bytes = self.read(path)?;
        Ok((bytes.len() as u64, Sha256::digest(&*bytes).into()))
    }

    fn executable(&self, path: &[u8]) -> bool {
        self.host_path(path)
            .and_then(fs::metadata)
            .is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_resolve_inside_the_root() {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret.ko"), b"host file").unwrap();
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        fs::create_dir_all(r.join("usr/lib/modules/1.0")).unwrap();
        fs::write(r.join("usr/lib/modules/1.0/a.ko"), b"inside").unwrap();
        symlink("/usr/lib", r.join("lib")).unwrap();
        symlink(
            outside.path().join("secret.ko"),
            r.join("usr/lib/modules/1.0/escape.ko"),
        )
        .unwrap();
        symlink(
            "../../../../../../../../etc/passwd",
            r.join("usr/lib/modules/1.0/up.ko"),
        )
        .unwrap();
        symlink("loop", r.join("loop")).unwrap();

        let tree = DirTree::new(r);
        assert_eq!(&*tree.read(b"lib/modules/1.0/a.ko").unwrap(), b"inside");
        assert_eq!(tree.kind(b"lib/modules"), Some(EntryKind::Dir));
        // An absolute target points into the root, where nothing is.
        assert!(tree.read(b"lib/modules/1.0/escape.ko").is_err());
        assert_eq!(tree.kind(b"usr/lib/modules/1.0/up.ko"), None);
        assert_eq!(tree.kind(b"loop"), None);
        let names: Vec<_> = tree
            .read_dir(b"lib/modules/1.0")
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.kind))
            .collect();
        assert!(names.contains(&(b"a.ko".to_vec(), EntryKind::File)));
        assert!(names.contains(&(b"escape.ko".to_vec(), EntryKind::Other)));
        assert_eq!(tree.link_target(b"lib"), Some(b"/usr/lib".to_vec()));
    }
}
