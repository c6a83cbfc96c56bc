#!/usr/bin/env bash
# Mutation check of the loom suite (tests/loom.rs): weakens one memory
# ordering at a time in a copy of the crate and expects the loom suite to
# FAIL. Prints one line per mutant, `caught NAME` or `missed NAME`, and exits
# non-zero if any required mutant was missed (a missed mutant means a loom
# model is missing) or if a mutation could not be applied or built.
#
# Not run by CI (it rebuilds the crate once per mutant: about a minute each on
# a 2-core machine). Usage: scripts/loom-mutants.sh [NAME...]
#
# Each mutation is an exact-text replacement (snippets may not contain '|',
# the field separator) of a snippet that must occur
# exactly once in its file; if the source changed and the snippet is gone,
# the script stops with an error instead of silently testing nothing.
#
# Two kinds of mutants need more than loom:
#  * blind: the ordering only protects a read against a *later* write by the
#    peer (the consumer's reads of payload bytes before the producer reuses
#    them). Loom cannot observe that: it models no load buffering, and the
#    payload bytes are plain memory that it does not track. Miri's data-race
#    detector can: when loom misses a blind mutant, the script runs the
#    threaded Miri scenarios (tests/miri.rs) on it, and a race found there
#    counts as `caught NAME (by miri)`. Without nightly Miri, a blind mutant
#    is reported as missed but not counted.
#  * equivalent (reported, never counted): a stronger ordering nearby
#    already provides the guarantee, so the mutant does not change the
#    allowed behaviours (e.g. the SeqCst fence in `notify::wake`, which
#    follows every publish, also acts as a release fence before the detach
#    store).
#
# spsc-write-header-relaxed (the header store of a record published at
# once, `commit_publish`) is caught by the spin-only variant of the
# terminator model: in a futex ring the wake check's SeqCst fence after
# every publish and release covers for it in the model (a store before one
# SeqCst fence is seen by a load after a later one in their total order).
# spsc-try-write-header-relaxed (the one-record fast path) is caught by
# spsc_spin_only_fast_path_terminator_over_a_two_laps_old_header, whose
# seventh message takes that path onto a two-laps-old header (the terminator
# model's records there all take the slow path).
#
# spsc-publish-tail-relaxed: since issue 15 the consumer finds records by
# their header words; the producer's cursor is read only at attach (by a
# successor, which skips published records by their headers anyway) and by
# tools, so no model can tell.
#
# mpmc-abandon-seq-relaxed is equivalent: the abandoning consumer writes
# nothing before its CAS that anyone reads (the info word of an abandoned
# slot is never read), so its Release orders nothing; the sequence value
# alone carries the decision. (Found when the mutant first ran end to end:
# loom cannot tell it apart, rightly.)
#
# mpmc-release-seq-relaxed is caught although it, too, mainly guards
# payload reads: with it, a producer can see a released sequence without
# seeing the consumer's cursor move that preceded it, so its claim loop reads
# a stale cursor (reported as `Corrupted`, "slot sequence ahead of the
# enqueue cursor", or a claim loop that never ends).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export CARGO_TERM_COLOR=never
export CARGO_TARGET_DIR="$root/target/loom-mutants"
export RUSTFLAGS="--cfg loom"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-2}"
per_mutant_timeout="${LOOM_MUTANT_TIMEOUT:-900}"

command -v python3 >/dev/null || { echo "loom-mutants: python3 is required" >&2; exit 2; }

work="$(mktemp -d "${TMPDIR:-/tmp}/shmq-loom-mutants.XXXXXX")"
# LOOM_MUTANTS_KEEP=1 keeps the copy and the per-mutant logs for inspection.
if [ -z "${LOOM_MUTANTS_KEEP:-}" ]; then
  trap 'rm -rf "$work"' EXIT
else
  echo "loom-mutants: working copy and logs in $work" >&2
fi

# A standalone copy of the library crate: no CLI member, no benches.
cp -r src Cargo.toml clippy.toml "$work/"
[ -f Cargo.lock ] && cp Cargo.lock "$work/"
mkdir -p "$work/tests"
cp tests/loom.rs tests/miri.rs "$work/tests/"
python3 - "$work/Cargo.toml" <<'PY'
import re, sys
p = sys.argv[1]
s = open(p).read()
s2 = re.sub(r'members\s*=\s*\[[^\]]*\]', 'members = ["."]', s, count=1)
s2 = re.sub(r'\[\[bench\]\]\nname = "[^"]*"\nharness = false\n\n?', '', s2)
if s2 == s:
    sys.exit("loom-mutants: could not make Cargo.toml standalone")
open(p, "w").write(s2)
PY
cp -r "$work/src" "$work/src.orig"

