"""bzlmod: the `kmodidx` module extension (see MODULE.bazel).

    kmodidx = use_extension("@kmodidx//bazel:extensions.bzl", "kmodidx")
    kmodidx.prebuilt(path = "/abs/path/to/kmodidx")

or, for a kmodidx that Bazel builds (for example with rules_rust):

    kmodidx.tool(label = "//tools:kmodidx")

The root module's tag wins. Without any, kmodidx_index targets fail at
analysis with instructions.
"""

load(":repositories.bzl", "kmodidx_tool_repository")

_prebuilt = tag_class(
    doc = "Use the kmodidx binary at `path` (absolute, on the machine running Bazel).",
    attrs = {"path": attr.string(mandatory = True)},
)

_tool = tag_class(
    doc = "Use the kmodidx binary this label builds, built for the execution platform.",
    attrs = {"label": attr.label(mandatory = True)},
)

def _kmodidx_impl(mctx):
    # mctx.modules lists the root module first: its first tag wins.
    for mod in mctx.modules:
        for tag in mod.tags.prebuilt:
            kmodidx_tool_repository(name = "kmodidx_tool", prebuilt = tag.path)
            return
        for tag in mod.tags.tool:
            kmodidx_tool_repository(name = "kmodidx_tool", tool = str(tag.label))
            return
    kmodidx_tool_repository(name = "kmodidx_tool")

kmodidx = module_extension(
    implementation = _kmodidx_impl,
    tag_classes = {"prebuilt": _prebuilt, "tool": _tool},
)
