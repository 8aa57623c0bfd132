#!/usr/bin/env bash
# Long fuzz campaign: every target for SECONDS (default 240) each, then minimise each corpus
# into fuzz/corpus/<target>/. Needs cargo-fuzz and a nightly toolchain (or RUSTC_BOOTSTRAP=1
# with stable, see README.md). Logs go to fuzz/logs/ (ignored by git).
#   fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_EACH=${1:-240}
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  TARGETS=(fuzz_config fuzz_requests fuzz_credentials_file fuzz_pool_file fuzz_token_response fuzz_token_body fuzz_c_abi_open)
fi
TOOLCHAIN=${HAP_FUZZ_TOOLCHAIN:-+nightly}
mkdir -p logs
cargo $TOOLCHAIN fuzz build -O -a
for t in "${TARGETS[@]}"; do
  mkdir -p "corpus/$t"
  echo "== $t: ${SECONDS_EACH}s"
  # corpus/$t receives new inputs; seeds/$t is read only.
  cargo $TOOLCHAIN fuzz run -O -a "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$SECONDS_EACH" -timeout=10 -dict=dict/hap.dict \
    -print_final_stats=1 >"logs/$t.log" 2>&1 || { echo "$t FAILED: see fuzz/logs/$t.log"; tail -40 "logs/$t.log"; exit 1; }
  grep -E "^#[0-9]+ +DONE|stat::number_of_executed_units|stat::average_exec_per_sec" "logs/$t.log" || true
  # Minimise to edge coverage (-use_counters=0 keeps ~4x fewer files than the default
  # feature merge for the same cov; seeds stay in seeds/).
  cargo $TOOLCHAIN fuzz cmin -O -a "$t" "corpus/$t" -- -use_counters=0 >"logs/$t.cmin.log" 2>&1
  # The commit hook takes sk-ant-o?t01- + 20 chars for a real token: drop such inputs.
  grep -rlaE 'sk-ant-(oat|ort)01-[A-Za-z0-9_-]{20,}' "corpus/$t" | xargs -r rm -f
  echo "$t corpus: $(ls "corpus/$t" | wc -l) files, $(du -sh "corpus/$t" | cut -f1)"
done
