//! Writing an output, reproducibly: a directory, a tar or a newc cpio
//! archive, compressed with gzip, xz or zstd or not at all.
//!
//! What a failure leaves behind: an archive, a new directory and any single
//! file (the manifest, a report) are built under a temporary name that
//! cannot collide (see [`super::temp`]: `.NAME.kmodidx-tmp-PID-RANDOM`,
//! whose leftovers a later run removes once `PID` is gone) beside the
//! target and renamed into place, so the target is either untouched or
//! complete. Into an *existing* directory (which must be empty or an
//! earlier kmodidx output), every file is first written in full under such
//! a temporary name next to its final place; a failure up to there removes
//! them all (and the directories kmodidx created) and leaves the directory
//! as it was. Only then are the files renamed into place, one after
//! another, in path order; if a rename fails (which a same-directory rename
//! practically never does), the files before it are new, the rest old, and
//! the error says how many were replaced ([`OutputError::PartlyReplaced`]).
//! Last, the earlier output's files that the new one does not hold are
//! removed.
//!
//! Targets are only ever regular files or directories: a rename never
//! replaces a device node, a FIFO or a socket ([`OutputError::Special`]),
//! and a symlink is never written through. The manifest and the report may
//! instead be streamed into a FIFO or character device
//! ([`write_or_stream`]).
//!
//! Every form holds the same entries: the files of a [`Plan`] and every
//! directory above them, sorted by path bytes, owned by root (uid and gid 0),
//! with one fixed mtime, files 0644 (0755 if the input file was executable)
//! and directories 0755. Compressors run single-threaded at fixed levels and
//! embed no names or times, so the bytes depend on the plan alone.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::manifest::{Manifest, ManifestError, MANIFEST_NAME, MAX_MANIFEST};
use super::temp;
use crate::source::Tree;

/// Where a file's bytes come from.
#[derive(Debug, Clone)]
pub enum FileSource {
    /// Bytes made by kmodidx.
    Bytes(Arc<[u8]>),
    /// A file of the input tree, read again when written.
    Tree(Vec<u8>),
}

/// One file to write.
#[derive(Debug, Clone)]
pub struct PlannedFile {
    /// Path relative to the output root, `/`-separated.
    pub path: Vec<u8>,
    /// Permission bits: 0644, or 0755 for an executable input file.
    pub mode: u32,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the contents (checked again when a tree file is copied).
    pub sha256: [u8; 32],
    /// Where the bytes come from.
    pub source: FileSource,
}

impl PlannedFile {
    /// A file of bytes made by kmodidx, mode 0644.
    pub fn bytes(path: Vec<u8>, bytes: impl Into<Arc<[u8]>>) -> Self {
        let bytes: Arc<[u8]> = bytes.into();
        PlannedFile {
            path,
            mode: 0o644,
            size: bytes.len() as u64,
            sha256: Sha256::digest(&bytes).into(),
            source: FileSource::Bytes(bytes),
        }
    }
}

/// Everything an output holds.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Sorted by path bytes.
    pub files: Vec<PlannedFile>,
}

impl Plan {
    /// Sorts the files by path bytes (dropping repeated paths).
    pub fn sort(&mut self) {
        self.files.sort_by(|a, b| a.path.cmp(&b.path));
        self.files.dedup_by(|a, b| a.path == b.path);
    }
}

/// Output compression: the same four kinds modules and inputs come in.
pub use crate::compress::Compression;

/// The form of an output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// A directory.
    Dir,
    /// A tar archive.
    Tar(Compression),
    /// A newc cpio archive.
    Cpio(Compression),
}

/// gzip's level: fixed, part of the reproducibility contract.
pub const GZIP_LEVEL: u32 = 6;
/// xz's preset: fixed, part of the reproducibility contract.
pub const XZ_PRESET: u32 = 6;
/// zstd's level: fixed, part of the reproducibility contract.
pub const ZSTD_LEVEL: i32 = 10;

/// Every `--format` name, in the order help texts list them.
pub const FORMAT_NAMES: [&str; 9] = [
    "dir", "tar", "tar.gz", "tar.xz", "tar.zst", "cpio", "cpio.gz", "cpio.xz", "cpio.zst",
];

/// Name endings that select an archive form, longest first where one ends
/// another (`.tar.gz` before `.gz` would matter).
const SUFFIXES: [&str; 11] = [
    "tar.gz", "tgz", "tar.xz", "txz", "tar.zst", "tzst", "tar", "cpio.gz", "cpio.xz", "cpio.zst",
    "cpio",
];

