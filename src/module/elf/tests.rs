//! The reader on ELF images built byte by byte here, in all four layouts
//! (ELF32/ELF64, little/big endian), one kmod quirk per test. The images are
//! written by hand rather than by a linker or the `object` writer so that
//! each can break exactly one rule libkmod checks.

use super::*;

#[derive(Clone, Copy, Debug)]
struct Layout {
    elf64: bool,
    big: bool,
}

const LAYOUTS: [Layout; 4] = [
    Layout {
        elf64: false,
        big: false,
    },
    Layout {
        elf64: false,
        big: true,
    },
    Layout {
        elf64: true,
        big: false,
    },
    Layout {
        elf64: true,
        big: true,
    },
];

impl Layout {
    fn put(self, out: &mut Vec<u8>, value: u64, len: usize) {
        let bytes = if self.big {
            value.to_be_bytes()[8 - len..].to_vec()
        } else {
            value.to_le_bytes()[..len].to_vec()
        };
        out.extend_from_slice(&bytes);
    }
    /// An address-sized field: 4 bytes in ELF32, 8 in ELF64.
    fn word(self) -> usize {
        if self.elf64 {
            8
        } else {
            4
        }
    }
    fn header_len(self) -> usize {
        if self.elf64 {
            64
        } else {
            52
        }
    }
    fn shdr_len(self) -> usize {
        if self.elf64 {
            64
        } else {
            40
        }
    }
    /// The `__versions` name field: 64 bytes less the CRC word.
    fn version_name_len(self) -> usize {
        64 - self.word()
    }
}

/// One section of an image; `None` fields are filled in truthfully.
#[derive(Clone, Default)]
struct Section {
    name: Vec<u8>,
    data: Vec<u8>,
    offset: Option<u64>,
    size: Option<u64>,
    name_offset: Option<u32>,
}

fn section(name: &str, data: impl Into<Vec<u8>>) -> Section {
    Section {
        name: name.as_bytes().to_vec(),
        data: data.into(),
        ..Section::default()
    }
}

/// An ELF relocatable image. Section `i` of `sections` gets index `i + 1`;
/// the section-name table comes last.
#[derive(Clone)]
struct Image {
    layout: Layout,
    machine: u16,
    sections: Vec<Section>,
    shentsize: Option<u16>,
    shstrndx: Option<u16>,
    shoff: Option<u64>,
    /// Replaces the generated section-name table.
    names: Option<Vec<u8>>,
}

struct Built {
    bytes: Vec<u8>,
    /// File offset of each section's data, by section index.
    offsets: Vec<u64>,
    shoff: u64,
    shnum: u64,
    names_offset: u64,
    names_len: u64,
}

impl Image {
    fn new(layout: Layout, sections: Vec<Section>) -> Image {
        Image {
            layout,
            machine: elf::EM_X86_64,
            sections,
            shentsize: None,
            shstrndx: None,
            shoff: None,
            names: None,
        }
    }

