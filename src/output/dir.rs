//! Writes index files into a module directory (the depmod drop-in's
//! output), with the staging described in [`super::write`].

use std::fs;
use std::path::Path;

use super::temp;
use super::write::{rename_staged, stage_file, OutputError};
use crate::index::files::IndexFile;

/// Writes `files` into `dir` (created if needed), mode 0644. Every file is
/// first written in full under a temporary name beside its final one, and
/// only then renamed into place; an error before the renames leaves the
/// directory's files as they were.
pub fn write_files(dir: &Path, files: &[IndexFile]) -> Result<(), OutputError> {
    fs::create_dir_all(dir).map_err(|source| OutputError::Io {
        action: "cannot create directory",
        path: dir.to_path_buf(),
        source,
    })?;
    let targets: Vec<_> = files.iter().map(|file| dir.join(file.name)).collect();
    temp::remove_stale_beside(targets.iter().map(|t| t.as_path()));
    let staged = files
        .iter()
        .zip(&targets)
        .map(|(file, target)| stage_file(target, &file.bytes, 0o644, None))
        .collect::<Result<Vec<_>, _>>()?;
    rename_staged(dir, staged)
}
