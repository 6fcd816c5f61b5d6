//! Shell completions and man pages: made from the parser's own definition,
//! and the committed pages under `doc/` kept in step with it.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use crate::common::*;

/// The long options `kmodidx SUBCOMMAND --help` lists (its option lines,
/// `  -q, --quiet` or `      --from <DIR>`), without `--help` and
/// `--version`: read from the parser itself, so the list never drifts.
fn long_options(subcommand: &str) -> Vec<String> {
    let run = kmodidx(&[subcommand, "--help"]);
    assert!(run.status.success());
    let mut options: Vec<String> = String::from_utf8(run.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| {
            let line = line.trim_start();
            let line = match line.strip_prefix('-') {
                Some(rest) if !rest.starts_with('-') => rest.get(3..)?,
                _ => line,
            };
            let name: String = line
                .strip_prefix("--")?
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '-')
                .collect();
            Some(format!("--{name}"))
        })
        .filter(|o| o != "--help" && o != "--version")
        .collect();
    options.dedup();
    assert!(options.len() > 3, "{subcommand}: {options:?}");
    options
}

const SUBCOMMANDS: &[&str] = &[
    "build",
    "verify",
    "query",
    "diff",
    "check",
    "depmod",
    "completions",
];

fn completions(shell: &str) -> String {
    let run = kmodidx(&["completions", shell]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(run.stderr.is_empty());
    String::from_utf8(run.stdout).unwrap()
}

#[test]
fn bash_completions_name_every_subcommand_and_flag() {
    let script = completions("bash");
    for word in SUBCOMMANDS {
        assert!(script.contains(word), "bash completions lack {word}");
    }
    for subcommand in ["build", "verify", "diff", "check"] {
        for option in long_options(subcommand) {
            assert!(
                script.contains(&option),
                "bash completions lack {subcommand} {option}"
            );
        }
    }
    // The hidden `man` stays hidden.
    assert!(!script.contains("kmodidx__man"), "man is hidden");
    // Values of --compat are offered.
    assert!(script.contains("kmod34 kmod33 kmod30"), "compat values");
    // And the script is valid bash.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kmodidx.bash");
    fs::write(&file, &script).unwrap();
    let check = Command::new("bash").arg("-n").arg(&file).output().unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn completions_for_every_other_shell_name_build_flags() {
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let script = completions(shell);
        // (elvish and powershell complete option names, not their values)
        for word in [
            "build",
            "verify",
            "completions",
            "staged",
            "report",
            "no-manifest",
        ] {
            assert!(script.contains(word), "{shell} completions lack {word}");
        }
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let run = kmodidx(&["completions", "tcsh"]);
    assert_eq!(run.status.code(), Some(2));
    let text = String::from_utf8_lossy(&run.stderr);
    assert!(
        text.contains("possible values: bash, elvish, fish, powershell, zsh"),
        "{text}"
    );
}

/// Every file of a directory, by name.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn committed_man_pages_are_up_to_date() {
    let dir = tempfile::tempdir().unwrap();
    let run = kmodidx(&["man", "--out-dir", dir.path().to_str().unwrap()]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let fresh = files(dir.path());
    let committed = files(&repo().join("doc"));
    let stale: Vec<&String> = fresh
        .keys()
        .chain(committed.keys())
        .filter(|name| fresh.get(*name) != committed.get(*name))
        .collect();
    assert!(
        stale.is_empty(),
        "doc/ is out of date ({stale:?}); run: cargo run --release -- man --out-dir doc"
    );
    assert!(committed.contains_key("kmodidx.1") && committed.contains_key("kmodidx-build.1"));
}

#[test]
fn man_prints_one_page() {
    let run = kmodidx(&["man", "build"]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let page = String::from_utf8(run.stdout).unwrap();
    assert!(page.starts_with(".ie \\n(.g .ds Aq \\(aq\n"), "roff");
    assert!(page.contains(".TH kmodidx-build 1"), "{page}");
    for option in long_options("build") {
        assert!(
            page.contains(&option.replace('-', "\\-")),
            "the page lacks {option}"
        );
    }
    let run = kmodidx(&["man", "nosuch"]);
    assert_eq!(run.status.code(), Some(2));
    let text = String::from_utf8_lossy(&run.stderr);
    assert!(
        text.contains(
            "no man page `nosuch`; there are: kmodidx, build, verify, query, query-deps,"
        ),
        "{text}"
    );
    for page in SUBCOMMANDS {
        assert!(
            text.contains(&format!(" {page},")) || text.ends_with(&format!(" {page}\n")),
            "{text}"
        );
    }
}

#[test]
fn depmod_keeps_its_own_version_and_help_flags() {
    // The subcommand's flags are depmod's, not clap's.
    for flag in ["-V", "--version"] {
        let run = kmodidx(&["depmod", flag]);
        assert!(run.status.success());
        assert!(String::from_utf8_lossy(&run.stdout).starts_with("kmod version 34.2 (kmodidx "));
    }
    let run = kmodidx(&["depmod", "--help"]);
    assert!(String::from_utf8_lossy(&run.stdout)
        .starts_with("Usage:\n\tdepmod -[aA] [options] [forced_version]\n"));
}
