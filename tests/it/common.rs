//! Helpers shared by the integration tests.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the kmodidx binary with `args`.
pub fn kmodidx(args: &[&str]) -> Output {
    kmodidx_env(args, &[])
}

/// Runs `kmodidx build --from FROM --out OUT EXTRA...` with `env` added.
pub fn kmodidx_build(from: &Path, out: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut args = vec![
        "build",
        "--from",
        from.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    kmodidx_env(&args, env)
}

/// [`kmodidx_build`], which must succeed.
pub fn build_ok(from: &Path, out: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let run = kmodidx_build(from, out, extra, env);
    assert!(
        run.status.success(),
        "kmodidx build --from {} --out {} {extra:?} failed: {}",
        from.display(),
        out.display(),
        String::from_utf8_lossy(&run.stderr)
    );
    run
}

pub fn kmodidx_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kmodidx"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run kmodidx")
}

/// Every `modules.*` file in `dir`, by name.
pub fn index_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return files;
    };
    for entry in entries {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("modules.") {
            files.insert(name, fs::read(entry.path()).unwrap());
        }
    }
    files
}

/// What depmod wrote into a module directory: its `modules.*` files without
/// the inputs a kernel package ships there.
pub fn depmod_written(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = index_files(dir);
    for input in [
        "modules.order",
        "modules.builtin",
        "modules.builtin.modinfo",
    ] {
        files.remove(input);
    }
    files
}

/// The one kernel version under a module directory such as `lib/modules`.
pub fn only_version(module_dir: &Path) -> String {
    let mut versions: Vec<_> = fs::read_dir(module_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        versions.len(),
        1,
        "{} should hold one kernel",
        module_dir.display()
    );
    versions.remove(0).to_string_lossy().into_owned()
}

/// Describes the first difference between two byte strings, or `None`.
pub fn first_difference(want: &[u8], got: &[u8]) -> Option<String> {
    if want == got {
        return None;
    }
    let at = want
        .iter()
        .zip(got)
        .position(|(a, b)| a != b)
        .unwrap_or(want.len().min(got.len()));
    Some(format!(
        "differ at byte {at} (expected {} bytes, got {})",
        want.len(),
        got.len()
    ))
}

/// Asserts that `got` holds exactly the files of `want`, byte for byte.
pub fn assert_same_files(
    what: &str,
    want: &BTreeMap<String, Vec<u8>>,
    got: &BTreeMap<String, Vec<u8>>,
) {
    let want_names: Vec<&String> = want.keys().collect();
    let got_names: Vec<&String> = got.keys().collect();
    assert_eq!(want_names, got_names, "{what}: different sets of files");
    let mut problems = Vec::new();
    for (name, bytes) in want {
        if let Some(diff) = first_difference(bytes, &got[name]) {
            problems.push(format!("{name}: {diff}"));
        }
    }
    assert!(problems.is_empty(), "{what}:\n  {}", problems.join("\n  "));
}

/// The `depmod: ...` lines of a stderr capture.
pub fn depmod_lines(stderr: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| l.starts_with("depmod: "))
        .map(str::to_string)
        .collect()
}

/// The messages of a `kmodidx build` stderr capture, written back in
/// depmod's form: `kmodidx: warning: X` as `depmod: WARNING: X` and
/// `kmodidx: error: X` as `depmod: ERROR: X` (build's text after the
/// prefix is kmod's, byte for byte).
pub fn build_lines(stderr: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter_map(|l| {
            if let Some(text) = l.strip_prefix("kmodidx: warning: ") {
                Some(format!("depmod: WARNING: {text}"))
            } else {
                l.strip_prefix("kmodidx: error: ")
                    .map(|text| format!("depmod: ERROR: {text}"))
            }
        })
        .collect()
}

/// `cp -a FROM TO`.
pub fn copy_tree(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("run cp");
    assert!(
        status.success(),
        "cp -a {} {}",
        from.display(),
        to.display()
    );
}

