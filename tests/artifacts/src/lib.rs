//! Paths of the plugin components built from source for this test run (see `build.rs`).

include!(concat!(env!("OUT_DIR"), "/plugins.rs"));
