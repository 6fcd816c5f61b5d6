//! `kmodidx query` and `kmodidx diff`.
//!
//! `query deps` and `query resolve` are compared byte for byte (standard
//! output, standard error, exit status) with Debian's modprobe (kmod 30)
//! run as `modprobe -d ROOT -S VERSION -C /dev/null --show-depends NAME`
//! (or `-R NAME`) over the same indexed tree, one NAME per run, its paths
//! under ROOT written as image paths. The host's `/proc/cmdline`, which
//! modprobe reads, is handed to kmodidx with `--kernel-cmdline`.
//!
//! The NAMEs of a kernel are chosen by this fixed rule ([`sample_names`]):
//!
//! * every 7th line of `modules.order` (the first included), as the file's
//!   base name without extensions (so `crc32c-intel`, with its dash);
//! * every word of `modules.softdep` after `softdep`: the modules with
//!   soft dependencies and every soft dependency they name;
//! * every 10th line of `modules.builtin`, as a base name;
//! * every 25th alias pattern of `modules.alias`, instantiated: `*` as
//!   `00`, `?` as `0`, `[set]` as its first byte and `[!set]` as the first
//!   of `0-9A-Za-z_` not in it; and every 100th pattern as written;
//! * every 100th symbol of `modules.symbols`, as `symbol:NAME`;
//! * a few names that must fail or are spelled oddly.
//!
//! That is about 450 NAMEs per kernel.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::*;

/// modprobe's view of one kernel tree, and how to run it.
struct Oracle {
    modprobe: PathBuf,
    root: PathBuf,
    version: String,
}

/// One run's output: stdout, stderr, exit status.
type Run = (Vec<u8>, Vec<u8>, i32);

impl Oracle {
    /// modprobe's answer for one NAME, with ROOT paths written as image
    /// paths and Debian's debug-build message prefixes as kmod 34.2's
    /// default build prints them.
    fn run(&self, mode: &str, name: &str) -> Run {
        let out = Command::new(&self.modprobe)
            .args(["-d", self.root.to_str().unwrap(), "-S", &self.version])
            .args(["-C", "/dev/null", mode, name])
            .output()
            .expect("run modprobe");
        let prefix = format!("{}/lib/modules", self.root.display());
        let fix = |b: &[u8]| {
            let text = String::from_utf8_lossy(b).replace(&prefix, "/lib/modules");
            normalize_debug_messages(&text).into_bytes()
        };
        (
            fix(&out.stdout),
            fix(&out.stderr),
            out.status.code().unwrap_or(-1),
        )
    }

