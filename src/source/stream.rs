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
use std::fmt;
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
        hint: String,
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
    /// Shared by the readers of one archive (an early-microcode image
    /// switches to a decompressor part way).
    count: Rc<Cell<u64>>,
    limit: u64,
    exceeded: Rc<Cell<bool>>,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let total = self.count.get() + n as u64;
        if total > self.limit {
            self.exceeded.set(true);
            return Err(io::Error::other("decompressed size limit exceeded"));
        }
        self.count.set(total);
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

/// A decompressor's own failure (bad data, a checksum that does not match,
/// a stream cut short), kept apart from the archive's so that messages name
/// the real cause.
#[derive(Debug)]
struct DecodeError {
    format: Compression,
    reason: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for DecodeError {}

/// Tags a decompressor's errors as [`DecodeError`]s.
struct Decoding<R> {
    inner: R,
    format: Compression,
}

impl<R: Read> Read for Decoding<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            let tagged = e.get_ref().is_some_and(|i| i.is::<DecodeError>());
            if tagged || e.kind() == io::ErrorKind::Interrupted {
                return e;
            }
            let reason = if e.kind() == io::ErrorKind::UnexpectedEof {
                "the compressed data ends too early".to_string()
            } else {
                let reason = crate::util::io_reason(&e);
                if reason.contains("emory") {
                    // zstd: "Frame requires too much memory for decoding";
                    // xz: "Memory usage limit was reached".
                    format!("{reason} (its window is larger than the size limit; raise it with --max-file-size MIB)")
                } else {
                    reason
                }
            };
            io::Error::new(
                e.kind(),
                DecodeError {
                    format: self.format,
                    reason,
                },
            )
        })
    }
}

/// Reads `source`'s first bytes, recognises its compression and returns
/// the decompressed stream. `name` is what errors call the source.
fn decompressed<'r>(
    name: &Path,
    mut source: impl Read + 'r,
    window: u64,
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
    let stream = decoder(Box::new(raw), compression, window).map_err(open_err)?;
    Ok((stream, compression))
}

/// A decoder of `raw` (several concatenated gzip members, xz streams or
/// zstd frames are one stream), read to its very end by the archive
/// readers, so that every checksum is verified and a cut-off stream is
/// noticed; its failures are tagged as [`DecodeError`]s. `window` bounds
/// the decoder's window (see [`Compression::decoder_within`]).
fn decoder<'a>(
    raw: Box<dyn Read + 'a>,
    format: Compression,
    window: u64,
) -> io::Result<Box<dyn Read + 'a>> {
    if format == Compression::None {
        return Ok(raw);
    }
    Ok(Box::new(Decoding {
        inner: format.decoder_within(raw, window)?,
        format,
    }))
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
    for_each_entry_in(path, file, limit, u64::MAX, visit)
}

