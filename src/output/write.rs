//! Writing an output, reproducibly and all or nothing: a directory, a tar or
//! a newc cpio archive, compressed with gzip, xz or zstd or not at all.
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

use crate::source::Tree;

/// Where a file's bytes come from.
#[derive(Debug, Clone)]
pub enum FileSource {
    Bytes(Arc<[u8]>),
    /// A file of the input tree, read again when written.
    Tree(Vec<u8>),
}

/// One file to write.
#[derive(Debug, Clone)]
pub struct PlannedFile {
    /// Path relative to the output root, `/`-separated.
    pub path: Vec<u8>,
    pub mode: u32,
    pub size: u64,
    pub sha256: [u8; 32],
    pub source: FileSource,
}

/// Everything an output holds.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Sorted by path bytes.
    pub files: Vec<PlannedFile>,
}

impl Plan {
    pub fn sort(&mut self) {
        self.files.sort_by(|a, b| a.path.cmp(&b.path));
        self.files.dedup_by(|a, b| a.path == b.path);
    }
}

/// Output compression: the same four kinds modules and inputs come in.
pub use crate::module::decompress::Compression;

/// The form of an output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Dir,
    Tar(Compression),
    Cpio(Compression),
}

/// Fixed compression levels: part of the reproducibility contract.
pub const GZIP_LEVEL: u32 = 6;
pub const XZ_PRESET: u32 = 6;
pub const ZSTD_LEVEL: i32 = 10;

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

    /// Guesses the form from an output name; anything else is a directory.
    pub fn from_name(path: &Path) -> OutputFormat {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        const SUFFIXES: [&str; 10] = [
            "tar.gz", "tgz", "tar.xz", "txz", "tar.zst", "tzst", "tar", "cpio.gz", "cpio.xz",
            "cpio.zst",
        ];
        for s in SUFFIXES.iter().chain(&["cpio"]) {
            if name.len() > s.len() + 1 && name.ends_with(&format!(".{s}")) {
                return OutputFormat::parse(s).unwrap_or(OutputFormat::Dir);
            }
        }
        OutputFormat::Dir
    }

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

/// Why an output could not be written. Nothing is left behind.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("{action} {}: {}", path.display(), crate::util::io_reason(source))]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{}: refusing to write through the symlink {}", out.display(), link.display())]
    Symlink { out: PathBuf, link: PathBuf },
    #[error("{}: {what} `{}` cannot be stored: {why}", out.display(), String::from_utf8_lossy(path))]
    Unstorable {
        out: PathBuf,
        what: &'static str,
        path: Vec<u8>,
        why: String,
    },
    #[error("{}: reading `{}` from the input: {}", out.display(), String::from_utf8_lossy(path), crate::util::io_reason(source))]
    Input {
        out: PathBuf,
        path: Vec<u8>,
        source: io::Error,
    },
    #[error("{}: `{}` changed while it was copied (size or SHA-256 differ from the first read)", out.display(), String::from_utf8_lossy(path))]
    Changed { out: PathBuf, path: Vec<u8> },
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
            use sha2::Digest;
            let sha: [u8; 32] = sha2::Sha256::digest(&*bytes).into();
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

/// Writes `plan` to `out` in the given form, atomically.
pub fn write_output(
    plan: &Plan,
    tree: &dyn Tree,
    format: OutputFormat,
    out: &Path,
    mtime: u64,
) -> Result<(), OutputError> {
    match format {
        OutputFormat::Dir => write_dir(plan, tree, out, mtime),
        OutputFormat::Tar(c) | OutputFormat::Cpio(c) => {
            if format == OutputFormat::Cpio(c) && mtime > u64::from(u32::MAX) {
                return Err(OutputError::Unstorable {
                    out: out.to_path_buf(),
                    what: "mtime",
                    path: mtime.to_string().into_bytes(),
                    why: "cpio stores at most 32 bits".into(),
                });
            }
            write_file_atomically(out, |w| {
                let w = compressor(w, c).map_err(io_err("cannot compress", out))?;
                let w = match format {
                    OutputFormat::Cpio(_) => write_cpio(plan, tree, out, mtime, w)?,
                    _ => write_tar(plan, tree, out, mtime, w)?,
                };
                w.finish().map_err(io_err("cannot write", out))
            })
        }
    }
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

/// A temporary file or directory beside the target, removed unless kept.
struct TempGuard {
    path: PathBuf,
    dir: bool,
    keep: bool,
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if !self.keep {
            let _ = if self.dir {
                fs::remove_dir_all(&self.path)
            } else {
                fs::remove_file(&self.path)
            };
        }
    }
}

