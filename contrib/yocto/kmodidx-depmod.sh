#!/bin/sh
# kmodidx's depmod step for Yocto / OpenEmbedded, called by kmodidx.bbclass.
#
#   kmodidx-depmod.sh -a -b ROOT KERNEL_VERSION [KERNEL_PACKAGE_NAME]
#       What poky's depmodwrapper does, with kmodidx's depmod: make sure
#       ROOT/lib/depmod.d/exclude.conf keeps .debug copies out, then index
#       ROOT/lib/modules/KERNEL_VERSION in place, reading only ROOT's
#       lib/depmod.d, with the kernel's System.map from PKGDATA_DIR when its
#       recorded abiversion is KERNEL_VERSION. The bbclass installs this script
#       as `depmodwrapper` ahead of depmodwrapper-cross's, so do_rootfs and
#       the kernel packages' postinsts run at rootfs time call it.
#
#   kmodidx-depmod.sh --check
#       For a kernel or module recipe's do_package: check the modules in PKGD
#       for KERNEL_VERSION against STAGING_KERNEL_BUILDDIR/Module.symvers (or
#       System.map-KERNEL_VERSION there) and fail on an unknown symbol, a CRC
#       mismatch or an unreadable module. Nothing is written into PKGD.
#
# Environment:
#   KMODIDX                the kmodidx binary (default: kmodidx on PATH)
#   KMODIDX_LIBDIR         the image's nonarch_base_libdir (default: /lib)
#   KMODIDX_STRICT=1       in the first form, also fail as --check does
#   KMODIDX_REPORT=FILE    write kmodidx's JSON report of the check there
#   PKGDATA_DIR            the first form: where the kernel recipes stored
#                          <pkg>-depmod/<pkg>-abiversion and System.map-<version>
#   STAGING_KERNEL_BUILDDIR  where kernel.bbclass put Module.symvers,
#                          System.map-<version> and kernel-abiversion
#   PKGD, KERNEL_VERSION   the second form
set -eu

kmodidx=${KMODIDX:-kmodidx}
libdir=${KMODIDX_LIBDIR:-/lib}

usage() {
    echo "Usage: kmodidx-depmod.sh -a -b ROOT KERNEL_VERSION [KERNEL_PACKAGE_NAME]" >&2
    echo "       kmodidx-depmod.sh --check   (with PKGD, KERNEL_VERSION, STAGING_KERNEL_BUILDDIR)" >&2
    exit 1
}

# symbol_args VERSION: set $symbols to kmodidx build's option naming the
# kernel's symbols for VERSION from STAGING_KERNEL_BUILDDIR, or to nothing.
symbol_args() {
    symbols=
    staging=${STAGING_KERNEL_BUILDDIR:-}
    [ -n "$staging" ] || return 0
    # work-shared holds one kernel; use it only for the version it was built as.
    if [ -r "$staging/kernel-abiversion" ] && [ "$(cat "$staging/kernel-abiversion")" != "$1" ]; then
        return 0
    fi
    if [ -r "$staging/Module.symvers" ]; then
        symbols="--symvers $staging/Module.symvers"
    elif [ -r "$staging/System.map-$1" ]; then
        symbols="--system-map $staging/System.map-$1"
    fi
}

# check ROOT VERSION [kmodidx build options...]: index ROOT into a scratch
# archive with --strict, so that any problem fails the step.
check() {
    root=$1 version=$2
    shift 2
    scratch=$(mktemp -d)
    # shellcheck disable=SC2086 # $symbols is an option and its argument
    if ! "$kmodidx" build --from "$root" --kernel-version "$version" --strict \
        --out "$scratch/index.tar" --no-manifest ${KMODIDX_REPORT:+--report "$KMODIDX_REPORT"} \
        $symbols "$@"; then
        rm -rf "$scratch"
        echo "kmodidx-depmod.sh: the modules for $version in $root failed kmodidx's check" >&2
        exit 1
    fi
    rm -rf "$scratch"
}

if [ "${1:-}" = --check ]; then
    [ $# -eq 1 ] || usage
    : "${PKGD:?kmodidx-depmod.sh --check needs PKGD}" "${KERNEL_VERSION:?kmodidx-depmod.sh --check needs KERNEL_VERSION}"
    if [ ! -d "$PKGD$libdir/modules/$KERNEL_VERSION" ]; then
        echo "kmodidx-depmod.sh: no modules for $KERNEL_VERSION in $PKGD, nothing to check"
        exit 0
    fi
    symbol_args "$KERNEL_VERSION"
    if [ -z "$symbols" ]; then
        echo "kmodidx-depmod.sh: --check needs Module.symvers or System.map-$KERNEL_VERSION in STAGING_KERNEL_BUILDDIR" >&2
        exit 1
    fi
    check "$PKGD" "$KERNEL_VERSION" --no-input-config
    exit 0
fi

# depmodwrapper's interface.
if [ "${1:-}" != -a ] || [ "${2:-}" != -b ] || [ $# -lt 4 ] || [ $# -gt 5 ]; then
    usage
fi
root=$3 version=$4 pkg=${5:-kernel}

confdir=$root$libdir/depmod.d
if [ ! -e "$confdir/exclude.conf" ]; then
    mkdir -p "$confdir"
    echo "exclude .debug" >"$confdir/exclude.conf"
fi

if [ "${KMODIDX_STRICT:-0}" = 1 ]; then
    symbol_args "$version"
    check "$root" "$version" --no-input-config --config "$confdir"
fi

# As depmodwrapper: System.map only when the kernel package recorded this
# version (without -e it only feeds depmod's symbol table, as in kmod).
map=
pkgdata=${PKGDATA_DIR:-}
if [ -n "$pkgdata" ] && [ -r "$pkgdata/$pkg-depmod/System.map-$version" ] &&
    [ "$(cat "$pkgdata/$pkg-depmod/$pkg-abiversion" 2>/dev/null)" = "$version" ]; then
    map=$pkgdata/$pkg-depmod/System.map-$version
else
    echo "kmodidx-depmod.sh: no System.map for $version in PKGDATA_DIR (${pkgdata:-unset})" >&2
fi
exec "$kmodidx" depmod -C "$confdir" -a -b "$root" ${map:+-F "$map"} "$version"
