//! `kmodidx build`'s command-line conventions: exit statuses, message
//! prefixes, `--quiet`/`--verbose`, output names, standard input and
//! output, and what errors and reports say.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::common::*;

const VERSION: &str = "6.1.0-fixture";

fn tree(name: &str) -> PathBuf {
    repo().join("fixtures/trees").join(name)
}

fn build(from: &Path, out: &Path, extra: &[&str]) -> Output {
    kmodidx_build(from, out, extra, &[])
}

fn stderr(run: &Output) -> String {
    String::from_utf8_lossy(&run.stderr).into_owned()
}

/// Runs kmodidx with `input` on standard input, capturing the rest.
fn kmodidx_stdin(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kmodidx"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    out
}

/// A staged tar of the basic tree: an archive that is itself a valid input.
fn basic_staged_tar(dir: &Path) -> PathBuf {
    let tar = dir.join("basic.tar");
    let run = build(&tree("basic"), &tar, &["--staged", "--no-manifest"]);
    assert!(run.status.success(), "{}", stderr(&run));
    tar
}

#[test]
fn success_is_status_0_with_warnings_prefixed_kmodidx() {
    let tmp = tempfile::tempdir().unwrap();
    let run = build(&tree("basic"), &tmp.path().join("out"), &[]);
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    let text = stderr(&run);
    // kmod's words, byte for byte, after build's own prefix.
    assert!(
        text.contains("kmodidx: warning: Unmatched bracket in bad[abc\n"),
        "{text}"
    );
    assert!(
        text.contains("kmodidx: error: Module 'nomajor' has devname (nomajor) but lacks major and minor information. Ignoring.\n"),
        "{text}"
    );
    assert!(!text.contains("depmod:"), "{text}");
}

#[test]
fn a_cycle_is_status_1() {
    let tmp = tempfile::tempdir().unwrap();
    let run = build(&tree("cycle"), &tmp.path().join("out"), &[]);
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    let text = stderr(&run);
    assert!(text.contains("kmodidx: error: Cycle detected: "), "{text}");
    assert!(
        text.lines()
            .last()
            .unwrap()
            .starts_with("kmodidx: error: modules depend on each other in a cycle"),
        "{text}"
    );
}

#[test]
fn strict_findings_are_status_1() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tree("symvers");
    let symvers = root.join("Module.symvers");
    let run = build(
        &root,
        &tmp.path().join("out"),
        &["--symvers", symvers.to_str().unwrap(), "--strict"],
    );
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    assert!(stderr(&run).contains("kmodidx: error: --strict: 5 problem(s)"));
}

#[test]
fn an_unreadable_input_is_status_2() {
    let tmp = tempfile::tempdir().unwrap();
    let run = build(&tmp.path().join("missing"), &tmp.path().join("out"), &[]);
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
    assert!(stderr(&run).starts_with("kmodidx: error: "));
}

#[test]
fn a_usage_error_is_status_2() {
    let run = kmodidx(&["build", "--from", "x", "--out", "y", "--no-such-flag"]);
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
    let run = kmodidx(&["build", "--from", "x"]);
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
}

#[test]
fn an_output_error_is_status_2_and_names_the_target() {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["x.tar.gz", "dir"] {
        let out = tmp.path().join("no-such-dir").join(name);
        let run = build(&tree("basic"), &out, &[]);
        assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
        let text = stderr(&run);
        assert!(text.contains(&out.display().to_string()), "{text}");
        assert!(!text.contains("kmodidx-tmp"), "{text}");
    }
}

#[test]
fn quiet_prints_errors_only() {
    let tmp = tempfile::tempdir().unwrap();
    let run = build(&tree("basic"), &tmp.path().join("out"), &["--quiet"]);
    assert!(run.status.success());
    let text = stderr(&run);
    assert!(!text.contains("warning"), "{text}");
    assert!(text.contains("kmodidx: error: Module 'nomajor'"), "{text}");
}

#[test]
fn verbose_prints_progress() {
    let tmp = tempfile::tempdir().unwrap();
    let run = build(&tree("basic"), &tmp.path().join("out"), &["--verbose"]);
    assert!(run.status.success());
    let text = stderr(&run);
    assert!(text.contains("kmodidx: info: reading "), "{text}");
    assert!(text.contains("kmodidx: info: indexed "), "{text}");
    let run = kmodidx(&["build", "--from", "x", "--out", "y", "-q", "-v"]);
    assert_eq!(run.status.code(), Some(2));
}

