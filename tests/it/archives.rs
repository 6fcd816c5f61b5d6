//! Archive input, archive output, manifests and `verify`.
//!
//! * Every input form (directory, tar, tar.gz, tar.xz, tar.zst, cpio,
//!   cpio.zst, concatenated cpio) of each real kernel in the corpus gives the
//!   index depmod 34.2 gives (`<corpus>/<version>/ref-34.2/`).
//! * Every output form is reproducible: the same bytes from two runs, from
//!   shuffled archives with other mtimes and owners, under another umask, TZ,
//!   locale and thread count.
//! * Merged-/usr trees, `verify`, and hostile archives.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use sha2::Digest;

fn build_err(from: &Path, out: &Path, extra: &[&str]) -> String {
    let run = kmodidx_build(from, out, extra, &[]);
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert_eq!(
        run.status.code(),
        Some(2),
        "expected failure, got: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    stderr
}

fn sha(path: &Path) -> String {
    let bytes = fs::read(path).unwrap();
    kmodidx::util::hex(&sha2::Sha256::digest(&bytes))
}

/// Every file under `dir` with its bytes and mode, by relative path.
fn tree_files(dir: &Path) -> BTreeMap<String, (Vec<u8>, u32)> {
    walk(dir)
        .into_iter()
        .filter_map(|(p, i)| match i {
            Item::File(d, m) => Some((p, (d, m))),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Real kernels through every input form.

/// The kernel's tree packed as `form`.
fn packed(root: &Path, form: &str) -> Vec<u8> {
    let items = walk(root);
    let tar = || tar_of(&items, 1_700_000_000, 1000);
    let cpio = || cpio_of(&items, false, 1_700_000_000);
    match form {
        "tar" => tar(),
        "tar.gz" => gzip(&tar()),
        "tar.xz" => xz(&tar()),
        "tar.zst" => zstd(&tar()),
        "cpio" => cpio(),
        "cpio.zst" => zstd(&cpio()),
        "early.cpio" => {
            // An early-microcode image: a small crc-format cpio, then the real one.
            let microcode = cpio_of(
                &[
                    ("kernel".into(), Item::Dir),
                    ("kernel/x86".into(), Item::Dir),
                    ("kernel/x86/microcode".into(), Item::Dir),
                    (
                        "kernel/x86/microcode/GenuineIntel.bin".into(),
                        Item::File(vec![0x5a; 3000], 0o644),
                    ),
                ],
                true,
                0,
            );
            [microcode, cpio()].concat()
        }
        _ => panic!("unknown input form {form}"),
    }
}

/// Building the kernel from its tree packed as `form` gives depmod 34.2's
/// files, silently, and the manifest a build from the directory gives.
fn input_form_matches_kmod34(kernel: &Kernel, form: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let want = index_files(&kernel.reference);
    assert_eq!(
        want.len(),
        11,
        "ref-34.2 of {} is incomplete",
        kernel.version
    );
    let dir_out = tmp.path().join("out-dir");
    build_ok(&kernel.root, &dir_out, &[], &[]);
    let index = |out: &Path| index_files(&out.join("lib/modules").join(&kernel.version));
    if form == "dir" {
        assert_same_files(
            &format!("{} from a directory", kernel.version),
            &want,
            &index(&dir_out),
        );
        return;
    }
    // Names say nothing: the form is found from the content.
    let archive = tmp.path().join("input.bin");
    fs::write(&archive, packed(&kernel.root, form)).unwrap();
    let out = tmp.path().join("out");
    let run = build_ok(&archive, &out, &["--format", "dir"], &[]);
    assert!(
        run.stderr.is_empty(),
        "{form}: unexpected messages: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_same_files(
        &format!("{} from {form}", kernel.version),
        &want,
        &index(&out),
    );
    // The manifest (input digest included) does not depend on the form.
    assert!(
        fs::read(out.join("kmodidx.manifest.json")).unwrap()
            == fs::read(dir_out.join("kmodidx.manifest.json")).unwrap(),
        "{}: the manifest from {form} differs from the directory's",
        kernel.version
    );
}

/// Every input form (directory, tar, tar.gz, tar.xz, tar.zst, cpio,
/// cpio.zst, concatenated cpio) of each real kernel gives depmod 34.2's
/// index: a module per form, a `#[test]` per kernel.
macro_rules! input_forms {
    ($($module:ident: $form:literal,)*) => {
        $(
            mod $module {
                use super::*;
                for_each_kernel!(|kernel: &Kernel| input_form_matches_kmod34(kernel, $form));
            }
        )*
    };
}

mod input_form_matches_kmod34 {
    use super::*;
    input_forms! {
        dir: "dir",
        tar: "tar",
        tar_gz: "tar.gz",
        tar_xz: "tar.xz",
        tar_zst: "tar.zst",
        cpio: "cpio",
        cpio_zst: "cpio.zst",
        early_cpio: "early.cpio",
    }
}

/// A staged cpio.zst built from a real kernel's directory and from a
/// shuffled tar of it (other mtimes, owners) are the same bytes, and verify.
#[test]
fn staged_real_kernel_is_reproducible_across_inputs() {
    // The smaller package keeps this quick.
    let Some(kernel) = corpus_kernel(CORPUS_KERNELS[0]) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = &kernel.root;
    let mut items = walk(root);
    items.reverse();
    let archive = tmp.path().join("shuffled.tar");
    fs::write(&archive, tar_of(&items, 12345, 4242)).unwrap();
    let a = tmp.path().join("a.cpio.zst");
    let b = tmp.path().join("b.cpio.zst");
    build_ok(root, &a, &["--staged"], &[]);
    build_ok(&archive, &b, &["--staged"], &[("RAYON_NUM_THREADS", "1")]);
    assert_eq!(sha(&a), sha(&b), "staged cpio.zst differs between inputs");
    for out in [&a, &b] {
        let run = kmodidx(&["verify", out.to_str().unwrap()]);
        assert_eq!(
            run.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&run.stdout)
        );
    }
    let run = kmodidx(&[
        "verify",
        "--from",
        archive.to_str().unwrap(),
        a.to_str().unwrap(),
    ]);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stdout)
    );
}

// ---------------------------------------------------------------------------
// Reproducibility of every output form, on the fixture tree.

fn basic() -> PathBuf {
    repo().join("fixtures/trees/basic")
}

/// Digest of an output: the file itself, or every file of a directory with
/// its mode and mtime.
fn output_digest(out: &Path) -> String {
    if out.is_dir() {
        let mut h = sha2::Sha256::new();
        for (path, item) in walk(out) {
            h.update(path.as_bytes());
            if let Item::File(data, mode) = item {
                let mtime = fs::metadata(out.join(&path))
                    .unwrap()
                    .modified()
                    .unwrap()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                h.update(format!(" {mode:o} {mtime} ").as_bytes());
                h.update(&data);
            } else {
                h.update(b" dir");
            }
        }
        kmodidx::util::hex(&h.finalize())
    } else {
        sha(out)
    }
}

/// An input, extra environment and a umask.
type Variant<'a> = (&'a Path, Vec<(&'a str, &'a str)>, Option<&'a str>);

/// Output `form` (staged or not) is the same bytes from the directory twice,
/// from a tar under umask 077 at one thread, and from a shuffled cpio.gz
/// with other mtimes under another TZ, locale and umask; and it verifies.
fn reproducible(form: &str, staged: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let basic_dir = basic();
    let items = walk(&basic());
    let tar = tmp.path().join("basic.tar");
    fs::write(&tar, tar_of(&items, 1, 0)).unwrap();
    let mut shuffled_items = items.clone();
    shuffled_items.reverse();
    shuffled_items.rotate_left(7);
    // Parents after children: extraction creates them implicitly.
    let shuffled = tmp.path().join("shuffled.cpio.gz");
    fs::write(&shuffled, gzip(&cpio_of(&shuffled_items, false, 999_999))).unwrap();

    let mut flags = vec!["--format", form];
    if staged {
        flags.push("--staged");
    }
    let mut digests = Vec::new();
    let variants: Vec<Variant<'_>> = vec![
        (&basic_dir, vec![], None),
        (&basic_dir, vec![], None),
        (&tar, vec![("RAYON_NUM_THREADS", "1")], Some("077")),
        (
            &shuffled,
            vec![("TZ", "Pacific/Kiritimati"), ("LC_ALL", "C.UTF-8")],
            Some("002"),
        ),
    ];
    for (i, (from, env, umask)) in variants.into_iter().enumerate() {
        let out = tmp.path().join(format!("o-{i}.{form}"));
        let mut cmd = match umask {
            Some(mask) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("umask {mask}; exec \"$0\" \"$@\""))
                    .arg(env!("CARGO_BIN_EXE_kmodidx"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_kmodidx")),
        };
        cmd.args([
            "build",
            "--from",
            from.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        cmd.args(&flags);
        cmd.env_remove("SOURCE_DATE_EPOCH");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let run = cmd.output().unwrap();
        assert!(
            run.status.success(),
            "{form}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        digests.push(output_digest(&out));
        let verify = kmodidx(&["verify", out.to_str().unwrap()]);
        assert_eq!(
            verify.status.code(),
            Some(0),
            "{form}: {}",
            String::from_utf8_lossy(&verify.stdout)
        );
    }
    assert!(
        digests.windows(2).all(|w| w[0] == w[1]),
        "{form} (staged: {staged}) is not reproducible: {digests:?}"
    );
}

/// The output of `fixtures/trees/basic` as `form`, with default options and
/// `--mtime 1700000000`, has the pinned digest ([`output_digest`]). Any
/// change to an output byte (the manifest included, which names the tool's
/// version) must change the pin on purpose.
fn pinned(form: &str, sha256: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join(format!("basic.{form}"));
    build_ok(
        &basic(),
        &out,
        &["--format", form, "--mtime", "1700000000"],
        &[],
    );
    assert_eq!(output_digest(&out), sha256, "{form}: the output changed");
}

/// Per output form: reproducible plain and staged, and its pinned digest.
macro_rules! output_forms {
    ($($module:ident: $form:literal => $sha256:literal,)*) => {
        $(
            mod $module {
                #[test]
                fn reproducible() {
                    super::reproducible($form, false);
                }
                #[test]
                fn reproducible_staged() {
                    super::reproducible($form, true);
                }
                #[test]
                fn pinned_sha256() {
                    super::pinned($form, $sha256);
                }
            }
        )*
    };
}

mod output_form {
    use super::*;
    output_forms! {
        dir: "dir" =>
            "4a49c4de7be1fa2af8803377ff79180b98d55139af9f4a3b2cfc576e23970163",
        tar: "tar" =>
            "77cde8580c01dd323cf3721f6f4a978b670a6b5b32247182106b73a821868ed4",
        tar_gz: "tar.gz" =>
            "f3a5b99a8eaf4a5098bc99b577c45a6daba02169b7db2100151c253e4d7061b8",
        tar_xz: "tar.xz" =>
            "73d4a8624ead97c8489337342c39dce498c7aa1a8f1a58e5b9980ed628a61736",
        tar_zst: "tar.zst" =>
            "105069efad1efbf8554e7f84baa791a83db011a297c163fc013b4e6b5c79b673",
        cpio: "cpio" =>
            "21fe8acaa549c63d940b7a40b7c31d56672a0ac2ba8977abf19b370da0dd824c",
        cpio_gz: "cpio.gz" =>
            "b79df191bee0359d23aba01051e6ca198986774d6ea2b5714ed6c3e994ac1ca6",
        cpio_xz: "cpio.xz" =>
            "f541ede58ba0607cc1ba93d8ca411ea33ac195582440b5e68b36460a1edf6b15",
        cpio_zst: "cpio.zst" =>
            "06e8b1f225740448ed07011ec85e11a7f12c8b965ef3cd1fa42dbca58c32b859",
    }
}

#[test]
fn mtime_comes_from_the_option_or_source_date_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a.tar");
    let b = tmp.path().join("b.tar");
    let c = tmp.path().join("c.tar");
    build_ok(&basic(), &a, &["--mtime", "1700000000"], &[]);
    build_ok(&basic(), &b, &[], &[("SOURCE_DATE_EPOCH", "1700000000")]);
    build_ok(&basic(), &c, &[], &[]);
    assert_eq!(sha(&a), sha(&b));
    assert_ne!(sha(&a), sha(&c));
    let mut archive = tar::Archive::new(fs::File::open(&a).unwrap());
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        let h = entry.header();
        assert_eq!(h.mtime().unwrap(), 1_700_000_000);
        assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
        let mode = h.mode().unwrap();
        match h.entry_type() {
            tar::EntryType::Directory => assert_eq!(mode, 0o755),
            _ => assert_eq!(mode, 0o644),
        }
    }
    // Sorted, with parents first.
    let mut archive = tar::Archive::new(fs::File::open(&a).unwrap());
    let names: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert_eq!(names[0], "kmodidx.manifest.json");
    assert!(names.contains(&"lib/modules/".to_string()));
}

// ---------------------------------------------------------------------------
// Merged /usr.

fn merged_usr_tree(dir: &Path) -> PathBuf {
    let root = dir.join("merged");
    fs::create_dir_all(root.join("usr/lib")).unwrap();
    let status = Command::new("cp")
        .arg("-a")
        .arg(basic().join("lib/modules"))
        .arg(root.join("usr/lib/"))
        .status()
        .unwrap();
    assert!(status.success());
    std::os::unix::fs::symlink("usr/lib", root.join("lib")).unwrap();
    root
}

#[test]
fn merged_usr_from_directory_and_archives() {
    let tmp = tempfile::tempdir().unwrap();
    let root = merged_usr_tree(tmp.path());
    let want_dir = tmp.path().join("want");
    build_ok(&basic(), &want_dir, &[], &[]);
    let version = "6.1.0-fixture";
    let want = index_files(&want_dir.join("lib/modules").join(version));

    // The archive names the module files through the `lib` symlink, and
    // the symlink is absolute: both must land in usr/lib/modules.
    let mut items = walk(&root);
    for (path, item) in items.iter_mut() {
        if path == "lib" {
            *item = Item::Symlink(b"/usr/lib".to_vec());
        }
    }
    let mut via_link: Vec<(String, Item)> = items
        .iter()
        .filter(|(p, _)| p == "usr" || p == "usr/lib" || p == "lib")
        .cloned()
        .collect();
    via_link.extend(
        items
            .iter()
            .filter(|(p, _)| p.starts_with("usr/lib/modules"))
            .map(|(p, i)| (p.trim_start_matches("usr/").to_string(), i.clone())),
    );
    let tar = tmp.path().join("merged.tar.zst");
    fs::write(&tar, zstd(&tar_of(&via_link, 0, 0))).unwrap();
    let cpio = tmp.path().join("merged.cpio");
    fs::write(&cpio, cpio_of(&items, false, 0)).unwrap();

    for from in [root.as_path(), tar.as_path(), cpio.as_path()] {
        // The name has dots: --format says it is a directory.
        let out = tmp.path().join(format!(
            "out-{}-dir",
            from.file_name().unwrap().to_string_lossy()
        ));
        build_ok(from, &out, &["--format", "dir"], &[]);
        assert!(
            !out.join("lib").exists(),
            "{}: output has a real lib/ directory",
            from.display()
        );
        assert_same_files(
            &format!("merged /usr from {}", from.display()),
            &want,
            &index_files(&out.join("usr/lib/modules").join(version)),
        );
        let m: serde_json::Value =
            serde_json::from_slice(&fs::read(out.join("kmodidx.manifest.json")).unwrap()).unwrap();
        assert_eq!(m["module_dir"], "usr/lib/modules");
    }
}

// ---------------------------------------------------------------------------
// verify.

fn verify(out: &Path) -> (i32, String) {
    let run = kmodidx(&["verify", out.to_str().unwrap()]);
    (
        run.status.code().unwrap(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        ),
    )
}

#[test]
fn verify_names_changed_missing_and_extra_files_in_a_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    build_ok(&basic(), &out, &["--staged"], &[]);
    assert_eq!(verify(&out).0, 0);
    let idx = out.join("lib/modules/6.1.0-fixture");

    let dep = idx.join("modules.dep");
    let mut bytes = fs::read(&dep).unwrap();
    bytes[3] ^= 1;
    fs::write(&dep, &bytes).unwrap();
    let (code, text) = verify(&out);
    assert_eq!(code, 1);
    assert!(
        text.contains("lib/modules/6.1.0-fixture/modules.dep: differs"),
        "{text}"
    );

    fs::remove_file(idx.join("modules.alias")).unwrap();
    fs::write(idx.join("modules.extra"), b"x").unwrap();
    let (code, text) = verify(&out);
    assert_eq!(code, 1);
    assert!(text.contains("modules.alias: missing"), "{text}");
    assert!(
        text.contains("lib/modules/6.1.0-fixture/modules.extra: extra file"),
        "{text}"
    );

    // A fresh build from the input says the same about the output.
    let run = kmodidx(&[
        "verify",
        "--from",
        basic().to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(1));
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(text.contains("modules.dep: differs"), "{text}");

    // Usage and I/O errors are status 2.
    assert_eq!(verify(&tmp.path().join("nothing")).0, 2);
    assert_eq!(kmodidx(&["verify"]).status.code(), Some(2));
}

/// Rewrites a tar, letting `edit` change, drop or add entries.
fn rewrite_tar(
    from: &Path,
    to: &Path,
    edit: impl Fn(&str, Vec<u8>) -> Option<Vec<u8>>,
    add: Option<(&str, &[u8])>,
) {
    let mut input = tar::Archive::new(fs::File::open(from).unwrap());
    let mut b = tar::Builder::new(Vec::new());
    for entry in input.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        let mut h = entry.header().clone();
        if let Some(data) = edit(&path, data) {
            h.set_size(data.len() as u64);
            h.set_cksum();
            b.append(&h, &data[..]).unwrap();
        }
    }
    if let Some((path, data)) = add {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, path, data).unwrap();
    }
    fs::write(to, b.into_inner().unwrap()).unwrap();
}

