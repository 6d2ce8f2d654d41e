#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rip_server::fuzzing::request_head(data));
