//! Writes index files into a directory, all or nothing.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::index::files::IndexFile;

/// Why the output could not be written.
#[derive(Debug, thiserror::Error)]
#[error("{action} {}: {source}", path.display())]
pub struct WriteError {
    pub action: &'static str,
    pub path: PathBuf,
    pub source: io::Error,
}

/// Writes `files` into `dir` (created if needed). Every file is first written
/// in full under a temporary name and only then renamed into place, so an
/// error leaves no partially written index behind.
pub fn write_files(dir: &Path, files: &[IndexFile]) -> Result<(), WriteError> {
    let err = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| WriteError {
            action,
            path,
            source,
        }
    };
    fs::create_dir_all(dir).map_err(err("cannot create directory", dir))?;

    let mut staged: Vec<(PathBuf, PathBuf)> = Vec::new();
    let result = (|| {
        for file in files {
            let final_path = dir.join(file.name);
            let temp_path = dir.join(format!(".{}.kmodidx-tmp", file.name));
            staged.push((temp_path.clone(), final_path));
            let mut out = fs::File::create(&temp_path).map_err(err("cannot create", &temp_path))?;
            out.write_all(&file.bytes)
                .map_err(err("cannot write", &temp_path))?;
            set_mode(&temp_path, 0o644).map_err(err("cannot set permissions of", &temp_path))?;
        }
        for (temp, final_path) in &staged {
            fs::rename(temp, final_path).map_err(err("cannot rename into", final_path))?;
        }
        Ok(())
    })();
    if result.is_err() {
        for (temp, _) in &staged {
            let _ = fs::remove_file(temp);
        }
    }
    result
}

fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}