#[test]
fn verify_names_changed_missing_and_extra_files_in_a_tar() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.tar");
    build_ok(&basic(), &out, &[], &[]);
    assert_eq!(verify(&out).0, 0);
    let dep = "lib/modules/6.1.0-fixture/modules.dep";

    let flipped = tmp.path().join("flipped.tar");
    rewrite_tar(
        &out,
        &flipped,
        |p, mut d| {
            if p == dep {
                d[0] ^= 0x20;
            }
            Some(d)
        },
        None,
    );
    let (code, text) = verify(&flipped);
    assert_eq!(code, 1);
    assert!(text.contains(&format!("{dep}: differs")), "{text}");

    let removed = tmp.path().join("removed.tar");
    rewrite_tar(
        &out,
        &removed,
        |p, d| (p != dep).then_some(d),
        Some(("lib/modules/6.1.0-fixture/evil", b"x")),
    );
    let (code, text) = verify(&removed);
    assert_eq!(code, 1);
    assert!(text.contains(&format!("{dep}: missing")), "{text}");
    assert!(
        text.contains("lib/modules/6.1.0-fixture/evil: extra file"),
        "{text}"
    );

    // The manifest can live outside the output.
    let bare = tmp.path().join("bare.cpio.xz");
    let manifest = tmp.path().join("bare.json");
    build_ok(
        &basic(),
        &bare,
        &["--manifest", manifest.to_str().unwrap()],
        &[],
    );
    let (code, text) = verify(&bare);
    assert_eq!(code, 2, "{text}");
    let run = kmodidx(&[
        "verify",
        "--manifest",
        manifest.to_str().unwrap(),
        bare.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(0));
}

