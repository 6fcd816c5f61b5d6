//! `kmodidx check` on a small closure of a real kernel: the comedi driver
//! `jr3_pci` (which names the firmware `comedi/jr3pci.idm`) with its
//! dependencies `comedi_pci` and `comedi`, staged by `kmodidx build
//! --staged`, plus its firmware file. Intact it is clean; each test breaks
//! one thing and expects the line naming it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::*;

/// The root module, its dependencies and its firmware, as the 6.1 corpus
/// kernel has them (paths under the module directory).
const ROOT: &str = "kernel/drivers/comedi/drivers/jr3_pci.ko";
const DEPENDENCY: &str = "kernel/drivers/comedi/comedi_pci.ko";
const SECOND_DEPENDENCY: &str = "kernel/drivers/comedi/comedi.ko";
const FIRMWARE: &str = "comedi/jr3pci.idm";

/// A staged closure of corpus kernel 6.1 in a fresh directory: the
/// directory (kept alive by the guard), the tree's root and the kernel
/// version. `None` when there is no corpus (a failure in CI).
fn staged_closure() -> Option<(tempfile::TempDir, PathBuf, String)> {
    let kernel = corpus_kernel(CORPUS_KERNELS[0])?;
    let dir = tempfile::tempdir().unwrap();
    let version = &kernel.version;
    let from = kernel.root.join("lib/modules").join(version);
    let sub = dir.path().join("sub");
    let sub_modules = sub.join("lib/modules").join(version);
    for file in [
        "modules.order",
        "modules.builtin",
        "modules.builtin.modinfo",
        ROOT,
        DEPENDENCY,
        SECOND_DEPENDENCY,
    ] {
        let to = sub_modules.join(file);
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(from.join(file), &to).unwrap();
    }
    let out = dir.path().join("out");
    build_ok(&sub, &out, &["--staged"], &[]);
    let firmware = out.join("lib/firmware").join(FIRMWARE);
    fs::create_dir_all(firmware.parent().unwrap()).unwrap();
    fs::write(&firmware, b"firmware").unwrap();
    Some((dir, out, version.clone()))
}

fn check(from: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["check", "--from", from.to_str().unwrap()];
    args.extend_from_slice(extra);
    kmodidx(&args)
}

/// Problem lines printed.
fn lines(out: &Output) -> Vec<String> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn assert_problem(out: &Output, line: &str) {
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = lines(out);
    assert!(got.iter().any(|l| l == line), "no {line:?} in {got:#?}");
}

/// `line` is the only problem found.
fn assert_only_problem(out: &Output, line: &str) {
    assert_problem(out, line);
    assert_eq!(lines(out).len(), 1, "{:#?}", lines(out));
}

#[test]
fn intact_closure_is_clean() {
    let Some((_dir, out, _)) = staged_closure() else {
        return;
    };
    let run = check(&out, &[]);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(run.stdout.is_empty());
}

#[test]
fn intact_closure_is_clean_with_symvers() {
    let Some((_dir, out, _)) = staged_closure() else {
        return;
    };
    let kernel = corpus_kernel(CORPUS_KERNELS[0]).unwrap();
    let run = check(&out, &["--symvers", kernel.symvers.to_str().unwrap()]);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stdout)
    );
}

#[test]
fn removed_dependency_is_named() {
    let Some((_dir, out, version)) = staged_closure() else {
        return;
    };
    fs::remove_file(out.join("lib/modules").join(&version).join(DEPENDENCY)).unwrap();
    let run = check(&out, &[]);
    assert_problem(&run, &format!("{ROOT}: missing dependency {DEPENDENCY}"));
    // The index no longer matches the modules present.
    assert_problem(
        &run,
        &format!(
            "lib/modules/{version}/modules.dep: index file is stale (differs from a fresh build)"
        ),
    );
}

#[test]
fn removed_dependency_leaves_unknown_symbols_with_symvers() {
    let Some((_dir, out, version)) = staged_closure() else {
        return;
    };
    fs::remove_file(out.join("lib/modules").join(&version).join(DEPENDENCY)).unwrap();
    let kernel = corpus_kernel(CORPUS_KERNELS[0]).unwrap();
    let run = check(&out, &["--symvers", kernel.symvers.to_str().unwrap()]);
    assert_problem(
        &run,
        &format!("{ROOT}: needs unknown symbol comedi_pci_enable"),
    );
}

