//! The committed fixture trees are what the generator writes today:
//! `fixtures/gen` (kmodidx-fixturegen) is run into a scratch directory and
//! every file and symlink is compared byte for byte with `fixtures/trees`.
//! A change to the generator must come with its regenerated trees (and
//! goldens; see fixtures/README.md).

use crate::common::*;

#[test]
fn fixturegen_reproduces_the_committed_trees() {
    let scratch = tempfile::tempdir().unwrap();
    let written = kmodidx_fixturegen::write_trees(scratch.path()).expect("fixturegen");
    assert!(written.len() >= 10, "only {} scenarios", written.len());
    let want = snapshot(&repo().join("fixtures/trees"));
    let got = snapshot(scratch.path());
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
        "fixtures/trees is not what fixtures/gen writes (regenerate with \
         `cargo run -p kmodidx-fixturegen --release -- fixtures/trees`):\n  {}",
        problems.join("\n  ")
    );
}
