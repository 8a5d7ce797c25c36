#!/usr/bin/env bash
# Builds the example plugins of every language (or the ones named) into
# OUT_DIR/<language>/{mapper,authorizer}.wasm and checks that each is a component.
#
#   bash examples/plugins/build.sh [--out OUT_DIR] [rust javascript python c zig]
#
# The toolchains come from toolchains.sh (run it once; it is idempotent); this script
# only builds, and fails naming the tool that is missing. A language whose outputs are
# newer than all its sources (and wit/, sdk/) is skipped; WEIR_REBUILD=1 forces it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/out"
if [[ "${1:-}" == --out ]]; then
    out="$2"
    shift 2
fi
languages=("$@")
((${#languages[@]})) || languages=(rust javascript python c zig)

# The pinned tools live outside PATH until toolchains.sh's env file is sourced.
env_file="$(bash "$here/toolchains.sh" --env)"
# shellcheck disable=SC1090
source "$env_file"

# Whether OUT/<lang>/ is older than some source of that language (or the WIT).
stale() {
    local lang=$1 world
    for world in mapper authorizer; do
        [[ -f "$out/$lang/$world.wasm" ]] || return 0
        [[ -n "$(find "$here/$lang" "$here/../../wit" "$here/../../sdk" \
            \( -name out -o -name build -o -name target -o -name node_modules -o -name __pycache__ \) -prune \
            -o -type f -newer "$out/$lang/$world.wasm" -print -quit)" ]] && return 0
    done
    return 1
}

status=0
for lang in "${languages[@]}"; do
    started=$SECONDS
    if [[ "${WEIR_REBUILD:-}" != 1 ]] && ! stale "$lang"; then
        echo "$lang: up to date ($out/$lang)"
        continue
    fi
    if ! bash "$here/$lang/build.sh" "$out/$lang"; then
        echo "error: building the $lang example plugins failed" >&2
        status=1
        continue
    fi
    for world in mapper authorizer; do
        wasm="$out/$lang/$world.wasm"
        # A component starts with the wasm magic and the component layer: 00 61 73 6d 0d 00 01 00.
        if [[ "$(head -c 8 "$wasm" | od -An -tx1 | tr -d ' \n')" != 0061736d0d000100 ]]; then
            echo "error: $wasm is not a WebAssembly component" >&2
            status=1
        fi
    done
    printf '%-10s %3ds  mapper %9d B  authorizer %9d B\n' "$lang" $((SECONDS - started)) \
        "$(wc -c <"$out/$lang/mapper.wasm")" "$(wc -c <"$out/$lang/authorizer.wasm")"
done
exit "$status"
