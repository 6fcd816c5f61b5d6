//! The committed fixture trees are what the generator writes today:
//! `fixtures/gen` (kmodidx-fixturegen) is run into a scratch directory and
//! every file and symlink is compared byte for byte with `fixtures/trees`
//! (and the closure fixture with `fixtures/closure`).
//! A change to the generator must come with its regenerated trees (and
//! goldens; see fixtures/README.md).

use crate::common::*;

#[test]
fn fixturegen_reproduces_the_committed_trees() {
    let scratch = tempfile::tempdir().unwrap();
    let written = kmodidx_fixturegen::write_trees(scratch.path()).expect("fixturegen");
    assert!(written.len() >= 10, "only {} scenarios", written.len());
    same_tree(
        &repo().join("fixtures/trees"),
        scratch.path(),
        "cargo run -p kmodidx-fixturegen --release -- fixtures/trees",
    );
}

#[test]
fn fixturegen_reproduces_the_committed_closure_fixture() {
    let scratch = tempfile::tempdir().unwrap();
    kmodidx_fixturegen::write_closure(scratch.path()).expect("fixturegen");
    same_tree(
        &repo().join("fixtures/closure"),
        &scratch.path().join("closure"),
        "cargo run -p kmodidx-fixturegen --release -- closure fixtures",
    );
}

/// Asserts that the committed tree `committed` is the generated `generated`
/// (`how` regenerates it).
fn same_tree(committed: &std::path::Path, generated: &std::path::Path, how: &str) {
    let want = snapshot(committed);
    let got = snapshot(generated);
    let mut problems = Vec::new();
    for (path, bytes) in &want {
        match got.get(path) {
            None => problems.push(format!("{path}: committed, not generated")),
            Some(generated) => {
                if let Some(diff) = first_difference(bytes, generated) {
                    problems.push(format!("{path}: {diff}"));
                }
            }
        }
    }
    for path in got.keys().filter(|p| !want.contains_key(*p)) {
        problems.push(format!("{path}: generated, not committed"));
    }
    assert!(
        problems.is_empty(),
        "{} is not what fixtures/gen writes (regenerate with `{how}`):\n  {}",
        committed.display(),
        problems.join("\n  ")
    );
}
