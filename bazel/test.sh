#!/usr/bin/env bash
# Builds the example workspace (bazel/example) with a real Bazel, offline, on
# a real kernel, and checks what the rules promise:
#
#   * the example's WORKSPACE is the documented one (only the two paths are
#     this machine's) and builds with no flag but --nosandbox_debug: Bazel
#     sets up no external repository beyond kmodidx's, the tool's and its
#     own built-in ones;
#   * the index of the kernel's rootfs tarball equals kmod 34.2's reference
#     (ref-34.2) byte for byte, and the action's archive equals what
#     `kmodidx build` writes from the command line;
#   * a staged directory output (a tree artifact) works as the input of
#     another kmodidx_index, and image rules see KmodidxIndexInfo;
#   * symvers/kernel_version/compat/config reach kmodidx;
#   * modules = [...] builds the closure, byte-identical to
#     `kmodidx build --modules=...`, and a list file ("@FILE") is refused at
#     analysis (it would be an undeclared input);
#   * the action runs @kmodidx_tool//:kmodidx, its command line holds no host
#     path and its environment is empty; the prebuilt binary ties the action
#     to Linux execution platforms;
#   * after `bazel clean`, a rebuild with the same --disk_cache runs nothing:
#     every kmodidx action is a cache hit;
#   * strict = True fails the build, in kmod's words ("needs unknown symbol");
#   * with `kmodidx_repositories(tool = "//tools:kmodidx")` the action runs
#     that target, built in the exec configuration, and writes the same index.
#
# Usage: bazel/test.sh KMODIDX [KERNEL_DEB [REFERENCE_DIR]]
#   KMODIDX        the kmodidx binary to use as `prebuilt` (absolute or relative)
#   KERNEL_DEB     a kernel package; default: the 6.1 kernel of the corpus
#                  ($KMODIDX_CORPUS, else ../shared/corpus beside the repo)
#   REFERENCE_DIR  kmod 34.2's modules.* files for it; default:
#                  <corpus>/<version>/ref-34.2
#
# Everything lives in a scratch directory: a copy of the example, a private
# Bazel output root and disk cache. The Bazel server is shut down at the end.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
kmodidx=$(realpath "${1:?usage: bazel/test.sh KMODIDX [KERNEL_DEB [REFERENCE_DIR]]}")
corpus=${KMODIDX_CORPUS:-$repo/../shared/corpus}
deb=${2:-}
if [ -z "$deb" ]; then
    debs=("$corpus"/debian/*6.1.0*.deb)
    deb=${debs[0]}
fi
[ -f "$deb" ] || { echo "bazel/test.sh: no kernel package at $deb" >&2; exit 2; }
for tool in bazel dpkg-deb tar gzip cmp; do
    command -v "$tool" >/dev/null || { echo "bazel/test.sh: $tool is needed" >&2; exit 2; }
done

start=$SECONDS
scratch=$(mktemp -d /tmp/kmodidx-bazel.XXXXXX)
ws=$scratch/ws
# The startup options and every flag but the first only isolate the test:
# a private output root, no ~/.bazelrc, the disk cache the cache check
# needs, quiet logs. --nosandbox_debug is the one flag the documented use
# asks for with Debian's Bazel, whose /etc/bazel/bazelrc turns sandbox_debug
# on. No --override_repository: the rule needs nothing that Bazel would
# download.
bazel_startup=(--nohome_rc "--output_user_root=$scratch/root" --max_idle_secs=600)
bazel_flags=(
    --nosandbox_debug
    "--disk_cache=$scratch/cache"
    --curses=no --color=no --show_progress_rate_limit=60
)
cleanup() {
    (cd "$ws" 2>/dev/null && bazel "${bazel_startup[@]}" shutdown >/dev/null 2>&1) || true
    chmod -R u+w "$scratch" 2>/dev/null || true
    rm -rf "$scratch"
}
trap cleanup EXIT

fail() {
    echo "bazel/test.sh: FAIL: $*" >&2
    exit 1
}

# Runs bazel in the workspace; its output goes to $scratch/LOG.log. Returns
# bazel's status.
run_bazel() {
    local log=$scratch/$1.log
    shift
    local cmd=$1
    shift
    (cd "$ws" && bazel "${bazel_startup[@]}" "$cmd" "${bazel_flags[@]}" "$@") >"$log" 2>&1
}

show_log() {
    echo "---- $1.log (last 40 lines) ----" >&2
    tail -n 40 "$scratch/$1.log" >&2
}

# Compares every file of the reference directory with the same name in DIR.
same_as_reference() {
    local what=$1 dir=$2 ref=$3 name count=0
    for f in "$ref"/modules.*; do
        name=$(basename "$f")
        [ -f "$dir/$name" ] || fail "$what: no $name"
        cmp -s "$f" "$dir/$name" || fail "$what: $name differs from $ref/$name"
        count=$((count + 1))
    done
    [ "$count" -ge 10 ] || fail "$what: only $count reference files in $ref"
    echo "  $what: $count modules.* files identical to $(basename "$(dirname "$ref")")/$(basename "$ref")"
}

# ---------------------------------------------------------------- workspace
cp -r "$repo/bazel/example" "$ws"
# The example's WORKSPACE is the documented one; put this machine's paths in.
sed -i -e "s|path = \"\.\./\.\.\"|path = \"$repo\"|" \
    -e "s|prebuilt = \"/abs/path/to/kmodidx\"|prebuilt = \"$kmodidx\"|" "$ws/WORKSPACE.bazel"
grep -qxF "local_repository(name = \"kmodidx\", path = \"$repo\")" "$ws/WORKSPACE.bazel" &&
    grep -qxF "kmodidx_repositories(prebuilt = \"$kmodidx\")" "$ws/WORKSPACE.bazel" ||
    fail "could not put this machine's paths into the example's WORKSPACE.bazel"
mkdir "$scratch/kernel"
dpkg-deb -x "$deb" "$scratch/kernel"
versions=("$scratch"/kernel/lib/modules/*)
[ "${#versions[@]}" -eq 1 ] || fail "$deb holds ${#versions[@]} kernels"
version=$(basename "${versions[0]}")
reference=${3:-$corpus/$version/ref-34.2}
[ -d "$reference" ] || fail "no reference output at $reference"
tar -C "$scratch/kernel" -cf "$ws/rootfs.tar" .
rm -rf "$scratch/kernel"
tar -C "$repo/fixtures/trees/symvers" -cf "$ws/strict/symvers.tar" lib
mkdir "$ws/strict/symvers_tree"
cp -r "$repo/fixtures/trees/symvers/lib" "$ws/strict/symvers_tree/"
cp "$repo/fixtures/trees/symvers/Module.symvers" "$ws/strict/"
echo "bazel/test.sh: kernel $version ($(basename "$deb")), workspace $ws"

# The source build's rust_binary and the bzlmod module name the crate's
# version again; both must be Cargo.toml's.
cargo_version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$repo/Cargo.toml" | head -n 1)
grep -q "^_VERSION = \"$cargo_version\"$" "$repo/BUILD.bazel" ||
    fail "BUILD.bazel's _VERSION is not Cargo.toml's version $cargo_version"
grep -q "^    version = \"$cargo_version\",$" "$repo/MODULE.bazel" ||
    fail "MODULE.bazel's version is not Cargo.toml's version $cargo_version"

# -------------------------------------------------------------- first build
targets=(//:idx //:staged //:reindexed //:reindexed_summary //:closure //strict:checked //strict:configured)
kmodidx_actions=6
run_bazel build build "${targets[@]}" || { show_log build; fail "bazel build failed"; }
bin=$(cd "$ws" && bazel "${bazel_startup[@]}" info "${bazel_flags[@]}" bazel-bin 2>/dev/null)
echo "  first build: $(grep -o '[0-9]* processes:.*' "$scratch/build.log" | head -n 1) ($((SECONDS - start)) s so far)"

# The documented target: idx.tar, the index of rootfs.tar.
mkdir "$scratch/idx"
tar -C "$scratch/idx" -xf "$bin/idx.tar"
same_as_reference "//:idx (idx.tar)" "$scratch/idx/lib/modules/$version" "$reference"
entries=$(tar -tf "$bin/idx.tar" | grep -c .)
[ "$entries" -eq $((4 + $(ls "$reference" | grep -c '^modules\.'))) ] ||
    fail "idx.tar has $entries entries: $(tar -tf "$bin/idx.tar" | tr '\n' ' ')"
env -u SOURCE_DATE_EPOCH "$kmodidx" build --from "$ws/rootfs.tar" --out "$scratch/cli.tar" 2>/dev/null
cmp -s "$bin/idx.tar" "$scratch/cli.tar" || fail "idx.tar differs from kmodidx build's own output"
echo "  //:idx: idx.tar is byte-identical to \`kmodidx build --from rootfs.tar --out idx.tar\`"
[ "$(cat "$bin/idx.kernel_version")" = "$version" ] || fail "idx.kernel_version: $(cat "$bin/idx.kernel_version")"

# A directory output, staged, with its manifest beside it.
staged=$bin/staged/lib/modules/$version
same_as_reference "//:staged (tree artifact)" "$staged" "$reference"
want_modules=$(tar -tf "$ws/rootfs.tar" | grep -c '\.ko$')
got_modules=$(find "$staged" -name '*.ko' | grep -c .)
[ "$got_modules" -eq "$want_modules" ] || fail "//:staged holds $got_modules modules, the input $want_modules"
[ ! -e "$bin/staged/kmodidx.manifest.json" ] || fail "//:staged has its manifest inside"
grep -q "\"kernel_version\": \"$version\"" "$bin/staged.manifest.json" || fail "staged.manifest.json"
echo "  //:staged: $got_modules modules staged, manifest beside the output"

# A tree artifact as input, and the provider as an image rule sees it.
mkdir "$scratch/reindexed"
tar -C "$scratch/reindexed" -xzf "$bin/reindexed.tar.gz"
same_as_reference "//:reindexed (from //:staged)" "$scratch/reindexed/lib/modules/$version" "$reference"
[ ! -e "$scratch/reindexed/kmodidx.manifest.json" ] || fail "manifest = False wrote a manifest"
printf '%s\n' "output=reindexed.tar.gz" "format=tar.gz" "staged=False" "manifest=None" \
    "kernel_version=None" "kernel_version_file=reindexed.kernel_version" >"$scratch/summary.want"
cmp -s "$scratch/summary.want" "$bin/reindexed_summary.txt" ||
    fail "KmodidxIndexInfo as seen by //:reindexed_summary: $(cat "$bin/reindexed_summary.txt")"
[ "$(cat "$bin/reindexed.kernel_version")" = "$version" ] || fail "reindexed.kernel_version"
echo "  //:reindexed_summary: KmodidxIndexInfo as expected, kernel_version_file holds $version"

# modules = [...]: the closure, exactly as the command line writes it.
env -u SOURCE_DATE_EPOCH "$kmodidx" build --from "$ws/rootfs.tar" --out "$scratch/closure-cli.tar" \
    --modules=btrfs --modules=fs-vfat --staged 2>/dev/null
cmp -s "$bin/closure.tar" "$scratch/closure-cli.tar" ||
    fail "closure.tar differs from kmodidx build --modules=btrfs --modules=fs-vfat --staged"
closure_modules=$(tar -tf "$bin/closure.tar" | grep '\.ko$' | sed 's|.*/||' | sort | tr '\n' ' ')
for want in btrfs.ko libcrc32c.ko vfat.ko fat.ko; do
    case " $closure_modules" in *" $want "*) ;; *) fail "closure.tar lacks $want: $closure_modules" ;; esac