#[test]
fn removed_module_listed_in_modules_dep_is_named() {
    let Some((_dir, out, version)) = staged_closure() else {
        return;
    };
    fs::remove_file(out.join("lib/modules").join(&version).join(ROOT)).unwrap();
    assert_problem(
        &check(&out, &[]),
        &format!("{ROOT}: module listed in modules.dep is missing"),
    );
}

#[test]
fn removed_firmware_is_named() {
    let Some((_dir, out, _)) = staged_closure() else {
        return;
    };
    fs::remove_file(out.join("lib/firmware").join(FIRMWARE)).unwrap();
    let run = check(&out, &[]);
    assert_only_problem(&run, &format!("{ROOT}: missing firmware {FIRMWARE}"));
}

#[test]
fn compressed_firmware_counts() {
    let Some((_dir, out, _)) = staged_closure() else {
        return;
    };
    let plain = out.join("lib/firmware").join(FIRMWARE);
    fs::rename(&plain, plain.with_extension("idm.zst")).unwrap();
    assert_eq!(check(&out, &[]).status.code(), Some(0));
}

#[test]
fn removed_index_file_is_named() {
    let Some((_dir, out, version)) = staged_closure() else {
        return;
    };
    fs::remove_file(
        out.join("lib/modules")
            .join(&version)
            .join("modules.alias.bin"),
    )
    .unwrap();
    let run = check(&out, &[]);
    assert_only_problem(
        &run,
        &format!("lib/modules/{version}/modules.alias.bin: index file is missing"),
    );
}

#[test]
fn stale_index_file_is_named() {
    let Some((_dir, out, version)) = staged_closure() else {
        return;
    };
    let symbols = out
        .join("lib/modules")
        .join(&version)
        .join("modules.symbols");
    let mut text = fs::read(&symbols).unwrap();
    text.extend_from_slice(b"alias symbol:gone jr3_pci\n");
    fs::write(&symbols, text).unwrap();
    let run = check(&out, &[]);
    assert_only_problem(
        &run,
        &format!("lib/modules/{version}/modules.symbols: index file is stale (differs from a fresh build)"),
    );
}

#[test]
fn json_report_has_typed_problems() {
    let Some((_dir, out, version)) = staged_closure() else {
        return;
    };
    fs::remove_file(out.join("lib/firmware").join(FIRMWARE)).unwrap();
    let run = check(&out, &["--json"]);
    assert_eq!(run.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(report["kernel_version"], version.as_str());
    assert_eq!(report["module_dir"], "lib/modules");
    assert_eq!(report["modules"], 3);
    assert_eq!(
        report["problems"],
        serde_json::json!([{"kind": "firmware_missing", "module": ROOT, "firmware": FIRMWARE}])
    );
}

#[test]
fn archive_closure_is_checked() {
    let Some((dir, out, _)) = staged_closure() else {
        return;
    };
    // The closure as an initramfs archive: modules and index, no firmware.
    let cpio = dir.path().join("mods.cpio.zst");
    build_ok(&dir.path().join("sub"), &cpio, &["--staged"], &[]);
    let run = check(&cpio, &[]);
    assert_eq!(
        lines(&run),
        [format!("{ROOT}: missing firmware {FIRMWARE}")]
    );
    assert_eq!(run.status.code(), Some(1));
    drop(out);
}

#[test]
fn missing_input_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let run = check(&dir.path().join("absent"), &[]);
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("absent"));
}

#[test]
fn tree_without_kernel_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let run = check(dir.path(), &[]);
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("no kernel module directory found"));
}

#[test]
fn crc_mismatch_is_named() {
    let Some((dir, out, _)) = staged_closure() else {
        return;
    };
    // A Module.symvers of another build: every CRC differs.
    let kernel = corpus_kernel(CORPUS_KERNELS[0]).unwrap();
    let text = fs::read_to_string(&kernel.symvers).unwrap();
    let other: String = text
        .lines()
        .map(|l| match l.split_once('\t') {
            Some((_, rest)) => format!("0x00000001\t{rest}\n"),
            None => format!("{l}\n"),
        })
        .collect();
    let symvers = dir.path().join("Module.symvers");
    fs::write(&symvers, other).unwrap();
    let run = check(&out, &["--symvers", symvers.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(1));
    assert!(
        lines(&run)
            .iter()
            .any(|l| l.starts_with(&format!("{ROOT}: disagrees about version of symbol "))),
        "{:#?}",
        lines(&run)
    );
}