    /// modprobe's answers for `names`, concatenated as one kmodidx run
    /// prints them, and each NAME's own.
    fn run_all(&self, mode: &str, names: &[String]) -> (Run, Vec<Run>) {
        let half = names.len().div_ceil(2);
        let each: Vec<Run> = std::thread::scope(|s| {
            let handles: Vec<_> = names
                .chunks(half.max(1))
                .map(|chunk| {
                    s.spawn(move || chunk.iter().map(|n| self.run(mode, n)).collect::<Vec<_>>())
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        let mut all: Run = (Vec::new(), Vec::new(), 0);
        for (out, err, status) in &each {
            all.0.extend_from_slice(out);
            all.1.extend_from_slice(err);
            all.2 = all.2.max(*status);
        }
        (all, each)
    }
}

/// Debian builds libkmod with debug logging, whose messages carry the
/// source file and line; kmod 34.2's default build prints only the
/// function (`libkmod: ERROR: fn: ...`) or nothing (`modprobe: ERROR: ...`).
fn normalize_debug_messages(text: &str) -> String {
    let libkmod = regex::Regex::new(r"(?m)^libkmod: ([A-Z]+) [^ ]+:[0-9]+ ([a-z_]+): ").unwrap();
    let modprobe =
        regex::Regex::new(r"(?m)^modprobe: ([A-Z]+): [^ ]+:[0-9]+ [a-z_]+\(\) ").unwrap();
    let text = libkmod.replace_all(text, "libkmod: $1: $2: ");
    modprobe.replace_all(&text, "modprobe: $1: ").into_owned()
}

fn host_cmdline() -> String {
    fs::read_to_string("/proc/cmdline").unwrap_or_default()
}

fn run_query(sub: &str, from: &Path, names: &[String]) -> Output {
    let cmdline = format!("--kernel-cmdline={}", host_cmdline());
    let mut args = vec![
        "query",
        sub,
        "--from",
        from.to_str().unwrap(),
        &cmdline,
        "--",
    ];
    args.extend(names.iter().map(String::as_str));
    kmodidx(&args)
}

/// Compares one kmodidx run over `names` with modprobe's per-NAME runs.
/// On a difference, names the first NAME whose answer differs.
fn assert_matches_modprobe(oracle: &Oracle, mode: &str, from: &Path, names: &[String]) {
    let sub = if mode == "-R" { "resolve" } else { "deps" };
    let (want, each) = oracle.run_all(mode, names);
    let got = run_query(sub, from, names);
    let got: Run = (got.stdout, got.stderr, got.status.code().unwrap_or(-1));
    if got == want {
        return;
    }
    for (name, want) in names.iter().zip(&each) {
        let one = run_query(sub, from, std::slice::from_ref(name));
        let one: Run = (one.stdout, one.stderr, one.status.code().unwrap_or(-1));
        assert!(
            one == *want,
            "query {sub} {name:?} on {} differs from modprobe {mode}:\n--- modprobe (exit {}):\n{}{}\n--- kmodidx (exit {}):\n{}{}",
            oracle.version,
            want.2,
            String::from_utf8_lossy(&want.0),
            String::from_utf8_lossy(&want.1),
            one.2,
            String::from_utf8_lossy(&one.0),
            String::from_utf8_lossy(&one.1),
        );
    }
    panic!("query {sub} over all names differs from modprobe, but no single name does");
}

/// A pattern made into a string it matches (see the module docs).
fn instantiate(pattern: &str) -> String {
    let p = pattern.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            b'*' => out.push_str("00"),
            b'?' => out.push('0'),
            b'\\' if i + 1 < p.len() => {
                i += 1;
                out.push(p[i] as char);
            }
            b'[' => {
                let body_start = i + 1;
                let search_from = if p.get(body_start) == Some(&b']') {
                    body_start + 1
                } else {
                    body_start
                };
                match p[search_from..].iter().position(|&b| b == b']') {
                    Some(len) => {
                        let body = &pattern[body_start..search_from + len];
                        if let Some(set) = body.strip_prefix(['!', '^']) {
                            let pick =
                                "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
                                    .chars()
                                    .find(|c| !set.contains(*c))
                                    .unwrap();
                            out.push(pick);
                        } else {
                            out.push(body.chars().next().unwrap());
                        }
                        i = search_from + len;
                    }
                    None => out.push('['),
                }
            }
            b => out.push(b as char),
        }
        i += 1;
    }
    out
}

fn base_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    base.split('.').next().unwrap_or(base).to_string()
}

/// The NAMEs to ask about for the kernel in `moddir` (the rule in the
/// module docs).
fn sample_names(moddir: &Path) -> Vec<String> {
    let read = |name: &str| fs::read_to_string(moddir.join(name)).unwrap();
    let mut names: Vec<String> = read("modules.order")
        .lines()
        .filter(|l| !l.is_empty())
        .step_by(7)
        .map(base_name)
        .collect();
    for line in read("modules.softdep").lines() {
        if let Some(rest) = line.strip_prefix("softdep ") {
            names.extend(
                rest.split_whitespace()
                    .filter(|w| *w != "pre:" && *w != "post:")
                    .map(str::to_string),
            );
        }
    }
    names.extend(read("modules.builtin").lines().step_by(10).map(base_name));
    let aliases: Vec<String> = read("modules.alias")
        .lines()
        .filter_map(|l| l.strip_prefix("alias "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    names.extend(aliases.iter().step_by(25).map(|a| instantiate(a)));
    names.extend(aliases.iter().step_by(100).cloned());
    names.extend(
        read("modules.symbols")
            .lines()
            .filter_map(|l| l.strip_prefix("alias "))
            .filter_map(|l| l.split_whitespace().next())
            .step_by(100)
            .map(str::to_string),
    );
    names.extend(
        [
            "no_such_module",
            "fs-no-such",
            "foo[",
            "a]",
            "crc32c-intel",
            "snd-hda-intel",
        ]
        .map(String::from),
    );
    names
}

/// An indexed view of a corpus kernel: its shared unpacked tree linked
/// (hard links, no copying) into a scratch root, with kmod 34.2's index
/// files beside its modules; and the module directory there.
fn indexed_view(k: &Kernel) -> (tempfile::TempDir, PathBuf, PathBuf) {
    // Hard links need the same file system as the shared tree.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let root = dir.path().join("root");
    let linked = Command::new("cp")
        .arg("-al")
        .arg(&k.root)
        .arg(&root)
        .status()
        .unwrap();
    if !linked.success() {
        let _ = fs::remove_dir_all(&root);
        copy_tree(&k.root, &root);
    }
    let moddir = root.join("lib/modules").join(&k.version);
    for entry in fs::read_dir(&k.reference).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), moddir.join(entry.file_name())).unwrap();
    }
    (dir, root, moddir)
}

