"""Public API of the kmodidx Bazel rules.

    load("@kmodidx//bazel:defs.bzl", "kmodidx_index")
    kmodidx_index(name = "idx", src = "rootfs.tar", out = "idx.tar")

The kmodidx binary comes from `kmodidx_repositories` (WORKSPACE, see
repositories.bzl) or the `kmodidx` module extension (bzlmod, see
extensions.bzl).
"""

load(
    "//bazel/private:index.bzl",
    _KmodidxIndexInfo = "KmodidxIndexInfo",
    _kmodidx_index = "kmodidx_index",
    _kmodidx_index_rule = "kmodidx_index_rule",
)

KmodidxIndexInfo = _KmodidxIndexInfo
kmodidx_index = _kmodidx_index
kmodidx_index_rule = _kmodidx_index_rule
