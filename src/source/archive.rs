//! A [`Tree`] read from a tar or cpio archive in one streaming pass.
//!
//! Nothing is extracted. While the archive goes by, every module under a
//! `lib/modules/<version>/` or `usr/lib/modules/<version>/` directory is
//! handed to a rayon worker that parses it with the caller's
//! [`ModuleParser`] (into something small) and hashes it; its bytes are then dropped (or, when asked, appended to an
//! anonymous spill file so that a staged output can copy them later). Small
//! metadata files there and depmod.d configuration files are kept in memory.
//! Everything else is remembered only as a name, a kind and a size.
//!
//! The archive is applied as extraction would apply it: entries are placed by
//! resolving their parent directory through the symlinks seen so far (so
//! `lib/modules/...` lands in `usr/lib/modules/...` after `lib -> usr/lib`),
//! missing parents are created, a later entry replaces an earlier one, and
//! hard links share their target's contents. Symlink targets, absolute or
//! relative, are interpreted inside the archive: a link that would leave it
//! is ignored (with a note), as is a loop.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use rayon::iter::{ParallelBridge, ParallelIterator};
use sha2::{Digest, Sha256};

use super::stream::{self, ArchiveError, EntryError, RawEntry, RawKind};
use super::{Contents, DirEntry, DirId, EntryKind, ModuleParser, Tree};
use crate::layout::{is_module_file, CONFIG_DIRS, FIRMWARE_DIRS, MODULE_DIRS, SKIPPED_NAMES};
use crate::util::Refused;

/// Every entry of an archive by canonical path. Resolving a path looks up
/// each of its prefixes, so the hash is a fast one (foldhash).
type Nodes = foldhash::HashMap<Vec<u8>, Node>;

/// Directories by the path asked for: canonical path, symlinks followed.
type ResolvedDirs = HashMap<Vec<u8>, (Vec<u8>, u32)>;

/// How deep symlink chains may go (the kernel's `MAXSYMLINKS`).
const MAX_HOPS: u32 = 40;

/// The longest path (an entry's name, a symlink's target, a path met while
/// resolving) followed inside an archive. kmod opens nothing longer than
/// `PATH_MAX`; twice that leaves room for the module walk to report
/// longer module paths as kmod does, and bounds the work of resolving one
/// path, which looks up each of its prefixes.
const MAX_PATH_BYTES: usize = 2 * crate::layout::PATH_MAX;

/// At most the first 200 bytes of `path`, for a message.
fn shown(path: &[u8]) -> String {
    match path.get(..200) {
        Some(head) if path.len() > 200 => {
            format!("{}… ({} bytes)", String::from_utf8_lossy(head), path.len())
        }
        _ => String::from_utf8_lossy(path).into_owned(),
    }
}

/// How to read an archive.
#[derive(Debug, Clone)]
pub struct ArchiveOptions {
    /// Cap on the whole decompressed stream, in bytes.
    pub max_input_size: u64,
    /// Further files to keep in memory (such as a Module.symvers), by path.
    pub keep: Vec<Vec<u8>>,
    /// Keep module bytes in an anonymous spill file in this directory, so
    /// that [`Tree::read`] can return them later (for staged output).
    pub spill_dir: Option<PathBuf>,
    /// Directory input only (see [`super::open_input`]): absolute symlink
    /// targets under these host directories resolve on the host (see
    /// [`super::DirTree::follow_links_under`]).
    pub follow_links_under: Vec<PathBuf>,
    /// Also keep the files below the firmware directories
    /// ([`FIRMWARE_DIRS`]) in the spill file, for a closure that copies the
    /// firmware its modules name. Needs `spill_dir`.
    pub keep_firmware: bool,
}

impl Default for ArchiveOptions {
    fn default() -> Self {
        ArchiveOptions {
            max_input_size: 16 << 30,
            keep: Vec::new(),
            spill_dir: None,
            follow_links_under: Vec::new(),
            keep_firmware: false,
        }
    }
}

#[derive(Debug, Clone)]
enum FileData {
    Small(Arc<[u8]>),
    /// Index into `modules`.
    Module(usize),
    /// Bytes in the spill file (firmware).
    Spilled {
        at: u64,
        size: u64,
    },
    /// Not needed by kmodidx, so not kept.
    Unkept,
}

#[derive(Debug, Clone)]
enum Node {
    Dir,
    File { data: FileData, mode: u32 },
    Symlink(Vec<u8>),
    Other,
}

struct ModuleSlot<M> {
    parsed: M,
    /// `None` for a module refused unread (over the size limit).
    sha256: Option<[u8; 32]>,
    refused: Option<Refused>,
    /// Offset of the bytes in the spill file.
    spill: Option<u64>,
    size: u64,
}

/// Why a path could not be resolved inside the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Unresolved {
    /// `..` above the root.
    Escapes,
    Loop,
    /// A component on the way is missing: the canonical path of it.
    Missing(Vec<u8>),
    NotDir,
    /// A path or symlink target longer than [`MAX_PATH_BYTES`].
    TooLong,
}

/// An archive seen as a read-only tree, with each module already parsed
/// into an `M` by a [`ModuleParser`].
pub struct ArchiveTree<M> {
    archive: PathBuf,
    nodes: Nodes,
    children: HashMap<Vec<u8>, BTreeSet<Vec<u8>>>,
    modules: Vec<ModuleSlot<M>>,
    spill: Option<std::fs::File>,
    notes: Vec<String>,
    /// Directories resolved so far, by the path asked for: their canonical
    /// path and the symlinks followed to get there. A walk down a deep tree
    /// then resolves one component a level, not the whole path again.
    dirs: Mutex<ResolvedDirs>,
}

