//! Renders every `modules.*` file from the resolved module set.

use rayon::prelude::*;

use super::trie::{IndexTooLarge, Layout, NonAsciiKey, Trie};
use crate::diag::{lossy, Diagnostic, Kind};
use crate::util::{c_string, fgets_chunks, scan_unsigned};

/// Why an index could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// A key byte the format cannot store (NUL, or outside 7-bit ASCII).
    #[error(transparent)]
    NonAscii(#[from] NonAsciiKey),
    /// An index beyond the format's size limit.
    #[error(transparent)]
    TooLarge(#[from] IndexTooLarge),
}

/// One module as the index files need it, in output order.
pub struct IndexedModule {
    /// Module name.
    pub name: Vec<u8>,
    /// Path written to modules.dep: relative to the module directory, or
    /// absolute for modules outside it.
    pub path: Vec<u8>,
    /// `alias=` values of its modinfo.
    pub aliases: Vec<Vec<u8>>,
    /// `softdep=` values.
    pub softdeps: Vec<Vec<u8>>,
    /// `weakdep=` values.
    pub weakdeps: Vec<Vec<u8>>,
    /// All dependencies, as indexes into the module list, in load order.
    pub dependencies: Vec<usize>,
}

/// Inputs read from the module directory as they are.
pub struct BuiltinInputs<'a> {
    /// modules.builtin, if present.
    pub builtin: Option<&'a [u8]>,
    /// modules.builtin.modinfo, if present.
    pub builtin_modinfo: Option<&'a [u8]>,
}

/// Format choices that differ between kmod releases, plus `-w`.
#[derive(Debug, Clone, Copy)]
pub struct FileOptions {
    /// Trie layout (kmod 34 or older).
    pub layout: Layout,
    /// kmod 33+ writes modules.weakdep.
    pub weakdep: bool,
    /// `-w`: warn about duplicate index entries.
    pub warn_duplicates: bool,
    /// Only the text files (`depmod -n`); the binary ones are not rendered.
    pub text_only: bool,
}

/// One output file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexFile {
    /// File name, such as `modules.dep.bin`.
    pub name: &'static str,
    /// Its contents.
    pub bytes: Vec<u8>,
}

/// Renders all files in kmod's order, appending kmod's messages to `diags`
/// (in the order kmod prints them). The files are independent, so they are
/// rendered in parallel. The same as [`render_unresolved`] then
/// [`render_resolved`].
pub fn render(
    modules: &[IndexedModule],
    symbols: &[(&[u8], usize)],
    builtin: &BuiltinInputs<'_>,
    opts: FileOptions,
    diags: &mut Vec<Diagnostic>,
) -> Result<Vec<IndexFile>, IndexError> {
    let early = render_unresolved(modules, builtin, opts);
    render_resolved(modules, symbols, builtin, opts, early, diags)
}

/// What a file is made from: the modules' own metadata (and the builtin
/// inputs), the symbol owners, or the dependencies. A caller can render
/// each kind as soon as it has what the kind needs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Needs {
    Metadata,
    Symbols,
    Dependencies,
}

type Job<'j> = Box<dyn Fn(&mut Vec<Diagnostic>) -> Result<Vec<u8>, IndexError> + Send + Sync + 'j>;

