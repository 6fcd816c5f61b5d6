//! Opening `--from`: a directory, or an archive recognised by its bytes.

use std::path::{Path, PathBuf};

use super::archive::{ArchiveOptions, ArchiveTree};
use super::dir::DirTree;
use super::stream::ArchiveError;
use super::{ModuleParser, Tree};

/// The input name that means "an archive on standard input".
pub const STDIN: &str = "-";

/// An opened input, its modules parsed into `M` when it was an archive.
pub enum Input<M> {
    /// A directory, read in place.
    Dir(DirTree),
    /// An archive, read once.
    Archive(ArchiveTree<M>),
}

impl<M: Sync> Input<M> {
    /// The input as a tree of files.
    pub fn tree(&self) -> &dyn Tree {
        match self {
            Input::Dir(t) => t,
            Input::Archive(t) => t,
        }
    }
}

impl<M> Input<M> {
    /// Notes about ignored entries (archives only).
    pub fn notes(&self) -> &[String] {
        match self {
            Input::Dir(_) => &[],
            Input::Archive(t) => t.notes(),
        }
    }

    /// Whether the input is a directory.
    pub fn is_dir(&self) -> bool {
        matches!(self, Input::Dir(_))
    }
}

/// Why the input could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The input could not be examined.
    #[error("{}: {}", path.display(), crate::util::io_reason(source))]
    Io {
        /// The input.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Neither a directory nor a regular file (a FIFO, a device...).
    #[error("{}: neither a directory nor a regular file", .0.display())]
    NotFileOrDir(PathBuf),
    /// The archive could not be read.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
}

/// Opens `path`: a directory is read in place, a file is read as a (maybe
/// compressed) tar or cpio archive, whatever its name, with each module
/// handed to `parser`. [`STDIN`] (`-`) reads an archive from standard input.
pub fn open_input<P: ModuleParser>(
    path: &Path,
    opts: &ArchiveOptions,
    parser: &P,
) -> Result<Input<P::Parsed>, InputError> {
    if path.as_os_str() == STDIN {
        let stdin = std::io::stdin().lock();
        let name = Path::new("<stdin>");
        return Ok(Input::Archive(ArchiveTree::from_reader(
            name, stdin, opts, parser,
        )?));
    }
    let meta = std::fs::metadata(path).map_err(|source| InputError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.is_dir() {
        Ok(Input::Dir(
            DirTree::new(path)
                .max_file_size(parser.max_size())
                .follow_links_under(&opts.follow_links_under),
        ))
    } else if meta.is_file() {
        Ok(Input::Archive(ArchiveTree::open(path, opts, parser)?))
    } else {
        Err(InputError::NotFileOrDir(path.to_path_buf()))
    }
}
