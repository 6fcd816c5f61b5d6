//! The manifest's input digest: by default (`scope: metadata`) it covers
//! what depmod takes from each module, so a change anywhere else in a
//! module (its code, its description) leaves it alone while a change depmod
//! can see does not; `--input-digest parsed` covers the bytes depmod's
//! parser reads and `--input-digest whole` every byte. Each kind is rebuilt
//! and compared by `verify --from`, and schema-1 and schema-2 manifests
//! are still read.

use std::fs;
use std::path::{Path, PathBuf};

use object::{Object, ObjectSection};

use crate::common::*;
use kmodidx::module::{ModuleDigest, ModuleMeta};

const MODULE: &str = "lib/modules/6.1.0-fixture/kernel/lib/core_base.ko";

/// A private copy of the basic fixture tree.
fn basic_copy(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    copy_tree(&repo().join("fixtures/trees/basic"), &root);
    root
}

/// Flips the first byte of `section` in the module at `path`.
fn flip_in_section(path: &Path, section: &str) {
    let mut bytes = fs::read(path).unwrap();
    let (offset, size) = object::File::parse(&bytes[..])
        .unwrap()
        .section_by_name(section)
        .unwrap_or_else(|| panic!("{}: no {section}", path.display()))
        .file_range()
        .unwrap();
    assert!(size > 0);
    bytes[offset as usize] ^= 0x55;
    fs::write(path, bytes).unwrap();
}

/// Flips the byte right after the first `marker` in the file at `path`.
fn flip_after(path: &Path, marker: &[u8]) {
    let mut bytes = fs::read(path).unwrap();
    let at = bytes
        .windows(marker.len())
        .position(|w| w == marker)
        .unwrap_or_else(|| panic!("{}: no {marker:?}", path.display()))
        + marker.len();
    bytes[at] ^= 0x01;
    fs::write(path, bytes).unwrap();
}

/// Builds `root` into a fresh output with `extra` options; returns the
/// output and its manifest.
fn build_manifest(root: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    build_ok(root, out, extra, &[]);
    serde_json::from_slice(&fs::read(out.join("kmodidx.manifest.json")).unwrap()).unwrap()
}

/// The input digests of `root` built with the default scope and with
/// `--input-digest parsed` and `whole`, into outputs named after `tag` in
/// `dir`.
struct Digests {
    metadata: serde_json::Value,
    parsed: serde_json::Value,
    whole: serde_json::Value,
}

fn all_manifests(root: &Path, dir: &Path, tag: &str) -> Digests {
    let scoped = |scope: &str| {
        build_manifest(
            root,
            &dir.join(format!("{scope}-{tag}")),
            &["--input-digest", scope],
        )
    };
    Digests {
        metadata: build_manifest(root, &dir.join(format!("default-{tag}")), &[]),
        parsed: scoped("parsed"),
        whole: scoped("whole"),
    }
}

fn input_sha(m: &serde_json::Value) -> String {
    m["input"]["sha256"].as_str().unwrap().to_string()
}

#[test]
fn default_digest_is_metadata_and_the_others_are_opt_in() {
    let tmp = tempfile::tempdir().unwrap();
    let root = basic_copy(tmp.path());
    let Digests {
        metadata,
        parsed,
        whole,
    } = all_manifests(&root, tmp.path(), "a");
    assert_eq!(metadata["schema"], 3);
    assert_eq!(metadata["input"]["scope"], "metadata");
    assert_eq!(parsed["input"]["scope"], "parsed");
    assert_eq!(whole["input"]["scope"], "whole");
    // The same files are listed; only the modules' lines differ.
    for other in [&parsed, &whole] {
        assert_eq!(metadata["input"]["files"], other["input"]["files"]);
        assert_ne!(input_sha(&metadata), input_sha(other));
        assert_eq!(metadata["files"], other["files"]);
    }
    assert_ne!(input_sha(&parsed), input_sha(&whole));

    let run = kmodidx_build(
        &root,
        &tmp.path().join("c"),
        &["--input-digest", "whole", "--no-manifest"],
        &[],
    );
    assert_eq!(run.status.code(), Some(2));
    let run = kmodidx_build(
        &root,
        &tmp.path().join("d"),
        &["--input-digest", "all"],
        &[],
    );
    assert_eq!(run.status.code(), Some(2));
}

