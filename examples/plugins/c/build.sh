#!/usr/bin/env bash
# Builds the C example plugins into OUT_DIR (default: ./out): mapper.wasm, authorizer.wasm.
# Needs clang, lld and wasi-libc (Debian: clang lld wasi-libc libclang-rt-dev-wasm32),
# wit-bindgen and wasm-tools; `bash ../toolchains.sh` installs them all.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
wit="$here/../../../wit"
out="$(mkdir -p "${1:-$here/out}" && cd "${1:-$here/out}" && pwd)"
build="$here/build"
for tool in clang wit-bindgen wasm-tools; do
    command -v "$tool" >/dev/null || {
        echo "error: $tool not found; run: bash $(dirname "$here")/toolchains.sh" >&2
        exit 1
    }
done

for world in mapper authorizer; do
    gen="$build/$world/gen"
    rm -rf "$gen" && mkdir -p "$gen"
    # C bindings straight from the WIT: $world.h, $world.c and the component type object.
    wit-bindgen c "$wit" --world "$world" --out-dir "$gen" >/dev/null 2>&1 ||
        wit-bindgen c "$wit" --world "$world" --out-dir "$gen"
    # A reactor module against wasi-libc (malloc, string functions): no WASI imports.
    clang --target=wasm32-wasi -O2 -mexec-model=reactor -Wall -Wextra -Werror \
        -Wno-unused-parameter -I"$gen" -I"$here/common" -Wl,--strip-debug \
        -o "$build/$world/core.wasm" \
        "$here/$world/${world}_impl.c" "$here/common/json.c" \
        "$gen/$world.c" "$gen/${world}_component_type.o"
    # Wrap the core module into a component.
    wasm-tools component new "$build/$world/core.wasm" -o "$out/$world.wasm"
done