    fn build(&self) -> Built {
        let l = self.layout;
        let mut out = vec![0u8; l.header_len()];
        let align = |out: &mut Vec<u8>| {
            while out.len() % 8 != 0 {
                out.push(0);
            }
        };
        let mut names = vec![0u8];
        let mut name_offsets = Vec::new();
        for s in &self.sections {
            name_offsets.push(names.len() as u32);
            names.extend_from_slice(&s.name);
            names.push(0);
        }
        let shstrtab_name = names.len() as u32;
        names.extend_from_slice(b".shstrtab\0");
        let names = self.names.clone().unwrap_or(names);

        let mut offsets = vec![0u64];
        for s in &self.sections {
            align(&mut out);
            offsets.push(out.len() as u64);
            out.extend_from_slice(&s.data);
        }
        align(&mut out);
        let names_offset = out.len() as u64;
        out.extend_from_slice(&names);
        offsets.push(names_offset);
        align(&mut out);

        let shoff = out.len() as u64;
        let shnum = self.sections.len() as u64 + 2;
        let mut headers: Vec<(u32, u64, u64)> = vec![(0, 0, 0)];
        for (i, s) in self.sections.iter().enumerate() {
            headers.push((
                s.name_offset.unwrap_or(name_offsets[i]),
                s.offset.unwrap_or(offsets[i + 1]),
                s.size.unwrap_or(s.data.len() as u64),
            ));
        }
        headers.push((shstrtab_name, names_offset, names.len() as u64));
        let w = l.word();
        for (name, offset, size) in headers {
            l.put(&mut out, u64::from(name), 4);
            l.put(&mut out, 1, 4); // sh_type: PROGBITS (libkmod ignores it)
            l.put(&mut out, 0, w); // sh_flags
            l.put(&mut out, 0, w); // sh_addr
            l.put(&mut out, offset, w);
            l.put(&mut out, size, w);
            l.put(&mut out, 0, 4); // sh_link
            l.put(&mut out, 0, 4); // sh_info
            l.put(&mut out, 1, w); // sh_addralign
            l.put(&mut out, 0, w); // sh_entsize
        }

        let mut h = Vec::new();
        h.extend_from_slice(&elf::ELFMAG);
        h.push(if l.elf64 {
            elf::ELFCLASS64
        } else {
            elf::ELFCLASS32
        });
        h.push(if l.big {
            elf::ELFDATA2MSB
        } else {
            elf::ELFDATA2LSB
        });
        h.push(1); // EI_VERSION
        h.resize(16, 0);
        l.put(&mut h, u64::from(elf::ET_REL), 2);
        l.put(&mut h, u64::from(self.machine), 2);
        l.put(&mut h, 1, 4); // e_version
        l.put(&mut h, 0, w); // e_entry
        l.put(&mut h, 0, w); // e_phoff
        l.put(&mut h, self.shoff.unwrap_or(shoff), w);
        l.put(&mut h, 0, 4); // e_flags
        l.put(&mut h, l.header_len() as u64, 2);
        l.put(&mut h, 0, 2); // e_phentsize
        l.put(&mut h, 0, 2); // e_phnum
        l.put(
            &mut h,
            u64::from(self.shentsize.unwrap_or(l.shdr_len() as u16)),
            2,
        );
        l.put(&mut h, shnum, 2);
        l.put(
            &mut h,
            u64::from(self.shstrndx.unwrap_or(shnum as u16 - 1)),
            2,
        );
        assert_eq!(h.len(), l.header_len());
        out[..h.len()].copy_from_slice(&h);
        Built {
            bytes: out,
            offsets,
            shoff,
            shnum,
            names_offset,
            names_len: names.len() as u64,
        }
    }
}

/// A `.strtab` under construction.
struct Strtab(Vec<u8>);

impl Strtab {
    fn new() -> Strtab {
        Strtab(vec![0])
    }
    fn add(&mut self, name: &str) -> u32 {
        let at = self.0.len() as u32;
        self.0.extend_from_slice(name.as_bytes());
        self.0.push(0);
        at
    }
}

#[derive(Clone, Copy)]
struct Symbol {
    name: u32,
    value: u64,
    info: u8,
    shndx: u16,
}

const GLOBAL: u8 = elf::STB_GLOBAL << 4;
const WEAK: u8 = elf::STB_WEAK << 4;
const ABS: u16 = elf::SHN_ABS;
const UNDEF: u16 = elf::SHN_UNDEF;

/// A `.symtab`: the null symbol, then `symbols`.
fn symtab(l: Layout, symbols: &[Symbol]) -> Vec<u8> {
    let mut out = Vec::new();
    let null = Symbol {
        name: 0,
        value: 0,
        info: 0,
        shndx: 0,
    };
    for s in std::iter::once(&null).chain(symbols) {
        l.put(&mut out, u64::from(s.name), 4);
        if l.elf64 {
            out.push(s.info);
            out.push(0); // st_other
            l.put(&mut out, u64::from(s.shndx), 2);
            l.put(&mut out, s.value, 8);
            l.put(&mut out, 0, 8); // st_size
        } else {
            l.put(&mut out, s.value, 4);
            l.put(&mut out, 0, 4); // st_size
            out.push(s.info);
            out.push(0);
            l.put(&mut out, u64::from(s.shndx), 2);
        }
    }
    out
}