#[test]
fn whole_digest_is_sha256sum_of_every_file_used() {
    let tmp = tempfile::tempdir().unwrap();
    let root = basic_copy(tmp.path());
    let out = tmp.path().join("out");
    let m = build_manifest(&root, &out, &["--input-digest", "whole"]);
    // What `sha256sum` prints for the files depmod read (the three module
    // lists and every module modules.dep names), sorted by path, hashed.
    let dir = "lib/modules/6.1.0-fixture";
    let dep = fs::read_to_string(out.join(dir).join("modules.dep")).unwrap();
    let mut paths: Vec<String> = [
        "modules.builtin",
        "modules.builtin.modinfo",
        "modules.order",
    ]
    .iter()
    .map(|n| n.to_string())
    .chain(
        dep.lines()
            .map(|l| l.split(':').next().unwrap().to_string()),
    )
    .map(|p| format!("{dir}/{p}"))
    .collect();
    paths.sort();
    use sha2::Digest;
    let list: String = paths
        .iter()
        .map(|p| {
            let sha = kmodidx::util::hex(&sha2::Sha256::digest(fs::read(root.join(p)).unwrap()));
            format!("{sha}  {p}\n")
        })
        .collect();
    assert_eq!(m["input"]["files"].as_u64().unwrap() as usize, paths.len());
    assert_eq!(
        input_sha(&m),
        kmodidx::util::hex(&sha2::Sha256::digest(list.as_bytes()))
    );
}

#[test]
fn each_digest_sees_its_own_part_of_a_module() {
    let tmp = tempfile::tempdir().unwrap();
    let root = basic_copy(tmp.path());
    let module = root.join(MODULE);
    let before = all_manifests(&root, tmp.path(), "before");

    // Machine code: depmod never reads it.
    flip_in_section(&module, ".text");
    let code = all_manifests(&root, tmp.path(), "code");
    assert_eq!(input_sha(&code.metadata), input_sha(&before.metadata));
    assert_eq!(input_sha(&code.parsed), input_sha(&before.parsed));
    assert_ne!(input_sha(&code.whole), input_sha(&before.whole));
    assert_eq!(code.metadata["files"], before.metadata["files"]);

    // A modinfo field depmod parses past but does not use: only the
    // metadata digest stays.
    flip_after(&module, b"description=");
    let info = all_manifests(&root, tmp.path(), "info");
    assert_eq!(input_sha(&info.metadata), input_sha(&before.metadata));
    assert_ne!(input_sha(&info.parsed), input_sha(&code.parsed));
    assert_ne!(input_sha(&info.whole), input_sha(&code.whole));

    // A CRC the module was built against: every digest changes.
    flip_in_section(&module, "__versions");
    let crc = all_manifests(&root, tmp.path(), "crc");
    assert_ne!(input_sha(&crc.metadata), input_sha(&info.metadata));
    assert_ne!(input_sha(&crc.parsed), input_sha(&info.parsed));
    assert_ne!(input_sha(&crc.whole), input_sha(&info.whole));
}

#[test]
fn module_digests_do_not_depend_on_compression() {
    let plain = fs::read(repo().join("fixtures/trees/basic").join(MODULE)).unwrap();
    // With its content size in the frame header, as kmod requires.
    let packed = zstd::bulk::compress(&plain, 3).unwrap();
    for kind in [ModuleDigest::Metadata, ModuleDigest::Parsed] {
        let a = ModuleMeta::read_bytes(&plain, 1 << 24, kind).digest;
        let b = ModuleMeta::read_bytes(&packed, 1 << 24, kind).digest;
        assert!(a.is_some());
        assert_eq!(a, b);
    }
    assert_ne!(
        ModuleMeta::read_bytes(&plain, 1 << 24, ModuleDigest::Metadata).digest,
        ModuleMeta::read_bytes(&plain, 1 << 24, ModuleDigest::Parsed).digest,
    );
    assert_eq!(
        ModuleMeta::read_bytes(&plain, 1 << 24, ModuleDigest::None).digest,
        None
    );
}