/// kmodidx against modprobe `mode` on kernel `k`'s sampled NAMEs.
fn matches_modprobe_on(k: &Kernel, mode: &str) {
    let Some(modprobe) = live_modprobe30() else {
        return;
    };
    let (_dir, root, moddir) = indexed_view(k);
    let names = sample_names(&moddir);
    assert!(
        names.len() >= 300,
        "only {} names for {}",
        names.len(),
        k.version
    );
    let oracle = Oracle {
        modprobe,
        root: root.clone(),
        version: k.version.clone(),
    };
    assert_matches_modprobe(&oracle, mode, &root, &names);
}

/// `query deps` against modprobe `--show-depends` on the sampled NAMEs.
mod deps_match_modprobe {
    use super::*;

    for_each_kernel!(|k: &Kernel| matches_modprobe_on(k, "--show-depends"));
}

/// `query resolve` against modprobe `-R` on the sampled NAMEs.
mod resolve_matches_modprobe {
    use super::*;

    for_each_kernel!(|k: &Kernel| matches_modprobe_on(k, "-R"));
}

/// Without a mappable `modules.builtin.bin`, libkmod reads every index
/// with its streaming reader, which orders equal-priority matches
/// differently.
#[test]
fn deps_and_resolve_match_modprobe_with_streamed_indexes() {
    with_kernel(CORPUS_KERNELS[0], |k| {
        let Some(modprobe) = live_modprobe30() else {
            return;
        };
        let (_dir, root, moddir) = indexed_view(k);
        fs::write(moddir.join("modules.builtin.bin"), b"").unwrap();
        let names: Vec<String> = sample_names(&moddir).into_iter().step_by(2).collect();
        let oracle = Oracle {
            modprobe,
            root: root.clone(),
            version: k.version.clone(),
        };
        assert_matches_modprobe(&oracle, "--show-depends", &root, &names);
        assert_matches_modprobe(&oracle, "-R", &root, &names);
    });
}

/// A tree without index files (the unpacked package as it is) is indexed
/// in memory first, and answers as modprobe does on the indexed tree; so
/// does a `build` archive of it.
#[test]
fn unindexed_tree_and_build_archive_answer_like_the_indexed_tree() {
    with_kernel(CORPUS_KERNELS[1], |k| {
        let Some(modprobe) = live_modprobe30() else {
            return;
        };
        let (_dir, indexed, moddir) = indexed_view(k);
        let names: Vec<String> = sample_names(&moddir).into_iter().step_by(4).collect();
        // The answers name image paths only, so the bare tree is queried
        // against modprobe on the indexed one.
        let oracle = Oracle {
            modprobe,
            root: indexed,
            version: k.version.clone(),
        };
        assert_matches_modprobe(&oracle, "--show-depends", &k.root, &names);

        let out = tempfile::tempdir().unwrap();
        let archive = out.path().join("image.tar.zst");
        let built = kmodidx(&[
            "build",
            "--from",
            k.root.to_str().unwrap(),
            "--out",
            archive.to_str().unwrap(),
            "--staged",
        ]);
        assert!(
            built.status.success(),
            "{}",
            String::from_utf8_lossy(&built.stderr)
        );
        assert_matches_modprobe(&oracle, "--show-depends", &archive, &names);
        assert_matches_modprobe(&oracle, "-R", &archive, &names);
    });
}

