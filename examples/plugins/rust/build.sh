#!/usr/bin/env bash
# Builds the Rust example plugins into OUT_DIR (default: ./out): mapper.wasm, authorizer.wasm.
# Needs only Rust with the wasm32-wasip2 target (`rustup target add wasm32-wasip2`).
# CARGO_TARGET_DIR is honoured (default: ./target).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$(mkdir -p "${1:-$here/out}" && cd "${1:-$here/out}" && pwd)"
target="${CARGO_TARGET_DIR:-$here/target}"
# Settings of an enclosing cargo build must not leak into the guest build.
unset CARGO_ENCODED_RUSTFLAGS RUSTFLAGS CARGO_BUILD_RUSTFLAGS CARGO_BUILD_TARGET \
    CARGO_MAKEFLAGS MAKEFLAGS MFLAGS RUSTC_WRAPPER RUSTC_WORKSPACE_WRAPPER CARGO_PRIMARY_PACKAGE
cargo build --release --target wasm32-wasip2 --manifest-path "$here/Cargo.toml" \
    --target-dir "$target" --quiet
cp "$target/wasm32-wasip2/release/example_mapper.wasm" "$out/mapper.wasm"
cp "$target/wasm32-wasip2/release/example_authorizer.wasm" "$out/authorizer.wasm"
