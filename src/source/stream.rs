//! Streaming over the entries of a tar or cpio archive, compressed or not.
//!
//! The archive is read once, front to back, from a plain reader: nothing is
//! extracted and nothing is seeked. Both the compression (gzip, xz, zstd or
//! none) and the archive format (tar in its ustar, GNU and pax forms; cpio
//! newc and crc) are recognised by their magic bytes, never by the file name.
//!
//! cpio is read by the small reader below rather than the `cpio` crate: the
//! crate cannot continue past a `TRAILER!!!` into the next archive (early
//! microcode initramfs images concatenate several, NUL-padded), does not say
//! at which offset an entry starts, rejects names that are not UTF-8, and does
//! not check the crc format's checksums.

use std::cell::Cell;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::compress::{Compression, MAGIC_LEN};

/// The archive format inside the compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// tar (ustar, GNU, pax).
    Tar,
    /// cpio (newc, crc).
    Cpio,
}

/// Why an archive could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The archive could not be opened or read (which, and why).
    #[error("{}: {}", archive.display(), crate::util::io_reason(source))]
    Open {
        /// The archive.
        archive: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Neither tar nor cpio.
    #[error("{}: not a tar (ustar, GNU, pax) or cpio (newc, crc) archive ({compression}){hint}", archive.display())]
    UnknownFormat {
        /// The archive.
        archive: PathBuf,
        /// Its compression.
        compression: Compression,
        /// A hint about what it is instead.
        hint: &'static str,
    },
    /// Malformed or cut short.
    #[error("{}: corrupt or truncated {what} at offset {offset}{}: {reason}", archive.display(), entry_suffix(entry))]
    Corrupt {
        /// The archive.
        archive: PathBuf,
        /// What was being read.
        what: String,
        /// Offset in the decompressed stream.
        offset: u64,
        /// The entry, when known.
        entry: Option<String>,
        /// Why.
        reason: String,
    },
    /// The decompressed stream exceeds the limit (bytes).
    #[error("{}: the decompressed archive exceeds the limit of {limit} bytes (raise it with --max-input-size MIB)", archive.display())]
    TooLarge {
        /// The archive.
        archive: PathBuf,
        /// The limit, in bytes.
        limit: u64,
    },
    /// The input changed between the two passes over it.
    #[error("{}: the file changed while it was being read", archive.display())]
    Changed {
        /// The archive.
        archive: PathBuf,
    },
    /// Links in the module directory lead to files elsewhere in an archive
    /// read from a stream, which would have to be read a second time.
    #[error("{}: symlinks in the module directory lead to files elsewhere in the archive (such as `{entry}`), which needs a second reading; standard input cannot be read twice: pass the archive as a file", archive.display())]
    NeedsSecondPass {
        /// The archive.
        archive: PathBuf,
        /// One of the files.
        entry: String,
    },
    /// An entry kmodidx refuses (a `..` name, a sparse file).
    #[error("{}: entry `{entry}` at offset {offset}: {reason}", archive.display())]
    Rejected {
        /// The archive.
        archive: PathBuf,
        /// The entry.
        entry: String,
        /// Offset of its header in the decompressed stream.
        offset: u64,
        /// Why.
        reason: String,
    },
}

fn entry_suffix(entry: &Option<String>) -> String {
    match entry {
        Some(e) => format!(" (entry `{e}`)"),
        None => String::new(),
    }
}

/// What an archive entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symlink to the given target.
    Symlink(Vec<u8>),
    /// A tar hard link to the given (earlier) member.
    HardLink(Vec<u8>),
    /// Devices, FIFOs, sockets and anything else: never used.
    Other,
}

/// One entry, with its data still to be read from `data`.
pub struct RawEntry<'a> {
    /// The name as stored in the archive.
    pub path: &'a [u8],
    /// What it is.
    pub kind: RawKind,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    /// Size of its data.
    pub size: u64,
    /// Offset of the entry's header in the decompressed stream.
    pub offset: u64,
    /// cpio only: `(archive number, dev major, dev minor, inode, nlink)`,
    /// what identifies hard links there.
    pub cpio_inode: Option<(u32, u32, u32, u32, u32)>,
    /// Its data (what the visitor leaves unread is skipped).
    pub data: &'a mut dyn Read,
}

/// What a visitor may fail with; the stream adds archive and offset.
#[derive(Debug)]
pub enum EntryError {
    /// Reading the data failed.
    Io(io::Error),
    /// The entry is refused (why).
    Reject(String),
}

impl From<io::Error> for EntryError {
    fn from(e: io::Error) -> Self {
        EntryError::Io(e)
    }
}