/// An output name ending in something that is not a known form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: unknown output extension `.{extension}`; known: .{}; a name without an extension is a directory (or choose with --format)", path.display(), SUFFIXES.join(", ."))]
pub struct UnknownExtension {
    /// The output.
    pub path: PathBuf,
    /// What follows the first `.` of the file name.
    pub extension: String,
}

impl OutputFormat {
    /// Parses a `--format` value.
    pub fn parse(name: &str) -> Option<OutputFormat> {
        use Compression as C;
        Some(match name {
            "dir" => OutputFormat::Dir,
            "tar" => OutputFormat::Tar(C::None),
            "tar.gz" | "tgz" => OutputFormat::Tar(C::Gzip),
            "tar.xz" | "txz" => OutputFormat::Tar(C::Xz),
            "tar.zst" | "tzst" => OutputFormat::Tar(C::Zstd),
            "cpio" => OutputFormat::Cpio(C::None),
            "cpio.gz" => OutputFormat::Cpio(C::Gzip),
            "cpio.xz" => OutputFormat::Cpio(C::Xz),
            "cpio.zst" => OutputFormat::Cpio(C::Zstd),
            _ => return None,
        })
    }

    /// The form an output name asks for: a known archive ending (`.tar`,
    /// `.tar.gz`, `.cpio.zst`, ...), else a directory when the name has no
    /// extension (no `.` after its first byte) or is an existing directory.
    /// Any other ending is an error, so that `out.zip` never silently
    /// becomes a directory.
    pub fn for_path(path: &Path) -> Result<OutputFormat, UnknownExtension> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for s in SUFFIXES {
            if name.len() > s.len() + 1 && name.ends_with(&format!(".{s}")) {
                if let Some(format) = OutputFormat::parse(s) {
                    return Ok(format);
                }
            }
        }
        match name.get(1..).and_then(|rest| rest.find('.')) {
            Some(dot) if !path.is_dir() => Err(UnknownExtension {
                path: path.to_path_buf(),
                extension: name[dot + 2..].to_string(),
            }),
            _ => Ok(OutputFormat::Dir),
        }
    }

    /// The `--format` name of the form.
    pub fn name(self) -> &'static str {
        use Compression as C;
        match self {
            OutputFormat::Dir => "dir",
            OutputFormat::Tar(C::None) => "tar",
            OutputFormat::Tar(C::Gzip) => "tar.gz",
            OutputFormat::Tar(C::Xz) => "tar.xz",
            OutputFormat::Tar(C::Zstd) => "tar.zst",
            OutputFormat::Cpio(C::None) => "cpio",
            OutputFormat::Cpio(C::Gzip) => "cpio.gz",
            OutputFormat::Cpio(C::Xz) => "cpio.xz",
            OutputFormat::Cpio(C::Zstd) => "cpio.zst",
        }
    }
}

/// Why an output could not be written. Every path named is the target's,
/// never a temporary one.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// An I/O error on the output.
    #[error("{action} {}: {}", path.display(), crate::util::io_reason(source))]
    Io {
        /// What failed, such as `cannot write`.
        action: &'static str,
        /// The target path concerned.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The output, or a directory in it, is a symlink.
    #[error("{}: refusing to write through the symlink {}", out.display(), link.display())]
    Symlink {
        /// The output.
        out: PathBuf,
        /// The symlink.
        link: PathBuf,
    },
    /// The target is a device node, a FIFO or a socket, which a rename
    /// would replace with a regular file.
    #[error("{}: refusing to replace {kind} with a regular file", path.display())]
    Special {
        /// The target.
        path: PathBuf,
        /// What it is, such as `a character device`.
        kind: &'static str,
    },
    /// A FIFO target that no process has open for reading (writing would
    /// wait forever).
    #[error("{}: no process is reading from this FIFO", .0.display())]
    NoReader(PathBuf),
    /// An existing output directory holds something that is not part of an
    /// earlier kmodidx output (so `verify` would reject the result).
    #[error("{}: the directory is not empty, and {} is not part of an earlier kmodidx output there ({reason}); write into a new or empty directory, or remove this one first", out.display(), entry.display())]
    NotOurs {
        /// The output directory.
        out: PathBuf,
        /// The first entry found that is not ours.
        entry: PathBuf,
        /// Why it is not.
        reason: Foreign,
    },
    /// Something the format cannot hold.
    #[error("{}: {what} `{}` cannot be stored: {why}", out.display(), String::from_utf8_lossy(path))]
    Unstorable {
        /// The output.
        out: PathBuf,
        /// What it is: `path`, `file`, `mtime`.
        what: &'static str,
        /// The entry (or value).
        path: Vec<u8>,
        /// Why.
        why: String,
    },
    /// A file copied from the input could not be read.
    #[error("{}: reading `{}` from the input: {}", out.display(), String::from_utf8_lossy(path), crate::util::io_reason(source))]
    Input {
        /// The output.
        out: PathBuf,
        /// The input file.
        path: Vec<u8>,
        /// Why.
        source: io::Error,
    },
    /// A file copied from the input changed since it was planned.
    #[error("{}: `{}` changed while it was copied (size or SHA-256 differ from the first read)", out.display(), String::from_utf8_lossy(path))]
    Changed {
        /// The output.
        out: PathBuf,
        /// The input file.
        path: Vec<u8>,
    },
    /// A rename into an existing directory failed after others succeeded.
    #[error("cannot rename into {}: {} ({replaced} of {total} files of {} were already replaced; run again to finish)", path.display(), crate::util::io_reason(source), out.display())]
    PartlyReplaced {
        /// The output directory.
        out: PathBuf,
        /// The file whose rename failed.
        path: PathBuf,
        /// Files renamed before it.
        replaced: usize,
        /// Files to rename in all.
        total: usize,
        /// Why.
        source: io::Error,
    },
}

