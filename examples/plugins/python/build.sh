#!/usr/bin/env bash
# Builds the Python example plugins into OUT_DIR (default: ./out): mapper.wasm,
# authorizer.wasm. Needs componentize-py 0.25 (`pip install componentize-py==0.25.1`;
# `bash ../toolchains.sh` installs it into its own venv).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
wit="$here/../../../wit"
out="$(mkdir -p "${1:-$here/out}" && cd "${1:-$here/out}" && pwd)"
command -v componentize-py >/dev/null || {
    echo "error: componentize-py not found; run: bash $(dirname "$here")/toolchains.sh" >&2
    exit 1
}
for world in mapper authorizer; do
    # Each plugin is its own app (app.py); componentize-py bundles CPython and the
    # app's modules, and generates the bindings itself.
    (cd "$here/$world" && componentize-py --wit-path "$wit" --world "$world" \
        componentize app --output "$out/$world.wasm" >/dev/null)
done
