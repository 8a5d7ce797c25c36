#!/usr/bin/env bash
# WebSocket benchmark: idle-connection memory and message round trips (bench/ws.py).
# Installs nginx from Debian when missing (root) and builds Weir and the load client in
# release mode. Not part of CI.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
command -v nginx >/dev/null || { apt-get update -qq && apt-get install -y -qq nginx-light; }
cargo build --release -p weir --bin weir --example ws_load
exec python3 bench/ws.py "$@"