/// A `__versions` table; a name that fills its field gets no NUL.
fn versions(l: Layout, entries: &[(u64, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (crc, name) in entries {
        l.put(&mut out, *crc, l.word());
        let mut field = name.to_vec();
        field.resize(l.version_name_len(), 0);
        out.extend_from_slice(&field);
    }
    out
}

/// A module whose symbols are `(name, value, info, shndx)`, with `sections`
/// first (so `sections[i]` has index `i + 1`), then `.symtab` and `.strtab`.
fn module(l: Layout, symbols: &[(&str, u64, u8, u16)], sections: Vec<Section>) -> Image {
    let mut strtab = Strtab::new();
    let symbols: Vec<Symbol> = symbols
        .iter()
        .map(|&(name, value, info, shndx)| Symbol {
            name: strtab.add(name),
            value,
            info,
            shndx,
        })
        .collect();
    let mut all = sections;
    all.push(section(".symtab", symtab(l, &symbols)));
    all.push(section(".strtab", strtab.0));
    Image::new(l, all)
}

fn parse(bytes: &[u8]) -> ElfModule<'_> {
    ElfModule::parse(bytes).expect("a valid image")
}

fn names<'a>(exports: &[Export<'a>]) -> Vec<&'a [u8]> {
    exports.iter().map(|e| e.name).collect()
}

/// `(name, crc, weak)` of each import.
fn imports(m: &ElfModule<'_>) -> Vec<(String, u64, bool)> {
    m.imports()
        .expect("imports")
        .into_iter()
        .map(|i| (String::from_utf8_lossy(i.name).into_owned(), i.crc, i.weak))
        .collect()
}

fn modinfo_section(data: &[u8]) -> Section {
    section(".modinfo", data)
}

// ---------------------------------------------------------------------------
// The ELF header and the section table.

#[test]
fn short_or_foreign_files_are_not_elf() {
    assert_eq!(ElfModule::parse(b"").err(), Some(ElfError::NotElf));
    // libkmod wants more than the 16 bytes of e_ident.
    let mut ident = elf::ELFMAG.to_vec();
    ident.extend_from_slice(&[elf::ELFCLASS64, elf::ELFDATA2LSB]);
    ident.resize(16, 0);
    assert_eq!(ElfModule::parse(&ident).err(), Some(ElfError::NotElf));
    let mut not_elf = module(LAYOUTS[0], &[], vec![]).build().bytes;
    not_elf[1] = b'X';
    assert_eq!(ElfModule::parse(&not_elf).err(), Some(ElfError::NotElf));
}

#[test]
fn unknown_class_or_byte_order_is_malformed() {
    for l in LAYOUTS {
        let good = module(l, &[], vec![]).build().bytes;
        for (at, value) in [(4, 0), (4, 3), (5, 0), (5, 3)] {
            let mut bytes = good.clone();
            bytes[at] = value;
            assert_eq!(
                ElfModule::parse(&bytes).err(),
                Some(ElfError::Malformed),
                "{l:?}: e_ident[{at}] = {value}"
            );
        }
    }
}

#[test]
fn a_file_no_longer_than_its_elf_header_is_malformed() {
    for l in LAYOUTS {
        let bytes = module(l, &[], vec![]).build().bytes;
        assert_eq!(
            ElfModule::parse(&bytes[..l.header_len()]).err(),
            Some(ElfError::Malformed),
            "{l:?}"
        );
        // The section-table helper needs the whole header, no more.
        assert_eq!(section_table_range(&bytes[..l.header_len() - 1]), None);
    }
}

#[test]
fn inconsistent_section_tables_are_malformed() {
    for l in LAYOUTS {
        let base = module(l, &[], vec![modinfo_section(b"license=GPL\0")]);
        let built = base.build();
        let mut cases: Vec<(&str, Image)> = Vec::new();
        let mut wrong_entry_size = base.clone();
        wrong_entry_size.shentsize = Some(l.shdr_len() as u16 + 4);
        cases.push(("e_shentsize", wrong_entry_size));
        let mut beyond = base.clone();
        beyond.shoff = Some(built.bytes.len() as u64 - 8);
        cases.push(("e_shoff past the end", beyond));
        let mut no_names = base.clone();
        no_names.shstrndx = Some(0);
        cases.push(("e_shstrndx 0", no_names));
        let mut names_past_table = base.clone();
        names_past_table.shstrndx = Some(built.shnum as u16);
        cases.push(("e_shstrndx past the table", names_past_table));
        let mut unterminated = base.clone();
        unterminated.names = Some(b"\0.modinfo\0.symtab\0.strtab\0.shstrtab".to_vec());
        cases.push(("section names without a final NUL", unterminated));
        let mut empty_names = base.clone();
        empty_names.names = Some(Vec::new());
        cases.push(("empty section-name table", empty_names));
        let mut names_outside = base.clone();
        let last = names_outside.sections.len();
        names_outside.sections[last - 1].offset = Some(built.bytes.len() as u64);
        names_outside.shstrndx = Some(last as u16);
        cases.push(("section-name table outside the file", names_outside));
        for (what, image) in cases {
            assert_eq!(
                ElfModule::parse(&image.build().bytes).err(),
                Some(ElfError::Malformed),
                "{l:?}: {what}"
            );
        }
        assert!(ElfModule::parse(&built.bytes).is_ok(), "{l:?}");
    }
}

