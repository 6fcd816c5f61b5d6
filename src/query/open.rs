//! Opening an image to query: a tree, an archive or a `build` output, with
//! its own index, or indexed in memory when it has none.

use std::path::Path;

use super::{Image, ImageParts, INDEX_FILES, MAX_INDEX_FILE_LEN};
use crate::build::{self, locate, BuildError, Limits, LocateError, Located};
use crate::diag::Diagnostic;
use crate::index::reader::IndexReadError;
use crate::source::{join, EntryKind};

/// How to open an image.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// The kernel to query; needed when the image holds several.
    pub kernel_version: Option<String>,
    /// The module directory inside the image, such as `lib/modules`;
    /// detected when `None` (as by [`build::locate`]).
    pub module_dir: Option<String>,
    /// The kernel command line to assume (see [`ImageParts`]).
    pub kernel_cmdline: Vec<u8>,
    /// Size limits for archives and modules.
    pub limits: Limits,
}

/// An opened image, with what indexing it in memory had to say.
pub struct Opened {
    /// The image.
    pub image: Image,
    /// Whether kmodidx indexed it (it had no `modules.dep.bin`).
    pub indexed_in_memory: bool,
    /// The messages of that indexing (depmod's warnings about the tree).
    pub diagnostics: Vec<Diagnostic>,
}

/// Why an image could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The input could not be read, or indexing it failed.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// No (single) kernel in the image.
    #[error(transparent)]
    Locate(#[from] LocateError),
    /// An index file could not be read.
    #[error("{path}: {reason}")]
    Read {
        /// The file, as the input names it.
        path: String,
        /// Why.
        reason: String,
    },
    /// An index file larger than any index.
    #[error("{path}: {len} bytes is larger than any index file ({MAX_INDEX_FILE_LEN})")]
    TooLarge {
        /// The file, as the input names it.
        path: String,
        /// Its size.
        len: usize,
    },
    /// A binary index is corrupt.
    #[error(transparent)]
    Index(#[from] IndexReadError),
}

/// Opens the image at `from`. Its own index files are used when its module
/// directory has a `modules.dep.bin`; otherwise it is indexed in memory
/// first, exactly as [`build::build`] indexes it (kmod 34.2's format).
pub fn open(from: &Path, opts: &OpenOptions) -> Result<Opened, OpenError> {
    let mut build_opts = build::Options {
        kernel_version: opts.kernel_version.clone(),
        module_dir: opts.module_dir.clone(),
        limits: opts.limits,
        input_digest: build::DigestScope::Off,
        ..build::Options::default()
    };
    let input = build::open(from, &build_opts)?;
    let Located {
        module_dir,
        kernel_version,
    } = locate(
        input.tree(),
        from,
        opts.module_dir.as_deref(),
        opts.kernel_version.as_deref(),
    )?;
    let dir = join(&[module_dir.as_bytes(), kernel_version.as_bytes()]);
    let origin = input.tree().display(&dir);
    let has_index = input.tree().kind(&join(&[&dir, b"modules.dep.bin"])) == Some(EntryKind::File);
    let (input, files, diagnostics) = if has_index {
        let mut files = Vec::new();
        for name in INDEX_FILES {
            let path = join(&[&dir, name.as_bytes()]);
            if input.tree().kind(&path) != Some(EntryKind::File) {
                continue;
            }
            let shown = || input.tree().display(&path);
            let bytes = input.tree().read(&path).map_err(|e| OpenError::Read {
                path: shown(),
                reason: crate::util::io_reason(&e),
            })?;
            if bytes.len() > MAX_INDEX_FILE_LEN {
                return Err(OpenError::TooLarge {
                    path: shown(),
                    len: bytes.len(),
                });
            }
            files.push((name.to_string(), bytes.to_vec()));
        }
        (input, files, Vec::new())
    } else {
        build_opts.kernel_version = Some(kernel_version.clone());
        build_opts.module_dir = Some(module_dir.clone());
        let built = build::build_opened(from, input, &build_opts)?;
        let files = built
            .files
            .iter()
            .filter(|f| INDEX_FILES.contains(&f.name))
            .map(|f| (f.name.to_string(), f.bytes.clone()))
            .collect();
        (built.input, files, built.diagnostics)
    };
    let image = Image::from_parts(ImageParts {
        input: Some(input),
        module_dir,
        kernel_version,
        origin,
        files,
        kernel_cmdline: opts.kernel_cmdline.clone(),
        max_module_size: opts.limits.max_module_size,
    })?;
    Ok(Opened {
        image,
        indexed_in_memory: !has_index,
        diagnostics,
    })
}
