#!/usr/bin/env bash
# Builds {{name}}.wasm, a Weir `{{world}}` component, next to this script: C bindings
# generated from wit/ by wit-bindgen, compiled by clang against wasi-libc (no WASI
# imports), wrapped by wasm-tools.
# Needs clang, lld, wasi-libc (Debian: clang lld wasi-libc libclang-rt-dev-wasm32),
# wit-bindgen {{wit_bindgen}} and wasm-tools {{wasm_tools}}: the gateway's
# examples/plugins/toolchains.sh installs them; `source "$(bash examples/plugins/toolchains.sh --env)"`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
for tool in clang wit-bindgen wasm-tools; do
    command -v "$tool" >/dev/null || {
        echo "error: $tool not found; run the gateway's examples/plugins/toolchains.sh" >&2
        exit 1
    }
done
rm -rf build && mkdir -p build/gen
wit-bindgen c wit --world {{world}} --out-dir build/gen >/dev/null 2>&1 ||
    wit-bindgen c wit --world {{world}} --out-dir build/gen
clang --target=wasm32-wasi -O2 -mexec-model=reactor -Wall -Wextra -Werror \
    -Wno-unused-parameter -Ibuild/gen -I. -Wl,--strip-debug -o build/core.wasm \
    plugin.c json.c build/gen/{{world}}.c build/gen/{{world}}_component_type.o
wasm-tools component new build/core.wasm -o {{name}}.wasm
echo "built $here/{{name}}.wasm"