fn components(path: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
}

fn join2(dir: &[u8], name: &[u8]) -> Vec<u8> {
    super::join(&[dir, name])
}

fn parent_of(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (b"", path),
    }
}

/// Normalises an entry name: no leading `/` or `./`, no `.` or empty
/// components. `..` is refused: extraction tools refuse it too.
fn normalize(raw: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for c in components(raw) {
        if c == b".." {
            return Err("the path contains `..`; refusing to place it".into());
        }
        if !out.is_empty() {
            out.push(b'/');
        }
        out.extend_from_slice(c);
    }
    Ok(out)
}

/// Whether a canonical path is a module under `[usr/]lib/modules/<v>/`.
fn is_module_path(path: &[u8]) -> bool {
    in_module_dir(path) && is_module_file(parent_of(path).1)
}

/// Whether `path` is inside `dir` (both canonical).
fn under(path: &[u8], dir: &str) -> bool {
    path.len() > dir.len() && path.starts_with(dir.as_bytes()) && path[dir.len()] == b'/'
}

/// Whether a canonical path lies below a kernel's directory in one of the
/// module directories (`lib/modules/<version>/...`).
fn in_module_dir(path: &[u8]) -> bool {
    MODULE_DIRS
        .iter()
        .any(|d| under(path, d) && path[d.len() + 1..].contains(&b'/'))
}

fn in_config_dir(path: &[u8]) -> bool {
    CONFIG_DIRS.iter().any(|d| under(path, d))
}

fn in_firmware_dir(path: &[u8]) -> bool {
    FIRMWARE_DIRS.iter().any(|d| under(path, d))
}

/// What the streaming pass sends to the parsing workers.
struct Job {
    slot: usize,
    bytes: Vec<u8>,
}

/// Bounds the module bytes between the streaming pass and the workers
/// (queued or being parsed): the reader takes a module's size before
/// reading it, a worker gives it back once the bytes are dropped. One
/// module always fits, however large (up to the file limit).
struct InFlight {
    used: Mutex<u64>,
    freed: Condvar,
    cap: u64,
}

impl InFlight {
    fn take(&self, n: u64) {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        while *used > 0 && used.saturating_add(n) > self.cap {
            used = self.freed.wait(used).unwrap_or_else(|e| e.into_inner());
        }
        *used += n;
    }

    fn give(&self, n: u64) {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        *used = used.saturating_sub(n);
        self.freed.notify_all();
    }
}

struct Builder<'a> {
    opts: &'a ArchiveOptions,
    /// The limit on every file (from the parser): a module's stored size,
    /// each file kept in memory, the module bytes in flight to the workers,
    /// all the files kept, and what is remembered of the entries.
    max_module_size: u64,
    nodes: Nodes,
    /// Per module slot: size and spill offset; metadata comes from workers.
    slots: Vec<(u64, Option<u64>)>,
    /// Slots refused unread, with the reason.
    failed: Vec<(usize, Refused)>,
    in_flight: &'a InFlight,
    /// Bytes of the non-module files kept in memory so far.
    kept: u64,
    /// Estimated memory taken by the entries remembered so far.
    tracked: u64,
    /// Files outside the directories read by default that links from there
    /// lead to (found by a first pass): canonical paths, and whether each is
    /// a module.
    wanted: &'a HashMap<Vec<u8>, bool>,
    spill: Option<(std::fs::File, u64)>,
    /// cpio hard-link groups, by identity.
    links: HashMap<LinkId, LinkGroup>,
    /// The group each path was last written as a member of.
    link_of: HashMap<Vec<u8>, LinkId>,
    notes: Vec<String>,
    /// The directory the last entry went into, or the last directory
    /// entry: its name in the archive and its canonical path. Archives list
    /// a directory's entries together, right after it, so most entries
    /// find their parent here instead of resolving it component by
    /// component. Forgotten whenever a symlink is added or a directory
    /// replaced, which can change what a name resolves to.
    last_dir: Option<(Vec<u8>, Vec<u8>)>,
    /// The entries of each directory, by canonical path: replacing a
    /// directory removes what is inside it by these lists, in time of what
    /// it held, rather than by scanning every entry of the archive.
    inside: HashMap<Vec<u8>, Vec<Vec<u8>>>,
}

/// A cpio inode: archive (for concatenated archives), device, inode.
type LinkId = (u32, u32, u32, u32);

/// The names of one cpio inode. The data carried by the last of them
/// belongs to every name; it is given to them all once the archive is
/// read ([`Builder::share_links`]), so that each name costs the same
/// however many the inode has.
#[derive(Default)]
struct LinkGroup {
    members: Vec<Vec<u8>>,
    /// The file made from the latest name that carried data (the first
    /// name always counts as carrying it, if only nothing).
    latest: Option<Node>,
    /// Whether any name so far is read as a module.
    module: bool,
}

/// Records a new entry at `path` in its parent's list.
fn add_inside(inside: &mut HashMap<Vec<u8>, Vec<Vec<u8>>>, path: &[u8]) {
    inside
        .entry(parent_of(path).0.to_vec())
        .or_default()
        .push(path.to_vec());
}

