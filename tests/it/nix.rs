//! The Nix functions of `nix/` built for real: `nix-build` (Debian's
//! nix-bin, offline, no daemon) against `nix/tests/stub-nixpkgs`, on the
//! corpus's first kernel, with the outputs compared with kmod 34.2's.
//!
//! Most tests pass this build's kmodidx as `kmodidx` (a prebuilt package);
//! one builds the package from source inside nix (about 3 minutes on two
//! cores). It runs with the rest: when it was opt-in, a `[[bench]]` missing
//! from the package's source filter broke the package unseen.
//! Without nix-build the tests are skipped loudly, and fail in CI.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::*;

struct Nix {
    nix_build: PathBuf,
    /// Holds `prebuilt/bin/kmodidx`.
    work: tempfile::TempDir,
}

/// A Nix string literal holding `s`.
fn nix_string(s: &str) -> String {
    let escaped = s
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace("${", "\\${");
    format!("\"{escaped}\"")
}

/// A Nix path expression for an absolute host path, whatever its characters.
fn nix_path(path: &Path) -> String {
    format!("(/. + {})", nix_string(path.to_str().unwrap()))
}

/// `path` copied into the store under a fixed name, so that the same content
/// gives the same store path from run to run.
fn store_copy(path: &Path, name: &str) -> String {
    format!(
        "(builtins.path {{ path = {}; name = {}; }})",
        nix_path(path),
        nix_string(name)
    )
}

impl Nix {
    fn find() -> Option<Nix> {
        let nix_build = needed_tool("nix-build", "nix-bin")?;
        let work = tempfile::tempdir().unwrap();
        let bin = work.path().join("prebuilt/bin");
        fs::create_dir_all(&bin).unwrap();
        fs::copy(env!("CARGO_BIN_EXE_kmodidx"), bin.join("kmodidx")).unwrap();
        Some(Nix { nix_build, work })
    }

    /// `let pkgs = …; kmodidx = import nix/ { … }; in BODY`, with this
    /// build's binary as the package.
    fn expr(&self, body: &str) -> String {
        format!(
            "let\n  pkgs = import <nixpkgs> {{ }};\n  kmodidx = import {} {{ inherit pkgs; kmodidx = {}; }};\nin\n{body}",
            nix_path(&repo().join("nix")),
            store_copy(&self.work.path().join("prebuilt"), "kmodidx-prebuilt"),
        )
    }

    fn run(&self, expr: &str, env: &[(&str, String)]) -> Output {
        let mut cmd = Command::new(&self.nix_build);
        // Offline and without a daemon, as root: no binary cache, no sandbox
        // and no build users are needed (nor set up on a fresh machine).
        cmd.args([
            "--option",
            "substituters",
            "",
            "--option",
            "sandbox",
            "false",
            "--option",
            "build-users-group",
            "",
            "--no-out-link",
            "-I",
        ])
        .arg(format!(
            "nixpkgs={}",
            repo().join("nix/tests/stub-nixpkgs").display()
        ))
        .arg("-E")
        .arg(expr)
        .env_remove("NIX_PATH");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run nix-build")
    }

    /// Builds `expr` and returns its output path.
    fn build(&self, expr: &str) -> PathBuf {
        self.build_env(expr, &[])
    }

    fn build_env(&self, expr: &str, env: &[(&str, String)]) -> PathBuf {
        let run = self.run(expr, env);
        assert!(
            run.status.success(),
            "nix-build failed:\n{}\n--- expression:\n{expr}",
            String::from_utf8_lossy(&run.stderr)
        );
        let stdout = String::from_utf8(run.stdout).unwrap();
        PathBuf::from(stdout.lines().last().expect("nix-build printed no path"))
    }

    /// Removes a test's output from the store again (best effort: it stays
    /// when something still refers to it).
    fn delete(&self, path: &Path) {
        let _ = Command::new(self.nix_build.with_file_name("nix-store"))
            .arg("--delete")
            .arg(path)
            .output();
    }
}

/// The corpus's first kernel, and a private copy of its module directory in
/// `tree/` (inside the returned directory), so that only that goes into the
/// store (not the kernel image and docs).
fn kernel_tree() -> Option<(&'static Kernel, tempfile::TempDir, PathBuf)> {
    let kernel = corpus_kernel(CORPUS_KERNELS[0])?;
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    fs::create_dir_all(tree.join("lib")).unwrap();
    copy_tree(&kernel.root.join("lib/modules"), &tree.join("lib/modules"));
    Some((kernel, dir, tree))
}

/// Paths, relative to `dir`, of every module file below it, following links.
fn linked_module_files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, found: &mut Vec<String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::metadata(&path).unwrap();
            if meta.is_dir() {
                walk(root, &path, found);
            } else if path.to_string_lossy().contains(".ko") {
                let rel = path.strip_prefix(root).unwrap();
                found.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    let mut found = Vec::new();
    walk(dir, dir, &mut found);
    found.sort();
    found
}

