//! The manifest's input digest: by default (`scope: parsed`) it covers the
//! parts of each module that depmod parses, so a change anywhere else in a
//! module (its code, say) leaves it alone while a change depmod can see
//! does not; `--input-digest whole` covers every byte. Both kinds are
//! rebuilt and compared by `verify --from`, and schema-1 manifests (whole
//! files, no `scope`) are still read.

use std::fs;
use std::path::{Path, PathBuf};

use object::{Object, ObjectSection};

use crate::common::*;
use kmodidx::module::ModuleMeta;

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

/// Builds `root` into a fresh output with `extra` options; returns the
/// output and its manifest.
fn build_manifest(root: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    build_ok(root, out, extra, &[]);
    serde_json::from_slice(&fs::read(out.join("kmodidx.manifest.json")).unwrap()).unwrap()
}

/// The manifests of `root` built with the default digest and with
/// `--input-digest whole`, into outputs named after `tag` in `dir`.
fn both_manifests(root: &Path, dir: &Path, tag: &str) -> (serde_json::Value, serde_json::Value) {
    (
        build_manifest(root, &dir.join(format!("parsed-{tag}")), &[]),
        build_manifest(
            root,
            &dir.join(format!("whole-{tag}")),
            &["--input-digest", "whole"],
        ),
    )
}

fn input_sha(m: &serde_json::Value) -> String {
    m["input"]["sha256"].as_str().unwrap().to_string()
}

#[test]
fn default_digest_is_parsed_and_whole_is_opt_in() {
    let tmp = tempfile::tempdir().unwrap();
    let root = basic_copy(tmp.path());
    let (parsed, whole) = both_manifests(&root, tmp.path(), "a");
    assert_eq!(parsed["schema"], 2);
    assert_eq!(parsed["input"]["scope"], "parsed");
    assert_eq!(whole["input"]["scope"], "whole");
    // The same files are listed; only the modules' lines differ.
    assert_eq!(parsed["input"]["files"], whole["input"]["files"]);
    assert_ne!(input_sha(&parsed), input_sha(&whole));
    assert_eq!(parsed["files"], whole["files"]);

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
fn parsed_digest_ignores_code_and_sees_what_depmod_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let root = basic_copy(tmp.path());
    let (before_parsed, before_whole) = both_manifests(&root, tmp.path(), "before");

    // Machine code: depmod never reads it.
    flip_in_section(&root.join(MODULE), ".text");
    let (code_parsed, code_whole) = both_manifests(&root, tmp.path(), "code");
    assert_eq!(input_sha(&code_parsed), input_sha(&before_parsed));
    assert_ne!(input_sha(&code_whole), input_sha(&before_whole));
    assert_eq!(code_parsed["files"], before_parsed["files"]);

    // A table depmod parses: the parsed digest changes.
    flip_in_section(&root.join(MODULE), ".symtab");
    let table_parsed = build_manifest(&root, &tmp.path().join("p2"), &[]);
    assert_ne!(input_sha(&table_parsed), input_sha(&before_parsed));
}

#[test]
fn parsed_digest_does_not_depend_on_compression() {
    let plain = fs::read(repo().join("fixtures/trees/basic").join(MODULE)).unwrap();
    // With its content size in the frame header, as kmod requires.
    let packed = zstd::bulk::compress(&plain, 3).unwrap();
    let a = ModuleMeta::read_bytes(&plain, 1 << 24, true).parsed_sha256;
    let b = ModuleMeta::read_bytes(&packed, 1 << 24, true).parsed_sha256;
    assert!(a.is_some());
    assert_eq!(a, b);
    assert_eq!(
        ModuleMeta::read_bytes(&plain, 1 << 24, false).parsed_sha256,
        None
    );
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
    let parsed = tmp.path().join("parsed.tar");
    let whole = tmp.path().join("whole");
    build_ok(&root, &parsed, &[], &[]);
    build_manifest(&root, &whole, &["--input-digest", "whole"]);
    assert_eq!(verify_from(&root, &parsed).0, 0);
    assert_eq!(verify_from(&root, &whole).0, 0);

    // New code in a module: the index is the same, and only the whole-file
    // digest tells the inputs apart.
    flip_in_section(&root.join(MODULE), ".text");
    assert_eq!(verify_from(&root, &parsed).0, 0);
    let (code, text) = verify_from(&root, &whole);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("kmodidx.manifest.json: differs from the rebuilt manifest (input digest)"),
        "{text}"
    );

    // A change depmod sees shows up under either scope.
    flip_in_section(&root.join(MODULE), ".modinfo");
    let (code, text) = verify_from(&root, &parsed);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("input digest"), "{text}");
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
    let path = out.join("kmodidx.manifest.json");
    fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    let run = kmodidx(&["verify", out.to_str().unwrap()]);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let (code, text) = verify_from(&root, &out);
    assert_eq!(code, 0, "{text}");

    m["schema"] = 3.into();
    fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    let run = kmodidx(&["verify", out.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("schema 3 is not supported"));
}