/// Every field of a module's metadata, and every state of its tables,
/// changes the metadata digest: a field left out would let two inputs that
/// index differently share a digest.
#[test]
fn metadata_digest_covers_every_field() {
    use kmodidx::module::elf::ElfError;
    use kmodidx::module::{Export, Imports, LoadError};
    let plain = fs::read(repo().join("fixtures/trees/basic").join(MODULE)).unwrap();
    let base = ModuleMeta::from_file_bytes(&plain, 1 << 24);
    assert!(matches!(&base.exports, Some(Ok(list)) if !list.is_empty()));
    assert!(base.imports.is_some());
    let export = |m: &mut ModuleMeta| match &mut m.exports {
        Some(Ok(list)) => list[0].clone(),
        _ => unreachable!(),
    };
    let mut variants: Vec<(&str, ModuleMeta)> = vec![("base", base.clone())];
    let mut vary = |what: &'static str, change: &dyn Fn(&mut ModuleMeta)| {
        let mut m = base.clone();
        change(&mut m);
        variants.push((what, m));
    };
    vary("export name", &|m| {
        if let Some(Ok(list)) = &mut m.exports {
            list[0].name.push(b'x');
        }
    });
    vary("export crc", &|m| {
        if let Some(Ok(list)) = &mut m.exports {
            list[0].crc ^= 1;
        }
    });
    vary("export name after empty", &|m| {
        if let Some(Ok(list)) = &mut m.exports {
            list[0].name_after_empty = Some(Vec::new());
        }
    });
    vary("one more export", &|m| {
        let e = export(m);
        if let Some(Ok(list)) = &mut m.exports {
            list.push(Export { ..e });
        }
    });
    vary("no exports", &|m| m.exports = Some(Ok(Vec::new())));
    vary("no export table", &|m| {
        m.exports = Some(Err(LoadError::Elf(ElfError::NoData)))
    });
    vary("malformed", &|m| {
        m.exports = Some(Err(LoadError::Elf(ElfError::Malformed)))
    });
    vary("not ELF", &|m| {
        m.exports = Some(Err(LoadError::Elf(ElfError::NotElf)))
    });
    vary("no symbol table", &|m| m.imports = None);
    vary("no imports", &|m| m.imports = Some(Imports::default()));
    let with_import = |name: &'static [u8], crc: u64, weak: bool| {
        move |m: &mut ModuleMeta| {
            let mut imports = Imports::default();
            for i in m.imports.as_ref().unwrap().iter() {
                imports.push(i.name, i.crc, i.weak);
            }
            imports.push(name, crc, weak);
            m.imports = Some(imports);
        }
    };
    vary("import", &with_import(b"sym", 1, false));
    vary("import crc", &with_import(b"sym", 2, false));
    vary("weak import", &with_import(b"sym", 1, true));
    vary("import name", &with_import(b"syn", 1, false));
    vary("alias", &|m| m.aliases.push(b"pci:v*".to_vec()));
    vary("softdep", &|m| m.softdeps.push(b"pre: x".to_vec()));
    vary("weakdep", &|m| m.weakdeps.push(b"x".to_vec()));
    vary("firmware", &|m| m.firmware.push(b"x.bin".to_vec()));
    vary("two aliases, not one", &|m| {
        m.aliases.push(b"a".to_vec());
        m.aliases.push(b"b".to_vec());
    });
    vary("one alias of both", &|m| m.aliases.push(b"ab".to_vec()));
    vary("unsized zstd", &|m| m.zstd_unsized = true);
    let digests: Vec<(&str, [u8; 32])> = variants
        .iter()
        .map(|(what, m)| (*what, m.metadata_digest().expect(what)))
        .collect();
    for (i, (a, da)) in digests.iter().enumerate() {
        for (b, db) in &digests[i + 1..] {
            assert_ne!(da, db, "{a} and {b} share a metadata digest");
        }
    }
    // An image that could not be read has no metadata: the whole file
    // stands in for it.
    let unread = ModuleMeta::failed(LoadError::TooShort);
    assert_eq!(unread.metadata_digest(), None);
}

