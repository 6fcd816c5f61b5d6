"""Public API of the kmodidx Bazel rules.

    load("@kmodidx//bazel:defs.bzl", "kmodidx_index")
    kmodidx_index(name = "idx", src = "rootfs.tar", out = "idx.tar")
"""

load(
    "//bazel/private:index.bzl",
    _KmodidxIndexInfo = "KmodidxIndexInfo",
    _kmodidx_index = "kmodidx_index",
    _kmodidx_index_rule = "kmodidx_index_rule",
)
load("//bazel:toolchain.bzl", _kmodidx_toolchain = "kmodidx_toolchain")

KmodidxIndexInfo = _KmodidxIndexInfo
kmodidx_index = _kmodidx_index
kmodidx_index_rule = _kmodidx_index_rule
kmodidx_toolchain = _kmodidx_toolchain
