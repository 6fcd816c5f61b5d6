//! Module metadata: what depmod learns from each module file.

pub mod decompress;
pub mod elf;

use decompress::DecompressError;
use elf::{ElfError, ElfModule};

/// Why a module's symbols could not be read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    Io(String),
    #[error("file is too short to be a module")]
    TooShort,
    #[error(transparent)]
    Decompress(#[from] DecompressError),
    #[error(transparent)]
    Elf(#[from] ElfError),
}

/// An exported symbol, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    pub name: Vec<u8>,
    pub crc: u64,
    /// See [`elf::Export::name_after_empty`].
    pub name_after_empty: Option<Vec<u8>>,
}

/// A needed symbol, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    pub name: Vec<u8>,
    pub crc: u64,
    pub weak: bool,
}

/// Everything depmod uses from one module, extracted so the (possibly large,
/// decompressed) image can be dropped right away.
#[derive(Debug, Clone, Default)]
pub struct ModuleMeta {
    /// `Err` is reported unless it only means "no export table".
    pub exports: Option<Result<Vec<Export>, LoadError>>,
    pub aliases: Vec<Vec<u8>>,
    pub softdeps: Vec<Vec<u8>>,
    pub weakdeps: Vec<Vec<u8>>,
    /// `None` when the symbol table could not be read: the module then has
    /// no dependencies, as with kmod.
    pub imports: Option<Vec<Import>>,
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
            Err(e) => return ModuleMeta::failed(e.into()),
        };
        match ElfModule::parse(&image) {
            Ok(elf) => ModuleMeta::from_elf(&elf),
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
                _ => continue,
            };
            list.push(value.to_vec());
        }
        meta.imports = elf.imports().ok().map(|list| {
            list.into_iter()
                .map(|i| Import {
                    name: i.name.to_vec(),
                    crc: i.crc,
                    weak: i.weak,
                })
                .collect()
        });
        meta
    }
}
