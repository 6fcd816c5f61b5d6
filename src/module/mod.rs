//! Module metadata: what depmod learns from each module file.

pub mod decompress;
pub mod elf;
pub mod read;

use decompress::DecompressError;
use elf::{ElfError, ElfModule};
pub use read::{MetaParser, ModuleReader, ModuleSource};

/// Why a module's symbols could not be read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read (the reason).
    #[error("{0}")]
    Io(String),
    /// Fewer bytes than any module has.
    #[error("file is too short to be a module")]
    TooShort,
    /// The compression is broken.
    #[error(transparent)]
    Decompress(#[from] DecompressError),
    /// The ELF image is malformed.
    #[error(transparent)]
    Elf(#[from] ElfError),
    /// The file (or its decompressed image) is over the size limit, or not a
    /// regular file: not a broken module but an input kmodidx refuses.
    #[error(transparent)]
    Refused(#[from] crate::util::Refused),
}

impl LoadError {
    /// The error for a failed read, keeping a refusal as such.
    pub fn from_io(e: &std::io::Error) -> Self {
        match crate::util::Refused::of(e) {
            Some(refused) => LoadError::Refused(refused.clone()),
            None => LoadError::Io(crate::util::io_reason(e)),
        }
    }

    /// The refusal behind this error: an input over the size limit (stored
    /// or decompressed) or not a regular file. A build stops on these.
    pub fn refusal(&self) -> Option<crate::util::Refused> {
        match self {
            LoadError::Refused(r) => Some(r.clone()),
            LoadError::Decompress(DecompressError::TooLarge { size, limit, .. }) => {
                Some(crate::util::Refused::TooLarge {
                    size: *size,
                    limit: *limit,
                    decompressed: true,
                })
            }
            _ => None,
        }
    }
}

/// Sorts ranges and merges those that overlap or lie close together, so
/// that neighbouring tables (`.symtab` and `.strtab`, say) take one read.
fn coalesce(mut ranges: Vec<elf::FileRange>) -> Vec<elf::FileRange> {
    const GAP: u64 = 4096;
    ranges.sort_unstable();
    let mut out: Vec<elf::FileRange> = Vec::with_capacity(ranges.len());
    for (offset, len) in ranges {
        match out.last_mut() {
            Some((o, l)) if offset <= *o + *l + GAP => *l = (*l).max(offset + len - *o),
            _ => out.push((offset, len)),
        }
    }
    out
}

/// Module files up to this size are read whole rather than piecemeal (see
/// [`ModuleMeta::read_file`]): on Debian's 6.1 amd64 kernel, about half of
/// the modules.
const SMALL_FILE: u64 = 32 << 10;

/// A module image being read: whole in memory, or loaded piecemeal.
trait Image {
    /// The image; only the parts loaded so far are meaningful.
    fn bytes(&self) -> &[u8];
    /// Makes `ranges` of the image meaningful.
    fn load(&mut self, ranges: &[elf::FileRange]) -> Result<(), LoadError>;
}

/// An image in memory: everything is loaded.
struct Whole<'a>(&'a [u8]);

impl Image for Whole<'_> {
    fn bytes(&self) -> &[u8] {
        self.0
    }
    fn load(&mut self, _: &[elf::FileRange]) -> Result<(), LoadError> {
        Ok(())
    }
}

/// An uncompressed module file read into `buf` at file offsets, a few
/// ranges at a time; the rest of `buf` holds whatever it held before.
struct Sparse<'a> {
    file: &'a std::fs::File,
    buf: &'a mut [u8],
}

