#!/usr/bin/env bash
# Builds {{name}}.wasm, a Weir `{{world}}` component, next to this script, with
# componentize-py {{componentize_py}} (it bundles CPython and app.py's modules).
#   bash build.sh          # build
#   bash build.sh test     # run test_logic.py on this machine (python3)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
if [[ "${1:-}" == test ]]; then
    exec python3 -m unittest -v test_logic
fi
have="$(componentize-py --version 2>/dev/null | awk '{print $2}')" || true
[[ "$have" == {{componentize_py}} ]] || {
    echo "error: componentize-py {{componentize_py}} is needed (found: ${have:-none});" \
        "run the gateway's examples/plugins/toolchains.sh, then" \
        'source "$(bash examples/plugins/toolchains.sh --env)"' >&2
    exit 1
}
componentize-py --wit-path wit --world {{world}} componentize app --output {{name}}.wasm >/dev/null
echo "built $here/{{name}}.wasm"
