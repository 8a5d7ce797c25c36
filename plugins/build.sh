#!/usr/bin/env bash
# Builds every shipped plugin into plugins/target/wasm32-wasip2/release/*.wasm.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
rustup target add wasm32-wasip2 >/dev/null 2>&1 || true
for pkg in param-mapping jwt-authorizer cors; do
    # One at a time: each plugin enables a different weir-sdk world feature.
    cargo build --release --target wasm32-wasip2 -p "$pkg" \
        --manifest-path "$here/Cargo.toml" --target-dir "${WEIR_PLUGIN_TARGET_DIR:-$here/target}"
done
ls -l "${WEIR_PLUGIN_TARGET_DIR:-$here/target}"/wasm32-wasip2/release/*.wasm
