//! Temporary names beside an output, and the removal of those a killed run
//! left behind.
//!
//! Every temporary file or directory kmodidx makes beside a target `NAME`
//! is called `.NAME.kmodidx-tmp-PID-RANDOM`: `PID` is the process that
//! made it, `RANDOM` six letters or digits from the `tempfile` crate, so
//! two runs never collide. A run that is killed (`kill -9`, a power cut)
//! cannot remove its temporaries, so before making one, a run removes
//! those beside the same target whose process no longer exists. Nothing
//! else is touched: only entries of exactly this pattern, only for the
//! target being written, only in its directory.
//!
//! "No longer exists" is asked of the kernel (`kill(PID, 0)`), so it is
//! judged in this run's PID namespace. A run in another namespace writing
//! the same target at the same moment could lose its temporary; it then
//! fails cleanly (its rename finds nothing), and two concurrent writers of
//! one target race in any case.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// What follows `.NAME` in every temporary name.
const TAG: &[u8] = b".kmodidx-tmp-";
/// Random characters at the end of every temporary name.
const RANDOM_LEN: usize = 6;

/// The directory a target lives in (`.` for a bare name).
pub fn parent_dir(target: &Path) -> PathBuf {
    match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn target_name(target: &Path) -> OsString {
    target
        .file_name()
        .map_or_else(|| OsString::from("out"), OsStr::to_os_string)
}

fn builder(prefix: &OsStr) -> tempfile::Builder<'_, 'static> {
    let mut b = tempfile::Builder::new();
    b.prefix(prefix).suffix("").rand_bytes(RANDOM_LEN);
    b
}

fn prefix(target: &Path) -> OsString {
    let mut p = OsString::from(".");
    p.push(target_name(target));
    p.push(OsStr::from_bytes(TAG));
    p.push(format!("{}-", std::process::id()));
    p
}

/// A new temporary file beside `target`, after removing the stale ones
/// of `target`.
pub fn file_beside(target: &Path) -> io::Result<tempfile::NamedTempFile> {
    let dir = parent_dir(target);
    remove_stale(&dir, [target_name(target).as_os_str()]);
    builder(&prefix(target)).tempfile_in(dir)
}

/// A new temporary directory beside `target`, after removing the stale
/// ones of `target`.
pub fn dir_beside(target: &Path) -> io::Result<tempfile::TempDir> {
    let dir = parent_dir(target);
    remove_stale(&dir, [target_name(target).as_os_str()]);
    builder(&prefix(target)).tempdir_in(dir)
}

/// A new temporary file beside `target`, without looking for stale ones
/// (the caller has, with [`remove_stale_beside`]).
pub fn file_beside_unchecked(target: &Path) -> io::Result<tempfile::NamedTempFile> {
    builder(&prefix(target)).tempfile_in(parent_dir(target))
}

/// Removes the stale temporaries of every target in `targets`, reading
/// each directory once.
pub fn remove_stale_beside<'a>(targets: impl IntoIterator<Item = &'a Path>) {
    let mut by_dir: std::collections::BTreeMap<PathBuf, BTreeSet<OsString>> = Default::default();
    for t in targets {
        by_dir
            .entry(parent_dir(t))
            .or_default()
            .insert(target_name(t));
    }
    for (dir, names) in &by_dir {
        remove_stale(dir, names.iter().map(OsString::as_os_str));
    }
}

/// Removes, from `dir`, the temporaries of the targets `names` whose
/// process is gone. Best effort: whatever cannot be read or removed stays.
fn remove_stale<'a>(dir: &Path, names: impl IntoIterator<Item = &'a OsStr>) {
    let names: BTreeSet<&[u8]> = names.into_iter().map(OsStr::as_bytes).collect();
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let own = std::process::id();
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some((name, pid)) = parse(file_name.as_bytes()) else {
            continue;
        };
        // A temporary carrying this run's own PID was left by an earlier
        // process with the same PID (this run makes a target's temporary
        // only after this cleanup).
        if !names.contains(name) || (pid != own && alive(pid)) {
            continue;
        }
        let path = entry.path();
        let _ = match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(&path),
            Ok(_) => fs::remove_file(&path),
            Err(_) => continue,
        };
    }
}

