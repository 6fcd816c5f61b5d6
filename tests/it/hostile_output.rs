//! Hostile and unlucky situations on the *output* side (issue 11's
//! findings 1, 7, 10, 13, 14 and 15): special files as targets, standard
//! output and error that fail or close, runs killed mid-write, existing
//! output directories, doubled manifest entries and module names that
//! would break the line formats. Every run is bounded in time, and a panic
//! (status 101) or a death by signal fails the test unless the test kills
//! the run itself.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

const VERSION: &str = "6.1.0-fixture";
/// Above Linux's largest PID (2^22): never a running process.
const DEAD_PID: u32 = 4_194_305;
/// Every run must end within this.
const TIME_LIMIT: Duration = Duration::from_secs(60);

fn basic() -> PathBuf {
    repo().join("fixtures/trees/basic")
}

/// What a run gave.
struct Run {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: String,
}

impl Run {
    fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// Where a run's standard output or error goes.
enum Sink {
    /// Captured.
    Capture,
    /// A pipe whose reading end is already closed (as after `| head -1`).
    ClosedPipe,
    /// `/dev/full`: every write fails with "No space left on device".
    Full,
}

impl Sink {
    fn stdio(&self) -> Stdio {
        match self {
            Sink::Capture => Stdio::piped(),
            Sink::ClosedPipe => Stdio::from(closed_pipe()),
            Sink::Full => Stdio::from(fs::File::create("/dev/full").unwrap()),
        }
    }
}

/// The writing end of a pipe nobody reads.
fn closed_pipe() -> OwnedFd {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two descriptors, which are then owned here.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both descriptors were just created and are owned by nobody else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    write
}

fn command(program: &Path, args: &[&OsStr], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Waits for `child` within [`TIME_LIMIT`], collecting what was captured.
fn finish(mut child: Child, what: &str) -> Run {
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > TIME_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: did not finish within {TIME_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Run {
        status,
        stdout: out.join().unwrap(),
        stderr: String::from_utf8_lossy(&err.join().unwrap()).into_owned(),
    }
}

/// Runs `program` with `args`, standard output and error as given; fails
/// on a panic or a signal.
fn run_program(program: &Path, args: &[&OsStr], env: &[(&str, &str)], out: Sink, err: Sink) -> Run {
    let what = format!("{} {args:?}", program.display());
    let child = command(program, args, env)
        .stdout(out.stdio())
        .stderr(err.stdio())
        .spawn()
        .unwrap();
    let run = finish(child, &what);
    assert_ne!(run.code(), Some(101), "{what} panicked: {}", run.stderr);
    assert!(
        !run.stderr.contains("panicked"),
        "{what} panicked: {}",
        run.stderr
    );
    assert!(
        run.status.signal().is_none(),
        "{what} was killed: {:?}",
        run.status
    );
    run
}

fn kmodidx_path() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kmodidx"))
}

/// Runs kmodidx, capturing standard output and error.
fn run(args: &[&OsStr]) -> Run {
    run_program(&kmodidx_path(), args, &[], Sink::Capture, Sink::Capture)
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// `kmodidx build -q --from FROM --out OUT EXTRA...`.
fn build(from: &Path, out: &Path, extra: &[&str]) -> Run {
    let mut args: Vec<OsString> = os(&["build", "-q", "--from"]);
    args.extend([from.into(), "--out".into(), out.into()]);
    args.extend(os(extra));
    run(&args.iter().map(OsString::as_os_str).collect::<Vec<_>>())
}

fn verify(out: &Path) -> Run {
    run(&["verify".as_ref(), out.as_os_str()])
}

fn assert_verifies(out: &Path) {
    let v = verify(out);
    assert_eq!(
        v.code(),
        Some(0),
        "verify {}: {}{}",
        out.display(),
        String::from_utf8_lossy(&v.stdout),
        v.stderr
    );
}

/// A copy of the basic fixture tree at `dir/name`.
fn copy_basic(dir: &Path, name: &str) -> PathBuf {
    let to = dir.join(name);
    let status = Command::new("cp")
        .arg("-a")
        .arg(basic())
        .arg(&to)
        .status()
        .unwrap();
    assert!(status.success());
    to
}

fn module_dir(tree: &Path) -> PathBuf {
    tree.join("lib/modules").join(VERSION)
}

/// Makes a character device node, which needs root (CAP_MKNOD). Without
/// it the test is skipped loudly, except in CI, where it runs as root.
fn mknod_char(path: &Path, major: u32, minor: u32) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; mknod only reads it.
    let made = unsafe {
        libc::mknod(
            c.as_ptr(),
            libc::S_IFCHR | 0o666,
            libc::makedev(major, minor),
        )
    } == 0;
    if !made {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root and can make device nodes"
        );
        eprintln!("\n*** SKIPPED: making a device node needs root ***\n");
    }
    made
}

fn mkfifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only reads it.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
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

// ---------------------------------------------------------------------------
// Finding 1: device nodes and FIFOs as targets.

/// `build --OPTION fakenull`, with `fakenull` a second /dev/null (major
/// 1, minor 3, the reproducer): the file is streamed into the node,
/// which stays.
fn streams_into_a_device_node(option: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let null = tmp.path().join("fakenull");
    if !mknod_char(&null, 1, 3) {
        return;
    }
    let r = build(
        &basic(),
        &tmp.path().join("out"),
        &[option, null.to_str().unwrap()],
    );
    assert_eq!(r.code(), Some(0), "{}", r.stderr);
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
    let tmp = tempfile::tempdir().unwrap();
    for name in ["fakenull", "fakenull.tar"] {
        let null = tmp.path().join(name);
        if !mknod_char(&null, 1, 3) {
            return;
        }
        let r = build(&basic(), &null, &[]);
        assert_eq!(r.code(), Some(2), "{}", r.stderr);
        assert!(
            r.stderr.contains(&format!(
                "{}: refusing to replace a character device",
                null.display()
            )),
            "{}",
            r.stderr
        );
        assert!(
            is_char_device(&null),
            "--out {name} replaced the device node"
        );
    }
}

#[test]
fn out_refuses_a_fifo() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("idx.tar");
    mkfifo(&fifo);
    let r = build(&basic(), &fifo, &[]);
    assert_eq!(r.code(), Some(2), "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("{}: refusing to replace a FIFO", fifo.display())),
        "{}",
        r.stderr
    );
    assert!(is_fifo(&fifo));
    assert_eq!(
        fs::read_dir(tmp.path()).unwrap().count(),
        1,
        "nothing else is left"
    );
}