// ---------------------------------------------------------------------------
// Hostile archives.

fn raw_tar_entry(name: &[u8], kind: tar::EntryType, data: &[u8], link: Option<&[u8]>) -> Vec<u8> {
    let mut h = tar::Header::new_ustar();
    {
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name);
        if let Some(link) = link {
            old.linkname[..link.len()].copy_from_slice(link);
        }
    }
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(data);
    while out.len() % 512 != 0 {
        out.push(0);
    }
    out
}

/// The fixture tree as tar entries, plus `extra` raw entries at the end.
fn basic_tar_with(extra: &[Vec<u8>]) -> Vec<u8> {
    let mut tar = tar_of(&walk(&basic()), 0, 0);
    tar.truncate(tar.len() - 1024);
    for e in extra {
        tar.extend_from_slice(e);
    }
    tar.extend_from_slice(&[0; 1024]);
    tar
}

/// Nothing but `allowed` in `dir`: no temporary or partial files.
fn assert_only(dir: &Path, allowed: &[&str]) {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut allowed: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
    allowed.sort();
    assert_eq!(names, allowed, "unexpected files in {}", dir.display());
}

#[test]
fn path_traversal_is_rejected_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("evil.tar");
    let v = "lib/modules/6.1.0-fixture";
    fs::write(
        &archive,
        basic_tar_with(&[raw_tar_entry(
            format!("{v}/../../../../evil").as_bytes(),
            tar::EntryType::Regular,
            b"x",
            None,
        )]),
    )
    .unwrap();
    for out in ["out", "out.tar.gz", "out.cpio"] {
        let err = build_err(&archive, &tmp.path().join(out), &[]);
        assert!(err.contains("evil.tar"), "{err}");
        assert!(err.contains("../../../../evil"), "{err}");
        assert!(err.contains(".."), "{err}");
    }
    assert_only(tmp.path(), &["evil.tar"]);
    assert!(!tmp.path().parent().unwrap().join("evil").exists());
}

