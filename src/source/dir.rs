//! A [`Tree`] backed by a real directory.
//!
//! Symlinks are resolved by kmodidx itself, component by component, with the
//! directory as the root: an absolute target such as `/usr/lib` means
//! `<root>/usr/lib`, and `..` never climbs above the root. A tree built from
//! an image directory therefore reads only that image, never the host, even
//! when the image holds `lib -> /usr/lib` or a link pointing out of it.
//! (Rooted at `/`, this is exactly how the host resolves paths.)

use foldhash::{HashMap, HashMapExt};
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use super::{Contents, DirEntry, DirId, EntryKind, Tree};
use crate::util::{HashWriter, Refused};

/// Size and SHA-256 of a file.
pub type FileDigest = (u64, [u8; 32]);

/// Symlinks followed in one lookup before giving up, as Linux's ELOOP limit.
const MAX_LINKS: usize = 40;

/// A path as its components.
type Parts = Vec<Vec<u8>>;

/// A directory on disk, read in place and never modified.
pub struct DirTree {
    root: PathBuf,
    /// Resolved form of directories already looked up.
    dirs: Mutex<HashMap<Vec<u8>, Vec<u8>>>,
    /// Size and SHA-256 of files already hashed by a reader (see
    /// [`DirTree::remember_digest`]), so the manifest never reads a module
    /// twice.
    digests: Mutex<HashMap<Vec<u8>, FileDigest>>,
    /// Resolved paths of entries seen in listings that are not symlinks,
    /// and whether each was a regular file there.
    plain: Mutex<HashMap<Vec<u8>, bool>>,
    /// Largest file read or opened; no limit unless set.
    max_file_size: u64,
    /// Host directories that absolute link targets may lead into:
    /// `(prefix as given, prefix with the host's own links resolved)`, both
    /// as path components.
    follow: Vec<(Parts, Parts)>,
}

/// A path resolved by [`DirTree`]: inside the root, or (through a link
/// under a `--follow-links-under` prefix) an absolute host path. As bytes,
/// a host path keeps its leading `/` and a path inside the root has none.
#[derive(Clone)]
struct Resolved {
    on_host: bool,
    parts: Vec<Vec<u8>>,
}