impl Builder<'_> {
    fn resolve(&self, path: &[u8], follow_last: bool) -> Result<Vec<u8>, Unresolved> {
        resolve(&self.nodes, path, follow_last)
    }

    /// The canonical directory an entry's parent names, creating missing
    /// directories as extraction does.
    fn place(&mut self, path: &[u8]) -> Result<Vec<u8>, String> {
        let (parent, name) = parent_of(path);
        if let Some((given, dir)) = &self.last_dir {
            if given == parent && matches!(self.nodes.get(dir), Some(Node::Dir)) {
                return Ok(join2(dir, name));
            }
        }
        let (nodes, tracked, inside) = (&mut self.nodes, &mut self.tracked, &mut self.inside);
        // Every missing directory on the way is created, as extraction
        // does, in the one walk down the path.
        let dir = resolve_with((&[], 0), parent, true, &mut |cand| match nodes.get(cand) {
            Some(node) => Step::of(node),
            None => {
                *tracked += 2 * cand.len() as u64 + 256;
                nodes.insert(cand.to_vec(), Node::Dir);
                add_inside(inside, cand);
                Step::Dir
            }
        });
        match dir.map(|(dir, _)| dir) {
            Ok(dir) => match self.nodes.get(&dir) {
                Some(Node::Dir) => {
                    let placed = join2(&dir, name);
                    self.last_dir = Some((parent.to_vec(), dir));
                    Ok(placed)
                }
                _ => Err("its parent is not a directory".into()),
            },
            // Not met when missing directories are created.
            Err(Unresolved::Missing(_)) => Err("its parent directory is missing".into()),
            Err(Unresolved::Escapes) => {
                Err("its parent directory is a symlink that leads outside the archive".into())
            }
            Err(Unresolved::Loop) => Err("its parent directory is a symlink loop".into()),
            Err(Unresolved::NotDir) => Err("its parent is not a directory".into()),
            Err(Unresolved::TooLong) => {
                Err(format!("its path is longer than {MAX_PATH_BYTES} bytes"))
            }
        }
    }

    fn insert(&mut self, path: Vec<u8>, node: Node) {
        if path.is_empty() {
            // The root itself (`.` or `./`): always a directory.
            return;
        }
        if let (Some(Node::Dir), Node::Dir) = (self.nodes.get(&path), &node) {
            return;
        }
        // A new symlink, or a directory or symlink replaced, can change
        // what names resolve to.
        if matches!(node, Node::Symlink(_))
            || matches!(self.nodes.get(&path), Some(Node::Dir | Node::Symlink(_)))
        {
            self.last_dir = None;
        }
        if let Some(Node::Dir) = self.nodes.get(&path) {
            // Replacing a directory removes what was inside, as `tar
            // --recursive-unlink` or the kernel's unpacker would have to.
            let mut dirs = vec![path.clone()];
            while let Some(dir) = dirs.pop() {
                for entry in self.inside.remove(&dir).unwrap_or_default() {
                    if let Some(Node::Dir) = self.nodes.remove(&entry) {
                        dirs.push(entry);
                    }
                }
            }
        }
        if !self.nodes.contains_key(&path) {
            self.track(&path);
            add_inside(&mut self.inside, &path);
        }
        // Written anew: no longer a name of the inode it belonged to (the
        // caller records it again when it is one).
        self.link_of.remove(&path);
        self.nodes.insert(path, node);
    }

    /// Gives every name of each cpio inode the data its last name carried
    /// (names written over since keep what was written).
    fn share_links(&mut self) {
        let (links, link_of, nodes) = (&self.links, &self.link_of, &mut self.nodes);
        for (id, group) in links {
            let Some(latest) = &group.latest else {
                continue;
            };
            for member in &group.members {
                if link_of.get(member) == Some(id) {
                    if let Some(node @ Node::File { .. }) = nodes.get_mut(member) {
                        *node = latest.clone();
                    }
                }
            }
        }
    }

    /// Counts what remembering an entry at `path` costs: its name twice (as
    /// a key, and in its parent's listing) and the bookkeeping around it,
    /// measured at about 220 bytes an entry.
    fn track(&mut self, path: &[u8]) {
        self.tracked += 2 * path.len() as u64 + 256;
    }

    /// Whether the file at this canonical path is read as a module.
    fn is_module(&self, path: &[u8]) -> bool {
        is_module_path(path) || self.wanted.get(path) == Some(&true)
    }

    fn read_all(data: &mut dyn Read, size: u64) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::with_capacity(usize::try_from(size.min(1 << 26)).unwrap_or(0));
        data.read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    fn file_data(
        &mut self,
        path: &[u8],
        module: bool,
        entry: &mut RawEntry<'_>,
        jobs: &std::sync::mpsc::SyncSender<Job>,
    ) -> Result<FileData, EntryError> {
        let size = entry.size;
        let limit = self.max_module_size;
        if module {
            let slot = self.slots.len();
            if size > limit {
                // Never read: a build that needs it stops with this error.
                self.slots.push((size, None));
                self.failed.push((
                    slot,
                    Refused::TooLarge {
                        size: Some(size),
                        limit,
                        decompressed: false,
                    },
                ));
                return Ok(FileData::Module(slot));
            }
            self.in_flight.take(size);
            let bytes = match Self::read_all(&mut *entry.data, size) {
                Ok(bytes) => bytes,
                Err(e) => {
                    self.in_flight.give(size);
                    return Err(e.into());
                }
            };
            let spill_at = match &mut self.spill {
                Some((file, end)) => {
                    let at = *end;
                    file.write_all(&bytes)?;
                    *end += bytes.len() as u64;
                    Some(at)
                }
                None => None,
            };
            self.slots.push((size, spill_at));
            if jobs.send(Job { slot, bytes }).is_err() {
                self.in_flight.give(size);
                return Err(EntryError::Reject("module parser stopped".into()));
            }
            return Ok(FileData::Module(slot));
        }
        if self.opts.keep_firmware && in_firmware_dir(path) {
            if let Some((file, end)) = &mut self.spill {
                // Streamed: firmware files can be large.
                let at = *end;
                let size = io::copy(&mut *entry.data, file)?;
                *end += size;
                return Ok(FileData::Spilled { at, size });
            }
        }
        let wanted = in_module_dir(path)
            || in_config_dir(path)
            || self.opts.keep.iter().any(|k| k == path)
            || self.wanted.contains_key(path);
        if !wanted {
            return Ok(FileData::Unkept);
        }
        if size > limit || self.kept.saturating_add(size) > limit {
            let why = if size > limit {
                format!("it is {size} bytes, over the size limit of {limit} bytes")
            } else {
                format!("the files kept in memory would exceed {limit} bytes (the size limit)")
            };
            self.notes.push(format!(
                "not keeping `{}`: {why}",
                String::from_utf8_lossy(path)
            ));
            return Ok(FileData::Unkept);
        }
        self.kept += size;
        let bytes = Self::read_all(&mut *entry.data, size)?;
        Ok(FileData::Small(bytes.into()))
    }

    /// Places one entry, then checks that what is remembered of the archive
    /// (every entry's name and kind) stays within the file size limit: an
    /// archive of millions of empty entries compresses to almost nothing.
    fn entry(
        &mut self,
        entry: RawEntry<'_>,
        jobs: &std::sync::mpsc::SyncSender<Job>,
    ) -> Result<(), EntryError> {
        self.place_entry(entry, jobs)?;
        let limit = self.max_module_size;
        if self.tracked > limit {
            return Err(EntryError::Reject(format!(
                "the archive has more entries than kmodidx keeps track of with the size limit of {limit} bytes (about {} entries); raise it with --max-file-size MIB",
                limit / 320
            )));
        }
        Ok(())
    }

    fn place_entry(
        &mut self,
        mut entry: RawEntry<'_>,
        jobs: &std::sync::mpsc::SyncSender<Job>,
    ) -> Result<(), EntryError> {
        let name = normalize(entry.path).map_err(EntryError::Reject)?;
        let shown = shown(entry.path);
        if name.is_empty() {
            return Ok(());
        }
        if name.len() > MAX_PATH_BYTES {
            self.notes.push(format!(
                "ignoring `{shown}`: its name is longer than {MAX_PATH_BYTES} bytes"
            ));
            return Ok(());
        }
        let path = match self.place(&name) {
            Ok(p) => p,
            Err(why) => {
                self.notes.push(format!("ignoring `{shown}`: {why}"));
                return Ok(());
            }
        };
        match entry.kind.clone() {
            RawKind::Dir => {
                self.insert(path.clone(), Node::Dir);
                // Its entries most likely come next.
                self.last_dir = Some((name, path));
            }
            RawKind::Symlink(target) => self.insert(path, Node::Symlink(target)),
            RawKind::Other => self.insert(path, Node::Other),
            RawKind::HardLink(target) => {
                let target = normalize(&target).map_err(EntryError::Reject)?;
                let node = self
                    .resolve(&target, false)
                    .ok()
                    .and_then(|t| self.nodes.get(&t).cloned());
                match node {
                    Some(node @ (Node::File { .. } | Node::Symlink(_) | Node::Other)) => self.insert(path, node),
                    _ => self.notes.push(format!(
                        "ignoring hard link `{shown}`: its target `{}` is not an earlier file of the archive",
                        String::from_utf8_lossy(&target)
                    )),
                }
            }
            RawKind::File => {
                let mode = entry.mode;
                let group = match entry.cpio_inode {
                    Some((archive, major, minor, ino, nlink)) if nlink >= 2 => {
                        Some((archive, major, minor, ino))
                    }
                    _ => None,
                };
                let (has_members, module_member, shared) =
                    match group.and_then(|g| self.links.get(&g)) {
                        Some(g) => (!g.members.is_empty(), g.module, g.latest.clone()),
                        None => (false, false, None),
                    };
                let carries_data = !(has_members && entry.size == 0);
                let node = if !carries_data {
                    // A cpio hard link without data: it shares the inode.
                    shared.unwrap_or(Node::File {
                        data: FileData::Small(Arc::from(&[][..])),
                        mode,
                    })
                } else {
                    let module = self.is_module(&path) || module_member;
                    let data = self.file_data(&path, module, &mut entry, jobs)?;
                    Node::File { data, mode }
                };
                self.insert(path.clone(), node.clone());
                if let Some(g) = group {
                    let module = self.is_module(&path);
                    let linked = self.links.entry(g).or_default();
                    if carries_data {
                        linked.latest = Some(node);
                    }
                    linked.module |= module;
                    linked.members.push(path.clone());
                    // The name twice more: in the group, and by name.
                    self.tracked += 2 * path.len() as u64;
                    self.link_of.insert(path, g);
                }
            }
        }
        Ok(())
    }
}

