//! Writing an output, reproducibly: a directory, a tar or a newc cpio
//! archive, compressed with gzip, xz or zstd or not at all.
//!
//! What a failure leaves behind: an archive, a new directory and any single
//! file (the manifest, a report) are built under a temporary name that
//! cannot collide (the `tempfile` crate) beside the target and renamed into
//! place, so the target is either untouched or complete. Into an *existing*
//! directory, every file is first written in full under such a temporary
//! name next to its final place; a failure up to there removes them all
//! (and the directories kmodidx created) and leaves the directory as it
//! was. Only then are the files renamed into place, one after another, in
//! path order; if a rename fails (which a same-directory rename practically
//! never does), the files before it are new, the rest old, and the error
//! says how many were replaced ([`OutputError::PartlyReplaced`]).
//!
//! Every form holds the same entries: the files of a [`Plan`] and every
//! directory above them, sorted by path bytes, owned by root (uid and gid 0),
//! with one fixed mtime, files 0644 (0755 if the input file was executable)
//! and directories 0755. Compressors run single-threaded at fixed levels and
//! embed no names or times, so the bytes depend on the plan alone.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufWriter, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

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
/// for what a failure leaves).
pub fn write_output(
    plan: &Plan,
    tree: &dyn Tree,
    format: OutputFormat,
    out: &Path,
    mtime: u64,
) -> Result<(), OutputError> {
    match format {
        OutputFormat::Dir => write_dir(plan, tree, out, mtime),
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

/// The directory a target lives in (`.` for a bare name).
fn parent_dir(target: &Path) -> PathBuf {
    match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The temporary names beside `target` cannot collide with another run's:
/// `.NAME.XXXXXX.kmodidx-tmp`, made by the `tempfile` crate.
fn temp_prefix(target: &Path) -> String {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    format!(".{name}.")
}

fn temp_file_beside(target: &Path) -> io::Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix(&temp_prefix(target))
        .suffix(".kmodidx-tmp")
        .tempfile_in(parent_dir(target))
}

fn temp_dir_beside(target: &Path) -> io::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(&temp_prefix(target))
        .suffix(".kmodidx-tmp")
        .tempdir_in(parent_dir(target))
}

fn refuse_symlink_or_dir(target: &Path) -> Result<(), OutputError> {
    if let Ok(meta) = fs::symlink_metadata(target) {
        if meta.file_type().is_symlink() {
            return Err(OutputError::Symlink {
                out: target.to_path_buf(),
                link: target.to_path_buf(),
            });
        }
        if meta.is_dir() {
            return Err(OutputError::Io {
                action: "cannot replace",
                path: target.to_path_buf(),
                source: io::Error::other("it is a directory"),
            });
        }
    }
    Ok(())
}

/// Writes a file through `fill` into a temporary file beside `target`
/// (mode 0644), then renames it into place. On error the temporary file is
/// removed and the target is untouched; errors name the target.
pub fn write_file_atomically(
    target: &Path,
    fill: impl FnOnce(&mut dyn Write) -> Result<(), OutputError>,
) -> Result<(), OutputError> {
    refuse_symlink_or_dir(target)?;
    let temp = temp_file_beside(target).map_err(io_err("cannot create", target))?;
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
fn write_dir(plan: &Plan, tree: &dyn Tree, out: &Path, mtime: u64) -> Result<(), OutputError> {
    match fs::symlink_metadata(out) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => write_new_dir(plan, tree, out, mtime),
        Err(e) => Err(io_err("cannot inspect", out)(e)),
        Ok(m) if m.file_type().is_symlink() => Err(OutputError::Symlink {
            out: out.to_path_buf(),
            link: out.to_path_buf(),
        }),
        Ok(m) if !m.is_dir() => Err(OutputError::Io {
            action: "cannot write into",
            path: out.to_path_buf(),
            source: io::Error::other("it exists and is not a directory"),
        }),
        Ok(_) => write_into_existing(plan, tree, out, mtime),
    }
}

fn write_new_dir(plan: &Plan, tree: &dyn Tree, out: &Path, mtime: u64) -> Result<(), OutputError> {
    let temp = temp_dir_beside(out).map_err(io_err("cannot create directory", out))?;
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
    let temp = temp_file_beside(path).map_err(io_err("cannot create", path))?;
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

fn write_into_existing(
    plan: &Plan,
    tree: &dyn Tree,
    out: &Path,
    mtime: u64,
) -> Result<(), OutputError> {
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
                if let Ok(m) = fs::symlink_metadata(&path) {
                    if m.is_dir() || m.file_type().is_symlink() {
                        return Err(OutputError::Io {
                            action: "cannot replace",
                            path,
                            source: io::Error::other("it is a directory or a symlink"),
                        });
                    }
                }
                let data = contents(out, tree, f)?;
                staged.push(stage_file(&path, &data, f.mode, Some(mtime))?);
            }
        }
    }
    rename_staged(out, staged)?;
    // Everything is in place: the new directories stay.
    created.0.clear();
    Ok(())
}
