//! Opening `--from`: a directory, or an archive recognised by its bytes.

use std::path::{Path, PathBuf};

use super::archive::{ArchiveOptions, ArchiveTree};
use super::dir::DirTree;
use super::stream::ArchiveError;
use super::Tree;

/// An opened input.
pub enum Input {
    Dir(DirTree),
    Archive(ArchiveTree),
}

impl Input {
    pub fn tree(&self) -> &dyn Tree {
        match self {
            Input::Dir(t) => t,
            Input::Archive(t) => t,
        }
    }

    /// Notes about ignored entries (archives only).
    pub fn notes(&self) -> &[String] {
        match self {
            Input::Dir(_) => &[],
            Input::Archive(t) => t.notes(),
        }
    }

    pub fn is_dir(&self) -> bool {
        matches!(self, Input::Dir(_))
    }
}

/// Why the input could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{}: {}", path.display(), crate::util::io_reason(source))]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: neither a directory nor a regular file", .0.display())]
    NotFileOrDir(PathBuf),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
}

/// Opens `path`: a directory is read in place, a file is read as a (maybe
/// compressed) tar or cpio archive, whatever its name.
pub fn open_input(path: &Path, opts: &ArchiveOptions) -> Result<Input, InputError> {
    let meta = std::fs::metadata(path).map_err(|source| InputError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.is_dir() {
        Ok(Input::Dir(
            DirTree::new(path).hash_modules(opts.hash_modules),
        ))
    } else if meta.is_file() {
        Ok(Input::Archive(ArchiveTree::open(path, opts)?))
    } else {
        Err(InputError::NotFileOrDir(path.to_path_buf()))
    }
}
