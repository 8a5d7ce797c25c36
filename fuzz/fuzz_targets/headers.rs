//! Fuzzes `weir::fuzzing::headers`; see its docs for the input format and invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| weir::fuzzing::headers(data));
