"""A stand-in for the kmodidx binary when none is configured."""

def _kmodidx_missing_impl(ctx):
    fail(ctx.attr.message)

# @kmodidx_tool//:kmodidx when no binary is configured (a bzlmod module
# extension without a tag): analysing a kmodidx_index target then fails
# with instructions instead of an error about a missing file.
kmodidx_missing = rule(
    implementation = _kmodidx_missing_impl,
    doc = "Fails at analysis time with `message`.",
    attrs = {"message": attr.string(mandatory = True)},
)
