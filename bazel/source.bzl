"""WORKSPACE: the crates kmodidx needs to be built from source by rules_rust.

After rules_rust's own setup (rules_rust_dependencies(),
rust_register_toolchains(), crate_universe_dependencies()):

    load("@kmodidx//bazel:source.bzl", "kmodidx_crates")
    kmodidx_crates()
    load("@kmodidx_crates//:defs.bzl", kmodidx_crate_repositories = "crate_repositories")
    kmodidx_crate_repositories()
    load("@kmodidx//bazel:repositories.bzl", "kmodidx_repositories")
    kmodidx_repositories()

The crates are resolved from the committed Cargo.lock (cargo-bazel needs
crates.io, or a mirror, to fetch them).
"""

load("@rules_rust//crate_universe:defs.bzl", "crates_repository")

def kmodidx_crates():
    """Declares @kmodidx_crates, which @kmodidx//:kmodidx takes its dependencies from."""
    crates_repository(
        name = "kmodidx_crates",
        cargo_lockfile = Label("//:Cargo.lock"),
        # Every member of the Cargo workspace, as cargo-bazel requires.
        manifests = [
            Label("//:Cargo.toml"),
            Label("//:fixtures/gen/Cargo.toml"),
        ],
    )
