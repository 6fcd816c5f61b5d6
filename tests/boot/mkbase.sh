#!/bin/bash
# Builds the base of a test initramfs: busybox-static, kmod's modprobe with
# the host's shared libraries, and an /init that modprobes each ROOT, prints
# KMODIDX-OK/KMODIDX-FAIL per root and the loaded modules on the serial
# console, then powers off. The modules come in a second cpio archive
# (`kmodidx build --modules ... --staged`), concatenated after this one.
#
# usage: mkbase.sh OUT.cpio ROOT...
# Needs: busybox (busybox-static), kmod, cpio. Nothing here is committed as
# a binary: everything is copied from the host at test time.
set -euo pipefail
out=$1
shift
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
mkdir -p "$d"/bin "$d"/sbin "$d"/proc "$d"/sys "$d"/dev "$d"/lib64 "$d"/lib/x86_64-linux-gnu "$d"/tmp
busybox=$(command -v busybox)
# The initramfs has no libc: busybox must be the static build.
if ldd "$busybox" >/dev/null 2>&1; then
    echo "mkbase.sh: $busybox is dynamically linked; install busybox-static" >&2
    exit 1
fi
cp "$busybox" "$d"/bin/busybox
kmod=$(command -v kmod || echo /bin/kmod)
cp "$kmod" "$d"/sbin/kmod
ln -s kmod "$d"/sbin/modprobe
for lib in $(ldd "$kmod" | awk '/=>/ { print $3 }'); do
    cp -L "$lib" "$d"/lib/x86_64-linux-gnu/
done
cp -L /lib64/ld-linux-x86-64.so.2 "$d"/lib64/
{
    echo '#!/bin/busybox sh'
    echo 'B=/bin/busybox'
    echo '$B mount -t proc proc /proc; $B mount -t sysfs sys /sys; $B mount -t devtmpfs dev /dev'
    echo 'echo KMODIDX-BOOT $($B uname -r)'
    for r in "$@"; do
        echo "if /sbin/modprobe '$r'; then echo 'KMODIDX-OK $r'; else echo 'KMODIDX-FAIL $r'; fi"
    done
    echo 'echo KMODIDX-LOADED $($B cut -d" " -f1 /proc/modules | $B sort | $B tr "\n" " ")'
    echo 'echo KMODIDX-END'
    echo '$B poweroff -f'
} >"$d"/init
chmod +x "$d"/init
(cd "$d" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) >"$out"
