#!/usr/bin/env bash
# CI for the Python binding: install the package the way a user does, lint, type-check, test.
# Called by .ci/run after `cargo build --release` at the repo root, with HAP_LIBRARY_PATH
# exported; works without it too (then the tests load the library bundled by the install).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK="$(mktemp -d -t hap-python-ci.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT

echo "== python binding: venv"
python3 -m venv "$WORK/venv"
BIN="$WORK/venv/bin"
# The HTTP libraries and the official SDK the adapters are tested against, from the index.
"$BIN/python" -m pip install --quiet --disable-pip-version-check \
    "ruff==0.16.9" "mypy==2.4.0" "pytest==9.1.1" \
    "httpx==0.28.1" "requests==2.34.2" "types-requests==2.33.0.20261030" "anthropic==2.14.0"

echo "== python binding: pip install ./bindings/python (cargo build --release, bundled libhap)"
# Without HAP_LIBRARY_PATH the build hook runs cargo on the repo (a no-op after .ci/run's build).
env -u HAP_LIBRARY_PATH "$BIN/python" -m pip install --quiet --disable-pip-version-check "$HERE"
(cd / && env -u HAP_LIBRARY_PATH "$BIN/python" -c \
    'import hap_oauth as hap; print("installed", hap.__version__, "loads", hap.library_path(), hap.abi_version())')

if [[ -n "${HAP_LIBRARY_PATH:-}" ]]; then
    echo "== python binding: wheel built from HAP_LIBRARY_PATH (cargo skipped)"
    "$BIN/python" -m pip wheel --quiet --disable-pip-version-check --no-deps \
        -w "$WORK/wheel" "$HERE"
    "$BIN/python" - "$WORK/wheel" <<'PY'
import pathlib, sys, zipfile
wheels = list(pathlib.Path(sys.argv[1]).glob("hap_oauth-*-py3-none-linux_*.whl"))
assert len(wheels) == 1, wheels
names = zipfile.ZipFile(wheels[0]).namelist()
assert "hap_oauth/libhap.so" in names and "hap_oauth/py.typed" in names, names
print("wheel", wheels[0].name, "bundles hap_oauth/libhap.so")
PY
fi

cd "$HERE"
echo "== python binding: ruff"
"$BIN/ruff" check hap_oauth tests bench demo_worker.py setup.py hermes_plugin
"$BIN/ruff" format --check hap_oauth tests bench demo_worker.py setup.py hermes_plugin

echo "== python binding: mypy --strict"
"$BIN/mypy" --strict hap_oauth demo_worker.py bench/bench_resolve.py bench/bench_loop_stall.py \
    hermes_plugin/hap_oauth_hermes

echo "== python binding: pytest"
# The pytest script (not `python -m`) keeps this folder off sys.path: tests import the
# installed package.
"$BIN/pytest" -q -p no:cacheprovider tests

echo "== hermes agent plugin: real hermes-agent 0.19.0 processes (hermes_plugin/ci.sh)"
bash "$HERE/hermes_plugin/ci.sh"
