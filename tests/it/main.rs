//! kmodidx's integration tests: one test binary, one module per area, with
//! the helpers they share in [`common`].

#![allow(dead_code)]

mod common;

mod archives;
mod build_checks;
mod build_cli;
mod corpus;
mod depmod_cli;
mod extra_kernels;
mod fixturegen;
mod fixtures;
mod input_digest;
mod robustness;