/// As [`for_each_entry`], reading the archive from `source` (such as
/// standard input); `name` is what errors call it. `window` bounds a
/// decompressor's window (zstd's window, xz's dictionary), which it fills
/// as data goes by: a stream that needs more is refused.
pub fn for_each_entry_in(
    name: &Path,
    source: impl Read,
    limit: u64,
    window: u64,
    visit: &mut dyn FnMut(RawEntry<'_>) -> Result<(), EntryError>,
) -> Result<(ArchiveFormat, Compression), ArchiveError> {
    let path = name;
    let (stream, compression) = decompressed(path, source, window)?;
    let count = Rc::new(Cell::new(0u64));
    let exceeded = Rc::new(Cell::new(false));
    let mut capped = Capped {
        inner: stream,
        count: count.clone(),
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
            ": old-style (odc) cpio is not supported, use newc (cpio -H newc)".to_string()
        } else if head.is_empty() {
            ": the file is empty".to_string()
        } else if let Some(name) = Compression::unsupported(head) {
            format!(": it is compressed with {name}; kmodidx reads gzip, xz and zstd")
        } else {
            String::new()
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
        count: &count,
        limit,
        window,
    };
    match format {
        ArchiveFormat::Tar => read_tar(&ctx, reader, visit)?,
        ArchiveFormat::Cpio => read_cpio(&ctx, Box::new(reader), visit)?,
    }
    Ok((format, compression))
}

struct Ctx<'a> {
    path: &'a Path,
    exceeded: &'a Rc<Cell<bool>>,
    /// The bytes counted against `limit` so far.
    count: &'a Rc<Cell<u64>>,
    limit: u64,
    /// Largest decompression window accepted.
    window: u64,
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
    if let Some(decode) = e.get_ref().and_then(|i| i.downcast_ref::<DecodeError>()) {
        return ArchiveError::Corrupt {
            archive: path.to_path_buf(),
            what: format!("{} data", decode.format),
            offset,
            entry: entry.map(|e| String::from_utf8_lossy(e).into_owned()),
            reason: decode.reason.clone(),
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

/// The largest GNU long name or pax header accepted. The tar crate reads
/// these whole into memory; real ones are a path (at most 4096 bytes) or a
/// few attributes.
const TAR_META_MAX: u64 = 1 << 20;

/// Watches the blocks of a tar stream on their way to the tar crate, and
/// refuses a GNU long name or pax header larger than [`TAR_META_MAX`]
/// before the crate reads it into memory. It follows the layout as the
/// crate does (a pax `size` overrides the next entry's, GNU sparse headers
/// may be followed by extension blocks, the first zero block ends the
/// archive); on anything it does not understand it stops watching and
/// leaves the error to the crate.
struct TarWatch<R> {
    inner: R,
    phase: TarPhase,
    block: Box<[u8; 512]>,
    pax: Vec<u8>,
    pending_size: Option<u64>,
    pos: u64,
}

#[derive(Clone, Copy)]
enum TarPhase {
    Header { have: usize },
    Skip { left: u64 },
    Pax { left: u64, pad: u64 },
    SparseExt { have: usize, data: u64 },
    Done,
}

impl<R: Read> TarWatch<R> {
    fn new(inner: R) -> Self {
        TarWatch {
            inner,
            phase: TarPhase::Header { have: 0 },
            block: Box::new([0; 512]),
            pax: Vec::new(),
            pending_size: None,
            pos: 0,
        }
    }

    fn observe(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match self.phase {
                TarPhase::Done => return Ok(()),
                TarPhase::Header { have } | TarPhase::SparseExt { have, .. } => {
                    let n = (512 - have).min(bytes.len());
                    self.block[have..have + n].copy_from_slice(&bytes[..n]);
                    bytes = &bytes[n..];
                    let have = have + n;
                    self.phase = match self.phase {
                        TarPhase::SparseExt { data, .. } if have == 512 => {
                            if self.block[504] != 0 {
                                TarPhase::SparseExt { have: 0, data }
                            } else {
                                TarPhase::Skip { left: data }
                            }
                        }
                        TarPhase::SparseExt { data, .. } => TarPhase::SparseExt { have, data },
                        _ if have == 512 => self.header()?,
                        _ => TarPhase::Header { have },
                    };
                }
                TarPhase::Skip { left } => {
                    let n = left.min(bytes.len() as u64);
                    bytes = &bytes[n as usize..];
                    self.phase = match left - n {
                        0 => TarPhase::Header { have: 0 },
                        left => TarPhase::Skip { left },
                    };
                }
                TarPhase::Pax { left, pad } => {
                    let n = left.min(bytes.len() as u64);
                    self.pax.extend_from_slice(&bytes[..n as usize]);
                    bytes = &bytes[n as usize..];
                    self.phase = if left == n {
                        self.pending_size = pax_size(&self.pax);
                        match pad {
                            0 => TarPhase::Header { have: 0 },
                            left => TarPhase::Skip { left },
                        }
                    } else {
                        TarPhase::Pax {
                            left: left - n,
                            pad,
                        }
                    };
                }
            }
        }
        Ok(())
    }

    /// What follows the header now in `block`.
    fn header(&mut self) -> io::Result<TarPhase> {
        let block = &*self.block;
        if block.iter().all(|&b| b == 0) {
            return Ok(TarPhase::Done);
        }
        let Some(mut size) = tar_number(&block[124..136]) else {
            return Ok(TarPhase::Done);
        };
        let kind = block[156];
        let meta = matches!(kind, b'L' | b'K' | b'x' | b'g');
        if !meta {
            if let Some(pax) = self.pending_size.take() {
                size = pax;
            }
        } else if size > TAR_META_MAX {
            let what = if matches!(kind, b'L' | b'K') {
                "GNU long name"
            } else {
                "pax header"
            };
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a {what} of {size} bytes, more than kmodidx accepts ({TAR_META_MAX})"),
            ));
        }
        let Some(data) = size.checked_add(511).map(|n| n & !511) else {
            return Ok(TarPhase::Done);
        };
        Ok(match kind {
            b'x' => {
                self.pax.clear();
                TarPhase::Pax {
                    left: size,
                    pad: data - size,
                }
            }
            b'S' if block[482] != 0 => TarPhase::SparseExt { have: 0, data },
            _ if data == 0 => TarPhase::Header { have: 0 },
            _ => TarPhase::Skip { left: data },
        })
    }
}