/// Lines libkmod reads as configuration from `modules.softdep`, beyond what
/// depmod writes there: aliases, options (also for an alias), install and
/// remove commands, a blacklist, pattern softdeps, a leading blank, bad
/// lines, `include`, a continued line.
const HAND_EDITED_SOFTDEP: &str = "alias my-alias top_net
alias wild* dia_top
options core_base debug=1 foo=bar
options top_net\tx=1\tz=3
options my_alias y=2
install loopfix /bin/echo hello $CMDLINE_OPTS
install dia_le* /bin/true
remove misc_dev /bin/rmmod-it
blacklist dia_top
blacklist usb_weak
softdep misc_dev pre: nomajor post: loopfix
softdep core_* post: dup-new
softdep  lead pre: x
bogus line here
include /etc/foo
softdep
options a\\
 b=1
";

/// The basic fixture in a scratch directory, changed by `edit` (given its
/// module directory), indexed by Debian's depmod; and modprobe on it.
fn basic_oracle(edit: impl FnOnce(&Path)) -> Option<(tempfile::TempDir, Oracle)> {
    let modprobe = live_modprobe30()?;
    let depmod = live_depmod30()?;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    copy_tree(&basic_tree(), &root);
    let version = only_version(&root.join("lib/modules"));
    edit(&root.join("lib/modules").join(&version));
    let status = Command::new(depmod)
        .args(["-b", root.to_str().unwrap(), "-C", "/nonexistent", &version])
        .output()
        .unwrap();
    assert!(status.status.success());
    let oracle = Oracle {
        modprobe,
        root,
        version,
    };
    Some((dir, oracle))
}

impl Oracle {
    /// The module directory of the tree.
    fn moddir(&self) -> PathBuf {
        self.root.join("lib/modules").join(&self.version)
    }

    /// `query deps` and `query resolve` against modprobe on `names`.
    fn assert_both_match(&self, names: &[String]) {
        assert_matches_modprobe(self, "--show-depends", &self.root, names);
        assert_matches_modprobe(self, "-R", &self.root, names);
    }
}

const BASIC_NAMES: [&str; 23] = [
    "top_net",
    "my-alias",
    "wildthing",
    "core_base",
    "core_util",
    "loopfix",
    "dia_left",
    "dia_top",
    "misc_dev",
    "usb_weak",
    "pci:v00008086d000010D3sv0sd0bc02sc00i0",
    "usb:v1234p5678d1dc0",
    "snd-foo",
    "a",
    "bar",
    "ext4",
    "serial_core",
    "crc32c-generic",
    "loopfix-b1",
    "dup-new",
    "nomajor",
    "bad[abc",
    "lead",
];

#[test]
fn hand_edited_softdep_configuration_matches_modprobe() {
    let Some((_dir, oracle)) = basic_oracle(|_| {}) else {
        return;
    };
    let softdep = oracle.moddir().join("modules.softdep");
    let mut text = fs::read_to_string(&softdep).unwrap();
    text.push_str(HAND_EDITED_SOFTDEP);
    fs::write(&softdep, text).unwrap();
    oracle.assert_both_match(&BASIC_NAMES.map(String::from));
}

