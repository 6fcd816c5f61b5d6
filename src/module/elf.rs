//! Reads what depmod needs from a kernel module's ELF image.
//!
//! This follows libkmod's reader closely in what it *accepts*: sections are
//! found by name (first match wins), every offset is range-checked against the
//! file, and a malformed part disables only the data that depends on it. The
//! reading itself is zero-copy and generic over ELF class and byte order via
//! the `object` crate's raw structures.

use foldhash::{HashMap, HashMapExt};

use object::elf::{self, FileHeader32, FileHeader64};
use object::read::elf::{FileHeader, SectionHeader, Sym};
use object::{pod, Endianness};

/// Why an ELF image (or one part of it) could not be read. The variants map
/// to the errno values libkmod returns, so diagnostics can say the same thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ElfError {
    /// Not an ELF file at all (`ENOEXEC`).
    #[error("Exec format error")]
    NotElf,
    /// An ELF file whose headers or sections are inconsistent (`EINVAL`).
    #[error("Invalid argument")]
    Malformed,
    /// The requested section is absent (`ENODATA`).
    #[error("No data available")]
    NoData,
}

/// One `.modinfo` string as `(key, value)`.
pub type ModinfoEntry<'a> = (&'a [u8], &'a [u8]);

/// A symbol the module exports, with its CRC (0 when it has none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export<'a> {
    /// Symbol name.
    pub name: &'a [u8],
    /// CRC.
    pub crc: u64,
    /// For a `__crc_` symbol with an empty name: the string that follows it in
    /// `.strtab`. kmod strips a NUL "prefix" from such a name and so reads on
    /// into the next string; we keep it to reproduce that.
    pub name_after_empty: Option<&'a [u8]>,
}

/// A symbol the module needs, with the CRC it was built against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import<'a> {
    /// Symbol name.
    pub name: &'a [u8],
    /// CRC the module was built against.
    pub crc: u64,
    /// A weak reference: no dependency when unresolved.
    pub weak: bool,
}

const SHN_UNDEF: u16 = 0;
const SHN_ABS: u16 = 0xfff1;
/// `__versions` entries are 64 bytes: a CRC word then a NUL-padded name.
const MODVERSION_LEN: u64 = 64;

/// A parsed module image: cheap to query, borrows the bytes.
pub struct ElfModule<'a> {
    data: &'a [u8],
    headers: Headers,
}

/// What an image's headers say: its class, byte order and machine, and
/// where the sections depmod reads lie. Owns nothing of the image, so a
/// piecemeal reader parses the headers once and keeps them while it loads
/// the parts they point to.
#[derive(Clone)]
pub struct Headers {
    class: Class,
    endian: Endianness,
    machine: u16,
    sections: Sections,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Elf32,
    Elf64,
}

/// Offset and size of each section depmod looks at; `None` when absent.
#[derive(Clone, Default)]
struct Sections {
    ksymtab_strings: Option<Range>,
    modinfo: Option<Range>,
    strtab: Option<Range>,
    symtab: Option<Range>,
    versions: Option<Range>,
    /// Every section header, for resolving CRCs stored in a section.
    all: Vec<Option<Range>>,
}

#[derive(Clone, Copy, Debug)]
struct Range {
    offset: u64,
    size: u64,
}

/// The symbol fields depmod uses, independent of class.
struct SymFields {
    name: u32,
    value: u64,
    info: u8,
    shndx: u16,
}

/// Class and byte order from `e_ident`.
fn identify(data: &[u8]) -> Result<(Class, Endianness), ElfError> {
    // e_ident: magic, then class (byte 4) and data encoding (byte 5).
    const EI_NIDENT: usize = 16;
    if data.len() <= EI_NIDENT || data[..4] != elf::ELFMAG {
        return Err(ElfError::NotElf);
    }
    let class = match data[4] {
        elf::ELFCLASS32 => Class::Elf32,
        elf::ELFCLASS64 => Class::Elf64,
        _ => return Err(ElfError::Malformed),
    };
    let endian = match data[5] {
        elf::ELFDATA2LSB => Endianness::Little,
        elf::ELFDATA2MSB => Endianness::Big,
        _ => return Err(ElfError::Malformed),
    };
    Ok((class, endian))
}

/// A file range, as `(offset, length)`.
pub type FileRange = (u64, u64);

