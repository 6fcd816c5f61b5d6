//! Differential tests of the depmod drop-in (`kmodidx` invoked as
//! `depmod`): for each case the same command runs on two identical copies of
//! a tree, one with kmodidx and one with the reference, and everything it
//! writes (files anywhere under the work directory, stdout, stderr line by
//! line, exit status) must be identical.
//!
//! The reference is Debian's depmod 30, run live (with kmodidx in
//! `KMODIDX_COMPAT=kmod30`), or, for what only kmod 34.2 does (`-o`, `-m`,
//! `modules.order` duplicates), goldens recorded from a locally built 34.2
//! in `fixtures/cli-golden/`. Set `KMODIDX_REGEN_CLI_GOLDENS=/path/to/depmod34`
//! to re-record them.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Oracle {
    /// Debian's depmod 30, run live.
    Live30,
    /// Goldens recorded from kmod 34.2.
    Golden34,
}

struct Case {
    name: &'static str,
    /// A tree from fixtures/trees, copied to @ROOT@.
    tree: &'static str,
    /// Extra files `(path under the work dir, contents)`; `@ROOT@` in the
    /// contents is replaced by the absolute root.
    files: &'static [(&'static str, &'static str)],
    /// Copies `(from, to)`, relative to the work dir.
    copies: &'static [(&'static str, &'static str)],
    /// Arguments; `@ROOT@`, `@OUT@` and `@VER@` are substituted.
    args: &'static [&'static str],
    oracle: Oracle,
}

const BASIC: &str = "6.1.0-fixture";

fn c(
    name: &'static str,
    tree: &'static str,
    args: &'static [&'static str],
    oracle: Oracle,
) -> Case {
    Case {
        name,
        tree,
        files: &[],
        copies: &[],
        args,
        oracle,
    }
}

/// One `#[test]` per case, and `all()`, every case.
macro_rules! cases {
    ($($test:ident => $case:expr;)*) => {
        $(
            #[test]
            fn $test() {
                check(&$case);
            }
        )*

        pub fn every_case() -> Vec<Case> {
            vec![$($case),*]
        }
    };
}

// Each case runs the depmod drop-in on a copy of a fixture tree.
#[rustfmt::skip]
mod case {
    use super::*;
    use Oracle::*;