#[test]
fn report_into_a_fifo_without_reader_fails_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("report.json");
    mkfifo(&fifo);
    let started = Instant::now();
    let r = build(
        &basic(),
        &tmp.path().join("out"),
        &["--report", fifo.to_str().unwrap()],
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "waited for a reader"
    );
    assert_eq!(r.code(), Some(2), "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "{}: no process is reading from this FIFO",
            fifo.display()
        )),
        "{}",
        r.stderr
    );
    assert!(is_fifo(&fifo));
}

#[test]
fn manifest_into_a_fifo_with_a_reader_streams() {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("manifest.json");
    mkfifo(&fifo);
    // A reader is there before the build starts (non-blocking, so opening
    // it needs no writer yet).
    let mut reader = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let out = tmp.path().join("out");
    let r = build(&basic(), &out, &["--manifest", fifo.to_str().unwrap()]);
    assert_eq!(r.code(), Some(0), "{}", r.stderr);
    let mut got = Vec::new();
    reader.read_to_end(&mut got).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&got).unwrap();
    assert_eq!(manifest["kernel_version"], VERSION);
    assert!(is_fifo(&fifo));
    assert!(!out.join("kmodidx.manifest.json").exists());
}

#[test]
fn report_to_dev_stdout_streams() {
    let tmp = tempfile::tempdir().unwrap();
    let r = build(
        &basic(),
        &tmp.path().join("out"),
        &["--report", "/dev/stdout"],
    );
    assert_eq!(r.code(), Some(0), "{}", r.stderr);
    let report: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(report["status"], "ok");
}