/// Everything below `dir` (not following symlinks): path → contents
/// (a symlink's contents are its target, prefixed to keep them apart).
pub fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let entry = entry.unwrap();
            let path = entry.path();
            let rel = path
                .strip_prefix(base)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let ty = entry.file_type().unwrap();
            if ty.is_symlink() {
                let target = fs::read_link(&path).unwrap();
                out.insert(
                    rel,
                    [b"-> ".as_slice(), target.as_os_str().as_encoded_bytes()].concat(),
                );
            } else if ty.is_dir() {
                walk(base, &path, out);
            } else {
                out.insert(rel, fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Every file below `dir` whose name contains `.ko` (compressed modules
/// included), not following symlinks, sorted.
pub fn module_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let ty = entry.file_type().unwrap();
            if ty.is_dir() {
                walk(&entry.path(), out);
            } else if ty.is_file() && entry.file_name().to_string_lossy().contains(".ko") {
                out.push(entry.path());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

/// Whether this is a CI run (`CI` set), where nothing may be skipped.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// Something a test needs is missing: a failure in CI, a loud skip elsewhere.
pub fn missing(what: &str) {
    assert!(!in_ci(), "CI needs {what}");
    eprintln!("\n*** SKIPPED: no {what} ***\n");
}

/// The kernel corpus: `../shared/corpus` beside the repository, or where
/// `KMODIDX_CORPUS` points. `None`, said loudly, when it is absent; in CI
/// its absence is a failure.
pub fn corpus_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("KMODIDX_CORPUS") {
        Some(dir) => PathBuf::from(dir),
        None => repo().join("../shared/corpus"),
    };
    if dir.join("debian").is_dir() {
        Some(dir)
    } else {
        missing(&format!(
            "kernel corpus at {} (set KMODIDX_CORPUS)",
            dir.display()
        ));
        None
    }
}

/// Debian's depmod (kmod 30), the live oracle. Without it the comparison is
/// skipped loudly, except in CI, where .ci/run installs it.
pub fn live_depmod30() -> Option<PathBuf> {
    live_kmod30("depmod")
}

/// Debian's modprobe (kmod 30), the live oracle of `query deps` and
/// `query resolve`; as [`live_depmod30`].
pub fn live_modprobe30() -> Option<PathBuf> {
    live_kmod30("modprobe")
}

/// Debian's kmod 30 tool `name` in /usr/sbin or /sbin.
fn live_kmod30(name: &str) -> Option<PathBuf> {
    let found = ["/usr/sbin", "/sbin"]
        .into_iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.exists());
    if found.is_none() {
        missing(&format!(
            "Debian's {name} (apt-get install kmod) for the live {name} 30 comparison"
        ));
    }
    found
}

/// Runs `depmod -b COPY EXTRA... VERSION` on a copy of `root`'s top
/// directory of `module_dir` (`lib/modules` or `usr/lib/modules`) and
/// returns the files it wrote.
pub fn depmod_on_copy(
    depmod: &Path,
    root: &Path,
    module_dir: &str,
    version: &str,
    extra: &[&str],
) -> BTreeMap<String, Vec<u8>> {
    let copy = tempfile::tempdir().unwrap();
    let top = module_dir.split('/').next().unwrap();
    copy_tree(&root.join(top), copy.path());
    let run = Command::new(depmod)
        .arg("-b")
        .arg(copy.path())
        .args(extra)
        .arg(version)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{} failed: {}",
        depmod.display(),
        String::from_utf8_lossy(&run.stderr)
    );
    depmod_written(&copy.path().join(module_dir).join(version))
}

/// `dpkg-deb -x DEB ROOT`.
pub fn unpack_deb(deb: &Path, root: &Path) {
    let status = Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb)
        .arg(root)
        .status()
        .expect("dpkg-deb is needed to unpack kernel packages");
    assert!(status.success(), "unpacking {}", deb.display());
}

