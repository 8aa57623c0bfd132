#!/usr/bin/env bash
# Every benchmark of BENCHMARKS.md in one run, then one table.
#
#   bench/run_all.sh [--no-hermes] [--reps N] [--out DIR]
#
# Builds what it needs (cargo build --release, npm ci for the Node binding and its ffi-napi
# test package, go build, gcc for bench/*.c), then measures, in this order: hot resolve in
# Rust (criterion), C (bench/hot_resolve.c), Python (hap binding and raw ctypes; Hermes
# Agent's load_pool().select() on the same files), Node (koffi and ffi-napi), Go; `hap token`
# as one process per call beside `cat` (bench/cli_token.py); then the
# N-process refresh race (1, 8, 32 processes) for hap (C and Python workers) and for Hermes
# Agent's own pool (bench/race.py).
#
# Hermes Agent comes from PyPI into a throwaway venv, never into CI:
#   HERMES_VENV (default /tmp/hermes-venv) is created when it lacks hermes-agent, with
#   `python3 -m venv $HERMES_VENV && $HERMES_VENV/bin/pip install "$HERMES_AGENT_SPEC"`
#   (HERMES_AGENT_SPEC default: hermes-agent==0.19.0, the version BENCHMARKS.md measured).
#   --no-hermes skips every Hermes figure.
#
# Raw outputs and the table go to --out (default bench/results/<UTC time>/, not committed).
# Exits non-zero when any step fails; starts nothing in the background (every server and
# worker belongs to a step that waits for it and stops it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO="$PWD"

HERMES=1
REPS=5
OUT=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --no-hermes) HERMES=0 ;;
        --reps) REPS="$2"; shift ;;
        --out) OUT="$2"; shift ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "run_all.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
OUT="${OUT:-bench/results/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
HERMES_VENV="${HERMES_VENV:-/tmp/hermes-venv}"
HERMES_AGENT_SPEC="${HERMES_AGENT_SPEC:-hermes-agent==0.19.0}"

WORK="$(mktemp -d -t hap-bench.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT

step() {
    printf '\n== %s   (load average %s)\n' "$1" "$(cut -d' ' -f1-3 /proc/loadavg)"
    [[ -z "${OUT:-}" ]] || printf '%s | %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)" "$1" >>"$OUT/load.txt"
}

{
    echo "date_utc: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "git: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml 2>/dev/null || echo ' (src/ has uncommitted changes)')"
    echo "nproc: $(nproc)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "kernel: $(uname -sr)"
    echo "mem_total: $(awk '/MemTotal/ {print $2 " kB"}' /proc/meminfo)"
    echo "loadavg_start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "rustc: $(rustc --version)"
    echo "gcc: $(gcc --version | head -1)"
    echo "python: $(python3 --version 2>&1)"
    echo "node: $(node --version)"
    echo "go: $(go version)"
} >"$OUT/machine.txt"
cat "$OUT/machine.txt"

# ---------------------------------------------------------------------------------- builds
step "build: cargo build --release"
cargo build --release
export HAP_LIBRARY_PATH="$REPO/target/release/libhap.so"

step "build: npm ci (bindings/node, bindings/node/test/ffi-napi)"
# node-gyp (ffi-napi) must use the installed Node headers, as bindings/node/ci.sh does.
if [[ -z "${npm_config_nodedir:-}" ]]; then
    prefix="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")"
    [[ -f "$prefix/include/node/node_api.h" ]] && export npm_config_nodedir="$prefix"
fi
(cd bindings/node && npm ci --no-audit --no-fund --loglevel=error)
(cd bindings/node/test/ffi-napi && npm ci --no-audit --no-fund --loglevel=error)

step "build: go build (bindings/go)"
(cd bindings/go && go build ./...)

step "build: gcc -O2 bench/hot_resolve.c bench/race_worker.c"
mkdir -p bench/build
for prog in hot_resolve race_worker; do
    gcc -O2 -Wall -Wextra -Werror -I include "bench/$prog.c" -L target/release -lhap \
        -Wl,-rpath,"$REPO/target/release" -o "bench/build/$prog"
done

HERMES_PY=""
if [[ "$HERMES" == 1 ]]; then
    step "Hermes Agent venv: $HERMES_VENV ($HERMES_AGENT_SPEC)"
    if ! "$HERMES_VENV/bin/python" -c 'import agent.credential_pool' 2>/dev/null; then
        python3 -m venv "$HERMES_VENV"
        "$HERMES_VENV/bin/pip" install --quiet --disable-pip-version-check "$HERMES_AGENT_SPEC"
    fi
    HERMES_PY="$HERMES_VENV/bin/python"
    echo "hermes-agent: $("$HERMES_PY" -m pip show hermes-agent 2>/dev/null | awk '/^Version/ {print $2}')" \
        | tee -a "$OUT/machine.txt"