# name|kind|file|python literal of the snippet|python literal of the replacement
# kind: required (loom must catch it), blind (loom or Miri must catch it, if
# Miri is available) or equivalent (reported only).
mutants=$(cat <<'EOF'
spsc-publish-header-relaxed|required|src/ring/spsc.rs|'w.store(self.pending_word, Ordering::Release);'|'w.store(self.pending_word, Ordering::Relaxed);'
spsc-write-header-relaxed|required|src/ring/spsc.rs|'        // Release: as in `publish`.\n        w.store(msg, Ordering::Release);'|'        w.store(msg, Ordering::Relaxed);'
spsc-try-write-header-relaxed|required|src/ring/spsc.rs|'w.store(word, Ordering::Release);'|'w.store(word, Ordering::Relaxed);'
spsc-peek-header-relaxed|required|src/ring/spsc.rs|'let w = w.load(Ordering::Acquire);'|'let w = w.load(Ordering::Relaxed);'
spsc-publish-tail-relaxed|equivalent|src/ring/spsc.rs|'mem.header().prod.store(self.tail, Ordering::Release);'|'mem.header().prod.store(self.tail, Ordering::Relaxed);'
mpmc-publish-seq-relaxed|required|src/ring/mpmc.rs|'slot_word(mem, off).store(pos + 1, Ordering::Release);'|'slot_word(mem, off).store(pos + 1, Ordering::Relaxed);'
mpmc-take-seq-relaxed|required|src/ring/mpmc.rs|'let raw = s.seq(mem, pos).load(Ordering::Acquire);'|'let raw = s.seq(mem, pos).load(Ordering::Relaxed);'
mpmc-take-fast-seq-relaxed|required|src/ring/mpmc.rs|'if cursor_in_range(pos) && s.seq(mem, pos).load(Ordering::Acquire) == pos + 1 {'|'if cursor_in_range(pos) && s.seq(mem, pos).load(Ordering::Relaxed) == pos + 1 {'
notify-wake-fence-removed|required|src/notify.rs|'    fence(Ordering::SeqCst);\n    // Relaxed: ordered by the fence above.'|'    // (mutant: fence removed)\n    // Relaxed: ordered by the fence above.'
notify-block-fence-removed|required|src/notify.rs|'        fence(Ordering::SeqCst);\n        if w.interrupted() {'|'        // (mutant: fence removed)\n        if w.interrupted() {'
semaphore-token-unregisters|required|src/notify.rs|'        if woke != Woke::Token {\n            unregister(w.word(), epoch);\n        }'|'        unregister(w.word(), epoch);'
segment-open-skips-unlinked-recheck|required|src/acquire.rs|'        if seg.is_unlinked() {'|'        if false && seg.is_unlinked() {'
segment-leaver-skips-gate|required|src/endpoint.rs|'        if !seg.lock_until(\n            crate::layout::LOCK_GATE,\n            crate::shm::Lock::Exclusive,\n            deadline,\n        ) {'|'        if false {'
mpmc-abandon-writes-before-winning|required|src/ring/mpmc.rs|'    let done = s\n        .seq(mem, pos)\n        .compare_exchange(\n            pos,\n            abandoned_seq(pos),'|'    s.info(mem, pos).store((KIND_ABANDONED as u64) << 32, Ordering::Relaxed);\n    let done = s\n        .seq(mem, pos)\n        .compare_exchange(\n            pos,\n            pos + 1,'
mpmc-forgotten-claim-not-resolved|required|src/mpmc.rs|'        resolve_forgotten(ep);\n        ep.usable()?;'|'        ep.usable()?;'
detach-state-relaxed|equivalent|src/endpoint.rs|'.compare_exchange(self.state, detached, Ordering::Release, Ordering::Relaxed)'|'.compare_exchange(self.state, detached, Ordering::Relaxed, Ordering::Relaxed)'
mpmc-abandon-seq-relaxed|equivalent|src/ring/mpmc.rs|'            abandoned_seq(pos),\n            Ordering::Release,'|'            abandoned_seq(pos),\n            Ordering::Relaxed,'
spsc-release-head-relaxed|blind|src/ring/spsc.rs|'mem.header().cons.store(head, Ordering::Release);'|'mem.header().cons.store(head, Ordering::Relaxed);'
spsc-reserve-head-relaxed|blind|src/ring/spsc.rs|'let head = mem.header().cons.load(Ordering::Acquire);'|'let head = mem.header().cons.load(Ordering::Relaxed);'
mpmc-release-seq-relaxed|required|src/ring/mpmc.rs|'slot_word(mem, off).store(next, Ordering::Release);'|'slot_word(mem, off).store(next, Ordering::Relaxed);'
mpmc-claim-seq-relaxed|blind|src/ring/mpmc.rs|'let seq = s.seq(mem, pos).load(Ordering::Acquire) & !ABANDONED;\n        let diff = seq.wrapping_sub(pos) as i64;'|'let seq = s.seq(mem, pos).load(Ordering::Relaxed) & !ABANDONED;\n        let diff = seq.wrapping_sub(pos) as i64;'
mpmc-claim-fast-seq-relaxed|blind|src/ring/mpmc.rs|'if cursor_in_range(pos) && s.seq(mem, pos).load(Ordering::Acquire) & !ABANDONED == pos {'|'if cursor_in_range(pos) && s.seq(mem, pos).load(Ordering::Relaxed) & !ABANDONED == pos {'
EOF
)

