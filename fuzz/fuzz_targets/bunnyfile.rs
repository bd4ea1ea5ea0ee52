#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bunny_fuzz::bunnyfile(data));