fi

# ----------------------------------------------------------------------------- hot resolve
step "hot resolve: Rust (cargo bench --bench resolve)"
# benches/resolve.rs's refresh case asserts `refreshed` right after rewriting the file; the
# store watch (src/store/watch.rs) may not have woken yet and then serves the still-valid cached
# token, so that assertion fails now and then on a loaded machine: one retry.
if ! cargo bench --bench resolve 2>&1 | tee "$OUT/criterion.txt"; then
    echo "cargo bench failed; retrying once (see the comment in bench/run_all.sh)"
    cargo bench --bench resolve 2>&1 | tee "$OUT/criterion.txt"
fi
for id in hot_resolve_rust_api hot_resolve_c_abi refresh/full_refresh_local_server; do
    cp "target/criterion/$id/new/estimates.json" "$OUT/criterion_${id//\//_}.json"
done

step "hot resolve: C (bench/build/hot_resolve)"
mkdir -p "$WORK/c/claude"
python3 - "$WORK/c/claude/.credentials.json" <<'PY'
import json, sys, time
json.dump({"claudeAiOauth": {"accessToken": "sk-ant-oat01-fake-c1", "refreshToken": "sk-ant-ort01-fake-c1",
           "expiresAt": int(time.time() * 1000) + 8 * 3_600_000, "scopes": ["user:inference"],
           "subscriptionType": "max"}}, open(sys.argv[1], "w"))
PY
C_CFG="{\"pool_path\": \"$WORK/c/hermes/auth.json\", \"credentials_path\": \"$WORK/c/claude/.credentials.json\", \"token_urls\": [\"http://127.0.0.1:9/v1/oauth/token\"]}"
bench/build/hot_resolve "$C_CFG" 31 20000 | tee "$OUT/c_hot.json"
if command -v strace >/dev/null; then
    # System calls of the whole process (all threads, setup included) for 4 x 10000 resolves.
    strace -f -c -o "$OUT/strace.txt" bench/build/hot_resolve "$C_CFG" 3 10000 >/dev/null
    tail -n 1 "$OUT/strace.txt"
else
    echo "strace not installed: system-call count skipped" | tee "$OUT/strace.txt"
fi

step "hot resolve: Python (bindings/python/bench/bench_resolve.py)"
PY_ARGS=(--number 20000 --repeat 9)
[[ -n "$HERMES_PY" ]] && PY_ARGS+=(--hermes-python "$HERMES_PY")
python3 bindings/python/bench/bench_resolve.py "${PY_ARGS[@]}" | tee "$OUT/python.txt"

step "hot resolve: Node (bindings/node/bench/bench_resolve.js)"
(cd bindings/node && node bench/bench_resolve.js --rounds 41 --calls 2000 --json) | tee "$OUT/node.json"

step "hot resolve: Go (go test -bench 'ResolveTokenHot$' -count 11)"
(cd bindings/go && go test -run '^$' -bench 'ResolveTokenHot$' -count 11 .) | tee "$OUT/go.txt"

# ------------------------------------------------------------------------------- hap token
step "hap token: one process per call, beside cat (bench/cli_token.py)"
python3 bench/cli_token.py --runs 101 --hap target/release/hap | tee "$OUT/cli_token.txt"

# ------------------------------------------------------------------------------------ race
TOOLS="hap-c,hap-python"
[[ -n "$HERMES_PY" ]] && TOOLS+=",hermes"
step "race: $TOOLS x N=1,8,32 x $REPS reps (bench/race.py)"
RACE_ARGS=(--tools "$TOOLS" --n 1,8,32 --reps "$REPS" --latency-ms 100 --json "$OUT/race.json")
[[ -n "$HERMES_PY" ]] && RACE_ARGS+=(--hermes-python "$HERMES_PY")
python3 bench/race.py "${RACE_ARGS[@]}" | tee "$OUT/race.txt"

echo "loadavg_end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"

# ----------------------------------------------------------------------------------- table
step "table"
{
    echo "## Run of $(sed -n 's/^date_utc: //p' "$OUT/machine.txt")"
    echo
    echo '```'
    cat "$OUT/machine.txt"
    echo '```'
    echo
    python3 bench/report.py "$OUT"
    echo
    echo '```'
    cat "$OUT/cli_token.txt"
    echo '```'
} | tee "$OUT/summary.md"
echo
echo "raw outputs and summary.md: $OUT"
