#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| kmodidx_fuzz::index_bin(data));
