"""The kmodidx_index rule. Load it from @kmodidx//bazel:defs.bzl."""

# Written by kmodidx_repositories (WORKSPACE) or the kmodidx module
# extension (bzlmod): the constraints a prebuilt binary puts on the
# execution platform (its OS and CPU), none for a binary Bazel builds.
load("@kmodidx_tool//:exec.bzl", "EXEC_COMPATIBLE_WITH")

KmodidxIndexInfo = provider(
    doc = "What a kmodidx_index target produced, for image rules to consume.",
    fields = {
        "output": "File: the index, an archive or a directory (tree artifact) as `out` names it.",
        "format": "string: the output form: dir, tar, tar.gz, tar.xz, tar.zst, cpio, cpio.gz, cpio.xz or cpio.zst.",
        "manifest": "File or None: the manifest, when written beside the output (`manifest = True` or a file name); None when it is inside the output (the default) or not written (`manifest = False`).",
        "kernel_version": "string or None: the kernel version, when the `kernel_version` attribute gives it (known at analysis time); None when kmodidx finds it in the input.",
        "kernel_version_file": "File: the indexed kernel version followed by a newline. Always present: the only way to learn a version found in the input.",
        "staged": "bool: whether the output also holds the module tree (`staged = True`).",
    },
)

# `out` suffix -> kmodidx --format, longest suffixes first. Any other name is
# a directory, as with `kmodidx build --out`.
_ARCHIVE_FORMS = [
    (".tar.gz", "tar.gz"),
    (".tgz", "tar.gz"),
    (".tar.xz", "tar.xz"),
    (".tar.zst", "tar.zst"),
    (".tar", "tar"),
    (".cpio.gz", "cpio.gz"),
    (".cpio.xz", "cpio.xz"),
    (".cpio.zst", "cpio.zst"),
    (".cpio", "cpio"),
]

# A local sandbox presents every file of a tree artifact as a symlink to its
# real path (outside the sandbox), and kmodidx resolves absolute links
# inside the input, as an image would: the tree would read as dangling
# links. Unsandboxed, the action sees the real tree. This gives up nothing:
# kmodidx reads only under --from and the files named on its command line,
# all declared inputs. Remote execution and the caches are unaffected
# (remote executors get real files). A source directory is a single link in
# the sandbox (is_directory is False for it) and stays sandboxed.
_DIRECTORY_INPUT = {"no-sandbox": "1"}

def output_form(name):
    """The kmodidx output form a file name asks for ("dir" when none)."""
    for suffix, form in _ARCHIVE_FORMS:
        if name.endswith(suffix) and len(name) > len(suffix):
            return form
    return "dir"

def _kmodidx_index_impl(ctx):
    if ctx.file.symvers and ctx.file.system_map:
        fail("symvers and system_map are exclusive: give one (Module.symvers also checks CRCs)")
    for spec in ctx.attr.modules:
        if not spec or spec.startswith("@"):
            fail("modules: %r: give module names or aliases (a list file would be an undeclared input)" % spec)

    form = output_form(ctx.attr.out)
    if form == "dir":
        out = ctx.actions.declare_directory(ctx.attr.out)
    else:
        out = ctx.actions.declare_file(ctx.attr.out)
    version_file = ctx.actions.declare_file(ctx.label.name + ".kernel_version")
    manifest = ctx.outputs.manifest_file

    args = ctx.actions.args()
    args.add("build")
    # Paths, not Files: a directory (tree artifact) names itself here; Args
    # would refuse it, since a directory File may expand to its contents.
    args.add("--from", ctx.file.src.path)
    args.add("--out", out.path)
    args.add("--format", form)

    # Explicit, so that the bytes depend on the attributes and inputs only,
    # never on a SOURCE_DATE_EPOCH (kmodidx's default source).
    args.add("--mtime", str(ctx.attr.mtime))
    args.add("--compat", ctx.attr.compat)
    args.add("--kernel-version-file", version_file)
    if ctx.attr.kernel_version:
        args.add("--kernel-version", ctx.attr.kernel_version)
    if ctx.attr.staged:
        args.add("--staged")
    if ctx.attr.strict:
        args.add("--strict")
    if ctx.file.symvers:
        args.add("--symvers", ctx.file.symvers)
    if ctx.file.system_map:
        args.add("--system-map", ctx.file.system_map)
    for config in ctx.files.config:
        args.add("--config", config.path)
    for spec in ctx.attr.modules:
        args.add("--modules=" + spec)
    if manifest:
        args.add("--manifest", manifest)
    elif ctx.attr.no_manifest:
        args.add("--no-manifest")

    inputs = [ctx.file.src] + ctx.files.config
    for f in [ctx.file.symvers, ctx.file.system_map]:
        if f:
            inputs.append(f)
    outputs = [out, version_file] + ([manifest] if manifest else [])

    ctx.actions.run(
        # files_to_run, not the File: a binary built by Bazel brings its
        # runfiles along.
        executable = ctx.attr._kmodidx[DefaultInfo].files_to_run,
        arguments = [args],
        inputs = inputs,
        outputs = outputs,
        mnemonic = "KmodidxIndex",
        progress_message = "Indexing kernel modules of %s into %s" % (ctx.file.src.short_path, out.short_path),
        # No environment at all: nothing from the host reaches the action
        # (use_default_shell_env stays off).
        env = {},
        execution_requirements = _DIRECTORY_INPUT if ctx.file.src.is_directory else {},
    )

    return [
        # Only the index, so the target works as `src` of another
        # kmodidx_index and in $(location ...).
        DefaultInfo(files = depset([out])),
        OutputGroupInfo(
            kernel_version_file = depset([version_file]),
            manifest = depset([manifest] if manifest else []),
        ),
        KmodidxIndexInfo(
            output = out,
            format = form,
            manifest = manifest,
            kernel_version = ctx.attr.kernel_version or None,
            kernel_version_file = version_file,
            staged = ctx.attr.staged,
        ),
    ]