#[test]
fn absolute_paths_stay_inside_and_escaping_symlinks_are_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let v = "lib/modules/6.1.0-fixture";
    let archive = tmp.path().join("links.tar");
    fs::write(
        &archive,
        basic_tar_with(&[
            // Absolute names are taken relative to the archive root.
            raw_tar_entry(
                b"/etc/depmod.d/abs.conf",
                tar::EntryType::Regular,
                b"# ok\n",
                None,
            ),
            // Links that leave the archive, directly or through `..`.
            raw_tar_entry(
                format!("{v}/kernel/up").as_bytes(),
                tar::EntryType::Symlink,
                b"",
                Some(b"../../../../../../../etc"),
            ),
            raw_tar_entry(
                format!("{v}/kernel/loop").as_bytes(),
                tar::EntryType::Symlink,
                b"",
                Some(b"loop"),
            ),
            // Written through an escaping link: must not land anywhere.
            raw_tar_entry(
                format!("{v}/kernel/up/passwd.ko").as_bytes(),
                tar::EntryType::Regular,
                b"root",
                None,
            ),
            // Device nodes and FIFOs are ignored.
            raw_tar_entry(b"dev/null", tar::EntryType::Char, b"", None),
            raw_tar_entry(b"fifo", tar::EntryType::Fifo, b"", None),
        ]),
    )
    .unwrap();
    let out = tmp.path().join("out");
    let run = build_ok(&archive, &out, &[], &[]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("kernel/up") && stderr.contains("outside the archive"),
        "{stderr}"
    );
    assert!(
        stderr.contains("kernel/loop") && stderr.contains("loop"),
        "{stderr}"
    );
    assert!(stderr.contains("passwd.ko"), "{stderr}");
    // The index is still the fixture's.
    let want_dir = tmp.path().join("want");
    build_ok(&basic(), &want_dir, &[], &[]);
    assert_same_files(
        "with hostile links",
        &index_files(&want_dir.join(v)),
        &index_files(&out.join(v)),
    );
    assert_only(tmp.path(), &["links.tar", "out", "want"]);
}