/// Why an entry of an existing output directory is not part of an
/// earlier kmodidx output.
#[derive(Debug, thiserror::Error)]
pub enum Foreign {
    /// The directory has no manifest to tell what is ours.
    #[error("there is no {MANIFEST_NAME} at its root{}", elsewhere.as_ref().map(|p| format!(" nor at {}", p.display())).unwrap_or_default())]
    NoManifest {
        /// The `--manifest` path looked at too, if any.
        elsewhere: Option<PathBuf>,
    },
    /// The manifest cannot be read.
    #[error("its manifest {} is not valid: {source}", path.display())]
    BadManifest {
        /// The manifest.
        path: PathBuf,
        /// Why.
        source: ManifestError,
    },
    /// The manifest cannot be read.
    #[error("its manifest {}: {}", path.display(), crate::util::io_reason(source))]
    UnreadableManifest {
        /// The manifest.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The manifest does not list the entry.
    #[error("{} does not list it", .0.display())]
    Unlisted(PathBuf),
    /// The entry is not a regular file.
    #[error("it is {0}")]
    NotAFile(&'static str),
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> OutputError {
    let path = path.to_path_buf();
    move |source| OutputError::Io {
        action,
        path,
        source,
    }
}

/// An entry of an output, in write order.
enum Item<'a> {
    Dir(Vec<u8>),
    File(&'a PlannedFile),
}

impl Item<'_> {
    fn path(&self) -> &[u8] {
        match self {
            Item::Dir(p) => p,
            Item::File(f) => &f.path,
        }
    }
}

/// The files and every directory above them, sorted by path bytes.
fn items(plan: &Plan) -> Vec<Item<'_>> {
    let mut dirs: BTreeMap<Vec<u8>, ()> = BTreeMap::new();
    for f in &plan.files {
        let mut end = 0;
        while let Some(i) = f.path[end..].iter().position(|&b| b == b'/') {
            end += i;
            dirs.insert(f.path[..end].to_vec(), ());
            end += 1;
        }
    }
    let mut all: Vec<Item<'_>> = dirs.into_keys().map(Item::Dir).collect();
    all.extend(plan.files.iter().map(Item::File));
    all.sort_by(|a, b| a.path().cmp(b.path()));
    all
}

/// Reads a planned file's bytes, checking them against the plan.
fn contents(out: &Path, tree: &dyn Tree, f: &PlannedFile) -> Result<Arc<[u8]>, OutputError> {
    match &f.source {
        FileSource::Bytes(b) => Ok(b.clone()),
        FileSource::Tree(p) => {
            let bytes = tree.read(p).map_err(|source| OutputError::Input {
                out: out.to_path_buf(),
                path: p.clone(),
                source,
            })?;
            let sha: [u8; 32] = Sha256::digest(&*bytes).into();
            if bytes.len() as u64 != f.size || sha != f.sha256 {
                return Err(OutputError::Changed {
                    out: out.to_path_buf(),
                    path: p.clone(),
                });
            }
            Ok(Arc::from(&*bytes))
        }
    }
}

/// Writes `plan` to `out` in the given form (see the module documentation
/// for what a failure leaves). An existing directory `out` must be empty
/// or an earlier kmodidx output, told by the manifest at its root or at
/// `manifest_elsewhere`; the files of that output that `plan` does not
/// hold are removed, so that the directory holds exactly the plan.
pub fn write_output(
    plan: &Plan,
    tree: &dyn Tree,
    format: OutputFormat,
    out: &Path,
    mtime: u64,
    manifest_elsewhere: Option<&Path>,
) -> Result<(), OutputError> {
    match format {
        OutputFormat::Dir => write_dir(plan, tree, out, mtime, manifest_elsewhere),
        OutputFormat::Tar(_) | OutputFormat::Cpio(_) => {
            write_file_atomically(out, |w| write_archive(plan, tree, format, out, mtime, w))
        }
    }
}

/// Writes `plan` as an archive to `w` (standard output, say); `name` is
/// what errors call it. A directory form is refused.
pub fn write_archive(
    plan: &Plan,
    tree: &dyn Tree,
    format: OutputFormat,
    name: &Path,
    mtime: u64,
    w: &mut dyn Write,
) -> Result<(), OutputError> {
    let out = name;
    let c = match format {
        OutputFormat::Tar(c) | OutputFormat::Cpio(c) => c,
        OutputFormat::Dir => {
            return Err(OutputError::Io {
                action: "cannot write",
                path: out.to_path_buf(),
                source: io::Error::other("a directory cannot be written to a stream"),
            })
        }
    };
    if format == OutputFormat::Cpio(c) && mtime > u64::from(u32::MAX) {
        return Err(OutputError::Unstorable {
            out: out.to_path_buf(),
            what: "mtime",
            path: mtime.to_string().into_bytes(),
            why: "cpio stores at most 32 bits".into(),
        });
    }
    let w = compressor(w, c).map_err(io_err("cannot compress", out))?;
    let w = match format {
        OutputFormat::Cpio(_) => write_cpio(plan, tree, out, mtime, w)?,
        _ => write_tar(plan, tree, out, mtime, w)?,
    };
    w.finish().map_err(io_err("cannot write", out))
}
/// A compressing writer that must be finished explicitly.
trait Finish: Write {
    fn finish(self: Box<Self>) -> io::Result<()>;
}

struct Plain<W: Write>(W);
impl<W: Write> Write for Plain<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}
impl<W: Write> Finish for Plain<W> {
    fn finish(mut self: Box<Self>) -> io::Result<()> {
        self.0.flush()
    }
}
impl<W: Write> Finish for flate2::write::GzEncoder<W> {
    fn finish(self: Box<Self>) -> io::Result<()> {
        (*self).finish()?.flush()
    }
}
impl<W: Write> Finish for liblzma::write::XzEncoder<W> {
    fn finish(self: Box<Self>) -> io::Result<()> {
        (*self).finish()?.flush()
    }
}
impl<W: Write> Finish for zstd::stream::write::Encoder<'static, W> {
    fn finish(self: Box<Self>) -> io::Result<()> {
        (*self).finish()?.flush()
    }
}

