//! Regression tests for bugs the fuzzers (`fuzz/`) found. Each one replays
//! the essence of a minimized fuzz input through the public API, on a named
//! segment whose bytes the test scribbles on as a hostile peer would.

mod common;

use std::io::{Seek, SeekFrom, Write};

use common::Name;
use shmq::{Error, Options, mpmc, spsc};

/// Byte offsets in the segment header (see `layout.rs`).
const PROD_CURSOR: u64 = 128;
const CONS_CURSOR: u64 = 256;
/// Header and endpoint table, for an MPMC ring with one producer and one
/// consumer slot: 640 + 32 bytes, rounded up to 128.
const MPMC_DATA_1X1: u64 = 768;

/// Writes `v` at byte `off` of the segment file, as a scribbling peer would.
fn scribble(name: &Name, off: u64, v: u64) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(name.path())
        .unwrap();
    f.seek(SeekFrom::Start(off)).unwrap();
    f.write_all(&v.to_le_bytes()).unwrap();
}

fn mpmc_opts() -> Options {
    Options::new()
        .slots(4)
        .slot_size(64)
        .max_producers(1)
        .max_consumers(1)
        .keep(true)
}

/// fuzz: open_hostile, `fuzz/regressions/open_hostile/mpmc-dequeue-cursor-overflow`.
/// A dequeue cursor of `u64::MAX` made `try_take` compute `pos + 1` and
/// panic on overflow instead of reporting corruption.
#[test]
fn mpmc_dequeue_cursor_at_u64_max_is_corrupted_not_a_panic() {
    let name = Name::new("reg-deq-max");
    drop(mpmc::Producer::create(&name, &mpmc_opts()).unwrap());
    scribble(&name, CONS_CURSOR, u64::MAX);
    let mut rx = mpmc::Consumer::open(&name, &mpmc_opts()).unwrap();
    assert!(matches!(rx.try_recv().err(), Some(Error::Corrupted(_))));
    // Poisoned from now on.
    assert!(matches!(rx.try_recv().err(), Some(Error::Corrupted(_))));
}

/// fuzz: the same overflow on the producer side (`try_claim` stores
/// `pos + 1` once the slot's sequence matches the cursor).
#[test]
fn mpmc_enqueue_cursor_at_u64_max_is_corrupted_not_a_panic() {
    let name = Name::new("reg-enq-max");
    drop(mpmc::Producer::create(&name, &mpmc_opts()).unwrap());
    scribble(&name, PROD_CURSOR, u64::MAX);
    // Slot 3 serves position u64::MAX: make its sequence say "free for it".
    scribble(&name, MPMC_DATA_1X1 + 3 * 64, u64::MAX);
    let mut tx = mpmc::Producer::open(&name, &mpmc_opts()).unwrap();
    assert!(matches!(tx.try_send(b"x").err(), Some(Error::Corrupted(_))));
}

/// fuzz: the SPSC producer continues from the segment's write cursor; one
/// just below `u64::MAX` (valid as far as attach checks go) made
/// `try_reserve` overflow computing the record's start after padding.
#[test]
fn spsc_write_cursor_near_u64_max_is_corrupted_not_a_panic() {
    let name = Name::new("reg-tail-max");
    let opts = Options::new().capacity(256).keep(true);
    drop(spsc::Producer::create(&name, &opts).unwrap());
    scribble(&name, PROD_CURSOR, u64::MAX - 7);
    scribble(&name, CONS_CURSOR, u64::MAX - 7);
    let mut tx = spsc::Producer::open(&name, &opts).unwrap();
    assert!(matches!(tx.try_send(b"x").err(), Some(Error::Corrupted(_))));
}

/// fuzz: peer_hostile, `fuzz/regressions/peer_hostile/mpmc-sequence-ahead-of-cursor-spin`.
/// A slot sequence ahead of an enqueue cursor that does not move (a peer
/// scribbled one or the other) made every claim spin `MAX_TRIES` times and
/// report `Full`: `send_timeout(0)` took seconds under the fuzzer and the
/// producer was wedged instead of poisoned.
#[test]
fn mpmc_sequence_ahead_of_enqueue_cursor_is_corrupted() {
    let name = Name::new("reg-seq-ahead-p");
    drop(mpmc::Producer::create(&name, &mpmc_opts()).unwrap());
    // Slot 0 serves position 0, which the cursor says is unclaimed.
    scribble(&name, MPMC_DATA_1X1, 5);
    let mut tx = mpmc::Producer::open(&name, &mpmc_opts()).unwrap();
    assert!(matches!(tx.try_send(b"x").err(), Some(Error::Corrupted(_))));
}

/// fuzz: the consumer-side twin (`try_take`).
#[test]
fn mpmc_sequence_ahead_of_dequeue_cursor_is_corrupted() {
    let name = Name::new("reg-seq-ahead-c");
    drop(mpmc::Producer::create(&name, &mpmc_opts()).unwrap());
    scribble(&name, MPMC_DATA_1X1, 7);
    let mut rx = mpmc::Consumer::open(&name, &mpmc_opts()).unwrap();
    assert!(matches!(rx.try_recv().err(), Some(Error::Corrupted(_))));
}

/// fuzz: open_hostile, `fuzz/regressions/open_hostile/semaphore-waiters-post-loop`.
/// With the semaphore backend, a wake posts once per registered sleeper,
/// and the sleeper count is a segment word: a scribbled count of ~2^32 made
/// any wake (here the one in the consumer's detach) loop on `sem_post` for
/// minutes. Wakes now post at most once per possible endpoint.
#[test]
fn semaphore_wake_with_scribbled_sleeper_count_returns_promptly() {
    let name = Name::new("reg-sem-waiters");
    let opts = Options::new().capacity(256).keep(true);
    drop(spsc::Producer::create(&name, &opts).unwrap());
    // Header word 24 holds `state` (READY) and `wake` (2 = semaphore).
    scribble(&name, 24, (2 << 32) | 0x5245_4459);
    // `not_full` wake word (offset 512): epoch 0, u32::MAX sleepers.
    scribble(&name, 512, 0xffff_ffff_0000_0000);
    let rx = spsc::Consumer::open(&name, &opts).unwrap();
    // Detaching wakes `not_full`: this must return (before the fix it
    // posted the semaphore 2^32 - 1 times).
    drop(rx);
}