impl Image for Sparse<'_> {
    fn bytes(&self) -> &[u8] {
        self.buf
    }
    fn load(&mut self, ranges: &[elf::FileRange]) -> Result<(), LoadError> {
        use std::os::unix::fs::FileExt;
        for (offset, length) in coalesce(ranges.to_vec()) {
            let range = usize::try_from(offset)
                .ok()
                .zip(
                    offset
                        .checked_add(length)
                        .and_then(|e| usize::try_from(e).ok()),
                )
                .and_then(|(start, end)| self.buf.get_mut(start..end))
                .ok_or_else(|| LoadError::Io("section lies outside the file".into()))?;
            self.file
                .read_exact_at(range, offset)
                .map_err(|e| LoadError::Io(crate::util::io_reason(&e)))?;
        }
        Ok(())
    }
}

/// Loads, stage by stage, the parts of an uncompressed image whose ELF
/// header (its first 64 bytes) is already loaded, and returns them as exact
/// ranges: the header, the section header table, the section names, the
/// tables depmod parses, and the sections holding `__crc_` values (the
/// whole image where a name could run past its string table). Each stage
/// only looks at what earlier stages loaded, so the answer is the same
/// whether the image is in memory whole or read piecemeal; parsing then
/// reads nothing else. Also returns the headers, parsed once on the way
/// (`Err` when they are malformed: parsing fails the same way on the
/// loaded image).
fn parsed_parts(image: &mut dyn Image) -> Result<Parts, LoadError> {
    let len = image.bytes().len() as u64;
    let mut ranges = vec![(0, len.min(64))];
    let mut stage = |image: &mut dyn Image, more: Vec<elf::FileRange>| {
        image.load(&more)?;
        ranges.extend(more);
        Ok::<_, LoadError>(())
    };
    if let Some(table) = elf::section_table_range(image.bytes()) {
        stage(image, vec![table])?;
        if let Some(names) = elf::section_names_range(image.bytes()) {
            stage(image, vec![names])?;
        }
    }
    let headers = match elf::Headers::parse(image.bytes()) {
        Ok(headers) => headers,
        Err(e) => {
            return Ok(Parts {
                ranges,
                headers: Err(e),
            })
        }
    };
    stage(image, headers.table_ranges())?;
    let elf = ElfModule::with_headers(image.bytes(), headers);
    let crcs = elf.crc_ranges().unwrap_or_else(|| vec![(0, len)]);
    let headers = elf.into_headers();
    stage(image, crcs)?;
    Ok(Parts {
        ranges,
        headers: Ok(headers),
    })
}

/// What [`parsed_parts`] found: the ranges loaded, and the headers.
struct Parts {
    ranges: Vec<elf::FileRange>,
    headers: Result<elf::Headers, ElfError>,
}

/// The digest of the parts of an image that depmod parses: SHA-256 over the
/// image length, then over each range of the union of `parts`, in file
/// order, its offset and length, all as little-endian u64, and its bytes.
/// Two images with the same digest give depmod the same data.
fn parts_digest(image: &[u8], mut parts: Vec<elf::FileRange>) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    parts.sort_unstable();
    let mut union: Vec<elf::FileRange> = Vec::with_capacity(parts.len());
    for (offset, len) in parts.into_iter().filter(|&(_, len)| len > 0) {
        match union.last_mut() {
            Some((o, l)) if offset <= o.saturating_add(*l) => {
                *l = (*l).max(offset.saturating_add(len) - *o)
            }
            _ => union.push((offset, len)),
        }
    }
    let mut hasher = Sha256::new();
    hasher.update((image.len() as u64).to_le_bytes());
    for (offset, len) in union {
        let Some(bytes) = usize::try_from(offset)
            .ok()
            .zip(usize::try_from(offset.saturating_add(len)).ok())
            .and_then(|(start, end)| image.get(start..end))
        else {
            continue;
        };
        hasher.update(offset.to_le_bytes());
        hasher.update(len.to_le_bytes());
        hasher.update(bytes);
    }
    hasher.finalize().into()
}

/// An exported symbol, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// Symbol name.
    pub name: Vec<u8>,
    /// CRC (0 when there is none).
    pub crc: u64,
    /// See [`elf::Export::name_after_empty`].
    pub name_after_empty: Option<Vec<u8>>,
}