#[test]
fn mk_modules_index_of_a_tarball_matches_kmod34() {
    let Some(nix) = Nix::find() else { return };
    let Some((kernel, work, tree)) = kernel_tree() else {
        return;
    };
    let tar = work.path().join("kernel.tar");
    let status = Command::new("tar")
        .args([
            "--sort=name",
            "--mtime=@0",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "-C",
        ])
        .arg(&tree)
        .arg("-cf")
        .arg(&tar)
        .arg("lib/modules")
        .status()
        .unwrap();
    assert!(status.success(), "tar failed");

    let out = nix.build(&nix.expr(&format!(
        "kmodidx.mkModulesIndex {{ modules = {}; }}",
        store_copy(&tar, "kernel.tar")
    )));
    let dir = out.join("lib/modules").join(&kernel.version);
    assert_same_files(
        &format!("mkModulesIndex of a tarball of {}", kernel.version),
        &index_files(&kernel.reference),
        &depmod_written(&dir),
    );
    // The modules are unpacked beside the index, as real files.
    let modules_dir = tree.join("lib/modules").join(&kernel.version);
    assert_eq!(linked_module_files(&dir), linked_module_files(&modules_dir));
    assert!(!fs::symlink_metadata(dir.join("kernel"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        fs::read(dir.join("modules.order")).unwrap(),
        fs::read(modules_dir.join("modules.order")).unwrap()
    );
    nix.delete(&out);
}

#[test]
fn mk_modules_index_of_a_symlink_forest_matches_kmod34() {
    let Some(nix) = Nix::find() else { return };
    let Some((kernel, _work, tree)) = kernel_tree() else {
        return;
    };

    let out = nix.build(&nix.expr(&format!(
        "let forest = import {} {{ inherit pkgs; tree = {}; }};\nin kmodidx.mkModulesIndex {{ modules = forest; }}",
        nix_path(&repo().join("nix/tests/forest.nix")),
        store_copy(&tree, "kernel-tree"),
    )));
    let dir = out.join("lib/modules").join(&kernel.version);
    // The forest's stale modules.dep is gone, replaced by the new index.
    assert_same_files(
        &format!("mkModulesIndex of a symlink forest of {}", kernel.version),
        &index_files(&kernel.reference),
        &depmod_written(&dir),
    );
    // As aggregateModules' output, the modules are links back into the
    // store, and every one of them is there.
    let kernel_entry = fs::symlink_metadata(dir.join("kernel")).unwrap();
    assert!(kernel_entry.file_type().is_symlink());
    let modules_dir = tree.join("lib/modules").join(&kernel.version);
    assert_eq!(linked_module_files(&dir), linked_module_files(&modules_dir));
    nix.delete(&out);
}

/// What Debian's modprobe (kmod 30) loads for `roots` from `root`, whose
/// module directory holds an index: module paths relative to it.
fn modprobe_closure(root: &Path, version: &str, roots: &[&str]) -> Vec<String> {
    let module_dir = root.join("lib/modules").join(version);
    let prefix = format!("insmod {}/", module_dir.display());
    let mut found = Vec::new();
    for name in roots {
        let run = Command::new("/usr/sbin/modprobe")
            .args(["-C", "/dev/null", "-S", version, "-d"])
            .arg(root)
            .args(["--show-depends", name])
            .output()
            .expect("run Debian's modprobe");
        assert!(
            run.status.success(),
            "modprobe --show-depends {name} failed"
        );
        for line in String::from_utf8(run.stdout).unwrap().lines() {
            if let Some(path) = line.strip_prefix(&prefix) {
                found.push(path.trim_end().to_string());
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

#[test]
fn mk_modules_closure_of_a_symlink_forest_matches_modprobe() {
    let Some(nix) = Nix::find() else { return };
    let Some(depmod) = live_depmod30() else {
        return;
    };
    let Some((kernel, work, tree)) = kernel_tree() else {
        return;
    };
    // An alias, modules with softdeps (pre:, through aliases), one with
    // firmware in a subdirectory, and one allowed to be missing.
    let roots = ["virtio_blk", "fs-vfat", "xt_LOG", "btrfs", "jr3_pci"];
    let firmware = work.path().join("firmware");
    fs::create_dir_all(firmware.join("lib/firmware/comedi")).unwrap();
    fs::write(firmware.join("lib/firmware/comedi/jr3pci.idm"), b"jr3 blob").unwrap();
    fs::write(firmware.join("lib/firmware/unrelated.bin"), b"not needed").unwrap();
    fs::create_dir_all(firmware.join("lib/firmware/edid")).unwrap();
    fs::write(firmware.join("lib/firmware/edid/panel.bin.zst"), b"edid").unwrap();

    let root_list: Vec<String> = roots
        .iter()
        .chain(&["no-such-module"])
        .map(|r| nix_string(r))
        .collect();
    let out = nix.build(&nix.expr(&format!(
        "let forest = import {} {{ inherit pkgs; tree = {}; }};\nin kmodidx.mkModulesClosure {{\n  modules = forest;\n  rootModules = [ {} ];\n  firmware = {};\n  allowMissing = [ \"no-such-module\" ];\n  extraFirmwarePaths = [ \"edid/panel.bin\" ];\n}}",
        nix_path(&repo().join("nix/tests/forest.nix")),
        store_copy(&tree, "kernel-tree"),
        root_list.join(" "),
        store_copy(&firmware, "firmware"),
    )));

    // The closure holds the modules modprobe loads for the roots, and, as
    // kmodidx takes every softdep line of a module where modprobe honours
    // only the first (see the README's Closures), the providers of btrfs's
    // other softdep targets (sha256, xxhash64) besides.
    let module_dir = tree.join("lib/modules").join(&kernel.version);
    let reference30 = kernel.reference.with_file_name("ref-30");
    for (name, bytes) in index_files(&reference30) {
        fs::write(module_dir.join(name), bytes).unwrap();
    }
    let dir = out.join("lib/modules").join(&kernel.version);
    let mut want = modprobe_closure(&tree, &kernel.version, &roots);
    want.extend(
        [
            "kernel/arch/x86/crypto/sha256-ssse3.ko",
            "kernel/crypto/xxhash_generic.ko",
        ]
        .map(String::from),
    );
    want.sort();
    assert_eq!(linked_module_files(&dir), want);
    // Its firmware, the extra firmware (in the compressed form there is),
    // and nothing else.
    assert_eq!(
        fs::read(out.join("lib/firmware/comedi/jr3pci.idm")).unwrap(),
        b"jr3 blob"
    );
    assert_eq!(
        fs::read(out.join("lib/firmware/edid/panel.bin.zst")).unwrap(),
        b"edid"
    );
    assert!(!out.join("lib/firmware/unrelated.bin").exists());
    // Its index is what depmod writes over the closure (the text files, which
    // Debian's depmod 30 writes as kmod 34.2 does).
    let copy = tempfile::tempdir().unwrap();
    let status = Command::new("cp")
        .arg("-r")
        .arg(out.join("lib"))
        .arg(copy.path())
        .status()
        .unwrap();
    assert!(status.success());
    let copied = copy.path().join("lib/modules").join(&kernel.version);
    let status = Command::new("chmod")
        .arg("-R")
        .arg("u+w")
        .arg(copy.path())
        .status()
        .unwrap();
    assert!(status.success());
    let run = Command::new(&depmod)
        .arg("-b")
        .arg(copy.path())
        .args(["-C", "/nonexistent", &kernel.version])
        .output()
        .unwrap();
    assert!(run.status.success(), "depmod over the closure failed");
    let text = |files: std::collections::BTreeMap<String, Vec<u8>>| {
        files
            .into_iter()
            .filter(|(name, _)| !name.ends_with(".bin") && name != "modules.weakdep")
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    assert_same_files(
        "mkModulesClosure's index vs depmod over the closure",
        &text(depmod_written(&copied)),
        &text(depmod_written(&dir)),
    );
    nix.delete(&out);
}

/// Builds the package from source with the stub's buildRustPackage (cargo,
/// offline, from the host's crate cache), and indexes a kernel with it
/// through the default `kmodidx` argument.
#[test]
fn package_builds_from_source_with_the_committed_lock_file() {
    let Some(nix) = Nix::find() else { return };
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .expect("rustc");
    let sysroot = String::from_utf8(sysroot.stdout)
        .unwrap()
        .trim()
        .to_string();
    let cargo_home = std::env::var("CARGO_HOME")
        .unwrap_or_else(|_| format!("{}/.cargo", std::env::var("HOME").unwrap()));
    let env = [
        ("KMODIDX_STUB_RUST_SYSROOT", sysroot),
        ("KMODIDX_STUB_CARGO_HOME", cargo_home),
    ];
    let package = nix.build_env(
        &format!("(import {} {{ }}).kmodidx", nix_path(&repo().join("nix"))),
        &env,
    );
    let version = Command::new(package.join("bin/kmodidx"))
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(version.stdout).unwrap().trim(),
        format!("kmodidx {}", env!("CARGO_PKG_VERSION"))
    );
    // An archive, so that only the package is under test here.
    let work = tempfile::tempdir().unwrap();
    let tar = work.path().join("basic.tar");
    let status = Command::new("tar")
        .arg("-C")
        .arg(repo().join("fixtures/trees/basic"))
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success(), "tar failed");
    let out = nix.build_env(
        &format!(
            "(import {} {{ }}).mkModulesIndex {{ modules = {}; }}",
            nix_path(&repo().join("nix")),
            store_copy(&tar, "basic.tar")
        ),
        &env,
    );
    let direct = work.path().join("direct");
    let run = kmodidx(&[
        "build",
        "--from",
        tar.to_str().unwrap(),
        "--out",
        direct.to_str().unwrap(),
    ]);
    assert!(run.status.success());
    let version = only_version(&direct.join("lib/modules"));
    assert_same_files(
        "the nix-built package's index vs this build's",
        &index_files(&direct.join("lib/modules").join(&version)),
        &depmod_written(&out.join("lib/modules").join(&version)),
    );
    nix.delete(&out);
}
