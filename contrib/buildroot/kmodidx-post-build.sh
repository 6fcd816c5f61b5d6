#!/bin/sh
# kmodidx's replacement for Buildroot's LINUX_RUN_DEPMOD (linux/linux.mk),
# called by the LINUX_RUN_DEPMOD that package/kmodidx/kmodidx.mk defines, or
# usable as a BR2_ROOTFS_POST_BUILD_SCRIPT (TARGET_DIR as its argument).
#
# As LINUX_RUN_DEPMOD: when TARGET_DIR/lib/modules/LINUX_VERSION_PROBED exists
# and the kernel has CONFIG_MODULES=y, index it in place, as
# `depmod -a -b TARGET_DIR LINUX_VERSION_PROBED` does, with kmodidx. Unlike
# host-kmod's depmod, which also reads the build machine's /lib/depmod.d and
# /run/depmod.d, only the target's own depmod.d directories apply.
#
# Environment:
#   TARGET_DIR            the target tree (or the first argument)
#   LINUX_VERSION_PROBED  the kernel release; unset: every version under
#                         TARGET_DIR/lib/modules
#   LINUX_DIR             the kernel build directory: its .config decides
#                         whether modules are enabled, and its Module.symvers
#                         (or System.map) names the kernel's symbols
#   KMODIDX               the kmodidx binary (default: HOST_DIR/bin/kmodidx,
#                         else kmodidx on PATH)
#   KMODIDX_STRICT=1      fail on an unknown symbol, a CRC mismatch or an
#                         unreadable module (needs LINUX_DIR's symbols)
#   KMODIDX_REPORT=FILE   write kmodidx's JSON report of that check there
set -eu

target=${1:-${TARGET_DIR:-}}
if [ -z "$target" ]; then
    echo "kmodidx-post-build.sh: set TARGET_DIR or pass the target directory" >&2
    exit 1
fi
if [ -n "${KMODIDX:-}" ]; then
    kmodidx=$KMODIDX
elif [ -n "${HOST_DIR:-}" ] && [ -x "$HOST_DIR/bin/kmodidx" ]; then
    kmodidx=$HOST_DIR/bin/kmodidx
else
    kmodidx=kmodidx
fi

linux=${LINUX_DIR:-}
if [ -n "$linux" ] && [ -r "$linux/.config" ] && ! grep -q "CONFIG_MODULES=y" "$linux/.config"; then
    exit 0
fi

# The depmod.d directories kmod reads, inside the target.
config=
for dir in /etc/depmod.d /run/depmod.d /usr/local/lib/depmod.d /usr/lib/depmod.d /lib/depmod.d; do
    config="$config -C $target$dir"
done

if [ -n "${LINUX_VERSION_PROBED:-}" ]; then
    versions=$LINUX_VERSION_PROBED
else
    versions=$(ls "$target/lib/modules" 2>/dev/null || true)
fi

for version in $versions; do
    [ -d "$target/lib/modules/$version" ] || continue
    if [ "${KMODIDX_STRICT:-0}" = 1 ]; then
        if [ -n "$linux" ] && [ -r "$linux/Module.symvers" ]; then
            symbols="--symvers $linux/Module.symvers"
        elif [ -n "$linux" ] && [ -r "$linux/System.map" ]; then
            symbols="--system-map $linux/System.map"
        else
            echo "kmodidx-post-build.sh: KMODIDX_STRICT=1 needs LINUX_DIR with Module.symvers or System.map" >&2
            exit 1
        fi
        scratch=$(mktemp -d)
        # shellcheck disable=SC2086 # $symbols is an option and its argument
        if ! "$kmodidx" build --from "$target" --kernel-version "$version" --strict \
            --out "$scratch/index.tar" --no-manifest ${KMODIDX_REPORT:+--report "$KMODIDX_REPORT"} \
            $symbols; then
            rm -rf "$scratch"
            echo "kmodidx-post-build.sh: the modules for $version in $target failed kmodidx's check" >&2
            exit 1
        fi
        rm -rf "$scratch"
    fi
    # shellcheck disable=SC2086 # $config is a list of options
    "$kmodidx" depmod -a -b "$target" $config "$version"
done