    cases! {
        plain => c("plain", "basic", &["-b", "@ROOT@", "-C", "/nonexistent", "@VER@"], Live30);
        all_modules => c("all", "basic", &["-a", "-b", "@ROOT@", "-C", "/nonexistent", "@VER@"], Live30);
        long_options => c("long-options", "basic", &["--all", "--basedir=@ROOT@", "--config", "/nonexistent", "@VER@"], Live30);
        abbreviated_long => c("abbreviated-long", "basic", &["--basedir", "@ROOT@", "--conf=/nonexistent", "--al", "@VER@"], Live30);
        options_after_version => c("options-after-version", "basic", &["@VER@", "-b", "@ROOT@", "-C", "/nonexistent"], Live30);
        clustered => c("clustered", "basic", &["-awb@ROOT@", "-C/nonexistent", "@VER@"], Live30);
        show => c("show", "basic", &["-n", "-b", "@ROOT@", "-C", "/nonexistent", "@VER@"], Live30);
        dry_run => c("dry-run", "basic", &["--dry-run", "-b", "@ROOT@", "-C", "/nonexistent", "@VER@"], Live30);
        verbose => c("verbose", "basic", &["-v", "-b", "@ROOT@", "-C", "/nonexistent", "@VER@"], Live30);
        warn => c("warn", "basic", &["-w", "-b", "@ROOT@", "-C", "/nonexistent", "@VER@"], Live30);
        errsyms_without_symbols => c("errsyms-without-symbols", "basic", &["-e", "-b", "@ROOT@", "-C", "/nonexistent", "@VER@"], Live30);
        symbol_prefix => c("symbol-prefix", "basic", &["-P", "_", "-b", "@ROOT@", "-C", "/nonexistent", "@VER@"], Live30);
        symbol_prefix_too_long => c("symbol-prefix-too-long", "basic", &["-P", "ab", "-b", "@ROOT@", "@VER@"], Live30);
        bad_version => c("bad-version", "basic", &["-b", "@ROOT@", "-C", "/nonexistent", "foo"], Live30);
        module_path_as_version => c("module-path-as-version", "basic", &["-b", "@ROOT@", "kernel/lib/core_base.ko"], Live30);
        invalid_option => c("invalid-option", "basic", &["-x", "-b", "@ROOT@", "@VER@"], Live30);
        missing_argument => c("missing-argument", "basic", &["-b"], Live30);
        unknown_long_option => c("unknown-long-option", "basic", &["--frobnicate", "@VER@"], Live30);
        ambiguous_long_option => c("ambiguous-long-option", "basic", &["--s", "@VER@"], Live30);
        help => c("help", "basic", &["-h"], Golden34);
        missing_kernel_dir => c("missing-kernel-dir", "basic", &["-b", "@ROOT@", "-C", "/nonexistent", "9.9.9"], Live30);
        missing_symvers => c("missing-symvers", "basic", &["-e", "-E", "@ROOT@/nope", "-b", "@ROOT@", "@VER@"], Live30);
        // The kernel's modules_install: depmod -ae -F System.map -b DIR VERSION
        kernel_modules_install => Case {
            files: &[("root/System.map", SYSTEM_MAP)],
            ..c("kernel-modules-install", "symvers", &["-ae", "-F", "@ROOT@/System.map", "-b", "@ROOT@", "-C", "/nonexistent", "@VER@"], Live30)
        };
        // Kleaf: depmod -e with Module.symvers; wrong CRCs and a missing symbol.
        kleaf_errsyms => c("kleaf-errsyms", "symvers", &["-e", "-E", "@ROOT@/Module.symvers", "-b", "@ROOT@", "-C", "/nonexistent", "@VER@"], Live30);
        // kmod reports unknown symbols while resolving, and a missing
        // modules.builtin only when it writes the indexes, after them.
        unknown_symbols_then_missing_builtin => Case {
            files: &[("root/System.map", "ffffffff81000000 T _text\n")],
            ..c("unknown-symbols-then-missing-builtin", "missing-builtin", &["-e", "-F", "@ROOT@/System.map", "-b", "@ROOT@", "-C", "/nonexistent", "@VER@"], Live30)
        };
        symvers_not_silent_without_e => c("symvers-not-silent-without-e", "symvers", &["-E", "@ROOT@/Module.symvers", "-b", "@ROOT@", "-C", "/nonexistent", "@VER@"], Live30);
        // Yocto: -C ROOT/lib/depmod.d -a -b ROOT
        yocto => Case {
            files: &[("root/lib/depmod.d/search.conf", "search updates built-in\n")],
            ..c("yocto", "basic", &["-C", "@ROOT@/lib/depmod.d", "-a", "-b", "@ROOT@", "@VER@"], Live30)
        };
        // Nix: -b $out -C $out/etc/depmod.d -a VERSION
        nix => Case {
            files: &[("root/etc/depmod.d/nix.conf", "# nix\nexclude source\n")],
            ..c("nix", "basic", &["-b", "@ROOT@", "-C", "@ROOT@/etc/depmod.d", "-a", "@VER@"], Live30)
        };
        search_order => Case {
            files: &[("root/etc/depmod.d/order.conf", "search extra updates built-in\n")],
            copies: &[
                ("root/lib/modules/6.1.0-fixture/kernel/lib/core_base.ko", "root/lib/modules/6.1.0-fixture/extra/core_base.ko"),
                ("root/lib/modules/6.1.0-fixture/kernel/lib/core_util.ko", "root/lib/modules/6.1.0-fixture/updates/core_util.ko"),
                ("root/lib/modules/6.1.0-fixture/kernel/lib/core_util.ko", "root/lib/modules/6.1.0-fixture/extra/core_util.ko"),
            ],
            ..c("search-order", "basic", &["-C", "@ROOT@/etc/depmod.d", "-b", "@ROOT@", "@VER@"], Live30)
        };
        same_prefix_search => Case {
            files: &[("root/etc/depmod.d/prefix.conf", "search upd updates built-in\n")],
            copies: &[
                ("root/lib/modules/6.1.0-fixture/kernel/lib/core_base.ko", "root/lib/modules/6.1.0-fixture/upd/core_base.ko"),
                ("root/lib/modules/6.1.0-fixture/kernel/lib/core_base.ko", "root/lib/modules/6.1.0-fixture/updates/core_base.ko"),
                ("root/lib/modules/6.1.0-fixture/kernel/lib/core_util.ko", "root/lib/modules/6.1.0-fixture/updatesx/extra_util.ko"),
            ],
            ..c("same-prefix-search", "basic", &["-C", "@ROOT@/etc/depmod.d", "-b", "@ROOT@", "@VER@"], Live30)
        };
        override_config => Case {
            files: &[("root/etc/depmod.d/override.conf", "override core_base * extra\noverride core_util 5.* extra\n")],
            copies: &[
                ("root/lib/modules/6.1.0-fixture/kernel/lib/core_base.ko", "root/lib/modules/6.1.0-fixture/extra/core_base.ko"),
                ("root/lib/modules/6.1.0-fixture/kernel/lib/core_util.ko", "root/lib/modules/6.1.0-fixture/extra/core_util.ko"),
                ("root/lib/modules/6.1.0-fixture/kernel/lib/core_base.ko", "root/lib/modules/6.1.0-fixture/updates/core_base.ko"),
            ],
            ..c("override", "basic", &["-C", "@ROOT@/etc/depmod.d", "-b", "@ROOT@", "@VER@"], Live30)
        };
        external_first => Case {
            files: &[("root/etc/depmod.d/ext.conf", "search external updates built-in\nexternal * @ROOT@/opt/ext\n")],
            copies: &[("root/lib/modules/6.1.0-fixture/kernel/lib/core_base.ko", "root/opt/ext/core_base.ko")],
            ..c("external-first", "basic", &["-C", "@ROOT@/etc/depmod.d", "-b", "@ROOT@", "@VER@"], Live30)
        };
        external_last => Case {
            files: &[("root/etc/depmod.d/ext.conf", "search updates built-in external\nexternal 6\\.1.* @ROOT@/opt/ext\nexternal 5.* @ROOT@/opt/other\n")],
            copies: &[
                ("root/lib/modules/6.1.0-fixture/kernel/lib/core_base.ko", "root/opt/ext/core_base.ko"),
                ("root/lib/modules/6.1.0-fixture/kernel/lib/core_util.ko", "root/opt/ext/extra_util.ko"),
            ],
            ..c("external-last", "basic", &["-C", "@ROOT@/etc/depmod.d", "-b", "@ROOT@", "@VER@"], Live30)
        };
        exclude => Case {
            files: &[("root/etc/depmod.d/exclude.conf", "exclude misc sound\n")],
            ..c("exclude", "basic", &["-C", "@ROOT@/etc/depmod.d", "-b", "@ROOT@", "@VER@"], Live30)
        };
        config_precedence => Case {
            files: &[
                ("root/etc/depmod.d/a.conf", "search updates built-in\nbogus line here\noverride\ninclude /etc/x\n"),
                ("root/etc/depmod.d/b.conf", "exclude misc\n"),
                ("root/usr/depmod.d/b.conf", "exclude sound\n"),
                ("root/usr/depmod.d/c.conf", "exclude usb\n"),
                ("root/usr/depmod.d/notes.txt", "ignored\n"),
            ],
            ..c("config-precedence", "basic", &["-C", "@ROOT@/etc/depmod.d", "-C", "@ROOT@/usr/depmod.d", "-b", "@ROOT@", "@VER@"], Live30)
        };
        explicit_files => c("explicit-files", "basic", &["-b", "@ROOT@", "-C", "/nonexistent", "@VER@", "@ROOT@/lib/modules/@VER@/kernel/lib/core_util.ko", "@ROOT@/lib/modules/@VER@/kernel/lib/core_base.ko"], Live30);
        explicit_file_not_absolute => c("explicit-file-not-absolute", "basic", &["-b", "@ROOT@", "@VER@", "kernel/lib/core_base.ko"], Live30);
        explicit_file_missing => c("explicit-file-missing", "basic", &["-b", "@ROOT@", "@VER@", "@ROOT@/nope.ko"], Live30);
        cycle => c("cycle", "cycle", &["-b", "@ROOT@", "-C", "/nonexistent", "@VER@"], Live30);
        // kmod 34.2 only.
        outdir => c("outdir", "basic", &["-b", "@ROOT@", "-o", "@OUT@", "-C", "/nonexistent", "@VER@"], Golden34);
        moduledir => c("moduledir", "basic", &["-b", "@ROOT@", "-m", "/usr/lib/modules", "-C", "/nonexistent", "@VER@"], Golden34);
        order_duplicates_34 => Case {
            files: &[("root/lib/modules/6.1.0-fixture/modules.order", ORDER_WITH_DUPLICATES)],
            ..c("order-duplicates-34", "basic", &["-b", "@ROOT@", "-C", "/nonexistent", "@VER@"], Golden34)
        };
        order_duplicates_30 => Case {
            files: &[("root/lib/modules/6.1.0-fixture/modules.order", ORDER_WITH_DUPLICATES)],
            ..c("order-duplicates-30", "basic", &["-b", "@ROOT@", "-C", "/nonexistent", "@VER@"], Live30)
        };
        plain_34 => c("plain-34", "basic", &["-b", "@ROOT@", "-C", "/nonexistent", "@VER@"], Golden34);
        kleaf_errsyms_34 => c("kleaf-errsyms-34", "symvers", &["-e", "-E", "@ROOT@/Module.symvers", "-b", "@ROOT@", "-C", "/nonexistent", "@VER@"], Golden34);
    }
}

