#!/usr/bin/env bash
# Short fuzz smoke for CI (issue 7, item 6): every target for HAP_FUZZ_CI_SECONDS (default
# 20) starting from the committed seeds + corpus, which it does not modify. Fails on any
# crash or property violation. The corpus replay itself runs in `cargo test`
# (tests/fuzz_corpus.rs); this adds fresh mutations. ~2 min to build (ASan) + 6 x N s.
# Installs cargo-fuzz from crates.io when missing; uses a nightly toolchain when rustup
# has one, else stable with RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")"
SECS=${HAP_FUZZ_CI_SECONDS:-20}
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --version 0.13.2
fi
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  TC=+nightly
else
  TC=+stable
  export RUSTC_BOOTSTRAP=1
fi
cargo $TC fuzz build -O -a
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
for t in fuzz_config fuzz_requests fuzz_credentials_file fuzz_pool_file fuzz_token_response fuzz_c_abi_open; do
  mkdir -p "$work/$t" "$work/artifacts/$t"
  if cargo $TC fuzz run -O -a "$t" "$work/$t" "seeds/$t" "corpus/$t" -- \
      -max_total_time="$SECS" -timeout=10 -dict=dict/hap.dict \
      -artifact_prefix="$work/artifacts/$t/" >"$work/$t.log" 2>&1; then
    echo "$t: ok ($(grep -E '^#[0-9]+' "$work/$t.log" | tail -1 | sed -E 's/ +/ /g'))"
  else
    echo "$t: FAILED"
    grep -E -A3 'panicked|ERROR' "$work/$t.log" | head -30
    for a in "$work/artifacts/$t"/*; do
      [ -e "$a" ] && { echo "input ($a):"; od -c "$a" | head -20; }
    done
    status=1
  fi
done
exit $status
