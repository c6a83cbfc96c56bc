#!/usr/bin/env bash
# Fuzz smoke test: builds every cargo-fuzz target in fuzz/ (AddressSanitizer),
# replays the committed regression inputs, then fuzzes each target for 30 s
# starting from its committed seed corpus (two targets at a time: CI has two
# cores). Exits non-zero on any finding; the crashing input is left under
# fuzz/artifacts/<target>/ and libFuzzer's log is printed.
#
# Long runs (what the issue asks for before a release):
#   cd fuzz && cargo +nightly fuzz run <target> -- -max_total_time=600 -timeout=5
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

SECS=${FUZZ_SECS:-30}
TARGETS=(spsc_ops mpmc_ops open_hostile peer_hostile)
start=$(date +%s)
say() { echo "ci-fuzz [$(( $(date +%s) - start ))s]: $*"; }

if ! rustup toolchain list | grep -q '^nightly'; then
  say "installing the nightly toolchain"
  rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo-fuzz" ]; then
  say "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

say "build (${TARGETS[*]})"
cargo +nightly fuzz build

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Committed crash inputs must stay fixed: run each once.
for t in "${TARGETS[@]}"; do
  if [ -d "regressions/$t" ] && [ -n "$(ls -A "regressions/$t")" ]; then
    say "replay regressions/$t"
    cargo +nightly fuzz run "$t" "regressions/$t" -- -runs=0 -timeout=5 >"$work/$t.replay.log" 2>&1 || {
      cat "$work/$t.replay.log"; say "FAILED: a regression input of $t fails again"; exit 1; }
  fi
done

# New inputs go to a scratch corpus (first directory); the committed seeds
# (second) are only read.
run() {
  local t=$1
  mkdir -p "$work/corpus/$t" "corpus/$t"
  cargo +nightly fuzz run "$t" "$work/corpus/$t" "corpus/$t" -- \
    -max_total_time="$SECS" -timeout=5 -rss_limit_mb=2048 >"$work/$t.log" 2>&1
}

failed=()
for ((i = 0; i < ${#TARGETS[@]}; i += 2)); do
  pids=()
  batch=("${TARGETS[@]:i:2}")
  say "fuzz ${batch[*]} for ${SECS}s"
  for t in "${batch[@]}"; do
    run "$t" & pids+=($!)
  done
  for j in "${!batch[@]}"; do
    t=${batch[$j]}
    if wait "${pids[$j]}"; then
      say "$t: $(grep -E '^#[0-9]+.*(cov|DONE)' "$work/$t.log" | tail -1)"
    else
      cat "$work/$t.log"
      say "FAILED: $t found a crash (see fuzz/artifacts/$t/)"
      failed+=("$t")
    fi
  done
done

if [ ${#failed[@]} -gt 0 ]; then
  say "findings in: ${failed[*]}"
  exit 1
fi
say "all targets clean"