const SYSTEM_MAP: &str = "ffffffff81000000 T _text\n\
ffffffff82000010 r __ksymtab___fentry__\n\
ffffffff82000020 r __ksymtab___kmalloc\n\
ffffffff82000030 r __ksymtab__printk\n\
ffffffff82000040 r __ksymtab_kfree\n\
ffffffff82000050 r __ksymtab_sv_other_fn\n\
this line is broken\n";

const ORDER_WITH_DUPLICATES: &str = "kernel/lib/core_util.ko\n\
kernel/drivers/misc/dia_top.ko\n\
kernel/lib/core_base.ko\n\
kernel/drivers/misc/dia_left.ko\n\
kernel/lib/core_util.ko\n\
kernel/drivers/net/top_net.ko\n\
kernel/drivers/misc/dia_top.ko\n";

fn version_of(tree: &str) -> String {
    only_version(&repo().join("fixtures/trees").join(tree).join("lib/modules"))
}

/// Lays out the case in a fresh work dir: `root/` and (empty) `out/`.
fn prepare(case: &Case) -> tempfile::TempDir {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    copy_tree(&repo().join("fixtures/trees").join(case.tree), &root);
    let root_text = root.to_str().unwrap();
    for (from, to) in case.copies {
        let to = work.path().join(to);
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(work.path().join(from), to).unwrap();
    }
    for (path, contents) in case.files {
        let path = work.path().join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, contents.replace("@ROOT@", root_text)).unwrap();
    }
    work
}

