"""A stand-in for @rules_cc//cc:defs.bzl, only for Bazel 4.x without network access.

Why, and how to use it: bazel/offline/README.md. Each name is Bazel's built-in rule.
"""

cc_binary = native.cc_binary
cc_import = native.cc_import
cc_library = native.cc_library
cc_proto_library = native.cc_proto_library
cc_test = native.cc_test
cc_toolchain = native.cc_toolchain
cc_toolchain_suite = native.cc_toolchain_suite
objc_library = native.objc_library