/// The symbols a module needs, in order. Kept compact (names back to back
/// in one buffer): a kernel's modules need tens of thousands of symbols, and
/// all of them stay in memory until dependencies are resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Imports {
    names: Vec<u8>,
    entries: Vec<ImportEntry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ImportEntry {
    /// Where the name ends in `names` (it starts where the previous ends).
    end: usize,
    crc: u64,
    weak: bool,
}

impl Imports {
    /// Appends a needed symbol.
    pub fn push(&mut self, name: &[u8], crc: u64, weak: bool) {
        self.names.extend_from_slice(name);
        self.entries.push(ImportEntry {
            end: self.names.len(),
            crc,
            weak,
        });
    }

    /// The needed symbols, in order.
    pub fn iter(&self) -> impl Iterator<Item = elf::Import<'_>> {
        let mut start = 0;
        self.entries.iter().map(move |e| {
            let name = &self.names[start..e.end];
            start = e.end;
            elf::Import {
                name,
                crc: e.crc,
                weak: e.weak,
            }
        })
    }
}

/// Which digest of a module [`ModuleMeta::digest`] holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ModuleDigest {
    /// None (the default).
    #[default]
    None,
    /// [`ModuleMeta::metadata_digest`]: of what depmod took from the module.
    Metadata,
    /// Of the parts of the (uncompressed) image that depmod parses: SHA-256
    /// over the image length, then over each range of the union of those
    /// parts, in file order, its offset and length (little-endian u64) and
    /// its bytes.
    Parsed,
}

/// Everything depmod uses from one module, extracted so the (possibly large,
/// decompressed) image can be dropped right away.
#[derive(Debug, Clone, Default)]
pub struct ModuleMeta {
    /// `Err` is reported unless it only means "no export table".
    pub exports: Option<Result<Vec<Export>, LoadError>>,
    /// `alias=` values of its modinfo.
    pub aliases: Vec<Vec<u8>>,
    /// `softdep=` values.
    pub softdeps: Vec<Vec<u8>>,
    /// `weakdep=` values.
    pub weakdeps: Vec<Vec<u8>>,
    /// `firmware=` values: files the module may ask the kernel to load
    /// (not used by depmod; a closure copies them).
    pub firmware: Vec<Vec<u8>>,
    /// `None` when the symbol table could not be read: the module then has
    /// no dependencies, as with kmod.
    pub imports: Option<Imports>,
    /// The digest asked for ([`ModuleDigest`]), when the image could be
    /// read and decompressed.
    pub digest: Option<[u8; 32]>,
    /// The module is zstd-compressed in a frame that does not declare its
    /// size: read as kmod up to 33 reads it, and refused in kmod 34's mode
    /// (see [`ModuleMeta::for_kmod34`]).
    pub zstd_unsized: bool,
}

impl ModuleMeta {
    /// Reads a module from its file bytes (compressed or not).
    pub fn from_file_bytes(bytes: &[u8], limit: u64) -> ModuleMeta {
        ModuleMeta::read_bytes(bytes, limit, ModuleDigest::None)
    }

    /// [`ModuleMeta::from_file_bytes`], also setting [`ModuleMeta::digest`]
    /// as `digest` asks.
    pub fn read_bytes(bytes: &[u8], limit: u64, digest: ModuleDigest) -> ModuleMeta {
        // libkmod refuses files shorter than its 6-byte magic probe.
        if bytes.len() < 6 {
            return ModuleMeta::failed(LoadError::TooShort);
        }
        match decompress::decompress(bytes, limit) {
            Ok(image) => ModuleMeta::from_whole_image(&image, digest, false),
            Err(DecompressError::ZstdUnsized) => {
                match decompress::decompress_zstd_streamed(bytes, limit) {
                    Ok(image) => ModuleMeta::from_whole_image(&image, digest, true),
                    Err(e) => ModuleMeta::failed(e.into()),
                }
            }
            Err(e) => ModuleMeta::failed(e.into()),
        }
    }

