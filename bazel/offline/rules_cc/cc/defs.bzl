"""A stand-in for @rules_cc//cc:defs.bzl, for Bazel 4.x without network access.

Bazel 4.x resolves toolchains by loading every registered toolchain package,
among them @bazel_tools//tools/jdk, whose BUILD files load these names from
@rules_cc. Bazel would download rules_cc for that, so a build of any rule
that uses a toolchain (kmodidx_index does) fails offline. Give Bazel this
directory instead:

    bazel build --override_repository=rules_cc=/path/to/kmodidx/bazel/offline/rules_cc ...

Each name is Bazel's built-in rule of that name, which is all rules_cc's
defs.bzl of that era wrapped. Nothing of kmodidx uses them. With network
access, or on a newer Bazel, leave @rules_cc alone.
"""

def cc_binary(**attrs):
    native.cc_binary(**attrs)

def cc_import(**attrs):
    native.cc_import(**attrs)

def cc_library(**attrs):
    native.cc_library(**attrs)

def cc_proto_library(**attrs):
    native.cc_proto_library(**attrs)

def cc_test(**attrs):
    native.cc_test(**attrs)

def cc_toolchain(**attrs):
    native.cc_toolchain(**attrs)

def cc_toolchain_suite(**attrs):
    native.cc_toolchain_suite(**attrs)

def objc_library(**attrs):
    native.objc_library(**attrs)