fn compressor<'w, W: Write + 'w>(w: W, c: Compression) -> io::Result<Box<dyn Finish + 'w>> {
    Ok(match c {
        Compression::None => Box::new(Plain(w)),
        // No file name, mtime 0, OS byte "unknown": flate2's defaults.
        Compression::Gzip => Box::new(
            flate2::GzBuilder::new()
                .mtime(0)
                .write(w, flate2::Compression::new(GZIP_LEVEL)),
        ),
        Compression::Xz => Box::new(liblzma::write::XzEncoder::new(w, XZ_PRESET)),
        Compression::Zstd => {
            let mut e = zstd::stream::write::Encoder::new(w, ZSTD_LEVEL)?;
            e.include_checksum(false)?;
            e.include_contentsize(false)?;
            e.include_dictid(false)?;
            Box::new(e)
        }
    })
}

fn write_tar<'w>(
    plan: &Plan,
    tree: &dyn Tree,
    out: &Path,
    mtime: u64,
    w: Box<dyn Finish + 'w>,
) -> Result<Box<dyn Finish + 'w>, OutputError> {
    let mut builder = tar::Builder::new(w);
    for item in items(plan) {
        let mut header = tar::Header::new_ustar();
        let (name, data, mode, kind) = match &item {
            Item::Dir(p) => {
                let mut name = p.clone();
                name.push(b'/');
                (name, None, 0o755, tar::EntryType::Directory)
            }
            Item::File(f) => (
                f.path.clone(),
                Some(contents(out, tree, f)?),
                f.mode,
                tar::EntryType::Regular,
            ),
        };
        header
            .set_path(std::ffi::OsStr::from_bytes(&name))
            .map_err(|e| OutputError::Unstorable {
                out: out.to_path_buf(),
                what: "path",
                path: name.clone(),
                why: e.to_string(),
            })?;
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(mtime);
        let _ = header.set_username("root");
        let _ = header.set_groupname("root");
        let _ = header.set_device_major(0);
        let _ = header.set_device_minor(0);
        header.set_size(data.as_ref().map_or(0, |d| d.len() as u64));
        header.set_cksum();
        let body: &[u8] = data.as_deref().unwrap_or(&[]);
        builder
            .append(&header, body)
            .map_err(io_err("cannot write", out))?;
    }
    builder.into_inner().map_err(io_err("cannot write", out))
}