/// The kernels of the corpus. Each corpus test has one `#[test]` per kernel
/// (see [`for_each_kernel`]); `corpus_holds_the_tested_kernels` checks that
/// this list is the corpus.
pub const CORPUS_KERNELS: [&str; 2] = ["6.1.0-56-cloud-amd64", "6.12.115+deb12-cloud-amd64"];

/// One kernel package of the corpus, unpacked. The tree is shared by every
/// test of the run (and kept under the target directory between runs):
/// read it, or write into a [`Kernel::private_copy`].
pub struct Kernel {
    pub root: PathBuf,
    pub version: String,
    /// depmod 34.2's output for it (`<corpus>/<version>/ref-34.2/`).
    pub reference: PathBuf,
    /// The kernel's `Module.symvers` (`<corpus>/<version>/Module.symvers`).
    pub symvers: PathBuf,
}

impl Kernel {
    /// A copy of the unpacked package to write into, and its root.
    pub fn private_copy(&self) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        copy_tree(&self.root, &root);
        (dir, root)
    }
}

/// The package file of kernel `version` in `<corpus>/debian/`.
fn corpus_deb(corpus: &Path, version: &str) -> Option<PathBuf> {
    fs::read_dir(corpus.join("debian"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.ends_with(".deb")
                && (name.starts_with(&format!("linux-image-{version}_"))
                    || name.starts_with(&format!("linux-image-{version}-unsigned_")))
        })
}

/// Kernel `version` of the corpus, unpacked once; `None` (said loudly) when
/// there is no corpus outside CI. A corpus without that kernel fails.
pub fn corpus_kernel(version: &str) -> Option<&'static Kernel> {
    static UNPACKED: OnceLock<Mutex<BTreeMap<String, &'static Kernel>>> = OnceLock::new();
    let corpus = corpus_dir()?;
    let mut unpacked = UNPACKED.get_or_init(Default::default).lock().unwrap();
    if let Some(kernel) = unpacked.get(version) {
        return Some(kernel);
    }
    let deb = corpus_deb(&corpus, version)
        .unwrap_or_else(|| panic!("no package of {version} in {}/debian", corpus.display()));
    // Unpacked trees are kept between runs, keyed by package name and size.
    let size = fs::metadata(&deb).unwrap().len();
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("corpus");
    let root = cache.join(format!(
        "{}-{size}",
        deb.file_stem().unwrap().to_string_lossy()
    ));
    if !root.is_dir() {
        fs::create_dir_all(&cache).unwrap();
        let partial = tempfile::tempdir_in(&cache).unwrap();
        unpack_deb(&deb, &partial.path().join("root"));
        // Another test run may have finished first; its tree is as good.
        let _ = fs::rename(partial.path().join("root"), &root);
    }
    let found = only_version(&root.join("lib/modules"));
    assert_eq!(found, version, "{} holds another kernel", deb.display());
    let reference = corpus.join(version).join("ref-34.2");
    assert!(reference.is_dir(), "no reference output for {version}");
    let kernel: &'static Kernel = Box::leak(Box::new(Kernel {
        root,
        version: version.to_string(),
        reference,
        symvers: corpus.join(version).join("Module.symvers"),
    }));
    unpacked.insert(version.to_string(), kernel);
    Some(kernel)
}

/// Runs `check` on corpus kernel `version` (see [`corpus_kernel`]).
pub fn with_kernel(version: &str, check: impl FnOnce(&Kernel)) {
    if let Some(kernel) = corpus_kernel(version) {
        check(kernel);
    }
}

/// One `#[test]` per corpus kernel, each running `$check` (an
/// `Fn(&Kernel)`) on it. Use it inside a module named after the check.
macro_rules! for_each_kernel {
    ($check:expr) => {
        #[test]
        fn linux_6_1_0_56_cloud_amd64() {
            $crate::common::with_kernel($crate::common::CORPUS_KERNELS[0], $check)
        }
        #[test]
        fn linux_6_12_115_deb12_cloud_amd64() {
            $crate::common::with_kernel($crate::common::CORPUS_KERNELS[1], $check)
        }
    };
}
pub(crate) use for_each_kernel;