done
[ "$(echo "$closure_modules" | wc -w)" -lt "$want_modules" ] || fail "closure.tar holds every module"
grep -q '"btrfs"' <(tar -xOf "$bin/closure.tar" kmodidx.manifest.json) || fail "closure.tar's manifest does not record its roots"
echo "  //:closure: $(echo "$closure_modules" | wc -w) modules, byte-identical to \`kmodidx build --modules=btrfs --modules=fs-vfat --staged\`"

# Symbol checks without strict: warnings in kmod's words, the index written
# exactly as the command line writes it (kmod 30 flavour).
"$kmodidx" build --from "$ws/strict/symvers.tar" --out "$scratch/cli-checked" --compat kmod30 \
    --kernel-version 6.1.0-symvers --symvers "$ws/strict/Module.symvers" 2>/dev/null
for f in "$scratch"/cli-checked/lib/modules/6.1.0-symvers/modules.*; do
    cmp -s "$f" "$bin/strict/checked/lib/modules/6.1.0-symvers/$(basename "$f")" ||
        fail "//strict:checked: $(basename "$f") differs from kmodidx build's"
done
[ ! -e "$bin/strict/checked/lib/modules/6.1.0-symvers/modules.weakdep" ] || fail "compat = kmod30 wrote modules.weakdep"
grep -q "needs unknown symbol no_such_symbol" "$scratch/build.log" || fail "//strict:checked did not warn"
echo "  //strict:checked: same files as the command line, warned \"needs unknown symbol\""