/// kmod's output files in the order kmod writes them (and prints their
/// messages), with what each needs and how it is rendered. `modules` must
/// hold dependencies when a [`Needs::Dependencies`] job runs, and `symbols`
/// the symbol owners when a [`Needs::Symbols`] one does.
fn jobs<'j>(
    modules: &'j [IndexedModule],
    symbols: &'j [(&'j [u8], usize)],
    builtin: &'j BuiltinInputs<'j>,
    opts: FileOptions,
) -> Vec<(&'static str, Needs, Job<'j>)> {
    use Needs::{Dependencies, Metadata, Symbols};
    let binary = !opts.text_only;
    let mut jobs: Vec<(&'static str, Needs, Job<'j>)> = vec![(
        "modules.dep",
        Dependencies,
        Box::new(|_| Ok(deps_text(modules))),
    )];
    if binary {
        jobs.push((
            "modules.dep.bin",
            Dependencies,
            Box::new(move |d| deps_bin(modules, opts, d)),
        ));
    }
    jobs.push((
        "modules.alias",
        Metadata,
        Box::new(|_| Ok(alias_text(modules))),
    ));
    if binary {
        jobs.push((
            "modules.alias.bin",
            Metadata,
            Box::new(move |d| alias_bin(modules, opts, d)),
        ));
    }
    jobs.push((
        "modules.softdep",
        Metadata,
        Box::new(|_| {
            let header = b"# Soft dependencies extracted from modules themselves.\n";
            Ok(keyed_text(modules, header, b"softdep", |m| &m.softdeps))
        }),
    ));
    if opts.weakdep {
        jobs.push((
            "modules.weakdep",
            Metadata,
            Box::new(|_| {
                let header = b"# Weak dependencies extracted from modules themselves.\n";
                Ok(keyed_text(modules, header, b"weakdep", |m| &m.weakdeps))
            }),
        ));
    }
    jobs.push((
        "modules.symbols",
        Symbols,
        Box::new(|_| Ok(symbols_text(modules, symbols))),
    ));
    if binary {
        jobs.push((
            "modules.symbols.bin",
            Symbols,
            Box::new(move |d| symbols_bin(modules, symbols, opts, d)),
        ));
        jobs.push((
            "modules.builtin.bin",
            Metadata,
            Box::new(move |d| builtin_bin(builtin.builtin, opts, d)),
        ));
        jobs.push((
            "modules.builtin.alias.bin",
            Metadata,
            Box::new(move |d| builtin_alias_bin(builtin.builtin_modinfo, opts, d)),
        ));
    }
    jobs.push((
        "modules.devname",
        Metadata,
        Box::new(|d| Ok(devname_text(modules, d))),
    ));
    jobs
}

/// One rendered file with the messages its rendering produced.
type Rendered = (&'static str, Result<Vec<u8>, IndexError>, Vec<Diagnostic>);

/// Files rendered ahead of the others (in parallel), as soon as what
/// they need is known, so that a caller can render them while it resolves:
/// see [`render_unresolved`] and [`render_symbol_files`].
pub struct Unresolved {
    rendered: Vec<Rendered>,
}

impl Unresolved {
    /// Both sets of early files.
    pub fn and(mut self, other: Unresolved) -> Unresolved {
        self.rendered.extend(other.rendered);
        self
    }
}

/// Renders the files made from the modules' own metadata alone: `modules`
/// need not hold dependencies yet.
pub fn render_unresolved(
    modules: &[IndexedModule],
    builtin: &BuiltinInputs<'_>,
    opts: FileOptions,
) -> Unresolved {
    render_stage(modules, &[], builtin, opts, Needs::Metadata)
}

/// Renders the files made from the symbol owners (`modules.symbols` and
/// its index): they need no dependencies, only who exports what.
pub fn render_symbol_files(
    modules: &[IndexedModule],
    symbols: &[(&[u8], usize)],
    opts: FileOptions,
) -> Unresolved {
    let builtin = BuiltinInputs {
        builtin: None,
        builtin_modinfo: None,
    };
    render_stage(modules, symbols, &builtin, opts, Needs::Symbols)
}

fn render_stage(
    modules: &[IndexedModule],
    symbols: &[(&[u8], usize)],
    builtin: &BuiltinInputs<'_>,
    opts: FileOptions,
    stage: Needs,
) -> Unresolved {
    let jobs = jobs(modules, symbols, builtin, opts);
    Unresolved {
        rendered: run(jobs.iter().filter(|(_, needs, _)| *needs == stage)),
    }
}

/// Renders the files not in `early` (rendered ahead from the same modules,
/// symbols, inputs and options) and returns every file in kmod's order,
/// appending the messages of all of them to `diags` in that order.
pub fn render_resolved(
    modules: &[IndexedModule],
    symbols: &[(&[u8], usize)],
    builtin: &BuiltinInputs<'_>,
    opts: FileOptions,
    early: Unresolved,
    diags: &mut Vec<Diagnostic>,
) -> Result<Vec<IndexFile>, IndexError> {
    let jobs = jobs(modules, symbols, builtin, opts);
    let mut rendered = early.rendered;
    let late = run(jobs
        .iter()
        .filter(|(name, _, _)| !rendered.iter().any(|(done, _, _)| done == name)));
    rendered.extend(late);
    let mut files = Vec::with_capacity(jobs.len());
    for (name, _, _) in &jobs {
        let Some(at) = rendered.iter().position(|(done, _, _)| done == name) else {
            continue;
        };
        let (_, bytes, own) = rendered.swap_remove(at);
        diags.extend(own);
        files.push(IndexFile {
            name,
            bytes: bytes?,
        });
    }
    Ok(files)
}

/// Runs jobs in parallel, each collecting its own messages; the results
/// stay in job order, so the output is thread-count free.
fn run<'a, 'j: 'a>(
    jobs: impl Iterator<Item = &'a (&'static str, Needs, Job<'j>)>,
) -> Vec<Rendered> {
    let jobs: Vec<_> = jobs.collect();
    jobs.par_iter()
        .map(|(name, _, job)| {
            let mut own = Vec::new();
            (*name, job(&mut own), own)
        })
        .collect()
}

