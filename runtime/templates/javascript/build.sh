#!/usr/bin/env bash
# Builds {{name}}.wasm, a Weir `{{world}}` component, next to this script, with jco's
# QuickJS backend (synchronous exports, as the WIT's are).
#   npm ci          # once: jco, as package-lock.json pins it (Node 20.19 or newer)
#   bash build.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
[[ -x node_modules/.bin/jco ]] || {
    echo "error: jco is not installed here; run: npm ci" >&2
    exit 1
}
node_modules/.bin/jco componentize plugin.js --wit wit --world-name {{world}} \
    --backend quickjs --backend-qjs-disable-async --out {{name}}.wasm >/dev/null
echo "built $here/{{name}}.wasm"
