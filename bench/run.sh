#!/usr/bin/env bash
# Load benchmark: Weir against a direct upstream, nginx and (when installed) HAProxy,
# interleaved, on loopback. Usage: bench/run.sh [--rounds N] [--duration S] [--scenarios a,b]
# [--baseline OLDER_WEIR]
# Installs wrk and nginx from Debian when missing (root), builds Weir and the plugins in
# release mode, then runs bench/run.py. Not part of CI: numbers need a quiet machine.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx-light)
if ((${#need[@]})); then
    apt-get update -qq && apt-get install -y -qq "${need[@]}"
fi
rustup toolchain install >/dev/null 2>&1 || true  # the one rust-toolchain.toml pins
rustup target add wasm32-wasip2 >/dev/null 2>&1 || true
bash plugins/build.sh >/dev/null
cargo build --release -p weir
exec python3 bench/run.py "$@"
