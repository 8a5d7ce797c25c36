#!/usr/bin/env bash
# Builds the Zig example plugins into OUT_DIR (default: ./out): mapper.wasm, authorizer.wasm.
# Needs zig 0.17 (`pip install ziglang==0.17.1` gives `python -m ziglang`), wit-bindgen
# and wasm-tools; `bash ../toolchains.sh` installs them all.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
wit="$here/../../../wit"
out="$(mkdir -p "${1:-$here/out}" && cd "${1:-$here/out}" && pwd)"
build="$here/build"
if command -v zig >/dev/null; then
    zig=(zig)
else
    zig=(python3 -m ziglang)
fi
[[ -n "${ZIG:-}" ]] && zig=("$ZIG")
"${zig[@]}" version >/dev/null 2>&1 || {
    echo "error: zig not found; run: bash $(dirname "$here")/toolchains.sh" >&2
    exit 1
}
for tool in wit-bindgen wasm-tools; do
    command -v "$tool" >/dev/null || {
        echo "error: $tool not found; run: bash $(dirname "$here")/toolchains.sh" >&2
        exit 1
    }
done

for world in mapper authorizer; do
    gen="$build/$world/gen"
    rm -rf "$gen" && mkdir -p "$gen"
    # The C bindings, as for C; Zig calls them through `zig translate-c` (Zig 0.17 has no @cImport).
    wit-bindgen c "$wit" --world "$world" --out-dir "$gen" >/dev/null 2>&1 ||
        wit-bindgen c "$wit" --world "$world" --out-dir "$gen"
    "${zig[@]}" translate-c "$gen/$world.h" -target wasm32-wasi -lc >"$gen/c.zig"
    # One reactor module: our Zig (root, json, config, heap modules) + the generated C glue.
    # heap.zig replaces Zig's libc malloc, which grows memory once per size class;
    # ReleaseFast (stripped) runs the JSON scanner faster than ReleaseSmall.
    (cd "$build/$world" &&
        "${zig[@]}" build-exe -target wasm32-wasi -O ReleaseFast -fstrip -fno-entry -mexec-model=reactor \
            --stack 65536 -lc -femit-bin=core.wasm \
            --dep c --dep json --dep config --dep heap -I"$gen" "$gen/$world.c" \
            "$gen/${world}_component_type.o" -Mroot="$here/$world/$world.zig" \
            -Mc="$gen/c.zig" -Mheap="$here/heap.zig" \
            --dep json -Mconfig="$here/config.zig" \
            -Mjson="$here/json.zig")
    # The linker keeps the component-type section, so the core module wraps directly.
    wasm-tools component new "$build/$world/core.wasm" -o "$out/$world.wasm"
done
