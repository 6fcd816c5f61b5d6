"""bzlmod: the `kmodidx` module extension (see MODULE.bazel).

    kmodidx = use_extension("@kmodidx//bazel:extensions.bzl", "kmodidx")
    kmodidx.prebuilt(path = "/abs/path/to/kmodidx")

The root module's tag wins. Without any, the toolchain fails at analysis
with instructions; register your own kmodidx_toolchain (for example one that
wraps a rules_rust build of kmodidx) to build from source.
"""

load(":repositories.bzl", "kmodidx_toolchains_repository")

_prebuilt = tag_class(
    doc = "Use the kmodidx binary at `path` (absolute, on the machine running Bazel).",
    attrs = {"path": attr.string(mandatory = True)},
)

def _kmodidx_impl(mctx):
    path = ""

    # mctx.modules lists the root module first.
    for mod in mctx.modules:
        for tag in mod.tags.prebuilt:
            if not path:
                path = tag.path
    kmodidx_toolchains_repository(name = "kmodidx_toolchains", prebuilt = path)

kmodidx = module_extension(
    implementation = _kmodidx_impl,
    tag_classes = {"prebuilt": _prebuilt},
)