#[test]
fn piecemeal_ranges_point_at_the_tables() {
    for l in LAYOUTS {
        let image = module(
            l,
            &[("__crc_foo", 0, GLOBAL, 1), ("bar", 0, GLOBAL, UNDEF)],
            vec![
                section("__kcrctab", 0x1234_5678u32.to_le_bytes()),
                modinfo_section(b"license=GPL\0"),
                section("__versions", versions(l, &[(7, b"bar")])),
                section("__ksymtab_strings", b"foo\0".to_vec()),
                section(".text", vec![0xc3; 32]),
            ],
        );
        let built = image.build();
        let shdr = l.shdr_len() as u64;
        assert_eq!(
            section_table_range(&built.bytes),
            Some((built.shoff, built.shnum * shdr)),
            "{l:?}"
        );
        assert_eq!(
            section_names_range(&built.bytes),
            Some((built.names_offset, built.names_len)),
            "{l:?}"
        );
        let m = parse(&built.bytes);
        let size = |i: usize| {
            if i <= image.sections.len() {
                image.sections[i - 1].data.len() as u64
            } else {
                built.names_len
            }
        };
        let at = |i: usize| (built.offsets[i], size(i));
        let mut tables = Headers::parse(&built.bytes).unwrap().table_ranges();
        tables.sort_unstable();
        // .modinfo, __versions, __ksymtab_strings, .symtab, .strtab; not .text.
        let mut want = vec![at(2), at(3), at(4), at(6), at(7)];
        want.sort_unstable();
        assert_eq!(tables, want, "{l:?}");
        assert_eq!(m.crc_ranges(), Some(vec![at(1)]), "{l:?}");
    }
}

// ---------------------------------------------------------------------------
// Finding sections by name.

#[test]
fn a_section_at_file_offset_zero_is_absent() {
    // libkmod keeps 0 as "not found", so a section whose data starts at
    // offset 0 (on top of the ELF header) is treated as missing.
    for l in LAYOUTS {
        let at_zero = |name: &str, data: Vec<u8>| Section {
            offset: Some(0),
            size: Some(data.len().min(l.header_len()) as u64),
            ..section(name, data)
        };
        let bytes = module(l, &[], vec![at_zero(".modinfo", b"a=b\0".to_vec())])
            .build()
            .bytes;
        assert_eq!(parse(&bytes).modinfo(), Err(ElfError::NoData), "{l:?}");

        let bytes = module(l, &[], vec![at_zero("__ksymtab_strings", b"x\0".to_vec())])
            .build()
            .bytes;
        assert_eq!(parse(&bytes).exports(), Err(ElfError::NoData), "{l:?}");

        // Versions at offset 0: the import keeps CRC 0 and nothing is added.
        let v = versions(l, &[(5, b"needed")]);
        let image = module(
            l,
            &[("needed", 0, GLOBAL, UNDEF)],
            vec![Section {
                offset: Some(0),
                size: Some(64),
                ..section("__versions", v)
            }],
        );
        let bytes = image.build().bytes;
        assert_eq!(
            imports(&parse(&bytes)),
            [("needed".to_string(), 0, false)],
            "{l:?}"
        );

        // A symbol table at offset 0: no imports, and exports fall back.
        let mut image = module(l, &[("needed", 0, GLOBAL, UNDEF)], vec![]);
        image
            .sections
            .push(section("__ksymtab_strings", b"fallback\0".to_vec()));
        image.sections[0].offset = Some(0);
        let bytes = image.build().bytes;
        let m = parse(&bytes);
        assert_eq!(m.imports().err(), Some(ElfError::Malformed), "{l:?}");
        assert_eq!(
            names(&m.exports().unwrap()),
            [b"fallback".as_slice()],
            "{l:?}"
        );
    }
}