    /// What kmod 34 makes of the module: it refuses a zstd frame without a
    /// declared size, which older releases decompress as a stream.
    pub fn for_kmod34(self) -> ModuleMeta {
        if self.zstd_unsized {
            ModuleMeta::failed(DecompressError::ZstdUnsized.into())
        } else {
            self
        }
    }

    /// Why the module was refused (too large, or not a regular file), if it
    /// was: a build stops on that rather than indexing it without symbols.
    pub fn refusal(&self) -> Option<crate::util::Refused> {
        match &self.exports {
            Some(Err(e)) => e.refusal(),
            _ => None,
        }
    }

    /// Reads a module from its uncompressed ELF image, held whole (from a
    /// zstd frame without a declared size when `zstd_unsized`).
    fn from_whole_image(image: &[u8], digest: ModuleDigest, zstd_unsized: bool) -> ModuleMeta {
        // Loading is a no-op here, so finding the parts cannot fail; they
        // come with the headers, parsed on the way.
        let (ranges, headers) = match digest {
            ModuleDigest::Parsed => match parsed_parts(&mut Whole(image)) {
                Ok(Parts { ranges, headers }) => (Some(ranges), headers),
                Err(_) => (None, elf::Headers::parse(image)),
            },
            ModuleDigest::None | ModuleDigest::Metadata => (None, elf::Headers::parse(image)),
        };
        let meta = ModuleMeta {
            zstd_unsized,
            ..ModuleMeta::from_headers(image, headers)
        };
        meta.digested(digest, image, ranges)
    }

    /// Reads a module from its uncompressed ELF image (of which at least
    /// what `headers` point to is loaded), given its parsed headers.
    fn from_headers(image: &[u8], headers: Result<elf::Headers, ElfError>) -> ModuleMeta {
        match headers {
            Ok(headers) => ModuleMeta::from_elf(&ElfModule::with_headers(image, headers)),
            Err(e) => ModuleMeta::failed(e.into()),
        }
    }

    /// Sets [`ModuleMeta::digest`] as `kind` asks, once every other field
    /// is final: from the metadata itself, or from the `ranges` of `image`
    /// that parsing read.
    fn digested(
        mut self,
        kind: ModuleDigest,
        image: &[u8],
        ranges: Option<Vec<elf::FileRange>>,
    ) -> ModuleMeta {
        self.digest = match kind {
            ModuleDigest::None => None,
            ModuleDigest::Metadata => self.metadata_digest(),
            ModuleDigest::Parsed => ranges.map(|ranges| parts_digest(image, ranges)),
        };
        self
    }

