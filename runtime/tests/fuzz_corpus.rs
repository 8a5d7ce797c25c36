//! Replays the checked-in `cargo fuzz` seed corpora (`fuzz/corpus/<target>/`) through
//! the same entry points the fuzz targets call, so every seed, including every input
//! that once crashed Weir, runs on stable in the normal test suite.

use std::path::PathBuf;

/// Runs every file of `fuzz/corpus/<target>` through `entry`; fails naming each file
/// that panics, and fails if the corpus is missing or empty.
fn replay(target: &str, entry: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a corpus entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} has no seeds", dir.display());
    let failed: Vec<String> = files
        .iter()
        .filter(|path| {
            let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            std::panic::catch_unwind(|| entry(&data)).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(failed.is_empty(), "{target}: seeds that fail: {failed:#?}");
}

#[test]
fn config() {
    replay("config", weir::fuzzing::config);
}

#[test]
fn route() {
    replay("route", weir::fuzzing::route);
}

#[test]
fn selection() {
    replay("selection", weir::fuzzing::selection);
}

#[test]
fn headers() {
    replay("headers", weir::fuzzing::headers);
}

#[test]
fn json_index() {
    replay("json_index", weir::fuzzing::json_index);
}
