#![no_main]

// The HTTPS port's first-byte sniffing and SNI name handling.
libfuzzer_sys::fuzz_target!(|data: &[u8]| rip_server::tls::sniff::check(data));
