//! Entry points of the fuzz targets, shared with the stable regression test
//! (`tests/it/fuzz_regressions.rs` includes this file as a module), so a
//! committed reproducer goes through exactly the code the fuzzer ran.
//!
//! Each function takes arbitrary bytes and must return without panicking,
//! within bounded time and memory. The limits handed to the library are small
//! so that a decompression bomb costs the fuzzer milliseconds, not gigabytes;
//! the library's handling of them is the same at any limit.
//!
//! Only kmodidx and its own dependencies are used here: no libFuzzer.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;

use kmodidx::depmod::config::Config;
use kmodidx::depmod::kernel_symbols::{parse_symvers, parse_system_map};
use kmodidx::depmod::order::{module_order, uncompressed_relpath, DuplicateRule};
use kmodidx::index::files::{render, BuiltinInputs, FileOptions, IndexedModule};
use kmodidx::index::fnmatch::fnmatch;
use kmodidx::index::reader::{BinIndex, ReadMode};
use kmodidx::index::trie::{Layout, Trie};
use kmodidx::module::read::{MetaParser, ModuleReader, ModuleSource};
use kmodidx::module::{ModuleDigest, ModuleMeta};
use kmodidx::output::manifest::Manifest;
use kmodidx::output::verify;
use kmodidx::source::{ArchiveOptions, ArchiveTree, EntryKind, Tree};

/// Largest decompressed module (and stored module) accepted.
pub const MODULE_LIMIT: u64 = 16 << 20;
/// Largest decompressed archive stream accepted.
pub const ARCHIVE_LIMIT: u64 = 64 << 20;

/// A scratch file on tmpfs (when there is one), reused by every call of one
/// thread: a fuzzer runs millions of inputs, and the entry points under test
/// take an open file or a path.
fn scratch<R>(f: impl FnOnce(&mut File, &std::path::Path) -> R) -> R {
    thread_local! {
        static SCRATCH: (tempfile::TempDir, std::cell::RefCell<Option<File>>) = {
            let base = if std::path::Path::new("/dev/shm").is_dir() {
                PathBuf::from("/dev/shm")
            } else {
                std::env::temp_dir()
            };
            let dir = tempfile::Builder::new()
                .prefix("kmodidx-fuzz")
                .tempdir_in(base)
                .expect("scratch directory");
            (dir, std::cell::RefCell::new(None))
        };
    }
    SCRATCH.with(|(dir, file)| {
        let path = dir.path().join("input");
        let mut slot = file.borrow_mut();
        let file = slot.get_or_insert_with(|| {
            File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .expect("scratch file")
        });
        f(file, &path)
    })
}

fn fill(file: &mut File, data: &[u8]) {
    file.set_len(0).expect("truncate scratch file");
    file.seek(SeekFrom::Start(0)).expect("seek scratch file");
    file.write_all(data).expect("write scratch file");
    file.seek(SeekFrom::Start(0)).expect("seek scratch file");
}

/// A module file, compressed or not: parsed from memory (archive input) and
/// from an open file (directory input, which reads only the tables it needs).
/// Both must see the same module.
pub fn module(data: &[u8]) {
    let whole = ModuleMeta::read_bytes(data, MODULE_LIMIT, ModuleDigest::Parsed);
    let piecemeal = scratch(|file, _| {
        fill(file, data);
        let mut buf = Vec::new();
        ModuleMeta::read_file_piecemeal(
            file,
            data.len() as u64,
            &mut buf,
            MODULE_LIMIT,
            ModuleDigest::Parsed,
        )
    });
    // So must the digest of the parts depmod parses (a manifest's input
    // digest), which sees only what was read, and that of the metadata.
    assert_eq!(
        whole.digest, piecemeal.digest,
        "the parsed-parts digests of a whole and a piecemeal read disagree"
    );
    assert_eq!(
        whole.metadata_digest(),
        piecemeal.metadata_digest(),
        "the metadata digests of a whole and a piecemeal read disagree"
    );
    // Errors carry I/O wording that may differ; what depmod uses must not.
    assert_eq!(
        summary(&whole),
        summary(&piecemeal),
        "reading the whole file and reading its tables disagree"
    );
}