# config: the workspace's depmod.d file excludes every module.
mkdir "$scratch/configured"
tar -C "$scratch/configured" -xzf "$bin/strict/configured.tar.gz"
[ ! -s "$scratch/configured/lib/modules/6.1.0-symvers/modules.dep" ] || fail "//strict:configured ignored its config"
[ ! -e "$scratch/configured/kmodidx.manifest.json" ] || fail "//strict:configured has its manifest inside"
grep -q '"kernel_version": "6.1.0-symvers"' "$bin/strict/configured.json" || fail "no strict/configured.json"
echo "  //strict:configured: the depmod.d file was applied, the manifest written as configured.json"

# ---------------------------------------------------------- hermetic action
(cd "$ws" && bazel "${bazel_startup[@]}" aquery "${bazel_flags[@]}" 'mnemonic(KmodidxIndex, //:idx)') \
    >"$scratch/aquery.log" 2>&1 || { show_log aquery; fail "bazel aquery failed"; }
sed -n '/Command Line: (exec/,/)$/p' "$scratch/aquery.log" >"$scratch/cmdline"
grep -q 'external/kmodidx_tool/kmodidx' "$scratch/cmdline" || fail "the tool is not @kmodidx_tool's: $(cat "$scratch/cmdline")"
! grep -E '(^|[[:space:]])/' "$scratch/cmdline" >/dev/null || fail "a host path in the command line: $(cat "$scratch/cmdline")"
! grep -q "Environment:" "$scratch/aquery.log" || fail "the action has an environment: $(grep Environment: "$scratch/aquery.log")"
echo "  aquery: @kmodidx_tool//:kmodidx, execroot-relative paths only, no environment"

