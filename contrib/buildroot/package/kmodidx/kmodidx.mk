################################################################################
#
# kmodidx
#
################################################################################

# Built from the kmodidx repository this br2-external tree sits in
# (contrib/buildroot). Set KMODIDX_OVERRIDE_SRCDIR in local.mk to build
# another checkout.
KMODIDX_VERSION = 0.1.0
KMODIDX_SITE = $(BR2_EXTERNAL_KMODIDX_PATH)/../..
KMODIDX_SITE_METHOD = local
KMODIDX_LICENSE = MIT or Apache-2.0
KMODIDX_LICENSE_FILES = Cargo.toml
HOST_KMODIDX_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = \
	--exclude target --exclude fixtures/trees --exclude fixtures/golden \
	--exclude fixtures/cli-golden --exclude bench

# A local source is not downloaded, so cargo's download post-process does not
# vendor its crates: vendor them here, as that step does (it needs crates.io,
# or BR_CARGO_HOME's registry cache, once).
define HOST_KMODIDX_VENDOR_CRATES
	cd $(@D) && mkdir -p .cargo && \
		$(HOST_MAKE_ENV) CARGO_HOME=$(BR_CARGO_HOME) \
		cargo vendor --manifest-path Cargo.toml --locked VENDOR \
		> .cargo/config.toml
endef
HOST_KMODIDX_PRE_CONFIGURE_HOOKS += HOST_KMODIDX_VENDOR_CRATES

$(eval $(host-cargo-package))

ifeq ($(BR2_PACKAGE_HOST_KMODIDX),y)
# This tree's .mk files are read after linux/linux.mk, so this definition
# replaces linux.mk's for its target-finalize hook of the same name: the same
# test and the same index, written by kmodidx.
define LINUX_RUN_DEPMOD
	TARGET_DIR=$(TARGET_DIR) \
	LINUX_VERSION_PROBED=$(LINUX_VERSION_PROBED) \
	LINUX_DIR=$(LINUX_DIR) \
	KMODIDX=$(HOST_DIR)/bin/kmodidx \
	KMODIDX_STRICT=$(if $(BR2_PACKAGE_HOST_KMODIDX_STRICT),1,0) \
	KMODIDX_REPORT=$(BUILD_DIR)/kmodidx-report.json \
		$(BR2_EXTERNAL_KMODIDX_PATH)/kmodidx-post-build.sh
endef
# No dependency to add: target-finalize runs after every enabled package,
# host-kmodidx included, is built.
endif
