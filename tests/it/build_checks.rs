//! `kmodidx build`'s configuration and symbol checks: the depmod.d files
//! inside the input (and `--config`) are applied exactly as depmod applies
//! them, and `--symvers`/`--strict`/`--report` let a pipeline gate on
//! unknown symbols and CRC mismatches.

use std::fs;
use std::path::{Path, PathBuf};

use crate::common::*;

const VERSION: &str = "6.1.0-fixture";

/// A copy of the `basic` tree with duplicate modules in extra/ and updates/
/// and a depmod.d file at `config_at` that prefers extra/.
fn configured_tree(config_at: &str) -> tempfile::TempDir {
    let work = tempfile::tempdir().unwrap();
    let root = work.path();
    copy_tree(&repo().join("fixtures/trees/basic/lib"), root);
    let m = root.join("lib/modules").join(VERSION);
    for (from, to) in [
        ("kernel/lib/core_base.ko", "extra/core_base.ko"),
        ("kernel/lib/core_util.ko", "extra/core_util.ko"),
        ("kernel/lib/core_util.ko", "updates/core_util.ko"),
    ] {
        fs::create_dir_all(m.join(to).parent().unwrap()).unwrap();
        fs::copy(m.join(from), m.join(to)).unwrap();
    }
    let conf = root.join(config_at);
    fs::create_dir_all(conf.parent().unwrap()).unwrap();
    fs::write(conf, "search extra updates built-in\nexclude sound\n").unwrap();
    work
}

fn build_in_temp(root: &Path, extra: &[&str]) -> (std::process::Output, tempfile::TempDir) {
    let out = tempfile::tempdir().unwrap();
    (kmodidx_build(root, out.path(), extra, &[]), out)
}

fn written(out: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    index_files(&out.join("lib/modules").join(VERSION))
}

/// Runs live depmod 30 with `-C config` on a copy of `root`.
fn depmod30(
    depmod: &Path,
    root: &Path,
    config: &str,
) -> std::collections::BTreeMap<String, Vec<u8>> {
    depmod_on_copy(depmod, root, "lib/modules", VERSION, &["-C", config])
}

/// A depmod.d file at `config_at` inside the input is applied as depmod -C
/// applies its directory; `--no-input-config` ignores it, and `--config`
/// names a directory outside the input.
fn input_config_is_applied_like_depmod(config_at: &str) {
    let Some(depmod) = live_depmod30() else {
        return;
    };
    let tree = configured_tree(config_at);
    let conf_dir = tree.path().join(config_at);
    let conf_dir = conf_dir.parent().unwrap().to_str().unwrap();
    let want = depmod30(&depmod, tree.path(), conf_dir);
    let (run, out) = build_in_temp(tree.path(), &["--compat", "kmod30"]);
    assert!(run.status.success());
    assert_same_files(config_at, &want, &written(out.path()));

    // --no-input-config: as if there were no configuration at all.
    let plain = depmod30(&depmod, tree.path(), "/nonexistent");
    assert_ne!(plain, want, "the configuration must make a difference");
    let (run, out) = build_in_temp(tree.path(), &["--compat", "kmod30", "--no-input-config"]);
    assert!(run.status.success());
    assert_same_files("--no-input-config", &plain, &written(out.path()));

    // --config: a directory outside the input, as depmod -C.
    let (run, out) = build_in_temp(
        tree.path(),
        &[
            "--compat",
            "kmod30",
            "--no-input-config",
            "--config",
            conf_dir,
        ],
    );
    assert!(run.status.success());
    assert_same_files("--config", &want, &written(out.path()));
}

#[test]
fn input_config_in_etc_is_applied_like_depmod() {
    input_config_is_applied_like_depmod("etc/depmod.d/local.conf");
}

#[test]
fn input_config_in_lib_is_applied_like_depmod() {
    input_config_is_applied_like_depmod("lib/depmod.d/dist.conf");
}

#[test]
fn input_config_in_usr_lib_is_applied_like_depmod() {
    input_config_is_applied_like_depmod("usr/lib/depmod.d/dist.conf");
}

#[test]
fn config_errors_name_file_and_line() {
    let tree = configured_tree("etc/depmod.d/local.conf");
    fs::write(
        tree.path().join("etc/depmod.d/bad.conf"),
        "search updates\nfrobnicate everything\noverride only-two\n",
    )
    .unwrap();
    let (run, _out) = build_in_temp(tree.path(), &[]);
    assert!(run.status.success());
    let lines = build_lines(&run.stderr);
    assert!(lines.contains(&"depmod: ERROR: /etc/depmod.d/bad.conf:2: ignoring bad line starting with 'frobnicate'".to_string()), "{lines:?}");
    assert!(
        lines.contains(
            &"depmod: ERROR: /etc/depmod.d/bad.conf:3: ignoring bad line starting with 'override'"
                .to_string()
        ),
        "{lines:?}"
    );
}

fn symvers_tree() -> PathBuf {
    repo().join("fixtures/trees/symvers")
}