/// Splits `.NAME.kmodidx-tmp-PID-RANDOM` into `NAME` and `PID`.
fn parse(entry: &[u8]) -> Option<(&[u8], u32)> {
    let rest = entry.strip_prefix(b".")?;
    let (head, random) = rest.split_at(rest.len().checked_sub(RANDOM_LEN)?);
    if !random.iter().all(u8::is_ascii_alphanumeric) {
        return None;
    }
    let head = head.strip_suffix(b"-")?;
    let digits = head.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    let (head, pid) = head.split_at(head.len() - digits);
    let pid: u32 = std::str::from_utf8(pid).ok()?.parse().ok()?;
    let name = head.strip_suffix(TAG)?;
    (!name.is_empty()).then_some((name, pid))
}

/// Whether process `pid` exists (signal 0 checks without sending; a
/// process of another user answers "not permitted", which means it is
/// there).
fn alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return true;
    }
    // SAFETY: signal 0 sends nothing; kill only reads its arguments.
    if unsafe { libc::kill(pid, 0) } == 0 {
        return true;
    }
    io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_the_exact_pattern() {
        assert_eq!(
            parse(b".out.tar.kmodidx-tmp-1234-aZ09xy"),
            Some((&b"out.tar"[..], 1234))
        );
        assert_eq!(
            parse(b".a.kmodidx-tmp-1.kmodidx-tmp-7-abcdef"),
            Some((&b"a.kmodidx-tmp-1"[..], 7))
        );
        for other in [
            &b"out.kmodidx-tmp-1234-abcdef"[..],
            b".out.kmodidx-tmp-1234-abcde",
            b".out.kmodidx-tmp-1234-abcd-f",
            b".out.kmodidx-tmp--abcdef",
            b".out.kmodidx-tmp-12x4-abcdef",
            b"..kmodidx-tmp-1234-abcdef",
            b".out.ABCDEF.kmodidx-tmp",
            b".out.kmodidx-tmp-99999999999-abcdef",
        ] {
            assert_eq!(parse(other), None, "{}", String::from_utf8_lossy(other));
        }
    }

    #[test]
    fn names_carry_the_pid_and_parse_back() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("idx.tar");
        let temp = file_beside(&target).unwrap();
        let name = temp.path().file_name().unwrap().as_bytes().to_vec();
        assert_eq!(parse(&name), Some((&b"idx.tar"[..], std::process::id())));
    }

    #[test]
    fn removes_only_dead_processes_temporaries_of_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out");
        // PID 2^22 + 1 is above Linux's largest PID: never a process.
        let dead = 4_194_305;
        // This process's own PID: an earlier process's leftover.
        let own = std::process::id();
        let keep = [
            format!(".other.kmodidx-tmp-{dead}-abcdef"),
            format!(".out.kmodidx-tmp-{}-abcdef", parent_pid()),
            format!(".out.{dead}.kmodidx-tmp"),
            "out".to_string(),
        ];
        let gone = [
            format!(".out.kmodidx-tmp-{dead}-abcdef"),
            format!(".out.kmodidx-tmp-{own}-ghijkl"),
        ];
        for name in keep.iter().chain(&gone) {
            fs::write(dir.path().join(name), b"x").unwrap();
        }
        fs::create_dir(dir.path().join(format!(".out.kmodidx-tmp-{dead}-dirdir"))).unwrap();
        fs::write(
            dir.path()
                .join(format!(".out.kmodidx-tmp-{dead}-dirdir"))
                .join("inner"),
            b"x",
        )
        .unwrap();
        remove_stale_beside([target.as_path()]);
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut want: Vec<String> = keep.to_vec();
        want.sort();
        assert_eq!(left, want);
    }

    fn parent_pid() -> u32 {
        std::os::unix::process::parent_id()
    }
}
