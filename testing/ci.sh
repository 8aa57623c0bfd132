#!/usr/bin/env bash
# CI for testing/: lint, then test the fake Anthropic token server. Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
pip_install() { python3 -m pip install --quiet --disable-pip-version-check "$@"; }
python3 -m pytest --version >/dev/null 2>&1 || pip_install pytest
python3 -m ruff --version >/dev/null 2>&1 || pip_install 'ruff==0.17.6'
(cd testing && python3 -m ruff check . && python3 -m ruff format --check .)
python3 -m pytest -q -p no:cacheprovider testing/test_fake_token_server.py
