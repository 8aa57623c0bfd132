#!/usr/bin/env bash
# Downloads the two pinned Claude Code releases the interop race runs (outside the repo, into
# ~/.cache/hap-ci/claude-code, so a second run costs nothing), checks each tarball against the
# npm registry's sha512 integrity pinned below, and unpacks it. npm pack never runs a
# package's install scripts. Prints the cache directory on stdout.
#
#   2.1.328: @anthropic-ai/claude-code-linux-x64, the Bun-compiled Linux binary (~370 MB
#            unpacked). @anthropic-ai/claude-code 2.1.328 is only a wrapper that picks this
#            optional dependency, so it is fetched directly.
#   2.1.112: @anthropic-ai/claude-code, the last release that ships cli.js (runs under node).
set -euo pipefail
CACHE="${HAP_CI_CACHE:-$HOME/.cache/hap-ci}/claude-code"
mkdir -p "$CACHE/tgz"

pins=(
  "2.1.328|@anthropic-ai/claude-code-linux-x64@2.1.328|anthropic-ai-claude-code-linux-x64-2.1.328.tgz|sha512-KuzL+dBHgDCFTHJxwW+xuBJdVKfBsesGx2BBcTOG9sYDGoAD7b1hUV8rsTS4xjoJsB2SmeGraGjBiFuhrYuC9w==|package/claude"
  "2.1.112|@anthropic-ai/claude-code@2.1.112|anthropic-ai-claude-code-2.1.112.tgz|sha512-9FUgJ0EOvILyhIqxFKNVliebiUjL68dwpEW3eGSSe0vkVDJ1c5qMDNWc22gW3zkD7zRAqtfQPSGv0t4vMM2DPA==|package/cli.js"
)

integrity() { # the npm "integrity" string of a file
  python3 -c 'import base64,hashlib,sys; print("sha512-"+base64.b64encode(hashlib.sha512(open(sys.argv[1],"rb").read()).digest()).decode())' "$1"
}

for pin in "${pins[@]}"; do
  IFS='|' read -r ver spec tgz want entry <<<"$pin"
  if [ -e "$CACHE/$ver/$entry" ] && [ -e "$CACHE/$ver/.verified" ]; then
    continue
  fi
  if [ ! -e "$CACHE/tgz/$tgz" ] || [ "$(integrity "$CACHE/tgz/$tgz")" != "$want" ]; then
    echo "fetch: npm pack $spec (into $CACHE/tgz)" >&2
    rm -f "$CACHE/tgz/$tgz"
    (cd "$CACHE/tgz" && npm pack --silent "$spec" >/dev/null)
  fi
  got="$(integrity "$CACHE/tgz/$tgz")"
  if [ "$got" != "$want" ]; then
    echo "fetch: $tgz integrity $got != pinned $want; refusing to run it" >&2
    exit 1
  fi
  rm -rf "$CACHE/$ver.tmp" && mkdir -p "$CACHE/$ver.tmp"
  tar -xzf "$CACHE/tgz/$tgz" -C "$CACHE/$ver.tmp"
  rm -rf "$CACHE/$ver" && mv "$CACHE/$ver.tmp" "$CACHE/$ver"
  touch "$CACHE/$ver/.verified"
done
echo "$CACHE"
