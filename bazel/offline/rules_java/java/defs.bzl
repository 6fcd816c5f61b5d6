"""A stand-in for @rules_java//java:defs.bzl, for Bazel 4.x without network access.

Bazel 4.x resolves toolchains by loading every registered toolchain package,
among them @bazel_tools//tools/jdk, whose BUILD files load these names from
@rules_java (and @rules_cc). Bazel would download rules_java for that, so a
build of any rule that uses a toolchain (kmodidx_index does) fails offline.
Give Bazel this directory instead (see ../README.md):

    bazel build --override_repository=rules_java=/path/to/kmodidx/bazel/offline/rules_java ...

Each name is Bazel's built-in rule of that name, which is all rules_java's
defs.bzl of that era wrapped. Nothing of kmodidx uses them.
"""

def java_binary(**attrs):
    native.java_binary(**attrs)

def java_import(**attrs):
    native.java_import(**attrs)

def java_library(**attrs):
    native.java_library(**attrs)

def java_runtime(**attrs):
    native.java_runtime(**attrs)

def java_test(**attrs):
    native.java_test(**attrs)

def java_toolchain(**attrs):
    native.java_toolchain(**attrs)