/// For reading a module piecemeal: where its section header table is,
/// judged from the first 64 bytes (the ELF header) alone.
pub fn section_table_range(data: &[u8]) -> Option<FileRange> {
    fn table<Elf: FileHeader<Endian = Endianness>>(
        data: &[u8],
        endian: Endianness,
    ) -> Option<FileRange> {
        let (header, _) = pod::from_bytes::<Elf>(data.get(..std::mem::size_of::<Elf>())?).ok()?;
        let count = u64::from(header.e_shnum(endian));
        let shdr_len = u64::from(header.e_shentsize(endian));
        let r = range_in_file(data, header.e_shoff(endian).into(), shdr_len * count)?;
        Some((r.offset, r.size))
    }
    match identify(data).ok()? {
        (Class::Elf32, e) => table::<FileHeader32<Endianness>>(data, e),
        (Class::Elf64, e) => table::<FileHeader64<Endianness>>(data, e),
    }
}

/// For reading a module piecemeal: where the section-name table is, judged
/// from the ELF header and the section header table.
pub fn section_names_range(data: &[u8]) -> Option<FileRange> {
    fn names<Elf: FileHeader<Endian = Endianness>>(
        data: &[u8],
        endian: Endianness,
    ) -> Option<FileRange> {
        let (header, _) = pod::from_bytes::<Elf>(data.get(..std::mem::size_of::<Elf>())?).ok()?;
        let shdr_len = std::mem::size_of::<Elf::SectionHeader>();
        if usize::from(header.e_shentsize(endian)) != shdr_len {
            return None;
        }
        let index = usize::from(header.e_shstrndx(endian));
        if index == 0 || index >= usize::from(header.e_shnum(endian)) {
            return None;
        }
        let at = usize::try_from(header.e_shoff(endian).into())
            .ok()?
            .checked_add(index * shdr_len)?;
        let (section, _) =
            pod::from_bytes::<Elf::SectionHeader>(data.get(at..at.checked_add(shdr_len)?)?).ok()?;
        let r = range_in_file(
            data,
            section.sh_offset(endian).into(),
            section.sh_size(endian).into(),
        )?;
        Some((r.offset, r.size))
    }
    match identify(data).ok()? {
        (Class::Elf32, e) => names::<FileHeader32<Endianness>>(data, e),
        (Class::Elf64, e) => names::<FileHeader64<Endianness>>(data, e),
    }
}

impl Headers {
    /// Validates the ELF header and locates the interesting sections: reads
    /// the ELF header, the section header table and the section names.
    pub fn parse(data: &[u8]) -> Result<Headers, ElfError> {
        let (class, endian) = identify(data)?;
        let (machine, sections) = match class {
            Class::Elf32 => locate_sections::<FileHeader32<Endianness>>(data, endian)?,
            Class::Elf64 => locate_sections::<FileHeader64<Endianness>>(data, endian)?,
        };
        Ok(Headers {
            class,
            endian,
            machine,
            sections,
        })
    }

    /// For reading a module piecemeal: the sections the queries of
    /// [`ElfModule`] read.
    pub fn table_ranges(&self) -> Vec<FileRange> {
        let s = &self.sections;
        [s.ksymtab_strings, s.modinfo, s.strtab, s.symtab, s.versions]
            .into_iter()
            .flatten()
            .map(|r| (r.offset, r.size))
            .collect()
    }
}

impl<'a> ElfModule<'a> {
    /// Validates the ELF header and locates the interesting sections.
    pub fn parse(data: &'a [u8]) -> Result<Self, ElfError> {
        Ok(ElfModule::with_headers(data, Headers::parse(data)?))
    }

    /// The image `data`, whose headers were parsed (from the same bytes)
    /// into `headers`.
    pub fn with_headers(data: &'a [u8], headers: Headers) -> Self {
        ElfModule { data, headers }
    }

    /// The headers, for another look at the image once more of it is loaded.
    pub fn into_headers(self) -> Headers {
        self.headers
    }

    /// For reading a module piecemeal, once the tables are in: the sections
    /// holding the CRCs of `__crc_` symbols. `None` when a symbol name could
    /// run past the end of `.strtab`, so that everything must be read.
    pub fn crc_ranges(&self) -> Option<Vec<FileRange>> {
        let (Some(strtab), Ok(symbols)) = (self.headers.sections.strtab, self.symbols()) else {
            return Some(Vec::new());
        };
        if self.slice(strtab).last() != Some(&0) {
            return None;
        }
        let mut ranges = Vec::new();
        for s in symbols.iter() {
            if u64::from(s.name) >= strtab.size {
                continue;
            }
            let Some(export) = self.crc_export_name(strtab.offset + u64::from(s.name)) else {
                continue;
            };
            if export.is_empty() {
                // kmod reads on into the following string (see Export).
                return None;
            }
            if s.shndx != SHN_ABS && s.shndx != SHN_UNDEF {
                if let Some(Some(r)) = self.headers.sections.all.get(usize::from(s.shndx)) {
                    ranges.push((r.offset, r.size));
                }
            }
        }
        ranges.sort_unstable();
        ranges.dedup();
        Some(ranges)
    }