output_base=$(cd "$ws" && bazel "${bazel_startup[@]}" info "${bazel_flags[@]}" output_base 2>/dev/null)
exec_bzl=$output_base/external/kmodidx_tool/exec.bzl
grep -q '"@platforms//os:linux"' "$exec_bzl" || fail "the prebuilt is not tied to Linux execution platforms: $(cat "$exec_bzl")"
echo "  the prebuilt runs on Linux execution platforms only ($(basename "$exec_bzl"): $(grep ^EXEC "$exec_bzl"))"

# ---------------------------------------------- bazel clean, then cache hits
cp "$bin/idx.tar" "$scratch/idx-first.tar"
run_bazel clean clean || { show_log clean; fail "bazel clean failed"; }
run_bazel rebuild build "${targets[@]}" || { show_log rebuild; fail "rebuild failed"; }
summary=$(grep -o '[0-9]* processes:.*' "$scratch/rebuild.log" | head -n 1)
echo "  after bazel clean: $summary"
hits=$(echo "$summary" | sed -n 's/.* \([0-9]*\) \(disk\|remote\) cache hit.*/\1/p')
[ "${hits:-0}" -eq "$kmodidx_actions" ] || fail "expected $kmodidx_actions cache hits: $summary"
! echo "$summary" | grep -Eq 'sandbox|local|worker' || fail "something ran again: $summary"
cmp -s "$scratch/idx-first.tar" "$bin/idx.tar" || fail "idx.tar from the cache differs"

# ---------------------------------------------------------------- strict
if run_bazel strict build //strict:strict; then
    fail "//strict:strict built, though sv_unknown.ko needs an unknown symbol"
fi
grep -q "needs unknown symbol no_such_symbol" "$scratch/strict.log" || { show_log strict; fail "no 'needs unknown symbol' in the failure"; }
[ ! -e "$bin/strict/strict.tar" ] || fail "a failed strict build left strict.tar"
echo "  //strict:strict: failed as it must: $(grep -m1 'needs unknown symbol' "$scratch/strict.log")"

# modules = ["@FILE"] would read an undeclared input: analysis refuses it.
mkdir "$ws/listfile"
: >"$ws/listfile/empty.tar"
printf '%s\n' 'load("@kmodidx//bazel:defs.bzl", "kmodidx_index")' \
    'kmodidx_index(name = "listed", src = "empty.tar", out = "listed.tar", modules = ["@roots.txt"])' \
    >"$ws/listfile/BUILD.bazel"
