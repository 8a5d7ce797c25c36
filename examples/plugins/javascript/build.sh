#!/usr/bin/env bash
# Builds the JavaScript example plugins into OUT_DIR (default: ./out): mapper.wasm,
# authorizer.wasm, with jco's QuickJS backend (synchronous exports, as the WIT is).
# Needs Node 20 and `npm ci` here (`bash ../toolchains.sh` does it).
# WEIR_JS_ENGINE=starlingmonkey builds with ComponentizeJS (SpiderMonkey) instead; with
# WEIR_WEVAL_BIN set to a weval binary (`cargo install weval --version 0.5.0`), ahead of
# time compiled (ComponentizeJS's own download of weval is not from a package registry).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
wit="$here/../../../wit"
out="$(mkdir -p "${1:-$here/out}" && cd "${1:-$here/out}" && pwd)"
[[ -x "$here/node_modules/.bin/jco" ]] || {
    echo "error: jco not installed; run: (cd $here && npm ci) or bash $(dirname "$here")/toolchains.sh" >&2
    exit 1
}
cd "$here"
for world in mapper authorizer; do
    case "${WEIR_JS_ENGINE:-quickjs}" in
    quickjs)
        node_modules/.bin/jco componentize "$world.js" --wit "$wit" --world-name "$world" \
            --backend quickjs --backend-qjs-disable-async --out "$out/$world.wasm" >/dev/null
        ;;
    starlingmonkey)
        # No wasi:http (the gateway does not offer it); clocks, random and stdio stay.
        aot=()
        [[ -n "${WEIR_WEVAL_BIN:-}" ]] && aot=(--aot --weval-bin "$WEIR_WEVAL_BIN")
        node_modules/.bin/componentize-js "$world.js" --wit "$wit" --world-name "$world" \
            --disable http fetch-event "${aot[@]}" --out "$out/$world.wasm" >/dev/null
        ;;
    *)
        echo "error: WEIR_JS_ENGINE must be quickjs or starlingmonkey" >&2
        exit 1
        ;;
    esac
done
