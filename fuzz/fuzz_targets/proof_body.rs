#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| stepgate::fuzzing::proof_body(data));
