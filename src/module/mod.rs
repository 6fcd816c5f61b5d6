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
    /// The module is zstd-compressed in a frame that does not declare its
    /// size: read as kmod up to 33 reads it, and refused in kmod 34's mode
    /// (see [`ModuleMeta::for_kmod34`]).
    pub zstd_unsized: bool,
}

impl ModuleMeta {
    /// Reads a module from its file bytes (compressed or not).
    pub fn from_file_bytes(bytes: &[u8], limit: u64) -> ModuleMeta {
        // libkmod refuses files shorter than its 6-byte magic probe.
        if bytes.len() < 6 {
            return ModuleMeta::failed(LoadError::TooShort);
        }
        let image = match decompress::decompress(bytes, limit) {
            Ok(image) => image,
            Err(DecompressError::ZstdUnsized) => {
                return match decompress::decompress_zstd_streamed(bytes, limit) {
                    Ok(image) => ModuleMeta {
                        zstd_unsized: true,
                        ..ModuleMeta::from_image(&image)
                    },
                    Err(e) => ModuleMeta::failed(e.into()),
                }
            }
            Err(e) => return ModuleMeta::failed(e.into()),
        };
        ModuleMeta::from_image(&image)
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

    /// Reads a module from its uncompressed ELF image.
    fn from_image(image: &[u8]) -> ModuleMeta {
        match ElfModule::parse(image) {
            Ok(elf) => ModuleMeta::from_elf(&elf),
            Err(e) => ModuleMeta::failed(e.into()),
        }
    }

    /// Reads a module from an open file of `len` bytes, fetching only the
    /// parts depmod looks at: the ELF header, the section headers and names,
    /// the symbol, string, modinfo and version tables, and the sections
    /// holding CRCs, into `buf` at their file offsets. A compressed module is
    /// read whole. Parsing then sees exactly what a full read would show it;
    /// where it could look further (a string table without its final NUL),
    /// everything is read. `buf` is reused between calls.
    pub fn from_file(file: &std::fs::File, len: u64, buf: &mut Vec<u8>, limit: u64) -> ModuleMeta {
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
        let load = |buf: &mut Vec<u8>, (offset, length): elf::FileRange| -> Result<(), LoadError> {
            let (start, end) = (offset as usize, (offset + length) as usize);
            file.read_exact_at(&mut buf[start..end], offset)
                .map_err(|e| LoadError::Io(crate::util::io_reason(&e)))
        };
        let read = (|| -> Result<bool, LoadError> {
            load(buf, (0, len.min(64)))?;
            if decompress::Compression::detect(&buf[..len.min(64) as usize])
                != decompress::Compression::None
            {
                return Ok(true);
            }
            if let Some(table) = elf::section_table_range(&buf[..size]) {
                load(buf, table)?;
                if let Some(names) = elf::section_names_range(&buf[..size]) {
                    load(buf, names)?;
                }
            }
            let tables = match ElfModule::parse(&buf[..size]) {
                Ok(elf) => elf.table_ranges(),
                Err(_) => return Ok(false), // parsing fails again below, reading nothing more
            };
            for range in coalesce(tables) {
                load(buf, range)?;
            }
            match ElfModule::parse(&buf[..size])
                .ok()
                .and_then(|elf| elf.crc_ranges())
            {
                Some(ranges) => ranges.into_iter().try_for_each(|r| load(buf, r))?,
                None => load(buf, (0, len))?,
            }
            Ok(false)
        })();
        match read {
            Ok(false) => ModuleMeta::from_file_bytes(&buf[..size], limit),
            // A compressed module is needed whole: stream it through the
            // decompressor rather than grow the reusable buffer to its size.
            Ok(true) => {
                let format = decompress::Compression::detect(&buf[..len.min(64) as usize]);
                if format == decompress::Compression::Zstd {
                    // zstd is decompressed from memory anyway (kmod 34
                    // reads the frame's declared size first).
                    return match load(buf, (0, len)) {
                        Ok(()) => ModuleMeta::from_file_bytes(&buf[..size], limit),
                        Err(e) => ModuleMeta::failed(e),
                    };
                }
                let tail_len = len.min(4096);
                let mut tail = vec![0u8; tail_len as usize];
                if let Err(e) = file.read_exact_at(&mut tail, len - tail_len) {
                    return ModuleMeta::failed(LoadError::Io(crate::util::io_reason(&e)));
                }
                // The file's own cursor is still at the start: only pread
                // was used so far.
                match decompress::decompress_stream(file, format, &tail, limit) {
                    Ok(image) => ModuleMeta::from_image(&image),
                    Err(e) => ModuleMeta::failed(e.into()),
                }
            }
            Err(e) => ModuleMeta::failed(e),
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
