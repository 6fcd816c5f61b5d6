//! Hostile and unlucky situations on the *output* side (issue 11's
//! findings 1, 7, 10, 13, 14 and 15): special files as targets, standard
//! output and error that fail or close, runs killed mid-write, existing
//! output directories, doubled manifest entries and module names that
//! would break the line formats. Every run goes through the harness of
//! `hostile.rs` ([`Case::run`]): a timeout, peak RSS held to the README's
//! bound, the exit status (never 101), the message, and nothing written
//! outside `--out` (and the files a case names). Refused runs pass no
//! `--out`, so they may write nothing at all.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Read;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::hostile::{fifo, Case, Expect};

const VERSION: &str = "6.1.0-fixture";
/// Above Linux's largest PID (2^22): never a running process.
const DEAD_PID: u32 = 4_194_305;
/// Every run here is small: it must end within this.
const TIMEOUT_SECS: u64 = 60;

fn basic() -> PathBuf {
    repo().join("fixtures/trees/basic")
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

fn as_os(args: &[OsString]) -> Vec<&OsStr> {
    args.iter().map(OsString::as_os_str).collect()
}

/// A run that must end with `status` (within [`TIMEOUT_SECS`]).
fn expect(status: i32) -> Expect<'static> {
    Expect {
        status,
        timeout_secs: TIMEOUT_SECS,
        ..Expect::default()
    }
}

/// `program ARGS` in the case's directory, bounded in time, for runs that
/// are not held to [`Case::run`]'s rules (live depmod, a run that both
/// writes and fails).
fn bounded(case: &Case, program: &Path, args: &[&OsStr], stdout: Sink, stderr: Sink) -> Bounded {
    let timeout = Duration::from_secs(TIMEOUT_SECS);
    run_bounded_with(program, args, &[], &case.path(""), timeout, stdout, stderr)
}

/// `kmodidx build --from FROM --out OUT EXTRA...`, which must succeed,
/// writing only `--out` and `also_writes`.
fn build_ok(
    case: &Case,
    from: &Path,
    out: &Path,
    extra: &[&str],
    also_writes: &[&Path],
) -> Bounded {
    let expect = Expect {
        also_writes,
        ..expect(0)
    };
    case.build(from, out, extra, &expect)
}

/// `kmodidx build --from FROM --out OUT EXTRA...`, which must be refused
/// with status 2 and `message`, writing nothing anywhere (`--out` may
/// exist beforehand).
fn build_refused(case: &Case, from: &Path, out: &Path, extra: &[&str], message: &str) {
    let mut args: Vec<OsString> = os(&["build", "--from"]);
    args.extend([from.into(), "--out".into(), out.into()]);
    args.extend(os(extra));
    let expect = Expect {
        names: &[message],
        ..expect(2)
    };
    case.run(&as_os(&args), None, &expect);
}

/// Makes a character device node, which needs root (CAP_MKNOD). Without
/// it the test is skipped loudly, except in CI, which runs as root.
fn mknod_char(path: &Path, major: u32, minor: u32) -> bool {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; mknod only reads it.
    let made = unsafe {
        libc::mknod(
            c.as_ptr(),
            libc::S_IFCHR | 0o666,
            libc::makedev(major, minor),
        )
    } == 0;
    if !made {
        missing("root, to make a device node");
    }
    made
}

fn is_char_device(path: &Path) -> bool {
    fs::symlink_metadata(path)
        .unwrap()
        .file_type()
        .is_char_device()
}

fn is_fifo(path: &Path) -> bool {
    fs::symlink_metadata(path).unwrap().file_type().is_fifo()
}

/// Entries of `dir` whose names start with `prefix`, sorted.
fn entries_starting(dir: &Path, prefix: &str) -> Vec<String> {
    let mut found: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    found.sort();
    found
}

// ---------------------------------------------------------------------------
// Finding 1: device nodes and FIFOs as targets.

