#!/usr/bin/env bash
# Instructions per message on the hot paths (examples/callgrind_hot.rs),
# counted by callgrind: (total(N) - total(0)) / N for each mode.
#   [N=100000] [SIZE=64] scripts/callgrind-hot.sh [modes...]   (default: all five)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-100000}
SIZE=${SIZE:-64}
MODES=("$@")
[ ${#MODES[@]} -eq 0 ] && MODES=(send_recv_into grant mpmc typed typed_mpmc)
cargo build -q --release --example callgrind_hot
bin=target/release/examples/callgrind_hot
out=${OUT:-target/callgrind}
mkdir -p "$out"
total() { grep -E '^(summary|totals):' "$1" | head -1 | awk '{print $2}'; }
for m in "${MODES[@]}"; do
  for n in 0 "$N"; do
    valgrind --tool=callgrind --callgrind-out-file="$out/$m.$n" "$bin" "$m" "$n" "$SIZE" >/dev/null 2>&1
  done
  a=$(total "$out/$m.0"); b=$(total "$out/$m.$N")
  echo "$m: $(( (b - a) / N )) instr/msg  (total $b at N=$N, $a at N=0)"
done
