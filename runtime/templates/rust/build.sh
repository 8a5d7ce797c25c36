#!/usr/bin/env bash
# Builds {{name}}.wasm, a Weir `{{world}}` component, next to this script.
#   bash build.sh          # build
#   bash build.sh test     # run the tests on this machine
# Needs Rust (rust-toolchain.toml pins it, with the wasm32-wasip2 target).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
target="${CARGO_TARGET_DIR:-$here/target}"
if [[ "${1:-}" == test ]]; then
    host="$(rustc -vV | sed -n 's/^host: //p')"
    exec cargo test --locked --target "$host" --target-dir "$target"
fi
cargo build --release --locked --target wasm32-wasip2 --target-dir "$target"
cp "$target/wasm32-wasip2/release/{{crate}}.wasm" "$here/{{name}}.wasm"
echo "built $here/{{name}}.wasm"