/// `build --OPTION fakenull`, with `fakenull` a second /dev/null (major
/// 1, minor 3, the reproducer): the file is streamed into the node,
/// which stays.
fn streams_into_a_device_node(option: &str) {
    let case = Case::new();
    let null = case.path("fakenull");
    if !mknod_char(&null, 1, 3) {
        return;
    }
    build_ok(
        &case,
        &basic(),
        &case.path("out"),
        &[option, null.to_str().unwrap()],
        &[&null],
    );
    assert!(is_char_device(&null), "{option} replaced the device node");
}

#[test]
fn report_into_a_device_node_streams_and_keeps_the_node() {
    streams_into_a_device_node("--report");
}

#[test]
fn manifest_into_a_device_node_streams_and_keeps_the_node() {
    streams_into_a_device_node("--manifest");
}

#[test]
fn out_refuses_a_device_node() {
    for name in ["fakenull", "fakenull.tar"] {
        let case = Case::new();
        let null = case.path(name);
        if !mknod_char(&null, 1, 3) {
            return;
        }
        let message = format!("{}: refusing to replace a character device", null.display());
        build_refused(&case, &basic(), &null, &[], &message);
        assert!(is_char_device(&null), "--out {name} replaced the node");
    }
}

/// A FIFO at `name`, as `--out` itself (no `option`) or as the file of
/// `option`: refused (`why`, after its path), and still a FIFO.
fn fifo_refused(name: &str, option: Option<&str>, why: &str) {
    let case = Case::new();
    let path = case.path(name);
    fifo(&path);
    let (out, extra) = match option {
        None => (path.clone(), Vec::new()),
        Some(option) => (case.path("out"), vec![option, path.to_str().unwrap()]),
    };
    let message = format!("{}: {why}", path.display());
    build_refused(&case, &basic(), &out, &extra, &message);
    assert!(is_fifo(&path));
}

#[test]
fn out_refuses_a_fifo() {
    fifo_refused("idx.tar", None, "refusing to replace a FIFO");
}

#[test]
fn report_into_a_fifo_without_reader_fails_at_once() {
    fifo_refused(
        "report.json",
        Some("--report"),
        "no process is reading from this FIFO",
    );
}

#[test]
fn manifest_into_a_fifo_with_a_reader_streams() {
    use std::os::unix::fs::OpenOptionsExt;
    let case = Case::new();
    let manifest = case.path("manifest.json");
    fifo(&manifest);
    // A reader is there before the build starts (non-blocking, so opening
    // it needs no writer yet).
    let mut reader = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&manifest)
        .unwrap();
    let out = case.path("out");
    build_ok(
        &case,
        &basic(),
        &out,
        &["--manifest", manifest.to_str().unwrap()],
        &[&manifest],
    );
    let mut got = Vec::new();
    reader.read_to_end(&mut got).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&got).unwrap();
    assert_eq!(json["kernel_version"], VERSION);
    assert!(is_fifo(&manifest));
    assert!(!out.join("kmodidx.manifest.json").exists());
}

#[test]
fn report_to_dev_stdout_streams() {
    let case = Case::new();
    let run = build_ok(
        &case,
        &basic(),
        &case.path("out"),
        &["--report", "/dev/stdout"],
        &[],
    );
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["status"], "ok");
}

// ---------------------------------------------------------------------------
// Finding 7: standard output and error that fail or close.

/// `kmodidx verify` of a fresh build of the basic tree (with `modules.dep`
/// changed when `damaged`), its standard output going to `sink`; it must
/// end with `status`.
fn verify_into(sink: Sink, damaged: bool, status: i32) -> Bounded {
    let case = Case::new();
    let out = case.path("out");
    build_ok(&case, &basic(), &out, &[], &[]);
    if damaged {
        fs::write(case.module_dir(&out).join("modules.dep"), b"changed\n").unwrap();
    }
    let expect = Expect {
        stdout: sink,
        ..expect(status)
    };
    case.run(&["verify".as_ref(), out.as_os_str()], None, &expect)
}

