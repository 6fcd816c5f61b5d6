//! The Bazel rules in `bazel/`: `bazel/test.sh` builds the example workspace
//! (`bazel/example`, whose WORKSPACE is the documented one) with a real Bazel
//! (Debian's bazel-bootstrap, offline, `--nosandbox_debug` the only build
//! flag) on the corpus's 6.1 kernel, and checks the index against kmod
//! 34.2's reference, the tree-artifact and provider plumbing, the hermetic
//! command line, the disk-cache hit after `bazel clean`, the strict failure,
//! a Bazel-built tool (`tool =`), the setup errors, and that Bazel fetched
//! nothing.
//!
//! Needs `bazel` on PATH and the corpus: without them, a loud skip, except
//! in CI (`CI` set), where .ci/run installs Bazel and a missing piece is a
//! failure.

use std::process::Command;

use crate::common::*;

fn have_bazel() -> bool {
    let found = Command::new("bazel")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        missing("`bazel` on PATH (apt-get install bazel-bootstrap) for the Bazel rules test");
    }
    found
}

#[test]
fn example_workspace_indexes_the_corpus_kernel_hermetically() {
    let Some(corpus) = corpus_dir() else { return };
    if !have_bazel() {
        return;
    }
    let run = Command::new("bash")
        .arg(repo().join("bazel/test.sh"))
        .arg(env!("CARGO_BIN_EXE_kmodidx"))
        .env("KMODIDX_CORPUS", &corpus)
        .output()
        .expect("run bazel/test.sh");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "bazel/test.sh failed:\n{stdout}\n{stderr}"
    );
    // Shown with --nocapture: what was checked, and how long it took.
    println!("{stdout}");
}
