//! Hostile and unlucky inputs (issue 11's findings), each run the way the
//! independent test ran them: the binary under a timeout, its peak RSS
//! measured by the kernel (`wait4`) and held to the README's bound
//! `64 MiB + (3·W + 4)·L` (W worker threads, L the file limit), its exit
//! status checked (101, a panic, is always a failure), its message checked
//! to name the file, and the scratch directory compared before and after
//! so that nothing is written outside `--out`. The output side of the same
//! issue is in `hostile_output.rs`, with this harness ([`Case`],
//! [`Expect`]).

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::*;

const VERSION: &str = "6.1.0-fixture";
/// Worker threads of every run (`RAYON_NUM_THREADS`).
const THREADS: u64 = 2;
/// The default `--max-file-size`, in MiB.
const DEFAULT_LIMIT_MIB: u64 = 128;

/// The documented worst case, in KiB, for a run with a file limit of
/// `limit_mib` (the index of the fixture trees is negligible).
fn rss_bound_kib(limit_mib: u64) -> u64 {
    (64 + (3 * THREADS + 4) * limit_mib) * 1024
}

/// A scratch directory holding a case's inputs and its `--out`.
pub struct Case {
    dir: tempfile::TempDir,
}

/// What a run must give, and where its output goes.
pub struct Expect<'a> {
    pub status: i32,
    /// Text the messages must contain (file names, the cause).
    pub names: &'a [&'a str],
    /// The `--max-file-size` of the run, for the memory bound.
    pub limit_mib: u64,
    /// Wall-clock limit (generous: CI machines are shared).
    pub timeout_secs: u64,
    /// Where standard output and error go (captured by default).
    pub stdout: Sink,
    pub stderr: Sink,
    /// Paths besides `--out` the run may write, or below which it may (a
    /// `--report` file, say).
    pub also_writes: &'a [&'a Path],
    /// Environment besides `RAYON_NUM_THREADS=2`.
    pub env: &'a [(&'a str, &'a str)],
}

impl Default for Expect<'_> {
    fn default() -> Self {
        Expect {
            status: 0,
            names: &[],
            limit_mib: DEFAULT_LIMIT_MIB,
            timeout_secs: 120,
            stdout: Sink::Capture,
            stderr: Sink::Capture,
            also_writes: &[],
            env: &[],
        }
    }
}

