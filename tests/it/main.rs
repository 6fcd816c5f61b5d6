//! kmodidx's integration tests: one test binary, one module per area, with
//! the helpers they share in [`common`].

#![allow(dead_code)]

mod common;

mod archives;
mod bazel;
mod build_checks;
mod build_cli;
mod check;
mod closure;
mod contrib;
mod corpus;
mod depmod_cli;
mod docs;
mod extra_kernels;
mod fixturegen;
mod fixtures;
mod fuzz_regressions;
mod hostile;
mod hostile_output;
mod input_digest;
mod nix;
mod query;
mod robustness;
