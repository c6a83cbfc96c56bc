#!/usr/bin/env bash
# The loom suite (tests/loom.rs): every interleaving of the real SPSC and MPMC
# protocols, up to LOOM_MAX_PREEMPTIONS (default 2) preemptions, in release
# mode, with its own target directory (RUSTFLAGS differ from normal builds,
# so sharing `target/` would rebuild everything each time).
#
# Needs nothing beyond the stable toolchain: loom is a cfg(loom) dependency
# that cargo fetches like any other.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
export RUSTFLAGS="--cfg loom"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-2}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/loom}"

start=$(date +%s)
cargo test -p shmq --release --test loom
echo "ci-loom: passed in $(( $(date +%s) - start ))s (LOOM_MAX_PREEMPTIONS=$LOOM_MAX_PREEMPTIONS)"