/// A broken archive is an error naming the archive (and, when it is cut
/// or corrupt, the offset), and nothing is written.
fn broken_archive_is_reported(name: &str, bytes: Vec<u8>) {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join(name);
    fs::write(&archive, bytes).unwrap();
    let out = tmp.path().join(format!("{name}.out.tar"));
    let err = build_err(&archive, &out, &[]);
    assert!(err.contains(name), "{name}: {err}");
    if name.starts_with("cut") || name.starts_with("bad") {
        assert!(err.contains("offset"), "{name}: {err}");
    }
    assert!(!out.exists(), "{name}: output written");
    fs::remove_file(&archive).unwrap();
    assert_only(tmp.path(), &[]);
}

fn basic_tar() -> Vec<u8> {
    tar_of(&walk(&basic()), 0, 0)
}

fn basic_crc_cpio() -> Vec<u8> {
    cpio_of(&walk(&basic()), true, 0)
}

mod broken_archive {
    use super::*;

    #[test]
    fn cut_tar() {
        let tar = basic_tar();
        broken_archive_is_reported("cut.tar", tar[..tar.len() / 2 + 100].to_vec());
    }

    #[test]
    fn cut_tar_gz() {
        let g = gzip(&basic_tar());
        broken_archive_is_reported("cut.tar.gz", g[..g.len() / 2].to_vec());
    }