// ---------------------------------------------------------------------------
// Finding 7: standard output and error that fail or close.

/// `kmodidx verify` of a fresh build of the basic tree (with `modules.dep`
/// changed when `damaged`), its standard output going to `sink`.
fn verify_into(sink: Sink, damaged: bool) -> Run {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    assert_eq!(build(&basic(), &out, &[]).code(), Some(0));
    if damaged {
        fs::write(module_dir(&out).join("modules.dep"), b"changed\n").unwrap();
    }
    let args = ["verify".as_ref(), out.as_os_str()];
    run_program(&kmodidx_path(), &args, &[], sink, Sink::Capture)
}

#[test]
fn verify_into_a_closed_pipe_ends_quietly() {
    let r = verify_into(Sink::ClosedPipe, false);
    assert_eq!(r.code(), Some(0), "{}", r.stderr);
    assert_eq!(r.stderr, "");
}

#[test]
fn verify_differences_into_a_closed_pipe_keep_status_1() {
    let r = verify_into(Sink::ClosedPipe, true);
    assert_eq!(r.code(), Some(1), "{}", r.stderr);
    assert!(!r.stderr.contains("Broken pipe"), "{}", r.stderr);
}

#[test]
fn verify_into_dev_full_fails_with_a_message() {
    let r = verify_into(Sink::Full, false);
    assert_eq!(r.code(), Some(2), "{}", r.stderr);
    assert_eq!(
        r.stderr,
        "kmodidx: error: cannot write to standard output: No space left on device\n"
    );
}

/// `kmodidx ARGS > /dev/full` fails with a message naming standard output.
fn assert_full_stdout_fails(args: &[&str], status: i32, prog: &str) {
    let args: Vec<OsString> = os(args);
    let args: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
    let r = run_program(&kmodidx_path(), &args, &[], Sink::Full, Sink::Capture);
    assert_eq!(r.code(), Some(status), "{args:?}: {}", r.stderr);
    assert!(
        r.stderr.ends_with(&format!(
            "{prog}: error: cannot write to standard output: No space left on device\n"
        )),
        "{args:?}: {}",
        r.stderr
    );
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
        assert_full_stdout_fails(args, 2, "kmodidx");
    }
}

#[test]
fn depmod_help_and_version_into_dev_full_fail_with_status_1() {
    assert_full_stdout_fails(&["depmod", "-h"], 1, "depmod");
    assert_full_stdout_fails(&["depmod", "-V"], 1, "depmod");
}

#[test]
fn depmod_show_into_dev_full_fails_with_status_1() {
    let root = basic();
    assert_full_stdout_fails(
        &["depmod", "-n", "-b", root.to_str().unwrap(), VERSION],
        1,
        "depmod",
    );
}

#[test]
fn help_into_a_closed_pipe_ends_quietly() {
    for args in [&["--help"][..], &["build", "--help"], &["depmod", "-h"]] {
        let args: Vec<OsString> = os(args);
        let args: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
        let r = run_program(&kmodidx_path(), &args, &[], Sink::ClosedPipe, Sink::Capture);
        assert_eq!(r.code(), Some(0), "{args:?}: {}", r.stderr);
        assert_eq!(r.stderr, "", "{args:?}");
    }
}

