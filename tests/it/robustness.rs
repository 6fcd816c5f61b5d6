//! Bad input never panics: every module of the fixture trees, truncated at
//! every length and with bytes flipped all over its headers and tables, is
//! read without a panic (a module that cannot be read is reported, not
//! fatal), and the whole pipeline runs on a tree full of such modules.

use std::fs;
use std::path::{Path, PathBuf};

use crate::common::*;
use kmodidx::module::{ModuleDigest, ModuleMeta};

fn fixture_modules() -> Vec<PathBuf> {
    let out = module_files(&repo().join("fixtures/trees"));
    assert!(out.len() > 50);
    out
}

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn truncated_modules_do_not_panic() {
    for path in fixture_modules() {
        let bytes = fs::read(&path).unwrap();
        for len in 0..bytes.len() {
            let _ = ModuleMeta::from_file_bytes(&bytes[..len], 1 << 24);
        }
    }
}

#[test]
fn corrupted_modules_do_not_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for path in fixture_modules() {
        let original = fs::read(&path).unwrap();
        for _ in 0..300 {
            let mut bytes = original.clone();
            let flips = 1 + rng.next() % 8;
            for _ in 0..flips {
                // Mostly the ELF and section headers, where offsets live.
                let at = if rng.next() % 2 == 0 {
                    (rng.next() % 64) as usize
                } else {
                    (rng.next() % bytes.len() as u64) as usize
                };
                let last = bytes.len() - 1;
                bytes[at.min(last)] = rng.next() as u8;
            }
            let _ = ModuleMeta::from_file_bytes(&bytes, 1 << 24);
        }
    }
}

/// Reading a module piecemeal (only the tables depmod needs) must give
/// exactly what parsing the whole file gives, for good and broken modules,
/// digest of the parsed parts included (so it never sees bytes left in the
/// buffer by another module).
fn assert_piecemeal_read_matches(bytes: &[u8], scratch: &Path, buf: &mut Vec<u8>) {
    fs::write(scratch, bytes).unwrap();
    let file = fs::File::open(scratch).unwrap();
    for kind in [ModuleDigest::Parsed, ModuleDigest::Metadata] {
        let sparse = ModuleMeta::read_file_piecemeal(&file, bytes.len() as u64, buf, 1 << 24, kind);
        let whole = ModuleMeta::read_bytes(bytes, 1 << 24, kind);
        assert_eq!(format!("{sparse:?}"), format!("{whole:?}"));
        // The default reader (small files whole, others piecemeal) too.
        let default = ModuleMeta::read_file(&file, bytes.len() as u64, buf, 1 << 24, kind);
        assert_eq!(format!("{default:?}"), format!("{whole:?}"));
    }
    let plain = ModuleMeta::from_file(&file, bytes.len() as u64, buf, 1 << 24);
    assert_eq!(plain.digest, None);
}

#[test]
fn piecemeal_reads_match_whole_reads() {
    let scratch = tempfile::tempdir().unwrap();
    let path = scratch.path().join("m.ko");
    // A dirty buffer, as a worker thread's would be after other modules.
    let mut buf = vec![0xa5; 1 << 16];
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut modules = fixture_modules();
    if let Ok(corpus) = std::env::var("KMODIDX_PIECEMEAL_CORPUS") {
        // Optional: point at an unpacked kernel's module directory.
        modules.extend(module_files(Path::new(&corpus)));
    }
    for module in modules {
        let original = fs::read(&module).unwrap();
        assert_piecemeal_read_matches(&original, &path, &mut buf);
        assert!(
            ModuleMeta::read_bytes(&original, 1 << 24, ModuleDigest::Parsed)
                .digest
                .is_some(),
            "{}: no parsed digest",
            module.display()
        );
        for round in 0..24 {
            let mut bytes = original.clone();
            let len = bytes.len() as u64;
            for _ in 0..1 + rng.next() % 6 {
                // Aim at the ELF header, the section headers (at the end of
                // these files) or anywhere, in turn.
                let at = match round % 3 {
                    0 => rng.next() % 64,
                    1 => len - 1 - rng.next() % (len / 4).max(1),
                    _ => rng.next() % len,
                };
                bytes[at as usize] = rng.next() as u8;
            }
            assert_piecemeal_read_matches(&bytes, &path, &mut buf);
            let cut = (rng.next() % bytes.len() as u64) as usize;
            assert_piecemeal_read_matches(&bytes[..cut], &path, &mut buf);
        }
    }
}

#[test]
fn a_tree_of_broken_modules_is_indexed() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("lib/modules/6.1.0-broken/kernel");
    fs::create_dir_all(&dir).unwrap();
    let good = fs::read(
        repo().join("fixtures/trees/basic/lib/modules/6.1.0-fixture/kernel/lib/core_base.ko"),
    )
    .unwrap();
    fs::write(dir.join("empty.ko"), b"").unwrap();
    fs::write(dir.join("tiny.ko"), b"\x7fEL").unwrap();
    fs::write(dir.join("text.ko"), b"this is not an ELF file at all").unwrap();
    fs::write(dir.join("half.ko"), &good[..good.len() / 2]).unwrap();
    fs::write(dir.join("badxz.ko.xz"), b"\xfd7zXZ\0garbage").unwrap();
    fs::write(dir.join("badzst.ko.zst"), b"\x28\xb5\x2f\xfdgarbage").unwrap();
    fs::write(dir.join("badgz.ko.gz"), b"\x1f\x8bgarbage").unwrap();
    fs::write(dir.join("core_base.ko"), &good).unwrap();
    let out = tempfile::tempdir().unwrap();
    let run = kmodidx(&[
        "build",
        "--from",
        work.path().to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    for name in [
        "empty.ko",
        "tiny.ko",
        "text.ko",
        "badxz.ko.xz",
        "badzst.ko.zst",
        "badgz.ko.gz",
    ] {
        assert!(
            stderr.contains(&format!(
                "failed to load symbols from /lib/modules/6.1.0-broken/kernel/{name}"
            )),
            "{name} not reported:\n{stderr}"
        );
    }
    // Unreadable modules are still listed, without dependencies, as kmod lists them.
    let dep = fs::read_to_string(out.path().join("lib/modules/6.1.0-broken/modules.dep")).unwrap();
    assert!(dep.contains("kernel/badxz.ko.xz:\n"), "{dep}");
    assert!(dep.contains("kernel/core_base.ko:\n"), "{dep}");
}
