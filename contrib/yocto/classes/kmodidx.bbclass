# kmodidx.bbclass: kernel module indexes by kmodidx instead of kmod's depmod.
#
# In an image recipe (`inherit kmodidx`, or IMAGE_CLASSES += "kmodidx"):
# do_rootfs indexes the image's modules with kmodidx. OE runs every depmod of
# image creation through `depmodwrapper -a -b ROOT VERSION PKGNAME` (the
# rootfs's module index in oe/rootfs.py, and the kernel packages' postinsts
# run at rootfs time); this class puts kmodidx-depmod.sh first on PATH under
# that name, and it does what depmodwrapper-cross's script does, byte for byte
# the same index, with kmodidx.
#
# In a kernel or kernel module recipe (`inherit kmodidx`), with
# KMODIDX_CHECK = "1": do_package checks the modules against the kernel's
# Module.symvers and fails on an unknown symbol or a CRC mismatch, in kmod's
# words ("needs unknown symbol"), before anything reaches an image.
#
# KMODIDX_STRICT = "1" makes do_rootfs fail the same way (it then uses
# Module.symvers from STAGING_KERNEL_BUILDDIR when that holds this kernel).

DEPENDS:append = " kmodidx-native"

KMODIDX_STRICT ??= "0"
KMODIDX_CHECK ??= "0"
KMODIDX_SCRIPT = "${STAGING_DATADIR_NATIVE}/kmodidx/kmodidx-depmod.sh"

# The script's settings (depmodwrapper-cross bakes PKGDATA_DIR into its
# script at build time; here it is read from the task's environment).
export KMODIDX = "${STAGING_BINDIR_NATIVE}/kmodidx"
export KMODIDX_LIBDIR = "${nonarch_base_libdir}"
export KMODIDX_STRICT
export KMODIDX_REPORT = "${T}/kmodidx-report.json"
export PKGDATA_DIR
export STAGING_KERNEL_BUILDDIR

# Ahead of STAGING_BINDIR_CROSS, where depmodwrapper-cross's script lives.
PATH:prepend = "${STAGING_DATADIR_NATIVE}/kmodidx/wrapper:"

kmodidx_check_modules() {
	PKGD="${PKGD}" KERNEL_VERSION="${KERNEL_VERSION}" "${KMODIDX_SCRIPT}" --check
}

python __anonymous() {
    if d.getVar('KMODIDX_CHECK') == '1' and (bb.data.inherits_class('kernel', d)
                                              or bb.data.inherits_class('module', d)):
        # On PKGD as do_install left it, before stripping adds .debug copies.
        d.appendVar('PACKAGE_PREPROCESS_FUNCS', ' kmodidx_check_modules')
}
