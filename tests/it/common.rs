//! Helpers shared by the integration tests.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

/// The kernel corpus: `../shared/corpus` beside the repository, or where
/// `KMODIDX_CORPUS` points. `None`, said loudly, when it is absent.
pub fn corpus_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("KMODIDX_CORPUS") {
        Some(dir) => PathBuf::from(dir),
        None => repo().join("../shared/corpus"),
    };
    if dir.join("debian").is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "\n*** SKIPPED: no kernel corpus at {} (set KMODIDX_CORPUS) ***\n",
            dir.display()
        );
        None
    }
}

/// Debian's depmod (kmod 30), the live oracle. Without it the comparison is
/// skipped loudly, except in CI (`CI` set), where .ci/run installs it.
pub fn live_depmod30() -> Option<PathBuf> {
    let found = ["/usr/sbin/depmod", "/sbin/depmod"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs Debian's depmod: apt-get install kmod"
        );
        eprintln!("\n*** SKIPPED live depmod 30 comparison: install Debian's kmod package ***\n");
    }
    found
}

/// An unpacked kernel package of the corpus.
pub struct Kernel {
    /// Scratch space; the package is unpacked into its `root/`.
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub version: String,
    /// depmod 34.2's output for it (`<corpus>/<version>/ref-34.2/`).
    pub reference: PathBuf,
}

/// The kernel packages in `<corpus>/debian/`, sorted by name.
fn corpus_packages(corpus: &Path) -> Vec<PathBuf> {
    let mut debs: Vec<PathBuf> = fs::read_dir(corpus.join("debian"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    debs.sort();
    assert!(!debs.is_empty(), "no .deb in {}", corpus.display());
    debs
}

/// Unpacks one kernel package with `dpkg-deb -x`.
fn unpack_package(corpus: &Path, deb: &Path) -> Kernel {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let status = Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb)
        .arg(&root)
        .status()
        .expect("dpkg-deb is needed to unpack the corpus");
    assert!(status.success(), "unpacking {}", deb.display());
    let version = only_version(&root.join("lib/modules"));
    let reference = corpus.join(&version).join("ref-34.2");
    assert!(reference.is_dir(), "no reference output for {version}");
    Kernel {
        dir,
        root,
        version,
        reference,
    }
}

/// Unpacks every package in `<corpus>/debian/` with `dpkg-deb -x`.
pub fn unpack_corpus(corpus: &Path) -> Vec<Kernel> {
    corpus_packages(corpus)
        .iter()
        .map(|deb| unpack_package(corpus, deb))
        .collect()
}

/// Unpacks the first package of the corpus (by name: the 6.1 kernel), for
/// tests that need one real kernel rather than all of them.
pub fn unpack_first_kernel(corpus: &Path) -> Kernel {
    unpack_package(corpus, &corpus_packages(corpus)[0])
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
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs {name}: apt-get install {package}"
        );
        eprintln!("\n*** SKIPPED: {name} not found (apt-get install {package}) ***\n");
    }
    found
}
