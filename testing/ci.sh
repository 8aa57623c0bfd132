#!/usr/bin/env bash
# CI for testing/: the fake Anthropic token server and its tests. Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python3 -m pytest --version >/dev/null 2>&1; then
  python3 -m pip install --quiet pytest
fi
python3 -m py_compile testing/fake_token_server.py testing/test_fake_token_server.py
python3 -m pytest -q -p no:cacheprovider testing/test_fake_token_server.py
