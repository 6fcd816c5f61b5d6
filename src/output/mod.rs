//! Where the output goes.

pub mod dir;