/// Built-in modules share alias patterns, all at priority 0: the order of
/// the matches is the order libkmod's reader leaves them in, which differs
/// between its mapped reader and its streaming one (used when
/// `modules.builtin.bin` cannot be mapped).
#[test]
fn equal_priority_matches_follow_libkmods_reader() {
    let Some((_dir, oracle)) = basic_oracle(|moddir| {
        let file = moddir.join("modules.builtin.modinfo");
        let mut modinfo = fs::read(&file).unwrap();
        modinfo
            .extend_from_slice(b"foo.alias=tie*\0bar.alias=tie*\0baz.alias=ti?1\0qux.alias=t*\0");
        fs::write(file, modinfo).unwrap();
    }) else {
        return;
    };
    let names = ["tie1", "tiX1", "tx", "t"].map(String::from);
    let (mapped, _) = oracle.run_all("-R", &names);
    assert_eq!(
        String::from_utf8_lossy(&mapped.0),
        "foo\nbar\nbaz\nqux\nbaz\nqux\nqux\nqux\n"
    );
    oracle.assert_both_match(&names);
    fs::write(oracle.moddir().join("modules.builtin.bin"), b"").unwrap();
    let (streamed, _) = oracle.run_all("-R", &names);
    assert!(String::from_utf8_lossy(&streamed.0).starts_with("bar\nfoo\n"));
    oracle.assert_both_match(&names);
}

/// A dependency whose file is missing makes libkmod drop the whole
/// dependency list, with an error naming the file (libkmod prints its
/// context's address there, which kmodidx cannot: it prints `(ctx)`).
#[test]
fn missing_dependency_file_matches_modprobe() {
    let Some((_dir, oracle)) = basic_oracle(|_| {}) else {
        return;
    };
    fs::remove_file(oracle.moddir().join("kernel/lib/core_util.ko")).unwrap();
    let pointer = regex::Regex::new(r"ctx=0x[0-9a-f]+ ").unwrap();
    for name in ["top_net", "mid_bus", "core_util", "snd-foo"] {
        let (out, err, status) = oracle.run("--show-depends", name);
        let err = pointer
            .replace_all(&String::from_utf8_lossy(&err), "ctx=(ctx) ")
            .into_owned();
        let ours = run_query("deps", &oracle.root, &[name.to_string()]);
        assert_eq!(
            String::from_utf8_lossy(&ours.stdout),
            String::from_utf8_lossy(&out),
            "{name}"
        );
        assert_eq!(String::from_utf8_lossy(&ours.stderr), err, "{name}");
        assert_eq!(ours.status.code(), Some(status), "{name}");
    }
}

/// `kmodidx query SUB --from FROM ARGS...`.
fn query(sub: &str, from: &Path, args: &[&str]) -> Output {
    let mut all = vec!["query", sub, "--from", from.to_str().unwrap()];
    all.extend_from_slice(args);
    kmodidx(&all)
}

fn basic_tree() -> PathBuf {
    repo().join("fixtures/trees/basic")
}

#[test]
fn module_paths_are_loaded_by_path_as_kmod34_does() {
    let root = basic_tree();
    let path = "/lib/modules/6.1.0-fixture/kernel/lib/core_util.ko";
    let out = query("deps", &root, &[path]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "insmod /lib/modules/6.1.0-fixture/kernel/lib/core_base.ko \n\
         insmod /lib/modules/6.1.0-fixture/kernel/lib/core_util.ko \n"
    );
    let missing = "/lib/modules/6.1.0-fixture/kernel/lib/nope.ko";
    let out = query("resolve", &root, &[missing]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).ends_with(&format!(
        "modprobe: FATAL: Failed to get module from path {missing}: No such file or directory\n"
    )));
}

