//! Fuzzes `weir::fuzzing::selection`; see its docs for the input format and invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| weir::fuzzing::selection(data));