/// What resolution finds at a canonical path.
enum Step {
    Dir,
    Symlink(Vec<u8>),
    Other,
    Missing,
}

impl Step {
    fn of(node: &Node) -> Step {
        match node {
            Node::Dir => Step::Dir,
            Node::Symlink(target) => Step::Symlink(target.clone()),
            _ => Step::Other,
        }
    }
}

fn resolve(nodes: &Nodes, path: &[u8], follow_last: bool) -> Result<Vec<u8>, Unresolved> {
    resolve_from(nodes, (&[], 0), path, follow_last).map(|(canon, _)| canon)
}

/// [`resolve`] from a canonical directory reached with `hops` symlinks
/// followed: the canonical path and the symlinks followed in all.
fn resolve_from(
    nodes: &Nodes,
    base: (&[u8], u32),
    path: &[u8],
    follow_last: bool,
) -> Result<(Vec<u8>, u32), Unresolved> {
    resolve_with(base, path, follow_last, &mut |cand| {
        nodes.get(cand).map_or(Step::Missing, Step::of)
    })
}

/// Resolves `path`, relative to the canonical directory `base` reached
/// with some symlinks followed already (the kernel's limit counts them all),
/// to its canonical path, following symlinks inside the archive (the last
/// component only with `follow_last`); `lookup` says what is at each
/// canonical path met.
fn resolve_with(
    base: (&[u8], u32),
    path: &[u8],
    follow_last: bool,
    lookup: &mut dyn FnMut(&[u8]) -> Step,
) -> Result<(Vec<u8>, u32), Unresolved> {
    if path.len() > MAX_PATH_BYTES {
        return Err(Unresolved::TooLong);
    }
    let mut todo: Vec<Vec<u8>> = components(path).rev().map(<[u8]>::to_vec).collect();
    // The canonical path so far, and where each of its components starts:
    // extended and cut in place, so that a long path is not copied again
    // for every component.
    let (base, mut hops) = base;
    let mut cur: Vec<u8> = base.to_vec();
    let mut starts: Vec<usize> = Vec::new();
    if !base.is_empty() {
        starts.push(0);
        starts.extend(
            base.iter()
                .enumerate()
                .filter(|&(_, &b)| b == b'/')
                .map(|(i, _)| i + 1),
        );
    }
    while let Some(c) = todo.pop() {
        if c == b".." {
            match starts.pop() {
                Some(start) => cur.truncate(start.saturating_sub(1)),
                None => return Err(Unresolved::Escapes),
            }
            continue;
        }
        let before = cur.len();
        let start = before + usize::from(before > 0);
        if before > 0 {
            cur.push(b'/');
        }
        cur.extend_from_slice(&c);
        if cur.len() > MAX_PATH_BYTES {
            return Err(Unresolved::TooLong);
        }
        let last = todo.is_empty();
        match lookup(&cur) {
            Step::Symlink(target) if !last || follow_last => {
                cur.truncate(before);
                hops += 1;
                if hops > MAX_HOPS {
                    return Err(Unresolved::Loop);
                }
                if target.len() > MAX_PATH_BYTES {
                    return Err(Unresolved::TooLong);
                }
                if target.first() == Some(&b'/') {
                    cur.clear();
                    starts.clear();
                }
                todo.extend(components(&target).rev().map(<[u8]>::to_vec));
            }
            Step::Dir | Step::Symlink(_) => starts.push(start),
            Step::Other if last => starts.push(start),
            Step::Other => return Err(Unresolved::NotDir),
            Step::Missing if last => starts.push(start),
            Step::Missing => return Err(Unresolved::Missing(cur)),
        }
    }
    Ok((cur, hops))
}

