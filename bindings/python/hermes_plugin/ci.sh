#!/usr/bin/env bash
# CI for the Hermes Agent plugin: a real, unmodified hermes-agent 0.19.0 from the Python
# index, the hap binding and this plugin installed in its venv, then tests/ run by that
# venv's Python (races of real Hermes processes; Hermes' own pool methods in one process).
#
# The Hermes venv is large (~230 MB, a few minutes to install on 2 cores), so it is cached
# under ${HAP_CI_CACHE:-~/.cache/hap-ci}/hermes-agent-0.19.0 and reused while it holds that
# exact version; a partial install (killed run) has no .complete marker and is redone.
# The binding and the plugin are reinstalled every run (they must match this checkout).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BINDING="$(cd "$HERE/.." && pwd)"
HERMES_VERSION="0.19.0"
CACHE="${HAP_CI_CACHE:-$HOME/.cache/hap-ci}"
VENV="$CACHE/hermes-agent-$HERMES_VERSION"
WORK="$(mktemp -d -t hap-hermes-ci.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT

PY="${HERMES_BASE_PYTHON:-python3}"
if ! "$PY" -c 'import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] < (3, 14)))'; then
    echo "hermes plugin: hermes-agent $HERMES_VERSION needs Python 3.11-3.13; $PY is $("$PY" -V 2>&1)." >&2
    echo "Set HERMES_BASE_PYTHON to such an interpreter." >&2
    exit 1
fi

if [[ -f "$VENV/.complete" ]]; then
    echo "== hermes plugin: reusing $VENV"
else
    echo "== hermes plugin: creating $VENV (hermes-agent==$HERMES_VERSION from the Python index)"
    rm -rf "$VENV"
    mkdir -p "$CACHE"
    "$PY" -m venv "$VENV"
    # setuptools: the binding and the plugin build without an isolated build env each run.
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        "hermes-agent==$HERMES_VERSION" "pytest==9.1.1" "setuptools==80.9.0"
    touch "$VENV/.complete"
fi

echo "== hermes plugin: install the binding and the plugin into the Hermes venv"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check --quiet)
# The binding wheel bundles HAP_LIBRARY_PATH when set (else its build hook runs cargo).
"${PIP[@]}" wheel --no-build-isolation --no-deps -w "$WORK/wheel" "$BINDING"
# --no-deps: the plugin names the binding by its distribution name `hap-oauth`, which must
# come from this checkout, never from the index.
"${PIP[@]}" install --no-build-isolation --no-deps --force-reinstall \
    "$WORK"/wheel/*.whl "$HERE"
(cd / && env -u HAP_LIBRARY_PATH "$VENV/bin/python" -c \
    'import importlib.metadata as m; print("hermes-agent", m.version("hermes-agent"), "+ hap-oauth-hermes", m.version("hap-oauth-hermes"))')

echo "== hermes plugin: pytest (real Hermes processes, fake token server)"
# The installed binding loads its bundled libhap: the one a user of the plugin would get.
cd "$HERE"
# The pytest script (not `python -m`) keeps this folder off sys.path: the installed plugin runs.
env -u HAP_LIBRARY_PATH "$VENV/bin/pytest" -q -p no:cacheprovider tests