if run_bazel listed build //listfile:listed; then fail "//listfile:listed built with modules = [\"@roots.txt\"]"; fi
grep -q "a list file would be an undeclared input" "$scratch/listed.log" || { show_log listed; fail "no clear error for modules = [\"@roots.txt\"]"; }
rm -r "$ws/listfile"
echo "  modules = [\"@roots.txt\"]: refused at analysis, naming the reason"

# ------------------------------------- tool = a kmodidx that Bazel builds
# As with a rules_rust build of kmodidx: //tools:kmodidx is a genrule, built
# in the exec configuration, whose output the action runs.
cp "$kmodidx" "$ws/tools/kmodidx.bin"
sed -i "s|^kmodidx_repositories(prebuilt = .*)$|kmodidx_repositories(tool = \"//tools:kmodidx\")|" "$ws/WORKSPACE.bazel"
grep -qxF 'kmodidx_repositories(tool = "//tools:kmodidx")' "$ws/WORKSPACE.bazel" || fail "could not switch the WORKSPACE to tool"
run_bazel tool build //:idx || { show_log tool; fail "bazel build with tool = //tools:kmodidx failed"; }
(cd "$ws" && bazel "${bazel_startup[@]}" aquery "${bazel_flags[@]}" 'mnemonic(KmodidxIndex, //:idx)') \
    >"$scratch/aquery-tool.log" 2>&1 || { show_log aquery-tool; fail "bazel aquery failed"; }
tool_path=$(sed -n 's/.*Command Line: (exec \([^ ]*\).*/\1/p' "$scratch/aquery-tool.log")
case $tool_path in
bazel-out/*-exec-*/bin/tools/kmodidx) ;;
*) fail "with tool = //tools:kmodidx the action runs $tool_path, not the exec configuration's build of it" ;;
esac
cmp -s "$scratch/idx-first.tar" "$bin/idx.tar" || fail "idx.tar differs with tool = //tools:kmodidx"
echo "  tool = //tools:kmodidx: the action runs $tool_path; idx.tar unchanged"

# ------------------------------------------------------- setup mistakes
# Each fails before any action runs, saying what to do. With no binary at
# all (what the bzlmod extension does without a tag):
sed -i "s|^kmodidx_repositories(.*)$|kmodidx_tool_repository(name = \"kmodidx_tool\")|; s|\"kmodidx_repositories\")$|\"kmodidx_tool_repository\")|" "$ws/WORKSPACE.bazel"
grep -qxF 'kmodidx_tool_repository(name = "kmodidx_tool")' "$ws/WORKSPACE.bazel" || fail "could not switch the WORKSPACE to no binary"
if run_bazel missing build //:idx; then fail "//:idx built without a kmodidx binary"; fi
grep -q "no kmodidx binary is configured" "$scratch/missing.log" || { show_log missing; fail "no instructions without a binary"; }
# A prebuilt that is not kmodidx:
sed -i "s|^kmodidx_tool_repository(.*)$|kmodidx_tool_repository(name = \"kmodidx_tool\", prebuilt = \"$(type -P true)\")|" "$ws/WORKSPACE.bazel"
if run_bazel wrong build //:idx; then fail "//:idx built with $(type -P true) as kmodidx"; fi
grep -q "is not a working kmodidx" "$scratch/wrong.log" || { show_log wrong; fail "no clear error for a prebuilt that is not kmodidx"; }
echo "  setup mistakes: no binary or a wrong prebuilt fails before any action runs, saying what to do"

# Offline means nothing was downloaded: the only external repositories are
# kmodidx's, the tool's and Bazel's built-in ones (no @rules_cc and no
# @rules_java, which a toolchain would have made Bazel 4 fetch), with either
# way of giving the tool.
externals=$(ls "$output_base/external" | grep -v '^@' | tr '\n' ' ')
for repository in $externals; do
    case $repository in
    bazel_tools | kmodidx | kmodidx_tool | local_config_platform | platforms) ;;
    *) fail "Bazel set up @$repository (external repositories: $externals)" ;;
    esac
done
echo "  external repositories: $externals"

echo "bazel/test.sh: all checks passed in $((SECONDS - start)) s"