/// One modules.dep line without its newline: `path: dep dep ...`.
fn dep_line(modules: &[IndexedModule], m: &IndexedModule) -> Vec<u8> {
    let mut line = m.path.clone();
    line.push(b':');
    for &d in &m.dependencies {
        line.push(b' ');
        line.extend_from_slice(&modules[d].path);
    }
    line
}

fn deps_text(modules: &[IndexedModule]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in modules {
        out.extend_from_slice(&dep_line(modules, m));
        out.push(b'\n');
    }
    out
}

/// Inserts into a trie for `module`, warning about non-ASCII values as
/// kmod does.
fn insert(
    trie: &mut Trie,
    (key, value): (&[u8], &[u8]),
    priority: u32,
    module: &[u8],
    diags: &mut Vec<Diagnostic>,
) -> Result<bool, IndexError> {
    if let Some(&bad) = value.iter().find(|&&b| b >= 128) {
        diags.push(Diagnostic::critical(Kind::NonAscii {
            module: Some(lossy(module)),
            byte: bad,
            value: lossy(value),
        }));
    }
    Ok(trie.insert(key, value, priority)?)
}

fn deps_bin(
    modules: &[IndexedModule],
    opts: FileOptions,
    diags: &mut Vec<Diagnostic>,
) -> Result<Vec<u8>, IndexError> {
    let mut trie = Trie::new();
    for (idx, m) in modules.iter().enumerate() {
        let line = dep_line(modules, m);
        if insert(&mut trie, (&m.name, &line), idx as u32, &m.name, diags)? && opts.warn_duplicates
        {
            diags.push(Diagnostic::warning(Kind::DuplicateDeps {
                module: lossy(&m.name),
                line: lossy(&line),
            }));
        }
    }
    Ok(trie.encode(opts.layout)?)
}

fn alias_text(modules: &[IndexedModule]) -> Vec<u8> {
    let mut out = b"# Aliases extracted from modules themselves.\n".to_vec();
    for m in modules {
        for alias in &m.aliases {
            out.extend_from_slice(b"alias ");
            out.extend_from_slice(alias);
            out.push(b' ');
            out.extend_from_slice(&m.name);
            out.push(b'\n');
        }
    }
    out
}

fn alias_bin(
    modules: &[IndexedModule],
    opts: FileOptions,
    diags: &mut Vec<Diagnostic>,
) -> Result<Vec<u8>, IndexError> {
    let mut trie = Trie::new();
    // One buffer for every key: a kernel has tens of thousands of aliases.
    let mut key = Vec::new();
    for (idx, m) in modules.iter().enumerate() {
        for alias in &m.aliases {
            if !normalize_alias_into(alias, &mut key) {
                diags.push(Diagnostic::warning(Kind::UnmatchedBracket {
                    module: Some(lossy(&m.name)),
                    alias: lossy(alias),
                }));
                continue;
            }
            if insert(&mut trie, (&key, &m.name), idx as u32, &m.name, diags)?
                && opts.warn_duplicates
            {
                diags.push(Diagnostic::warning(Kind::DuplicateAlias {
                    module: lossy(&m.name),
                    alias: lossy(&key),
                }));
            }
        }
    }
    Ok(trie.encode(opts.layout)?)
}

/// kmod's alias normalisation: `-` becomes `_` except inside `[...]`;
/// `None` for an unmatched bracket. Like kmod, it reads at most
/// `PATH_MAX - 1` bytes.
pub fn normalize_alias(alias: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(alias.len());
    normalize_alias_into(alias, &mut out).then_some(out)
}

/// [`normalize_alias`] into `out` (cleared first); `false` for an
/// unmatched bracket.
fn normalize_alias_into(alias: &[u8], out: &mut Vec<u8>) -> bool {
    const LIMIT: usize = 4095;
    out.clear();
    let mut i = 0;
    while i < LIMIT && i < alias.len() {
        match alias[i] {
            b'-' => out.push(b'_'),
            b']' => return false,
            b'[' => {
                let Some(close) = alias[i..].iter().position(|&b| b == b']') else {
                    return false;
                };
                let close = close + i;
                out.extend_from_slice(&alias[i..=close]);
                i = close;
            }
            other => out.push(other),
        }
        i += 1;
    }
    true
}