#[test]
fn strict_fails_without_writing_and_reports_json() {
    let root = symvers_tree();
    let symvers = root.join("Module.symvers");
    let report_dir = tempfile::tempdir().unwrap();
    let report = report_dir.path().join("report.json");
    let (run, out) = build_in_temp(
        &root,
        &[
            "--symvers",
            symvers.to_str().unwrap(),
            "--strict",
            "--report",
            report.to_str().unwrap(),
        ],
    );
    assert_eq!(
        run.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        fs::read_dir(out.path()).unwrap().count(),
        0,
        "--strict failure wrote output"
    );

    let json: serde_json::Value = serde_json::from_slice(&fs::read(&report).unwrap()).unwrap();
    assert_eq!(json["schema"], 1);
    assert_eq!(json["status"], "strict_failure");
    assert_eq!(json["kernel_version"], "6.1.0-symvers");
    assert_eq!(json["summary"]["unknown_symbols"], 1);
    assert_eq!(json["summary"]["crc_mismatches"], 4);
    let diags = json["diagnostics"].as_array().unwrap();
    let unknown = diags
        .iter()
        .find(|d| d["kind"] == "unknown_symbol")
        .unwrap();
    assert_eq!(
        unknown["module"],
        "/lib/modules/6.1.0-symvers/kernel/sv/sv_unknown.ko"
    );
    assert_eq!(unknown["symbol"], "no_such_symbol");
    let mismatch = diags.iter().find(|d| d["symbol"] == "sv_other_fn").unwrap();
    assert_eq!(mismatch["kind"], "crc_mismatch");
    assert_eq!(
        mismatch["module"],
        "/lib/modules/6.1.0-symvers/kernel/sv/sv_badmod.ko"
    );
    for field in ["expected_crc", "found_crc"] {
        let crc = mismatch[field].as_str().unwrap();
        assert!(
            crc.starts_with("0x") && u64::from_str_radix(&crc[2..], 16).is_ok(),
            "{field}: {crc}"
        );
    }
    assert_ne!(mismatch["expected_crc"], mismatch["found_crc"]);
    // The English messages are depmod's, word for word.
    assert_eq!(
        build_lines(&run.stderr)[2],
        "depmod: WARNING: /lib/modules/6.1.0-symvers/kernel/sv/sv_unknown.ko needs unknown symbol no_such_symbol"
    );
}

#[test]
fn without_strict_problems_are_reported_but_output_is_written() {
    let root = symvers_tree();
    let report_dir = tempfile::tempdir().unwrap();
    let report = report_dir.path().join("r.json");
    // A path that is not on the host is looked up inside the input.
    let (run, out) = build_in_temp(
        &root,
        &[
            "--symvers",
            "/Module.symvers",
            "--report",
            report.to_str().unwrap(),
        ],
    );
    assert!(run.status.success());
    assert_eq!(written(out.path()).len(), 0); // other kernel version dir
    assert!(out
        .path()
        .join("lib/modules/6.1.0-symvers/modules.dep")
        .exists());
    let json: serde_json::Value = serde_json::from_slice(&fs::read(&report).unwrap()).unwrap();
    assert_eq!(json["status"], "ok");
    assert_eq!(json["summary"]["unknown_symbols"], 1);
}

#[test]
fn strict_passes_on_a_clean_tree_and_cycles_are_reported() {
    let (run, out) = build_in_temp(&repo().join("fixtures/trees/compressed"), &["--strict"]);
    assert!(run.status.success());
    assert!(fs::read_dir(out.path()).unwrap().count() > 0);

    let report_dir = tempfile::tempdir().unwrap();
    let report = report_dir.path().join("cycle.json");
    let (run, _out) = build_in_temp(
        &repo().join("fixtures/trees/cycle"),
        &["--report", report.to_str().unwrap()],
    );
    assert_eq!(run.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&fs::read(&report).unwrap()).unwrap();
    assert_eq!(json["status"], "failed");
    assert_eq!(json["summary"]["cycles"], 2);
    let cycle = json["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["kind"] == "cycle")
        .unwrap();
    assert_eq!(
        cycle["modules"],
        serde_json::json!(["cyc_a", "cyc_b", "cyc_c", "cyc_a"])
    );
}

#[test]
fn unreadable_modules_fail_strict() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("lib/modules/6.1.0-x/kernel");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("broken.ko"), b"not an elf file").unwrap();
    // Nothing readable at all: never an index, whatever the flags.
    for flags in [&[][..], &["--strict"]] {
        let (run, out) = build_in_temp(work.path(), flags);
        assert_eq!(run.status.code(), Some(2), "{flags:?}");
        assert!(String::from_utf8_lossy(&run.stderr).contains("broken.ko"));
        assert_eq!(fs::read_dir(out.path()).unwrap().count(), 0);
    }
    fs::copy(
        repo().join("fixtures/trees/basic/lib/modules/6.1.0-fixture/kernel/drivers/bus/mid_bus.ko"),
        dir.join("mid_bus.ko"),
    )
    .unwrap();
    let (run, out) = build_in_temp(work.path(), &["--strict"]);
    assert_eq!(run.status.code(), Some(1));
    assert_eq!(fs::read_dir(out.path()).unwrap().count(), 0);
    let (run, _out) = build_in_temp(work.path(), &[]);
    assert!(run.status.success());
}

/// `--kernel-version-file` tells a build system which kernel an input held
/// (the Bazel rule's `kernel_version_file`).
#[test]
fn kernel_version_file_names_the_kernel_found_in_the_input() {
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("version");
    let (run, _out) = build_in_temp(
        &repo().join("fixtures/trees/basic"),
        &["--kernel-version-file", file.to_str().unwrap()],
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(fs::read_to_string(&file).unwrap(), format!("{VERSION}\n"));
}

#[test]
fn kernel_version_file_is_not_written_when_strict_fails() {
    let root = symvers_tree();
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("version");
    let (run, _out) = build_in_temp(
        &root,
        &[
            "--symvers",
            root.join("Module.symvers").to_str().unwrap(),
            "--strict",
            "--kernel-version-file",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(run.status.code(), Some(1));
    assert!(!file.exists(), "a failed build wrote {}", file.display());
}
