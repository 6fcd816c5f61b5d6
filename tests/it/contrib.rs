//! The Yocto and Buildroot integrations in `contrib/`. Neither bitbake nor
//! Buildroot runs here: these tests run the step scripts their metadata calls
//! (`contrib/yocto/kmodidx-depmod.sh`, `contrib/buildroot/kmodidx-post-build.sh`)
//! with `sh`, with the variables those systems set, on the corpus's first
//! kernel, and compare the index with kmod 34.2's. They also check that the
//! metadata agrees with Cargo.toml and Cargo.lock.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::*;

fn run_script(script: &str, args: &[&str], env: &[(&str, &Path)], strict: bool) -> Output {
    let mut cmd = Command::new("sh");
    cmd.arg(repo().join(script))
        .args(args)
        .env("KMODIDX", env!("CARGO_BIN_EXE_kmodidx"))
        .env("KMODIDX_STRICT", if strict { "1" } else { "0" });
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run sh")
}

fn assert_success(what: &str, run: &Output) {
    assert!(
        run.status.success(),
        "{what} failed ({}):\n{}{}",
        run.status,
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
}

/// The step succeeded without a word, and the kernel's module directory in
/// `root` (a copy of the kernel's package) now holds kmod 34.2's index.
fn assert_indexed_as_kmod34(what: &str, run: &Output, kernel: &Kernel, root: &Path) {
    assert_success(what, run);
    assert!(
        run.stderr.is_empty(),
        "{what}: unexpected messages: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let dir = root.join("lib/modules").join(&kernel.version);
    assert_same_files(
        &format!("{what} on {}", kernel.version),
        &index_files(&kernel.reference),
        &depmod_written(&dir),
    );
}

/// A copy of the symvers fixture (modules needing unknown symbols and
/// disagreeing about CRCs) and a directory holding its Module.symvers.
fn broken_tree(dir: &Path) -> (PathBuf, PathBuf) {
    let root = dir.join("root");
    let status = Command::new("cp")
        .arg("-r")
        .arg(repo().join("fixtures/trees/symvers"))
        .arg(&root)
        .status()
        .unwrap();
    assert!(status.success());
    let symbols = dir.join("symbols");
    fs::create_dir_all(&symbols).unwrap();
    fs::rename(root.join("Module.symvers"), symbols.join("Module.symvers")).unwrap();
    (root, symbols)
}

const BROKEN_VERSION: &str = "6.1.0-symvers";

/// What kernel.bbclass leaves for other recipes: STAGING_KERNEL_BUILDDIR with
/// Module.symvers and kernel-abiversion, and PKGDATA_DIR/kernel-depmod/ with
/// the abiversion and System.map.
/// They go into `work`.
fn yocto_kernel_data(kernel: &Kernel, work: &Path) -> (PathBuf, PathBuf) {
    let staging = work.join("kernel-build-artifacts");
    fs::create_dir_all(&staging).unwrap();
    fs::copy(&kernel.symvers, staging.join("Module.symvers")).unwrap();
    fs::write(staging.join("kernel-abiversion"), &kernel.version).unwrap();
    let pkgdata = work.join("pkgdata");
    let depmod = pkgdata.join("kernel-depmod");
    fs::create_dir_all(&depmod).unwrap();
    fs::write(depmod.join("kernel-abiversion"), &kernel.version).unwrap();
    let map = format!("System.map-{}", kernel.version);
    fs::copy(kernel.root.join("boot").join(&map), depmod.join(&map)).unwrap();
    (staging, pkgdata)
}

const YOCTO: &str = "contrib/yocto/kmodidx-depmod.sh";

#[test]
fn yocto_depmodwrapper_step_indexes_the_rootfs_as_kmod34() {
    let Some(kernel) = corpus_kernel(CORPUS_KERNELS[0]) else {
        return;
    };
    let (work, root) = kernel.private_copy();
    let (staging, pkgdata) = yocto_kernel_data(kernel, work.path());
    let rootfs = root.to_str().unwrap();
    // As oe/rootfs.py calls depmodwrapper, with the strict check on.
    let run = run_script(
        YOCTO,
        &["-a", "-b", rootfs, &kernel.version, "kernel"],
        &[
            ("PKGDATA_DIR", &pkgdata),
            ("STAGING_KERNEL_BUILDDIR", &staging),
            ("D", &root),
        ],
        true,
    );
    assert_indexed_as_kmod34("the Yocto step", &run, kernel, &root);
    // depmodwrapper's exclusion of debug copies.
    assert_eq!(
        fs::read_to_string(root.join("lib/depmod.d/exclude.conf")).unwrap(),
        "exclude .debug\n"
    );
    // The same again (postinsts call it once per kernel package).
    let run = run_script(
        YOCTO,
        &["-a", "-b", rootfs, &kernel.version],
        &[("PKGDATA_DIR", &pkgdata)],
        false,
    );
    assert_indexed_as_kmod34("the Yocto step, run twice", &run, kernel, &root);
}

#[test]
fn yocto_check_passes_a_real_kernel_and_writes_nothing() {
    let Some(kernel) = corpus_kernel(CORPUS_KERNELS[0]) else {
        return;
    };
    let (work, root) = kernel.private_copy();
    let (staging, _) = yocto_kernel_data(kernel, work.path());
    let run = Command::new("sh")
        .arg(repo().join(YOCTO))
        .arg("--check")
        .env("KMODIDX", env!("CARGO_BIN_EXE_kmodidx"))
        .env("PKGD", &root)
        .env("KERNEL_VERSION", &kernel.version)
        .env("STAGING_KERNEL_BUILDDIR", &staging)
        .output()
        .unwrap();
    assert_success("kmodidx-depmod.sh --check", &run);
    let dir = root.join("lib/modules").join(&kernel.version);
    assert!(depmod_written(&dir).is_empty(), "--check wrote into PKGD");
}

#[test]
fn yocto_check_fails_on_unknown_symbols_in_kmods_words() {
    let work = tempfile::tempdir().unwrap();
    let (pkgd, symbols) = broken_tree(work.path());
    let report = work.path().join("report.json");
    let run = Command::new("sh")
        .arg(repo().join(YOCTO))
        .arg("--check")
        .env("KMODIDX", env!("CARGO_BIN_EXE_kmodidx"))
        .env("PKGD", &pkgd)
        .env("KERNEL_VERSION", BROKEN_VERSION)
        .env("STAGING_KERNEL_BUILDDIR", &symbols)
        .env("KMODIDX_REPORT", &report)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("sv_unknown.ko needs unknown symbol no_such_symbol"),
        "{stderr}"
    );
    let json: serde_json::Value = serde_json::from_slice(&fs::read(&report).unwrap()).unwrap();
    assert_eq!(json["status"], "strict_failure");
    let dir = pkgd.join("lib/modules").join(BROKEN_VERSION);
    assert!(depmod_written(&dir).is_empty(), "--check wrote into PKGD");
}

#[test]
fn yocto_strict_image_step_fails_and_leaves_no_index() {
    let work = tempfile::tempdir().unwrap();
    let (rootfs, symbols) = broken_tree(work.path());
    let run = run_script(
        YOCTO,
        &["-a", "-b", rootfs.to_str().unwrap(), BROKEN_VERSION],
        &[("STAGING_KERNEL_BUILDDIR", &symbols)],
        true,
    );
    assert_eq!(run.status.code(), Some(1));
    let dir = rootfs.join("lib/modules").join(BROKEN_VERSION);
    assert!(depmod_written(&dir).is_empty(), "an index was written");
}

const BUILDROOT: &str = "contrib/buildroot/kmodidx-post-build.sh";

/// A kernel build directory as LINUX_DIR: .config and Module.symvers.
fn linux_dir(dir: &Path, config: &str, symvers: &Path) -> PathBuf {
    let linux = dir.join("linux-build");
    fs::create_dir_all(&linux).unwrap();
    fs::write(linux.join(".config"), config).unwrap();
    fs::copy(symvers, linux.join("Module.symvers")).unwrap();
    linux
}

#[test]
fn buildroot_depmod_hook_indexes_the_target_as_kmod34() {
    let Some(kernel) = corpus_kernel(CORPUS_KERNELS[0]) else {
        return;
    };
    let (work, root) = kernel.private_copy();
    let linux = linux_dir(work.path(), "CONFIG_MODULES=y\n", &kernel.symvers);
    // As LINUX_RUN_DEPMOD's replacement calls it, with the strict check on.
    let version = PathBuf::from(&kernel.version);
    let run = run_script(
        BUILDROOT,
        &[],
        &[
            ("TARGET_DIR", &root),
            ("LINUX_VERSION_PROBED", &version),
            ("LINUX_DIR", &linux),
        ],
        true,
    );
    assert_indexed_as_kmod34("the Buildroot hook", &run, kernel, &root);
}

#[test]
fn buildroot_post_build_script_finds_the_kernel_version_itself() {
    let Some(kernel) = corpus_kernel(CORPUS_KERNELS[0]) else {
        return;
    };
    let (_work, root) = kernel.private_copy();
    // As a BR2_ROOTFS_POST_BUILD_SCRIPT: the target directory as argument,
    // no LINUX_VERSION_PROBED.
    let run = run_script(BUILDROOT, &[root.to_str().unwrap()], &[], false);
    assert_indexed_as_kmod34("the Buildroot post-build script", &run, kernel, &root);
}

/// The symvers fixture as a Buildroot target, and the environment the hook
/// passes, with a LINUX_DIR whose .config is `config`.
fn broken_buildroot(dir: &Path, config: &str) -> (PathBuf, Vec<(&'static str, PathBuf)>) {
    let (target, symbols) = broken_tree(dir);
    let linux = linux_dir(dir, config, &symbols.join("Module.symvers"));
    let env = vec![
        ("TARGET_DIR", target.clone()),
        ("LINUX_VERSION_PROBED", PathBuf::from(BROKEN_VERSION)),
        ("LINUX_DIR", linux),
    ];
    (target, env)
}

fn as_env<'a>(env: &'a [(&'static str, PathBuf)]) -> Vec<(&'static str, &'a Path)> {
    env.iter().map(|(k, v)| (*k, v.as_path())).collect()
}

#[test]
fn buildroot_hook_skips_kernels_without_module_support() {
    let work = tempfile::tempdir().unwrap();
    let (target, env) = broken_buildroot(work.path(), "# CONFIG_MODULES is not set\n");
    let run = run_script(BUILDROOT, &[], &as_env(&env), true);
    assert_success("kmodidx-post-build.sh without CONFIG_MODULES", &run);
    let dir = target.join("lib/modules").join(BROKEN_VERSION);
    assert!(depmod_written(&dir).is_empty(), "an index was written");
}

#[test]
fn buildroot_strict_hook_fails_on_unknown_symbols_and_leaves_no_index() {
    let work = tempfile::tempdir().unwrap();
    let (target, env) = broken_buildroot(work.path(), "CONFIG_MODULES=y\n");
    let run = run_script(BUILDROOT, &[], &as_env(&env), true);
    assert_eq!(run.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("sv_unknown.ko needs unknown symbol no_such_symbol"),
        "{stderr}"
    );
    let dir = target.join("lib/modules").join(BROKEN_VERSION);
    assert!(depmod_written(&dir).is_empty(), "an index was written");
    // Without the check, the index is written as depmod writes it.
    let run = run_script(BUILDROOT, &[], &as_env(&env), false);
    assert_success("kmodidx-post-build.sh, not strict", &run);
    assert!(!depmod_written(&dir).is_empty());
}

/// `(name, version, checksum)` of every crates.io package in Cargo.lock.
fn locked_crates() -> Vec<(String, String, String)> {
    let lock = fs::read_to_string(repo().join("Cargo.lock")).unwrap();
    let mut crates = Vec::new();
    for block in lock.split("[[package]]").skip(1) {
        let field = |key: &str| {
            block.lines().find_map(|line| {
                line.strip_prefix(key)
                    .and_then(|rest| rest.strip_prefix(" = \""))
                    .and_then(|rest| rest.strip_suffix('"'))
                    .map(str::to_string)
            })
        };
        if field("source").is_some_and(|s| s.contains("crates.io")) {
            crates.push((
                field("name").unwrap(),
                field("version").unwrap(),
                field("checksum").unwrap(),
            ));
        }
    }
    crates
}

#[test]
fn contrib_metadata_agrees_with_cargo() {
    // The Yocto recipe's crate list is what `bitbake -c update_crates`
    // writes for Cargo.lock.
    let crates = locked_crates();
    assert!(!crates.is_empty());
    let mut want = String::from(
        "# Autogenerated with 'bitbake -c update_crates kmodidx-native'\n\n# from Cargo.lock\nSRC_URI += \" \\\n",
    );
    for (name, version, _) in &crates {
        want.push_str(&format!("    crate://crates.io/{name}/{version} \\\n"));
    }
    want.push_str("\"\n");
    for (name, version, checksum) in &crates {
        want.push_str(&format!(
            "\nSRC_URI[{name}-{version}.sha256sum] = \"{checksum}\""
        ));
    }
    want.push('\n');
    let inc = repo().join("contrib/yocto/recipes-kernel/kmodidx/kmodidx-crates.inc");
    let got = fs::read_to_string(&inc).unwrap();
    if got != want && std::env::var_os("KMODIDX_REGENERATE").is_some() {
        fs::write(&inc, &want).unwrap();
        return;
    }
    assert!(
        got == want,
        "{} does not match Cargo.lock; rerun this test with KMODIDX_REGENERATE=1",
        inc.display()
    );

    // The recipe's LIC_FILES_CHKSUM: the md5 of Cargo.toml's license line.
    let recipe =
        fs::read_to_string(repo().join("contrib/yocto/recipes-kernel/kmodidx/kmodidx_git.bb"))
            .unwrap();
    let lic = recipe
        .lines()
        .find(|l| l.starts_with("LIC_FILES_CHKSUM"))
        .unwrap();
    let param = |key: &str| {
        lic.split(';')
            .find_map(|p| p.strip_prefix(key))
            .map(|v| v.trim_end_matches('"').to_string())
            .unwrap()
    };
    let line: usize = param("beginline=").parse().unwrap();
    assert_eq!(param("endline="), line.to_string());
    let manifest = fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let text = manifest.split_inclusive('\n').nth(line - 1).unwrap();
    assert!(text.starts_with("license = "), "line {line}: {text}");
    let md5 = Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(text.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    let md5 = String::from_utf8(md5.stdout).unwrap();
    assert_eq!(param("md5="), md5.split_whitespace().next().unwrap());

    // The versions.
    let version = env!("CARGO_PKG_VERSION");
    assert!(recipe.contains(&format!("PV = \"{version}+git\"")));
    let mk =
        fs::read_to_string(repo().join("contrib/buildroot/package/kmodidx/kmodidx.mk")).unwrap();
    assert!(mk.contains(&format!("KMODIDX_VERSION = {version}\n")));
}