fn keyed_text(
    modules: &[IndexedModule],
    header: &[u8],
    keyword: &[u8],
    values: impl Fn(&IndexedModule) -> &Vec<Vec<u8>>,
) -> Vec<u8> {
    let mut out = header.to_vec();
    for m in modules {
        for value in values(m) {
            out.extend_from_slice(keyword);
            out.push(b' ');
            out.extend_from_slice(&m.name);
            out.push(b' ');
            out.extend_from_slice(value);
            out.push(b'\n');
        }
    }
    out
}

fn symbols_text(modules: &[IndexedModule], symbols: &[(&[u8], usize)]) -> Vec<u8> {
    let mut out = b"# Aliases for symbols, used by symbol_request().\n".to_vec();
    for (name, owner) in symbols {
        out.extend_from_slice(b"alias symbol:");
        out.extend_from_slice(name);
        out.push(b' ');
        out.extend_from_slice(&modules[*owner].name);
        out.push(b'\n');
    }
    out
}

fn symbols_bin(
    modules: &[IndexedModule],
    symbols: &[(&[u8], usize)],
    opts: FileOptions,
    diags: &mut Vec<Diagnostic>,
) -> Result<Vec<u8>, IndexError> {
    let mut trie = Trie::new();
    // One buffer for every key: a kernel exports tens of thousands of symbols.
    let mut key = Vec::new();
    for (name, owner) in symbols {
        key.clear();
        key.extend_from_slice(b"symbol:");
        key.extend_from_slice(name);
        let owner_name = &modules[*owner].name;
        if insert(
            &mut trie,
            (&key, owner_name),
            *owner as u32,
            owner_name,
            diags,
        )? && opts.warn_duplicates
        {
            diags.push(Diagnostic::warning(Kind::DuplicateSymbol {
                module: lossy(owner_name),
                key: lossy(&key),
            }));
        }
    }
    Ok(trie.encode(opts.layout)?)
}

/// modules.builtin.bin; kmod writes an empty file when modules.builtin is
/// missing.
fn builtin_bin(
    builtin: Option<&[u8]>,
    opts: FileOptions,
    diags: &mut Vec<Diagnostic>,
) -> Result<Vec<u8>, IndexError> {
    let Some(text) = builtin else {
        return Ok(Vec::new());
    };
    let mut trie = Trie::new();
    // kmod keeps the previous name when a line has an empty file name.
    let mut name: Option<Vec<u8>> = None;
    for chunk in fgets_chunks(text, 4096) {
        let line = c_string(chunk);
        if !line.first().is_some_and(u8::is_ascii_alphabetic) {
            diags.push(Diagnostic::error(Kind::BadBuiltinLine {
                line: lossy(line),
            }));
            continue;
        }
        let base = &line[line.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1)..];
        if !base.is_empty() {
            name = Some(crate::layout::modname(base));
        }
        if let Some(name) = &name {
            insert(&mut trie, (name, b""), 0, name, diags)?;
        }
    }
    Ok(trie.encode(opts.layout)?)
}

/// Reads like kmod's `flush_stream_to`: up to `end`, a NUL or EOF, at most
/// `cap` bytes. Returns the bytes and whether `end` was what stopped it.
fn read_field<'a>(
    input: &'a [u8],
    pos: &mut usize,
    end: u8,
    cap: usize,
    diags: &mut Vec<Diagnostic>,
) -> (&'a [u8], bool) {
    let start = *pos;
    while *pos < input.len() && *pos - start < cap && input[*pos] != end && input[*pos] != 0 {
        *pos += 1;
    }
    let mut field = &input[start..*pos];
    // The byte that stopped the read is consumed, even when it was only the
    // buffer filling up.
    let stop = input.get(*pos).copied();
    if stop.is_some() {
        *pos += 1;
    }
    if field.len() == cap {
        diags.push(Diagnostic::warning(Kind::FieldTooLong {
            partial: lossy(field),
        }));
        field = &field[..cap - 1];
    }
    (field, stop == Some(end))
}