/// Counts the bytes read through it and refuses to go past `limit`,
/// flagging `exceeded` so that the error can be told from corruption.
struct Capped<R> {
    inner: R,
    count: u64,
    limit: u64,
    exceeded: Rc<Cell<bool>>,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let total = self.count + n as u64;
        if total > self.limit {
            self.exceeded.set(true);
            return Err(io::Error::other("decompressed size limit exceeded"));
        }
        self.count = total;
        Ok(n)
    }
}

fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Reads `source`'s first bytes, recognises its compression and returns
/// the decompressed stream. `name` is what errors call the source.
fn decompressed<'r>(
    name: &Path,
    mut source: impl Read + 'r,
) -> Result<(Box<dyn Read + 'r>, Compression), ArchiveError> {
    let open_err = |source| ArchiveError::Open {
        archive: name.to_path_buf(),
        source,
    };
    let mut magic = [0u8; MAGIC_LEN];
    let n = read_full(&mut source, &mut magic).map_err(open_err)?;
    let head = io::Cursor::new(magic[..n].to_vec());
    let raw = io::BufReader::with_capacity(1 << 16, head.chain(source));
    let compression = Compression::detect(&magic[..n]);
    let stream = compression.decoder(raw).map_err(open_err)?;
    Ok((stream, compression))
}

/// Calls `visit` for every entry of the archive at `path`, in archive order.
/// `limit` caps the decompressed stream.
pub fn for_each_entry(
    path: &Path,
    limit: u64,
    visit: &mut dyn FnMut(RawEntry<'_>) -> Result<(), EntryError>,
) -> Result<(ArchiveFormat, Compression), ArchiveError> {
    let file = std::fs::File::open(path).map_err(|source| ArchiveError::Open {
        archive: path.to_path_buf(),
        source,
    })?;
    for_each_entry_in(path, file, limit, visit)
}

/// As [`for_each_entry`], reading the archive from `source` (such as
/// standard input); `name` is what errors call it.
pub fn for_each_entry_in(
    name: &Path,
    source: impl Read,
    limit: u64,
    visit: &mut dyn FnMut(RawEntry<'_>) -> Result<(), EntryError>,
) -> Result<(ArchiveFormat, Compression), ArchiveError> {
    let path = name;
    let (stream, compression) = decompressed(path, source)?;
    let exceeded = Rc::new(Cell::new(false));
    let mut capped = Capped {
        inner: stream,
        count: 0,
        limit,
        exceeded: exceeded.clone(),
    };
    let mut head = [0u8; 512];
    let n = read_full(&mut capped, &mut head)
        .map_err(|e| classify(path, &exceeded, limit, "archive header", 0, None, e))?;
    let head = &head[..n];
    let format = if head.starts_with(b"070701") || head.starts_with(b"070702") {
        ArchiveFormat::Cpio
    } else if head.len() >= 263 && &head[257..262] == b"ustar" {
        ArchiveFormat::Tar
    } else {
        let hint = if head.starts_with(b"070707") {
            ": old-style (odc) cpio is not supported, use newc (cpio -H newc)"
        } else if head.is_empty() {
            ": the file is empty"
        } else {
            ""
        };
        return Err(ArchiveError::UnknownFormat {
            archive: path.to_path_buf(),
            compression,
            hint,
        });
    };
    let reader = io::Cursor::new(head.to_vec()).chain(capped);
    let ctx = Ctx {
        path,
        exceeded: &exceeded,
        limit,
    };
    match format {
        ArchiveFormat::Tar => read_tar(&ctx, reader, visit)?,
        ArchiveFormat::Cpio => read_cpio(&ctx, reader, visit)?,
    }
    Ok((format, compression))
}

struct Ctx<'a> {
    path: &'a Path,
    exceeded: &'a Cell<bool>,
    limit: u64,
}

impl Ctx<'_> {
    fn io(&self, what: &str, offset: u64, entry: Option<&[u8]>, e: io::Error) -> ArchiveError {
        classify(self.path, self.exceeded, self.limit, what, offset, entry, e)
    }

    fn entry(&self, what: &str, offset: u64, entry: &[u8], e: EntryError) -> ArchiveError {
        match e {
            EntryError::Io(e) => self.io(what, offset, Some(entry), e),
            EntryError::Reject(reason) => ArchiveError::Rejected {
                archive: self.path.to_path_buf(),
                entry: String::from_utf8_lossy(entry).into_owned(),
                offset,
                reason,
            },
        }
    }
}

