#!/usr/bin/env bash
# Builds {{name}}.wasm, a Weir `{{world}}` component, next to this script: Zig
# {{ziglang}} over the C bindings wit-bindgen generates from wit/ (through `zig
# translate-c`), wrapped by wasm-tools. Needs `zig` (or `python3 -m ziglang`,
# ziglang=={{ziglang}}), wit-bindgen {{wit_bindgen}} and wasm-tools {{wasm_tools}}: the
# gateway's examples/plugins/toolchains.sh installs them;
# `source "$(bash examples/plugins/toolchains.sh --env)"` puts them on PATH.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
if command -v zig >/dev/null; then zig=(zig); else zig=(python3 -m ziglang); fi
[[ -n "${ZIG:-}" ]] && zig=("$ZIG")
"${zig[@]}" version >/dev/null 2>&1 || {
    echo "error: zig not found; run the gateway's examples/plugins/toolchains.sh" >&2
    exit 1
}
for tool in wit-bindgen wasm-tools; do
    command -v "$tool" >/dev/null || {
        echo "error: $tool not found; run the gateway's examples/plugins/toolchains.sh" >&2
        exit 1
    }
done
rm -rf build && mkdir -p build/gen
wit-bindgen c wit --world {{world}} --out-dir build/gen >/dev/null 2>&1 ||
    wit-bindgen c wit --world {{world}} --out-dir build/gen
"${zig[@]}" translate-c build/gen/{{world}}.h -target wasm32-wasi -lc >build/gen/c.zig
(cd build && "${zig[@]}" build-exe -target wasm32-wasi -O ReleaseFast -fstrip -fno-entry \
    -mexec-model=reactor --stack 65536 -lc -femit-bin=core.wasm \
    --dep c --dep heap -Igen gen/{{world}}.c gen/{{world}}_component_type.o \
    -Mroot=../plugin.zig -Mc=gen/c.zig -Mheap=../heap.zig)
wasm-tools component new build/core.wasm -o {{name}}.wasm
echo "built $here/{{name}}.wasm"