fn summary(m: &ModuleMeta) -> String {
    let exports = match &m.exports {
        Some(Ok(list)) => format!("{list:?}"),
        Some(Err(_)) => "error".into(),
        None => "none".into(),
    };
    format!(
        "{exports} {:?} {:?} {:?} {:?}",
        m.aliases, m.softdeps, m.weakdeps, m.imports
    )
}

/// How the archive targets wrap their input: the first byte picks the
/// compression applied to the rest, so the fuzzer mutates the archive
/// itself rather than breaking a checksum; `0` feeds the rest as it is
/// (compressed seeds then exercise the decompressors' own checks).
pub fn wrap_archive(data: &[u8]) -> Vec<u8> {
    let Some((&mode, rest)) = data.split_first() else {
        return Vec::new();
    };
    match mode % 4 {
        1 => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(rest).expect("gzip into memory");
            enc.finish().expect("gzip into memory")
        }
        2 => {
            let mut enc = liblzma::write::XzEncoder::new(Vec::new(), 0);
            enc.write_all(rest).expect("xz into memory");
            enc.finish().expect("xz into memory")
        }
        3 => zstd::encode_all(rest, 1).expect("zstd into memory"),
        _ => rest.to_vec(),
    }
}

/// A tar or cpio archive (see [`wrap_archive`]) read as `--from` reads it
/// (from a reader, as `--from -` does), then walked through the tree
/// interface the pipeline uses, and scanned (from a file) as `verify` scans
/// an output archive.
pub fn archive(data: &[u8]) {
    let bytes = wrap_archive(data);
    scratch(|file, path| {
        // Files kept in memory are bounded by the parser's size limit.
        let opts = ArchiveOptions {
            max_input_size: ARCHIVE_LIMIT,
            keep: vec![b"Module.symvers".to_vec()],
            spill_dir: path.parent().map(|p| p.to_path_buf()),
            follow_links_under: Vec::new(),
            // Firmware goes to the spill file too (closure builds).
            keep_firmware: true,
        };
        let parser = MetaParser {
            max_module_size: MODULE_LIMIT,
            // The parsed-parts digest runs on hostile modules too.
            digest: ModuleDigest::Parsed,
        };
        let name = std::path::Path::new("fuzz-input");
        if let Ok(tree) = ArchiveTree::from_reader(name, &bytes[..], &opts, &parser) {
            let _ = tree.notes();
            let mut budget = 2000usize;
            walk(&tree, Vec::new(), 0, &mut budget);
        }
        fill(file, &bytes);
        let _ = verify::scan(path, ARCHIVE_LIMIT);
    });
}

/// Visits a tree as discovery would, following links, to a bounded depth and
/// number of entries (a link loop is the tree's to report, not to recurse),
/// and asks for each module both as parsed while the archive streamed past
/// and as read back whole (from the spill file).
fn walk(tree: &ArchiveTree<ModuleMeta>, dir: Vec<u8>, depth: usize, budget: &mut usize) {
    let Ok(entries) = tree.read_dir(&dir) else {
        return;
    };
    for entry in entries {
        if *budget == 0 {
            return;
        }
        *budget -= 1;
        let path = kmodidx::source::join(&[&dir, &entry.name]);
        let _ = tree.kind(&path);
        let _ = tree.link_target(&path);
        let _ = tree.display(&path);
        let _ = tree.executable(&path);
        match entry.kind {
            EntryKind::Dir if depth < 8 => walk(tree, path, depth + 1, budget),
            EntryKind::File => {
                let _ = tree.read(&path).map(|c| c.len());
                let _ = tree.digest(&path);
                if path.ends_with(b".ko")
                    || path.ends_with(b".ko.gz")
                    || path.ends_with(b".ko.xz")
                    || path.ends_with(b".ko.zst")
                {
                    let _ = tree.parsed(&path);
                    let _ = ModuleReader::tree(tree, MODULE_LIMIT).module_meta(&path);
                }
            }
            _ => {}
        }
    }
}

/// One depmod.d file.
pub fn config(data: &[u8]) {
    let mut cfg = Config::default();
    let mut diags = Vec::new();
    // Too many entries is an error, as any other outcome, not a crash.
    let _ = cfg.parse_file("/etc/depmod.d/fuzz.conf", data, b"6.1.0-fuzz", &mut diags);
    let _ = cfg.with_defaults();
}

