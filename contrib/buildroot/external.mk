include $(sort $(wildcard $(BR2_EXTERNAL_KMODIDX_PATH)/package/*/*.mk))
