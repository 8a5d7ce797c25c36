//! Fuzzes `weir::fuzzing::route`; see its docs for the input format and invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| weir::fuzzing::route(data));