#[test]
fn the_first_section_of_a_name_wins_even_when_it_is_absent() {
    for l in LAYOUTS {
        let bytes = module(
            l,
            &[],
            vec![
                Section {
                    offset: Some(0),
                    size: Some(4),
                    ..modinfo_section(b"first=1\0")
                },
                modinfo_section(b"second=2\0"),
            ],
        )
        .build()
        .bytes;
        assert_eq!(parse(&bytes).modinfo(), Err(ElfError::NoData), "{l:?}");

        let bytes = module(
            l,
            &[],
            vec![
                modinfo_section(b"first=1\0"),
                modinfo_section(b"second=2\0"),
            ],
        )
        .build()
        .bytes;
        assert_eq!(
            parse(&bytes).modinfo(),
            Ok(vec![(b"first".as_slice(), b"1".as_slice())]),
            "{l:?}"
        );
    }
}

#[test]
fn sections_out_of_bounds_or_with_bad_names_are_skipped() {
    // Unlike a section at offset 0, a section libkmod cannot read at all is
    // passed over, and a later one of the same name is used.
    for l in LAYOUTS {
        let image = module(
            l,
            &[],
            vec![
                Section {
                    size: Some(1 << 20),
                    ..modinfo_section(b"beyond=1\0")
                },
                Section {
                    offset: Some(u64::MAX - 2),
                    ..modinfo_section(b"wraps=1\0")
                },
                Section {
                    name_offset: Some(10_000),
                    ..modinfo_section(b"unnamed=1\0")
                },
                modinfo_section(b"good=1\0"),
            ],
        );
        let bytes = image.build().bytes;
        assert_eq!(
            parse(&bytes).modinfo(),
            Ok(vec![(b"good".as_slice(), b"1".as_slice())]),
            "{l:?}"
        );
    }
}

#[test]
fn sections_are_matched_by_their_whole_name() {
    for l in LAYOUTS {
        let mut bytes = module(
            l,
            &[],
            vec![
                modinfo_section(b"x=prefix\0"),
                section(".modinfo.extra", b"x=longer\0".to_vec()),
            ],
        )
        .build()
        .bytes;
        // Rename the first to ".modinf": a prefix of the wanted name.
        let at = bytes
            .windows(9)
            .position(|w| w == b".modinfo\0")
            .expect("name");
        bytes[at + 7] = 0;
        assert_eq!(parse(&bytes).modinfo(), Err(ElfError::NoData), "{l:?}");
    }
}

// ---------------------------------------------------------------------------
// .modinfo

#[test]
fn modinfo_is_split_as_libkmod_splits_it() {
    for l in LAYOUTS {
        let bytes = module(
            l,
            &[],
            vec![modinfo_section(
                b"\0\0\0alias=pci:v*\0\0\0softdep=pre: a\0keyonly\0a=b=c\0=v\0weakdep=last",
            )],
        )
        .build()
        .bytes;
        let got = parse(&bytes).modinfo().unwrap();
        let want: Vec<(&[u8], &[u8])> = vec![
            (b"alias", b"pci:v*"),
            (b"softdep", b"pre: a"),
            // No `=`: the whole string is the key and the value is empty.
            (b"keyonly", b""),
            (b"a", b"b=c"),
            (b"", b"v"),
            // The last string needs no NUL.
            (b"weakdep", b"last"),
        ];
        assert_eq!(got, want, "{l:?}");
    }
}

#[test]
fn modinfo_of_padding_or_one_byte_is_empty() {
    for l in LAYOUTS {
        for data in [&b""[..], b"\0", b"\0\0\0\0", b"x", b"\0\0x"] {
            let bytes = module(l, &[], vec![modinfo_section(data)]).build().bytes;
            assert_eq!(
                parse(&bytes).modinfo(),
                Ok(vec![]),
                "{l:?}: .modinfo {data:?}"
            );
        }
        let bytes = module(l, &[], vec![]).build().bytes;
        assert_eq!(parse(&bytes).modinfo(), Err(ElfError::NoData));
    }
}

// ---------------------------------------------------------------------------
// Exports.

