#!/usr/bin/env bash
# Soak: mixed traffic against one Weir process for --minutes (default 10); see
# bench/soak.py. Builds Weir and the plugins in release mode. CI runs a 45-second
# version against its debug build (`soak.py --short`, from .ci/test).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
rustup toolchain install >/dev/null 2>&1 || true  # the one rust-toolchain.toml pins
rustup target add wasm32-wasip2 >/dev/null 2>&1 || true
bash plugins/build.sh >/dev/null
cargo build --release -p weir
exec python3 bench/soak.py "$@"
