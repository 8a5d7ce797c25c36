//! Fuzzes `param_mapping::fuzzing::mapping`; see its docs for the input format and
//! invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| param_mapping::fuzzing::mapping(data));