selected=("$@")
is_selected() {
  [ ${#selected[@]} -eq 0 ] && return 0
  local n
  for n in "${selected[@]}"; do [ "$n" = "$1" ] && return 0; done
  return 1
}

apply() { # file old new
  python3 - "$work/$1" "$2" "$3" <<'PY'
import ast, sys
path, old, new = sys.argv[1], ast.literal_eval(sys.argv[2]), ast.literal_eval(sys.argv[3])
s = open(path).read()
n = s.count(old)
if n != 1:
    sys.exit(f"loom-mutants: snippet found {n} times (want exactly 1) in {path}:\n{old}")
open(path, "w").write(s.replace(old, new))
PY
}

# The unmutated suite must pass, or every "caught" would be meaningless.
echo "loom-mutants: baseline run (unmutated)" >&2
if ! (cd "$work" && cargo test --release --test loom -q >"$work/baseline.log" 2>&1); then
  tail -40 "$work/baseline.log" >&2
  echo "loom-mutants: the unmutated loom suite fails; fix that first" >&2
  exit 2
fi

have_miri=0
if cargo +nightly miri --version >/dev/null 2>&1; then
  have_miri=1
fi
# Miri flags as in scripts/ci-miri.sh (see there for why).
miri_flags="-Zmiri-strict-provenance -Zmiri-disable-weak-memory-emulation"

missed=0
broken=0
results=()
while IFS='|' read -r name kind file old new; do
  [ -n "$name" ] || continue
  is_selected "$name" || continue
  rm -rf "$work/src"
  cp -r "$work/src.orig" "$work/src"
  if ! apply "$file" "$old" "$new"; then
    broken=1
    results+=("broken $name (snippet not found)")
    continue
  fi
  log="$work/$name.log"
  if ! (cd "$work" && cargo test --release --test loom --no-run >"$log" 2>&1); then
    tail -20 "$log" >&2
    broken=1
    results+=("broken $name (does not build)")
    continue
  fi
  set +e
  (cd "$work" && timeout "$per_mutant_timeout" cargo test --release --test loom -q >>"$log" 2>&1)
  rc=$?
  set -e
  if [ "$rc" -ne 0 ]; then
    failed=$(grep -E '^    [a-z_]+$' "$log" | tr -d ' ' | paste -sd, - || true)
    [ "$rc" -eq 124 ] && failed="timeout"
    line="caught $name"
    echo "$line  [$failed]" >&2
    results+=("$line")
  elif [ "$kind" = blind ] && [ "$have_miri" -eq 1 ]; then
    set +e
    (cd "$work" && env -u RUSTFLAGS MIRIFLAGS="$miri_flags" \
      CARGO_TARGET_DIR="$root/target/loom-mutants-miri" \
      timeout "$per_mutant_timeout" cargo +nightly miri test --test miri >>"$log" 2>&1)
    rc=$?
    set -e
    if [ "$rc" -ne 0 ]; then
      line="caught $name (by miri)"
      why=$(grep -m1 -oE 'Undefined Behavior: .*' "$log" | cut -c1-160 || true)
      echo "$line  [${why:-miri failed, rc=$rc}]" >&2
    else
      line="missed $name (by loom and miri)"
      missed=1
      echo "$line" >&2
    fi
    results+=("$line")
  elif [ "$kind" = blind ]; then
    line="missed $name (blind: loom cannot observe it, nightly miri unavailable; not counted)"
    echo "$line" >&2
    results+=("$line")
  elif [ "$kind" = equivalent ]; then
    line="missed $name (equivalent mutant; not counted)"
    echo "$line" >&2
    results+=("$line")
  else
    line="missed $name"
    echo "$line" >&2
    results+=("$line")
    missed=1
  fi
done <<<"$mutants"

echo
printf '%s\n' "${results[@]}"
if [ "$broken" -ne 0 ] || [ "$missed" -ne 0 ]; then
  exit 1
fi
