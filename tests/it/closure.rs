//! Closures: `kmodidx build --modules SPEC`.
//!
//! * The fixture `fixtures/closure` (softdep chains, weakdeps, wildcard
//!   aliases, builtins, firmware including a missing file, `--exclude`, a
//!   SPEC that matches nothing), checked against explicit expectations and
//!   Debian's modprobe and depmod.
//! * The oracle, on both corpus kernels: the closure holds every module
//!   `modprobe --show-depends` lists for each root, and its index files are
//!   what depmod writes over the staged subset.
//! * A real boot of each corpus kernel in qemu with an initramfs made of a
//!   busybox base and `kmodidx build --modules ... --staged --out
//!   mods.cpio.zst`: every root must load.
//!
//! In CI (`CI` set) a missing corpus, depmod, modprobe, qemu, busybox or
//! cpio is a failure; elsewhere those tests are skipped loudly. The corpus
//! tests are `closure::oracle::<kernel>` and `closure::boot::<kernel>`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

const FIXTURE_VERSION: &str = "6.1.0-closure";

fn fixture() -> PathBuf {
    repo().join("fixtures/closure")
}

/// A host tool the test needs: its path, or `None` (skipped loudly; a
/// failure in CI).
fn tool(candidates: &[&str], package: &str) -> Option<PathBuf> {
    let found = candidates.iter().map(PathBuf::from).find(|p| p.exists());
    if found.is_none() {
        missing(&format!("{} (apt-get install {package})", candidates[0]));
    }
    found
}

fn modprobe() -> Option<PathBuf> {
    tool(&["/usr/sbin/modprobe", "/sbin/modprobe"], "kmod")
}