    #[test]
    fn cut_cpio_xz() {
        let x = xz(&basic_crc_cpio());
        broken_archive_is_reported("cut.cpio.xz", x[..x.len() - 40].to_vec());
    }

    #[test]
    fn cut_cpio() {
        let cpio = basic_crc_cpio();
        broken_archive_is_reported("cut.cpio", cpio[..cpio.len() / 3].to_vec());
    }

    #[test]
    fn bad_crc_cpio() {
        // Flip a data byte of the last file: its crc no longer matches.
        let mut c = basic_crc_cpio();
        let at = c.windows(10).rposition(|w| w == b"TRAILER!!!").unwrap() - 120;
        c[at] ^= 0xff;
        broken_archive_is_reported("badcrc.cpio", c);
    }

    #[test]
    fn garbage() {
        broken_archive_is_reported("garbage.bin", b"this is not an archive at all".to_vec());
    }

    #[test]
    fn empty_tar() {
        broken_archive_is_reported("empty.tar", Vec::new());
    }
}

#[test]
fn decompression_bombs_are_capped() {
    let tmp = tempfile::tempdir().unwrap();
    // 64 MiB of zeros inside the module directory, gzip'd to a few KiB.
    let mut items = walk(&basic());
    items.push((
        "lib/modules/6.1.0-fixture/zeros".into(),
        Item::File(vec![0; 64 << 20], 0o644),
    ));
    let bomb = tmp.path().join("bomb.tar.gz");
    fs::write(&bomb, gzip(&tar_of(&items, 0, 0))).unwrap();
    assert!(fs::metadata(&bomb).unwrap().len() < 1 << 20);
    let out = tmp.path().join("out");
    let err = build_err(&bomb, &out, &["--max-input-size", "16"]);
    assert!(
        err.contains("bomb.tar.gz") && err.contains("--max-input-size"),
        "{err}"
    );
    assert!(!out.exists());
    // Raising the limit lets it through.
    build_ok(&bomb, &out, &["--max-input-size", "128"], &[]);

    // A module that decompresses past --max-file-size stops the build,
    // named (the same as from a directory: see tests/it/hostile.rs).
    let mut items = walk(&basic());
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(&vec![0u8; 8 << 20]).unwrap();
    items.push((
        "lib/modules/6.1.0-fixture/kernel/bomb.ko.gz".into(),
        Item::File(e.finish().unwrap(), 0o644),
    ));
    let archive = tmp.path().join("modbomb.cpio");
    fs::write(&archive, cpio_of(&items, false, 0)).unwrap();
    let out = tmp.path().join("out2");
    let stderr = build_err(&archive, &out, &["--max-file-size", "1"]);
    assert!(
        stderr.contains("bomb.ko.gz") && stderr.contains("--max-file-size"),
        "{stderr}"
    );
    assert!(!out.exists());
}

