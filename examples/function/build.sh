#!/usr/bin/env bash
# Builds the example functions into OUT_DIR (default: ./out): hello-rust.wasm and
# hello-python.wasm (componentize-py, from `bash ../plugins/toolchains.sh`; with
# WEIR_SKIP_POLYGLOT=1 only the Rust one).
# The wasi:http WIT the Python component is built against comes from the
# wasmtime-wasi-http crate Weir itself is built with, so both sides agree on it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$(mkdir -p "${1:-$here/out}" && cd "${1:-$here/out}" && pwd)"

cargo build --release --target wasm32-wasip2 --manifest-path "$here/rust/Cargo.toml" \
    --target-dir "${CARGO_TARGET_DIR:-$here/rust/target}"
cp "${CARGO_TARGET_DIR:-$here/rust/target}/wasm32-wasip2/release/hello_rust.wasm" "$out/hello-rust.wasm"
[[ "${WEIR_SKIP_POLYGLOT:-}" == 1 ]] && exit 0

toolchains="${WEIR_TOOLCHAINS:-$HOME/.cache/weir/toolchains}"
[[ -f "$toolchains/env.sh" ]] && source "$toolchains/env.sh"
command -v componentize-py >/dev/null || {
    echo "error: componentize-py not found; run: bash $here/../plugins/toolchains.sh" >&2
    exit 1
}
manifest="$(cargo metadata --format-version 1 --manifest-path "$here/../../Cargo.toml" |
    python3 -c 'import json, sys
print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "wasmtime-wasi-http"))')"
wit="$(dirname "$manifest")/wit"
world="wasi:http/proxy@$(sed -n 's/^package wasi:http@\(.*\);/\1/p' "$wit/deps/http.wit")"
(cd "$here/python" && componentize-py -d "$wit" -w "$world" componentize app \
    --output "$out/hello-python.wasm" >/dev/null)