#[test]
fn verify_into_a_closed_pipe_ends_quietly() {
    let run = verify_into(Sink::ClosedPipe, false, 0);
    assert_eq!(run.stderr, "");
}

#[test]
fn verify_differences_into_a_closed_pipe_keep_status_1() {
    let run = verify_into(Sink::ClosedPipe, true, 1);
    assert!(!run.stderr.contains("Broken pipe"), "{}", run.stderr);
}

#[test]
fn verify_into_dev_full_fails_with_a_message() {
    let run = verify_into(Sink::Full, false, 2);
    assert_eq!(
        run.stderr,
        "kmodidx: error: cannot write to standard output: No space left on device\n"
    );
}

/// `kmodidx ARGS > /dev/full` fails with `status` and a message from
/// `prog` naming standard output.
fn full_stdout_fails(args: &[&str], status: i32, prog: &str) {
    let message =
        format!("{prog}: error: cannot write to standard output: No space left on device\n");
    let expect = Expect {
        stdout: Sink::Full,
        names: &[&message],
        ..expect(status)
    };
    Case::new().run(&as_os(&os(args)), None, &expect);
}

#[test]
fn help_and_version_into_dev_full_fail_with_a_message() {
    for args in [
        &["--help"][..],
        &["--version"],
        &["help"],
        &["build", "--help"],
        &["verify", "-h"],
        &["completions", "bash"],
        &["man"],
    ] {
        full_stdout_fails(args, 2, "kmodidx");
    }
}

#[test]
fn depmod_help_and_version_into_dev_full_fail_with_status_1() {
    full_stdout_fails(&["depmod", "-h"], 1, "depmod");
    full_stdout_fails(&["depmod", "-V"], 1, "depmod");
}

#[test]
fn depmod_show_into_dev_full_fails_with_status_1() {
    let root = basic();
    full_stdout_fails(
        &["depmod", "-n", "-b", root.to_str().unwrap(), VERSION],
        1,
        "depmod",
    );
}

#[test]
fn help_into_a_closed_pipe_ends_quietly() {
    for args in [&["--help"][..], &["build", "--help"], &["depmod", "-h"]] {
        let expect = Expect {
            stdout: Sink::ClosedPipe,
            ..expect(0)
        };
        let run = Case::new().run(&as_os(&os(args)), None, &expect);
        assert_eq!(run.stderr, "", "{args:?}");
    }
}

/// `kmodidx query ...`, `kmodidx diff` and `kmodidx check` on a fresh
/// staged build of the basic tree, standard output going to `sink`, each
/// ending with `status`: their standard error.
fn query_into(sink: Sink, status: i32) -> Vec<String> {
    let case = Case::new();
    let out = case.path("out");
    build_ok(&case, &basic(), &out, &["--staged"], &[]);
    let bin = case.module_dir(&out).join("modules.dep.bin");
    let tree = basic();
    let commands: [Vec<&OsStr>; 4] = [
        vec!["query".as_ref(), "dump".as_ref(), bin.as_os_str()],
        vec![
            "query".as_ref(),
            "deps".as_ref(),
            "--from".as_ref(),
            out.as_os_str(),
            "dia_top".as_ref(),
        ],
        // No difference (the output holds the tree's modules), and no
        // problem, which --json prints all the same.
        vec![
            "diff".as_ref(),
            "--json".as_ref(),
            tree.as_os_str(),
            out.as_os_str(),
        ],
        vec![
            "check".as_ref(),
            "--json".as_ref(),
            "--from".as_ref(),
            out.as_os_str(),
        ],
    ];
    let expect = Expect {
        stdout: sink,
        ..expect(status)
    };
    commands
        .iter()
        .map(|args| case.run(args, None, &expect).stderr)
        .collect()
}