#[test]
fn crc_symbols_give_exports_in_each_encoding() {
    for l in LAYOUTS {
        let mut kcrctab = Vec::new();
        l.put(&mut kcrctab, 0xdead_beef, 4);
        l.put(&mut kcrctab, 0x0bad_cafe, 4);
        let mut rodata = vec![0xee; 6];
        l.put(&mut rodata, 0x1357_9bdf, 4);
        let abs = if l.elf64 { 0x1_2345_6789 } else { 0x2345_6789 };
        let image = module(
            l,
            &[
                ("__crc_absolute", abs, GLOBAL, ABS),
                ("__crc_undefined", 0x77, GLOBAL, UNDEF),
                ("__crc_first", 0, GLOBAL, 1),
                ("__crc_second", 4, GLOBAL, 1),
                ("__crc_unaligned", 6, GLOBAL, 2),
                // The last whole word of the section is fine, one past is not.
                ("__crc_too_far", 5, GLOBAL, 1),
                ("__crc_tiny", 0, GLOBAL, 3),
                ("__crc_no_section", 0, GLOBAL, 50),
                ("local_symbol", 0, GLOBAL, 1),
                ("__crc", 0, GLOBAL, ABS),
            ],
            vec![
                section("__kcrctab", kcrctab),
                section(".rodata", rodata),
                section(".tiny", vec![1, 2, 3]),
                // Ignored: only __crc_ symbols count when there are any.
                section("__ksymtab_strings", b"absolute\0other\0".to_vec()),
            ],
        );
        let bytes = image.build().bytes;
        let exports = parse(&bytes).exports().unwrap();
        let got: Vec<(&[u8], u64)> = exports.iter().map(|e| (e.name, e.crc)).collect();
        let want: Vec<(&[u8], u64)> = vec![
            (b"absolute", abs),
            (b"undefined", 0x77),
            (b"first", 0xdead_beef),
            (b"second", 0x0bad_cafe),
            (b"unaligned", 0x1357_9bdf),
            (b"too_far", u64::MAX),
            (b"tiny", u64::MAX),
            (b"no_section", u64::MAX),
        ];
        assert_eq!(got, want, "{l:?}");
        assert!(exports.iter().all(|e| e.name_after_empty.is_none()));
    }
}

#[test]
fn a_crc_may_live_in_a_section_at_offset_zero() {
    // The offset-0 rule is for the sections found by name; CRC sections are
    // looked up by index and read wherever they are.
    for l in LAYOUTS {
        let image = module(
            l,
            &[("__crc_in_header", 0, GLOBAL, 1)],
            vec![Section {
                offset: Some(0),
                size: Some(8),
                ..section("__kcrctab", vec![0; 8])
            }],
        );
        let bytes = image.build().bytes;
        let mut want = Vec::new();
        want.extend_from_slice(&bytes[..4]);
        let want = if l.big {
            u32::from_be_bytes(want.try_into().unwrap())
        } else {
            u32::from_le_bytes(want.try_into().unwrap())
        };
        let exports = parse(&bytes).exports().unwrap();
        assert_eq!(exports[0].crc, u64::from(want), "{l:?}");
    }
}

#[test]
fn an_empty_crc_name_keeps_the_string_after_it() {
    // kmod strips its (NUL) symbol prefix from the empty name and so reads
    // on into the next string of .strtab; the reader keeps that string.
    for l in LAYOUTS {
        let image = module(
            l,
            &[("__crc_", 9, GLOBAL, ABS), ("following", 0, GLOBAL, UNDEF)],
            vec![],
        );
        let bytes = image.build().bytes;
        let m = parse(&bytes);
        let exports = m.exports().unwrap();
        assert_eq!(
            exports,
            [Export {
                name: b"",
                crc: 9,
                name_after_empty: Some(b"following"),
            }],
            "{l:?}"
        );
        // The piecemeal reader cannot know how far that string runs.
        assert_eq!(m.crc_ranges(), None, "{l:?}");
    }
}

#[test]
fn exports_fall_back_to_ksymtab_strings() {
    for l in LAYOUTS {
        let strings = section("__ksymtab_strings", b"\0\0first\0\0second\0".to_vec());
        // No __crc_ symbols at all.
        let bytes = module(l, &[("plain", 0, GLOBAL, 1)], vec![strings.clone()])
            .build()
            .bytes;
        let exports = parse(&bytes).exports().unwrap();
        assert_eq!(names(&exports), [b"first".as_slice(), b"second"], "{l:?}");
        assert!(exports.iter().all(|e| e.crc == 0));

        // A symbol name outside .strtab, on any symbol, disables the whole
        // symbol table, good __crc_ symbols included.
        let mut image = module(
            l,
            &[("__crc_x", 1, GLOBAL, ABS), ("broken", 0, GLOBAL, UNDEF)],
            vec![strings.clone()],
        );
        let symtab = &mut image.sections[1].data;
        let name_at = if l.elf64 { 2 * 24 } else { 2 * 16 };
        let mut name = Vec::new();
        l.put(&mut name, 1000, 4);
        symtab[name_at..name_at + 4].copy_from_slice(&name);
        let bytes = image.build().bytes;
        assert_eq!(
            names(&parse(&bytes).exports().unwrap()),
            [b"first".as_slice(), b"second"],
            "{l:?}"
        );

        // A symbol table of a size that is not a whole number of symbols.
        let mut image = module(l, &[("__crc_x", 1, GLOBAL, ABS)], vec![strings.clone()]);
        image.sections[1].data.push(0);
        let bytes = image.build().bytes;
        assert_eq!(
            names(&parse(&bytes).exports().unwrap()),
            [b"first".as_slice(), b"second"],
            "{l:?}"
        );

        // Without a .strtab.
        let mut image = module(l, &[("__crc_x", 1, GLOBAL, ABS)], vec![strings]);
        image.sections[2].name = b".strtab_renamed".to_vec();
        let bytes = image.build().bytes;
        assert_eq!(
            names(&parse(&bytes).exports().unwrap()),
            [b"first".as_slice(), b"second"],
            "{l:?}"
        );
    }
}