    /// SHA-256 of everything depmod (and a closure) took from the module,
    /// in a fixed encoding: every field of this struct but the digest,
    /// lists by their length then their items, byte strings by their length
    /// then their bytes, numbers as little-endian u64, flags and states as
    /// one byte. Two modules with the same metadata digest give depmod the
    /// same data, so the same index. `None` when the image could not be read
    /// or decompressed (there is no metadata to speak for it).
    pub fn metadata_digest(&self) -> Option<[u8; 32]> {
        use sha2::{Digest, Sha256};
        thread_local! {
            // The encoding is built in a reused buffer and hashed in one go:
            // hashing field by field costs a call per field, and a module
            // has thousands of fields.
            static ENCODED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        fn number(out: &mut Vec<u8>, n: u64) {
            out.extend_from_slice(&n.to_le_bytes());
        }
        fn bytes(out: &mut Vec<u8>, b: &[u8]) {
            number(out, b.len() as u64);
            out.extend_from_slice(b);
        }
        ENCODED.with_borrow_mut(|out| {
            out.clear();
            out.extend_from_slice(b"kmodidx module metadata 1\0");
            match &self.exports {
                None => out.push(0),
                Some(Ok(exports)) => {
                    out.push(1);
                    number(out, exports.len() as u64);
                    for e in exports {
                        bytes(out, &e.name);
                        number(out, e.crc);
                        match &e.name_after_empty {
                            None => out.push(0),
                            Some(after) => {
                                out.push(1);
                                bytes(out, after);
                            }
                        }
                    }
                }
                Some(Err(LoadError::Elf(e))) => out.extend_from_slice(&[
                    2,
                    match e {
                        ElfError::NotElf => 1,
                        ElfError::Malformed => 2,
                        ElfError::NoData => 3,
                    },
                ]),
                Some(Err(_)) => return None,
            }
            match &self.imports {
                None => out.push(0),
                Some(imports) => {
                    // The names back to back, then where each ends: the same
                    // information as name by name.
                    out.push(1);
                    bytes(out, &imports.names);
                    number(out, imports.entries.len() as u64);
                    for e in &imports.entries {
                        number(out, e.end as u64);
                        number(out, e.crc);
                        out.push(u8::from(e.weak));
                    }
                }
            }
            for items in [
                &self.aliases,
                &self.softdeps,
                &self.weakdeps,
                &self.firmware,
            ] {
                number(out, items.len() as u64);
                for item in items {
                    bytes(out, item);
                }
            }
            out.push(u8::from(self.zstd_unsized));
            let digest = Sha256::digest(&out[..]).into();
            // One huge module must not pin its size in every thread.
            if out.capacity() > 1 << 20 {
                *out = Vec::new();
            }
            Some(digest)
        })
    }

    /// Reads a module from an open file of `len` bytes, fetching only the
    /// parts depmod looks at: the ELF header, the section headers and names,
    /// the symbol, string, modinfo and version tables, and the sections
    /// holding CRCs, into `buf` at their file offsets. A compressed module,
    /// and a file of at most 32 KiB, is read whole. Parsing then sees exactly
    /// what a full read would show it; where it could look further (a string
    /// table without its final NUL), everything is read. `buf` is reused
    /// between calls.
    pub fn from_file(file: &std::fs::File, len: u64, buf: &mut Vec<u8>, limit: u64) -> ModuleMeta {
        ModuleMeta::read_file(file, len, buf, limit, ModuleDigest::None)
    }

    /// [`ModuleMeta::from_file`], also setting [`ModuleMeta::digest`] as
    /// `digest` asks (a parsed-parts digest from the parts read, so at
    /// little extra cost).
    pub fn read_file(
        file: &std::fs::File,
        len: u64,
        buf: &mut Vec<u8>,
        limit: u64,
        digest: ModuleDigest,
    ) -> ModuleMeta {
        ModuleMeta::read_file_from(file, len, buf, limit, digest, SMALL_FILE)
    }

    /// [`ModuleMeta::read_file`], reading an uncompressed module piecemeal
    /// whatever its size: what tests and fuzzing use to check that the
    /// piecemeal reader sees what a whole read sees, on small modules too.
    pub fn read_file_piecemeal(
        file: &std::fs::File,
        len: u64,
        buf: &mut Vec<u8>,
        limit: u64,
        digest: ModuleDigest,
    ) -> ModuleMeta {
        ModuleMeta::read_file_from(file, len, buf, limit, digest, 0)
    }

    /// [`ModuleMeta::read_file`], reading files of at most `small` bytes
    /// whole.
    fn read_file_from(
        file: &std::fs::File,
        len: u64,
        buf: &mut Vec<u8>,
        limit: u64,
        digest: ModuleDigest,
        small: u64,
    ) -> ModuleMeta {
        use std::os::unix::fs::FileExt;
        if len < 6 {
            return ModuleMeta::failed(LoadError::TooShort);
        }
        let Some(size) = usize::try_from(len).ok().filter(|_| len <= limit) else {
            return ModuleMeta::failed(LoadError::Refused(crate::util::Refused::TooLarge {
                size: Some(len),
                limit,
                decompressed: false,
            }));
        };
        if buf.len() < size {
            buf.resize(size, 0);
        }
        // A small file is read whole, in one call: cheaper than the four to
        // six it takes to fetch only its tables (most of a small module).
        if len <= small {
            return match file.read_exact_at(&mut buf[..size], 0) {
                Ok(()) => ModuleMeta::read_bytes(&buf[..size], limit, digest),
                Err(e) => ModuleMeta::failed(LoadError::Io(crate::util::io_reason(&e))),
            };
        }
        let head = &mut buf[..len.min(64) as usize];
        if let Err(e) = file.read_exact_at(head, 0) {
            return ModuleMeta::failed(LoadError::Io(crate::util::io_reason(&e)));
        }
        let format = decompress::Compression::detect(head);
        if format == decompress::Compression::None {
            let mut sparse = Sparse {
                file,
                buf: &mut buf[..size],
            };
            return match parsed_parts(&mut sparse) {
                Ok(Parts { ranges, headers }) => {
                    let image = &buf[..size];
                    ModuleMeta::from_headers(image, headers).digested(digest, image, Some(ranges))
                }
                Err(e) => ModuleMeta::failed(e),
            };
        }
        if format == decompress::Compression::Zstd {
            // zstd is decompressed from memory anyway (kmod 34 reads the
            // frame's declared size first).
            return match file.read_exact_at(&mut buf[..size], 0) {
                Ok(()) => ModuleMeta::read_bytes(&buf[..size], limit, digest),
                Err(e) => ModuleMeta::failed(LoadError::Io(crate::util::io_reason(&e))),
            };
        }
        // A compressed module is needed whole: stream it through the
        // decompressor rather than grow the reusable buffer to its size.
        let tail_len = len.min(4096);
        let mut tail = vec![0u8; tail_len as usize];
        if let Err(e) = file.read_exact_at(&mut tail, len - tail_len) {
            return ModuleMeta::failed(LoadError::Io(crate::util::io_reason(&e)));
        }
        // From the start, wherever an earlier reader left the file's cursor.
        if let Err(e) = std::io::Seek::seek(&mut &*file, std::io::SeekFrom::Start(0)) {
            return ModuleMeta::failed(LoadError::Io(crate::util::io_reason(&e)));
        }
        match decompress::decompress_stream(file, format, &tail, limit) {
            Ok(image) => ModuleMeta::from_whole_image(&image, digest, false),
            Err(e) => ModuleMeta::failed(e.into()),
        }
    }

    /// A module whose image could not be opened: listed, but with no data.
    pub fn failed(error: LoadError) -> ModuleMeta {
        ModuleMeta {
            exports: Some(Err(error)),
            ..ModuleMeta::default()
        }
    }

    fn from_elf(elf: &ElfModule<'_>) -> ModuleMeta {
        let exports = elf.exports().map(|list| {
            list.into_iter()
                .map(|e| Export {
                    name: e.name.to_vec(),
                    crc: e.crc,
                    name_after_empty: e.name_after_empty.map(<[u8]>::to_vec),
                })
                .collect()
        });
        let mut meta = ModuleMeta {
            exports: Some(exports.map_err(LoadError::from)),
            ..ModuleMeta::default()
        };
        for (key, value) in elf.modinfo().unwrap_or_default() {
            let list = match key {
                b"alias" => &mut meta.aliases,
                b"softdep" => &mut meta.softdeps,
                b"weakdep" => &mut meta.weakdeps,
                b"firmware" => &mut meta.firmware,
                _ => continue,
            };
            list.push(value.to_vec());
        }
        meta.imports = elf.imports().ok().map(|list| {
            let mut imports = Imports::default();
            imports
                .names
                .reserve(list.iter().map(|i| i.name.len()).sum());
            imports.entries.reserve_exact(list.len());
            for i in list {
                imports.push(i.name, i.crc, i.weak);
            }
            imports
        });
        meta
    }
}