/// A build output without `--staged` holds the index alone: it answers as
/// the tree it was built from, its modules taken as installed.
#[test]
fn index_only_output_answers_as_its_tree() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let built = kmodidx(&[
        "build",
        "--from",
        basic_tree().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(built.status.success());
    let names = [
        "top_net",
        "snd-foo",
        "pci:v00008086d000010D3sv0sd0bc02sc00i0",
        "ext4",
        "nosuch",
    ];
    for sub in ["deps", "resolve"] {
        let from_tree = query(sub, &basic_tree(), &names);
        let from_output = query(sub, &out, &names);
        assert_eq!(from_output.stdout, from_tree.stdout, "{sub}");
        assert_eq!(from_output.status.code(), Some(1), "{sub}");
    }
}

/// Options and a blacklist from the kernel command line, as modprobe takes
/// them from /proc/cmdline: options follow the module's path (with
/// libkmod's trailing space); a blacklisted module reached through an
/// alias prints nothing, by name it is loaded.
#[test]
fn kernel_command_line_options_and_blacklist() {
    let cmdline =
        "--kernel-cmdline=quiet core_base.debug=1 top_net.x=\"a b\" modprobe.blacklist=snd_foo";
    let out = query(
        "deps",
        &basic_tree(),
        &[cmdline, "core_util", "foo-bar-baz", "snd-foo"],
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "insmod /lib/modules/6.1.0-fixture/kernel/lib/core_base.ko debug=1 \n\
         insmod /lib/modules/6.1.0-fixture/kernel/lib/core_util.ko \n\
         insmod /lib/modules/6.1.0-fixture/kernel/lib/core_base.ko debug=1 \n\
         insmod /lib/modules/6.1.0-fixture/kernel/lib/core_util.ko \n\
         insmod /lib/modules/6.1.0-fixture/kernel/sound/snd-bar-core.ko \n\
         insmod /lib/modules/6.1.0-fixture/kernel/lib/core_base.ko debug=1 \n\
         insmod /lib/modules/6.1.0-fixture/kernel/sound/snd-bar-core.ko \n\
         insmod /lib/modules/6.1.0-fixture/kernel/sound/snd-foo.ko \n"
    );
    let out = query("deps", &basic_tree(), &[cmdline, "top_net"]);
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("insmod /lib/modules/6.1.0-fixture/kernel/drivers/net/top_net.ko x=\"a b\" \n"));
}

#[test]
fn unknown_names_fail_with_modprobes_message_and_the_rest_still_answer() {
    let root = basic_tree();
    let out = query("resolve", &root, &["nosuch", "snd-foo"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "snd_foo\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains(
        "modprobe: FATAL: Module nosuch not found in directory /lib/modules/6.1.0-fixture\n"
    ));
}

#[test]
fn corrupt_index_in_an_image_is_exit_status_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let root = basic_tree();
    let built = kmodidx(&[
        "build",
        "--from",
        root.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(built.status.success());
    let alias = out.join("lib/modules/6.1.0-fixture/modules.alias.bin");
    let mut bytes = fs::read(&alias).unwrap();
    // The root (at 12: no prefix, a child range, then the child table)
    // gets a first child past the end of the file.
    let beyond = bytes.len() as u32 + 100;
    bytes[14..18].copy_from_slice(&(0x2000_0000 | beyond).to_be_bytes());
    fs::write(&alias, bytes).unwrap();
    let answer = query("resolve", &out, &["snd-foo"]);
    assert_eq!(answer.status.code(), Some(2));
    let err = String::from_utf8_lossy(&answer.stderr);
    let want = format!(
        "{}: a node at offset {beyond} lies outside the file",
        alias.display()
    );
    assert!(err.contains(&want), "{err}");
}

#[test]
fn unreadable_image_is_exit_status_2() {
    let out = kmodidx(&["query", "deps", "--from", "/nonexistent/image", "x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/image"));
}

/// `query dump` of each corpus index matches the text files depmod wrote
/// beside it, and both node layouts (34.2 and 30) dump alike.
#[test]
fn dump_agrees_with_the_text_files_and_across_layouts() {
    let Some(corpus) = corpus_dir() else {
        return;
    };
    for version in CORPUS_KERNELS {
        let ref34 = corpus.join(version).join("ref-34.2");
        let ref30 = corpus.join(version).join("ref-30");
        let dump = |path: PathBuf| {
            let out = kmodidx(&["query", "dump", path.to_str().unwrap()]);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        };
        for name in [
            "modules.dep.bin",
            "modules.alias.bin",
            "modules.symbols.bin",
            "modules.builtin.bin",
            "modules.builtin.alias.bin",
        ] {
            assert_eq!(
                dump(ref34.join(name)),
                dump(ref30.join(name)),
                "{version} {name}"
            );
        }
        // modules.symbols: `alias symbol:NAME OWNER` lines, in hash order.
        let text = fs::read_to_string(ref34.join("modules.symbols")).unwrap();
        let mut want: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("alias "))
            .collect();
        want.sort();
        let got = dump(ref34.join("modules.symbols.bin"));
        assert_eq!(got.lines().collect::<Vec<_>>(), want, "{version} symbols");
        // modules.dep: `PATH: DEPS` lines, keyed by module name.
        let text = fs::read_to_string(ref34.join("modules.dep")).unwrap();
        let mut want: Vec<String> = text
            .lines()
            .map(|l| {
                format!(
                    "{} {l}",
                    base_name(l.split(':').next().unwrap()).replace('-', "_")
                )
            })
            .collect();
        want.sort();
        let got = dump(ref34.join("modules.dep.bin"));
        assert_eq!(got.lines().collect::<Vec<_>>(), want, "{version} dep");
    }
}

