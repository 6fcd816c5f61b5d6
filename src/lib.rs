//! kmodidx: a hermetic, reproducible, byte-identical replacement for kmod's
//! `depmod`.
//!
//! # One module's way through
//!
//! Take `lib/modules/6.1.0/kernel/fs/ext4.ko.xz` inside `rootfs.tar.zst`.
//!
//! 1. [`build::build`] opens the input with [`source::open_input`]. The
//!    archive is read once ([`source::stream`] undoes the zstd layer,
//!    recognised by its magic as a [`compress::Compression`], and walks the
//!    tar entries as [`source::stream::RawEntry`]s). The entry lies under a
//!    module directory and ends in a [`layout::MODULE_EXTENSIONS`] ending, so
//!    its bytes go to a worker running [`module::MetaParser`], a
//!    [`source::ModuleParser`]: [`module::decompress`] undoes the xz layer
//!    and [`module::elf::ElfModule`] reads the tables depmod needs into a
//!    small [`module::ModuleMeta`] (exports, imports with their CRCs,
//!    aliases, soft and weak dependencies) and, for the manifest, the
//!    SHA-256 of that metadata ([`module::ModuleMeta::metadata_digest`]).
//!    The bytes are dropped; the [`source::ArchiveTree`] keeps the metadata
//!    under the file's path.
//! 2. [`build::locate`] finds `lib/modules/6.1.0`;
//!    [`depmod::config::load`] reads the depmod.d files inside the input.
//! 3. [`depmod::run`] walks the module directory
//!    ([`depmod::discover::walk_modules`]) and names the file `ext4`
//!    ([`layout::modname`]) as a [`depmod::discover::Found`]; orders the
//!    modules as kmod does ([`depmod::order`], [`depmod::hash_order`]); fetches
//!    the stored metadata through a [`module::ModuleSource`] (from a
//!    directory, the walk hands the module files to the worker threads,
//!    sixteen at a time, as it meets them); builds the symbol table and
//!    resolves every needed symbol to its provider ([`depmod::resolve`]), so
//!    `ext4` needs `jbd2` and `mbcache`; and hands an
//!    [`index::files::IndexedModule`] per module to [`index::files`]: the
//!    files made from the modules' own metadata, such as `modules.alias.bin`,
//!    and those made from the symbol table are rendered while dependencies
//!    are resolved ([`index::files::render_unresolved`],
//!    [`index::files::render_symbol_files`]), the rest after it
//!    ([`index::files::render_resolved`]).
//! 4. [`index::files`] writes the `modules.dep` line `kernel/fs/ext4.ko.xz:
//!    kernel/fs/jbd2/jbd2.ko.xz kernel/fs/mbcache.ko.xz` and inserts `ext4`
//!    into an [`index::Trie`] whose encoding is `modules.dep.bin`; each file
//!    is an [`index::files::IndexFile`]. Anything worth telling the user on
//!    the way is a [`diag::Diagnostic`], data with kmod's words as its
//!    `Display`.
//! 5. [`build::build`] plans the output ([`output::write::Plan`] of
//!    [`output::write::PlannedFile`]s) and its [`output::manifest::Manifest`],
//!    whose input digest lists `ext4`'s metadata digest beside its path;
//!    [`build::write_to_path`] writes the `.bin` bytes into a directory or a
//!    reproducible tar or cpio archive ([`output::write`]).
//!
//! # Layers
//!
//! Imports point down this list, never up: [`util`], [`diag`], [`layout`]
//! and [`compress`] (facts shared by all); [`source`] (where the input
//! comes from: the [`source::Tree`] trait, directories, streamed
//! archives); [`module`] (module metadata); [`index`] (the text files and
//! binary tries); [`depmod`] (kmod's logic: configuration, discovery,
//! ordering, resolution, driving the index); [`output`] (directories,
//! archives, manifest, report, verification); [`build`] (the whole
//! hermetic pipeline), which the command line and future front ends use;
//! [`query`] (offline answers on an image: modprobe's lookups and
//! dependency walk replayed on its index, `why`, `diff`), above `build`,
//! which it uses to index an image that has no index; and [`check`] (the
//! consistency check of a tree against a fresh build), also above `build`.
//! The library never prints; `src/cli` formats everything the user sees.

#![warn(missing_docs)]

pub mod build;
pub mod check;
pub mod closure;
pub mod compress;
pub mod depmod;
pub mod diag;
pub mod index;
pub mod layout;
pub mod module;
pub mod output;
pub mod query;
pub mod source;
pub mod util;