impl Resolved {
    fn parse(bytes: &[u8]) -> Self {
        Resolved {
            on_host: bytes.first() == Some(&b'/'),
            parts: split(bytes),
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        let joined = self.parts.join(&b'/');
        if self.on_host {
            [b"/", joined.as_slice()].concat()
        } else {
            joined
        }
    }
}

impl DirTree {
    /// The tree rooted at the directory `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DirTree {
            root: root.into(),
            dirs: Mutex::new(HashMap::new()),
            digests: Mutex::new(HashMap::new()),
            plain: Mutex::new(HashMap::new()),
            max_file_size: u64::MAX,
            follow: Vec::new(),
        }
    }

    /// The largest file [`Tree::read`], [`Tree::digest`] and
    /// [`DirTree::open`] accept; a larger one is [`Refused::TooLarge`].
    pub fn max_file_size(mut self, limit: u64) -> Self {
        self.max_file_size = limit;
        self
    }

    /// Lets absolute symlink targets under these host directories (such as
    /// `/nix/store`) resolve on the host instead of inside the root. Links
    /// met there follow the same rule, and nothing may leave the prefixes.
    pub fn follow_links_under(mut self, prefixes: &[PathBuf]) -> Self {
        for prefix in prefixes {
            let given = split(prefix.as_os_str().as_bytes());
            let canonical = fs::canonicalize(prefix)
                .map(|p| split(p.as_os_str().as_bytes()))
                .unwrap_or_else(|_| given.clone());
            self.follow.push((given, canonical));
        }
        self
    }

    /// Opens the regular file at `path` (symlinks resolved inside the
    /// root), for a reader that wants more control than [`Tree::read`]
    /// gives: never blocking, and refusing special files and files over the
    /// size limit. Returns the file and its length.
    pub fn open(&self, path: &[u8]) -> io::Result<(fs::File, u64)> {
        self.open_limited(path, self.max_file_size)
    }

    /// Where the entry at `path` is on the host (symlinks resolved inside
    /// the root, or under a `follow_links_under` prefix).
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
        if resolved.first() == Some(&b'/') {
            PathBuf::from(std::ffi::OsStr::from_bytes(resolved))
        } else if resolved.is_empty() {
            self.root.clone()
        } else {
            self.root.join(std::ffi::OsStr::from_bytes(resolved))
        }
    }

    /// `path` with every symlink replaced by its target, inside the root.
    /// A missing last component is fine (the caller's open then fails).
    fn resolve(&self, path: &[u8]) -> io::Result<Vec<u8>> {
        self.resolve_listed(path).map(|(resolved, _)| resolved)
    }

    /// [`DirTree::resolve`], and, when a directory listing showed the entry
    /// (not as a symlink), whether it was a regular file there.
    fn resolve_listed(&self, path: &[u8]) -> io::Result<(Vec<u8>, Option<bool>)> {
        // Directories are looked up again and again: cache them.
        let (parent, name) = match path.iter().rposition(|&b| b == b'/') {
            Some(slash) => (&path[..slash], &path[slash + 1..]),
            None => (&b""[..], path),
        };
        let cached = self.dirs.lock().ok().and_then(|d| d.get(parent).cloned());
        let base = match cached {
            Some(base) => base,
            None => {
                // Resolve from the nearest ancestor already resolved: a walk
                // down a deep tree then costs one component a level, not the
                // whole path again.
                let (start, rest) = self.nearest_resolved(parent);
                let base = self.resolve_from(start, rest, true)?.to_bytes();
                if let Ok(mut dirs) = self.dirs.lock() {
                    dirs.insert(parent.to_vec(), base.clone());
                }
                base
            }
        };
        let joined = super::join(&[&base, name]);
        // Entries a directory listing showed as plain (not symlinks) need no
        // further lookup.
        let listed = self.plain.lock().ok().and_then(|p| p.get(&joined).copied());
        if listed.is_some() {
            return Ok((joined, listed));
        }
        self.resolve_from(Resolved::parse(&base), name, false)
            .map(|r| (r.to_bytes(), None))
    }

    /// The nearest ancestor of the directory `dir` whose resolution is
    /// cached (the root if none is), and the rest of `dir` below it.
    fn nearest_resolved<'p>(&self, dir: &'p [u8]) -> (Resolved, &'p [u8]) {
        let root = Resolved {
            on_host: false,
            parts: Vec::new(),
        };
        let Ok(dirs) = self.dirs.lock() else {
            return (root, dir);
        };
        match super::nearest_cached(dir, |d| dirs.get(d).map(|base| Resolved::parse(base))) {
            Some(hit) => hit,
            None => (root, dir),
        }
    }

    /// Where an absolute link target leads on the host, if it lies under a
    /// `--follow-links-under` prefix: the canonical prefix, and the rest.
    fn followed(&self, target: &[u8]) -> Option<(Parts, Parts)> {
        let parts = split(target);
        self.follow.iter().find_map(|(given, canonical)| {
            [given, canonical]
                .into_iter()
                .find(|prefix| parts.starts_with(prefix))
                .map(|prefix| (canonical.clone(), parts[prefix.len()..].to_vec()))
        })
    }

    /// Whether a host path stays under one of the prefixes.
    fn allowed_on_host(&self, parts: &[Vec<u8>]) -> bool {
        self.follow
            .iter()
            .any(|(_, canonical)| parts.starts_with(canonical))
    }

    fn resolve_from(&self, start: Resolved, path: &[u8], whole: bool) -> io::Result<Resolved> {
        let mut resolved = start;
        let mut pending: Vec<Vec<u8>> = split(path).into_iter().rev().collect();
        let mut links = 0;
        while let Some(part) = pending.pop() {
            match part.as_slice() {
                b"" | b"." => continue,
                b".." => {
                    resolved.parts.pop();
                    if resolved.on_host && !self.allowed_on_host(&resolved.parts) {
                        return Err(io::Error::new(
                            io::ErrorKind::NotFound,
                            "the link leads out of the --follow-links-under directories",
                        ));
                    }
                    continue;
                }
                _ => {}
            }
            resolved.parts.push(part);
            let host = self.host(&resolved.to_bytes());
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
                return Err(io::Error::from_raw_os_error(libc::ELOOP));
            }
            let target = fs::read_link(&host)?.into_os_string().into_vec();
            resolved.parts.pop();
            if target.first() == Some(&b'/') {
                let (on_host, parts, rest) = match self.followed(&target) {
                    Some((prefix, rest)) => (true, prefix, rest),
                    None => (false, Vec::new(), split(&target)),
                };
                resolved = Resolved { on_host, parts };
                pending.extend(rest.into_iter().rev());
            } else {
                pending.extend(split(&target).into_iter().rev());
            }
        }
        Ok(resolved)
    }

    /// Opens a regular file without ever blocking: the type is checked before
    /// opening, so that a device is never opened (by the directory listing
    /// that showed the file, which spares a module a `stat`, or else by a
    /// `stat`), and again on the open file (`O_NONBLOCK` keeps a FIFO
    /// swapped in meanwhile from blocking the open; `O_NOFOLLOW` refuses a
    /// symlink swapped in; anything else swapped in is refused there).
    fn open_regular(&self, path: &[u8]) -> io::Result<(fs::File, u64)> {
        let (resolved, listed) = self.resolve_listed(path)?;
        let host = self.host(&resolved);
        if listed != Some(true) {
            Refused::check_type(fs::metadata(&host)?.file_type()).map_err(Refused::into_io)?;
        }
        let file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_NOCTTY)
            .open(&host)?;
        let meta = file.metadata()?;
        Refused::check_type(meta.file_type()).map_err(Refused::into_io)?;
        Ok((file, meta.len()))
    }

    /// [`Self::open_regular`], refusing files over `limit` bytes.
    fn open_limited(&self, path: &[u8], limit: u64) -> io::Result<(fs::File, u64)> {
        let (file, len) = self.open_regular(path)?;
        if len > limit {
            return Err(Refused::TooLarge {
                size: Some(len),
                limit,
                decompressed: false,
            }
            .into_io());
        }
        Ok((file, len))
    }
}