fn write_cpio<'w>(
    plan: &Plan,
    tree: &dyn Tree,
    out: &Path,
    mtime: u64,
    mut w: Box<dyn Finish + 'w>,
) -> Result<Box<dyn Finish + 'w>, OutputError> {
    for (i, item) in items(plan).iter().enumerate() {
        let name = std::str::from_utf8(item.path()).map_err(|_| OutputError::Unstorable {
            out: out.to_path_buf(),
            what: "path",
            path: item.path().to_vec(),
            why: "cpio names written by kmodidx must be UTF-8".into(),
        })?;
        let (mode, nlink, data) = match item {
            Item::Dir(_) => (0o040755, 2, None),
            Item::File(f) => (0o100000 | f.mode, 1, Some(contents(out, tree, f)?)),
        };
        let body: &[u8] = data.as_deref().unwrap_or(&[]);
        let size = u32::try_from(body.len()).map_err(|_| OutputError::Unstorable {
            out: out.to_path_buf(),
            what: "file",
            path: item.path().to_vec(),
            why: "newc cpio stores files of at most 4 GiB".into(),
        })?;
        let mut writer = cpio::newc::Builder::new(name)
            .ino(i as u32 + 1)
            .mode(mode)
            .uid(0)
            .gid(0)
            .nlink(nlink)
            .mtime(mtime as u32)
            .write(w, size);
        writer
            .write_all(body)
            .map_err(io_err("cannot write", out))?;
        w = writer.finish().map_err(io_err("cannot write", out))?;
    }
    cpio::newc::trailer(w).map_err(io_err("cannot write", out))
}

/// What a file type is when it is neither a regular file, a directory
/// nor a symlink.
fn special_kind(t: fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    if t.is_fifo() {
        Some("a FIFO")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        None
    }
}

/// Refuses to replace anything but a regular file (or nothing): a symlink,
/// a directory, a device node, a FIFO or a socket. Renaming over a device
/// node would destroy it (`/dev/null`, as root), and over a FIFO would cut
/// off whoever reads it.
fn refuse_non_regular(target: &Path) -> Result<(), OutputError> {
    let Ok(meta) = fs::symlink_metadata(target) else {
        return Ok(());
    };
    let t = meta.file_type();
    if t.is_symlink() {
        return Err(OutputError::Symlink {
            out: target.to_path_buf(),
            link: target.to_path_buf(),
        });
    }
    if t.is_dir() {
        return Err(OutputError::Io {
            action: "cannot replace",
            path: target.to_path_buf(),
            source: io::Error::other("it is a directory"),
        });
    }
    match special_kind(t) {
        Some(kind) => Err(OutputError::Special {
            path: target.to_path_buf(),
            kind,
        }),
        None => Ok(()),
    }
}

/// Writes a file through `fill` into a temporary file beside `target`
/// (mode 0644), then renames it into place. On error the temporary file is
/// removed and the target is untouched; errors name the target.
pub fn write_file_atomically(
    target: &Path,
    fill: impl FnOnce(&mut dyn Write) -> Result<(), OutputError>,
) -> Result<(), OutputError> {
    refuse_non_regular(target)?;
    let temp = temp::file_beside(target).map_err(io_err("cannot create", target))?;
    {
        let mut w = BufWriter::with_capacity(1 << 20, temp.as_file());
        fill(&mut w)?;
        w.flush().map_err(io_err("cannot write", target))?;
    }
    set_file_mode(temp.as_file(), 0o644).map_err(io_err("cannot set permissions of", target))?;
    temp.persist(target)
        .map_err(|e| io_err("cannot rename into", target)(e.error))?;
    Ok(())
}

