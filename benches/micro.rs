//! Micro-benchmarks of kmodidx's inner steps (criterion): ELF parsing,
//! kmod's hash-order sort, dependency resolution and trie encoding. The
//! side-by-side comparison with depmod on whole trees lives in `bench/`.
//!
//! `cargo bench --bench micro` measures; `cargo test --release --benches`
//! runs each benchmark once as a smoke test. ELF parsing reads the plain
//! modules of `fixtures/trees`, or every `.ko` below `KMODIDX_BENCH_MODULES`
//! (an unpacked kernel's module directory, say) when that is set. The other
//! inputs are synthetic and deterministic: a kernel-sized symbol table and
//! module graph.

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use kmodidx::depmod::hash_order::{sort_in_hash_order, SYMBOL_BUCKETS};
use kmodidx::depmod::resolve::{resolve, LoadedModule};
use kmodidx::depmod::SymbolOptions;
use kmodidx::index::{Layout, Trie};
use kmodidx::module::elf::ElfModule;
use kmodidx::module::{Export, Imports, ModuleMeta};

/// Modules in the synthetic graph, and symbols each exports.
const MODULES: usize = 4000;
const EXPORTS_PER_MODULE: usize = 8;

fn module_files() -> Vec<Vec<u8>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() && !path.is_symlink() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "ko") {
                out.push(path);
            }
        }
    }
    let root = std::env::var_os("KMODIDX_BENCH_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/trees"));
    let mut paths = Vec::new();
    walk(&root, &mut paths);
    paths.sort();
    let files: Vec<Vec<u8>> = paths.iter().filter_map(|p| std::fs::read(p).ok()).collect();
    assert!(!files.is_empty(), "no .ko below {}", root.display());
    files
}

fn elf_parsing(c: &mut Criterion) {
    let files = module_files();
    let bytes: usize = files.iter().map(Vec::len).sum();
    let mut group = c.benchmark_group("elf");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("parse_exports_imports_modinfo", |b| {
        b.iter(|| {
            for file in &files {
                if let Ok(elf) = ElfModule::parse(black_box(file)) {
                    black_box(elf.exports().ok());
                    black_box(elf.imports().ok());
                    black_box(elf.modinfo().ok());
                }
            }
        })
    });
    group.bench_function("module_meta", |b| {
        b.iter(|| {
            for file in &files {
                black_box(ModuleMeta::from_file_bytes(black_box(file), 1 << 30));
            }
        })
    });
    group.finish();
}

fn symbol_name(module: usize, i: usize) -> Vec<u8> {
    format!("drv{module}_symbol_{i}_{}", (module * 31 + i * 7) % 97).into_bytes()
}

fn hash_order(c: &mut Criterion) {
    let names: Vec<(Vec<u8>, usize)> = (0..MODULES)
        .flat_map(|m| (0..EXPORTS_PER_MODULE).map(move |i| (symbol_name(m, i), m)))
        .collect();
    let mut group = c.benchmark_group("hash_order");
    group.throughput(Throughput::Elements(names.len() as u64));
    group.bench_function("sort_symbols", |b| {
        b.iter_batched(
            || names.clone(),
            |names| sort_in_hash_order(names, SYMBOL_BUCKETS, |e: &(Vec<u8>, usize)| e.0.clone()),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

/// A graph as shallow as a kernel's: module `m` is on layer `m % 4`, and
/// each module above layer 0 needs two symbols from each of two modules on
/// the layer below (so at most 14 modules in any closure), plus a few kernel
/// symbols nothing exports.
fn module_graph() -> Vec<LoadedModule> {
    (0..MODULES)
        .map(|m| {
            let exports = (0..EXPORTS_PER_MODULE)
                .map(|i| Export {
                    name: symbol_name(m, i),
                    crc: (m * 1000 + i) as u64,
                    name_after_empty: None,
                })
                .collect();
            let mut imports = Imports::default();
            if m % 4 != 0 {
                for k in 0..2 {
                    // One layer down: dep % 4 == m % 4 - 1.
                    let Some(dep) = m.checked_sub(1 + 4 * (k + m % 7)) else {
                        continue;
                    };
                    for i in [k, k + 2] {
                        imports.push(&symbol_name(dep, i), (dep * 1000 + i) as u64, false);
                    }
                }
            }
            imports.push(b"printk", 0, false);
            imports.push(b"kmalloc", 0, false);
            LoadedModule {
                name: format!("drv{m}").into_bytes(),
                display_path: format!("/lib/modules/6.1.0/kernel/drv{m}.ko"),
                meta: ModuleMeta {
                    exports: Some(Ok(exports)),
                    imports: Some(imports),
                    ..ModuleMeta::default()
                },
            }
        })
        .collect()
}

fn resolution(c: &mut Criterion) {
    let modules = module_graph();
    let mut group = c.benchmark_group("resolve");
    group.throughput(Throughput::Elements(modules.len() as u64));
    group.bench_function("layered_graph", |b| {
        b.iter(|| {
            let mut diags = Vec::new();
            let resolved = resolve(
                black_box(&modules),
                None,
                SymbolOptions::default(),
                &mut diags,
            );
            black_box((resolved.is_ok(), diags.len()))
        })
    });
    group.finish();
}

/// Alias-like keys, shaped as in `modules.alias.bin`: long shared prefixes
/// with wildcards, each with a module name as value.
fn alias_keys() -> Vec<(Vec<u8>, Vec<u8>)> {
    (0..MODULES * 4)
        .map(|i| {
            let key = match i % 4 {
                0 => format!("pci:v{:08X}d{:08X}sv*sd*bc*sc*i*", 0x8086 + i % 7, i),
                1 => format!("usb:v{:04X}p{:04X}d*dc*dsc*dp*ic*isc*ip*in*", i % 300, i),
                2 => format!("of:N*T*Cvendor,device-{i}"),
                _ => format!("platform:drv-{i}"),
            };
            (key.into_bytes(), format!("drv{}", i / 4).into_bytes())
        })
        .collect()
}

fn trie_encoding(c: &mut Criterion) {
    let keys = alias_keys();
    let mut trie = Trie::new();
    for (priority, (key, value)) in keys.iter().enumerate() {
        trie.insert(key, value, priority as u32).expect("ASCII key");
    }
    let mut group = c.benchmark_group("trie");
    group.throughput(Throughput::Elements(keys.len() as u64));
    group.bench_function("insert", |b| {
        b.iter(|| {
            let mut trie = Trie::new();
            for (priority, (key, value)) in keys.iter().enumerate() {
                let _ = trie.insert(key, value, priority as u32);
            }
            trie
        })
    });
    for (name, layout) in [
        ("encode_parent_first", Layout::ParentFirst),
        ("encode_children_first", Layout::ChildrenFirst),
    ] {
        group.bench_function(name, |b| b.iter(|| trie.encode(black_box(layout))));
    }
    group.finish();
}

criterion_group!(benches, elf_parsing, hash_order, resolution, trie_encoding);
criterion_main!(benches);