impl<R: Read> Read for TarWatch<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let at = self.pos;
        self.observe(&buf[..n])
            .map_err(|e| io::Error::new(e.kind(), format!("at offset {at}: {e}")))?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// A tar numeric field: octal (space or NUL terminated), or base-256.
fn tar_number(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        let mut value = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            value = value.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(value);
    }
    let text = std::str::from_utf8(field).ok()?;
    let text = text.trim_matches(|c: char| c == ' ' || c == '\0');
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

/// The `size` record of a pax header, as the tar crate reads it.
fn pax_size(pax: &[u8]) -> Option<u64> {
    tar::PaxExtensions::new(pax)
        .filter_map(Result::ok)
        .filter(|e| e.key_bytes() == b"size")
        .last()
        .and_then(|e| parse_decimal(e.value_bytes()))
}

fn read_tar(
    ctx: &Ctx<'_>,
    reader: impl Read,
    visit: &mut dyn FnMut(RawEntry<'_>) -> Result<(), EntryError>,
) -> Result<(), ArchiveError> {
    let mut reader = TarWatch::new(reader);
    let mut archive = tar::Archive::new(&mut reader);
    let mut last_offset = 0u64;
    let entries = archive
        .entries()
        .map_err(|e| ctx.io("tar header", 0, None, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| ctx.io("tar header", last_offset, None, e))?;
        let offset = entry.raw_header_position();
        last_offset = offset;
        use tar::EntryType as T;
        let sparse = match entry.header().entry_type() {
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => continue,
            _ => PaxSparse::of(&mut entry).map_err(|e| ctx.io("tar header", offset, None, e))?,
        };
        let path = match &sparse {
            Some(PaxSparse {
                name: Some(name), ..
            }) => name.clone(),
            _ => entry.path_bytes().into_owned(),
        };
        let header = entry.header();
        let size = entry.size();
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        let link = || {
            entry
                .link_name_bytes()
                .map(|l| l.into_owned())
                .unwrap_or_default()
        };
        let kind = match header.entry_type() {
            // The tar crate expands GNU sparse files ('S') itself.
            T::Regular | T::Continuous | T::GNUSparse => RawKind::File,
            T::Directory => RawKind::Dir,
            T::Symlink => RawKind::Symlink(link()),
            T::Link => RawKind::HardLink(link()),
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => continue,
            _ => RawKind::Other,
        };
        // Hard links and symlinks may carry a size in some writers; their
        // data is never used.
        let data_size = if kind == RawKind::File { size } else { 0 };
        let result = match sparse {
            Some(sparse) if kind == RawKind::File => {
                let mut exact = Exact {
                    inner: &mut entry,
                    left: data_size,
                };
                let real_size = sparse.real_size;
                let mut expanded = SparseReader::new(&mut exact, sparse, data_size);
                visit(RawEntry {
                    path: &path,
                    kind,
                    mode,
                    size: real_size,
                    offset,
                    cpio_inode: None,
                    data: &mut expanded,
                })
            }
            _ => {
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
            }
        };
        result.map_err(|e| ctx.entry("tar entry", offset, &path, e))?;
        // The tar crate skips whatever the visitor left unread.
    }
    // Read on to the end of the stream: what follows the end-of-archive
    // blocks is usually only padding, but the compressed stream's checksum
    // and end come after it, and a stream cut short must not pass.
    io::copy(&mut reader, &mut io::sink())
        .map_err(|e| ctx.io("end of the archive", ctx.count.get(), None, e))?;
    if ctx.exceeded.get() {
        return Err(ArchiveError::TooLarge {
            archive: ctx.path.to_path_buf(),
            limit: ctx.limit,
        });
    }
    Ok(())
}

/// A pax sparse file (GNU tar's formats 0.0, 0.1 and 1.0): the stored data
/// holds only the non-hole regions, which the map places in the real file.
struct PaxSparse {
    /// The real name (format 1.0 stores a made-up `GNUSparseFile.N/...` name
    /// in the header).
    name: Option<Vec<u8>>,
    real_size: u64,
    /// Format 1.0 keeps the map at the start of the data; the others give
    /// it here, as `(offset, length)` pairs.
    map: Option<Vec<(u64, u64)>>,
}

fn corrupt_sparse(why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("bad pax sparse file header: {why}"),
    )
}

