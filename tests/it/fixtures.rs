//! Golden tests: kmodidx must reproduce, byte for byte, what kmod 34.2 and
//! Debian's depmod 30 wrote for each synthetic tree in fixtures/trees.

use std::fs;

use crate::common::*;

/// One module per scenario, one `#[test]` per golden variant of it:
/// `kmod34`, `kmod30`, and for trees with a `Module.symvers` the
/// `-errsyms` goldens (depmod -e -E ROOT/Module.symvers, which
/// `kmodidx build --symvers` mirrors).
macro_rules! scenarios {
    ($($module:ident: $scenario:literal [$($variant:ident),*];)*) => {
        /// `(scenario, golden variant)` of every test below.
        const TESTED: &[(&str, &str)] = &[$($(($scenario, stringify!($variant))),*),*];
        $(
            mod $module {
                $(
                    #[test]
                    fn $variant() {
                        super::$variant($scenario);
                    }
                )*
            }
        )*
    };
}

scenarios! {
    arches_aarch64: "arches-aarch64" [kmod34, kmod30, kmod34_errsyms, kmod30_errsyms];
    arches_arm: "arches-arm" [kmod34, kmod30, kmod34_errsyms, kmod30_errsyms];
    arches_i386: "arches-i386" [kmod34, kmod30, kmod34_errsyms, kmod30_errsyms];
    arches_mips: "arches-mips" [kmod34, kmod30, kmod34_errsyms, kmod30_errsyms];
    arches_ppc64: "arches-ppc64" [kmod34, kmod30, kmod34_errsyms, kmod30_errsyms];
    arches_s390x: "arches-s390x" [kmod34, kmod30, kmod34_errsyms, kmod30_errsyms];
    arches_sparc64: "arches-sparc64" [kmod34, kmod30, kmod34_errsyms, kmod30_errsyms];
    basic: "basic" [kmod34, kmod30];
    compressed: "compressed" [kmod34, kmod30];
    // Debian builds kmod 30 without zlib, so it skips .ko.gz modules
    // entirely; kmodidx reads them in every mode, so only kmod34 applies.
    compressed_gz: "compressed-gz" [kmod34];
    cycle: "cycle" [kmod34, kmod30];
    detect_loop: "detect-loop" [kmod34, kmod30];
    missing_builtin: "missing-builtin" [kmod34, kmod30];
    symvers: "symvers" [kmod34, kmod30, kmod34_errsyms, kmod30_errsyms];
}

fn kmod34(scenario: &str) {
    check_variant(scenario, "kmod34", "kmod34", &[]);
}

fn kmod30(scenario: &str) {
    check_variant(scenario, "kmod30", "kmod30", &[]);
}

fn symvers_of(scenario: &str) -> String {
    let symvers = repo()
        .join("fixtures/trees")
        .join(scenario)
        .join("Module.symvers");
    assert!(symvers.exists(), "{scenario} has no Module.symvers");
    symvers.to_str().unwrap().to_string()
}

/// The `-errsyms` golden of `compat` (`kmod34-errsyms`, ...).
fn errsyms(scenario: &str, compat: &str) {
    let symvers = symvers_of(scenario);
    check_variant(
        scenario,
        &format!("{compat}-errsyms"),
        compat,
        &["--symvers", &symvers],
    );
}

fn kmod34_errsyms(scenario: &str) {
    errsyms(scenario, "kmod34");
}

fn kmod30_errsyms(scenario: &str) {
    errsyms(scenario, "kmod30");
}

/// Every golden of every tree has its test (but Debian's zlib-less kmod 30
/// on the `.ko.gz` tree, see above).
#[test]
fn every_golden_has_a_test() {
    let mut goldens = Vec::new();
    for scenario in fs::read_dir(repo().join("fixtures/golden")).unwrap() {
        let scenario = scenario.unwrap().file_name().to_string_lossy().into_owned();
        let trees = repo().join("fixtures/trees");
        assert!(
            trees.join(&scenario).is_dir(),
            "golden without a tree: {scenario}"
        );
        for variant in fs::read_dir(repo().join("fixtures/golden").join(&scenario)).unwrap() {
            let variant = variant.unwrap().file_name().to_string_lossy().into_owned();
            goldens.push((scenario.clone(), variant));
        }
    }
    goldens.retain(|g| *g != ("compressed-gz".to_string(), "kmod30".to_string()));
    goldens.sort();
    let mut tested: Vec<(String, String)> = TESTED
        .iter()
        .map(|(s, v)| (s.to_string(), v.replace('_', "-")))
        .collect();
    tested.sort();
    assert_eq!(goldens, tested);
    let trees = fs::read_dir(repo().join("fixtures/trees")).unwrap().count();
    let scenarios: std::collections::BTreeSet<&str> = TESTED.iter().map(|(s, _)| *s).collect();
    assert_eq!(trees, scenarios.len(), "a tree without goldens");
}

fn check_variant(scenario: &str, golden_name: &str, compat: &str, extra: &[&str]) {
    let tree = repo().join("fixtures/trees").join(scenario);
    let golden = repo()
        .join("fixtures/golden")
        .join(scenario)
        .join(golden_name);
    let version = only_version(&tree.join("lib/modules"));
    let out = tempfile::tempdir().unwrap();
    let mut args = vec!["--compat", compat];
    args.extend_from_slice(extra);
    let run = kmodidx_build(&tree, out.path(), &args, &[]);

    let want_status: i32 = fs::read_to_string(golden.join("exit-code"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        run.status.code(),
        Some(want_status),
        "{scenario}/{compat}: exit status; stderr:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );

    // depmod ran on a copy at @ROOT@; kmodidx names paths inside the image.
    let want_stderr = fs::read_to_string(golden.join("stderr"))
        .unwrap()
        .replace("@ROOT@", "");
    // build has two levels of problems: depmod's FATAL is an error there.
    let want_lines: Vec<String> = want_stderr
        .lines()
        .map(|l| l.replace("depmod: FATAL: ", "depmod: ERROR: "))
        .collect();
    let mut got = build_lines(&run.stderr);
    if want_status != 0 {
        // build ends a failed run with its own line saying why.
        let last = got.pop().unwrap_or_default();
        assert!(
            last.ends_with("nothing was written"),
            "{scenario}/{compat}: {last}"
        );
    }
    assert_eq!(got, want_lines, "{scenario}/{compat}: messages");

    let written = index_files(&out.path().join("lib/modules").join(&version));
    assert_same_files(
        &format!("{scenario}/{compat}"),
        &index_files(&golden),
        &written,
    );
}

#[test]
fn a_cycle_writes_nothing() {
    let tree = repo().join("fixtures/trees/cycle");
    let out = tempfile::tempdir().unwrap();
    let run = kmodidx_build(&tree, out.path(), &[], &[]);
    assert!(!run.status.success());
    assert_eq!(
        fs::read_dir(out.path()).unwrap().count(),
        0,
        "output written despite a cycle"
    );
}

#[test]
fn thread_count_does_not_change_output() {
    let tree = repo().join("fixtures/trees/basic");
    let version = only_version(&tree.join("lib/modules"));
    let mut results = Vec::new();
    for threads in ["1", "2", "7"] {
        let out = tempfile::tempdir().unwrap();
        build_ok(&tree, out.path(), &[], &[("RAYON_NUM_THREADS", threads)]);
        results.push(index_files(&out.path().join("lib/modules").join(&version)));
    }
    assert_eq!(results[0], results[1]);
    assert_eq!(results[0], results[2]);
}