#[test]
fn an_unknown_extension_is_an_error_listing_the_known_ones() {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["x.zip", "x.tar.bz2", "x.cpio.lz4"] {
        let out = tmp.path().join(name);
        let run = build(&tree("basic"), &out, &[]);
        assert_eq!(run.status.code(), Some(2), "{name}: {}", stderr(&run));
        let text = stderr(&run);
        assert!(text.contains("unknown output extension"), "{text}");
        assert!(
            text.contains(".tar.zst") && text.contains(".cpio.gz"),
            "{text}"
        );
        assert!(!out.exists(), "{name} was created");
    }
    // --format overrides the name; a name without an extension is a directory.
    let run = build(
        &tree("basic"),
        &tmp.path().join("x.zip"),
        &["--format", "tar"],
    );
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(tmp.path().join("x.zip").is_file());
    let run = build(&tree("basic"), &tmp.path().join("plain"), &[]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(tmp.path().join("plain").is_dir());
}

#[test]
fn out_dash_writes_the_archive_to_stdout() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("x.tar");
    assert!(build(&tree("basic"), &file, &[]).status.success());
    let run = build(&tree("basic"), Path::new("-"), &[]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(
        run.stdout,
        fs::read(&file).unwrap(),
        "--out - differs from a .tar file"
    );
    // --format picks another archive form; a directory cannot be streamed.
    let zst = tmp.path().join("x.cpio.zst");
    assert!(build(&tree("basic"), &zst, &[]).status.success());
    let run = build(&tree("basic"), Path::new("-"), &["--format", "cpio.zst"]);
    assert_eq!(run.stdout, fs::read(&zst).unwrap());
    let run = build(&tree("basic"), Path::new("-"), &["--format", "dir"]);
    assert_eq!(run.status.code(), Some(2));
    assert!(run.stdout.is_empty());
}

#[test]
fn from_dash_reads_an_archive_from_stdin() {
    let tmp = tempfile::tempdir().unwrap();
    let tar = basic_staged_tar(tmp.path());
    let from_file = tmp.path().join("from-file");
    assert!(build(&tar, &from_file, &[]).status.success());
    let from_stdin = tmp.path().join("from-stdin");
    let run = kmodidx_stdin(
        &[
            "build",
            "--from",
            "-",
            "--out",
            from_stdin.to_str().unwrap(),
        ],
        &fs::read(&tar).unwrap(),
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let dir = |root: &Path| root.join("lib/modules").join(VERSION);
    assert_same_files(
        "--from -",
        &index_files(&dir(&from_file)),
        &index_files(&dir(&from_stdin)),
    );
    assert!(!index_files(&dir(&from_stdin)).is_empty());
}

#[test]
fn a_wrong_kernel_version_lists_the_versions_found() {
    let tmp = tempfile::tempdir().unwrap();
    let run = build(
        &tree("basic"),
        &tmp.path().join("out"),
        &["--kernel-version", "9.9.9"],
    );
    assert_eq!(run.status.code(), Some(2));
    let text = stderr(&run);
    assert!(text.contains("kernel version 9.9.9"), "{text}");
    assert!(
        text.contains(&format!("found: lib/modules/{VERSION}")),
        "{text}"
    );
}

#[test]
fn the_report_names_modules_and_the_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let report = tmp.path().join("r.json");
    let run = build(
        &tree("basic"),
        &tmp.path().join("out"),
        &["--report", report.to_str().unwrap()],
    );
    assert!(run.status.success());
    let json: serde_json::Value = serde_json::from_slice(&fs::read(&report).unwrap()).unwrap();
    assert_eq!(json["error"], serde_json::Value::Null);
    let diags = json["diagnostics"].as_array().unwrap();
    let devname = diags
        .iter()
        .find(|d| d["message"].as_str().unwrap().contains("devname"))
        .unwrap();
    assert_eq!(devname["module"], "nomajor");
    let bracket = diags
        .iter()
        .find(|d| d["message"] == "Unmatched bracket in bad[abc")
        .unwrap();
    assert!(bracket["module"].is_string(), "{bracket}");
    // Keys come in the documented order.
    let text = String::from_utf8(fs::read(&report).unwrap()).unwrap();
    let at = |key: &str| text.find(&format!("\"{key}\"")).unwrap();
    assert!(at("schema") < at("tool") && at("status") < at("error") && at("error") < at("summary"));

    let run = build(
        &tree("cycle"),
        &tmp.path().join("out2"),
        &["--report", report.to_str().unwrap()],
    );
    assert_eq!(run.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&fs::read(&report).unwrap()).unwrap();
    assert_eq!(json["status"], "failed");
    assert_eq!(
        json["error"],
        "modules depend on each other in a cycle; nothing was written"
    );
}

#[test]
fn a_closed_stdout_ends_quietly() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kmodidx"))
        .args([
            "build",
            "--from",
            tree("basic").to_str().unwrap(),
            "--out",
            "-",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before anything is read.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let text = stderr(&out);
    assert!(!text.contains("panicked"), "{text}");
    assert!(!text.contains("Broken pipe"), "{text}");
    assert!(out.status.code().is_some(), "killed by a signal");
}