/// Runs Debian's depmod (kmod 30) in place over the tree at `root` for
/// kernel `version`, with no configuration. `None` when it is not
/// installed (see [`live_depmod30`]).
pub fn index_with_depmod30(root: &Path, version: &str) -> Option<()> {
    let depmod = live_depmod30()?;
    let run = Command::new(depmod)
        .arg("-b")
        .arg(root)
        .args(["-C", "/nonexistent", version])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "depmod failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    Some(())
}

// ---------------------------------------------------------------------------
// Walking a tree and packing it.

/// One entry of a tree to pack.
#[derive(Clone)]
pub enum Item {
    Dir,
    File(Vec<u8>, u32),
    Symlink(Vec<u8>),
}

/// Every entry below `root`, by relative path (sorted).
pub fn walk(root: &Path) -> Vec<(String, Item)> {
    fn go(root: &Path, rel: &str, out: &mut Vec<(String, Item)>) {
        let dir = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(rel)
        };
        let mut names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for name in names {
            let child = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let path = root.join(&child);
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.file_type().is_symlink() {
                let t = fs::read_link(&path).unwrap();
                out.push((
                    child,
                    Item::Symlink(t.to_string_lossy().as_bytes().to_vec()),
                ));
            } else if meta.is_dir() {
                out.push((child.clone(), Item::Dir));
                go(root, &child, out);
            } else {
                out.push((
                    child,
                    Item::File(fs::read(&path).unwrap(), meta.permissions().mode() & 0o7777),
                ));
            }
        }
    }
    let mut out = Vec::new();
    go(root, "", &mut out);
    out
}

/// A tar of `items` with the given mtime and owner.
pub fn tar_of(items: &[(String, Item)], mtime: u64, uid: u64) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, item) in items {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(mtime);
        h.set_uid(uid);
        h.set_gid(uid);
        match item {
            Item::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, format!("{path}/"), &[][..]).unwrap();
            }
            Item::File(data, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, &data[..]).unwrap();
            }
            Item::Symlink(target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(
                    &mut h,
                    path,
                    std::ffi::OsStr::new(std::str::from_utf8(target).unwrap()),
                )
                .unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

/// A newc cpio of `items` (crc format if `crc`), NUL-padded to 512 bytes.
pub fn cpio_of(items: &[(String, Item)], crc: bool, mtime: u32) -> Vec<u8> {
    let mut w = Vec::new();
    for (i, (path, item)) in items.iter().enumerate() {
        let b = cpio::newc::Builder::new(path)
            .ino(i as u32 + 100)
            .uid(1000)
            .gid(1000)
            .mtime(mtime);
        let (b, data): (_, Vec<u8>) = match item {
            Item::Dir => (b.mode(0o040755).nlink(2), Vec::new()),
            Item::File(data, mode) => (b.mode(0o100000 | mode).nlink(1), data.clone()),
            Item::Symlink(t) => (b.mode(0o120777).nlink(1), t.clone()),
        };
        let mut writer = if crc {
            let sum = data.iter().fold(0u32, |s, &b| s.wrapping_add(u32::from(b)));
            b.write_crc(w, data.len() as u32, sum)
        } else {
            b.write(w, data.len() as u32)
        };
        writer.write_all(&data).unwrap();
        w = writer.finish().unwrap();
    }
    let mut w = cpio::newc::trailer(w).unwrap();
    while w.len() % 512 != 0 {
        w.push(0);
    }
    w
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn xz(data: &[u8]) -> Vec<u8> {
    let mut e = liblzma::write::XzEncoder::new(Vec::new(), 0);
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 1).unwrap()
}

// ---------------------------------------------------------------------------
// Running the binary under a time limit, measuring its memory.

/// What a bounded run of the binary gave.
pub struct Bounded {
    /// The exit status, or `None` when a signal ended it.
    pub status: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// The child's peak resident set size, from `wait4`.
    pub peak_rss_kib: u64,
    pub elapsed: std::time::Duration,
}

/// Where a bounded run's standard output or error goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// Captured into [`Bounded`].
    Capture,
    /// A pipe whose reading end is already closed (as after `| head -1`).
    ClosedPipe,
    /// `/dev/full`: every write fails with "No space left on device".
    Full,
}