#[test]
fn ksymtab_strings_must_end_with_a_nul() {
    for l in LAYOUTS {
        let bytes = module(l, &[], vec![section("__ksymtab_strings", b"a\0b".to_vec())])
            .build()
            .bytes;
        assert_eq!(parse(&bytes).exports(), Err(ElfError::Malformed), "{l:?}");
        // Padding alone, or a single byte, is an empty list.
        for data in [&b"\0\0\0"[..], b"z"] {
            let bytes = module(l, &[], vec![section("__ksymtab_strings", data)])
                .build()
                .bytes;
            assert_eq!(parse(&bytes).exports(), Ok(vec![]), "{l:?}: {data:?}");
        }
        let bytes = module(l, &[], vec![]).build().bytes;
        assert_eq!(parse(&bytes).exports(), Err(ElfError::NoData), "{l:?}");
    }
}

// ---------------------------------------------------------------------------
// Imports.

#[test]
fn imports_are_undefined_symbols_then_unused_versions() {
    for l in LAYOUTS {
        let v = versions(
            l,
            &[
                (0x11, b"module_layout"),
                (0x22, b"strong"),
                (0x33, b"weak_one"),
                // A second entry of a name is never matched, so it is added.
                (0x44, b"strong"),
            ],
        );
        let image = module(
            l,
            &[
                ("strong", 0, GLOBAL, UNDEF),
                ("defined_here", 0, GLOBAL, 1),
                ("weak_one", 0, WEAK, UNDEF),
                ("unversioned", 0, GLOBAL | elf::STT_FUNC, UNDEF),
                ("", 0, GLOBAL, UNDEF),
                ("local_undefined", 0, 0, UNDEF),
            ],
            vec![section("__versions", v)],
        );
        let bytes = image.build().bytes;
        let want = [
            ("strong".to_string(), 0x22, false),
            ("weak_one".to_string(), 0x33, true),
            ("unversioned".to_string(), 0, false),
            ("local_undefined".to_string(), 0, false),
            ("module_layout".to_string(), 0x11, false),
            ("strong".to_string(), 0x44, false),
        ];
        assert_eq!(imports(&parse(&bytes)), want, "{l:?}");
    }
}

#[test]
fn versions_entries_follow_the_class() {
    // ELF32: a 4-byte CRC and a 60-byte name; ELF64: 8 and 56.
    for l in LAYOUTS {
        let crc = if l.elf64 {
            0x0102_0304_0506_0708
        } else {
            0x0506_0708
        };
        let name56 = "n".repeat(56);
        let v = versions(l, &[(crc, b"wide"), (3, name56.as_bytes())]);
        let image = module(
            l,
            &[("wide", 0, GLOBAL, UNDEF), (&name56, 0, GLOBAL, UNDEF)],
            vec![section("__versions", v)],
        );
        let bytes = image.build().bytes;
        let m = parse(&bytes);
        if l.elf64 {
            // 56 bytes fill the ELF64 name field with no NUL: that entry
            // matches nothing, and as an unused entry it spoils them all.
            assert_eq!(m.imports().err(), Some(ElfError::Malformed), "{l:?}");
        } else {
            assert_eq!(
                imports(&m),
                [("wide".to_string(), crc, false), (name56.clone(), 3, false)],
                "{l:?}"
            );
        }
    }
}