impl PaxSparse {
    fn of<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Option<PaxSparse>> {
        let Some(pax) = entry.pax_extensions()? else {
            return Ok(None);
        };
        let (mut major, mut name, mut real_size, mut size, mut map_text) =
            (None, None, None, None, None);
        let mut pairs: Vec<u64> = Vec::new();
        let mut any = false;
        for ext in pax {
            let ext = ext?;
            let Some(key) = ext.key_bytes().strip_prefix(b"GNU.sparse.") else {
                continue;
            };
            any = true;
            let value = ext.value_bytes();
            let number = || parse_decimal(value).ok_or_else(|| corrupt_sparse("not a number"));
            match key {
                b"major" => major = Some(number()?),
                b"name" => name = Some(value.to_vec()),
                b"realsize" => real_size = Some(number()?),
                b"size" => size = Some(number()?),
                b"map" => map_text = Some(value.to_vec()),
                b"offset" | b"numbytes" => pairs.push(number()?),
                _ => {}
            }
        }
        if !any {
            return Ok(None);
        }
        let real_size = real_size
            .or(size)
            .ok_or_else(|| corrupt_sparse("no real size"))?;
        let map = if major == Some(1) {
            None
        } else {
            let numbers = match map_text {
                Some(text) => text
                    .split(|&b| b == b',')
                    .map(|n| parse_decimal(n).ok_or_else(|| corrupt_sparse("bad map")))
                    .collect::<io::Result<Vec<u64>>>()?,
                None => pairs,
            };
            if numbers.len() % 2 != 0 {
                return Err(corrupt_sparse("odd map"));
            }
            Some(numbers.chunks(2).map(|p| (p[0], p[1])).collect())
        };
        Ok(Some(PaxSparse {
            name,
            real_size,
            map,
        }))
    }
}

fn parse_decimal(text: &[u8]) -> Option<u64> {
    std::str::from_utf8(text).ok()?.trim().parse().ok()
}

/// Expands a pax sparse file's stored regions into its real contents,
/// holes as zeros. The map is checked as it is used: regions in order, not
/// overlapping, inside the real size and the stored data.
struct SparseReader<'a> {
    inner: &'a mut dyn Read,
    map: Option<Vec<(u64, u64)>>,
    real_size: u64,
    /// Stored bytes not yet consumed.
    stored: u64,
    /// Position in the real file, and the next region.
    pos: u64,
    next: usize,
    /// Bytes of the current region still to copy.
    in_region: u64,
}

impl<'a> SparseReader<'a> {
    fn new(inner: &'a mut dyn Read, sparse: PaxSparse, stored: u64) -> Self {
        SparseReader {
            inner,
            map: sparse.map,
            real_size: sparse.real_size,
            stored,
            pos: 0,
            next: 0,
            in_region: 0,
        }
    }

