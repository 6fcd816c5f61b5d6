//! Checking an output (a directory or an archive) against a manifest.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::manifest::{mode_text, Manifest, ManifestError, MANIFEST_NAME, MAX_MANIFEST};
use crate::source::stream::{self, ArchiveError, EntryError, RawEntry, RawKind};
use crate::util::hex;

/// What an output actually holds.
#[derive(Debug, Default)]
pub struct Scan {
    /// Regular files by path: size, mode text, sha256 hex.
    pub files: BTreeMap<String, (u64, String, String)>,
    /// Entries that are neither files nor directories (symlinks, devices).
    pub others: BTreeMap<String, &'static str>,
    /// The bytes of the manifest at the root, if there is one.
    pub manifest: Option<Vec<u8>>,
}

/// Why an output could not be scanned.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A file could not be read (the path and why).
    #[error("{}: {}", path.display(), crate::util::io_reason(source))]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The archive could not be read.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// The manifest is not valid.
    #[error("{}: {source}", path.display())]
    Manifest {
        /// Where it was read from.
        path: PathBuf,
        /// Why it is not valid.
        source: ManifestError,
    },
    /// No manifest in the output, and none given.
    #[error("{}: no {MANIFEST_NAME} at its root (give one with --manifest)", .0.display())]
    NoManifest(PathBuf),
}

/// Reads an output directory or archive.
pub fn scan(out: &Path, max_input_size: u64) -> Result<Scan, VerifyError> {
    let meta = fs::metadata(out).map_err(|source| VerifyError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    let mut scan = Scan::default();
    if meta.is_dir() {
        scan_dir(out, Vec::new(), &mut scan)?;
        return Ok(scan);
    }
    stream::for_each_entry(out, max_input_size, &mut |entry: RawEntry<'_>| {
        let path = normalize(entry.path);
        match entry.kind {
            RawKind::File => {
                let mut hasher = Sha256::new();
                let mut buf = vec![0u8; 1 << 16];
                let mut size = 0u64;
                let mut kept = Vec::new();
                let is_manifest = path == MANIFEST_NAME;
                loop {
                    let n = entry.data.read(&mut buf).map_err(EntryError::Io)?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                    size += n as u64;
                    if is_manifest && size <= MAX_MANIFEST {
                        kept.extend_from_slice(&buf[..n]);
                    }
                }
                if is_manifest {
                    scan.manifest = Some(kept);
                } else {
                    scan.files
                        .insert(path, (size, mode_text(entry.mode), hex(&hasher.finalize())));
                }
            }
            RawKind::Dir => {}
            RawKind::Symlink(_) => {
                scan.others.insert(path, "a symlink");
            }
            RawKind::HardLink(_) => {
                scan.others.insert(path, "a hard link");
            }
            RawKind::Other => {
                scan.others.insert(path, "a special file");
            }
        }
        Ok(())
    })?;
    Ok(scan)
}

fn normalize(raw: &[u8]) -> String {
    let parts: Vec<&[u8]> = raw
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .collect();
    String::from_utf8_lossy(&parts.join(&b'/')).into_owned()
}

fn scan_dir(root: &Path, rel: Vec<u8>, scan: &mut Scan) -> Result<(), VerifyError> {
    let dir = root.join(std::ffi::OsStr::from_bytes(&rel));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| VerifyError::Io { path, source }
    };
    for entry in fs::read_dir(&dir).map_err(io(&dir))? {
        let entry = entry.map_err(io(&dir))?;
        let name = entry.file_name();
        let mut child = rel.clone();
        if !child.is_empty() {
            child.push(b'/');
        }
        child.extend_from_slice(name.as_bytes());
        let path = entry.path();
        let meta = fs::symlink_metadata(&path).map_err(io(&path))?;
        let shown = String::from_utf8_lossy(&child).into_owned();
        if meta.is_dir() {
            scan_dir(root, child, scan)?;
        } else if meta.is_file() {
            let mut file = fs::File::open(&path).map_err(io(&path))?;
            if shown == MANIFEST_NAME {
                let mut bytes = Vec::new();
                (&mut file)
                    .take(MAX_MANIFEST)
                    .read_to_end(&mut bytes)
                    .map_err(io(&path))?;
                scan.manifest = Some(bytes);
                continue;
            }
            let mut hasher = Sha256::new();
            let size = io::copy(&mut file, &mut crate::util::HashWriter(&mut hasher))
                .map_err(io(&path))?;
            scan.files.insert(
                shown,
                (
                    size,
                    mode_text(meta.permissions().mode()),
                    hex(&hasher.finalize()),
                ),
            );
        } else if meta.file_type().is_symlink() {
            scan.others.insert(shown, "a symlink");
        } else {
            scan.others.insert(shown, "a special file");
        }
    }
    Ok(())
}

/// Reads the manifest of a scanned output, or the one at `explicit`.
pub fn load_manifest(
    out: &Path,
    scan: &Scan,
    explicit: Option<&Path>,
) -> Result<Manifest, VerifyError> {
    let (bytes, from) = match explicit {
        Some(path) => (
            fs::read(path).map_err(|source| VerifyError::Io {
                path: path.to_path_buf(),
                source,
            })?,
            path.to_path_buf(),
        ),
        None => match &scan.manifest {
            Some(b) => (b.clone(), out.join(MANIFEST_NAME)),
            None => return Err(VerifyError::NoManifest(out.to_path_buf())),
        },
    };
    Manifest::from_bytes(&bytes).map_err(|source| VerifyError::Manifest { path: from, source })
}

/// One difference between a manifest and an output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file concerned.
    pub path: String,
    /// What is wrong with it.
    pub what: String,
}

/// Compares what the manifest lists with what the output holds.
pub fn compare(manifest: &Manifest, scan: &Scan) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut want: BTreeMap<&str, &super::manifest::ManifestFile> = BTreeMap::new();
    for f in &manifest.files {
        want.insert(f.path.as_str(), f);
    }
    for (path, f) in &want {
        match scan.files.get(*path) {
            None => problems.push(Problem {
                path: path.to_string(),
                what: match scan.others.get(*path) {
                    Some(kind) => format!("expected a regular file, found {kind}"),
                    None => "missing".into(),
                },
            }),
            Some((size, mode, sha)) => {
                let mut diffs = Vec::new();
                if *size != f.size {
                    diffs.push(format!("size {size}, expected {}", f.size));
                }
                if *sha != f.sha256 {
                    diffs.push(format!("sha256 {sha}, expected {}", f.sha256));
                }
                if *mode != f.mode {
                    diffs.push(format!("mode {mode}, expected {}", f.mode));
                }
                if !diffs.is_empty() {
                    problems.push(Problem {
                        path: path.to_string(),
                        what: format!("differs: {}", diffs.join("; ")),
                    });
                }
            }
        }
    }
    for path in scan.files.keys() {
        if !want.contains_key(path.as_str()) {
            problems.push(Problem {
                path: path.clone(),
                what: "extra file, not in the manifest".into(),
            });
        }
    }
    for (path, kind) in &scan.others {
        if !want.contains_key(path.as_str()) {
            problems.push(Problem {
                path: path.clone(),
                what: format!("extra entry ({kind}), not in the manifest"),
            });
        }
    }
    problems.sort_by(|a, b| a.path.cmp(&b.path));
    problems
}
