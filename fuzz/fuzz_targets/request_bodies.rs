#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| backup_fuzz::request_bodies(data));