/// modules.builtin.alias.bin from the NUL-separated `name.key=value`
/// records of modules.builtin.modinfo; empty when that file is missing.
fn builtin_alias_bin(
    modinfo: Option<&[u8]>,
    opts: FileOptions,
    diags: &mut Vec<Diagnostic>,
) -> Result<Vec<u8>, IndexError> {
    const CAP: usize = 4096;
    let Some(input) = modinfo else {
        return Ok(Vec::new());
    };
    let mut trie = Trie::new();
    let mut pos = 0;
    while pos < input.len() {
        let (module, ok) = read_field(input, &mut pos, b'.', CAP, diags);
        if !ok || module.is_empty() {
            continue;
        }
        let (key, ok) = read_field(input, &mut pos, b'=', CAP, diags);
        if !ok || key != b"alias" {
            // Skip the rest of the record.
            while pos < input.len() {
                pos += 1;
                if input[pos - 1] == 0 {
                    break;
                }
            }
            continue;
        }
        let (value, ok) = read_field(input, &mut pos, 0, CAP, diags);
        if !ok || value.is_empty() {
            continue;
        }
        let Some(alias) = normalize_alias(value) else {
            diags.push(Diagnostic::warning(Kind::UnmatchedBracket {
                module: Some(lossy(module)),
                alias: lossy(value),
            }));
            continue;
        };
        insert(&mut trie, (&alias, module), 0, module, diags)?;
    }
    Ok(trie.encode(opts.layout)?)
}

/// `sscanf(s, "PREFIX%u-%u")` as glibc does it.
fn scan_major_minor(alias: &[u8], prefix: &[u8]) -> Option<(u32, u32)> {
    let rest = alias.strip_prefix(prefix)?;
    let (major, rest) = scan_unsigned(rest)?;
    let rest = rest.strip_prefix(b"-")?;
    let (minor, _) = scan_unsigned(rest)?;
    Some((major, minor))
}

fn devname_text(modules: &[IndexedModule], diags: &mut Vec<Diagnostic>) -> Vec<u8> {
    let mut out = Vec::new();
    for m in modules {
        let mut devname: Option<&[u8]> = None;
        let mut node: Option<(u8, u32, u32)> = None;
        for alias in &m.aliases {
            if let Some(name) = alias.strip_prefix(b"devname:") {
                devname = Some(name);
            } else if let Some((major, minor)) = scan_major_minor(alias, b"char-major-") {
                node = Some((b'c', major, minor));
            } else if let Some((major, minor)) = scan_major_minor(alias, b"block-major-") {
                node = Some((b'b', major, minor));
            }
            if node.is_some() && devname.is_some() {
                break;
            }
        }
        let Some(devname) = devname else { continue };
        match node {
            Some((kind, major, minor)) => {
                if out.is_empty() {
                    out.extend_from_slice(b"# Device nodes to trigger on-demand module loading.\n");
                }
                out.extend_from_slice(&m.name);
                out.push(b' ');
                out.extend_from_slice(devname);
                out.extend_from_slice(format!(" {}{major}:{minor}\n", char::from(kind)).as_bytes());
            }
            None => diags.push(Diagnostic::error(Kind::DevnameWithoutNumbers {
                module: lossy(&m.name),
                devname: lossy(devname),
            })),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_normalisation() {
        assert_eq!(normalize_alias(b"a-b[0-9]-c").unwrap(), b"a_b[0-9]_c");
        assert_eq!(normalize_alias(b"bad[abc"), None);
        assert_eq!(normalize_alias(b"bad]"), None);
    }

    #[test]
    fn scanf_unsigned() {
        assert_eq!(
            scan_major_minor(b"char-major-10-200", b"char-major-"),
            Some((10, 200))
        );
        assert_eq!(scan_major_minor(b"char-major- 4-x", b"char-major-"), None);
        assert_eq!(
            scan_major_minor(b"char-major--1-2", b"char-major-"),
            Some((u32::MAX, 2))
        );
        assert_eq!(
            scan_major_minor(b"char-major-99999999999999999999-1", b"char-major-"),
            Some((u32::MAX, 1))
        );
    }

    #[test]
    fn builtin_modinfo_records() {
        let data = b"foo.alias=pci:v1-2\0foo.license=GPL\0bar.alias=x[a-b]\0.alias=y\0";
        let opts = FileOptions {
            layout: Layout::ParentFirst,
            weakdep: true,
            warn_duplicates: false,
            text_only: false,
        };
        let mut diags = Vec::new();
        let bytes = builtin_alias_bin(Some(data), opts, &mut diags).unwrap();
        let mut want = Trie::new();
        want.insert(b"pci:v1_2", b"foo", 0).unwrap();
        want.insert(b"x[a-b]", b"bar", 0).unwrap();
        assert_eq!(bytes, want.encode(Layout::ParentFirst).unwrap());
    }
}