/// `kmodidx query ...` and `kmodidx diff` on a fresh build of the basic
/// tree, standard output to `sink`: the status and standard error.
fn query_into(sink: fn() -> Sink) -> Vec<(Vec<String>, Option<i32>, String)> {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    assert_eq!(build(&basic(), &out, &[]).code(), Some(0));
    let out_text = out.to_str().unwrap().to_string();
    let bin = module_dir(&out).join("modules.dep.bin");
    let basic_text = basic().to_str().unwrap().to_string();
    let commands: Vec<Vec<String>> = vec![
        vec!["query".into(), "dump".into(), bin.to_str().unwrap().into()],
        vec![
            "query".into(),
            "deps".into(),
            "--from".into(),
            out_text.clone(),
            "dia_top".into(),
        ],
        // No difference (an index-only output answers as its tree), which
        // --json prints all the same.
        vec!["diff".into(), "--json".into(), basic_text, out_text],
    ];
    commands
        .into_iter()
        .map(|args| {
            let os_args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
            let r = run_program(&kmodidx_path(), &os_args, &[], sink(), Sink::Capture);
            (args, r.code(), r.stderr)
        })
        .collect()
}

#[test]
fn query_and_diff_into_a_closed_pipe_end_quietly() {
    let want = query_into(|| Sink::Capture);
    let statuses: Vec<Option<i32>> = want.iter().map(|(_, status, _)| *status).collect();
    assert_eq!(statuses, [Some(0), Some(0), Some(0)], "{want:?}");
    for ((args, status, stderr), (_, want_status, _)) in
        query_into(|| Sink::ClosedPipe).into_iter().zip(want)
    {
        assert_eq!(status, want_status, "{args:?}: {stderr}");
        assert!(!stderr.contains("cannot write"), "{args:?}: {stderr}");
    }
}

