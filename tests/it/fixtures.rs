//! Golden tests: kmodidx must reproduce, byte for byte, what kmod 34.2 and
//! Debian's depmod 30 wrote for each synthetic tree in fixtures/trees.

use std::fs;

use crate::common::*;

/// Scenario names, from the trees directory.
fn scenarios() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(repo().join("fixtures/trees"))
        .expect("fixtures/trees")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 10, "fixture trees are missing");
    names
}

/// Builds `scenario` with `--compat compat` and compares with its golden.
fn check(scenario: &str, compat: &str) {
    check_variant(scenario, compat, compat, &[]);
}

/// The `-errsyms` goldens: depmod -e -E ROOT/Module.symvers, which
/// `kmodidx build --symvers` mirrors.
#[test]
fn symbol_checks_match_depmod_errsyms() {
    let mut checked = 0;
    for scenario in scenarios() {
        let tree = repo().join("fixtures/trees").join(&scenario);
        let symvers = tree.join("Module.symvers");
        if !symvers.exists() {
            continue;
        }
        let symvers = symvers.to_str().unwrap().to_string();
        check_variant(
            &scenario,
            "kmod34-errsyms",
            "kmod34",
            &["--symvers", &symvers],
        );
        check_variant(
            &scenario,
            "kmod30-errsyms",
            "kmod30",
            &["--symvers", &symvers],
        );
        checked += 1;
    }
    assert!(
        checked >= 8,
        "only {checked} scenarios have a Module.symvers"
    );
}

fn check_variant(scenario: &str, golden_name: &str, compat: &str, extra: &[&str]) {
    let tree = repo().join("fixtures/trees").join(scenario);
    let golden = repo()
        .join("fixtures/golden")
        .join(scenario)
        .join(golden_name);
    let version = only_version(&tree.join("lib/modules"));
    let out = tempfile::tempdir().unwrap();
    let mut args = vec![
        "build",
        "--from",
        tree.to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
        "--compat",
        compat,
    ];
    args.extend_from_slice(extra);
    let run = kmodidx(&args);

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
fn every_scenario_matches_kmod34() {
    for scenario in scenarios() {
        check(&scenario, "kmod34");
    }
}

#[test]
fn every_scenario_matches_debian_depmod30() {
    for scenario in scenarios() {
        // Debian builds kmod 30 without zlib, so it skips .ko.gz modules
        // entirely; kmodidx reads them in every mode.
        if scenario == "compressed-gz" {
            continue;
        }
        check(&scenario, "kmod30");
    }
}

#[test]
fn a_cycle_writes_nothing() {
    let tree = repo().join("fixtures/trees/cycle");
    let out = tempfile::tempdir().unwrap();
    let run = kmodidx(&[
        "build",
        "--from",
        tree.to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
    ]);
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
        let run = kmodidx_env(
            &[
                "build",
                "--from",
                tree.to_str().unwrap(),
                "--out",
                out.path().to_str().unwrap(),
            ],
            &[("RAYON_NUM_THREADS", threads)],
        );
        assert!(run.status.success());
        results.push(index_files(&out.path().join("lib/modules").join(&version)));
    }
    assert_eq!(results[0], results[1]);
    assert_eq!(results[0], results[2]);
}
