SUMMARY = "Hermetic, reproducible, byte-identical replacement for kmod's depmod"
DESCRIPTION = "kmodidx writes every modules.* file that kmod 34.2's depmod \
writes, byte for byte, from a module tree, a tar or a cpio archive. With \
kmodidx.bbclass it indexes the kernel modules of images instead of depmod."
LICENSE = "MIT | Apache-2.0"
LIC_FILES_CHKSUM = "file://Cargo.toml;beginline=6;endline=6;md5=86b31c7756a1a7962f28b62856ed4f05"

# By default, the kmodidx repository this layer sits in (contrib/yocto), at
# its checked-out branch head. Pin a revision, or use a mirror:
#   KMODIDX_SRC_URI = "git://example.com/kmodidx.git;protocol=https;branch=main"
#   SRCREV:pn-kmodidx-native = "<commit>"
KMODIDX_SRC_URI ??= "git://${KMODIDX_LAYERDIR}/../..;protocol=file;branch=main"
SRC_URI = "${KMODIDX_SRC_URI} file://kmodidx-depmod.sh"
FILESEXTRAPATHS:prepend := "${KMODIDX_LAYERDIR}:"
SRCREV ??= "${AUTOREV}"
PV = "0.1.0+git"

inherit cargo cargo-update-recipe-crates

# The crates of Cargo.lock (`bitbake -c update_crates kmodidx-native`
# regenerates it; kmodidx's tests check that it matches Cargo.lock).
require ${BPN}-crates.inc

do_install:append() {
	install -d ${D}${datadir}/kmodidx/wrapper
	install -m 0755 ${UNPACKDIR}/kmodidx-depmod.sh ${D}${datadir}/kmodidx/kmodidx-depmod.sh
	# kmodidx.bbclass puts this directory first on do_rootfs's PATH.
	ln -s ../kmodidx-depmod.sh ${D}${datadir}/kmodidx/wrapper/depmodwrapper
}

FILES:${PN} += "${datadir}/kmodidx"

BBCLASSEXTEND = "native nativesdk"