#[test]
fn query_and_diff_into_dev_full_fail_with_a_message() {
    for (args, status, stderr) in query_into(|| Sink::Full) {
        assert_eq!(status, Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.ends_with(
                "kmodidx: error: cannot write to standard output: No space left on device\n"
            ),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn failing_build_into_a_closed_pipe_keeps_its_status() {
    // `kmodidx build ... 2>&1 | head -0`: both streams go to a pipe nobody
    // reads.
    let tmp = tempfile::tempdir().unwrap();
    let pipe = closed_pipe();
    let args = os(&["build", "--from", "/nonexistent-input", "--out"]);
    let child = command(
        &kmodidx_path(),
        &args.iter().map(OsString::as_os_str).collect::<Vec<_>>(),
        &[],
    )
    .arg(tmp.path().join("out"))
    .stdout(Stdio::from(pipe.try_clone().unwrap()))
    .stderr(Stdio::from(pipe))
    .spawn()
    .unwrap();
    let r = finish(child, "build into a closed pipe");
    assert_eq!(r.code(), Some(2));
    assert!(!tmp.path().join("out").exists());
}

#[test]
fn build_with_stderr_on_dev_full_fails() {
    // The basic tree's build warns; those warnings cannot be written.
    let tmp = tempfile::tempdir().unwrap();
    let args = os(&["build", "--from"]);
    let mut args: Vec<OsString> = args;
    args.extend([
        basic().into(),
        "--out".into(),
        tmp.path().join("out").into(),
    ]);
    let args: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
    let r = run_program(&kmodidx_path(), &args, &[], Sink::Capture, Sink::Full);
    assert_eq!(r.code(), Some(2));
}

/// A copy of the basic tree (which holds no index) with `copies` more modules
/// that each need a symbol of `core_base`, so that `depmod -v` prints more
/// than a stdio buffer (4 KiB).
fn chatty_tree(dir: &Path, name: &str, copies: usize) -> PathBuf {
    let tree = copy_basic(dir, name);
    let m = module_dir(&tree);
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
    let tmp = tempfile::tempdir().unwrap();
    let ours = chatty_tree(tmp.path(), "ours", 100);
    let r = run_program(
        &kmodidx_path(),
        &[
            "depmod".as_ref(),
            "-v".as_ref(),
            "-b".as_ref(),
            ours.as_os_str(),
            VERSION.as_ref(),
        ],
        &[],
        Sink::ClosedPipe,
        Sink::Capture,
    );
    assert_eq!(r.code(), Some(1), "{}", r.stderr);
    assert!(
        !r.stderr.contains("cannot write"),
        "a closed pipe is quiet: {}",
        r.stderr
    );
    assert!(
        !module_dir(&ours).join("modules.dep").exists(),
        "no index after stdout closed"
    );
    // kmod dies of SIGPIPE at its first flush, before it writes the index.
    let Some(depmod) = live_depmod30() else {
        return;
    };
    let theirs = chatty_tree(tmp.path(), "theirs", 100);
    let child = command(
        &depmod,
        &[
            "-v".as_ref(),
            "-b".as_ref(),
            theirs.as_os_str(),
            VERSION.as_ref(),
        ],
        &[],
    )
    .stdout(Stdio::from(closed_pipe()))
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let k = finish(child, "depmod -v");
    assert_eq!(k.status.signal(), Some(libc::SIGPIPE));
    assert!(!module_dir(&theirs).join("modules.dep").exists());
}

// ---------------------------------------------------------------------------
// Finding 10: temporaries of killed runs.

/// Entries of `dir` that start with `prefix`.
fn entries_starting(dir: &Path, prefix: &str) -> Vec<String> {
    let mut found: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    found.sort();
    found
}

/// Kills (`kill -9`) a staged build of a tree with a large module while it
/// writes `out_name`, checks that its temporary is left, then that the next
/// build removes it and nothing else.
fn killed_build_is_cleaned_up_by_the_next(out_name: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let tree = copy_basic(tmp.path(), "tree");
    // 48 MiB (sparse) to copy and hash keeps the writing phase long enough
    // to be caught.
    let big = module_dir(&tree).join("kernel/zz_big.ko");
    fs::copy(module_dir(&tree).join("kernel/lib/core_util.ko"), &big).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&big)
        .unwrap()
        .set_len(48 << 20)
        .unwrap();
    let dir = tmp.path().join("o");
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
    let mut left = None;
    for _attempt in 0..5 {
        let mut child = Command::new(kmodidx_path())
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
            assert!(started.elapsed() < TIME_LIMIT, "the build never wrote");
            std::thread::sleep(Duration::from_millis(1));
        };
        let status = child.wait().unwrap();
        if seen && status.signal() == Some(libc::SIGKILL) {
            left = Some(entries_starting(&dir, &ours));
            break;
        }
        let _ = fs::remove_dir_all(&out);
        let _ = fs::remove_file(&out);
    }
    let left = left.expect("a build was killed while writing");
    assert_eq!(left.len(), 1, "the killed run left its temporary: {left:?}");
    assert!(!out.exists(), "the killed run never finished");

    let r = build(&tree, &out, &["--staged"]);
    assert_eq!(r.code(), Some(0), "{}", r.stderr);
    assert!(
        !dir.join(&left[0]).exists(),
        "the next run removed {}",
        left[0]
    );
    let mut want: Vec<String> = keep.to_vec();
    want.push(out_name.to_string());
    want.sort();
    assert_eq!(entries_starting(&dir, ""), want);
    assert_verifies(&out);
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
// Finding 13: existing output directories, and a report inside --out.

#[test]
fn existing_empty_directory_takes_the_output() {
    // As Bazel creates it before the action runs.
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    let r = build(&basic(), &out, &[]);
    assert_eq!(r.code(), Some(0), "{}", r.stderr);
    assert_verifies(&out);
}

#[test]
fn existing_non_empty_directory_is_refused_and_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    fs::create_dir_all(out.join("etc")).unwrap();
    fs::write(out.join("etc/hostname"), b"mine\n").unwrap();
    let r = build(&basic(), &out, &[]);
    assert_eq!(r.code(), Some(2), "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "{}: the directory is not empty, and {} is not part of an earlier kmodidx output there (there is no kmodidx.manifest.json at its root)",
            out.display(),
            out.join("etc/hostname").display()
        )),
        "{}",
        r.stderr
    );
    assert_eq!(entries_starting(&out, ""), ["etc"]);
    assert_eq!(entries_starting(&out.join("etc"), ""), ["hostname"]);
}