/// What one run did.
#[derive(Debug, PartialEq, Eq)]
struct Effects {
    status: Option<i32>,
    stdout: String,
    stderr: Vec<String>,
    written: BTreeMap<String, Vec<u8>>,
}

fn run(case: &Case, program: &Path, compat: Option<&str>) -> Effects {
    let work = prepare(case);
    let root = work.path().join("root");
    let out = work.path().join("out");
    let version = version_of(case.tree);
    let before = snapshot(work.path());
    let args: Vec<String> = case
        .args
        .iter()
        .map(|a| {
            a.replace("@ROOT@", root.to_str().unwrap())
                .replace("@OUT@", out.to_str().unwrap())
                .replace("@VER@", &version)
        })
        .collect();
    let mut cmd = Command::new(program);
    cmd.arg0("depmod").args(&args).env("LC_ALL", "C");
    match compat {
        Some(c) => cmd.env("KMODIDX_COMPAT", c),
        None => cmd.env_remove("KMODIDX_COMPAT"),
    };
    let output = cmd.output().unwrap();
    let after = snapshot(work.path());
    let tmp = work.path().to_str().unwrap();
    // Modules outside the module directory are listed by absolute path.
    let unroot = |bytes: &[u8]| -> Vec<u8> {
        let needle = tmp.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i..].starts_with(needle) {
                out.extend_from_slice(b"@WORK@");
                i += needle.len();
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        out
    };
    let written = after
        .into_iter()
        .filter(|(path, bytes)| before.get(path) != Some(bytes))
        .map(|(path, bytes)| (path, unroot(&bytes)))
        .collect();
    let clean = |b: &[u8]| String::from_utf8_lossy(b).replace(tmp, "@WORK@");
    Effects {
        status: output.status.code(),
        stdout: clean(&output.stdout),
        // kmodidx adds hint lines for people; kmod's own lines must match.
        stderr: clean(&output.stderr)
            .lines()
            .filter(|l| !l.starts_with("kmodidx: hint:"))
            .map(str::to_string)
            .collect(),
        written,
    }
}