/// Every regular file below `root`, relative, sorted.
fn files_below(root: &Path) -> Vec<String> {
    fn go(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                go(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    go(root, root, &mut out);
    out.sort();
    out
}

/// The module files staged in an output, as paths relative to the module
/// directory.
fn staged_modules(out: &Path, version: &str) -> BTreeSet<String> {
    let dir = out.join("lib/modules").join(version);
    files_below(&dir)
        .into_iter()
        .filter(|f| f.contains(".ko"))
        .collect()
}

/// Module names of `modprobe --show-depends SPEC` over an indexed tree: the
/// `insmod` paths relative to the module directory.
fn show_depends(modprobe: &Path, root: &Path, version: &str, spec: &str) -> BTreeSet<String> {
    let out = Command::new(modprobe)
        .args(["-d"])
        .arg(root)
        .args(["-S", version, "-C", "/dev/null", "--show-depends", spec])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "modprobe --show-depends {spec}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let prefix = format!("{}/lib/modules/{version}/", root.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("insmod "))
        .map(|p| p.trim_end().strip_prefix(&prefix).unwrap_or(p).to_string())
        .collect()
}

/// What Debian's depmod writes over a copy of `staged` (an output with
/// `--staged`).
fn depmod_over(staged: &Path, version: &str) -> BTreeMap<String, Vec<u8>> {
    let depmod = live_depmod30().expect("depmod");
    depmod_on_copy(
        &depmod,
        staged,
        "lib/modules",
        version,
        &["-C", "/nonexistent"],
    )
}

/// A private copy of `root`'s `lib/` indexed by Debian's depmod, for
/// modprobe to run on.
fn indexed_copy(root: &Path, version: &str) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    copy_tree(&root.join("lib"), &copy.path().join("lib"));
    index_with_depmod30(copy.path(), version).expect("depmod");
    copy
}

fn build_fixture(extra: &[&str]) -> (tempfile::TempDir, std::process::Output) {
    let dir = tempfile::tempdir().unwrap();
    let output = kmodidx_build(&fixture(), &dir.path().join("out"), extra, &[]);
    (dir, output)
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

// ---------------------------------------------------------------------------
// The fixture.

#[test]
fn fixture_softdep_chains_weakdeps_and_builtins() {
    let (dir, o) = build_fixture(&["--modules", "cl-root-alias", "--staged"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got = staged_modules(&dir.path().join("out"), FIXTURE_VERSION);
    let want: BTreeSet<String> = [
        "cl-root",
        "cl_dep",
        "cl_base",
        "cl_pre",
        "cl_pre_dep",
        "cl_chain",
        "cl_chain_end",
        "cl_post",
        "cl_weak",
        "cl_weak_dep",
    ]
    .iter()
    .map(|m| format!("kernel/cl/{m}.ko"))
    .collect();
    assert_eq!(got, want);
}

#[test]
fn fixture_closure_contains_what_modprobe_loads_and_depmod_indexes_it_the_same() {
    let Some(modprobe) = modprobe() else { return };
    if live_depmod30().is_none() {
        return;
    }
    let indexed = indexed_copy(&fixture(), FIXTURE_VERSION);
    let specs = [
        "cl-root-alias",
        "usb:v1234p5678d0100dc00dsc00dp00ic03isc01ip02in00",
        "cl_ex_top",
    ];
    let (dir, o) = build_fixture(&[
        "--modules",
        &specs.join(","),
        "--staged",
        "--compat",
        "kmod30",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = dir.path().join("out");
    let got = staged_modules(&out, FIXTURE_VERSION);
    for spec in specs {
        let want = show_depends(&modprobe, indexed.path(), FIXTURE_VERSION, spec);
        assert!(!want.is_empty());
        assert!(
            want.is_subset(&got),
            "{spec}: modprobe loads {want:?}, closure {got:?}"
        );
    }
    let mdir = out.join("lib/modules").join(FIXTURE_VERSION);
    assert_same_files(
        "closure index against depmod over the subset",
        &depmod_over(&out, FIXTURE_VERSION),
        &depmod_written(&mdir),
    );
}

#[test]
fn fixture_wildcard_alias_and_firmware() {
    let (dir, o) = build_fixture(&[
        "--modules",
        "usb:v1234p5678d0100dc00dsc00dp00ic03isc01ip02in00",
        "--staged",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = dir.path().join("out");
    assert_eq!(
        staged_modules(&out, FIXTURE_VERSION),
        ["kernel/cl/cl_base.ko", "kernel/cl/cl_usb.ko.xz"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    let fw: Vec<String> = files_below(&out.join("lib/firmware"));
    assert_eq!(fw, ["cl/fw-a.bin", "cl/fw-b.bin.xz", "cl/link.bin"]);
    // A symlink is copied as the file it leads to.
    assert_eq!(
        fs::read(out.join("lib/firmware/cl/link.bin")).unwrap(),
        b"firmware a\n"
    );
    let err = stderr(&o);
    assert!(
        err.contains("cl_usb") && err.contains("cl/absent.bin"),
        "the missing firmware is named: {err}"
    );
}

#[test]
fn fixture_missing_firmware_fails_strict_and_writes_nothing() {
    let (dir, o) = build_fixture(&[
        "--modules",
        "usb:v1234p5678d0100dc00dsc00dp00ic03isc01ip02in00",
        "--staged",
        "--strict",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("cl/absent.bin"), "{}", stderr(&o));
    assert!(!dir.path().join("out").exists());
}

#[test]
fn fixture_spec_matching_nothing_is_an_error_naming_it() {
    let (dir, o) = build_fixture(&["--modules", "cl_root,no-such-module,fs-nothing"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("no-such-module") && err.contains("fs-nothing"),
        "{err}"
    );
    assert!(!dir.path().join("out").exists());

    let (dir, o) = build_fixture(&[
        "--modules",
        "cl_root,no-such-module",
        "--allow-missing",
        "no_such_module",
        "--staged",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("no-such-module"), "a warning names it");
    assert!(
        staged_modules(&dir.path().join("out"), FIXTURE_VERSION).contains("kernel/cl/cl-root.ko")
    );
}

#[test]
fn fixture_exclude_drops_what_only_it_pulled_in_and_says_what_broke() {
    let (dir, o) = build_fixture(&[
        "--modules",
        "cl_ex_top",
        "--exclude",
        "cl_ex_mid",
        "--staged",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        staged_modules(&dir.path().join("out"), FIXTURE_VERSION),
        ["kernel/cl/cl_base.ko", "kernel/cl/cl_ex_top.ko"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    let err = stderr(&o);
    assert!(
        err.contains("cl_ex_top needs cl_ex_mid, which --exclude removed"),
        "{err}"
    );
}

#[test]
fn fixture_load_list_puts_dependencies_first() {
    let (dir, o) = build_fixture(&["--modules", "cl-root-alias", "--load-list"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mdir = dir.path().join("out/lib/modules").join(FIXTURE_VERSION);
    let load = fs::read_to_string(mdir.join("modules.load")).unwrap();
    let lines: Vec<&str> = load.lines().collect();
    // modules.order order, with each module after what it needs: cl_pre's
    // pre: cl_chain before it, cl_chain's post: cl_chain_end after it, and
    // cl_root after its pre: targets and before its post: target.
    assert_eq!(
        lines,
        [
            "kernel/cl/cl_base.ko",
            "kernel/cl/cl_dep.ko",
            "kernel/cl/cl_pre_dep.ko",
            "kernel/cl/cl_chain.ko",
            "kernel/cl/cl_pre.ko",
            "kernel/cl/cl-root.ko",
            "kernel/cl/cl_chain_end.ko",
            "kernel/cl/cl_post.ko",
            "kernel/cl/cl_weak_dep.ko",
            "kernel/cl/cl_weak.ko",
        ]
    );
    // Without --staged only the index (and the load list) is written.
    assert!(!mdir.join("kernel").exists());
}

#[test]
fn fixture_archive_input_gives_the_same_closure_with_firmware() {
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("in.tar");
    let status = Command::new("tar")
        .arg("-C")
        .arg(fixture())
        .args(["-cf"])
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    let spec = "cl-root-alias,usb:v1234p5678d0100dc00dsc00dp00ic03isc01ip02in00";
    let from_dir = dir.path().join("a.cpio");
    let from_tar = dir.path().join("b.cpio");
    let args = ["--modules", spec, "--staged", "--load-list"];
    build_ok(&fixture(), &from_dir, &args, &[]);
    build_ok(&tar, &from_tar, &args, &[]);
    let a = fs::read(&from_dir).unwrap();
    assert_eq!(a, fs::read(&from_tar).unwrap());
    assert!(a.windows(22).any(|w| w == b"lib/firmware/cl/fw-a.b"));
}

#[test]
fn fixture_manifest_records_the_specs_and_verify_rebuilds_them() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("roots");
    fs::write(&list, "# roots\ncl-root-alias  # via an alias\n").unwrap();
    let out = dir.path().join("out.tar");
    build_ok(
        &fixture(),
        &out,
        &[
            "--modules",
            &format!("@{}", list.display()),
            "--modules",
            "cl_ex_top",
            "--exclude",
            "cl_ex_mid",
            "--allow-missing",
            "gone",
            "--modules",
            "gone",
            "--load-list",
        ],
        &[],
    );
    let same = [
        "--modules",
        "cl-root-alias,cl_ex_top,gone",
        "--exclude",
        "cl_ex_mid",
        "--allow-missing",
        "gone",
        "--load-list",
    ];
    let out2 = dir.path().join("o2.tar");
    build_ok(&fixture(), &out2, &same, &[]);
    // The same SPECs from a file and from the command line give the same
    // output.
    assert_eq!(fs::read(&out).unwrap(), fs::read(&out2).unwrap());
    let manifest = dir.path().join("m.json");
    let mut apart = same.to_vec();
    apart.extend(["--manifest", manifest.to_str().unwrap()]);
    build_ok(&fixture(), &dir.path().join("o3.tar"), &apart, &[]);
    let text = fs::read_to_string(&manifest).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let closure = &json["options"]["closure"];
    assert_eq!(
        closure["modules"],
        serde_json::json!(["cl-root-alias", "cl_ex_top", "gone"])
    );
    assert_eq!(closure["exclude"], serde_json::json!(["cl_ex_mid"]));
    assert_eq!(closure["allow_missing"], serde_json::json!(["gone"]));
    assert_eq!(closure["load_list"], serde_json::json!(true));
    // verify rebuilds the closure from the manifest's SPECs.
    let v = kmodidx(&[
        "verify",
        "--from",
        fixture().to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    assert!(v.status.success(), "{}", stderr(&v));
}

// ---------------------------------------------------------------------------
// The corpus: oracle and boot.

/// Roots for the real kernels: aliases (`fs-vfat`, `crypto-crc32c`, a
/// `symbol:` alias), a module with softdeps (btrfs, whose softdep pre:
/// includes crypto-crc32c), a dashed name (`dm-crypt`), and a module built
/// into these kernels (ext4: satisfied, nothing to copy).
const BOOT_ROOTS: [&str; 8] = [
    "fs-vfat",
    "btrfs",
    "xfs",
    "ext4",
    "dm-crypt",
    "crypto-crc32c",
    "symbol:crc32c",
    "nls_utf8",
];

/// The oracle's roots: [`BOOT_ROOTS`] and every 40th module of
/// modules.order (a fixed rule, so the set changes only with the kernel).
fn oracle_roots(root: &Path, version: &str) -> Vec<String> {
    let order =
        fs::read_to_string(root.join("lib/modules").join(version).join("modules.order")).unwrap();
    let mut roots: Vec<String> = BOOT_ROOTS.iter().map(|s| s.to_string()).collect();
    for line in order.lines().step_by(40) {
        let file = line.rsplit('/').next().unwrap();
        let name = file.split('.').next().unwrap().to_string();
        roots.push(name);
    }
    roots
}

/// The closure of [`oracle_roots`] holds every module modprobe loads for
/// each root, and its index files are what depmod writes over the staged
/// subset (all of them with `--compat kmod30`; the text files with kmod34).
fn oracle(kernel: &Kernel) {
    let Some(modprobe) = modprobe() else { return };
    if live_depmod30().is_none() {
        return;
    }
    let roots = oracle_roots(&kernel.root, &kernel.version);
    let spec = roots.join(",");
    let work = tempfile::tempdir().unwrap();
    let out30 = work.path().join("out30");
    let out34 = work.path().join("out34");
    build_ok(
        &kernel.root,
        &out30,
        &["--modules", &spec, "--staged", "--compat", "kmod30"],
        &[],
    );
    build_ok(&kernel.root, &out34, &["--modules", &spec], &[]);
    let got = staged_modules(&out30, &kernel.version);

    // modprobe over an indexed copy of the whole kernel.
    let indexed = indexed_copy(&kernel.root, &kernel.version);
    let mut listed = BTreeSet::new();
    for root in &roots {
        let want = show_depends(&modprobe, indexed.path(), &kernel.version, root);
        let lacking: Vec<&String> = want.difference(&got).collect();
        assert!(lacking.is_empty(), "{root}: the closure lacks {lacking:?}");
        listed.extend(want);
    }
    eprintln!(
        "{}: {} roots, modprobe lists {} modules, the closure holds {}",
        kernel.version,
        roots.len(),
        listed.len(),
        got.len()
    );

    let mdir30 = out30.join("lib/modules").join(&kernel.version);
    let depmod = depmod_over(&out30, &kernel.version);
    assert_same_files(
        "closure (kmod30) against depmod over the subset",
        &depmod,
        &depmod_written(&mdir30),
    );
    // kmod 34's text files equal kmod 30's.
    let mdir34 = out34.join("lib/modules").join(&kernel.version);
    let text34 = depmod_written(&mdir34);
    for name in [
        "modules.dep",
        "modules.alias",
        "modules.softdep",
        "modules.symbols",
        "modules.devname",
    ] {
        assert!(
            first_difference(&depmod[name], &text34[name]).is_none(),
            "{name} (kmod34) differs from depmod's over the subset"
        );
    }
}

mod oracle {
    use crate::common::{for_each_kernel, Kernel};
    for_each_kernel!(|kernel: &Kernel| super::oracle(kernel));
}

/// Boots `kernel` in qemu with a busybox base and the closure of
/// [`BOOT_ROOTS`], and checks that every root loaded.
fn boot(kernel: &Kernel) {
    let Some(qemu) = tool(&["/usr/bin/qemu-system-x86_64"], "qemu-system-x86") else {
        return;
    };
    let tools = [
        tool(&["/usr/bin/busybox", "/bin/busybox"], "busybox-static"),
        tool(&["/usr/bin/cpio", "/bin/cpio"], "cpio"),
        tool(&["/usr/bin/kmod", "/bin/kmod"], "kmod"),
    ];
    if tools.iter().any(Option::is_none) || live_depmod30().is_none() {
        return;
    }
    let Some(modprobe) = modprobe() else { return };
    let work = tempfile::tempdir().unwrap();
    let mods = work.path().join("mods.cpio.zst");
    build_ok(
        &kernel.root,
        &mods,
        &["--modules", &BOOT_ROOTS.join(","), "--staged"],
        &[],
    );
    // The closure is consistent: its index, modules, symbols (against the
    // kernel's Module.symvers) and firmware.
    let check = kmodidx(&[
        "check",
        "--from",
        mods.to_str().unwrap(),
        "--symvers",
        kernel.symvers.to_str().unwrap(),
    ]);
    assert!(check.status.success(), "kmodidx check: {}", stderr(&check));
    let base = work.path().join("base.cpio");
    let status = Command::new(repo().join("tests/boot/mkbase.sh"))
        .arg(&base)
        .args(BOOT_ROOTS)
        .status()
        .unwrap();
    assert!(status.success(), "mkbase.sh");
    let initrd = work.path().join("initrd");
    let mut bytes = fs::read(&base).unwrap();
    bytes.extend(fs::read(&mods).unwrap());
    fs::write(&initrd, bytes).unwrap();

    let vmlinuz = kernel
        .root
        .join("boot")
        .join(format!("vmlinuz-{}", kernel.version));
    let start = Instant::now();
    let mut child = Command::new(qemu)
        .args(["-accel", "tcg", "-cpu", "max", "-m", "1024", "-kernel"])
        .arg(&vmlinuz)
        .arg("-initrd")
        .arg(&initrd)
        .args([
            "-append",
            "console=ttyS0 rdinit=/init panic=-1 quiet",
            "-nographic",
            "-no-reboot",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The console comes through a reader thread; the timeout kills a guest
    // that hangs.
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut buf).ok();
        buf
    });
    let limit = Duration::from_secs(300);
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            child.kill().ok();
            child.wait().ok();
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let console = String::from_utf8_lossy(&reader.join().unwrap()).into_owned();
    let marks: Vec<&str> = console
        .lines()
        .filter_map(|l| l.find("KMODIDX-").map(|i| l[i..].trim_end()))
        .collect();
    eprintln!(
        "{} booted in {:.1} s:\n  {}",
        kernel.version,
        start.elapsed().as_secs_f64(),
        marks.join("\n  ")
    );
    assert!(
        marks.contains(&"KMODIDX-END"),
        "the guest did not finish within {limit:?}:\n{console}"
    );
    for root in BOOT_ROOTS {
        assert!(
            marks.contains(&format!("KMODIDX-OK {root}").as_str()),
            "{root} did not load:\n{console}"
        );
    }
    // /proc/modules names each root's module, as modprobe on the host
    // resolves it over the whole kernel (built-in ones are not listed).
    let loaded: BTreeSet<&str> = marks
        .iter()
        .find_map(|m| m.strip_prefix("KMODIDX-LOADED"))
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let mdir = kernel.root.join("lib/modules").join(&kernel.version);
    let builtin: BTreeSet<String> = fs::read_to_string(mdir.join("modules.builtin"))
        .unwrap()
        .lines()
        .map(|l| {
            let file = l.rsplit('/').next().unwrap_or(l);
            file.split('.').next().unwrap_or(file).replace('-', "_")
        })
        .collect();
    let indexed = indexed_copy(&kernel.root, &kernel.version);
    for root in BOOT_ROOTS {
        let out = Command::new(&modprobe)
            .arg("-d")
            .arg(indexed.path())
            .args(["-S", &kernel.version, "-C", "/dev/null", "-R", root])
            .output()
            .unwrap();
        for name in String::from_utf8_lossy(&out.stdout).lines() {
            if builtin.contains(name) {
                continue;
            }
            assert!(
                loaded.contains(name),
                "{root} resolves to {name}, not in /proc/modules: {loaded:?}"
            );
        }
    }
}

mod boot {
    use crate::common::{for_each_kernel, Kernel};
    for_each_kernel!(|kernel: &Kernel| super::boot(kernel));
}
