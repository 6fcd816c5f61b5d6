"""A stand-in for @rules_java//java:defs.bzl, only for Bazel 4.x without network access.

Why, and how to use it: bazel/offline/README.md. Each name is Bazel's built-in rule.
"""

java_binary = native.java_binary
java_import = native.java_import
java_library = native.java_library
java_runtime = native.java_runtime
java_test = native.java_test
java_toolchain = native.java_toolchain
