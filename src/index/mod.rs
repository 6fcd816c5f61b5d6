//! Index encoding: the text files and the binary tries kmod's tools read,
//! and the reader for those tries.

pub mod files;
pub mod fnmatch;
pub mod reader;
pub mod trie;

pub use trie::{Layout, Trie};