/// `Module.symvers` and `System.map` (with and without a symbol prefix).
pub fn kernel_symbols(data: &[u8]) {
    let mut diags = Vec::new();
    let _ = parse_symvers(data, "Module.symvers", &mut diags);
    let _ = parse_system_map(data, "System.map", 0, &mut diags);
    let prefix = data.first().copied().unwrap_or(b'_');
    let _ = parse_system_map(data, "System.map", prefix, &mut diags);
}

/// Separates the parts of a [`module_files`] input.
pub const PART_SEPARATOR: &[u8] = b"\n%%%%\n";

fn parts(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut out = Vec::with_capacity(n);
    let mut rest = data;
    while out.len() + 1 < n {
        match rest
            .windows(PART_SEPARATOR.len())
            .position(|w| w == PART_SEPARATOR)
        {
            Some(i) => {
                out.push(&rest[..i]);
                rest = &rest[i + PART_SEPARATOR.len()..];
            }
            None => break,
        }
    }
    out.push(rest);
    out.resize(n, &[]);
    out
}

/// `modules.order`, `modules.builtin`, `modules.builtin.modinfo` and module
/// aliases (one a line), separated by [`PART_SEPARATOR`], through the
/// ordering and every index file they feed. The modules are named after
/// every other `modules.order` line (some listed, some not) plus a few fixed
/// ones, so the order's lookups both hit and miss.
pub fn module_files(data: &[u8]) {
    let p = parts(data, 4);
    let (order, builtin, modinfo, aliases) = (p[0], p[1], p[2], p[3]);

    let mut relpaths: Vec<Vec<u8>> = vec![
        b"kernel/drivers/net/dummy.ko".to_vec(),
        b"kernel/fs/ext4/ext4.ko.xz".to_vec(),
        b"updates/snd-hda.ko.zst".to_vec(),
    ];
    relpaths.extend(
        order
            .split(|&b| b == b'\n')
            .step_by(2)
            .filter(|l| !l.is_empty())
            .take(64)
            .map(<[u8]>::to_vec),
    );
    let names: Vec<Vec<u8>> = relpaths
        .iter()
        .map(|r| {
            let file = r.rsplit(|&b| b == b'/').next().unwrap_or_default();
            kmodidx::layout::modname(file)
        })
        .collect();
    let name_refs: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
    let keys: Vec<Option<Vec<u8>>> = relpaths
        .iter()
        .zip(&names)
        .map(|(r, n)| Some(uncompressed_relpath(r, n)))
        .collect();

    let alias_lines: Vec<Vec<u8>> = aliases
        .split(|&b| b == b'\n')
        .take(256)
        .map(<[u8]>::to_vec)
        .collect();
    for rule in [DuplicateRule::FirstWins, DuplicateRule::LastWins] {
        let mut diags = Vec::new();
        let permutation = module_order(
            &name_refs,
            &keys,
            Some(("modules.order", order)),
            rule,
            &mut diags,
        );
        let count = permutation.len();
        let modules: Vec<IndexedModule> = permutation
            .iter()
            .enumerate()
            .map(|(pos, &i)| IndexedModule {
                name: names[i].clone(),
                path: relpaths[i].clone(),
                aliases: alias_lines
                    .iter()
                    .skip(i)
                    .step_by(names.len().max(1))
                    .cloned()
                    .collect(),
                softdeps: alias_lines.iter().skip(i).take(1).cloned().collect(),
                weakdeps: Vec::new(),
                // A chain, so every dependency points earlier in the list.
                dependencies: if pos > 0 && pos < count {
                    vec![pos - 1]
                } else {
                    Vec::new()
                },
            })
            .collect();
        let symbols: Vec<(&[u8], usize)> = alias_lines
            .iter()
            .take(16)
            .enumerate()
            .filter(|_| !modules.is_empty())
            .map(|(k, s)| (s.as_slice(), k % modules.len()))
            .collect();
        let inputs = BuiltinInputs {
            builtin: Some(builtin),
            builtin_modinfo: Some(modinfo),
        };
        for layout in [Layout::ParentFirst, Layout::ChildrenFirst] {
            let opts = FileOptions {
                layout,
                weakdep: true,
                warn_duplicates: true,
                text_only: false,
            };
            let _ = render(&modules, &symbols, &inputs, opts, &mut diags);
        }
    }
}