/// `verify --from ROOT OUT`: status and output.
fn verify_from(root: &Path, out: &Path) -> (i32, String) {
    let run = kmodidx(&[
        "verify",
        "--from",
        root.to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    (
        run.status.code().unwrap(),
        String::from_utf8_lossy(&run.stdout).into_owned(),
    )
}

#[test]
fn verify_from_rebuilds_with_the_recorded_scope() {
    let tmp = tempfile::tempdir().unwrap();
    let root = basic_copy(tmp.path());
    let metadata = tmp.path().join("metadata.tar");
    let parsed = tmp.path().join("parsed");
    let whole = tmp.path().join("whole");
    build_ok(&root, &metadata, &[], &[]);
    build_manifest(&root, &parsed, &["--input-digest", "parsed"]);
    build_manifest(&root, &whole, &["--input-digest", "whole"]);
    for out in [&metadata, &parsed, &whole] {
        assert_eq!(verify_from(&root, out).0, 0);
    }

    // New code in a module: the index is the same, and only the whole-file
    // digest tells the inputs apart.
    flip_in_section(&root.join(MODULE), ".text");
    assert_eq!(verify_from(&root, &metadata).0, 0);
    assert_eq!(verify_from(&root, &parsed).0, 0);
    let (code, text) = verify_from(&root, &whole);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("kmodidx.manifest.json: differs from the rebuilt manifest (input digest)"),
        "{text}"
    );

    // A change depmod sees shows up under every scope.
    flip_in_section(&root.join(MODULE), "__versions");
    for out in [&metadata, &parsed] {
        let (code, text) = verify_from(&root, out);
        assert_eq!(code, 1, "{text}");
        assert!(text.contains("input digest"), "{text}");
    }
}

#[test]
fn schema_2_manifests_are_still_verified() {
    let tmp = tempfile::tempdir().unwrap();
    let root = basic_copy(tmp.path());
    let out = tmp.path().join("out");
    let mut m = build_manifest(&root, &out, &["--input-digest", "parsed"]);
    // What kmodidx wrote before the metadata scope: schema 2.
    m["schema"] = 2.into();
    assert_manifest_verifies(&root, &out, &m);
}

/// Writes `m` as the manifest of `out` (built from `root`), checks that
/// `verify` and `verify --from` accept it, and returns the manifest's path.
fn assert_manifest_verifies(root: &Path, out: &Path, m: &serde_json::Value) -> PathBuf {
    let path = out.join("kmodidx.manifest.json");
    fs::write(&path, serde_json::to_vec_pretty(m).unwrap()).unwrap();
    let run = kmodidx(&["verify", out.to_str().unwrap()]);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let (code, text) = verify_from(root, out);
    assert_eq!(code, 0, "{text}");
    path
}

#[test]
fn schema_1_manifests_are_still_verified() {
    let tmp = tempfile::tempdir().unwrap();
    let root = basic_copy(tmp.path());
    let out = tmp.path().join("out");
    let mut m = build_manifest(&root, &out, &["--input-digest", "whole"]);
    // What kmodidx wrote before scopes existed: schema 1, no scope.
    m["schema"] = 1.into();
    m["input"].as_object_mut().unwrap().remove("scope");
    let path = assert_manifest_verifies(&root, &out, &m);

    m["schema"] = 4.into();
    fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    let run = kmodidx(&["verify", out.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("schema 4 is not supported"));
}