    /// The `key=value` strings of `.modinfo`, split as libkmod splits them:
    /// empty strings are skipped, and a string without `=` is a key with an
    /// empty value.
    pub fn modinfo(&self) -> Result<Vec<ModinfoEntry<'a>>, ElfError> {
        let range = self.headers.sections.modinfo.ok_or(ElfError::NoData)?;
        let bytes = skip_zero_padding(self.slice(range));
        if bytes.len() <= 1 {
            return Ok(Vec::new());
        }
        Ok(bytes
            .split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| match s.iter().position(|&b| b == b'=') {
                Some(eq) => (&s[..eq], &s[eq + 1..]),
                None => (s, &[][..]),
            })
            .collect())
    }

    /// Exported symbols: from `__crc_*` symbols when there are any, otherwise
    /// from the names in `__ksymtab_strings` (with CRC 0).
    pub fn exports(&self) -> Result<Vec<Export<'a>>, ElfError> {
        match self.exports_from_crcs() {
            Some(exports) => Ok(exports),
            None => self.exports_from_ksymtab_strings(),
        }
    }

    /// `None` means "fall back to `__ksymtab_strings`", as libkmod does when
    /// the symbol table is missing, malformed, or has no `__crc_` symbols.
    fn exports_from_crcs(&self) -> Option<Vec<Export<'a>>> {
        const CRC_PREFIX: &[u8] = b"__crc_";
        let strtab = self.headers.sections.strtab?;
        let symbols = self.symbols().ok()?;
        if symbols.iter().any(|s| u64::from(s.name) >= strtab.size) {
            return None;
        }
        let exports: Vec<Export<'a>> = symbols
            .iter()
            .filter_map(|s| {
                let at = strtab.offset + u64::from(s.name);
                let name = self.crc_export_name(at)?;
                let name_after_empty = name
                    .is_empty()
                    .then(|| self.c_str(at + CRC_PREFIX.len() as u64 + 1));
                Some(Export {
                    name,
                    crc: self.resolve_crc(s.value, s.shndx),
                    name_after_empty,
                })
            })
            .collect();
        (!exports.is_empty()).then_some(exports)
    }

    fn exports_from_ksymtab_strings(&self) -> Result<Vec<Export<'a>>, ElfError> {
        let range = self
            .headers
            .sections
            .ksymtab_strings
            .ok_or(ElfError::NoData)?;
        let bytes = skip_zero_padding(self.slice(range));
        if bytes.len() <= 1 {
            return Ok(Vec::new());
        }
        if bytes.last() != Some(&0) {
            return Err(ElfError::Malformed);
        }
        Ok(bytes
            .split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .map(|name| Export {
                name,
                crc: 0,
                name_after_empty: None,
            })
            .collect())
    }

    /// A `__crc_` symbol's value is the CRC itself, or (when it lives in a
    /// section) the offset of a 32-bit CRC inside that section.
    fn resolve_crc(&self, value: u64, shndx: u16) -> u64 {
        if shndx == SHN_ABS || shndx == SHN_UNDEF {
            return value;
        }
        let Some(Some(section)) = self.headers.sections.all.get(usize::from(shndx)) else {
            return u64::MAX;
        };
        if section.size < 4 || value > section.size - 4 {
            return u64::MAX;
        }
        self.read_uint(section.offset + value, 4)
    }

    /// Undefined symbols in symbol-table order, then the `__versions` entries
    /// no symbol referred to (such as `module_layout`).
    pub fn imports(&self) -> Result<Vec<Import<'a>>, ElfError> {
        let strtab = self.headers.sections.strtab.ok_or(ElfError::Malformed)?;
        let symbols = self.symbols()?;
        let versions = self.versions();

        // First entry with a properly terminated name wins, as in a linear scan.
        let mut version_index: HashMap<&[u8], usize> = HashMap::with_capacity(versions.len());
        for (i, v) in versions.iter().enumerate() {
            if let Some(name) = v.name {
                version_index.entry(name).or_insert(i);
            }
        }
        let mut visited = vec![false; versions.len()];
        let skip_registers = matches!(self.headers.machine, elf::EM_SPARC | elf::EM_SPARCV9);

        let mut imports = Vec::new();
        for s in symbols.iter() {
            if s.shndx != SHN_UNDEF {
                continue;
            }
            // sparc gcc emits "undefined" global register variables.
            if skip_registers && s.info & 0xf == elf::STT_SPARC_REGISTER {
                continue;
            }
            if u64::from(s.name) >= strtab.size {
                return Err(ElfError::Malformed);
            }
            let name = self.c_str(strtab.offset + u64::from(s.name));
            if name.is_empty() {
                continue;
            }
            let crc = match version_index.get(name) {
                Some(&i) => {
                    visited[i] = true;
                    versions[i].crc
                }
                None => 0,
            };
            imports.push(Import {
                name,
                crc,
                weak: s.info >> 4 == elf::STB_WEAK,
            });
        }
        for (v, seen) in versions.iter().zip(&visited) {
            if *seen {
                continue;
            }
            let name = v.name.ok_or(ElfError::Malformed)?;
            imports.push(Import {
                name,
                crc: v.crc,
                weak: false,
            });
        }
        Ok(imports)
    }

    /// `__versions` entries; a section whose size is not a multiple of the
    /// entry size is ignored entirely.
    fn versions(&self) -> Vec<VersionEntry<'a>> {
        let Some(range) = self.headers.sections.versions else {
            return Vec::new();
        };
        if range.size % MODVERSION_LEN != 0 {
            return Vec::new();
        }
        let crc_len = match self.headers.class {
            Class::Elf32 => 4,
            Class::Elf64 => 8,
        };
        (0..range.size / MODVERSION_LEN)
            .map(|i| {
                let at = range.offset + i * MODVERSION_LEN;
                let raw = &self.data[(at + crc_len) as usize..(at + MODVERSION_LEN) as usize];
                VersionEntry {
                    crc: self.read_uint(at, crc_len as usize),
                    name: raw.iter().position(|&b| b == 0).map(|end| &raw[..end]),
                }
            })
            .collect()
    }

    /// The symbol table (its entries after the null symbol, by `iter`).
    fn symbols(&self) -> Result<SymbolTable<'a>, ElfError> {
        let range = self.headers.sections.symtab.ok_or(ElfError::Malformed)?;
        SymbolTable::new(self.slice(range), self.headers.class, self.headers.endian)
    }

    fn slice(&self, range: Range) -> &'a [u8] {
        // Ranges were validated against the file when the sections were located.
        &self.data[range.offset as usize..(range.offset + range.size) as usize]
    }

    /// The NUL-terminated string at `offset` (cut at the end of the file).
    /// For the string at `offset`: the exported name if it is `__crc_NAME`.
    /// Checks the prefix before measuring the string, as most are not.
    fn crc_export_name(&self, offset: u64) -> Option<&'a [u8]> {
        const CRC_PREFIX: &[u8] = b"__crc_";
        let rest = self.data.get(offset as usize..)?;
        if !rest.starts_with(CRC_PREFIX) {
            return None;
        }
        Some(self.c_str(offset + CRC_PREFIX.len() as u64))
    }

    fn c_str(&self, offset: u64) -> &'a [u8] {
        let rest = self.data.get(offset as usize..).unwrap_or_default();
        let end = memchr::memchr(0, rest).unwrap_or(rest.len());
        &rest[..end]
    }

    fn read_uint(&self, offset: u64, len: usize) -> u64 {
        let bytes = &self.data[offset as usize..offset as usize + len];
        let mut buf = [0u8; 8];
        match self.headers.endian {
            Endianness::Little => {
                buf[..len].copy_from_slice(bytes);
                u64::from_le_bytes(buf)
            }
            Endianness::Big => {
                buf[8 - len..].copy_from_slice(bytes);
                u64::from_be_bytes(buf)
            }
        }
    }
}