impl Sink {
    fn stdio(self) -> std::process::Stdio {
        match self {
            Sink::Capture => std::process::Stdio::piped(),
            Sink::ClosedPipe => std::process::Stdio::from(closed_pipe()),
            Sink::Full => std::process::Stdio::from(fs::File::create("/dev/full").unwrap()),
        }
    }
}

/// The writing end of a pipe nobody reads.
pub fn closed_pipe() -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two descriptors, which are then owned here.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both descriptors were just created and belong to nobody else.
    let (read, write) = unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    };
    drop(read);
    write
}

/// Runs kmodidx with `args` and `env` in `cwd`, killing it (and failing)
/// after `timeout`, capturing its output (see [`run_bounded_with`]).
pub fn run_bounded(
    args: &[&std::ffi::OsStr],
    env: &[(&str, &str)],
    cwd: &Path,
    timeout: std::time::Duration,
) -> Bounded {
    let kmodidx = Path::new(env!("CARGO_BIN_EXE_kmodidx"));
    run_bounded_with(
        kmodidx,
        args,
        env,
        cwd,
        timeout,
        Sink::Capture,
        Sink::Capture,
    )
}

/// Runs `program` with `args` and `env` in `cwd`, its standard output and
/// error going to `stdout` and `stderr`, killing it (and failing) after
/// `timeout`. The peak RSS comes from `/usr/bin/time`, which reads the
/// kernel's own account (`wait4`) of a child it forked itself: a child
/// forked straight from this (large, multi-threaded) test process would
/// inherit its peak, since Linux carries the peak of the image an `exec`
/// replaces.
pub fn run_bounded_with(
    program: &Path,
    args: &[&std::ffi::OsStr],
    env: &[(&str, &str)],
    cwd: &Path,
    timeout: std::time::Duration,
    stdout: Sink,
    stderr: Sink,
) -> Bounded {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    let started = std::time::Instant::now();
    let report = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = Command::new("/usr/bin/time");
    cmd.arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(report.path())
        .arg(program)
        .args(args)
        .current_dir(cwd)
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(stdout.stdio())
        .stderr(stderr.stdio());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .expect("run kmodidx under /usr/bin/time (apt-get install time)");
    // A stream that is not captured reads as empty.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > timeout {
            // SAFETY: signals our own process group (time and kmodidx).
            unsafe {
                libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL);
            }
            let _ = child.wait();
            panic!(
                "{} {args:?} did not finish within {timeout:?}; killed",
                program.display()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    let elapsed = started.elapsed();
    let report = fs::read_to_string(report.path()).unwrap();
    let signal = report
        .lines()
        .find_map(|l| l.strip_prefix("Command terminated by signal "))
        .and_then(|n| n.trim().parse().ok());
    let peak_rss_kib = report
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .expect("/usr/bin/time reports the peak RSS");
    Bounded {
        status: if signal.is_some() {
            None
        } else {
            status.code()
        },
        signal,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
        peak_rss_kib,
        elapsed,
    }
}

/// A program the test needs, found on PATH. Without it the test is skipped
/// loudly, except in CI (`CI` set), where .ci/run installs it (`package`
/// names the Debian package).
pub fn needed_tool(name: &str, package: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        missing(&format!("`{name}` on PATH (apt-get install {package})"));
    }
    found
}