fn golden_dir(case: &Case) -> PathBuf {
    repo().join("fixtures/cli-golden").join(case.name)
}

fn save_golden(case: &Case, e: &Effects) {
    let dir = golden_dir(case);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("files")).unwrap();
    fs::write(
        dir.join("exit-code"),
        format!("{}\n", e.status.unwrap_or(-1)),
    )
    .unwrap();
    fs::write(dir.join("stdout"), &e.stdout).unwrap();
    fs::write(
        dir.join("stderr"),
        e.stderr
            .iter()
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    )
    .unwrap();
    for (path, bytes) in &e.written {
        let p = dir.join("files").join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, bytes).unwrap();
    }
}

fn load_golden(case: &Case) -> Effects {
    let dir = golden_dir(case);
    let read = |name: &str| {
        fs::read_to_string(dir.join(name))
            .unwrap_or_else(|_| panic!("golden {} missing {name}", case.name))
    };
    let files = snapshot(&dir.join("files"));
    Effects {
        status: Some(read("exit-code").trim().parse().unwrap()),
        stdout: read("stdout"),
        stderr: read("stderr").lines().map(str::to_string).collect(),
        written: files,
    }
}

fn assert_same(case: &Case, want: &Effects, got: &Effects) {
    assert_eq!(
        got.status, want.status,
        "{}: exit status\nstderr: {:?}",
        case.name, got.stderr
    );
    assert_eq!(got.stderr, want.stderr, "{}: stderr", case.name);
    assert_eq!(got.stdout, want.stdout, "{}: stdout", case.name);
    assert_same_files(case.name, &want.written, &got.written);
}

/// Runs `case` with kmodidx and with its reference; they must do the same.
fn check(case: &Case) {
    let ours = PathBuf::from(env!("CARGO_BIN_EXE_kmodidx"));
    match case.oracle {
        Oracle::Live30 => {
            let Some(depmod30) = live_depmod30() else {
                return;
            };
            let want = run(case, &depmod30, None);
            let got = run(case, &ours, Some("kmod30"));
            assert_same(case, &want, &got);
        }
        Oracle::Golden34 => {
            if let Some(depmod34) = std::env::var_os("KMODIDX_REGEN_CLI_GOLDENS") {
                save_golden(case, &run(case, Path::new(&depmod34), None));
            }
            assert_same(case, &load_golden(case), &run(case, &ours, None));
        }
    }
}

/// Every recorded kmod 34.2 golden belongs to a case.
#[test]
fn every_cli_golden_has_a_case() {
    let cases = case::every_case();
    for golden in fs::read_dir(repo().join("fixtures/cli-golden")).unwrap() {
        let name = golden.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            cases
                .iter()
                .any(|c| c.name == name && c.oracle == Oracle::Golden34),
            "fixtures/cli-golden/{name} has no case"
        );
    }
}

#[test]
fn quick_mode_skips_when_up_to_date() {
    let ours = PathBuf::from(env!("CARGO_BIN_EXE_kmodidx"));
    let work = prepare(&c("plain", "basic", &[], Oracle::Live30));
    let root = work.path().join("root");
    let depmod = |args: &[&str]| {
        let status = Command::new(&ours)
            .arg0("depmod")
            .args(args)
            .status()
            .unwrap();
        assert!(status.success());
    };
    let r = root.to_str().unwrap();
    let dep = root.join("lib/modules").join(BASIC).join("modules.dep");
    // Nothing there yet: -A does the work.
    depmod(&["-A", "-b", r, "-C", "/nonexistent", BASIC]);
    assert!(dep.exists());
    // Up to date: -A leaves the files alone.
    fs::write(&dep, b"sentinel").unwrap();
    depmod(&["-A", "-b", r, "-C", "/nonexistent", BASIC]);
    assert_eq!(fs::read(&dep).unwrap(), b"sentinel");
    // A module newer than modules.dep: -A rebuilds.
    let module = root
        .join("lib/modules")
        .join(BASIC)
        .join("kernel/lib/core_base.ko");
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
    fs::File::options()
        .write(true)
        .open(&module)
        .unwrap()
        .set_modified(later)
        .unwrap();
    depmod(&["-A", "-b", r, "-C", "/nonexistent", BASIC]);
    assert_ne!(fs::read(&dep).unwrap(), b"sentinel");
}
