//! Where the output goes: a directory or an archive, with a manifest.

pub mod dir;
pub mod manifest;
pub mod report;
pub mod temp;
pub mod verify;
pub mod write;