#[test]
fn file_added_to_an_earlier_output_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    assert_eq!(build(&basic(), &out, &[]).code(), Some(0));
    let extra = module_dir(&out).join("notes.txt");
    fs::write(&extra, b"mine\n").unwrap();
    let r = build(&basic(), &out, &[]);
    assert_eq!(r.code(), Some(2), "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "{} is not part of an earlier kmodidx output there ({} does not list it)",
            extra.display(),
            out.join("kmodidx.manifest.json").display()
        )),
        "{}",
        r.stderr
    );
    assert!(extra.exists());
}

#[test]
fn earlier_output_is_replaced_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    // A staged output, then an index only: the module copies go.
    assert_eq!(build(&basic(), &out, &["--staged"]).code(), Some(0));
    assert!(module_dir(&out).join("kernel/lib/core_base.ko").exists());
    let r = build(&basic(), &out, &[]);
    assert_eq!(r.code(), Some(0), "{}", r.stderr);
    assert!(
        !module_dir(&out).join("kernel").exists(),
        "the earlier module copies are gone"
    );
    assert_verifies(&out);
    // With the manifest moved out of the output, it is recognised there.
    let manifest = tmp.path().join("m.json");
    let m = manifest.to_str().unwrap();
    assert_eq!(build(&basic(), &out, &["--manifest", m]).code(), Some(0));
    assert!(
        !out.join("kmodidx.manifest.json").exists(),
        "the stale manifest is gone"
    );
    let r = build(&basic(), &out, &["--staged", "--manifest", m]);
    assert_eq!(r.code(), Some(0), "{}", r.stderr);
    let v = run(&[
        "verify".as_ref(),
        "--manifest".as_ref(),
        manifest.as_os_str(),
        out.as_os_str(),
    ]);
    assert_eq!(v.code(), Some(0), "{}", v.stderr);
}

#[test]
fn report_inside_a_directory_output_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let report = out.join("report.json");
    let r = build(&basic(), &out, &["--report", report.to_str().unwrap()]);
    assert_eq!(r.code(), Some(2), "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "{}: the report file must not be the output {} or lie inside it",
            report.display(),
            out.display()
        )),
        "{}",
        r.stderr
    );
    assert!(!out.exists(), "nothing was written");
}

#[test]
fn manifest_inside_a_directory_output_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    // Through `..` and an existing directory, still inside.
    let manifest = tmp.path().join("out/../out/sub/m.json");
    let r = build(&basic(), &out, &["--manifest", manifest.to_str().unwrap()]);
    assert_eq!(r.code(), Some(2), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("the manifest file must not be the output"),
        "{}",
        r.stderr
    );
    assert_eq!(entries_starting(&out, ""), Vec::<String>::new());
}

#[test]
fn report_on_the_archive_output_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("idx.tar");
    let r = build(&basic(), &out, &["--report", out.to_str().unwrap()]);
    assert_eq!(r.code(), Some(2), "{}", r.stderr);
    assert!(
        r.stderr.contains("the report file must not be the output"),
        "{}",
        r.stderr
    );
    assert!(!out.exists());
}

#[test]
fn kernel_version_file_inside_a_directory_output_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let file = out.join("version");
    let r = build(
        &basic(),
        &out,
        &["--kernel-version-file", file.to_str().unwrap()],
    );
    assert_eq!(r.code(), Some(2), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("the kernel version file must not be the output"),
        "{}",
        r.stderr
    );
    assert!(!out.exists());
}

