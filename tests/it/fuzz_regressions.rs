//! The fuzz campaign's regression corpus on stable Rust: every file under
//! `fuzz/regression/<target>/` (a minimised corpus plus every crash found)
//! goes through the very entry point the fuzz target runs (`fuzz/src/lib.rs`
//! is included below), and must return without a panic, within a time
//! bound. Memory is bounded by the small limits that entry point passes.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::common::repo;

#[path = "../../fuzz/src/lib.rs"]
mod harness;

/// Far above what any input takes (milliseconds), even in a debug build on
/// a loaded machine: the bound catches hangs and blow-ups, not slowness.
const PER_INPUT: Duration = Duration::from_secs(20);

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = repo().join("fuzz/regression").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "{}: the regression corpus is empty",
        dir.display()
    );
    files
}

fn replay(target: &str, entry: fn(&[u8])) {
    let mut slowest = (Duration::ZERO, PathBuf::new());
    for path in corpus(target) {
        let data = std::fs::read(&path).unwrap();
        let start = Instant::now();
        if std::panic::catch_unwind(|| entry(&data)).is_err() {
            panic!("{target}: {} panicked", path.display());
        }
        let took = start.elapsed();
        assert!(
            took < PER_INPUT,
            "{target}: {} took {took:?}",
            path.display()
        );
        if took > slowest.0 {
            slowest = (took, path);
        }
    }
    eprintln!(
        "{target}: slowest input {} ({:?})",
        slowest.1.display(),
        slowest.0
    );
}

/// One `#[test]` per fuzz target, named after it, replaying its corpus
/// through its entry point (tar and cpio share the archive reader).
macro_rules! targets {
    ($($target:ident => $entry:path),* $(,)?) => {
        $(
            #[test]
            fn $target() {
                replay(stringify!($target), $entry);
            }
        )*
    };
}

targets! {
    module => harness::module,
    tar => harness::archive,
    cpio => harness::archive,
    config => harness::config,
    kernel_symbols => harness::kernel_symbols,
    module_files => harness::module_files,
    manifest => harness::manifest,
    index_bin => harness::index_bin,
}
