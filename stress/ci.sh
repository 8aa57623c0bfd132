#!/usr/bin/env bash
# CI for stress/: lint the drivers and workers, then the short stress run (stress/run.sh --short).
# Expects the lead's .ci/run to have built target/release; builds the rest itself.
# Set HAP_FAULT_WORKER=target/debug/examples/hap_worker (built by `cargo test --features
# fault-injection`) to skip the separate fault-injection release build (~3 min on 2 cores).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python3 -m ruff --version >/dev/null 2>&1 ||
  python3 -m pip install --quiet --disable-pip-version-check 'ruff==0.17.6'
(cd stress && python3 -m ruff check . && python3 -m ruff format --check .)
for f in stress/*.sh; do bash -n "$f"; done
# scripts/test has just run `cargo test --features fault-injection`, which leaves a
# fault-injection build of the worker in target/debug/examples: use it when it is one.
dbg=target/debug/examples/hap_worker
if [[ -z ${HAP_FAULT_WORKER:-} && -x $dbg ]] && grep -q "mid_write:" "$dbg"; then
  export HAP_FAULT_WORKER=$PWD/$dbg
fi
bash stress/run.sh --short
