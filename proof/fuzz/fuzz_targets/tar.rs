#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| snap_fuzzing::tar(data));