impl<M: Send> ArchiveTree<M> {
    /// Reads the archive at `path`, parsing every module with `parser`: in
    /// one pass, or in two when symlinks in the module directories (or
    /// depmod.d directories) lead to files elsewhere in the archive, which
    /// the first pass did not keep. If the file changed in between, that is
    /// an error.
    pub fn open<P>(path: &Path, opts: &ArchiveOptions, parser: &P) -> Result<Self, ArchiveError>
    where
        P: ModuleParser<Parsed = M>,
    {
        let open = || {
            let file = std::fs::File::open(path).map_err(|source| ArchiveError::Open {
                archive: path.to_path_buf(),
                source,
            })?;
            let identity = file_identity(&file).map_err(|source| ArchiveError::Open {
                archive: path.to_path_buf(),
                source,
            })?;
            Ok::<_, ArchiveError>((file, identity))
        };
        let (file, identity) = open()?;
        let first = Self::read_pass(path, file, opts, parser, &HashMap::new())?;
        let wanted = first.linked_from_outside(&opts.keep);
        if wanted.is_empty() {
            return Ok(first);
        }
        drop(first);
        let (file, again) = open()?;
        if again != identity {
            return Err(ArchiveError::Changed {
                archive: path.to_path_buf(),
            });
        }
        Self::read_pass(path, file, opts, parser, &wanted)
    }

    /// Reads an archive from `source` (standard input, say) in one pass;
    /// `name` is what messages call it. Files that links lead to outside the
    /// directories kept by default would need a second pass, which a stream
    /// cannot give: that is an error.
    pub fn from_reader<P>(
        name: &Path,
        source: impl Read,
        opts: &ArchiveOptions,
        parser: &P,
    ) -> Result<Self, ArchiveError>
    where
        P: ModuleParser<Parsed = M>,
    {
        let tree = Self::read_pass(name, source, opts, parser, &HashMap::new())?;
        let wanted = tree.linked_from_outside(&opts.keep);
        match wanted.keys().min() {
            None => Ok(tree),
            Some(first) => Err(ArchiveError::NeedsSecondPass {
                archive: name.to_path_buf(),
                entry: String::from_utf8_lossy(first).into_owned(),
            }),
        }
    }

