#!/usr/bin/env bash
# The CI version of the stress suite (< 4 minutes of running on 2 cores, after the build):
# 24 processes x >= 20 rotations with an outside writer, 30 crash iterations covering every
# injected point, valgrind on the C worker and 200k hot resolves. Exit status 1 on failure.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash stress/build.sh || exit 1
export HAP_LIBRARY_PATH=${HAP_LIBRARY_PATH:-$PWD/target/release/libhap.so}
results=()
rc=0
step() {
  local name=$1
  shift
  local t0=$SECONDS out
  out=$(mktemp)
  echo
  echo "######## $name"
  "$@" 2>&1 | tee "$out"
  local code=${PIPESTATUS[0]}
  # the child's last line is its RESULT
  results+=("$name ($((SECONDS - t0)) s): $(tail -1 "$out")")
  rm -f "$out"
  ((code == 0)) || rc=1
}
t_all=$SECONDS
step "cross_language --short" python3 stress/cross_language.py --short
step "crash_storm --short" python3 stress/crash_storm.py --short
step "leaks --short" bash stress/leaks.sh --short
echo
echo "######## stress (short) summary, $((SECONDS - t_all)) s"
printf '%s\n' "${results[@]}"
((rc == 0)) && echo "STRESS SHORT: PASS" || echo "STRESS SHORT: FAIL"
exit $rc