#[test]
fn query_diff_and_check_into_a_closed_pipe_end_quietly() {
    for stderr in query_into(Sink::ClosedPipe, 0) {
        assert!(!stderr.contains("cannot write"), "{stderr}");
    }
}

#[test]
fn query_diff_and_check_into_dev_full_fail_with_a_message() {
    for stderr in query_into(Sink::Full, 2) {
        assert!(
            stderr.ends_with(
                "kmodidx: error: cannot write to standard output: No space left on device\n"
            ),
            "{stderr}"
        );
    }
}

#[test]
fn failing_build_into_a_closed_pipe_keeps_its_status() {
    // `kmodidx build ... 2>&1 | head -0`: both streams go to pipes nobody
    // reads.
    let case = Case::new();
    let expect = Expect {
        stdout: Sink::ClosedPipe,
        stderr: Sink::ClosedPipe,
        ..expect(2)
    };
    case.build(&case.path("missing-input"), &case.path("out"), &[], &expect);
}

#[test]
fn build_with_stderr_on_dev_full_fails() {
    // The basic tree's build warns; those warnings cannot be written. The
    // index is written all the same, so this is not a Case run (which
    // holds a failed build to writing nothing).
    let case = Case::new();
    let (tree, out) = (basic(), case.path("out"));
    let args = [
        "build".as_ref(),
        "--from".as_ref(),
        tree.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ];
    let kmodidx = Path::new(env!("CARGO_BIN_EXE_kmodidx"));
    let run = bounded(&case, kmodidx, &args, Sink::Capture, Sink::Full);
    assert_eq!(run.status, Some(2));
}

/// A copy of the basic tree (which holds no index) with `copies` more
/// modules that each need a symbol of `core_base`, so that `depmod -v`
/// prints more than a stdio buffer (4 KiB).
fn chatty_tree(case: &Case, name: &str, copies: usize) -> PathBuf {
    let tree = case.basic(name);
    let m = case.module_dir(&tree);
    fs::create_dir_all(m.join("kernel/extra")).unwrap();
    for i in 0..copies {
        fs::copy(
            m.join("kernel/lib/core_util.ko"),
            m.join(format!("kernel/extra/chatty{i}.ko")),
        )
        .unwrap();
    }
    tree
}

#[test]
fn depmod_verbose_into_a_closed_pipe_writes_no_index_as_kmod() {
    let case = Case::new();
    let ours = chatty_tree(&case, "ours", 100);
    let args = [
        "depmod".as_ref(),
        "-v".as_ref(),
        "-b".as_ref(),
        ours.as_os_str(),
        VERSION.as_ref(),
    ];
    let expect = Expect {
        stdout: Sink::ClosedPipe,
        ..expect(1)
    };
    // Quiet, and no index: Case::run holds it to writing nothing.
    let run = case.run(&args, None, &expect);
    assert!(!run.stderr.contains("cannot write"), "{}", run.stderr);
    // kmod dies of SIGPIPE at its first flush, before it writes the index.
    let Some(depmod) = live_depmod30() else {
        return;
    };
    let theirs = chatty_tree(&case, "theirs", 100);
    let args = [
        "-v".as_ref(),
        "-b".as_ref(),
        theirs.as_os_str(),
        VERSION.as_ref(),
    ];
    let run = bounded(&case, &depmod, &args, Sink::ClosedPipe, Sink::Capture);
    assert_eq!(run.signal, Some(libc::SIGPIPE), "{}", run.stderr);
    assert!(!case.module_dir(&theirs).join("modules.dep").exists());
}

// ---------------------------------------------------------------------------
// Finding 10: temporaries of killed runs.

