#!/usr/bin/env bash
# Instructions per 64-byte message on the hot paths, counted by plain
# callgrind (no gungraun-runner needed): bench/examples/instructions.rs
# moves N messages along one path (one thread, both endpoints of a named
# spin-only segment, Spin waits) and exits; (total(N) - total(0)) / N cancels
# start-up, segment creation and removal, and exit.
#
# Usage: scripts/instructions.sh [--futex] [N] [PATH...]
#   --futex  in a default (futex) segment instead: the same Spin endpoints,
#            plus the check for sleepers after every publish and release
#   N     messages (default 100000)
#   PATH  spsc-send-recv-into (the default alone), spsc-reserve-commit,
#         mpmc-send-recv, typed-send-recv, spsc-batch (batches of 32), the
#         in-process references rtrb-push-pop and arrayqueue-push-pop, or
#         `all`
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v valgrind >/dev/null; then
  echo "instructions.sh: needs valgrind (apt-get install valgrind)" >&2
  exit 2
fi
segment=spin-only
if [ "${1:-}" = --futex ]; then
  segment=futex
  shift
fi
n=${1:-100000}
shift || true
paths=("$@")
if [ ${#paths[@]} -eq 0 ]; then
  paths=(spsc-send-recv-into)
elif [ "${paths[0]}" = all ]; then
  paths=(spsc-send-recv-into spsc-reserve-commit mpmc-send-recv typed-send-recv spsc-batch
    rtrb-push-pop arrayqueue-push-pop)
fi

cargo build -q --release -p shmq-bench --example instructions
bin=target/release/examples/instructions
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# Total instructions of one run: the `summary:` line of callgrind's output.
total() {
  valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" "$1" "$2" "$segment" >/dev/null 2>&1
  awk '/^summary:/ { print $2; found = 1 } END { exit !found }' "$out"
}

echo "segment: $segment"
printf '%-22s %14s %14s %10s\n' path "total(0)" "total($n)" "instr/msg"
for p in "${paths[@]}"; do
  base=$(total "$p" 0)
  full=$(total "$p" "$n")
  awk -v p="$p" -v a="$base" -v b="$full" -v n="$n" \
    'BEGIN { printf "%-22s %14d %14d %10.1f\n", p, a, b, (b - a) / n }'
done