/// A manifest: parsed, written back and parsed again (the same manifest),
/// and compared with an output holding exactly its files (no problems).
pub fn manifest(data: &[u8]) {
    let Ok(m) = Manifest::from_bytes(data) else {
        return;
    };
    let again = Manifest::from_bytes(&m.to_bytes()).expect("a written manifest reads back");
    assert_eq!(m, again, "manifest changed on a round trip");
    let mut scan = verify::Scan::default();
    for f in &m.files {
        scan.files
            .insert(f.path.clone(), (f.size, f.mode.clone(), f.sha256.clone()));
    }
    assert!(
        verify::compare(&m, &scan).is_empty(),
        "an output holding exactly the manifest's files does not match it"
    );
    let _ = verify::compare(&m, &verify::Scan::default());
}

/// A binary index (`modules.*.bin`, as `query`, `check` and `diff` read
/// them). The first input byte is a key length n, the next n bytes the key
/// to look up, the rest the index file. An index that parses must:
/// list its entries, or fail with an error, within its output bound; find
/// every listed key by exact search, in both read modes; return from a
/// wildcard search exactly the values whose (pattern) key matches, as
/// [`wild_match`] says; and,
/// rebuilt from its entries in the layout it was read in, encode to a file
/// that reads back to the same entries.
pub fn index_bin(data: &[u8]) {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let (key, bytes) = rest.split_at(usize::from(n).min(rest.len()));
    let header_ok = BinIndex::header_ok(bytes);
    let Ok(index) = BinIndex::parse(bytes.to_vec(), "fuzz.bin") else {
        return;
    };
    assert!(header_ok, "an index that parsed fails header_ok");
    let layout = index.layout();
    let Ok(entries) = index.entries() else {
        return;
    };
    for mode in [ReadMode::Mapped, ReadMode::Streamed] {
        for e in entries.iter().take(64) {
            assert!(
                index.search(&e.key, mode).is_some(),
                "listed key {:?} not found ({mode:?})",
                e.key
            );
        }
        let mut found: Vec<(u32, Vec<u8>)> = index
            .search_wild(key, mode)
            .iter()
            .map(|v| (v.priority, v.value.to_vec()))
            .collect();
        let mut want: Vec<(u32, Vec<u8>)> = entries
            .iter()
            .filter(|e| wild_match(&e.key, key))
            .map(|e| (e.priority, e.value.clone()))
            .collect();
        found.sort();
        want.sort();
        assert_eq!(found, want, "wildcard search for {key:?} ({mode:?})");
    }
    let mut trie = Trie::new();
    for e in &entries {
        if trie.insert(&e.key, &e.value, e.priority).is_err() {
            return; // a key the writer refuses (non-ASCII): nothing to compare
        }
    }
    let Ok(encoded) = trie.encode(layout.unwrap_or(Layout::ParentFirst)) else {
        return;
    };
    let again = BinIndex::parse(encoded, "re-encoded.bin")
        .and_then(|i| i.entries())
        .expect("a re-encoded index reads back");
    let sorted = |mut v: Vec<kmodidx::index::reader::Entry>| {
        v.sort_by(|a, b| (&a.key, a.priority, &a.value).cmp(&(&b.key, b.priority, &b.value)));
        v
    };
    assert_eq!(
        sorted(entries),
        sorted(again),
        "entries changed on a re-encode"
    );
}

/// Whether libkmod's `index_searchwild` returns the values of `pattern` for
/// `key`: up to the pattern's first `*`, `?` or `[` the trie walk compares
/// bytes (a backslash is no escape there), and from that position on the
/// rest of the pattern is fnmatch'ed against the rest of the key. A pattern
/// without any of the three is found by the walk alone: equal bytes.
fn wild_match(pattern: &[u8], key: &[u8]) -> bool {
    match pattern.iter().position(|b| matches!(b, b'*' | b'?' | b'[')) {
        None => pattern == key,
        Some(j) => key.get(..j) == Some(&pattern[..j]) && fnmatch(&pattern[j..], &key[j..]),
    }
}
