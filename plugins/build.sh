#!/usr/bin/env bash
# Builds every plugin component: the shipped ones (plugins/) and the test-only ones
# (tests/plugins/), into $WEIR_PLUGIN_TARGET_DIR/wasm32-wasip2/release/*.wasm
# (default: plugins/target).
#
# One `cargo build --workspace` per cargo workspace. (weir-sdk has no world features, so
# plugins of different worlds may share one invocation; `-p NAME` works as well.)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
target_dir="${WEIR_PLUGIN_TARGET_DIR:-$here/target}"
out="$target_dir/wasm32-wasip2/release"

# Settings of an enclosing cargo build (when run from a build script) or of the
# caller's environment must not leak into the guest builds.
unset CARGO_ENCODED_RUSTFLAGS RUSTFLAGS CARGO_BUILD_RUSTFLAGS CARGO_BUILD_TARGET \
    CARGO_TARGET_DIR CARGO_BUILD_TARGET_DIR CARGO_MAKEFLAGS MAKEFLAGS MFLAGS \
    RUSTC_WRAPPER RUSTC_WORKSPACE_WRAPPER CARGO_PRIMARY_PACKAGE

if command -v rustup >/dev/null 2>&1; then
    rustup target add wasm32-wasip2 >/dev/null 2>&1 ||
        echo "warning: rustup could not add wasm32-wasip2; using the installed target" >&2
fi

# Every component the two workspaces produce (artifact names use `_`).
components=(
    param_mapping jwt_authorizer cors oauth_introspection
    echo_mapper counting_authorizer trap spin hog trap_authorizer call_counter
    hostile stamp_v1 stamp_v2
)

for workspace in plugins tests/plugins; do
    cargo build --release --target wasm32-wasip2 --workspace \
        --manifest-path "$root/$workspace/Cargo.toml" --target-dir "$target_dir"
done

# A component starts with the wasm magic and the component layer: 00 61 73 6d 0d 00 01 00.
status=0
for stem in "${components[@]}"; do
    wasm="$out/$stem.wasm"
    if [[ "$(head -c 8 "$wasm" | od -An -tx1 | tr -d ' \n')" != 0061736d0d000100 ]]; then
        echo "error: $wasm is not a WebAssembly component" >&2
        status=1
    else
        printf '%8d  %s\n' "$(wc -c <"$wasm")" "$wasm"
    fi
done
exit "$status"