/// Kills (`kill -9`) a staged build of a tree with a large module while it
/// writes `out_name`, checks that its temporary is left, then that the next
/// build removes it and nothing else.
fn killed_build_is_cleaned_up_by_the_next(out_name: &str) {
    let case = Case::new();
    let tree = case.basic("tree");
    // 48 MiB (sparse) to copy and hash keep the writing phase long enough
    // to be caught.
    let modules = case.module_dir(&tree);
    let big = modules.join("kernel/zz_big.ko");
    fs::copy(modules.join("kernel/lib/core_util.ko"), &big).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&big)
        .unwrap()
        .set_len(48 << 20)
        .unwrap();
    let dir = case.path("o");
    fs::create_dir(&dir).unwrap();
    let out = dir.join(out_name);
    // Temporaries that must stay: another target's of a dead process, and
    // this target's of a live one (this test).
    let keep = [
        format!(".other.kmodidx-tmp-{DEAD_PID}-abcdef"),
        format!(".{out_name}.kmodidx-tmp-{}-abcdef", std::process::id()),
    ];
    for name in &keep {
        fs::write(dir.join(name), b"not yours").unwrap();
    }
    // This run is killed by the test itself, so it is not a Case run.
    let mut left = None;
    for _attempt in 0..5 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kmodidx"))
            .args(["build", "-q", "--staged", "--from"])
            .arg(&tree)
            .arg("--out")
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let ours = format!(".{out_name}.kmodidx-tmp-{}-", child.id());
        let started = Instant::now();
        let seen = loop {
            if !entries_starting(&dir, &ours).is_empty() {
                child.kill().unwrap();
                break true;
            }
            if child.try_wait().unwrap().is_some() {
                break false;
            }
            assert!(
                started.elapsed() < Duration::from_secs(TIMEOUT_SECS),
                "the build never wrote"
            );
            std::thread::sleep(Duration::from_millis(1));
        };
        let status = child.wait().unwrap();
        if seen && status.signal() == Some(libc::SIGKILL) {
            left = Some(entries_starting(&dir, &ours));
            break;
        }
        // Too fast to catch: start again from nothing.
        let _ = fs::remove_dir_all(&out);
        let _ = fs::remove_file(&out);
    }
    let left = left.expect("a build was killed while writing");
    assert_eq!(left.len(), 1, "the killed run left its temporary: {left:?}");
    assert!(!out.exists(), "the killed run never finished");

    // The next build removes the dead run's temporary (a write beside
    // --out, allowed for exactly that path) and nothing else.
    let stale = dir.join(&left[0]);
    build_ok(&case, &tree, &out, &["--staged"], &[&stale]);
    assert!(!stale.exists(), "the next run removed {}", left[0]);
    let mut want: Vec<String> = keep.to_vec();
    want.push(out_name.to_string());
    want.sort();
    assert_eq!(entries_starting(&dir, ""), want);
    case.run(&["verify".as_ref(), out.as_os_str()], None, &expect(0));
}

#[test]
fn killed_directory_build_is_cleaned_up_by_the_next() {
    killed_build_is_cleaned_up_by_the_next("out");
}

#[test]
fn killed_archive_build_is_cleaned_up_by_the_next() {
    killed_build_is_cleaned_up_by_the_next("out.tar");
}

// ---------------------------------------------------------------------------
// Finding 13: existing output directories, and files of their own inside
// --out.

fn assert_verifies(case: &Case, out: &Path, manifest: Option<&Path>) {
    let mut args: Vec<&OsStr> = vec!["verify".as_ref()];
    if let Some(m) = manifest {
        args.extend(["--manifest".as_ref(), m.as_os_str()]);
    }
    args.push(out.as_os_str());
    case.run(&args, None, &expect(0));
}

#[test]
fn existing_empty_directory_takes_the_output() {
    // As Bazel creates it before the action runs.
    let case = Case::new();
    let out = case.path("out");
    fs::create_dir(&out).unwrap();
    build_ok(&case, &basic(), &out, &[], &[]);
    assert_verifies(&case, &out, None);
}

