//! Conformance on real kernels: every package in the shared corpus is
//! unpacked and indexed, and each file is compared byte for byte with
//!
//! * depmod 34.2's reference output (`<corpus>/<version>/ref-34.2/`), in
//!   the default mode, at one thread and at all threads;
//! * Debian's depmod 30 run live on the same tree, with `--compat kmod30`.
//!
//! The corpus lives in `../shared/corpus` beside the repository, or where
//! `KMODIDX_CORPUS` points. Without it these tests say so loudly and pass.

use std::process::Command;

use crate::common::*;

fn build(
    kernel: &Kernel,
    extra: &[&str],
    env: &[(&str, &str)],
) -> std::collections::BTreeMap<String, Vec<u8>> {
    let out = tempfile::tempdir().unwrap();
    let mut args = vec![
        "build",
        "--from",
        kernel.root.to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let run = kmodidx_env(&args, env);
    assert!(
        run.status.success(),
        "kmodidx build failed for {}: {}",
        kernel.version,
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        run.stderr.is_empty(),
        "unexpected messages: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    index_files(&out.path().join("lib/modules").join(&kernel.version))
}

#[test]
fn real_kernels_match_kmod34_and_debian_depmod30() {
    let Some(corpus) = corpus_dir() else { return };
    for kernel in unpack_corpus(&corpus) {
        let reference = index_files(&kernel.reference);
        assert_eq!(
            reference.len(),
            11,
            "ref-34.2 of {} is incomplete",
            kernel.version
        );
        let what = format!("{} vs ref-34.2", kernel.version);
        assert_same_files(&what, &reference, &build(&kernel, &[], &[]));
        // One thread, and symbol checks against the kernel's Module.symvers,
        // which must stay silent on these kernels (as depmod -e -E does).
        let symvers = corpus.join(&kernel.version).join("Module.symvers");
        let checked = ["--symvers", symvers.to_str().unwrap(), "--strict"];
        let what = format!(
            "{} vs ref-34.2 at one thread, with --symvers",
            kernel.version
        );
        let one_thread = build(&kernel, &checked, &[("RAYON_NUM_THREADS", "1")]);
        assert_same_files(&what, &reference, &one_thread);

        // Without a manifest, modules are read piecemeal (only their tables).
        let ours = build(&kernel, &["--compat", "kmod30", "--no-manifest"], &[]);
        let Some(live) = run_debian_depmod(&kernel) else {
            continue;
        };
        assert_eq!(live.len(), 10, "Debian's depmod wrote {} files", live.len());
        assert_same_files(
            &format!("{} vs live depmod 30", kernel.version),
            &live,
            &ours,
        );
    }
}

/// `ln -s kmodidx depmod && ./depmod -b ROOT VERSION` writes exactly the
/// reference files into the tree, and `-e -E Module.symvers` stays silent on
/// these kernels, as kmod does.
#[test]
fn drop_in_depmod_matches_kmod34_on_real_kernels() {
    let Some(corpus) = corpus_dir() else { return };
    let bin = tempfile::tempdir().unwrap();
    let depmod = bin.path().join("depmod");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_kmodidx"), &depmod).unwrap();
    for kernel in unpack_corpus(&corpus) {
        let root = kernel.root.to_str().unwrap();
        let symvers = corpus.join(&kernel.version).join("Module.symvers");
        let runs: [Vec<&str>; 2] = [
            vec!["-b", root, &kernel.version],
            vec![
                "-e",
                "-E",
                symvers.to_str().unwrap(),
                "-b",
                root,
                &kernel.version,
            ],
        ];
        for args in runs {
            let run = Command::new(&depmod).args(&args).output().unwrap();
            assert!(run.status.success(), "depmod {args:?} failed");
            assert!(
                run.stderr.is_empty() && run.stdout.is_empty(),
                "depmod {args:?} printed: {}",
                String::from_utf8_lossy(&run.stderr)
            );
            let written = depmod_written(&kernel.root.join("lib/modules").join(&kernel.version));
            let what = format!("{} depmod {args:?}", kernel.version);
            assert_same_files(&what, &index_files(&kernel.reference), &written);
        }
    }
}

/// Runs Debian's depmod on a copy of the tree; returns what it wrote.
/// Without Debian's depmod installed this is skipped loudly, except in CI
/// (`CI` set), where .ci/run installs it and its absence is a failure.
fn run_debian_depmod(kernel: &Kernel) -> Option<std::collections::BTreeMap<String, Vec<u8>>> {
    let depmod = live_depmod30()?;
    let version = Command::new(&depmod).arg("-V").output().unwrap();
    assert!(
        String::from_utf8_lossy(&version.stdout).contains("kmod version 30"),
        "the live oracle must be kmod 30, found: {}",
        String::from_utf8_lossy(&version.stdout)
    );
    let copy = tempfile::tempdir().unwrap();
    let status = Command::new("cp")
        .arg("-a")
        .arg(kernel.root.join("lib"))
        .arg(copy.path())
        .status()
        .unwrap();
    assert!(status.success());
    let run = Command::new(depmod)
        .args([
            "-b",
            copy.path().to_str().unwrap(),
            "-C",
            "/nonexistent",
            &kernel.version,
        ])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "depmod failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let written = depmod_written(&copy.path().join("lib/modules").join(&kernel.version));
    Some(written)
}

/// Issue 9: a buildEnv-style symlink forest of each corpus kernel (real
/// directories; every file, modules included, an absolute link into a
/// "store" outside the input). Without `--follow-links-under` the links
/// resolve inside the input, lead nowhere, and the build stops with exit
/// status 2 (also with `--strict`); with it, the index is depmod 34.2's.
#[test]
fn symlink_forests_of_real_kernels() {
    let Some(corpus) = corpus_dir() else { return };
    for kernel in unpack_corpus(&corpus) {
        let store = kernel.root.clone();
        let forest = kernel.dir.path().join("forest");
        let package = walk(&store);
        for (path, item) in &package {
            let at = forest.join(path);
            match item {
                Item::Dir => std::fs::create_dir_all(&at).unwrap(),
                _ => std::os::unix::fs::symlink(store.join(path), &at).unwrap(),
            }
        }
        let out = kernel.dir.path().join("out");
        let args = |extra: &[&str]| {
            let mut args = vec![
                "build".to_string(),
                "--from".into(),
                forest.display().to_string(),
                "--out".into(),
                out.display().to_string(),
            ];
            args.extend(extra.iter().map(|a| a.to_string()));
            args
        };
        for extra in [&[][..], &["--strict"]] {
            let args = args(extra);
            let run = kmodidx(&args.iter().map(String::as_str).collect::<Vec<_>>());
            let stderr = String::from_utf8_lossy(&run.stderr);
            assert_eq!(run.status.code(), Some(2), "{extra:?}: {stderr}");
            assert!(stderr.contains("--follow-links-under"), "{stderr}");
            assert!(!out.exists());
        }
        let args = args(&["--follow-links-under", store.to_str().unwrap()]);
        let run = kmodidx(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        assert_same_files(
            &format!("{} forest vs ref-34.2", kernel.version),
            &index_files(&kernel.reference),
            &index_files(&out.join("lib/modules").join(&kernel.version)),
        );
    }
}