#[test]
fn dump_rejects_a_hostile_index_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("modules.alias.bin");
    // A root node whose only child is the root itself.
    let mut b = vec![0xB0, 0x07, 0xF4, 0x57, 0, 2, 0, 1, 0x20, 0, 0, 12];
    b.extend_from_slice(b"aa");
    b.extend_from_slice(&[0x20, 0, 0, 12]);
    fs::write(&file, b).unwrap();
    let out = kmodidx(&["query", "dump", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}: the node at offset 12 is reached twice",
            file.display()
        )),
        "{err}"
    );
}

#[test]
fn dump_escapes_odd_bytes_and_shows_priorities() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.bin");
    let mut trie = kmodidx::index::Trie::new();
    trie.insert(b"a b", b"v\\1", 3).unwrap();
    trie.insert(b"k", b"line\nbreak", 1).unwrap();
    fs::write(
        &file,
        trie.encode(kmodidx::index::Layout::ChildrenFirst).unwrap(),
    )
    .unwrap();
    let out = kmodidx(&["query", "dump", "--priority", file.to_str().unwrap()]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "a\\x20b 3 v\\\\1\nk 1 line\\x0abreak\n"
    );
}

#[test]
fn why_lists_every_path_and_the_symbols_behind_each_step() {
    let root = basic_tree();
    let out = query("why", &root, &["top_net", "core_base"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "2 paths from top_net to core_base:
  top_net -> mid_bus -> core_base
  top_net -> mid_bus -> core_util -> core_base
symbols:
  core_util -> core_base: core_alloc core_free
  mid_bus -> core_base: core_log
  mid_bus -> core_util: util_hash
  top_net -> mid_bus: bus_register_dev bus_unregister_dev
"
    );
    let json = query(
        "why",
        &root,
        &["top_net", "core_base", "--json", "--max-paths", "1"],
    );
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["paths"].as_array().unwrap().len(), 1);
    assert_eq!(v["truncated"], true);
    let none = query("why", &root, &["core_base", "top_net"]);
    assert_eq!(none.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&none.stdout),
        "core_base does not depend on top_net\n"
    );
    let unknown = query("why", &root, &["top_net", "nosuch"]);
    assert_eq!(unknown.status.code(), Some(2));
}

/// On a real kernel, every step of every path is a dependency modules.dep
/// lists, and each has symbols behind it.
#[test]
fn why_agrees_with_modules_dep_on_a_real_kernel() {
    with_kernel(CORPUS_KERNELS[0], why_agrees_with_modules_dep);
}

