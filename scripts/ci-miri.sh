#!/usr/bin/env bash
# Miri over the heap-backed tests: the library's unit tests, the proptest
# state-machine models (tests/model.rs, a few cases under Miri) and the
# threaded scenarios (tests/miri.rs). Tests that need shm_open or a real
# mapping (tests/spsc.rs and the other segment tests) are not run: Miri cannot
# execute those syscalls.
#
# -Zmiri-strict-provenance: every pointer into a region must come from the
# allocation with its provenance (no integer-to-pointer casts).
# -Zmiri-disable-weak-memory-emulation: Miri's store-buffer emulation
# crashes (an ICE, "cannot have empty store buffer when previous write was
# atomic") when an atomic u64 store lands on a word whose bytes were last
# written partly atomically and partly non-atomically. The rings do exactly
# that, correctly synchronised: a record header word (atomic) is later
# overwritten by a short payload (plain bytes), then by a header again.
# Data-race detection, provenance and aliasing checks stay on; weak-memory
# behaviours are the loom suite's job (scripts/ci-loom.sh).
# Isolation stays on: the tests need no host time, files or randomness
# (Miri supplies a virtual clock for Instant and futex timeouts).
#
# Installs the nightly toolchain's miri and rust-src components if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/h-miri}"
export MIRIFLAGS="${MIRIFLAGS:--Zmiri-strict-provenance -Zmiri-disable-weak-memory-emulation}"

start=$(date +%s)
if ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly miri --version >/dev/null 2>&1 \
  || ! rustup component list --toolchain nightly --installed | grep -q '^rust-src'; then
  rustup component add miri rust-src --toolchain nightly
fi
cargo +nightly miri setup

# The library's unit tests that open real segments (shm_open) are marked
# `cfg_attr(miri, ignore)`.
cargo +nightly miri test -p shmq --lib --test model --test miri --test regressions
echo "ci-miri: passed in $(( $(date +%s) - start ))s"