/// Writes `bytes` to `target` as [`write_file_atomically`] does.
pub fn write_bytes_atomically(target: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    write_file_atomically(target, |w| {
        w.write_all(bytes).map_err(io_err("cannot write", target))
    })
}

/// Writes a small single-file output (the manifest, a report) to
/// `target`. A FIFO or a character device there, reached directly or
/// through symlinks (as `/dev/stdout` and a shell's `>(...)` are), is
/// written to as a stream, so `--report /dev/stdout` and `--report
/// /dev/null` work and never replace the device; a FIFO that no process
/// reads is an error, not a wait. Anything else is replaced atomically as
/// [`write_bytes_atomically`] does (refusing symlinks to anything else,
/// directories, block devices and sockets).
pub fn write_or_stream(target: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    match fs::metadata(target) {
        Ok(m) if is_stream(m.file_type()) => stream_into(target, bytes),
        _ => write_bytes_atomically(target, bytes),
    }
}

fn is_stream(t: fs::FileType) -> bool {
    use std::os::unix::fs::FileTypeExt;
    t.is_fifo() || t.is_char_device()
}

fn stream_into(target: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    // Non-blocking open: a FIFO without a reader fails (ENXIO) instead of
    // waiting. No O_CREAT and no O_TRUNC: this only ever writes into what
    // is there.
    let file = fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(target)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ENXIO) => OutputError::NoReader(target.to_path_buf()),
            _ => io_err("cannot open", target)(e),
        })?;
    // What was opened must still be a stream, not a file put in its place
    // since it was looked at (which this would overwrite in place).
    let meta = file.metadata().map_err(io_err("cannot inspect", target))?;
    if !is_stream(meta.file_type()) {
        return Err(OutputError::Io {
            action: "cannot write",
            path: target.to_path_buf(),
            source: io::Error::other("it was replaced while being opened"),
        });
    }
    // Blocking writes from here on, so a slow reader is waited for.
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor this function owns; F_GETFL/F_SETFL
    // only read and set its status flags.
    let cleared = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) == 0
    };
    if !cleared {
        return Err(io_err("cannot write", target)(io::Error::last_os_error()));
    }
    (&file)
        .write_all(bytes)
        .map_err(io_err("cannot write", target))
}

fn set_file_mode(file: &fs::File, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(mode))
}

fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

fn set_mtime(file: &fs::File, mtime: u64) -> io::Result<()> {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime);
    file.set_times(fs::FileTimes::new().set_modified(t).set_accessed(t))
}

fn host(root: &Path, rel: &[u8]) -> PathBuf {
    root.join(std::ffi::OsStr::from_bytes(rel))
}

/// Directory output: a new directory is built aside and renamed into
/// place; into an existing one, files are staged and then renamed (see the
/// module documentation).
fn write_dir(
    plan: &Plan,
    tree: &dyn Tree,
    out: &Path,
    mtime: u64,
    manifest_elsewhere: Option<&Path>,
) -> Result<(), OutputError> {
    match fs::symlink_metadata(out) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => write_new_dir(plan, tree, out, mtime),
        Err(e) => Err(io_err("cannot inspect", out)(e)),
        Ok(m) if m.file_type().is_symlink() => Err(OutputError::Symlink {
            out: out.to_path_buf(),
            link: out.to_path_buf(),
        }),
        Ok(m) if !m.is_dir() => Err(match special_kind(m.file_type()) {
            Some(kind) => OutputError::Special {
                path: out.to_path_buf(),
                kind,
            },
            None => OutputError::Io {
                action: "cannot write into",
                path: out.to_path_buf(),
                source: io::Error::other("it exists and is not a directory"),
            },
        }),
        Ok(_) => {
            let previous = earlier_output(out, manifest_elsewhere)?;
            write_into_existing(plan, tree, out, mtime, &previous)
        }
    }
}

