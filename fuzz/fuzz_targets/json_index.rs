//! Fuzzes `weir::fuzzing::json_index`; see its docs for the invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| weir::fuzzing::json_index(data));
