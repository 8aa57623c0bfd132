#!/usr/bin/env bash
# Leaks and flat memory, through the C worker (stress/worker.c against libhap.so):
#  (a) valgrind --leak-check=full --error-exitcode=1 on `c-worker leak`: every function of
#      hap.h, a refresh against the fake server, 200 resolves, a 401 report and the refresh
#      it triggers, bad input; everything freed.
#  (b) N hot resolves in one process (default 1,000,000), RSS sampled every N/10: memory is
#      flat when RSS(N) - RSS(N/10) < 1 MiB (the first tenth is the warm-up).
#
#   stress/leaks.sh [--short]      # --short: 200,000 hot resolves
#   HOT_RESOLVES=N stress/leaks.sh
# Needs stress/build.sh first. Exit status 1 when a check fails; the last lines are a summary.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
N=${HOT_RESOLVES:-1000000}
[[ "${1:-}" == "--short" ]] && N=${HOT_RESOLVES:-200000}
WORKER=$REPO/stress/build/c-worker
[[ -x $WORKER ]] || { echo "missing $WORKER: run stress/build.sh" >&2; exit 2; }
export HAP_LIBRARY_PATH=${HAP_LIBRARY_PATH:-$REPO/target/release/libhap.so}

TMP=$(mktemp -d /tmp/hap-leaks-XXXXXX)
coproc SERVER { exec python3 "$REPO/testing/fake_token_server.py" --exit-on-stdin-eof; }
SERVER_IN=${SERVER[1]}
read -r BASE <&"${SERVER[0]}"
cleanup() { exec {SERVER_IN}>&- 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT

home() { # a fresh home with an expired Claude Code login; prints the config JSON
  local d=$TMP/$1
  mkdir -p "$d/claude" "$d/hermes"
  local past=$(( $(date +%s) * 1000 - 60000 ))
  printf '{"claudeAiOauth": {"accessToken": "sk-ant-oat01-fake-%s", "refreshToken": "sk-ant-ort01-fake-%s", "expiresAt": %s, "scopes": ["user:inference"], "subscriptionType": "max"}, "otherTool": {"keep": true}}\n' \
    "$1" "$1" "$past" >"$d/claude/.credentials.json"
  chmod 600 "$d/claude/.credentials.json"
  printf '{"pool_path": "%s/hermes/auth.json", "credentials_path": "%s/claude/.credentials.json", "token_urls": ["%s/v1/oauth/token"], "lock_timeout_ms": 10000}' \
    "$d" "$d" "$BASE"
}

fail=0
echo "== (a) valgrind on the C worker: open, refresh, 200 resolves, 401 report, refresh, bad input"
VALGRIND_RESULT="skipped"
if ! command -v valgrind >/dev/null; then
  if command -v apt-get >/dev/null && [[ $(id -u) == 0 ]]; then
    (apt-get update -qq && apt-get install -y -qq valgrind >/dev/null) || true
  fi
fi
if command -v valgrind >/dev/null; then
  LOG=$TMP/valgrind.log
  if HAP_STRESS_CONFIG=$(home vg) valgrind --leak-check=full \
      --suppressions="$REPO/stress/valgrind.supp" --show-leak-kinds=definite,indirect,possible \
      --errors-for-leak-kinds=definite,indirect,possible --error-exitcode=1 \
      --log-file="$LOG" --num-callers=40 "$WORKER" leak >"$TMP/vg.out"; then
    VALGRIND_RESULT="PASS"
  else
    VALGRIND_RESULT="FAIL"
    fail=1
    grep -A45 "possibly lost in loss record\|definitely lost in loss record" "$LOG" | head -120
  fi
  grep -E "ERROR SUMMARY|definitely lost|indirectly lost|possibly lost|still reachable|in use at exit" "$LOG" | sed 's/^==[0-9]*== /  /'
  python3 -c 'import json,sys; s=json.loads(open(sys.argv[1]).read().splitlines()[-1]); print("  worker: %(calls)s resolves, %(ok)s ok, %(refreshed)s refreshed, errors %(errors)s" % s)' "$TMP/vg.out" || true
  VG_SUMMARY=$(grep -E "ERROR SUMMARY" "$LOG" | sed 's/^==[0-9]*== //; s/ (suppressed: \([0-9]*\) .*/, suppressed \1 (see valgrind.supp)/')
  VG_LOST=$(grep -E "definitely lost" "$LOG" | sed 's/^==[0-9]*== *//' || echo "definitely lost: 0 bytes (no leaks reported)")
else
  echo "  valgrind is not installed and apt-get is unavailable: skipped"
  VG_SUMMARY="not run"
  VG_LOST=""
fi

echo "== (b) $N hot resolves in one process (C worker), RSS every $((N / 10))"
HAP_STRESS_CONFIG=$(home hot) "$WORKER" hot "$N" >"$TMP/hot.out" || { fail=1; cat "$TMP/hot.out"; }
HOT=$(python3 - "$TMP/hot.out" "$N" <<'EOF'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
pts = [l for l in lines if "rss_kib" in l]
summ = lines[-1]
n = int(sys.argv[2])
for p in pts:
    print(f"  after {p['resolves']:>8} resolves: RSS {p['rss_kib']} KiB, {p['ns_per_resolve']} ns/resolve")
warm = pts[0]["rss_kib"]
end = pts[-1]["rss_kib"]
growth = end - warm
ok = summ["ok"] == summ["calls"] == n + 1 and growth < 1024
print(f"RESULT_LINE hot resolves {n}: RSS {warm} KiB after {pts[0]['resolves']} (warm-up), "
      f"{end} KiB after {pts[-1]['resolves']}: growth {growth} KiB (goal < 1024); "
      f"{pts[-1]['ns_per_resolve']} ns/resolve; failed calls {summ['calls'] - summ['ok']}; "
      f"{'PASS' if ok else 'FAIL'}")
EOF
)
echo "$HOT" | grep -v RESULT_LINE
HOT_LINE=$(echo "$HOT" | grep RESULT_LINE | sed 's/^RESULT_LINE //')
[[ $HOT_LINE == *PASS ]] || fail=1

echo
echo "== leaks summary"
echo "valgrind (C worker, leak mode): $VALGRIND_RESULT; $VG_SUMMARY; $VG_LOST"
echo "$HOT_LINE"
if [[ $fail == 0 ]]; then echo "RESULT: PASS"; else echo "RESULT: FAIL"; fi
exit $fail