    fn read_pass<P>(
        path: &Path,
        source: impl Read,
        opts: &ArchiveOptions,
        parser: &P,
        wanted: &HashMap<Vec<u8>, bool>,
    ) -> Result<Self, ArchiveError>
    where
        P: ModuleParser<Parsed = M>,
    {
        let spill = match &opts.spill_dir {
            Some(dir) => Some((
                tempfile::tempfile_in(dir).map_err(|source| ArchiveError::Open {
                    archive: dir.clone(),
                    source,
                })?,
                0u64,
            )),
            None => None,
        };
        let in_flight = InFlight {
            used: Mutex::new(0),
            freed: Condvar::new(),
            cap: parser.max_size(),
        };
        let mut builder = Builder {
            opts,
            max_module_size: parser.max_size(),
            nodes: Nodes::default(),
            slots: Vec::new(),
            failed: Vec::new(),
            in_flight: &in_flight,
            kept: 0,
            tracked: 0,
            wanted,
            spill,
            links: HashMap::new(),
            link_of: HashMap::new(),
            notes: Vec::new(),
            last_dir: None,
            inside: HashMap::new(),
        };
        builder.nodes.insert(Vec::new(), Node::Dir);
        let workers = rayon::current_num_threads();
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(workers * 2 + 2);
        let in_flight = &in_flight;
        let window = parser.max_size();
        let (result, parsed) = std::thread::scope(|s| {
            let parser = s.spawn(move || {
                rx.into_iter()
                    .par_bridge()
                    .map(|job| {
                        let sha: [u8; 32] = Sha256::digest(&job.bytes).into();
                        let parsed = parser.parse(&job.bytes);
                        let taken = job.bytes.len() as u64;
                        drop(job.bytes);
                        in_flight.give(taken);
                        (job.slot, parsed, sha)
                    })
                    .collect::<Vec<_>>()
            });
            let result = stream::for_each_entry_in(
                path,
                source,
                opts.max_input_size,
                window,
                &mut |entry: RawEntry<'_>| builder.entry(entry, &tx),
            );
            drop(tx);
            (result, parser.join())
        });
        result?;
        let parsed = parsed.unwrap_or_default();
        builder.share_links();
        let Builder {
            nodes,
            slots,
            failed,
            spill,
            notes,
            ..
        } = builder;
        let mut modules: Vec<Option<ModuleSlot<M>>> = slots.iter().map(|_| None).collect();
        for (slot, parsed, sha256) in parsed {
            modules[slot] = Some(ModuleSlot {
                parsed,
                sha256: Some(sha256),
                refused: None,
                spill: slots[slot].1,
                size: slots[slot].0,
            });
        }
        for (slot, reason) in failed {
            modules[slot] = Some(ModuleSlot {
                parsed: parser.refused(reason.clone()),
                sha256: None,
                refused: Some(reason),
                spill: None,
                size: slots[slot].0,
            });
        }
        let modules = modules
            .into_iter()
            .map(|m| {
                m.unwrap_or_else(|| ModuleSlot {
                    parsed: parser.unread("module parser failed".into()),
                    sha256: None,
                    refused: None,
                    spill: None,
                    size: 0,
                })
            })
            .collect();
        let mut tree = ArchiveTree {
            archive: path.to_path_buf(),
            nodes,
            children: HashMap::new(),
            modules,
            spill: spill.map(|(f, _)| f),
            notes,
            dirs: Mutex::default(),
        };
        tree.finish();
        Ok(tree)
    }
}