fn classify(
    path: &Path,
    exceeded: &Cell<bool>,
    limit: u64,
    what: &str,
    offset: u64,
    entry: Option<&[u8]>,
    e: io::Error,
) -> ArchiveError {
    if exceeded.get() {
        return ArchiveError::TooLarge {
            archive: path.to_path_buf(),
            limit,
        };
    }
    let reason = if e.kind() == io::ErrorKind::UnexpectedEof {
        "unexpected end of data".to_string()
    } else {
        crate::util::io_reason(&e)
    };
    ArchiveError::Corrupt {
        archive: path.to_path_buf(),
        what: what.to_string(),
        offset,
        entry: entry.map(|e| String::from_utf8_lossy(e).into_owned()),
        reason,
    }
}

/// Reads exactly `size` bytes of entry data through, then checks it all came.
struct Exact<'a, R: Read> {
    inner: &'a mut R,
    left: u64,
}

impl<R: Read> Read for Exact<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "unexpected end of data",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn skip(r: &mut dyn Read, n: u64) -> io::Result<()> {
    let copied = io::copy(&mut r.take(n), &mut io::sink())?;
    if copied != n {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "unexpected end of data",
        ));
    }
    Ok(())
}

fn read_tar(
    ctx: &Ctx<'_>,
    reader: impl Read,
    visit: &mut dyn FnMut(RawEntry<'_>) -> Result<(), EntryError>,
) -> Result<(), ArchiveError> {
    let mut archive = tar::Archive::new(reader);
    let mut last_offset = 0u64;
    let entries = archive
        .entries()
        .map_err(|e| ctx.io("tar header", 0, None, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| ctx.io("tar header", last_offset, None, e))?;
        let offset = entry.raw_header_position();
        last_offset = offset;
        let path = entry.path_bytes().into_owned();
        let header = entry.header();
        let size = entry.size();
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        let link = || {
            entry
                .link_name_bytes()
                .map(|l| l.into_owned())
                .unwrap_or_default()
        };
        use tar::EntryType as T;
        let kind = match header.entry_type() {
            T::Regular | T::Continuous => RawKind::File,
            T::Directory => RawKind::Dir,
            T::Symlink => RawKind::Symlink(link()),
            T::Link => RawKind::HardLink(link()),
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => continue,
            T::GNUSparse => {
                return Err(ctx.entry(
                    "tar entry",
                    offset,
                    &path,
                    EntryError::Reject("sparse files are not supported".into()),
                ))
            }
            _ => RawKind::Other,
        };
        // Hard links and symlinks may carry a size in some writers; their
        // data is never used.
        let data_size = if kind == RawKind::File { size } else { 0 };
        let result = {
            let mut exact = Exact {
                inner: &mut entry,
                left: data_size,
            };
            visit(RawEntry {
                path: &path,
                kind,
                mode,
                size: data_size,
                offset,
                cpio_inode: None,
                data: &mut exact,
            })
        };
        result.map_err(|e| ctx.entry("tar entry", offset, &path, e))?;
        // The tar crate skips whatever the visitor left unread.
    }
    if ctx.exceeded.get() {
        return Err(ArchiveError::TooLarge {
            archive: ctx.path.to_path_buf(),
            limit: ctx.limit,
        });
    }
    Ok(())
}

const NEWC_HEADER: usize = 110;
/// The kernel's limit on a cpio name (`PATH_MAX`).
const NAME_MAX: u32 = 4096;

struct Counted<R> {
    inner: R,
    pos: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

fn hex_field(field: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(field).ok()?;
    u32::from_str_radix(text, 16).ok()
}

fn pad4(n: u64) -> u64 {
    (4 - n % 4) % 4
}

fn read_cpio(
    ctx: &Ctx<'_>,
    reader: impl Read,
    visit: &mut dyn FnMut(RawEntry<'_>) -> Result<(), EntryError>,
) -> Result<(), ArchiveError> {
    let mut r = Counted {
        inner: reader,
        pos: 0,
    };
    let mut archive_no = 0u32;
    loop {
        let offset = r.pos;
        let mut header = [0u8; NEWC_HEADER];
        // Between concatenated archives the kernel skips NUL padding.
        let first = read_full(&mut r, &mut header[..1])
            .map_err(|e| ctx.io("cpio header", offset, None, e))?;
        if first == 0 {
            if archive_no == 0 && offset == 0 {
                return Err(ctx.io("cpio header", offset, None, eof()));
            }
            return Ok(());
        }
        if header[0] == 0 {
            continue;
        }
        let offset = r.pos - 1;
        read_exact(&mut r, &mut header[1..]).map_err(|e| ctx.io("cpio header", offset, None, e))?;
        let bad = |reason: &str| ArchiveError::Corrupt {
            archive: ctx.path.to_path_buf(),
            what: "cpio header".into(),
            offset,
            entry: None,
            reason: reason.to_string(),
        };
        let crc = match &header[..6] {
            b"070701" => false,
            b"070702" => true,
            _ => return Err(bad("bad magic (not a newc or crc cpio header)")),
        };
        let mut fields = [0u32; 13];
        for (i, field) in fields.iter_mut().enumerate() {
            let start = 6 + i * 8;
            *field = hex_field(&header[start..start + 8])
                .ok_or_else(|| bad("header field is not hexadecimal"))?;
        }
        let [ino, mode, _uid, _gid, nlink, _mtime, filesize, devmajor, devminor, _rmaj, _rmin, namesize, check] =
            fields;
        if namesize == 0 || namesize > NAME_MAX + 1 {
            return Err(bad("name size out of range"));
        }
        let mut name = vec![0u8; namesize as usize];
        read_exact(&mut r, &mut name).map_err(|e| ctx.io("cpio header", offset, None, e))?;
        skip(&mut r, pad4(NEWC_HEADER as u64 + u64::from(namesize)))
            .map_err(|e| ctx.io("cpio header", offset, None, e))?;
        // The name is NUL-terminated (some writers pad with more NULs).
        let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
        name.truncate(end);
        let size = u64::from(filesize);
        if name == b"TRAILER!!!" {
            skip(&mut r, size + pad4(size)).map_err(|e| ctx.io("cpio trailer", offset, None, e))?;
            archive_no += 1;
            continue;
        }
        let kind = match mode & 0o170000 {
            0o100000 => RawKind::File,
            0o040000 => RawKind::Dir,
            0o120000 => {
                if size > u64::from(NAME_MAX) {
                    return Err(ctx.entry(
                        "cpio entry",
                        offset,
                        &name,
                        EntryError::Reject("symlink target is too long".into()),
                    ));
                }
                let mut target = vec![0u8; size as usize];
                read_exact(&mut r, &mut target)
                    .map_err(|e| ctx.io("cpio entry", offset, Some(&name), e))?;
                skip(&mut r, pad4(size))
                    .map_err(|e| ctx.io("cpio entry", offset, Some(&name), e))?;
                let end = target.iter().position(|&b| b == 0).unwrap_or(target.len());
                target.truncate(end);
                RawKind::Symlink(target)
            }
            _ => RawKind::Other,
        };
        let data_size = if kind == RawKind::File { size } else { 0 };
        let mut sum = 0u32;
        let result = {
            let mut exact = Exact {
                inner: &mut r,
                left: data_size,
            };
            let mut summed = Summing {
                inner: &mut exact,
                sum: &mut sum,
            };
            let res = visit(RawEntry {
                path: &name,
                kind: kind.clone(),
                mode: mode & 0o7777,
                size: data_size,
                offset,
                cpio_inode: Some((archive_no, devmajor, devminor, ino, nlink)),
                data: &mut summed,
            });
            // Whatever the visitor did not read is skipped (and summed).
            res.and_then(|()| {
                io::copy(&mut summed, &mut io::sink())?;
                Ok(())
            })
        };
        result.map_err(|e| ctx.entry("cpio entry", offset, &name, e))?;
        if crc && kind == RawKind::File && sum != check {
            return Err(ArchiveError::Corrupt {
                archive: ctx.path.to_path_buf(),
                what: "cpio entry".into(),
                offset,
                entry: Some(String::from_utf8_lossy(&name).into_owned()),
                reason: format!(
                    "checksum mismatch (header says {check:08x}, data sums to {sum:08x})"
                ),
            });
        }
        if !matches!(kind, RawKind::Symlink(_)) {
            // Data of other kinds (devices, directories) is skipped unread.
            let rest = size - data_size;
            skip(&mut r, rest + pad4(size))
                .map_err(|e| ctx.io("cpio entry", offset, Some(&name), e))?;
        }
    }
}

fn eof() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "unexpected end of data")
}

fn read_exact(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<()> {
    if read_full(r, buf)? != buf.len() {
        return Err(eof());
    }
    Ok(())
}

/// Sums the bytes that pass, as the cpio crc format's checksum does.
struct Summing<'a> {
    inner: &'a mut dyn Read,
    sum: &'a mut u32,
}

impl Read for Summing<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        for &b in &buf[..n] {
            *self.sum = self.sum.wrapping_add(u32::from(b));
        }
        Ok(n)
    }
}
