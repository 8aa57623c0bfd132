#!/usr/bin/env bash
# CI for bindings/node (hap-oauth). Called by the repo's .ci/run after
# `cargo build --release` with HAP_LIBRARY_PATH exported; also runnable by hand.
# Installs everything from the npm registry (hap-oauth's dev tools, the ffi-napi
# fork, the official Anthropic SDK for the recipe test), then: eslint, tsc, node --test,
# and a short benchmark run (it must work; its figures are not judged here).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
here="$(pwd)"

if [[ -z "${HAP_LIBRARY_PATH:-}" ]]; then
  built="$(cd ../.. && pwd)/target/release/libhap.so"
  [[ -f "$built" ]] || { echo "ci.sh: set HAP_LIBRARY_PATH or run cargo build --release at the repo root" >&2; exit 1; }
  export HAP_LIBRARY_PATH="$built"
fi
echo "node $(node --version), npm $(npm --version), libhap: $HAP_LIBRARY_PATH"

# node-gyp (for the ffi-napi compatibility test) must use the installed Node
# headers: it may not download them. Point it at them unless npm already is.
if [[ -z "${npm_config_nodedir:-}" ]] && [[ "$(npm config get nodedir)" == "undefined" || -z "$(npm config get nodedir)" ]]; then
  prefix="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")"
  if [[ -f "$prefix/include/node/node_api.h" ]]; then
    export npm_config_nodedir="$prefix"
  fi
fi

npm_ci() { (cd "$1" && npm ci --no-audit --no-fund --loglevel=error); }

echo "== npm ci (hap-oauth)"
npm_ci "$here"
echo "== npm ci (test/ffi-napi: @2060.io/ffi-napi + ref-napi, built with node-gyp)"
npm_ci "$here/test/ffi-napi"
node -e "require('./test/ffi-napi/node_modules/@2060.io/ffi-napi'); require('./test/ffi-napi/node_modules/@2060.io/ref-napi')"
echo "== npm ci (test/anthropic-sdk: the official @anthropic-ai/sdk, for the createFetch recipe test)"
npm_ci "$here/test/anthropic-sdk"

echo "== eslint"
npx --no-install eslint .
echo "== tsc --noEmit (test/types)"
npx --no-install tsc -p test/types

echo "== node --test"
node --test test/*.test.js

echo "== benchmark (short run)"
node bench/bench_resolve.js --rounds 5 --calls 500
