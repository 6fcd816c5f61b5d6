//! Conformance on real kernels: every package in the shared corpus is
//! unpacked and indexed, and each file is compared byte for byte with
//!
//! * depmod 34.2's reference output (`<corpus>/<version>/ref-34.2/`), in
//!   the default mode, at one thread and at all threads;
//! * Debian's depmod 30 run live on the same tree, with `--compat kmod30`.
//!
//! Each check is a module with one `#[test]` per kernel. The corpus lives in
//! `../shared/corpus` beside the repository, or where `KMODIDX_CORPUS`
//! points. Without it these tests say so loudly and pass, except in CI
//! (`CI` set), where they fail.

use std::collections::BTreeMap;
use std::fs;
use std::process::Command;

use crate::common::*;

/// Builds the kernel's tree with `extra` flags; it must succeed silently.
fn indexed(kernel: &Kernel, extra: &[&str], env: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
    let out = tempfile::tempdir().unwrap();
    let run = build_ok(&kernel.root, out.path(), extra, env);
    assert!(
        run.stderr.is_empty(),
        "unexpected messages: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    index_files(&out.path().join("lib/modules").join(&kernel.version))
}

fn reference(kernel: &Kernel) -> BTreeMap<String, Vec<u8>> {
    let reference = index_files(&kernel.reference);
    assert_eq!(
        reference.len(),
        11,
        "ref-34.2 of {} is incomplete",
        kernel.version
    );
    reference
}

/// The corpus holds exactly the kernels the tests below name.
#[test]
fn corpus_holds_the_tested_kernels() {
    let Some(corpus) = corpus_dir() else { return };
    let mut debs: Vec<String> = fs::read_dir(corpus.join("debian"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".deb"))
        .collect();
    debs.sort();
    let named: Vec<bool> = debs
        .iter()
        .map(|deb| {
            CORPUS_KERNELS.iter().any(|v| {
                deb.starts_with(&format!("linux-image-{v}_"))
                    || deb.starts_with(&format!("linux-image-{v}-unsigned_"))
            })
        })
        .collect();
    assert!(
        named.iter().all(|&n| n) && debs.len() == CORPUS_KERNELS.len(),
        "the corpus holds {debs:?}; common::CORPUS_KERNELS names {CORPUS_KERNELS:?}"
    );
}

/// The default build gives depmod 34.2's files.
mod default_build_matches_kmod34 {
    use super::*;
    for_each_kernel!(|kernel: &Kernel| {
        let what = format!("{} vs ref-34.2", kernel.version);
        assert_same_files(&what, &reference(kernel), &indexed(kernel, &[], &[]));
    });
}

/// One thread, and symbol checks against the kernel's Module.symvers, which
/// must stay silent on these kernels (as depmod -e -E does).
mod one_thread_with_symvers_matches_kmod34 {
    use super::*;
    for_each_kernel!(|kernel: &Kernel| {
        let symvers = kernel.symvers.to_str().unwrap();
        let checked = ["--symvers", symvers, "--strict"];
        let one_thread = indexed(kernel, &checked, &[("RAYON_NUM_THREADS", "1")]);
        let what = format!(
            "{} vs ref-34.2 at one thread, with --symvers",
            kernel.version
        );
        assert_same_files(&what, &reference(kernel), &one_thread);
    });
}

/// Without a manifest, modules are read piecemeal (only their tables); in
/// kmod 30 mode that gives what Debian's depmod writes, run live.
mod piecemeal_kmod30_matches_live_depmod30 {
    use super::*;
    for_each_kernel!(|kernel: &Kernel| {
        let ours = indexed(kernel, &["--compat", "kmod30", "--no-manifest"], &[]);
        let Some(depmod) = live_depmod30() else {
            return;
        };
        let version = Command::new(&depmod).arg("-V").output().unwrap();
        assert!(
            String::from_utf8_lossy(&version.stdout).contains("kmod version 30"),
            "the live oracle must be kmod 30, found: {}",
            String::from_utf8_lossy(&version.stdout)
        );
        let live = depmod_on_copy(
            &depmod,
            &kernel.root,
            "lib/modules",
            &kernel.version,
            &["-C", "/nonexistent"],
        );
        assert_eq!(live.len(), 10, "Debian's depmod wrote {} files", live.len());
        assert_same_files(
            &format!("{} vs live depmod 30", kernel.version),
            &live,
            &ours,
        );
    });
}

/// `ln -s kmodidx depmod && ./depmod ARGS -b ROOT VERSION` writes exactly the
/// reference files into the tree, and prints nothing.
fn drop_in_writes_the_reference(kernel: &Kernel, args: &[&str]) {
    let bin = tempfile::tempdir().unwrap();
    let depmod = bin.path().join("depmod");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_kmodidx"), &depmod).unwrap();
    let (_copy, root) = kernel.private_copy();
    let run = Command::new(&depmod)
        .args(args)
        .arg("-b")
        .arg(&root)
        .arg(&kernel.version)
        .output()
        .unwrap();
    assert!(run.status.success(), "depmod {args:?} failed");
    assert!(
        run.stderr.is_empty() && run.stdout.is_empty(),
        "depmod {args:?} printed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let written = depmod_written(&root.join("lib/modules").join(&kernel.version));
    let what = format!("{} depmod {args:?}", kernel.version);
    assert_same_files(&what, &index_files(&kernel.reference), &written);
}

mod drop_in_depmod_matches_kmod34 {
    use super::*;
    for_each_kernel!(|kernel: &Kernel| drop_in_writes_the_reference(kernel, &[]));
}

/// `-e -E Module.symvers` stays silent on these kernels, as kmod does.
mod drop_in_depmod_with_symvers_matches_kmod34 {
    use super::*;
    for_each_kernel!(|kernel: &Kernel| {
        let symvers = kernel.symvers.to_str().unwrap();
        drop_in_writes_the_reference(kernel, &["-e", "-E", symvers]);
    });
}

/// Issue 9: a buildEnv-style symlink forest of each corpus kernel (real
/// directories; every file, modules included, an absolute link into a
/// "store" outside the input: the unpacked package). Without
/// `--follow-links-under` the links resolve inside the input, lead nowhere,
/// and the build stops with exit status 2 (also with `--strict`); with it,
/// the index is depmod 34.2's.
mod symlink_forest_matches_kmod34 {
    use super::*;
    for_each_kernel!(|kernel: &Kernel| {
        let work = tempfile::tempdir().unwrap();
        let store = &kernel.root;
        let forest = work.path().join("forest");
        fn mirror(from: &std::path::Path, to: &std::path::Path) {
            fs::create_dir_all(to).unwrap();
            for entry in fs::read_dir(from).unwrap() {
                let entry = entry.unwrap();
                let (src, dst) = (entry.path(), to.join(entry.file_name()));
                if entry.file_type().unwrap().is_dir() {
                    mirror(&src, &dst);
                } else {
                    std::os::unix::fs::symlink(&src, &dst).unwrap();
                }
            }
        }
        mirror(store, &forest);
        let out = work.path().join("out");
        for extra in [&[][..], &["--strict"]] {
            let run = kmodidx_build(&forest, &out, extra, &[]);
            let stderr = String::from_utf8_lossy(&run.stderr);
            assert_eq!(run.status.code(), Some(2), "{extra:?}: {stderr}");
            assert!(stderr.contains("--follow-links-under"), "{stderr}");
            assert!(!out.exists());
        }
        let follow = ["--follow-links-under", store.to_str().unwrap()];
        let run = kmodidx_build(&forest, &out, &follow, &[]);
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        assert_same_files(
            &format!("{} forest vs ref-34.2", kernel.version),
            &reference(kernel),
            &index_files(&out.join("lib/modules").join(&kernel.version)),
        );
    });
}
