#!/usr/bin/env bash
# The stress suite: cross-language stress, crash storm, leaks. Exit status 1 on failure.
#   bash stress/run.sh --short   CI (< 4 minutes of running on 2 cores, after the build):
#                                24 processes x >= 20 rotations with an outside writer, 30 crash
#                                iterations covering every injected point, valgrind on the C
#                                worker and 200k hot resolves.
#   bash stress/run.sh --long    the report (about 11 minutes of running on 2 cores): 32 processes for
#                                5 minutes (~150 rotations) with an outside writer, 260 crash
#                                iterations, valgrind and 1,000,000 hot resolves; output also
#                                saved to stress/results/long-<date>.log.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mode=${1:-}
case $mode in
  --short | --long) ;;
  *) echo "usage: bash stress/run.sh --short|--long" >&2; exit 2 ;;
esac
bash stress/build.sh || exit 1
export HAP_LIBRARY_PATH=${HAP_LIBRARY_PATH:-$PWD/target/release/libhap.so}
if [ "$mode" = --long ]; then
  mkdir -p stress/results
  exec > >(tee "stress/results/long-$(date +%Y%m%d-%H%M%S).log") 2>&1
  echo "repo $(git rev-parse --short HEAD) ($(git status --porcelain -- src | wc -l) changed files in src/); \
libhap.so built $(date -r "$HAP_LIBRARY_PATH" '+%F %T'); $(nproc) cores; $(date '+%F %T')"
fi
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
step "cross_language $mode" python3 stress/cross_language.py "$mode"
step "crash_storm $mode" python3 stress/crash_storm.py "$mode"
if [ "$mode" = --short ]; then
  step "leaks --short" bash stress/leaks.sh --short
else
  step "leaks (1,000,000 hot resolves)" bash stress/leaks.sh
fi
label=${mode#--}
echo
echo "######## stress ($label) summary, $((SECONDS - t_all)) s"
printf '%s\n' "${results[@]}"
((rc == 0)) && echo "STRESS ${label^^}: PASS" || echo "STRESS ${label^^}: FAIL"
exit $rc