#[test]
fn report_and_manifest_on_one_file_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let side = tmp.path().join("side.json");
    let other_name = tmp.path().join(".").join("side.json");
    let r = build(
        &basic(),
        &out,
        &[
            "--report",
            side.to_str().unwrap(),
            "--manifest",
            other_name.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code(), Some(2), "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "{}: the report and the manifest would be written to the same file",
            other_name.display()
        )),
        "{}",
        r.stderr
    );
    assert!(!out.exists() && !side.exists());
}

// ---------------------------------------------------------------------------
// Finding 14: a manifest that lists a file twice.

#[test]
fn verify_rejects_a_manifest_listing_a_file_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    assert_eq!(build(&basic(), &out, &[]).code(), Some(0));
    let path = out.join("kmodidx.manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    let files = manifest["files"].as_array_mut().unwrap();
    let first = files[0].clone();
    files.insert(1, first.clone());
    fs::write(&path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    let r = verify(&out);
    assert_eq!(r.code(), Some(2), "{}", r.stderr);
    assert_eq!(
        r.stderr,
        format!(
            "kmodidx: error: {}: the manifest lists `{}` more than once\n",
            path.display(),
            first["path"].as_str().unwrap()
        )
    );
}

// ---------------------------------------------------------------------------
// Finding 15: module file names that break the line formats.

/// A copy of the basic tree with one more module, `kernel/lib/<name>`.
fn tree_with_module_named(dir: &Path, copy: &str, name: &str) -> PathBuf {
    let tree = copy_basic(dir, copy);
    let lib = module_dir(&tree).join("kernel/lib");
    fs::copy(lib.join("core_util.ko"), lib.join(name)).unwrap();
    tree
}

#[test]
fn build_refuses_a_module_name_with_a_newline() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tree_with_module_named(tmp.path(), "tree", "evil\ninjected.ko");
    let out = tmp.path().join("out");
    let r = build(&tree, &out, &[]);
    assert_eq!(r.code(), Some(2), "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "kmodidx: error: `/lib/modules/{VERSION}/kernel/lib/evil\\ninjected.ko`: the module's file name holds a newline"
        )),
        "{}",
        r.stderr
    );
    assert!(!out.exists());
}

#[test]
fn build_refuses_a_module_name_with_a_colon() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tree_with_module_named(tmp.path(), "tree", "a: b.ko");
    let r = build(&tree, &tmp.path().join("out"), &[]);
    assert_eq!(r.code(), Some(2), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("kernel/lib/a: b.ko`: the module's file name holds a colon"),
        "{}",
        r.stderr
    );
}

#[test]
fn depmod_drop_in_writes_a_newline_name_as_kmod_does() {
    let tmp = tempfile::tempdir().unwrap();
    let ours = tree_with_module_named(tmp.path(), "ours", "evil\ninjected.ko");
    let r = run_program(
        &kmodidx_path(),
        &[
            "depmod".as_ref(),
            "-b".as_ref(),
            ours.as_os_str(),
            VERSION.as_ref(),
        ],
        &[("KMODIDX_COMPAT", "kmod30")],
        Sink::Capture,
        Sink::Capture,
    );
    assert_eq!(r.code(), Some(0), "{}", r.stderr);
    let dep = fs::read_to_string(module_dir(&ours).join("modules.dep")).unwrap();
    assert!(
        dep.contains("kernel/lib/evil\ninjected.ko: kernel/lib/core_base.ko\n"),
        "{dep}"
    );
    let Some(depmod) = live_depmod30() else {
        return;
    };
    let theirs = tree_with_module_named(tmp.path(), "theirs", "evil\ninjected.ko");
    let k = run_program(
        &depmod,
        &["-b".as_ref(), theirs.as_os_str(), VERSION.as_ref()],
        &[],
        Sink::Capture,
        Sink::Capture,
    );
    assert_eq!(k.code(), Some(0), "{}", k.stderr);
    assert_same_files(
        "depmod -b with a newline in a module name",
        &depmod_written(&module_dir(&theirs)),
        &depmod_written(&module_dir(&ours)),
    );
}
