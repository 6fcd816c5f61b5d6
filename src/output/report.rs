//! `--report FILE.json`: every diagnostic of a build, for pipelines to gate
//! on without parsing English.
//!
//! The keys come in this order: `schema`, `tool`, `kernel_version`,
//! `status`, `error`, `summary` (`unknown_symbols`, `crc_mismatches`,
//! `unreadable_modules`, `cycles`, `messages`), `diagnostics`; each
//! diagnostic: `kind`, `level`, `module`, `symbol`, `expected_crc`,
//! `found_crc`, `reason`, `modules`, `message` (keys without a value are
//! left out).

use std::path::Path;

use serde::Serialize;

use super::write::{write_or_stream, OutputError};

use crate::diag::{Category, Diagnostic, Kind, Level};

/// The report schema version.
pub const REPORT_SCHEMA: u32 = 1;

/// How the build ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The index was written.
    Ok,
    /// `--strict` found problems; nothing was written.
    StrictFailure,
    /// The build could not complete (a cycle, an unreadable input, ...).
    Failed,
}

/// The whole report.
#[derive(Debug, Serialize)]
pub struct Report<'a> {
    /// [`REPORT_SCHEMA`].
    pub schema: u32,
    /// `kmodidx <version>`.
    pub tool: String,
    /// The kernel indexed, when it was found.
    pub kernel_version: Option<&'a str>,
    /// How the build ended.
    pub status: Status,
    /// Why it failed (`null` when it did not).
    pub error: Option<&'a str>,
    /// Counts by kind.
    pub summary: Summary,
    /// Every message except depmod's `-v` progress lines, in order.
    pub diagnostics: Vec<Entry<'a>>,
}

/// Counts of the diagnostics by kind.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    /// `unknown_symbol` entries.
    pub unknown_symbols: usize,
    /// `crc_mismatch` entries.
    pub crc_mismatches: usize,
    /// `unreadable_module` entries.
    pub unreadable_modules: usize,
    /// `cycle` entries (one per cycle).
    pub cycles: usize,
    /// `message` entries.
    pub messages: usize,
}

/// One diagnostic.
#[derive(Debug, Serialize)]
pub struct Entry<'a> {
    /// `unknown_symbol`, `crc_mismatch`, `unreadable_module`, `cycle` or
    /// `message`.
    pub kind: &'static str,
    /// `critical`, `error`, `warning` or `info`.
    pub level: &'static str,
    /// The module concerned: its path as depmod prints it, or its name in
    /// messages about the index (which know modules by name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module: Option<&'a str>,
    /// The symbol concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symbol: Option<&'a str>,
    /// The provider's CRC, `0x%08x`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_crc: Option<String>,
    /// The CRC recorded in the module, `0x%08x`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub found_crc: Option<String>,
    /// Why a module could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    /// A cycle, as kmod prints it (the first module repeated at the end).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modules: Option<&'a [String]>,
    /// The message in kmod's words.
    pub message: String,
}

impl<'a> Entry<'a> {
    /// The entry for `d`.
    pub fn new(d: &'a Diagnostic) -> Self {
        let mut e = Entry {
            kind: d.category().name(),
            level: d.level.name(),
            module: d.module(),
            symbol: None,
            expected_crc: None,
            found_crc: None,
            reason: None,
            modules: None,
            message: d.to_string(),
        };
        match &d.kind {
            Kind::UnknownSymbol { symbol, .. } => e.symbol = Some(symbol),
            Kind::CrcMismatch {
                symbol,
                expected,
                found,
                ..
            } => {
                e.symbol = Some(symbol);
                e.expected_crc = Some(format!("0x{expected:08x}"));
                e.found_crc = Some(format!("0x{found:08x}"));
            }
            Kind::UnreadableModule { reason, .. } => e.reason = Some(reason),
            Kind::UnsupportedFileType { module: true, .. } => e.reason = Some(
                "not a regular file (a special file, or a symlink that leads nowhere in the input)",
            ),
            Kind::Cycle { modules } => e.modules = Some(modules),
            _ => {}
        }
        e
    }
}

impl<'a> Report<'a> {
    /// The report of a build that ended with `status` (and `error`).
    pub fn new(
        kernel_version: Option<&'a str>,
        diagnostics: &'a [Diagnostic],
        status: Status,
        error: Option<&'a str>,
    ) -> Self {
        let mut summary = Summary::default();
        let listed: Vec<&Diagnostic> = diagnostics
            .iter()
            .filter(|d| d.level != Level::Verbose)
            .collect();
        for d in &listed {
            *match d.category() {
                Category::UnknownSymbol => &mut summary.unknown_symbols,
                Category::CrcMismatch => &mut summary.crc_mismatches,
                Category::UnreadableModule => &mut summary.unreadable_modules,
                Category::Cycle => &mut summary.cycles,
                Category::Message => &mut summary.messages,
            } += 1;
        }
        Report {
            schema: REPORT_SCHEMA,
            tool: format!("kmodidx {}", env!("CARGO_PKG_VERSION")),
            kernel_version,
            status,
            error,
            summary,
            diagnostics: listed.into_iter().map(Entry::new).collect(),
        }
    }

    /// The bytes written: pretty JSON with a final newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising plain structs of strings and numbers cannot fail.
        let mut bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }
}

/// Writes `report` to `path` (creating its directory): atomically, or as
/// a stream into a FIFO or character device (see
/// [`write_or_stream`]).
pub fn write(path: &Path, report: &Report<'_>) -> Result<(), OutputError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| OutputError::Io {
            action: "cannot create directory",
            path: parent.to_path_buf(),
            source,
        })?;
    }
    write_or_stream(path, &report.to_bytes())
}