/// Builds into `out` holding `file` (relative to `out`) that no earlier
/// output accounts for (after an earlier output, if `earlier`): refused,
/// naming the file and `why` (given `out`), and nothing changes.
fn foreign_file_refused(earlier: bool, file: &str, why: fn(&Path) -> String) {
    let case = Case::new();
    let out = case.path("out");
    if earlier {
        build_ok(&case, &basic(), &out, &[], &[]);
    }
    let foreign = out.join(file);
    fs::create_dir_all(foreign.parent().unwrap()).unwrap();
    fs::write(&foreign, b"mine\n").unwrap();
    let message = format!(
        "{}: the directory is not empty, and {} is not part of an earlier kmodidx output there ({})",
        out.display(),
        foreign.display(),
        why(&out)
    );
    build_refused(&case, &basic(), &out, &[], &message);
}

#[test]
fn existing_non_empty_directory_is_refused_and_left_alone() {
    foreign_file_refused(false, "etc/hostname", |_| {
        "there is no kmodidx.manifest.json at its root".into()
    });
}

#[test]
fn file_added_to_an_earlier_output_is_refused() {
    let path = format!("lib/modules/{VERSION}/notes.txt");
    foreign_file_refused(true, &path, |out| {
        format!(
            "{} does not list it",
            out.join("kmodidx.manifest.json").display()
        )
    });
}

#[test]
fn earlier_output_is_replaced_whole() {
    let case = Case::new();
    let out = case.path("out");
    // A staged output, then an index only: the module copies go.
    build_ok(&case, &basic(), &out, &["--staged"], &[]);
    assert!(case
        .module_dir(&out)
        .join("kernel/lib/core_base.ko")
        .exists());
    build_ok(&case, &basic(), &out, &[], &[]);
    assert!(
        !case.module_dir(&out).join("kernel").exists(),
        "the earlier module copies are gone"
    );
    assert_verifies(&case, &out, None);
    // With the manifest moved out of the output, it is recognised there.
    let manifest = case.path("m.json");
    let m = manifest.to_str().unwrap();
    build_ok(&case, &basic(), &out, &["--manifest", m], &[&manifest]);
    assert!(
        !out.join("kmodidx.manifest.json").exists(),
        "the stale manifest is gone"
    );
    build_ok(
        &case,
        &basic(),
        &out,
        &["--staged", "--manifest", m],
        &[&manifest],
    );
    assert_verifies(&case, &out, Some(&manifest));
}

/// `build --out OUT OPTION PATH` (`PATH` relative to the case), where
/// `PATH` is the output or inside it: refused before anything is built,
/// naming the `what` file, the output and the path.
fn side_file_refused(out: &str, option: &str, path: &str, what: &str) {
    let case = Case::new();
    let (out, path) = (case.path(out), case.path(path));
    if out.extension().is_none() {
        fs::create_dir(&out).unwrap();
    }
    let message = format!(
        "{}: the {what} file must not be the output {} or lie inside it",
        path.display(),
        out.display()
    );
    build_refused(
        &case,
        &basic(),
        &out,
        &[option, path.to_str().unwrap()],
        &message,
    );
}

#[test]
fn report_inside_a_directory_output_is_refused() {
    side_file_refused("out", "--report", "out/report.json", "report");
}

#[test]
fn manifest_inside_a_directory_output_is_refused() {
    // Through `..` and a directory yet to be made, still inside.
    side_file_refused("out", "--manifest", "out/../out/sub/m.json", "manifest");
}

#[test]
fn kernel_version_file_inside_a_directory_output_is_refused() {
    side_file_refused(
        "out",
        "--kernel-version-file",
        "out/version",
        "kernel version",
    );
}

#[test]
fn report_on_the_archive_output_is_refused() {
    side_file_refused("idx.tar", "--report", "idx.tar", "report");
}

