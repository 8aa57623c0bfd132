#!/usr/bin/env bash
# The agent suite of scripts/test (issue 15): the tests of tests/agent.rs that need more than
# `cargo test` has: the real `anthropic` Python SDK (a venv), root (a throwaway user for the
# SO_PEERCRED test) and systemd-analyze (the shipped unit). The other agent tests run in the
# ordinary `cargo test`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

if ! command -v systemd-analyze >/dev/null; then
    echo "== agent: installing systemd (for systemd-analyze)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
fi

VENV="${HAP_AGENT_VENV:-${TMPDIR:-/tmp}/hap-agent-venv}"
# The SDK release whose profile format docs/AGENT.md describes (anthropic/lib/credentials/).
SDK="anthropic==2.14.0"
if ! "$VENV/bin/python" -c 'import anthropic, sys; sys.exit(anthropic.__version__ != "2.14.0")' 2>/dev/null; then
    echo "== agent: venv with $SDK"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$SDK"
fi

echo "== agent: build (libhap for the ctypes readers, the example readers)"
cargo build --features fault-injection --locked --lib --bins --examples

echo "== agent: cargo test --test agent -- --ignored"
export HAP_AGENT_PYTHON="$VENV/bin/python"
# The library the ctypes readers load: this very build, not an older release one.
export HAP_LIBRARY_PATH="$PWD/target/debug/libhap.so"
if [[ "$(id -u)" == 0 ]]; then
    export HAP_TEST_REQUIRE_ROOT=1
fi
cargo test --features fault-injection --locked --test agent -- --ignored --test-threads 1 --nocapture