/// The files of an existing output directory, which must be empty (but for
/// directories) or an earlier kmodidx output: every other entry a regular
/// file its manifest lists (or that manifest itself). Paths are relative to
/// `out`, in walk order.
fn earlier_output(
    out: &Path,
    manifest_elsewhere: Option<&Path>,
) -> Result<Vec<Vec<u8>>, OutputError> {
    let mut files = Vec::new();
    let mut pending = vec![Vec::new()];
    // The manifest is read only once there is something to account for.
    let mut listed: Option<std::collections::BTreeSet<Vec<u8>>> = None;
    while let Some(rel) = pending.pop() {
        let dir = host(out, &rel);
        let mut names: Vec<std::ffi::OsString> = fs::read_dir(&dir)
            .map_err(io_err("cannot read directory", &dir))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(io_err("cannot read directory", &dir))?;
        names.sort();
        // Depth first, in name order.
        let mut subdirs = Vec::new();
        for name in names {
            let mut child = rel.clone();
            if !child.is_empty() {
                child.push(b'/');
            }
            child.extend_from_slice(name.as_bytes());
            let path = host(out, &child);
            let meta = fs::symlink_metadata(&path).map_err(io_err("cannot inspect", &path))?;
            let t = meta.file_type();
            if t.is_dir() {
                subdirs.push(child);
                continue;
            }
            let foreign = |reason| OutputError::NotOurs {
                out: out.to_path_buf(),
                entry: path.clone(),
                reason,
            };
            if t.is_symlink() {
                return Err(foreign(Foreign::NotAFile("a symlink")));
            }
            if let Some(kind) = special_kind(t) {
                return Err(foreign(Foreign::NotAFile(kind)));
            }
            if listed.is_none() {
                match listed_files(out, manifest_elsewhere) {
                    Ok(set) => listed = Some(set),
                    Err(reason) => return Err(foreign(reason)),
                }
            }
            if !listed.as_ref().is_some_and(|set| set.contains(&child)) {
                let manifest = match manifest_elsewhere {
                    Some(p) if !out.join(MANIFEST_NAME).is_file() => p.to_path_buf(),
                    _ => out.join(MANIFEST_NAME),
                };
                return Err(foreign(Foreign::Unlisted(manifest)));
            }
            files.push(child);
        }
        pending.extend(subdirs.into_iter().rev());
    }
    Ok(files)
}

/// The files an earlier output's manifest accounts for: those it lists,
/// and itself when it sits at the root.
fn listed_files(
    out: &Path,
    manifest_elsewhere: Option<&Path>,
) -> Result<std::collections::BTreeSet<Vec<u8>>, Foreign> {
    let at_root = out.join(MANIFEST_NAME);
    let path = if fs::symlink_metadata(&at_root).is_ok_and(|m| m.is_file()) {
        at_root.clone()
    } else {
        match manifest_elsewhere.filter(|p| p.is_file()) {
            Some(p) => p.to_path_buf(),
            None => {
                return Err(Foreign::NoManifest {
                    elsewhere: manifest_elsewhere.map(Path::to_path_buf),
                })
            }
        }
    };
    let bad = |source| Foreign::BadManifest {
        path: path.clone(),
        source,
    };
    let mut bytes = Vec::new();
    fs::File::open(&path)
        .and_then(|f| f.take(MAX_MANIFEST).read_to_end(&mut bytes))
        .map_err(|source| Foreign::UnreadableManifest {
            path: path.clone(),
            source,
        })?;
    let manifest = Manifest::from_bytes(&bytes).map_err(bad)?;
    let mut set: std::collections::BTreeSet<Vec<u8>> = manifest
        .files
        .into_iter()
        .map(|f| f.path.into_bytes())
        .collect();
    if path == at_root {
        set.insert(MANIFEST_NAME.as_bytes().to_vec());
    }
    Ok(set)
}

fn write_new_dir(plan: &Plan, tree: &dyn Tree, out: &Path, mtime: u64) -> Result<(), OutputError> {
    let temp = temp::dir_beside(out).map_err(io_err("cannot create directory", out))?;
    for item in items(plan) {
        let (path, shown) = (host(temp.path(), item.path()), host(out, item.path()));
        match item {
            Item::Dir(_) => {
                fs::create_dir(&path).map_err(io_err("cannot create directory", &shown))?
            }
            Item::File(f) => {
                let data = contents(out, tree, f)?;
                let file = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(io_err("cannot create", &shown))?;
                write_plain(&file, &shown, &data, f.mode, mtime)?;
            }
        }
    }
    for item in items(plan).iter().rev() {
        if let Item::Dir(_) = item {
            set_mode(&host(temp.path(), item.path()), 0o755)
                .map_err(io_err("cannot set permissions of", &host(out, item.path())))?;
        }
    }
    set_mode(temp.path(), 0o755).map_err(io_err("cannot set permissions of", out))?;
    let temp = temp.keep();
    if let Err(e) = fs::rename(&temp, out) {
        let _ = fs::remove_dir_all(&temp);
        return Err(io_err("cannot rename into", out)(e));
    }
    Ok(())
}