#[test]
fn report_and_manifest_on_one_file_are_refused() {
    let case = Case::new();
    let side = case.path("side.json");
    let same = case.path("./side.json");
    let message = format!(
        "{}: the report and the manifest would be written to the same file",
        same.display()
    );
    build_refused(
        &case,
        &basic(),
        &case.path("out"),
        &[
            "--report",
            side.to_str().unwrap(),
            "--manifest",
            same.to_str().unwrap(),
        ],
        &message,
    );
}

// ---------------------------------------------------------------------------
// Finding 14: a manifest that lists a file twice.

#[test]
fn verify_rejects_a_manifest_listing_a_file_twice() {
    let case = Case::new();
    let out = case.path("out");
    build_ok(&case, &basic(), &out, &[], &[]);
    let path = out.join("kmodidx.manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    let files = manifest["files"].as_array_mut().unwrap();
    let first = files[0].clone();
    files.insert(1, first.clone());
    fs::write(&path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    let message = format!(
        "kmodidx: error: {}: the manifest lists `{}` more than once\n",
        path.display(),
        first["path"].as_str().unwrap()
    );
    let expect = Expect {
        names: &[&message],
        ..expect(2)
    };
    case.run(&["verify".as_ref(), out.as_os_str()], None, &expect);
}

// ---------------------------------------------------------------------------
// Finding 15: module file names that break the line formats.

/// A copy of the basic tree at `copy` with one more module,
/// `kernel/lib/<name>`.
fn tree_with_module_named(case: &Case, copy: &str, name: &str) -> PathBuf {
    let tree = case.basic(copy);
    let lib = case.module_dir(&tree).join("kernel/lib");
    fs::copy(lib.join("core_util.ko"), lib.join(name)).unwrap();
    tree
}

#[test]
fn build_refuses_a_module_name_with_a_newline() {
    let case = Case::new();
    let tree = tree_with_module_named(&case, "tree", "evil\ninjected.ko");
    let message = format!(
        "kmodidx: error: `/lib/modules/{VERSION}/kernel/lib/evil\\ninjected.ko`: the module's file name holds a newline"
    );
    build_refused(&case, &tree, &case.path("out"), &[], &message);
}

#[test]
fn build_refuses_a_module_name_with_a_colon() {
    let case = Case::new();
    let tree = tree_with_module_named(&case, "tree", "a: b.ko");
    build_refused(
        &case,
        &tree,
        &case.path("out"),
        &[],
        "kernel/lib/a: b.ko`: the module's file name holds a colon",
    );
}

#[test]
fn depmod_drop_in_writes_a_newline_name_as_kmod_does() {
    let case = Case::new();
    let ours = tree_with_module_named(&case, "ours", "evil\ninjected.ko");
    let modules = case.module_dir(&ours);
    let expect = Expect {
        env: &[("KMODIDX_COMPAT", "kmod30")],
        ..expect(0)
    };
    case.run(
        &[
            "depmod".as_ref(),
            "-b".as_ref(),
            ours.as_os_str(),
            VERSION.as_ref(),
        ],
        Some(&modules),
        &expect,
    );
    let dep = fs::read_to_string(modules.join("modules.dep")).unwrap();
    assert!(
        dep.contains("kernel/lib/evil\ninjected.ko: kernel/lib/core_base.ko\n"),
        "{dep}"
    );
    let Some(depmod) = live_depmod30() else {
        return;
    };
    let theirs = tree_with_module_named(&case, "theirs", "evil\ninjected.ko");
    let args = ["-b".as_ref(), theirs.as_os_str(), VERSION.as_ref()];
    let run = bounded(&case, &depmod, &args, Sink::Capture, Sink::Capture);
    assert_eq!(run.status, Some(0), "{}", run.stderr);
    assert_same_files(
        "depmod -b with a newline in a module name",
        &depmod_written(&case.module_dir(&theirs)),
        &depmod_written(&modules),
    );
}