#[test]
fn hard_links_and_duplicates_behave_as_extraction() {
    let tmp = tempfile::tempdir().unwrap();
    let v = "lib/modules/6.1.0-fixture";
    let items = walk(&basic());
    let order = items
        .iter()
        .find(|(p, _)| *p == format!("{v}/modules.order"))
        .unwrap()
        .1
        .clone();
    let Item::File(order_bytes, _) = order else {
        panic!()
    };
    // A tar where modules.order first appears empty, then for real (later
    // wins), and one module arrives as a hard link to a copy elsewhere.
    let module = items
        .iter()
        .find(|(p, _)| p.ends_with(".ko") && p.starts_with(v))
        .unwrap()
        .clone();
    let Item::File(module_bytes, _) = &module.1 else {
        panic!()
    };
    let mut tar = tar_of(
        &items
            .iter()
            .filter(|(p, _)| *p != module.0)
            .cloned()
            .collect::<Vec<_>>(),
        0,
        0,
    );
    tar.truncate(tar.len() - 1024);
    tar.extend(raw_tar_entry(
        format!("{v}/modules.order").as_bytes(),
        tar::EntryType::Regular,
        b"",
        None,
    ));
    tar.extend(raw_tar_entry(
        format!("{v}/modules.order").as_bytes(),
        tar::EntryType::Regular,
        &order_bytes,
        None,
    ));
    tar.extend(raw_tar_entry(
        format!("{v}/kernel/stash.ko").as_bytes(),
        tar::EntryType::Regular,
        module_bytes,
        None,
    ));
    tar.extend(raw_tar_entry(
        module.0.as_bytes(),
        tar::EntryType::Link,
        b"",
        Some(format!("{v}/kernel/stash.ko").as_bytes()),
    ));
    tar.extend_from_slice(&[0; 1024]);
    let archive = tmp.path().join("links.tar");
    fs::write(&archive, &tar).unwrap();
    let out = tmp.path().join("out");
    build_ok(&archive, &out, &[], &[]);
    let deps = fs::read_to_string(out.join(v).join("modules.dep")).unwrap();
    let rel = module.0.trim_start_matches(&format!("{v}/"));
    assert!(deps.contains(&format!("{rel}:")), "{deps}");
    assert!(deps.contains("kernel/stash.ko:"), "{deps}");

    // cpio hard links: the same inode twice, data only on the last.
    let mut w = Vec::new();
    for (i, (path, item)) in items.iter().enumerate() {
        if *path == module.0 {
            continue;
        }
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
    for (name, data) in [
        (module.0.clone(), &[][..]),
        (format!("{v}/kernel/stash.ko"), &module_bytes[..]),
    ] {
        let mut wr = cpio::newc::Builder::new(&name)
            .ino(9999)
            .mode(0o100644)
            .nlink(2)
            .write(w, data.len() as u32);
        wr.write_all(data).unwrap();
        w = wr.finish().unwrap();
    }
    let w = cpio::newc::trailer(w).unwrap();
    let archive = tmp.path().join("links.cpio");
    fs::write(&archive, &w).unwrap();
    let out2 = tmp.path().join("out2");
    build_ok(&archive, &out2, &[], &[]);
    assert_eq!(
        fs::read(out.join(v).join("modules.dep")).unwrap(),
        fs::read(out2.join(v).join("modules.dep")).unwrap()
    );
    // Both names of the module were indexed with real data (the link's
    // symbols made it into modules.symbols the same way).
    assert_eq!(
        fs::read(out.join(v).join("modules.symbols")).unwrap(),
        fs::read(out2.join(v).join("modules.symbols")).unwrap()
    );
    let _ = tree_files(&out);
}

#[test]
fn failed_builds_leave_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    // An existing output directory keeps its contents when a build fails.
    let out = tmp.path().join("existing");
    fs::create_dir(&out).unwrap();
    fs::write(out.join("keep"), b"mine").unwrap();
    let err = build_err(&tmp.path().join("missing-input"), &out, &[]);
    assert!(err.contains("missing-input"), "{err}");
    assert_only(&out, &["keep"]);
    // Refuses to write through a symlink inside an earlier output.
    let out = tmp.path().join("earlier");
    build_ok(&basic(), &out, &[], &[]);
    fs::create_dir(tmp.path().join("elsewhere")).unwrap();
    fs::rename(out.join("lib"), tmp.path().join("moved")).unwrap();
    std::os::unix::fs::symlink(tmp.path().join("elsewhere"), out.join("lib")).unwrap();
    let err = build_err(&basic(), &out, &[]);
    assert!(
        err.contains("lib is not part of an earlier kmodidx output there (it is a symlink)"),
        "{err}"
    );
    assert_only(&tmp.path().join("elsewhere"), &[]);
    assert_only(&out, &["kmodidx.manifest.json", "lib"]);
}