struct VersionEntry<'a> {
    crc: u64,
    /// `None` when the name fills its slot with no terminating NUL.
    name: Option<&'a [u8]>,
}

/// Drops leading NUL padding but keeps at least one byte, as libkmod does.
fn skip_zero_padding(bytes: &[u8]) -> &[u8] {
    let lead = bytes.iter().take_while(|&&b| b == 0).count();
    &bytes[lead.min(bytes.len().saturating_sub(1))..]
}

fn range_in_file(data: &[u8], offset: u64, size: u64) -> Option<Range> {
    let end = offset.checked_add(size)?;
    (end <= data.len() as u64).then_some(Range { offset, size })
}

/// Checks the ELF and section headers and records the sections depmod reads.
fn locate_sections<Elf: FileHeader<Endian = Endianness>>(
    data: &[u8],
    endian: Endianness,
) -> Result<(u16, Sections), ElfError> {
    let header_len = std::mem::size_of::<Elf>();
    if data.len() <= header_len {
        return Err(ElfError::Malformed);
    }
    let (header, _) = pod::from_bytes::<Elf>(data).map_err(|_| ElfError::Malformed)?;
    let shdr_len = std::mem::size_of::<Elf::SectionHeader>();
    if usize::from(header.e_shentsize(endian)) != shdr_len {
        return Err(ElfError::Malformed);
    }
    let count = usize::from(header.e_shnum(endian));
    let table = range_in_file(
        data,
        header.e_shoff(endian).into(),
        (shdr_len * count) as u64,
    )
    .ok_or(ElfError::Malformed)?;
    let headers: &[Elf::SectionHeader] = pod::slice_from_bytes(
        &data[table.offset as usize..(table.offset + table.size) as usize],
        count,
    )
    .map_err(|_| ElfError::Malformed)?
    .0;

    let data_range = |h: &Elf::SectionHeader| {
        range_in_file(data, h.sh_offset(endian).into(), h.sh_size(endian).into())
    };
    let shstrndx = usize::from(header.e_shstrndx(endian));
    let names = headers
        .get(shstrndx)
        .filter(|_| shstrndx != 0)
        .and_then(data_range)
        .ok_or(ElfError::Malformed)?;
    let name_bytes = &data[names.offset as usize..(names.offset + names.size) as usize];
    if name_bytes.last() != Some(&0) {
        return Err(ElfError::Malformed);
    }

    // A section counts only if its data and its name are both in bounds.
    let mut sections = Sections::default();
    sections.all.push(None);
    for h in headers.iter().skip(1) {
        let name_off = h.sh_name(endian) as usize;
        let named = name_off < name_bytes.len();
        sections.all.push(data_range(h).filter(|_| named));
    }
    let mut found = [false; 5];
    for (idx, h) in headers.iter().enumerate().skip(1) {
        let Some(range) = sections.all[idx] else {
            continue;
        };
        let rest = &name_bytes[h.sh_name(endian) as usize..];
        let name = &rest[..rest.iter().position(|&b| b == 0).unwrap_or(rest.len())];
        let (slot, seen) = match name {
            b"__ksymtab_strings" => (&mut sections.ksymtab_strings, &mut found[0]),
            b".modinfo" => (&mut sections.modinfo, &mut found[1]),
            b".strtab" => (&mut sections.strtab, &mut found[2]),
            b".symtab" => (&mut sections.symtab, &mut found[3]),
            b"__versions" => (&mut sections.versions, &mut found[4]),
            _ => continue,
        };
        // The first section of a name wins; libkmod then treats one at file
        // offset 0 as absent rather than looking further.
        if !*seen {
            *seen = true;
            *slot = (range.offset != 0).then_some(range);
        }
    }
    Ok((header.e_machine(endian), sections))
}

