#!/usr/bin/env bash
# Installs the Node runtime interface client (aws-lambda-ric, with the Express adapter
# the tests use) exactly as package-lock.json pins it, into DIR (default
# ${CARGO_TARGET_DIR:-target}/lambda-node), for the Node cases of the Lambda
# end-to-end tests. Idempotent: a DIR whose lock file matches is left alone.
#
#   bash tests/lambda-node/install.sh [DIR]
#   bash tests/lambda-node/install.sh --packages   # only the Debian packages it needs
#
# aws-lambda-ric compiles its native part (curl, aws-lambda-cpp, a Node addon) when
# installed: 6 to 13 minutes on 2 cores (80 s of CPU), once. It needs cmake, autoconf,
# automake, libtool and g++ (installed with apt-get when missing; root or sudo), and node
# and npm.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
mode=install
if [[ "${1:-}" == --packages ]]; then
    mode=packages
    shift
fi
dest="${1:-${CARGO_TARGET_DIR:-$here/../../target}/lambda-node}"
note() { printf 'lambda-node: %s\n' "$*" >&2; }

if [[ "$mode" == install ]] && cmp -s "$here/package-lock.json" "$dest/package-lock.json" &&
    [[ -f "$dest/node_modules/aws-lambda-ric/dist/rapid-client.node" ]]; then
    note "present ($dest)"
    exit 0
fi

apt_packages=(cmake autoconf automake libtool g++ make)
command -v node >/dev/null 2>&1 || apt_packages+=(nodejs)
command -v npm >/dev/null 2>&1 || apt_packages+=(npm)
apt_missing=()
for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || apt_missing+=("$p")
done
if ((${#apt_missing[@]})); then
    note "apt-get install ${apt_missing[*]}"
    sudo=""
    [[ "$(id -u)" == 0 ]] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${apt_missing[@]}" >/dev/null
fi
[[ "$mode" == install ]] || exit 0

# Into a fresh directory beside DIR, renamed when complete: an interrupted install
# never looks like a finished one.
note "npm ci into $dest (compiles aws-lambda-ric: minutes)"
tmp="$dest.tmp"
rm -rf "$tmp"
mkdir -p "$tmp"
cp "$here/package.json" "$here/package-lock.json" "$tmp/"
jobs="$(nproc 2>/dev/null || echo 2)"
(cd "$tmp" && MAKEFLAGS="-j$jobs" JOBS="$jobs" npm ci --no-audit --no-fund --loglevel=error)
[[ -f "$tmp/node_modules/aws-lambda-ric/dist/rapid-client.node" ]] || {
    note "npm ci finished without aws-lambda-ric's native addon"
    exit 1
}
rm -rf "$dest"
mv "$tmp" "$dest"
note "installed ($dest)"