fn why_agrees_with_modules_dep(k: &Kernel) {
    // The unpacked package has no index: kmodidx indexes it in memory.
    let out = query("why", &k.root, &["nfsd", "sunrpc", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let dep = fs::read_to_string(k.reference.join("modules.dep")).unwrap();
    let deps_of = |name: &str| -> Vec<String> {
        dep.lines()
            .find(|l| base_name(l.split(':').next().unwrap()).replace('-', "_") == name)
            .map(|l| {
                l.split(':')
                    .nth(1)
                    .unwrap()
                    .split_whitespace()
                    .map(|p| base_name(p).replace('-', "_"))
                    .collect()
            })
            .unwrap_or_default()
    };
    let paths = v["paths"].as_array().unwrap();
    assert!(paths.len() >= 2, "{v}");
    for path in paths {
        let names: Vec<&str> = path
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap())
            .collect();
        assert_eq!(names.first(), Some(&"nfsd"));
        assert_eq!(names.last(), Some(&"sunrpc"));
        for step in names.windows(2) {
            assert!(deps_of(step[0]).iter().any(|d| d == step[1]), "{step:?}");
        }
    }
    for edge in v["edges"].as_array().unwrap() {
        assert!(!edge["symbols"].as_array().unwrap().is_empty(), "{edge}");
    }
}

/// A copy of the basic fixture to change.
fn basic_copy(dir: &Path, name: &str) -> PathBuf {
    let root = dir.join(name);
    copy_tree(&repo().join("fixtures/trees/basic"), &root);
    root
}

fn diff(old: &Path, new: &Path, json: bool) -> Output {
    let mut args = vec!["diff", old.to_str().unwrap(), new.to_str().unwrap()];
    if json {
        args.push("--json");
    }
    kmodidx(&args)
}

#[test]
fn diff_of_identical_trees_is_empty_and_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (basic_copy(dir.path(), "a"), basic_copy(dir.path(), "b"));
    let out = diff(&a, &b, false);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    let json: serde_json::Value = serde_json::from_slice(&diff(&a, &b, true).stdout).unwrap();
    assert_eq!(json["equal"], true);
    assert_eq!(json["crcs_compared"], true);
}

#[test]
fn diff_reports_a_removed_module_and_what_went_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (basic_copy(dir.path(), "a"), basic_copy(dir.path(), "b"));
    fs::remove_file(b.join("lib/modules/6.1.0-fixture/kernel/drivers/misc/dia_left.ko")).unwrap();
    let out = diff(&a, &b, false);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    for line in [
        "- module dia_left kernel/drivers/misc/dia_left.ko",
        "- symbol dia_left left_fn",
        "- dep dia_top dia_left",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
    assert!(text.starts_with(&format!(
        "--- {} (6.1.0-fixture)\n+++ {} (6.1.0-fixture)\n",
        a.display(),
        b.display()
    )));
}

#[test]
fn diff_reports_a_changed_alias_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (basic_copy(dir.path(), "a"), basic_copy(dir.path(), "b"));
    let module = b.join("lib/modules/6.1.0-fixture/updates/dup_mod.ko");
    let bytes = fs::read(&module).unwrap();
    let at = bytes
        .windows(13)
        .position(|w| w == b"alias=dup-new")
        .unwrap();
    let mut changed = bytes.clone();
    changed[at + 12] = b'x';
    fs::write(&module, changed).unwrap();
    let out = diff(&a, &b, true);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["equal"], false);
    assert_eq!(
        json["changes"],
        serde_json::json!([
            { "change": "removed", "kind": "alias", "module": "dup_mod", "alias": "dup_new" },
            { "change": "added", "kind": "alias", "module": "dup_mod", "alias": "dup_nex" },
        ])
    );
}

#[test]
fn diff_of_a_tree_and_its_index_only_output_is_equal_without_crcs() {
    let dir = tempfile::tempdir().unwrap();
    let tree = basic_copy(dir.path(), "a");
    let out_dir = dir.path().join("out");
    let built = kmodidx(&[
        "build",
        "--from",
        tree.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(built.status.success());
    let out = diff(&tree, &out_dir, false);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("CRCs were not compared"));
}

#[test]
fn diff_of_two_real_kernels_lists_crc_changes() {
    let (Some(old), Some(new)) = (
        corpus_kernel(CORPUS_KERNELS[0]),
        corpus_kernel(CORPUS_KERNELS[1]),
    ) else {
        return;
    };
    let out = diff(&old.root, &new.root, false);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().filter(|l| l.starts_with("~ crc ")).count() > 100);
    assert!(text.lines().any(|l| l.starts_with("+ module ")));
    assert!(text.lines().any(|l| l.starts_with("- alias ")));
}

#[test]
fn diff_trouble_is_exit_status_2() {
    let root = basic_tree();
    let out = diff(&root, Path::new("/nonexistent/image"), false);
    assert_eq!(out.status.code(), Some(2));
}
