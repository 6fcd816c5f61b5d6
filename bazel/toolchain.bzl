"""The kmodidx toolchain rule: wraps a kmodidx binary for toolchain resolution.

`kmodidx_repositories(prebuilt = ...)` (WORKSPACE) and the `kmodidx`
module extension (bzlmod) declare one for you. Declare your own to use a
kmodidx binary built by another rule, for example a rules_rust
`rust_binary`:

    load("@kmodidx//bazel:toolchain.bzl", "kmodidx_toolchain")

    kmodidx_toolchain(name = "kmodidx_impl", kmodidx = "//tools:kmodidx")

    toolchain(
        name = "kmodidx_toolchain",
        toolchain = ":kmodidx_impl",
        toolchain_type = "@kmodidx//bazel:toolchain_type",
    )

and register it (`register_toolchains("//tools:kmodidx_toolchain")`) before
the toolchains kmodidx registers.
"""

def _kmodidx_toolchain_impl(ctx):
    return [platform_common.ToolchainInfo(
        kmodidx = ctx.attr.kmodidx[DefaultInfo].files_to_run,
    )]

kmodidx_toolchain = rule(
    implementation = _kmodidx_toolchain_impl,
    doc = "A kmodidx binary, for the `@kmodidx//bazel:toolchain_type` toolchain type.",
    attrs = {
        "kmodidx": attr.label(
            doc = "The kmodidx executable.",
            mandatory = True,
            executable = True,
            allow_files = True,
            # The tool runs where the action runs: build it (or take it) for
            # the execution platform, not the target.
            cfg = "exec",
        ),
    },
)

def _kmodidx_missing_toolchain_impl(ctx):
    fail(ctx.attr.message)

# Registered last, so that a build without a configured kmodidx binary fails
# with instructions instead of Bazel's generic "no matching toolchains".
kmodidx_missing_toolchain = rule(
    implementation = _kmodidx_missing_toolchain_impl,
    doc = "A toolchain that fails at analysis time with `message`.",
    attrs = {"message": attr.string(mandatory = True)},
)