/// A symbol table, read in place: entries are decoded as they are visited
/// rather than copied into a list (a module has thousands of symbols and
/// depmod's queries each walk them once).
#[derive(Clone, Copy)]
enum SymbolTable<'a> {
    Elf32(&'a [object::elf::Sym32<Endianness>], Endianness),
    Elf64(&'a [object::elf::Sym64<Endianness>], Endianness),
}

impl<'a> SymbolTable<'a> {
    fn new(bytes: &'a [u8], class: Class, endian: Endianness) -> Result<Self, ElfError> {
        fn entries<T: pod::Pod>(bytes: &[u8]) -> Result<&[T], ElfError> {
            let len = std::mem::size_of::<T>();
            if bytes.len() % len != 0 {
                return Err(ElfError::Malformed);
            }
            pod::slice_from_bytes::<T>(bytes, bytes.len() / len)
                .map(|(entries, _)| entries)
                .map_err(|_| ElfError::Malformed)
        }
        Ok(match class {
            Class::Elf32 => SymbolTable::Elf32(entries(bytes)?, endian),
            Class::Elf64 => SymbolTable::Elf64(entries(bytes)?, endian),
        })
    }

    /// Every entry after the null symbol, in table order.
    fn iter(self) -> impl Iterator<Item = SymFields> + 'a {
        fn fields<S: Sym<Endian = Endianness>>(s: &S, endian: Endianness) -> SymFields {
            SymFields {
                name: s.st_name(endian),
                value: s.st_value(endian).into(),
                info: s.st_info(),
                shndx: s.st_shndx(endian),
            }
        }
        let len = match self {
            SymbolTable::Elf32(t, _) => t.len(),
            SymbolTable::Elf64(t, _) => t.len(),
        };
        (1..len).map(move |i| match self {
            SymbolTable::Elf32(t, e) => fields(&t[i], e),
            SymbolTable::Elf64(t, e) => fields(&t[i], e),
        })
    }
}

#[cfg(test)]
mod tests;