/// Writes a file's bytes, mode and mtime; errors name `shown`.
fn write_plain(
    file: &fs::File,
    shown: &Path,
    data: &[u8],
    mode: u32,
    mtime: u64,
) -> Result<(), OutputError> {
    (&*file)
        .write_all(data)
        .map_err(io_err("cannot write", shown))?;
    set_file_mode(file, mode).map_err(io_err("cannot set permissions of", shown))?;
    set_mtime(file, mtime).map_err(io_err("cannot set the time of", shown))
}

/// Directories kmodidx created, removed again (deepest first) unless kept.
struct CreatedDirs(Vec<PathBuf>);

impl Drop for CreatedDirs {
    fn drop(&mut self) {
        for dir in self.0.iter().rev() {
            let _ = fs::remove_dir(dir);
        }
    }
}

/// One file staged beside its final path.
pub struct Staged {
    temp: tempfile::NamedTempFile,
    path: PathBuf,
}

/// Writes `data` under a temporary name beside `path` (mode `mode`, and
/// mtime `mtime` if given), to be renamed by [`rename_staged`]. Dropped
/// unrenamed, it is removed.
pub fn stage_file(
    path: &Path,
    data: &[u8],
    mode: u32,
    mtime: Option<u64>,
) -> Result<Staged, OutputError> {
    let temp = temp::file_beside_unchecked(path).map_err(io_err("cannot create", path))?;
    temp.as_file()
        .write_all(data)
        .map_err(io_err("cannot write", path))?;
    set_file_mode(temp.as_file(), mode).map_err(io_err("cannot set permissions of", path))?;
    if let Some(mtime) = mtime {
        set_mtime(temp.as_file(), mtime).map_err(io_err("cannot set the time of", path))?;
    }
    Ok(Staged {
        temp,
        path: path.to_path_buf(),
    })
}

/// Renames staged files into place, in order; `out` is the directory
/// they belong to, for the error.
pub fn rename_staged(out: &Path, staged: Vec<Staged>) -> Result<(), OutputError> {
    let total = staged.len();
    for (replaced, s) in staged.into_iter().enumerate() {
        if let Err(e) = s.temp.persist(&s.path) {
            let source = e.error;
            return Err(if replaced == 0 {
                io_err("cannot rename into", &s.path)(source)
            } else {
                OutputError::PartlyReplaced {
                    out: out.to_path_buf(),
                    path: s.path,
                    replaced,
                    total,
                    source,
                }
            });
        }
    }
    Ok(())
}

/// Writes into an existing directory that holds nothing or the files
/// `previous` of an earlier output (see [`earlier_output`]); those the
/// plan does not hold are removed once the new files are in place.
fn write_into_existing(
    plan: &Plan,
    tree: &dyn Tree,
    out: &Path,
    mtime: u64,
    previous: &[Vec<u8>],
) -> Result<(), OutputError> {
    let targets: Vec<PathBuf> = plan.files.iter().map(|f| host(out, &f.path)).collect();
    temp::remove_stale_beside(targets.iter().map(PathBuf::as_path));
    let mut created = CreatedDirs(Vec::new());
    let mut staged = Vec::new();
    for item in items(plan) {
        let path = host(out, item.path());
        match item {
            Item::Dir(_) => match fs::symlink_metadata(&path) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(OutputError::Symlink {
                        out: out.to_path_buf(),
                        link: path,
                    })
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(OutputError::Io {
                        action: "cannot create directory",
                        path,
                        source: io::Error::other("a file of that name exists"),
                    })
                }
                Err(_) => {
                    fs::create_dir(&path).map_err(io_err("cannot create directory", &path))?;
                    created.0.push(path.clone());
                    set_mode(&path, 0o755).map_err(io_err("cannot set permissions of", &path))?;
                }
            },
            Item::File(f) => {
                refuse_non_regular(&path)?;
                let data = contents(out, tree, f)?;
                staged.push(stage_file(&path, &data, f.mode, Some(mtime))?);
            }
        }
    }
    rename_staged(out, staged)?;
    // Everything is in place: the new directories stay.
    created.0.clear();
    let planned: std::collections::BTreeSet<&[u8]> =
        plan.files.iter().map(|f| f.path.as_slice()).collect();
    for rel in previous.iter().filter(|p| !planned.contains(p.as_slice())) {
        let path = host(out, rel);
        fs::remove_file(&path).map_err(io_err("cannot remove the earlier output's", &path))?;
        // Directories it leaves empty go too (never `out` itself).
        let mut dir = rel.as_slice();
        while let Some(slash) = dir.iter().rposition(|&b| b == b'/') {
            dir = &dir[..slash];
            if fs::remove_dir(host(out, dir)).is_err() {
                break;
            }
        }
    }
    Ok(())
}
