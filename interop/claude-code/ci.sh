#!/usr/bin/env bash
# The real Claude Code in scripts/test (issue 12, item 6): `run --short`, 3 rounds per
# release (2.1.328's Bun binary and 2.1.112's cli.js) against the release `hap` just built,
# in a loopback-only network namespace. ~75 s with the releases cached, ~2 min cold (the
# pinned tarballs, 190 MB, go to ~/.cache/hap-ci/claude-code; HAP_CI_CACHE moves it).
# Installs what a fresh Debian/Ubuntu machine lacks (iproute2, openssl, util-linux, node +
# npm); it needs root for unshare and the private /etc/hosts mount, and fails, never skips,
# without it. Exit status: 0 only when every round had exactly one POST, no invalid_grant,
# the file intact and every hap process the same token.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

if [[ "$(id -u)" != 0 ]]; then
    echo "claude-code interop: needs root (unshare --net --mount, a private /etc/hosts)" >&2
    exit 1
fi

node_ok() {
    command -v node >/dev/null && command -v npm >/dev/null &&
        [[ "$(node -p 'process.versions.node.split(".")[0]')" -ge 20 ]]
}
missing=()
command -v ip >/dev/null || missing+=(iproute2)
command -v openssl >/dev/null || missing+=(openssl)
command -v unshare >/dev/null || missing+=(util-linux)
command -v python3 >/dev/null || missing+=(python3)
node_ok || missing+=(nodejs npm)
if ((${#missing[@]})); then
    echo "== claude-code interop: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! node_ok; then
    echo "claude-code interop: node 20+ and npm are required (2.1.112 runs under node)" >&2
    exit 1
fi

[[ -x target/release/hap ]] || cargo build --release --locked --bin hap
exec interop/claude-code/run --short "$@"
