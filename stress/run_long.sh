#!/usr/bin/env bash
# The report version of the stress suite (about 20 minutes on 2 cores): 32 processes for
# 5 minutes (~150 rotations) with an outside writer, 260 crash iterations, valgrind on the C
# worker and 1,000,000 hot resolves. Output is also saved to stress/results/long-<date>.log.
# Exit status 1 on failure.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash stress/build.sh || exit 1
mkdir -p stress/results
exec > >(tee "stress/results/long-$(date +%Y%m%d-%H%M%S).log") 2>&1
export HAP_LIBRARY_PATH=${HAP_LIBRARY_PATH:-$PWD/target/release/libhap.so}
echo "repo $(git rev-parse --short HEAD) ($(git status --porcelain -- src | wc -l) changed files in src/); \
libhap.so built $(date -r "$HAP_LIBRARY_PATH" '+%F %T'); $(nproc) cores; $(date '+%F %T')"
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
step "cross_language --long" python3 stress/cross_language.py --long
step "crash_storm --long" python3 stress/crash_storm.py --long
step "leaks (1,000,000 hot resolves)" bash stress/leaks.sh
echo
echo "######## stress (long) summary, $((SECONDS - t_all)) s"
printf '%s\n' "${results[@]}"
((rc == 0)) && echo "STRESS LONG: PASS" || echo "STRESS LONG: FAIL"
exit $rc
