//! Opt-in conformance on more kernels: every `.deb` in the directory named by
//! `KMODIDX_EXTRA_DEBS` (fetch them with `apt-get download
//! linux-image-…`, any architecture) is unpacked and indexed, and each file
//! is compared byte for byte with Debian's depmod 30 run live on the same
//! tree (`--compat kmod30`), and, when `KMODIDX_DEPMOD34` names a kmod 34.2
//! depmod, with its output too (default mode). Opt-in: run it with
//! `cargo test --release --test it extra_kernels -- --ignored`; without the
//! variable it fails.

use std::fs;
use std::path::PathBuf;

use crate::common::*;

#[test]
#[ignore = "opt-in: set KMODIDX_EXTRA_DEBS to a directory of kernel .debs"]
fn extra_kernels_match_depmod() {
    let dir = std::env::var_os("KMODIDX_EXTRA_DEBS")
        .map(PathBuf::from)
        .expect("set KMODIDX_EXTRA_DEBS to a directory of linux-image .debs");
    let depmod34 = std::env::var_os("KMODIDX_DEPMOD34").map(PathBuf::from);
    let depmod30 = live_depmod30();
    let mut debs: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    debs.sort();
    assert!(!debs.is_empty(), "no .deb in {}", dir.display());
    let mut compared = 0;
    for deb in debs {
        let work = tempfile::tempdir().unwrap();
        let root = work.path().join("root");
        unpack_deb(&deb, &root);
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
            build_ok(&root, out.path(), &["--compat", compat], &[]);
            let ours = index_files(&out.path().join(module_dir).join(&version));
            let module_dir_flag = format!("/{module_dir}");
            let mut flags = vec!["-C", "/nonexistent"];
            if module_dir != "lib/modules" {
                flags.extend(["-m", &module_dir_flag]);
            }
            let want = depmod_on_copy(oracle, &root, module_dir, &version, &flags);
            assert_same_files(&format!("{name} ({compat})"), &want, &ours);
            eprintln!(
                "{name}: {} files identical to {} ({compat})",
                want.len(),
                oracle.display()
            );
            compared += 1;
        }
    }
    assert!(compared > 0, "no depmod to compare with");
}