kmodidx_index_rule = rule(
    implementation = _kmodidx_index_impl,
    doc = "Indexes the kernel modules of a tree or archive with `kmodidx build`. Use the kmodidx_index macro, which also takes `manifest = True/False/\"name\"`.",
    attrs = {
        "src": attr.label(
            doc = "The input: a tar or cpio archive (plain, gzip, xz or zstd), or a directory (a tree artifact), holding lib/modules/<version>/ or usr/lib/modules/<version>/.",
            mandatory = True,
            allow_single_file = True,
        ),
        "out": attr.string(
            doc = "Output name; its form follows it: .tar, .tar.gz/.tgz, .tar.xz, .tar.zst, .cpio, .cpio.gz, .cpio.xz, .cpio.zst, anything else a directory.",
            mandatory = True,
        ),
        "symvers": attr.label(doc = "The kernel's Module.symvers: check symbols and CRCs.", allow_single_file = True),
        "system_map": attr.label(doc = "The kernel's System.map: check symbols.", allow_single_file = True),
        "strict": attr.bool(doc = "Fail the build when a module needs an unknown symbol, disagrees about a CRC, or cannot be read."),
        "compat": attr.string(
            doc = "Which kmod release to match byte for byte.",
            default = "kmod34",
            values = ["kmod34", "kmod33", "kmod30"],
        ),
        "kernel_version": attr.string(doc = "Kernel version to index: needed when the input holds several; makes KmodidxIndexInfo.kernel_version known at analysis time."),
        "staged": attr.bool(doc = "Also copy the module tree into the output, beside the index."),
        "modules": attr.string_list(doc = "Index only the closure of these modules or aliases (`kmodidx build --modules`)."),
        "config": attr.label_list(doc = "depmod.d files (or directories) applied before the input's own (`--config`).", allow_files = True),
        "mtime": attr.int(doc = "Timestamp of every output entry.", default = 0),
        "manifest_file": attr.output(doc = "Write the manifest here, beside the output (set by the macro's `manifest`)."),
        "no_manifest": attr.bool(doc = "Write no manifest (set by the macro's `manifest = False`)."),
        # The tool, built for (or taken as is for) the execution platform:
        # an exec-configured dependency, never a binary from the host PATH.
        # kmodidx_repositories (or the bzlmod extension) points
        # @kmodidx_tool//:kmodidx at a prebuilt binary or at a label
        # (`tool = ...`), such as a rules_rust build of kmodidx.
        # Not a toolchain: to resolve any toolchain, Bazel 4 loads every
        # registered toolchain package, and its own JDK toolchains load
        # @rules_java and @rules_cc, which it downloads; an offline build
        # would fail before analysing the first target.
        "_kmodidx": attr.label(
            default = Label("@kmodidx_tool//:kmodidx"),
            executable = True,
            allow_files = True,
            cfg = "exec",
        ),
    },
    exec_compatible_with = EXEC_COMPATIBLE_WITH,
)

def kmodidx_index(name, manifest = None, **kwargs):
    """Indexes the kernel modules of a tree or archive (`kmodidx build`).

    Args:
      name: target name.
      manifest: None (default): the manifest sits at the root of the output;
        True: it is written beside the output as `<name>.manifest.json`;
        a string: it is written beside the output under that name;
        False: no manifest.
      **kwargs: the attributes of kmodidx_index_rule: src, out, symvers,
        system_map, strict, compat, kernel_version, staged, modules, config,
        mtime, and the common ones (visibility, tags...).
    """
    if manifest == None:
        kmodidx_index_rule(name = name, **kwargs)
    elif type(manifest) == "bool":
        if manifest:
            kmodidx_index_rule(name = name, manifest_file = name + ".manifest.json", **kwargs)
        else:
            kmodidx_index_rule(name = name, no_manifest = True, **kwargs)
    elif type(manifest) == "string":
        kmodidx_index_rule(name = name, manifest_file = manifest, **kwargs)
    else:
        fail("kmodidx_index %s: manifest must be None, True, False or a file name, not %r" % (name, manifest))
