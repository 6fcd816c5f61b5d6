//! kmodidx: a hermetic, reproducible, byte-identical replacement for kmod's
//! `depmod`.
//!
//! The crate is laid out along the pipeline:
//!
//! * [`source`]: where the input comes from (a directory tree);
//! * [`module`]: module metadata (decompression, ELF, modinfo);
//! * [`depmod`]: depmod's logic (configuration, discovery, ordering,
//!   dependency resolution);
//! * [`index`]: encoding of the text files and binary tries;
//! * [`output`]: where the result goes (a staged directory).

pub mod depmod;
pub mod index;
pub mod module;
pub mod output;
pub mod source;
pub mod util;
