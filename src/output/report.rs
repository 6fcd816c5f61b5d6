//! `--report FILE.json`: every diagnostic of a build, for pipelines to gate
//! on without parsing English.

use serde_json::{json, Value};

use crate::depmod::{Diagnostic, Finding, Level};

/// The report schema version.
pub const REPORT_SCHEMA: u32 = 1;

/// Whether a finding counts against `--strict`.
pub fn is_strict_failure(d: &Diagnostic) -> bool {
    matches!(
        d.kind,
        Some(
            Finding::UnknownSymbol { .. }
                | Finding::CrcMismatch { .. }
                | Finding::UnreadableModule { .. }
        )
    )
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Critical => "critical",
        Level::Error => "error",
        Level::Warning => "warning",
        Level::Info => "info",
        Level::Show => "verbose",
    }
}

fn entry(d: &Diagnostic) -> Value {
    let mut v = json!({ "level": level_name(d.level), "message": d.message });
    let fields = match &d.kind {
        None => json!({ "kind": "message" }),
        Some(Finding::UnknownSymbol { module, symbol }) => {
            json!({ "kind": "unknown_symbol", "module": module, "symbol": symbol })
        }
        Some(Finding::CrcMismatch {
            module,
            symbol,
            expected,
            found,
        }) => json!({
            "kind": "crc_mismatch",
            "module": module,
            "symbol": symbol,
            "expected_crc": format!("0x{expected:08x}"),
            "found_crc": format!("0x{found:08x}"),
        }),
        Some(Finding::UnreadableModule { module, reason }) => {
            json!({ "kind": "unreadable_module", "module": module, "reason": reason })
        }
        Some(Finding::Cycle { modules }) => json!({ "kind": "cycle", "modules": modules }),
    };
    if let (Value::Object(map), Value::Object(extra)) = (&mut v, fields) {
        map.extend(extra);
    }
    v
}

/// Renders the report. `status` is `"ok"`, `"strict_failure"` or `"failed"`.
pub fn render(kernel_version: Option<&str>, diagnostics: &[Diagnostic], status: &str) -> Vec<u8> {
    let listed: Vec<&Diagnostic> = diagnostics
        .iter()
        .filter(|d| d.level != Level::Show)
        .collect();
    let count = |kind: &str| listed.iter().filter(|d| entry(d)["kind"] == kind).count();
    let report = json!({
        "schema": REPORT_SCHEMA,
        "tool": format!("kmodidx {}", env!("CARGO_PKG_VERSION")),
        "kernel_version": kernel_version,
        "status": status,
        "summary": {
            "unknown_symbols": count("unknown_symbol"),
            "crc_mismatches": count("crc_mismatch"),
            "unreadable_modules": count("unreadable_module"),
            "cycles": count("cycle"),
            "messages": count("message"),
        },
        "diagnostics": listed.iter().map(|d| entry(d)).collect::<Vec<_>>(),
    });
    let mut bytes = serde_json::to_vec_pretty(&report).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}
