//! Opt-in conformance on more kernels: every `.deb` in the directory named by
//! `KMODIDX_EXTRA_DEBS` (fetch them with `apt-get download
//! linux-image-…`, any architecture) is unpacked and indexed, and each file
//! is compared byte for byte with Debian's depmod 30 run live on the same
//! tree (`--compat kmod30`), and, when `KMODIDX_DEPMOD34` names a kmod 34.2
//! depmod, with its output too (default mode). Without the variable this
//! test does nothing.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

fn depmod_output(
    depmod: &Path,
    root: &Path,
    module_dir: &str,
    version: &str,
) -> std::collections::BTreeMap<String, Vec<u8>> {
    let copy = tempfile::tempdir().unwrap();
    let top = module_dir.split('/').next().unwrap();
    assert!(Command::new("cp")
        .arg("-a")
        .arg(root.join(top))
        .arg(copy.path())
        .status()
        .unwrap()
        .success());
    let mut cmd = Command::new(depmod);
    cmd.args(["-b", copy.path().to_str().unwrap(), "-C", "/nonexistent"]);
    if module_dir != "lib/modules" {
        cmd.args(["-m", &format!("/{module_dir}")]);
    }
    let run = cmd.arg(version).output().unwrap();
    assert!(
        run.status.success(),
        "{}: {}",
        depmod.display(),
        String::from_utf8_lossy(&run.stderr)
    );
    let files = depmod_written(&copy.path().join(module_dir).join(version));
    files
}

#[test]
fn extra_kernels_match_depmod() {
    let Some(dir) = std::env::var_os("KMODIDX_EXTRA_DEBS").map(PathBuf::from) else {
        return;
    };
    let depmod34 = std::env::var_os("KMODIDX_DEPMOD34").map(PathBuf::from);
    let depmod30 = live_depmod30();
    let mut debs: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    debs.sort();
    assert!(!debs.is_empty(), "no .deb in {}", dir.display());
    for deb in debs {
        let work = tempfile::tempdir().unwrap();
        let root = work.path().join("root");
        assert!(Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(&root)
            .status()
            .unwrap()
            .success());
        let module_dir = if root.join("lib/modules").is_dir() {
            "lib/modules"
        } else {
            "usr/lib/modules"
        };
        let version = only_version(&root.join(module_dir));
        let name = deb.file_name().unwrap().to_string_lossy().into_owned();
        for (compat, oracle) in [
            ("kmod34", depmod34.as_deref()),
            ("kmod30", depmod30.as_deref()),
        ] {
            // Debian's depmod 30 has no -m, so it cannot index usr/lib/modules.
            let Some(oracle) = oracle.filter(|_| compat == "kmod34" || module_dir == "lib/modules")
            else {
                continue;
            };
            let out = tempfile::tempdir().unwrap();
            let run = kmodidx(&[
                "build",
                "--from",
                root.to_str().unwrap(),
                "--out",
                out.path().to_str().unwrap(),
                "--compat",
                compat,
            ]);
            assert!(
                run.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&run.stderr)
            );
            let ours = index_files(&out.path().join(module_dir).join(&version));
            let want = depmod_output(oracle, &root, module_dir, &version);
            assert_same_files(&format!("{name} ({compat})"), &want, &ours);
            eprintln!(
                "{name}: {} files identical to {} ({compat})",
                want.len(),
                oracle.display()
            );
        }
    }
}
