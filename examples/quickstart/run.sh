#!/usr/bin/env bash
# Builds the gateway and the shipped plugins from source, then serves the quickstart.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
rustup toolchain install >/dev/null 2>&1 || true  # the one rust-toolchain.toml pins
rustup target add wasm32-wasip2 >/dev/null 2>&1 || true
bash plugins/build.sh
cargo build --release -p weir
exec target/release/weir serve --config examples/quickstart/weir.toml "$@"