    /// Format 1.0: decimal numbers, one a line (the count, then offset and
    /// length pairs), padded to a 512-byte block.
    fn read_map(&mut self) -> io::Result<Vec<(u64, u64)>> {
        let mut consumed = 0u64;
        let mut line = Vec::new();
        let mut next_number = |r: &mut Self| -> io::Result<u64> {
            line.clear();
            loop {
                let mut byte = [0u8];
                if r.inner.read(&mut byte)? == 0 {
                    return Err(corrupt_sparse("the map ends early"));
                }
                consumed += 1;
                if byte[0] == b'\n' {
                    break;
                }
                if line.len() > 20 {
                    return Err(corrupt_sparse("bad map"));
                }
                line.push(byte[0]);
            }
            parse_decimal(&line).ok_or_else(|| corrupt_sparse("bad map"))
        };
        let count = next_number(self)?;
        let mut map = Vec::new();
        for _ in 0..count {
            let offset = next_number(self)?;
            let length = next_number(self)?;
            map.push((offset, length));
        }
        let pad = (512 - consumed % 512) % 512;
        let skipped = io::copy(&mut (&mut *self.inner).take(pad), &mut io::sink())?;
        if skipped != pad {
            return Err(corrupt_sparse("the map ends early"));
        }
        self.stored = self
            .stored
            .checked_sub(consumed + pad)
            .ok_or_else(|| corrupt_sparse("the map is larger than the data"))?;
        Ok(map)
    }
}

impl Read for SparseReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.map.is_none() {
            self.map = Some(self.read_map()?);
        }
        loop {
            if buf.is_empty() || self.pos >= self.real_size {
                return Ok(0);
            }
            let window = |n: u64| buf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
            if self.in_region > 0 {
                let want = window(self.in_region);
                let n = self.inner.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(corrupt_sparse("the data ends early"));
                }
                self.in_region -= n as u64;
                self.pos += n as u64;
                return Ok(n);
            }
            let region = self.map.as_ref().and_then(|m| m.get(self.next)).copied();
            match region {
                Some((offset, length)) if offset <= self.pos => {
                    if offset < self.pos
                        || offset.saturating_add(length) > self.real_size
                        || length > self.stored
                    {
                        return Err(corrupt_sparse("regions out of order or out of bounds"));
                    }
                    self.next += 1;
                    self.stored -= length;
                    self.in_region = length;
                }
                // A hole up to the next region, or to the end.
                _ => {
                    let end =
                        region.map_or(self.real_size, |(offset, _)| offset.min(self.real_size));
                    let n = window(end - self.pos);
                    buf[..n].fill(0);
                    self.pos += n as u64;
                    return Ok(n);
                }
            }
        }
    }
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

fn read_cpio<'r>(
    ctx: &Ctx<'_>,
    reader: Box<dyn Read + 'r>,
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
        let mut have = 1;
        if archive_no > 0 && header[0] != b'0' {
            // After a trailer, the kernel's unpacker also takes a compressed
            // archive (early-microcode images: a plain cpio, then the
            // gzip- or zstd-compressed initramfs).
            have += read_full(&mut r, &mut header[1..6])
                .map_err(|e| ctx.io("cpio header", offset, None, e))?;
            let magic = &header[..have];
            match Compression::detect(magic) {
                Compression::None => {}
                format => {
                    let rest = std::mem::replace(&mut r.inner, Box::new(io::empty()));
                    let raw = Box::new(io::Cursor::new(magic.to_vec()).chain(rest));
                    let decoded = decoder(raw, format, ctx.window)
                        .map_err(|e| ctx.io("cpio header", offset, None, e))?;
                    r.inner = Box::new(Capped {
                        inner: decoded,
                        count: ctx.count.clone(),
                        limit: ctx.limit,
                        exceeded: ctx.exceeded.clone(),
                    });
                    continue;
                }
            }
            if let Some(name) = Compression::unsupported(magic) {
                return Err(ArchiveError::Corrupt {
                    archive: ctx.path.to_path_buf(),
                    what: "cpio archive".into(),
                    offset,
                    entry: None,
                    reason: format!(
                        "the archive that starts here is compressed with {name}; kmodidx reads gzip, xz and zstd"
                    ),
                });
            }
        }
        read_exact(&mut r, &mut header[have..])
            .map_err(|e| ctx.io("cpio header", offset, None, e))?;
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