impl<M> ArchiveTree<M> {
    /// Files the pipeline may read that a pass did not keep because they lie
    /// outside the directories kept by default, reached through symlinks:
    /// modules (and `modules.order`, `modules.builtin*`) found by walking
    /// every module directory as discovery walks it, depmod.d files of a
    /// linked depmod.d directory, and the `keep` files. Canonical paths, with
    /// whether each is to be read as a module.
    fn linked_from_outside(&self, keep: &[Vec<u8>]) -> HashMap<Vec<u8>, bool> {
        let mut wanted = HashMap::new();
        let mut want = |tree: &Self, path: &[u8], module: bool| {
            if let Ok(canon) = tree.resolve_cached(path, true) {
                let unkept = matches!(
                    tree.nodes.get(&canon),
                    Some(Node::File {
                        data: FileData::Unkept,
                        ..
                    })
                );
                if unkept && !in_module_dir(&canon) && !in_config_dir(&canon) {
                    wanted.insert(canon, module);
                }
            }
        };
        for root in MODULE_DIRS {
            let Ok(versions) = self.entries(root.as_bytes()) else {
                continue;
            };
            for version in versions.iter().filter(|e| e.kind == EntryKind::Dir) {
                let dir = join2(root.as_bytes(), &version.name);
                for name in [
                    "modules.order",
                    "modules.builtin",
                    "modules.builtin.modinfo",
                ] {
                    want(self, &join2(&dir, name.as_bytes()), false);
                }
                let mut seen = HashSet::new();
                let mut pending = vec![dir];
                while let Some(dir) = pending.pop() {
                    if !self.canonical_dir(&dir).is_some_and(|id| seen.insert(id)) {
                        continue;
                    }
                    for entry in self.entries(&dir).unwrap_or_default() {
                        if SKIPPED_NAMES.contains(&entry.name.as_slice()) {
                            continue;
                        }
                        let path = join2(&dir, &entry.name);
                        match entry.kind {
                            EntryKind::Dir => pending.push(path),
                            EntryKind::File if is_module_file(&entry.name) => {
                                want(self, &path, true)
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
        for dir in CONFIG_DIRS {
            for entry in self.entries(dir.as_bytes()).unwrap_or_default() {
                if entry.kind == EntryKind::File {
                    want(self, &join2(dir.as_bytes(), &entry.name), false);
                }
            }
        }
        for path in keep {
            want(self, path, false);
        }
        wanted
    }
}

/// What tells whether a file changed between two reads.
fn file_identity(file: &std::fs::File) -> io::Result<(u64, u64, u64, i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata()?;
    Ok((
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec(),
    ))
}

impl<M> ArchiveTree<M> {
    fn finish(&mut self) {
        for path in self.nodes.keys().filter(|p| !p.is_empty()) {
            let (parent, name) = parent_of(path);
            self.children
                .entry(parent.to_vec())
                .or_default()
                .insert(name.to_vec());
        }
        let mut links: Vec<(&Vec<u8>, &Vec<u8>)> = self
            .nodes
            .iter()
            .filter_map(|(p, n)| match n {
                Node::Symlink(t) => Some((p, t)),
                _ => None,
            })
            .collect();
        links.sort();
        for (path, target) in links {
            let why = match self.resolve_cached(path, true) {
                Err(Unresolved::Escapes) => "it points outside the archive",
                Err(Unresolved::Loop) => "it is a symlink loop",
                Err(Unresolved::TooLong) => "it leads to a path too long to follow",
                _ => continue,
            };
            self.notes.push(format!(
                "ignoring symlink `{}` -> `{}`: {why}",
                shown(path),
                shown(target)
            ));
        }
    }

    /// Things worth telling the user: ignored entries and symlinks.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// [`resolve`], with the parent directory taken from (and added to)
    /// the cache of resolved directories.
    fn resolve_cached(&self, path: &[u8], follow_last: bool) -> Result<Vec<u8>, Unresolved> {
        if path.len() > MAX_PATH_BYTES {
            return Err(Unresolved::TooLong);
        }
        let (parent, name) = parent_of(path);
        let (base, hops) = self.resolve_dir(parent)?;
        resolve_from(&self.nodes, (&base, hops), name, follow_last).map(|(canon, _)| canon)
    }

    /// The canonical path of the directory `dir` (and the symlinks followed
    /// to it), resolved from its nearest cached ancestor a component at a
    /// time, each cached.
    fn resolve_dir(&self, dir: &[u8]) -> Result<(Vec<u8>, u32), Unresolved> {
        let lock = || {
            self.dirs
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        };
        let found = {
            let cache = lock();
            super::nearest_cached(dir, |d| cache.get(d).cloned())
        };
        let (mut base, rest) = found.unwrap_or(((Vec::new(), 0), dir));
        // The rest, a component at a time, each cached under its prefix.
        let mut from = dir.len() - rest.len();
        let mut left = !rest.is_empty();
        while left {
            let end = dir[from..]
                .iter()
                .position(|&b| b == b'/')
                .map_or(dir.len(), |i| from + i);
            let next = resolve_from(&self.nodes, (&base.0, base.1), &dir[from..end], true)?;
            match self.nodes.get(&next.0) {
                Some(Node::Dir) => {}
                Some(_) => return Err(Unresolved::NotDir),
                None => return Err(Unresolved::Missing(next.0)),
            }
            lock().insert(dir[..end].to_vec(), next.clone());
            base = next;
            (from, left) = (end + 1, end < dir.len());
        }
        Ok(base)
    }

    fn node(&self, path: &[u8]) -> io::Result<(Vec<u8>, &Node)> {
        let canon = self.resolve_cached(path, true).map_err(|e| match e {
            Unresolved::Loop => io::Error::other("Too many levels of symbolic links"),
            Unresolved::NotDir => io::Error::other("Not a directory"),
            Unresolved::Escapes => io::Error::other("symlink leads outside the archive"),
            Unresolved::Missing(_) => io::Error::from(io::ErrorKind::NotFound),
            Unresolved::TooLong => io::Error::from_raw_os_error(libc::ENAMETOOLONG),
        })?;
        match self.nodes.get(&canon) {
            Some(node) => Ok((canon, node)),
            None => Err(io::Error::from(io::ErrorKind::NotFound)),
        }
    }

    fn kind_of(node: &Node) -> EntryKind {
        match node {
            Node::Dir => EntryKind::Dir,
            Node::File { .. } => EntryKind::File,
            _ => EntryKind::Other,
        }
    }
}

impl<M> ArchiveTree<M> {
    /// What the parser made of the module file at `path`.
    pub fn parsed(&self, path: &[u8]) -> io::Result<&M> {
        match self.node(path)? {
            (_, Node::File { data: FileData::Module(slot), .. }) => Ok(&self.modules[*slot].parsed),
            _ => Err(io::Error::other(
                "not read from the archive (modules are read only under lib/modules/<version>/ and usr/lib/modules/<version>/)",
            )),
        }
    }
}

impl<M> ArchiveTree<M> {
    /// [`Tree::read_dir`].
    fn entries(&self, path: &[u8]) -> io::Result<Vec<DirEntry>> {
        let (canon, node) = self.node(path)?;
        if !matches!(node, Node::Dir) {
            return Err(io::Error::other("Not a directory"));
        }
        let Some(names) = self.children.get(&canon) else {
            return Ok(Vec::new());
        };
        Ok(names
            .iter()
            .map(|name| DirEntry {
                name: name.clone(),
                kind: self
                    .node(&join2(&canon, name))
                    .map_or(EntryKind::Other, |(_, n)| Self::kind_of(n)),
            })
            .collect())
    }

    /// [`Tree::dir_id`].
    fn canonical_dir(&self, path: &[u8]) -> Option<DirId> {
        match self.node(path).ok()? {
            (canon, Node::Dir) => Some(DirId::Path(canon)),
            _ => None,
        }
    }
}

impl<M: Sync> Tree for ArchiveTree<M> {
    fn read_dir(&self, path: &[u8]) -> io::Result<Vec<DirEntry>> {
        self.entries(path)
    }

    fn read(&self, path: &[u8]) -> io::Result<Contents> {
        let (_, node) = self.node(path)?;
        match node {
            Node::File { data, .. } => match data {
                FileData::Small(bytes) => Ok(Contents::Owned(bytes.to_vec())),
                FileData::Module(slot) => {
                    let m = &self.modules[*slot];
                    match (&self.spill, m.spill) {
                        (Some(file), Some(at)) => {
                            use std::os::unix::fs::FileExt;
                            let mut buf = vec![0u8; usize::try_from(m.size).map_err(io::Error::other)?];
                            file.read_exact_at(&mut buf, at)?;
                            Ok(Contents::Owned(buf))
                        }
                        _ => Err(match &m.refused {
                            Some(refused) => refused.clone().into_io(),
                            None => io::Error::other("module contents were not kept from the archive"),
                        }),
                    }
                }
                FileData::Spilled { at, size } => match &self.spill {
                    Some(file) => {
                        use std::os::unix::fs::FileExt;
                        let mut buf = vec![0u8; usize::try_from(*size).map_err(io::Error::other)?];
                        file.read_exact_at(&mut buf, *at)?;
                        Ok(Contents::Owned(buf))
                    }
                    None => Err(io::Error::other("contents were not kept from the archive")),
                },
                FileData::Unkept => Err(io::Error::other(
                    "contents were not kept from the archive (outside the directories kmodidx reads, or too large)",
                )),
            },
            Node::Dir => Err(io::Error::other("Is a directory")),
            _ => Err(io::Error::other("not a regular file")),
        }
    }

    fn kind(&self, path: &[u8]) -> Option<EntryKind> {
        self.node(path).ok().map(|(_, n)| Self::kind_of(n))
    }

    fn dir_id(&self, path: &[u8]) -> Option<DirId> {
        self.canonical_dir(path)
    }

    fn link_target(&self, path: &[u8]) -> Option<Vec<u8>> {
        let canon = self.resolve_cached(path, false).ok()?;
        match self.nodes.get(&canon) {
            Some(Node::Symlink(t)) => Some(t.clone()),
            _ => None,
        }
    }

    fn display(&self, path: &[u8]) -> String {
        format!(
            "{}:{}",
            self.archive.display(),
            String::from_utf8_lossy(path)
        )
    }

    fn digest(&self, path: &[u8]) -> io::Result<(u64, [u8; 32])> {
        match self.node(path)? {
            (
                _,
                Node::File {
                    data: FileData::Module(slot),
                    ..
                },
            ) => {
                let m = &self.modules[*slot];
                match (m.sha256, &m.refused) {
                    (Some(sha256), _) => Ok((m.size, sha256)),
                    (None, Some(refused)) => Err(refused.clone().into_io()),
                    (None, None) => Err(io::Error::other("module contents were not read")),
                }
            }
            _ => {
                let bytes = self.read(path)?;
                Ok((bytes.len() as u64, Sha256::digest(&*bytes).into()))
            }
        }
    }

    fn executable(&self, path: &[u8]) -> bool {
        matches!(self.node(path), Ok((_, Node::File { mode, .. })) if mode & 0o111 != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(list: &[(&str, Node)]) -> Nodes {
        let mut m: Nodes = list
            .iter()
            .map(|(p, n)| (p.as_bytes().to_vec(), n.clone()))
            .collect();
        m.insert(Vec::new(), Node::Dir);
        m
    }

    #[test]
    fn resolves_inside_the_root() {
        let n = nodes(&[
            ("usr", Node::Dir),
            ("usr/lib", Node::Dir),
            ("lib", Node::Symlink(b"usr/lib".to_vec())),
            ("abs", Node::Symlink(b"/usr/lib".to_vec())),
            ("up", Node::Symlink(b"../etc".to_vec())),
            ("loop", Node::Symlink(b"loop".to_vec())),
        ]);
        assert_eq!(
            resolve(&n, b"lib/modules", true).unwrap(),
            b"usr/lib/modules"
        );
        assert_eq!(resolve(&n, b"abs", true).unwrap(), b"usr/lib");
        assert_eq!(resolve(&n, b"lib", false).unwrap(), b"lib");
        assert_eq!(resolve(&n, b"up", true), Err(Unresolved::Escapes));
        assert_eq!(resolve(&n, b"loop", true), Err(Unresolved::Loop));
        assert_eq!(
            resolve(&n, b"x/y", true),
            Err(Unresolved::Missing(b"x".to_vec()))
        );
    }

    #[test]
    fn refuses_dotdot() {
        assert!(normalize(b"a/../b").is_err());
        assert_eq!(normalize(b"/./a//b/").unwrap(), b"a/b");
        assert!(is_module_path(b"usr/lib/modules/6.1/kernel/a.ko.xz"));
        assert!(!is_module_path(b"lib/modules/a.ko"));
        assert!(in_config_dir(b"etc/depmod.d/x.conf"));
    }
}
