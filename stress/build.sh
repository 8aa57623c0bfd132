#!/usr/bin/env bash
# Builds everything the stress scripts run: libhap (release), the fault-injection Rust worker
# (target/fault, so target/release stays fault-free), the C worker, the Go worker, and the
# Node binding's packages (npm ci). Needs only the toolchains. Skips what is already there
# unless STRESS_REBUILD=1.
#   HAP_FAULT_WORKER=/path/to/hap_worker   use a fault-injection worker built elsewhere, e.g.
#   target/debug/examples/hap_worker after `cargo test --features fault-injection` (CI).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
mkdir -p stress/build
t0=$SECONDS
if [[ ! -f target/release/libhap.so || ${STRESS_REBUILD:-0} == 1 ]]; then
  echo "== cargo build --release --lib"
  cargo build --release --quiet --lib
fi
if [[ -n ${HAP_FAULT_WORKER:-} ]]; then
  echo "== fault-injection worker: $HAP_FAULT_WORKER (HAP_FAULT_WORKER)"
  [[ -x $HAP_FAULT_WORKER ]] || { echo "HAP_FAULT_WORKER is not an executable" >&2; exit 1; }
else
  echo "== fault-injection worker (cargo build --release --features fault-injection --example hap_worker --target-dir target/fault)"
  cargo build --release --quiet --features fault-injection --example hap_worker --target-dir target/fault
fi
echo "== C worker (gcc -Wall -Wextra -Werror)"
cc -O2 -g -Wall -Wextra -Werror -std=c11 -I include stress/worker.c -L target/release -lhap \
  -Wl,-rpath,"$REPO/target/release" -lpthread -o stress/build/c-worker
echo "== Go worker (go build, go vet)"
(cd stress/workers/go && CGO_ENABLED=1 go build -o ../../build/go-worker . && go vet .)
if [[ ! -d bindings/node/node_modules/koffi || ${STRESS_REBUILD:-0} == 1 ]]; then
  echo "== Node binding packages (npm ci in bindings/node)"
  (cd bindings/node && npm ci --no-audit --no-fund --loglevel=error --ignore-scripts >/dev/null)
fi
node --check stress/workers/worker.js
echo "== built in $((SECONDS - t0)) s"