/// Type, size, mtime and inode of every path under a directory (links not
/// followed); directories by type only, since creating `--out` changes
/// its parent's mtime.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u32, u64, i64, u64)> {
    fn go(dir: &Path, out: &mut BTreeMap<PathBuf, (u32, u64, i64, u64)>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let kind = meta.mode() & 0o170000;
            if meta.is_dir() {
                out.insert(path.clone(), (kind, 0, 0, 0));
                go(&path, out);
            } else {
                out.insert(
                    path,
                    (
                        kind,
                        meta.len(),
                        meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
                        meta.ino(),
                    ),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    go(root, &mut out);
    out
}

impl Case {
    pub fn new() -> Case {
        Case {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A copy of the basic fixture tree at `rel`.
    pub fn basic(&self, rel: &str) -> PathBuf {
        let to = self.path(rel);
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(repo().join("fixtures/trees/basic"))
            .arg(&to)
            .status()
            .unwrap();
        assert!(status.success());
        to
    }

    pub fn module_dir(&self, tree: &Path) -> PathBuf {
        tree.join("lib/modules").join(VERSION)
    }

    /// Runs kmodidx with `args`; `out`, if any, is the one place it may
    /// write (with `expect.also_writes`). Checks everything the module
    /// comment lists.
    pub fn run(&self, args: &[&OsStr], out: Option<&Path>, expect: &Expect<'_>) -> Bounded {
        let before = snapshot(self.dir.path());
        let mut env = vec![("RAYON_NUM_THREADS", "2")];
        env.extend_from_slice(expect.env);
        let run = run_bounded_with(
            Path::new(env!("CARGO_BIN_EXE_kmodidx")),
            args,
            &env,
            self.dir.path(),
            Duration::from_secs(expect.timeout_secs),
            expect.stdout,
            expect.stderr,
        );
        let shown = format!(
            "kmodidx {}\nstatus {:?}, signal {:?}, {} KiB, {:?}\nstderr:\n{}",
            args.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            run.status,
            run.signal,
            run.peak_rss_kib,
            run.elapsed,
            run.stderr
        );
        eprintln!(
            "{}: status {:?}, {} KiB (bound {} KiB), {:?}",
            args.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            run.status,
            run.peak_rss_kib,
            rss_bound_kib(expect.limit_mib),
            run.elapsed
        );
        assert!(run.signal.is_none(), "killed by a signal: {shown}");
        assert_ne!(run.status, Some(101), "panicked: {shown}");
        assert!(!run.stderr.contains("panicked"), "panicked: {shown}");
        assert_eq!(run.status, Some(expect.status), "exit status: {shown}");
        for name in expect.names {
            assert!(
                run.stderr.contains(name),
                "the message should name {name:?}: {shown}"
            );
        }
        let bound = rss_bound_kib(expect.limit_mib);
        assert!(
            run.peak_rss_kib <= bound,
            "peak RSS {} KiB is over the bound of {bound} KiB: {shown}",
            run.peak_rss_kib
        );
        let after = snapshot(self.dir.path());
        let allowed = |p: &Path| {
            out.is_some_and(|o| p.starts_with(o))
                || expect.also_writes.iter().any(|w| p.starts_with(w))
        };
        for (path, was) in &before {
            if !allowed(path) {
                assert_eq!(
                    after.get(path),
                    Some(was),
                    "{} changed: {shown}",
                    path.display()
                );
            }
        }
        for path in after.keys() {
            assert!(
                before.contains_key(path) || allowed(path),
                "{} was written outside --out: {shown}",
                path.display()
            );
        }
        if expect.status != 0 {
            if let Some(out) = out {
                assert!(
                    !out.exists(),
                    "a failed build left {}: {shown}",
                    out.display()
                );
            }
        }
        run
    }

    /// `kmodidx build --from FROM --out OUT EXTRA...`.
    pub fn build(&self, from: &Path, out: &Path, extra: &[&str], expect: &Expect<'_>) -> Bounded {
        let mut args: Vec<OsString> = vec![
            "build".into(),
            "--from".into(),
            from.into(),
            "--out".into(),
            out.into(),
        ];
        args.extend(extra.iter().map(OsString::from));
        let args: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
        self.run(&args, Some(out), expect)
    }
}

/// The module files of an output (or input) tree, by path under the module
/// directory.
fn module_files(tree: &Path) -> Vec<String> {
    fn go(dir: &Path, rel: &str, out: &mut Vec<String>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = format!("{rel}{name}");
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                go(&entry.path(), &format!("{rel}/"), out);
            } else if name.contains(".ko") {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    go(&tree.join("lib/modules").join(VERSION), "", &mut out);
    out.sort();
    out
}

fn index_of(out: &Path) -> BTreeMap<String, Vec<u8>> {
    depmod_written(&out.join("lib/modules").join(VERSION))
}

// ---------------------------------------------------------------------------
// 2. Symlink loops: each directory once, each loop reported once.

/// Two links back to their own directory made the walk exponential.
fn assert_each_loop_once(stderr: &str) {
    for link in ["kernel/s1", "kernel/s2"] {
        assert_eq!(
            stderr
                .matches(&format!("not following /lib/modules/{VERSION}/{link}:"))
                .count(),
            1,
            "{link} should be reported once:\n{stderr}"
        );
    }
}

/// `out`, a staged build, holds what one of the loop-free basic tree
/// holds: each file staged once, and the same index.
fn assert_like_a_clean_staged_build(case: &Case, out: &Path) {
    let clean = case.path("clean");
    case.build(
        &repo().join("fixtures/trees/basic"),
        &clean,
        &["--staged"],
        &Expect::default(),
    );
    assert_eq!(module_files(out), module_files(&clean));
    assert_eq!(index_of(out), index_of(&clean));
}

#[test]
fn two_self_links_in_a_directory_input() {
    let case = Case::new();
    let tree = case.basic("tree");
    let kernel = case.module_dir(&tree).join("kernel");
    symlink(".", kernel.join("s1")).unwrap();
    symlink(".", kernel.join("s2")).unwrap();
    let out = case.path("out");
    let run = case.build(&tree, &out, &["--staged"], &Expect::default());
    assert_each_loop_once(&run.stderr);
    assert_like_a_clean_staged_build(&case, &out);
}

#[test]
fn two_self_links_in_an_archive_input() {
    let case = Case::new();
    let mut items = walk(&repo().join("fixtures/trees/basic"));
    for link in ["s1", "s2"] {
        items.push((
            format!("lib/modules/{VERSION}/kernel/{link}"),
            Item::Symlink(b".".to_vec()),
        ));
    }
    let archive = case.path("tree.tar");
    fs::write(&archive, tar_of(&items, 0, 0)).unwrap();
    let out = case.path("out");
    let run = case.build(&archive, &out, &["--staged"], &Expect::default());
    assert_each_loop_once(&run.stderr);
    assert_like_a_clean_staged_build(&case, &out);
}

#[test]
fn two_self_links_in_an_external_directory() {
    let case = Case::new();
    let tree = case.basic("tree");
    let ext = tree.join("opt/ext");
    fs::create_dir_all(ext.join("sub")).unwrap();
    fs::copy(
        case.module_dir(&tree).join("kernel/drivers/bus/mid_bus.ko"),
        ext.join("sub/ext_mod.ko"),
    )
    .unwrap();
    symlink(".", ext.join("sub/s1")).unwrap();
    symlink("..", ext.join("sub/s2")).unwrap();
    fs::create_dir_all(tree.join("etc/depmod.d")).unwrap();
    fs::write(
        tree.join("etc/depmod.d/ext.conf"),
        "search external built-in\nexternal * /opt/ext\n",
    )
    .unwrap();
    let out = case.path("out");
    let run = case.build(&tree, &out, &[], &Expect::default());
    for link in ["/opt/ext/sub/s1:", "/opt/ext/sub/s2:"] {
        assert_eq!(run.stderr.matches(link).count(), 1, "{}", run.stderr);
    }
    let dep = String::from_utf8(index_of(&out)["modules.dep"].clone()).unwrap();
    assert!(dep.contains("/opt/ext/sub/ext_mod.ko:"), "{dep}");
}

// ---------------------------------------------------------------------------
// 3. Special files where a regular file belongs: never opened blocking.

/// Replaces `path` by a FIFO.
pub fn fifo(path: &Path) {
    let _ = fs::remove_file(path);
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid C string; mkfifo only creates the node.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
}

fn fifo_in_place_of(rel: &str) {
    let case = Case::new();
    let tree = case.basic("tree");
    let target = tree.join(rel);
    fs::create_dir_all(target.parent().unwrap()).unwrap();
    fifo(&target);
    let out = case.path("out");
    let shown = format!("/{rel}");
    case.build(
        &tree,
        &out,
        &[],
        &Expect {
            status: 2,
            names: &[&shown, "not a regular file (it is a FIFO)"],
            timeout_secs: 30,
            ..Expect::default()
        },
    );
}

#[test]
fn fifo_as_modules_order() {
    fifo_in_place_of(&format!("lib/modules/{VERSION}/modules.order"));
}

#[test]
fn fifo_as_modules_builtin() {
    fifo_in_place_of(&format!("lib/modules/{VERSION}/modules.builtin"));
}

#[test]
fn fifo_as_modules_builtin_modinfo() {
    fifo_in_place_of(&format!("lib/modules/{VERSION}/modules.builtin.modinfo"));
}

#[test]
fn fifo_as_a_depmod_d_file() {
    fifo_in_place_of("etc/depmod.d/evil.conf");
}

#[test]
fn fifo_as_a_symvers_file_in_the_input() {
    let case = Case::new();
    let tree = case.basic("tree");
    fifo(&tree.join("Module.symvers"));
    let out = case.path("out");
    case.build(
        &tree,
        &out,
        &["--symvers", "/Module.symvers"],
        &Expect {
            status: 2,
            names: &["/Module.symvers", "not a regular file (it is a FIFO)"],
            timeout_secs: 30,
            ..Expect::default()
        },
    );
}

#[test]
fn fifo_as_a_module() {
    // A special file in the module tree is what kmod calls an unsupported
    // file type: reported, and fatal with --strict.
    let case = Case::new();
    let tree = case.basic("tree");
    fifo(&case.module_dir(&tree).join("kernel/evil.ko"));
    let named = format!("unsupported file type /lib/modules/{VERSION}/kernel/evil.ko");
    let expect = Expect {
        names: &[&named],
        timeout_secs: 30,
        ..Expect::default()
    };
    case.build(&tree, &case.path("out"), &[], &expect);
    case.build(
        &tree,
        &case.path("strict"),
        &["--strict"],
        &Expect {
            status: 1,
            ..expect
        },
    );
}

// ---------------------------------------------------------------------------
// 4. Memory: one limit on every input, and a bound on the whole run.

#[test]
fn huge_sparse_module_in_a_directory() {
    // A 2 GiB module (a hole, so it costs no disk) used to be read whole.
    let case = Case::new();
    let tree = case.basic("tree");
    let module = case.module_dir(&tree).join("kernel/huge.ko");
    let mut bytes = fs::read(case.module_dir(&tree).join("kernel/drivers/bus/mid_bus.ko")).unwrap();
    bytes[..4].copy_from_slice(b"\x7fELF");
    fs::write(&module, &bytes).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&module)
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    let expect = Expect {
        status: 2,
        names: &["/kernel/huge.ko", "over the size limit", "--max-file-size"],
        ..Expect::default()
    };
    // Hashed for the manifest, and read piecemeal without one.
    case.build(&tree, &case.path("out"), &[], &expect);
    case.build(&tree, &case.path("bare"), &["--no-manifest"], &expect);
}

#[test]
fn the_limit_is_the_same_for_a_directory_and_an_archive() {
    let case = Case::new();
    let tree = case.basic("tree");
    // Padding after the sections keeps the module valid and makes it 2 MiB.
    let big = case.module_dir(&tree).join("kernel/drivers/bus/mid_bus.ko");
    let mut bytes = fs::read(&big).unwrap();
    bytes.resize(2 << 20, 0);
    fs::write(&big, &bytes).unwrap();
    let items = walk(&tree);
    fs::write(case.path("tree.tar"), tar_of(&items, 0, 0)).unwrap();
    fs::write(case.path("tree.cpio"), cpio_of(&items, false, 0)).unwrap();
    let mut outputs = Vec::new();
    for from in ["tree", "tree.tar", "tree.cpio"] {
        let from = case.path(from);
        case.build(
            &from,
            &case.path("refused"),
            &["--max-file-size", "1"],
            &Expect {
                status: 2,
                names: &["kernel/drivers/bus/mid_bus.ko", "over the size limit"],
                limit_mib: 1,
                ..Expect::default()
            },
        );
        let out = case.path(&format!("out-{}", outputs.len()));
        case.build(
            &from,
            &out,
            &["--max-file-size", "2"],
            &Expect {
                limit_mib: 2,
                ..Expect::default()
            },
        );
        outputs.push(index_of(&out));
    }
    assert_eq!(outputs[0], outputs[1]);
    assert_eq!(outputs[0], outputs[2]);
}

/// Builds the basic tree with `extra`, which must fail at once, naming
/// `names`.
fn basic_refused(extra: &[&str], names: &[&str]) {
    let case = Case::new();
    let tree = case.basic("tree");
    let expect = Expect {
        status: 2,
        names,
        timeout_secs: 30,
        ..Expect::default()
    };
    case.build(&tree, &case.path("out"), extra, &expect);
}

#[test]
fn symvers_from_dev_zero() {
    basic_refused(
        &["--symvers", "/dev/zero"],
        &["/dev/zero", "not a regular file"],
    );
}

#[test]
fn system_map_from_dev_urandom() {
    basic_refused(
        &["--system-map", "/dev/urandom"],
        &["/dev/urandom", "not a regular file"],
    );
}

#[test]
fn depmod_filesyms_from_dev_zero() {
    let case = Case::new();
    let tree = case.basic("tree");
    let tree_arg = tree.as_os_str();
    let args: Vec<&OsStr> = vec![
        "depmod".as_ref(),
        "-b".as_ref(),
        tree_arg,
        "-e".as_ref(),
        "-F".as_ref(),
        "/dev/zero".as_ref(),
        VERSION.as_ref(),
    ];
    // The drop-in writes into the tree it indexes; nothing may be written
    // at all when it fails.
    case.run(
        &args,
        None,
        &Expect {
            status: 1,
            names: &["could not load /dev/zero", "not a regular file"],
            timeout_secs: 30,
            ..Expect::default()
        },
    );
}

#[test]
fn symvers_larger_than_the_limit() {
    let case = Case::new();
    let tree = case.basic("tree");
    let symvers = case.path("Module.symvers");
    fs::File::create(&symvers)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    case.build(
        &tree,
        &case.path("out"),
        &[
            "--symvers",
            symvers.to_str().unwrap(),
            "--max-file-size",
            "8",
        ],
        &Expect {
            status: 2,
            names: &["Module.symvers", "over the size limit"],
            limit_mib: 8,
            ..Expect::default()
        },
    );
}

/// A gzip member of `size` zeros whose trailer claims 1000 bytes, so that
/// only decompressing it shows its size.
fn lying_gzip_bomb(size: usize) -> Vec<u8> {
    let mut bomb = gzip(&vec![0u8; size]);
    let at = bomb.len() - 4;
    bomb[at..].copy_from_slice(&1000u32.to_le_bytes());
    bomb
}

fn honest_xz_bomb(size: usize) -> Vec<u8> {
    xz(&vec![0u8; size])
}

#[test]
fn compressed_bombs_cost_bounded_memory() {
    // Four bombs, each far past the limit: two that say so (the size is
    // checked without keeping the data) and two that lie (decompressed
    // until the limit). Memory stays within the bound; the build stops,
    // naming a bomb.
    let case = Case::new();
    let tree = case.basic("tree");
    let kernel = case.module_dir(&tree).join("kernel");
    let lying = lying_gzip_bomb(256 << 20);
    let honest = honest_xz_bomb(256 << 20);
    for i in 0..2 {
        fs::write(kernel.join(format!("bomb{i}.ko.gz")), &lying).unwrap();
        fs::write(kernel.join(format!("bomb{}.ko.xz", i + 2)), &honest).unwrap();
    }
    let expect = Expect {
        status: 2,
        names: &["/kernel/bomb", "--max-file-size"],
        limit_mib: 32,
        ..Expect::default()
    };
    case.build(
        &tree,
        &case.path("out"),
        &["--max-file-size", "32"],
        &expect,
    );
    let items = walk(&tree);
    fs::write(case.path("tree.tar"), tar_of(&items, 0, 0)).unwrap();
    case.build(
        &case.path("tree.tar"),
        &case.path("out2"),
        &["--max-file-size", "32"],
        &expect,
    );
}

#[test]
fn many_large_files_in_an_archive_cost_bounded_memory() {
    // Files kept in memory (everything in a module directory that is not a
    // module) and modules waiting for the workers are capped as a whole.
    let case = Case::new();
    let mut items = walk(&repo().join("fixtures/trees/basic"));
    let blob: Vec<u8> = (0..7u32 << 20).map(|i| (i * 7 + i / 4096) as u8).collect();
    for i in 0..24 {
        items.push((
            format!("lib/modules/{VERSION}/blob{i}"),
            Item::File(blob.clone(), 0o644),
        ));
        items.push((
            format!("lib/modules/{VERSION}/kernel/junk{i}.ko"),
            Item::File(blob.clone(), 0o644),
        ));
    }
    fs::write(case.path("tree.tar"), tar_of(&items, 0, 0)).unwrap();
    case.build(
        &case.path("tree.tar"),
        &case.path("out"),
        &["--max-file-size", "8"],
        &Expect {
            names: &["junk0.ko"],
            limit_mib: 8,
            ..Expect::default()
        },
    );
}

// ---------------------------------------------------------------------------
// 5. depmod.d `search` lists are linear.

#[test]
fn ten_million_words_on_a_search_line() {
    let case = Case::new();
    let tree = case.basic("tree");
    fs::create_dir_all(tree.join("etc/depmod.d")).unwrap();
    let mut line = b"search".to_vec();
    for i in 0..10_000_000u32 {
        line.extend_from_slice(if i % 2 == 0 {
            b" updates"
        } else {
            b" built-in"
        });
    }
    line.push(b'\n');
    fs::write(tree.join("etc/depmod.d/long.conf"), &line).unwrap();
    let out = case.path("out");
    case.build(&tree, &out, &[], &Expect::default());
    assert_eq!(index_of(&out), index_of_basic(&case));
    // Ten million different words: refused, quickly.
    let distinct: Vec<u8> = (0..10_000_000u32)
        .flat_map(|i| format!(" w{i}").into_bytes())
        .collect();
    fs::write(
        tree.join("etc/depmod.d/long.conf"),
        [b"search".as_slice(), &distinct, b"\n"].concat(),
    )
    .unwrap();
    case.build(
        &tree,
        &case.path("refused"),
        &[],
        &Expect {
            status: 2,
            names: &["/etc/depmod.d/long.conf", "more than 65536 entries"],
            ..Expect::default()
        },
    );
}

fn index_of_basic(case: &Case) -> BTreeMap<String, Vec<u8>> {
    let out = case.path("basic-out");
    if !out.exists() {
        case.build(
            &repo().join("fixtures/trees/basic"),
            &out,
            &[],
            &Expect::default(),
        );
    }
    index_of(&out)
}

// ---------------------------------------------------------------------------
// 6. Compressed archives are checked to the end of every stream.

/// Damages `archive` five ways (a flipped byte in the trailer's checksum,
/// and cut short by 1 to 4 bytes); each must fail naming the archive and
/// the compression.
fn damaged(compressed: Vec<u8>, ext: &str, format: &str) {
    let case = Case::new();
    let intact = case.path(&format!("intact.{ext}"));
    fs::write(&intact, &compressed).unwrap();
    case.build(&intact, &case.path("out"), &[], &Expect::default());
    let what = format!("corrupt or truncated {format} data");
    let mut variants = Vec::new();
    let mut flipped = compressed.clone();
    // The last bytes are the checksum (gzip: CRC32 and size; xz: the
    // footer's CRC32; zstd: the frame's content checksum).
    let at = flipped.len() - 5;
    flipped[at] ^= 0x01;
    variants.push(("flipped", flipped));
    for cut in 1..=4 {
        variants.push(("cut", compressed[..compressed.len() - cut].to_vec()));
    }
    for (i, (how, bytes)) in variants.into_iter().enumerate() {
        let name = format!("{how}{i}.{ext}");
        let path = case.path(&name);
        fs::write(&path, bytes).unwrap();
        case.build(
            &path,
            &case.path(&format!("out{i}")),
            &[],
            &Expect {
                status: 2,
                names: &[&name, &what],
                ..Expect::default()
            },
        );
    }
}

fn basic_tar() -> Vec<u8> {
    tar_of(&walk(&repo().join("fixtures/trees/basic")), 0, 0)
}

fn basic_cpio() -> Vec<u8> {
    cpio_of(&walk(&repo().join("fixtures/trees/basic")), false, 0)
}

fn zstd_checked(data: &[u8]) -> Vec<u8> {
    let mut e = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    e.include_checksum(true).unwrap();
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// One test per compressed archive form.
macro_rules! damaged_forms {
    ($($name:ident: $compress:ident($archive:ident), $ext:literal, $format:literal;)*) => {
        $(
            #[test]
            fn $name() {
                damaged($compress(&$archive()), $ext, $format);
            }
        )*
    };
}

damaged_forms! {
    damaged_tar_gz: gzip(basic_tar), "tar.gz", "gzip";
    damaged_tar_xz: xz(basic_tar), "tar.xz", "xz";
    damaged_tar_zst: zstd_checked(basic_tar), "tar.zst", "zstd";
    damaged_cpio_gz: gzip(basic_cpio), "cpio.gz", "gzip";
    damaged_cpio_xz: xz(basic_cpio), "cpio.xz", "xz";
    damaged_cpio_zst: zstd_checked(basic_cpio), "cpio.zst", "zstd";
}

// ---------------------------------------------------------------------------
// 8. A link from the module directory to elsewhere in an archive.

#[test]
fn module_directory_link_to_elsewhere_in_an_archive() {
    let case = Case::new();
    let tree = case.basic("tree");
    let kernel = case.module_dir(&tree).join("kernel");
    fs::create_dir_all(tree.join("opt/vendor")).unwrap();
    fs::rename(kernel.join("drivers/misc"), tree.join("opt/vendor/misc")).unwrap();
    symlink("/opt/vendor", kernel.join("extra")).unwrap();
    // The link comes after what it points to, so a second pass reads them.
    let items = walk(&tree);
    fs::write(case.path("tree.tar"), tar_of(&items, 0, 0)).unwrap();
    fs::write(case.path("tree.cpio.gz"), gzip(&cpio_of(&items, false, 0))).unwrap();
    let from_dir = case.path("dir-out");
    case.build(&tree, &from_dir, &["--staged"], &Expect::default());
    assert!(module_files(&from_dir).contains(&"kernel/extra/misc/dia_top.ko".to_string()));
    for archive in ["tree.tar", "tree.cpio.gz"] {
        let out = case.path(&format!("{archive}-out").replace('.', "-"));
        case.build(&case.path(archive), &out, &["--staged"], &Expect::default());
        assert_eq!(module_files(&out), module_files(&from_dir));
        assert_eq!(index_of(&out), index_of(&from_dir));
        assert_eq!(
            fs::read(out.join("kmodidx.manifest.json")).unwrap(),
            fs::read(from_dir.join("kmodidx.manifest.json")).unwrap()
        );
    }
}

// ---------------------------------------------------------------------------
// 9. Sparse files in tar archives: GNU tar's own, and pax formats 0.0, 0.1
// and 1.0 (which names the entry GNUSparseFile.NNN/...).

#[test]
fn sparse_modules_in_tar() {
    let case = Case::new();
    let tree = case.basic("tree");
    // A module with a hole at its end (still a valid module).
    let module = case.module_dir(&tree).join("kernel/drivers/bus/mid_bus.ko");
    let len = fs::metadata(&module).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&module)
        .unwrap()
        .set_len(len + (1 << 20))
        .unwrap();
    let plain = case.path("plain-out");
    case.build(&tree, &plain, &["--staged"], &Expect::default());
    for (format, version) in [
        ("gnu", None),
        ("posix", Some("0.0")),
        ("posix", Some("0.1")),
        ("posix", Some("1.0")),
    ] {
        let name = format!("sparse-{format}-{}.tar", version.unwrap_or("gnu"));
        let archive = case.path(&name);
        let mut tar = std::process::Command::new("tar");
        tar.arg("--sparse").arg(format!("--format={format}"));
        if let Some(v) = version {
            tar.arg(format!("--sparse-version={v}"));
        }
        let status = tar
            .arg("-C")
            .arg(&tree)
            .arg("-cf")
            .arg(&archive)
            .arg("lib")
            .status()
            .unwrap();
        assert!(status.success(), "GNU tar is needed");
        let raw = fs::read(&archive).unwrap();
        if version == Some("1.0") {
            assert!(
                raw.windows(14).any(|w| w == b"GNUSparseFile."),
                "not a pax 1.0 sparse archive"
            );
        }
        let out = case.path(&format!("{name}-out").replace('.', "-"));
        case.build(&archive, &out, &["--staged"], &Expect::default());
        assert_eq!(module_files(&out), module_files(&plain), "{name}");
        assert_eq!(index_of(&out), index_of(&plain), "{name}");
        let staged = out
            .join("lib/modules")
            .join(VERSION)
            .join("kernel/drivers/bus/mid_bus.ko");
        assert_eq!(
            fs::read(&staged).unwrap(),
            fs::read(&module).unwrap(),
            "{name}"
        );
    }
}

// ---------------------------------------------------------------------------
// 11. A streamed .ko.zst (no content size) in kmod 30's mode.

#[test]
fn streamed_zstd_module_as_kmod30_indexes_it() {
    let Some(depmod) = live_depmod30() else {
        return;
    };
    let case = Case::new();
    let tree = case.basic("tree");
    let module = case.module_dir(&tree).join("kernel/drivers/bus/mid_bus.ko");
    let mut streamed = Vec::new();
    let mut e = zstd::stream::write::Encoder::new(&mut streamed, 3).unwrap();
    e.include_contentsize(false).unwrap();
    e.write_all(&fs::read(&module).unwrap()).unwrap();
    e.finish().unwrap();
    assert!(matches!(
        zstd::zstd_safe::get_frame_content_size(&streamed),
        Ok(None)
    ));
    fs::write(module.with_extension("ko.zst"), &streamed).unwrap();
    fs::remove_file(&module).unwrap();
    let reference = case.path("reference");
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(&tree)
        .arg(&reference)
        .status()
        .unwrap();
    assert!(status.success());
    let ran = std::process::Command::new(depmod)
        .args(["-b", reference.to_str().unwrap(), VERSION])
        .output()
        .unwrap();
    assert!(ran.status.success());
    let out = case.path("out");
    case.build(&tree, &out, &["--compat", "kmod30"], &Expect::default());
    let want = depmod_written(&case.module_dir(&reference));
    assert_same_files("--compat kmod30, streamed .ko.zst", &want, &index_of(&out));
    let dep = String::from_utf8(want["modules.dep"].clone()).unwrap();
    assert!(
        dep.contains("kernel/drivers/bus/mid_bus.ko.zst: kernel/lib/core_util.ko"),
        "{dep}"
    );
    // kmod 34 refuses such a frame, and says so.
    let run = case.build(&tree, &case.path("out34"), &[], &Expect::default());
    assert!(run
        .stderr
        .contains("mid_bus.ko.zst: zstd data is corrupt: Failed to determine decompression size"));
}

// ---------------------------------------------------------------------------
// 12. Early-microcode initrds: a plain cpio, then a compressed one.

#[test]
fn early_microcode_initrd() {
    let case = Case::new();
    let microcode = cpio_of(
        &[
            ("kernel".into(), Item::Dir),
            ("kernel/x86".into(), Item::Dir),
            ("kernel/x86/microcode".into(), Item::Dir),
            (
                "kernel/x86/microcode/GenuineIntel.bin".into(),
                Item::File(vec![1; 4096], 0o644),
            ),
        ],
        false,
        0,
    );
    let plain = case.path("plain-out");
    case.build(
        &repo().join("fixtures/trees/basic"),
        &plain,
        &[],
        &Expect::default(),
    );
    for (name, main) in [
        ("initrd-gz", gzip(&basic_cpio())),
        ("initrd-zst", zstd_checked(&basic_cpio())),
        ("initrd-xz", xz(&basic_cpio())),
    ] {
        let initrd = case.path(name);
        fs::write(&initrd, [microcode.as_slice(), &main].concat()).unwrap();
        let out = case.path(&format!("{name}-out").replace('.', "-"));
        case.build(&initrd, &out, &[], &Expect::default());
        assert_eq!(index_of(&out), index_of(&plain), "{name}");
        // The compressed part is checked to its end too.
        let cut = case.path(&format!("{name}-cut"));
        fs::write(
            &cut,
            [microcode.as_slice(), &main[..main.len() - 2]].concat(),
        )
        .unwrap();
        let format = &name["initrd-".len()..];
        let what = format!(
            "corrupt or truncated {} data",
            match format {
                "gz" => "gzip",
                "zst" => "zstd",
                other => other,
            }
        );
        case.build(
            &cut,
            &case.path(&format!("{name}-cut-out")),
            &[],
            &Expect {
                status: 2,
                names: &[&format!("{name}-cut"), &what],
                ..Expect::default()
            },
        );
    }
}

// ---------------------------------------------------------------------------
// Issue 9: symlink forests. Links into a "store" outside the input resolve
// inside the input (and so lead nowhere) unless --follow-links-under names
// the store; either way, no index is written when no module can be read.

/// A buildEnv-style forest of the basic tree: real directories, every file
/// an absolute link into `store`.
fn forest(case: &Case) -> (PathBuf, PathBuf) {
    let store = case.path("store");
    let package = store.join("pkg");
    fs::create_dir_all(&package).unwrap();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(repo().join("fixtures/trees/basic/lib"))
        .arg(&package)
        .status()
        .unwrap();
    assert!(status.success());
    let forest = case.path("forest");
    for (path, item) in walk(&package) {
        let at = forest.join(&path);
        match item {
            Item::Dir => fs::create_dir_all(&at).unwrap(),
            _ => symlink(package.join(&path), &at).unwrap(),
        }
    }
    (forest, store)
}

#[test]
fn forest_without_follow_links_under_is_an_error() {
    let case = Case::new();
    let (forest, store) = forest(&case);
    let hint = format!(
        "--follow-links-under {}",
        store.join("pkg/lib/modules").join(VERSION).display()
    );
    let expect = Expect {
        status: 2,
        names: &[
            "none of the 15 module files found could be read",
            "kernel/drivers/bus/mid_bus.ko",
            &hint,
        ],
        ..Expect::default()
    };
    case.build(&forest, &case.path("out"), &[], &expect);
    case.build(&forest, &case.path("strict"), &["--strict"], &expect);
}

#[test]
fn forest_with_follow_links_under() {
    let case = Case::new();
    let (forest, store) = forest(&case);
    let out = case.path("out");
    case.build(
        &forest,
        &out,
        &["--follow-links-under", store.to_str().unwrap(), "--staged"],
        &Expect::default(),
    );
    let plain = case.path("plain");
    case.build(
        &repo().join("fixtures/trees/basic"),
        &plain,
        &["--staged"],
        &Expect::default(),
    );
    assert_eq!(index_of(&out), index_of(&plain));
    assert_eq!(module_files(&out), module_files(&plain));
    // verify --from rebuilds with the recorded prefix.
    let args: Vec<&OsStr> = vec![
        "verify".as_ref(),
        "--from".as_ref(),
        forest.as_os_str(),
        out.as_os_str(),
    ];
    case.run(&args, None, &Expect::default());
}

#[test]
fn follow_links_under_stays_under_the_prefix() {
    let case = Case::new();
    let (forest, store) = forest(&case);
    // A secret module outside the store, reached from inside it by `..`,
    // and from the forest by an absolute link elsewhere on the host.
    let secret = case.path("secret");
    fs::create_dir_all(&secret).unwrap();
    fs::copy(
        repo()
            .join("fixtures/trees/basic/lib/modules")
            .join(VERSION)
            .join("kernel/lib/core_base.ko"),
        secret.join("leak.ko"),
    )
    .unwrap();
    let kernel = forest.join("lib/modules").join(VERSION).join("kernel");
    symlink(store.join("pkg/../../secret/leak.ko"), kernel.join("up.ko")).unwrap();
    symlink(secret.join("leak.ko"), kernel.join("abs.ko")).unwrap();
    let out = case.path("out");
    let run = case.build(
        &forest,
        &out,
        &["--follow-links-under", store.to_str().unwrap()],
        &Expect::default(),
    );
    for name in ["kernel/up.ko", "kernel/abs.ko"] {
        assert!(
            run.stderr.contains(&format!(
                "unsupported file type /lib/modules/{VERSION}/{name}"
            )),
            "{}",
            run.stderr
        );
    }
    let dep = String::from_utf8(index_of(&out)["modules.dep"].clone()).unwrap();
    assert!(!dep.contains("up.ko") && !dep.contains("abs.ko"), "{dep}");
}

// ---------------------------------------------------------------------------
// What is remembered of an archive is bounded too.

#[test]
fn millions_of_empty_entries_in_an_archive() {
    // Each entry is remembered by name and kind; an archive of empty files
    // compresses to almost nothing.
    let case = Case::new();
    let mut items = walk(&repo().join("fixtures/trees/basic"));
    items.push(("junk".into(), Item::Dir));
    for i in 0..200_000 {
        items.push((format!("junk/f{i:07}"), Item::File(Vec::new(), 0o644)));
    }
    fs::write(case.path("many.cpio.zst"), zstd(&cpio_of(&items, false, 0))).unwrap();
    case.build(
        &case.path("many.cpio.zst"),
        &case.path("out"),
        &["--max-file-size", "8"],
        &Expect {
            status: 2,
            names: &[
                "many.cpio.zst",
                "more entries than kmodidx keeps track of",
                "--max-file-size",
            ],
            limit_mib: 8,
            ..Expect::default()
        },
    );
    // With room for them, the same archive builds.
    case.build(
        &case.path("many.cpio.zst"),
        &case.path("out2"),
        &["--max-file-size", "128"],
        &Expect::default(),
    );
}

/// A tar whose first entry is a GNU long name or pax header of `size`
/// bytes (of `fill`), compressed.
fn tar_with_huge_meta(kind: tar::EntryType, size: usize, fill: u8) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size as u64);
    h.set_mode(0o644);
    b.append_data(
        &mut h,
        "././@LongLink",
        std::io::repeat(fill).take(size as u64),
    )
    .unwrap();
    for (path, item) in walk(&repo().join("fixtures/trees/basic")) {
        if let Item::File(data, mode) = item {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(mode);
            b.append_data(&mut h, path, &data[..]).unwrap();
        }
    }
    xz(&b.into_inner().unwrap())
}

#[test]
fn huge_gnu_long_name_in_a_tar() {
    let case = Case::new();
    fs::write(
        case.path("long.tar.xz"),
        tar_with_huge_meta(tar::EntryType::GNULongName, 256 << 20, b'a'),
    )
    .unwrap();
    case.build(
        &case.path("long.tar.xz"),
        &case.path("out"),
        &["--max-file-size", "8"],
        &Expect {
            status: 2,
            names: &["long.tar.xz", "GNU long name of 268435456 bytes"],
            limit_mib: 8,
            ..Expect::default()
        },
    );
}

#[test]
fn huge_pax_header_in_a_tar() {
    let case = Case::new();
    fs::write(
        case.path("pax.tar.xz"),
        tar_with_huge_meta(tar::EntryType::XHeader, 256 << 20, b'\n'),
    )
    .unwrap();
    case.build(
        &case.path("pax.tar.xz"),
        &case.path("out"),
        &["--max-file-size", "8"],
        &Expect {
            status: 2,
            names: &["pax.tar.xz", "pax header of 268435456 bytes"],
            limit_mib: 8,
            ..Expect::default()
        },
    );
}

/// The basic tree as a tar, compressed by `compress`.
fn big_window(compress: impl Fn(&[u8]) -> Vec<u8>, name: &str) {
    let case = Case::new();
    fs::write(case.path(name), compress(&basic_tar())).unwrap();
    // The window a decoder would fill is within the limit only when the
    // limit allows it.
    case.build(
        &case.path(name),
        &case.path("out"),
        &["--max-file-size", "8"],
        &Expect {
            status: 2,
            names: &[name, "raise it with --max-file-size"],
            limit_mib: 8,
            ..Expect::default()
        },
    );
    case.build(
        &case.path(name),
        &case.path("out2"),
        &[],
        &Expect::default(),
    );
}

#[test]
fn zstd_archive_with_a_window_over_the_limit() {
    big_window(
        |data| {
            let mut e = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
            e.window_log(27).unwrap();
            e.write_all(data).unwrap();
            e.finish().unwrap()
        },
        "wide.tar.zst",
    );
}

#[test]
fn xz_archive_with_a_dictionary_over_the_limit() {
    big_window(
        |data| {
            let opts = liblzma::stream::LzmaOptions::new_preset(9).unwrap();
            let mut filters = liblzma::stream::Filters::new();
            filters.lzma2(&opts);
            let stream = liblzma::stream::Stream::new_stream_encoder(
                &filters,
                liblzma::stream::Check::Crc64,
            )
            .unwrap();
            let mut e = liblzma::write::XzEncoder::new_stream(Vec::new(), stream);
            e.write_all(data).unwrap();
            e.finish().unwrap()
        },
        "wide.tar.xz",
    );
}

/// A file read whole from the host by a command other than `build`'s
/// inputs: `/dev/zero` must be refused at once, naming it.
fn refuses_dev_zero(args: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    let run = run_bounded(&args, &[], dir.path(), std::time::Duration::from_secs(20));
    assert_eq!(run.status, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("/dev/zero"), "{}", run.stderr);
    assert!(run.peak_rss_kib < 256 * 1024, "{} KiB", run.peak_rss_kib);
}

#[test]
fn query_dump_of_dev_zero_is_refused() {
    refuses_dev_zero(&["query", "dump", "/dev/zero"]);
}

#[test]
fn a_spec_list_from_dev_zero_is_refused() {
    let tree = repo().join("fixtures/trees/basic");
    refuses_dev_zero(&[
        "build",
        "--from",
        tree.to_str().unwrap(),
        "--out",
        "out",
        "--modules",
        "@/dev/zero",
    ]);
}

/// `n` nested directories `a/a/…/a` under the basic tree's `kernel/`, as
/// archive items (the deepest path is far beyond `PATH_MAX`).
fn nested_dirs(n: usize) -> Vec<(String, Item)> {
    let mut path = format!("lib/modules/{VERSION}/kernel");
    (0..n)
        .map(|_| {
            path.push_str("/a");
            (path.clone(), Item::Dir)
        })
        .collect()
}

/// Each directory level used to resolve its whole path again, so a deep
/// tree took time cubic in its depth (8 minutes for 5,000 levels in a
/// tar, 94 s as a directory). Now a level costs about one component; the
/// levels beyond PATH_MAX are reported as kmod reports them, and the rest
/// of the tree indexes as usual.
#[test]
fn five_thousand_nested_directories() {
    let case = Case::new();
    let items: Vec<(String, Item)> = walk(&repo().join("fixtures/trees/basic"))
        .into_iter()
        .chain(nested_dirs(5000))
        .collect();
    let tar = case.path("deep.tar");
    fs::write(&tar, tar_of(&items, 0, 0)).unwrap();
    let quick = Expect {
        timeout_secs: 60,
        ..Expect::default()
    };
    let out = case.path("from-tar");
    let run = case.build(&tar, &out, &[], &quick);
    assert!(run.stderr.contains("longer than"), "{}", run.stderr);
    assert_eq!(index_of(&out), index_of_basic(&case));

    // The same as a directory, outside the case's scratch directory (whose
    // before-and-after listing opens absolute paths, which cannot be that
    // deep). A shell makes it, 1,000 levels a step.
    let outside = tempfile::tempdir().unwrap();
    let tree = outside.path().join("tree");
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(repo().join("fixtures/trees/basic"))
        .arg(&tree)
        .status()
        .unwrap();
    assert!(copied.success());
    let made = std::process::Command::new("sh")
        .arg("-c")
        .arg("cd \"$1\" && for i in 1 2 3 4 5; do mkdir -p \"$2\" && cd -P \"$2\" || exit 1; done")
        .arg("sh")
        .arg(tree.join(format!("lib/modules/{VERSION}/kernel")))
        .arg("a/".repeat(1000))
        .status()
        .unwrap();
    assert!(made.success());
    let out = case.path("from-dir");
    case.build(&tree, &out, &[], &quick);
    assert_eq!(index_of(&out), index_of_basic(&case));
}

/// One archive entry whose name is 200,000 components long (400 KB): it
/// used to hang the reader, which resolved every prefix of it. Names longer
/// than any path kmod opens are now ignored with a warning that names them.
#[test]
fn an_entry_name_of_two_hundred_thousand_components() {
    let case = Case::new();
    let long = format!("lib/modules/{VERSION}/kernel/{}x.ko", "a/".repeat(200_000));
    let items: Vec<(String, Item)> = walk(&repo().join("fixtures/trees/basic"))
        .into_iter()
        .chain([(long, Item::File(b"\x7fELF".to_vec(), 0o644))])
        .collect();
    let tar = case.path("long.tar");
    fs::write(&tar, tar_of(&items, 0, 0)).unwrap();
    let out = case.path("out");
    let run = case.build(
        &tar,
        &out,
        &[],
        &Expect {
            timeout_secs: 60,
            names: &["its name is longer than 8192 bytes"],
            ..Expect::default()
        },
    );
    // The name is shortened in the message.
    assert!(run.stderr.len() < 4096, "{}", run.stderr);
    assert_eq!(index_of(&out), index_of_basic(&case));
}

/// A directory replaced by a file, again and again, in an archive of many
/// entries: each replacement used to scan every entry of the archive for
/// what was inside (30 s for 20,000 replacements among 100,000 entries, a
/// 72 MB tar), and now removes only what the directory held.
#[test]
fn a_directory_replaced_twenty_thousand_times() {
    let case = Case::new();
    let mut items: Vec<(String, Item)> = walk(&repo().join("fixtures/trees/basic"));
    items.extend((0..100_000).map(|i| (format!("big/f{i}"), Item::File(Vec::new(), 0o644))));
    for i in 0..20_000 {
        items.push(("x".into(), Item::Dir));
        items.push((format!("x/y{i}"), Item::File(Vec::new(), 0o644)));
        items.push(("x".into(), Item::File(Vec::new(), 0o644)));
    }
    let tar = case.path("flip.tar");
    fs::write(&tar, tar_of(&items, 0, 0)).unwrap();
    let out = case.path("out");
    case.build(
        &tar,
        &out,
        &[],
        &Expect {
            timeout_secs: 20,
            ..Expect::default()
        },
    );
    assert_eq!(index_of(&out), index_of_basic(&case));
}

/// 60,000 names of one cpio inode, the data on the last: each name used to
/// copy the list of all the names before it (two minutes for an 8 MB
/// cpio); the data is now shared out once, at the end. The last name is a
/// real module, and the first name, in the module directory, is indexed
/// with its data.
#[test]
fn sixty_thousand_names_of_one_cpio_inode() {
    let case = Case::new();
    let module = fs::read(repo().join(format!(
        "fixtures/trees/basic/lib/modules/{VERSION}/kernel/lib/core_base.ko"
    )))
    .unwrap();
    let items: Vec<(String, Item)> = walk(&repo().join("fixtures/trees/basic"));
    let mut w = Vec::new();
    for (i, (path, item)) in items.iter().enumerate() {
        let b = cpio::newc::Builder::new(path).ino(i as u32 + 1);
        let (b, data) = match item {
            Item::Dir => (b.mode(0o040755).nlink(2), Vec::new()),
            Item::File(d, _) => (b.mode(0o100644).nlink(1), d.clone()),
            Item::Symlink(t) => (b.mode(0o120777).nlink(1), t.clone()),
        };
        let mut wr = b.write(w, data.len() as u32);
        wr.write_all(&data).unwrap();
        w = wr.finish().unwrap();
    }
    let names = 60_000;
    for i in 0..names {
        let name = if i == 0 {
            format!("lib/modules/{VERSION}/kernel/linked.ko")
        } else {
            format!("stash/n{i}")
        };
        let data: &[u8] = if i == names - 1 { &module } else { &[] };
        let mut wr = cpio::newc::Builder::new(&name)
            .ino(999_999)
            .mode(0o100644)
            .nlink(2)
            .write(w, data.len() as u32);
        wr.write_all(data).unwrap();
        w = wr.finish().unwrap();
    }
    let cpio = case.path("links.cpio");
    fs::write(&cpio, cpio::newc::trailer(w).unwrap()).unwrap();
    let out = case.path("out");
    case.build(
        &cpio,
        &out,
        &[],
        &Expect {
            timeout_secs: 20,
            ..Expect::default()
        },
    );
    let deps = String::from_utf8(index_of(&out)["modules.dep"].clone()).unwrap();
    assert!(deps.contains("kernel/linked.ko:"), "{deps}");
    let symbols = String::from_utf8(index_of(&out)["modules.symbols"].clone()).unwrap();
    assert!(symbols.contains(" linked\n"), "{symbols}");
}
