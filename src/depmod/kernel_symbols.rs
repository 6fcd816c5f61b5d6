//! The kernel's own symbols, from `Module.symvers` (`-E`) or `System.map`
//! (`-F`), parsed with kmod's rules.

use super::resolve::KernelSymbol;
use crate::diag::{lossy, Diagnostic, Kind};
use crate::util::{c_string, fgets_chunks};

/// kmod reads both files with `fgets` into a 10240-byte buffer.
const LINE_BUFFER: usize = 10240;

/// Which file the kernel's symbols come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SymbolFileKind {
    /// `Module.symvers` (`depmod -E`): names and CRCs.
    Symvers,
    /// `System.map` (`depmod -F`): names only.
    SystemMap,
}

/// Parses a symbol file of `kind` named `file` in messages; `prefix` is
/// the `-P` byte (0 for none).
pub fn parse(
    kind: SymbolFileKind,
    text: &[u8],
    file: &str,
    prefix: u8,
    diags: &mut Vec<Diagnostic>,
) -> Vec<KernelSymbol> {
    match kind {
        SymbolFileKind::Symvers => parse_symvers(text, file, diags),
        SymbolFileKind::SystemMap => parse_system_map(text, file, prefix, diags),
    }
}

/// `0xCRC<ws>symbol<ws>vmlinux<ws>...` lines; symbols of other modules are
/// skipped, as are lines with fewer than three fields.
pub fn parse_symvers(text: &[u8], file: &str, diags: &mut Vec<Diagnostic>) -> Vec<KernelSymbol> {
    let mut symbols = Vec::new();
    for (lineno, chunk) in fgets_chunks(text, LINE_BUFFER).enumerate() {
        let mut fields = c_string(chunk)
            .split(|&b| b == b' ' || b == b'\t')
            .filter(|f| !f.is_empty());
        let (Some(version), Some(name), Some(place)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if place != b"vmlinux" {
            continue;
        }
        match parse_crc(version) {
            Some(crc) => symbols.push(KernelSymbol {
                name: name.to_vec(),
                crc,
                prefix_removed: false,
            }),
            None => diags.push(Diagnostic::error(Kind::BadSymbolVersion {
                file: file.to_string(),
                line: lineno + 1,
                version: lossy(version),
            })),
        }
    }
    symbols
}

/// `strtoull(s, &end, 16)` that must consume the whole field.
fn parse_crc(field: &[u8]) -> Option<u64> {
    let mut s = field;
    while let Some((first, rest)) = s.split_first() {
        if !b" \t\n\x0b\x0c\r".contains(first) {
            break;
        }
        s = rest;
    }
    let negative = s.first() == Some(&b'-');
    if matches!(s.first(), Some(b'-' | b'+')) {
        s = &s[1..];
    }
    if (s.starts_with(b"0x") || s.starts_with(b"0X")) && s.get(2).is_some_and(u8::is_ascii_hexdigit)
    {
        s = &s[2..];
    }
    if s.is_empty() || !s.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let value = s.iter().try_fold(0u64, |acc, &d| {
        let digit = (d as char).to_digit(16)? as u64;
        acc.checked_mul(16)?.checked_add(digit)
    });
    Some(match value {
        None => u64::MAX,
        Some(v) if negative => v.wrapping_neg(),
        Some(v) => v,
    })
}

/// `ADDRESS TYPE NAME` lines; only `__ksymtab_NAME` entries (after an
/// optional `-P` prefix byte) name exported symbols.
pub fn parse_system_map(
    text: &[u8],
    file: &str,
    prefix: u8,
    diags: &mut Vec<Diagnostic>,
) -> Vec<KernelSymbol> {
    const KSYMTAB: &[u8] = b"__ksymtab_";
    let mut symbols = Vec::new();
    for (lineno, chunk) in fgets_chunks(text, LINE_BUFFER).enumerate() {
        let line = c_string(chunk);
        let after_space =
            |s: &'_ [u8]| -> Option<usize> { s.iter().position(|&b| b == b' ').map(|i| i + 1) };
        let Some(first) = after_space(line) else {
            diags.push(invalid_line(file, lineno, line));
            continue;
        };
        let Some(second) = after_space(&line[first..]) else {
            diags.push(invalid_line(file, lineno, line));
            continue;
        };
        let mut name = &line[first + second..];
        if prefix != 0 && name.first() == Some(&prefix) {
            name = &name[1..];
        }
        let Some(name) = name.strip_prefix(KSYMTAB) else {
            continue;
        };
        let name = name
            .iter()
            .position(|&b| b == b'\n')
            .map_or(name, |nl| &name[..nl]);
        symbols.push(KernelSymbol {
            name: name.to_vec(),
            crc: 0,
            prefix_removed: true,
        });
    }
    symbols
}

fn invalid_line(file: &str, lineno: usize, line: &[u8]) -> Diagnostic {
    Diagnostic::error(Kind::BadSystemMapLine {
        file: file.to_string(),
        line: lineno + 1,
        text: lossy(line),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symvers_lines() {
        let mut diags = Vec::new();
        let text = b"0x12345678\tfoo\tvmlinux\tEXPORT_SYMBOL\t\n0x1\tbar\tdrivers/x\tEXPORT_SYMBOL\n0xzz\tbad\tvmlinux\tX\nshort line\n";
        let syms = parse_symvers(text, "Module.symvers", &mut diags);
        assert_eq!(syms.len(), 1);
        assert_eq!(syms[0].name, b"foo");
        assert_eq!(syms[0].crc, 0x12345678);
        assert_eq!(diags.len(), 1);
    }

    #[test]
    fn system_map_lines() {
        let mut diags = Vec::new();
        let text = b"ffffffff81000000 T _text\nffffffff82000000 r __ksymtab_foo\nbogus\n";
        let syms = parse_system_map(text, "System.map", 0, &mut diags);
        assert_eq!(syms.len(), 1);
        assert_eq!(syms[0].name, b"foo");
        assert_eq!(diags.len(), 1);
    }
}
