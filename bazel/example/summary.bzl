"""A stand-in for an image rule: consumes KmodidxIndexInfo."""

load("@kmodidx//bazel:defs.bzl", "KmodidxIndexInfo")

def _index_summary_impl(ctx):
    info = ctx.attr.index[KmodidxIndexInfo]
    summary = ctx.actions.declare_file(ctx.label.name + ".txt")
    ctx.actions.write(summary, "".join([
        "output=%s\n" % info.output.short_path,
        "format=%s\n" % info.format,
        "staged=%s\n" % info.staged,
        "manifest=%s\n" % (info.manifest.short_path if info.manifest else None),
        "kernel_version=%s\n" % info.kernel_version,
        "kernel_version_file=%s\n" % info.kernel_version_file.short_path,
    ]))
    return [DefaultInfo(files = depset([summary, info.kernel_version_file]))]

index_summary = rule(
    implementation = _index_summary_impl,
    attrs = {"index": attr.label(mandatory = True, providers = [KmodidxIndexInfo])},
)