fn temp_beside(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    parent.join(format!(".{name}.kmodidx-tmp-{}", std::process::id()))
}

/// Writes a file through `fill` into a temporary file beside `target`, then
/// renames it into place. On error the temporary file is removed.
pub fn write_file_atomically(
    target: &Path,
    fill: impl FnOnce(Box<dyn Write + '_>) -> Result<(), OutputError>,
) -> Result<(), OutputError> {
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
    let temp = temp_beside(target);
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)
        .map_err(io_err("cannot create", &temp))?;
    let mut guard = TempGuard {
        path: temp.clone(),
        dir: false,
        keep: false,
    };
    {
        let w = BufWriter::with_capacity(1 << 20, &file);
        fill(Box::new(w))?;
    }
    set_mode(&temp, 0o644).map_err(io_err("cannot set permissions of", &temp))?;
    fs::rename(&temp, target).map_err(io_err("cannot rename into", target))?;
    guard.keep = true;
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

fn set_mtime(path: &Path, mtime: u64) -> io::Result<()> {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime);
    let f = fs::File::options().write(true).open(path)?;
    f.set_times(fs::FileTimes::new().set_modified(t).set_accessed(t))
}

fn host(root: &Path, rel: &[u8]) -> PathBuf {
    root.join(std::ffi::OsStr::from_bytes(rel))
}

/// Directory output. A new directory is built beside `out` and renamed into
/// place; into an existing directory, every file is written under a
/// temporary name and renamed only once all are written, and directories
/// kmodidx created are removed again on error.
fn write_dir(plan: &Plan, tree: &dyn Tree, out: &Path, mtime: u64) -> Result<(), OutputError> {
    match fs::symlink_metadata(out) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let temp = temp_beside(out);
            fs::create_dir(&temp).map_err(io_err("cannot create directory", &temp))?;
            let mut guard = TempGuard {
                path: temp.clone(),
                dir: true,
                keep: false,
            };
            for item in items(plan) {
                let path = host(&temp, item.path());
                match item {
                    Item::Dir(_) => {
                        fs::create_dir(&path).map_err(io_err("cannot create directory", &path))?;
                    }
                    Item::File(f) => {
                        let data = contents(out, tree, f)?;
                        write_plain(&path, &data, f.mode, mtime)?;
                    }
                }
            }
            for item in items(plan).iter().rev() {
                if let Item::Dir(_) = item {
                    let path = host(&temp, item.path());
                    set_mode(&path, 0o755).map_err(io_err("cannot set permissions of", &path))?;
                }
            }
            set_mode(&temp, 0o755).map_err(io_err("cannot set permissions of", &temp))?;
            fs::rename(&temp, out).map_err(io_err("cannot rename into", out))?;
            guard.keep = true;
            Ok(())
        }
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

fn write_plain(path: &Path, data: &[u8], mode: u32, mtime: u64) -> Result<(), OutputError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_err("cannot create", path))?;
    file.write_all(data).map_err(io_err("cannot write", path))?;
    drop(file);
    set_mode(path, mode).map_err(io_err("cannot set permissions of", path))?;
    set_mtime(path, mtime).map_err(io_err("cannot set the time of", path))
}

fn write_into_existing(
    plan: &Plan,
    tree: &dyn Tree,
    out: &Path,
    mtime: u64,
) -> Result<(), OutputError> {
    let mut created: Vec<PathBuf> = Vec::new();
    let mut staged: Vec<(PathBuf, PathBuf)> = Vec::new();
    let result = (|| {
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
                        created.push(path.clone());
                        set_mode(&path, 0o755)
                            .map_err(io_err("cannot set permissions of", &path))?;
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
                    let name = path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let temp =
                        path.with_file_name(format!(".{name}.kmodidx-tmp-{}", std::process::id()));
                    let data = contents(out, tree, f)?;
                    staged.push((temp.clone(), path));
                    write_plain(&temp, &data, f.mode, mtime)?;
                }
            }
        }
        for (temp, path) in &staged {
            fs::rename(temp, path).map_err(io_err("cannot rename into", path))?;
        }
        Ok(())
    })();
    if result.is_err() {
        for (temp, _) in &staged {
            let _ = fs::remove_file(temp);
        }
        for dir in created.iter().rev() {
            let _ = fs::remove_dir(dir);
        }
    }
    result
}