/// Reads a file named on the command line (such as `--symvers FILE`) from
/// the host, whole, refusing more than `limit` bytes. Regular files and
/// pipes are read (so `--symvers <(zcat Module.symvers.gz)` works); devices,
/// sockets and directories are refused without being opened.
pub fn read_host_file(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::FileTypeExt;
    let file_type = fs::metadata(path)?.file_type();
    if !file_type.is_fifo() {
        Refused::check_type(file_type).map_err(Refused::into_io)?;
    }
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOCTTY)
        .open(path)?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(Refused::TooLarge {
            size: None,
            limit,
            decompressed: false,
        }
        .into_io());
    }
    Ok(bytes)
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
                plain.push((super::join(&[&resolved, &name]), file_type.is_file()));
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
        let (file, len) = self.open_limited(path, self.max_file_size)?;
        if len == 0 {
            return Ok(Contents::Owned(Vec::new()));
        }
        // SAFETY: the tree is treated as read-only input; if another process
        // truncates a file while we map it, reading may fault, as with any
        // mmap-based reader (kmod included).
        let map = unsafe {
            memmap2::MmapOptions::new()
                .len(usize::try_from(len).map_err(io::Error::other)?)
                .map(&file)?
        };
        Ok(Contents::Mapped(map))
    }

    fn kind(&self, path: &[u8]) -> Option<EntryKind> {
        let host = self.host_path(path).ok()?;
        fs::metadata(host).ok().map(|m| kind_of(&m))
    }

    fn dir_id(&self, path: &[u8]) -> Option<DirId> {
        let meta = fs::metadata(self.host_path(path).ok()?).ok()?;
        meta.is_dir().then(|| DirId::Inode(meta.dev(), meta.ino()))
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
        let (file, len) = self.open_limited(path, self.max_file_size)?;
        let mut hasher = Sha256::new();
        let copied = io::copy(&mut file.take(len), &mut HashWriter(&mut hasher))?;
        Ok((copied, hasher.finalize().into()))
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
