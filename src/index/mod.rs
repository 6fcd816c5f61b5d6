//! Index encoding: the text files and the binary tries kmod's tools read.

pub mod files;
pub mod trie;

pub use trie::{Layout, Trie};