#[test]
fn versions_of_an_odd_size_are_ignored() {
    for l in LAYOUTS {
        let mut v = versions(l, &[(0x22, b"strong"), (0x11, b"module_layout")]);
        v.push(0);
        let image = module(
            l,
            &[("strong", 0, GLOBAL, UNDEF)],
            vec![section("__versions", v)],
        );
        let bytes = image.build().bytes;
        assert_eq!(
            imports(&parse(&bytes)),
            [("strong".to_string(), 0, false)],
            "{l:?}"
        );
    }
}

#[test]
fn ppc64_dot_symbols_keep_their_dot() {
    // ELFv1 function calls are to `.foo`; __versions names `foo`. libkmod
    // compares them as they are, so the CRC comes with the unused entry;
    // depmod's lookup drops the dot later.
    for l in LAYOUTS {
        let v = versions(l, &[(0x99, b"foo")]);
        let mut image = module(
            l,
            &[(".foo", 0, GLOBAL, UNDEF)],
            vec![section("__versions", v)],
        );
        image.machine = elf::EM_PPC64;
        let bytes = image.build().bytes;
        assert_eq!(
            imports(&parse(&bytes)),
            [
                (".foo".to_string(), 0, false),
                ("foo".to_string(), 0x99, false)
            ],
            "{l:?}"
        );
    }
}

#[test]
fn sparc_register_symbols_are_not_imports() {
    let register = elf::STT_SPARC_REGISTER | GLOBAL;
    for l in LAYOUTS {
        for (machine, skipped) in [
            (elf::EM_SPARC, true),
            (elf::EM_SPARCV9, true),
            // libkmod checks these two machines only.
            (elf::EM_SPARC32PLUS, false),
            (elf::EM_X86_64, false),
        ] {
            let mut image = module(
                l,
                &[("%g7", 0, register, UNDEF), ("real", 0, GLOBAL, UNDEF)],
                vec![],
            );
            image.machine = machine;
            let bytes = image.build().bytes;
            let got = imports(&parse(&bytes));
            let mut want = vec![("real".to_string(), 0, false)];
            if !skipped {
                want.insert(0, ("%g7".to_string(), 0, false));
            }
            assert_eq!(got, want, "{l:?} machine {machine}");
        }

        // The register check comes before the name is looked at: a register
        // symbol with a broken name is skipped, anything else is an error.
        for (machine, ok) in [(elf::EM_SPARCV9, true), (elf::EM_X86_64, false)] {
            let mut image = module(l, &[("%g7", 0, register, UNDEF)], vec![]);
            image.machine = machine;
            let symtab = &mut image.sections[0].data;
            let name_at = if l.elf64 { 24 } else { 16 };
            let mut name = Vec::new();
            l.put(&mut name, 5000, 4);
            symtab[name_at..name_at + 4].copy_from_slice(&name);
            let bytes = image.build().bytes;
            assert_eq!(
                parse(&bytes).imports().is_ok(),
                ok,
                "{l:?} machine {machine}"
            );
        }
    }
}

#[test]
fn imports_need_a_whole_symbol_table_and_a_string_table() {
    for l in LAYOUTS {
        let mut image = module(l, &[("x", 0, GLOBAL, UNDEF)], vec![]);
        image.sections[0].data.pop();
        let bytes = image.build().bytes;
        assert_eq!(parse(&bytes).imports().err(), Some(ElfError::Malformed));

        let mut image = module(l, &[("x", 0, GLOBAL, UNDEF)], vec![]);
        image.sections[1].name = b".strtab2".to_vec();
        let bytes = image.build().bytes;
        assert_eq!(parse(&bytes).imports().err(), Some(ElfError::Malformed));

        let mut image = module(l, &[("x", 0, GLOBAL, UNDEF)], vec![]);
        image.sections[0].name = b".dynsym".to_vec();
        let bytes = image.build().bytes;
        assert_eq!(parse(&bytes).imports().err(), Some(ElfError::Malformed));

        // An empty symbol table (not even the null symbol) has no imports.
        let mut image = module(l, &[], vec![]);
        image.sections[0].data.clear();
        let bytes = image.build().bytes;
        assert_eq!(imports(&parse(&bytes)), []);
    }
}

#[test]
fn crc_ranges_need_a_terminated_string_table() {
    for l in LAYOUTS {
        let mut image = module(
            l,
            &[("__crc_a", 0, GLOBAL, 1)],
            vec![section("__kcrctab", vec![0; 4])],
        );
        let strtab = &mut image.sections[2].data;
        strtab.push(b'z');
        let bytes = image.build().bytes;
        assert_eq!(parse(&bytes).crc_ranges(), None, "{l:?}");
    }
}
