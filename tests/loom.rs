//! Loom models of the real SPSC and MPMC protocols, driven through the public
//! API over heap regions.
//!
//! Under `--cfg loom` the crate's `sync` shim swaps in loom's atomics and
//! fences, the heap region keeps every header, table and record-header word
//! as a loom atomic, and a futex sleep becomes a yield loop on the epoch word
//! (so a lost wakeup is a model that never finishes, which loom reports as
//! "exceeded maximum number of branches"). Payload bytes are plain memory
//! that loom does not track: the models catch a weakened ordering through the
//! atomic record headers, slot sequences and info words instead.
//!
//! ```text
//! RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom \
//!     cargo test -p shmq --release --test loom
//! ```
//!
//! `LOOM_MAX_PREEMPTIONS` (and loom's other `LOOM_*` variables) are read by
//! `loom::model::Builder::new`; without it these models use a bound of 2.
//! `scripts/loom-mutants.sh` checks that this suite fails when any of the
//! orderings it guards is weakened.
//!
//! Writing a model: waiting is a `try_*` call in a loop with
//! `loom::thread::yield_now`. Loom does not assume a fair scheduler: after a
//! yield it may run any other thread, so with two threads spinning at once it
//! explores a schedule where they take turns forever while a third thread
//! (say, a consumer preempted while holding a slot) never runs again, and
//! reports that as a livelock. So in a model with three threads, at most one
//! of them may wait for another thread that could itself be waiting; the
//! others make a bounded number of attempts.
#![cfg(loom)]
// A std counter of explored interleavings lives outside the model, where
// loom must not see it.
#![allow(clippy::disallowed_types)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize as StdAtomicUsize, Ordering as StdOrdering};
use std::time::Duration;

use loom::thread;
use shmq::{Error, Options, WaitStrategy, mpmc, spsc};

/// Runs `f` under loom with the preemption bound from `LOOM_MAX_PREEMPTIONS`,
/// or 2 when it is unset (unbounded exploration would not finish), and prints
/// how many interleavings it explored (visible with `--nocapture`).
fn check<F>(f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let runs = Arc::new(StdAtomicUsize::new(0));
    let counter = runs.clone();
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(2);
    }
    b.check(move || {
        counter.fetch_add(1, StdOrdering::Relaxed);
        f();
    });
    let name = std::thread::current().name().unwrap_or("?").to_owned();
    eprintln!("{name}: {} interleavings", runs.load(StdOrdering::Relaxed));
}

/// SPSC ring of 64 bytes: the largest message is 24 bytes (a 32-byte record),
/// so two of them fill it and a third wraps.
fn spsc_tiny() -> Options {
    Options::new().capacity(64).liveness_interval(NO_TIMERS)
}

/// The liveness interval of the models: an hour, so that no model takes a
/// branch that depends on wall-clock time. With the default 100 ms, a
/// blocked endpoint probes its peers (more atomic operations) whenever a
/// loom execution happens to take that long, as it does on a loaded
/// machine; loom then finds the model not deterministic ("Reached
/// unexpected exploration state") and fails. Peers here die only by
/// `__simulate_crash`, which the recovery paths see without timers.
const NO_TIMERS: Duration = Duration::from_secs(3600);

/// As `spsc_tiny`, with blocking calls that go straight to the futex path.
fn spsc_tiny_blocking() -> Options {
    spsc_tiny().spin(Duration::ZERO).wait(WaitStrategy::Futex)
}

/// MPMC ring of 2 slots of 8 payload bytes, for up to 2 + 2 endpoints.
fn mpmc_tiny() -> Options {
    Options::new()
        .slots(2)
        .slot_size(24)
        .max_producers(2)
        .max_consumers(2)
        .liveness_interval(NO_TIMERS)
}

/// A message whose bytes say which one it is.
fn msg(id: u8, len: usize) -> Vec<u8> {
    vec![id; len]
}

/// What the models send and receive through: an endpoint, or a batch of it.
trait Ends {
    fn send_once(&mut self, m: &[u8]) -> Result<(), Error>;
    fn recv_once(&mut self) -> Result<Vec<u8>, Error>;
}

macro_rules! ends {
    (send $($t:ty),*) => {$(
        impl Ends for $t {
            fn send_once(&mut self, m: &[u8]) -> Result<(), Error> { self.try_send(m) }
            fn recv_once(&mut self) -> Result<Vec<u8>, Error> { unreachable!() }
        }
    )*};
    (recv $($t:ty),*) => {$(
        impl Ends for $t {
            fn send_once(&mut self, _: &[u8]) -> Result<(), Error> { unreachable!() }
            fn recv_once(&mut self) -> Result<Vec<u8>, Error> { self.try_recv().map(|g| g.to_vec()) }
        }
    )*};
}
ends!(send spsc::Producer, spsc::WriteBatch<'_>);
ends!(recv spsc::Consumer, spsc::ReadBatch<'_>);

fn spsc_send(tx: &mut impl Ends, m: &[u8]) {
    loop {
        match tx.send_once(m) {
            Ok(()) => return,
            Err(Error::Full) => thread::yield_now(),
            Err(e) => panic!("spsc send: {e}"),
        }
    }
}

/// The next message, copied out; `Err` for anything but "empty, try again".
fn spsc_recv(rx: &mut impl Ends) -> Result<Vec<u8>, Error> {
    loop {
        match rx.recv_once() {
            Ok(m) => return Ok(m),
            Err(Error::Empty) => thread::yield_now(),
            Err(e) => return Err(e),
        }
    }
}

fn mpmc_send(tx: &mut mpmc::Producer, m: &[u8]) {
    loop {
        match tx.try_send(m) {
            Ok(()) => return,
            Err(Error::Full) => thread::yield_now(),
            Err(e) => panic!("mpmc send: {e}"),
        }
    }
}

fn mpmc_recv(rx: &mut mpmc::Consumer) -> Result<Vec<u8>, Error> {
    loop {
        match rx.try_recv() {
            Ok(g) => return Ok(g.to_vec()),
            Err(Error::Empty) => thread::yield_now(),
            Err(e) => return Err(e),
        }
    }
}

/// Every message until `Disconnected`.
fn mpmc_drain(rx: &mut mpmc::Consumer) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    loop {
        match mpmc_recv(rx) {
            Ok(m) => got.push(m),
            Err(Error::Disconnected) => return got,
            Err(e) => panic!("mpmc recv: {e}"),
        }
    }
}

// ---------------------------------------------------------------------------
// SPSC
// ---------------------------------------------------------------------------

/// Three messages through a 64-byte ring: 8 bytes at 0, 24 bytes at 16, then
/// 16 bytes that do not fit in the 16 bytes left before the end, so a padding
/// record fills them and the message lands at position 0, over the first
/// record's header word. The producer must wait for the consumer to free
/// both earlier records (cached-head refresh at full).
///
/// Catches a Relaxed `tail` publish or `tail` refresh: the consumer would
/// read a stale header word (0 → `Corrupted`, or the first lap's header →
/// wrong length).
#[test]
fn spsc_wrap_with_padding() {
    check(|| {
        let (mut tx, mut rx) = spsc::channel(&spsc_tiny()).unwrap();
        let p = thread::spawn(move || {
            spsc_send(&mut tx, &msg(1, 8));
            spsc_send(&mut tx, &msg(2, 24));
            spsc_send(&mut tx, &msg(3, 16));
            tx
        });
        assert_eq!(spsc_recv(&mut rx).unwrap(), msg(1, 8));
        assert_eq!(spsc_recv(&mut rx).unwrap(), msg(2, 24));
        assert_eq!(spsc_recv(&mut rx).unwrap(), msg(3, 16));
        drop(p.join().unwrap());
        assert_eq!(spsc_recv(&mut rx).err(), Some(Error::Disconnected));
    });
}

/// Six messages of mixed lengths (0 to 24 bytes) through the 64-byte ring:
/// several laps, padding records of different sizes, and header words that
/// land where earlier payloads were.
#[test]
fn spsc_stream_mixed_lengths() {
    stream_mixed_lengths(spsc_tiny);
}

/// The same in a spin-only ring, where no publish or release runs the
/// wake check (its SeqCst fence is gone from every interleaving). The
/// blocking spin wait itself is not modelled: loom reports a waiter that
/// re-reads the peer's cursor in `block_on_slow` as an unbounded model
/// ("exceeded maximum number of branches"); the threaded tests and Miri
/// run that loop.
#[test]
fn spsc_spin_only_stream_mixed_lengths() {
    stream_mixed_lengths(|| spsc_tiny().spin_only(true));
}

fn stream_mixed_lengths(opts: fn() -> Options) {
    spsc_in_order(opts, &[0, 24, 5, 17, 8, 24]);
}

/// Publishing by header word (issue 15), lap by lap through the 64-byte
/// ring: A (32-byte record) at 0, B and C (16 bytes each) fill the ring
/// exactly, so no terminator follows C and the consumer, caught up at cursor
/// 64, reads A's header one lap old (it must read as "nothing yet"); D (24
/// bytes) lands at 0 once A is freed, its terminator over A's old payload;
/// E at 24; F needs the 8 bytes of padding at 56 and lands at 0 again, on
/// the third lap, where the stale word is D's header (one lap old, never
/// two).
///
/// Catches a lap parity that fails to tell a lap-old header from a new
/// one. (It passed with every header store Relaxed, in a futex and in a
/// spin-only ring: the Relaxed store is `spsc_spin_only_terminator_over_a_two_laps_old_header`'s.)
#[test]
fn spsc_header_word_publish_over_laps() {
    spsc_in_order(spsc_tiny, &[24, 8, 8, 16, 24, 16]);
}

/// One producer thread sends message `i` of `lens[i]` bytes (`msg(i,
/// len)`) through an SPSC ring made with `opts`; the consumer receives
/// each, in order, then `Disconnected` once the producer has dropped its
/// end. The mixed-lengths stream and the lap models differ only in `lens`
/// (and the ring's options).
fn spsc_in_order(opts: fn() -> Options, lens: &'static [usize]) {
    check(move || {
        let (mut tx, mut rx) = spsc::channel(&opts()).unwrap();
        let p = thread::spawn(move || {
            for (id, &len) in lens.iter().enumerate() {
                spsc_send(&mut tx, &msg(id as u8, len));
            }
            tx
        });
        for (id, &len) in lens.iter().enumerate() {
            assert_eq!(spsc_recv(&mut rx).unwrap(), msg(id as u8, len));
        }
        drop(p.join().unwrap());
        assert_eq!(spsc_recv(&mut rx).err(), Some(Error::Disconnected));
    });
}

/// The terminator is what the consumer reads after a record, and in the
/// model's memory (as in a real ring) that word may still hold a header
/// from two laps ago, whose lap parity is the current one. Lap 0: A (16
/// bytes) at 0, B (16) at 16, C (32) at 32; lap 1: D (32) at 0 covers B's
/// header with payload, which does not rewrite it here (loom keeps payload
/// bytes apart from words), E (32) at 32; lap 2: F (16) at 0, then its
/// terminator at 16, over B's header. Only the Release store of F's header
/// makes the terminator visible to the consumer that sees F; without it the
/// consumer may read B's header there and deliver a message that is not
/// there. G (16 bytes, then at 16) must not have B's length: loom keeps
/// payload bytes as plain memory, always the latest, so a stale header of
/// G's own length would deliver G's real bytes and pass.
///
/// Only the spin-only variant checks that Release: in a futex ring every
/// publish and release runs the wake check's SeqCst fence, and a store
/// before one SeqCst fence is seen by a load after a later one (in their
/// total order), which in this model covers for the header's Release.
/// Seen: with every header store Relaxed, the spin-only variant fails and
/// the futex one passes. (A Relaxed store in the one-record fast path
/// alone, `try_write_now`, passes both: F and G take the slow path in
/// every interleaving within the preemption bound;
/// `spsc_spin_only_fast_path_terminator_over_a_two_laps_old_header` drives
/// that path onto an old header.)
#[test]
fn spsc_terminator_over_a_two_laps_old_header() {
    terminator_over_a_two_laps_old_header(spsc_tiny);
}

/// See `spsc_terminator_over_a_two_laps_old_header`.
#[test]
fn spsc_spin_only_terminator_over_a_two_laps_old_header() {
    terminator_over_a_two_laps_old_header(|| spsc_tiny().spin_only(true));
}

fn terminator_over_a_two_laps_old_header(opts: fn() -> Options) {
    spsc_in_order(opts, &[8, 8, 24, 24, 24, 8, 16]);
}

/// The one-record fast path (`try_write_now`) over a two-laps-old header.
/// In the terminator model above, every record whose terminator lands on
/// an old header is the first of its lap or finds the cached head short,
/// and takes the slow path; here one takes the fast path. 64-byte ring.
/// Lap 0: X (32 bytes) at 0, Y (16) at 32, D (16) at 48; lap 1: E (32) at
/// 0, F (32) at 32, over Y's header (D's header, at 48, stays: loom keeps
/// payload bytes apart from words); lap 2: G (32) at 0 (the first of its
/// lap: the slow path, whose refresh of the cached head finds 128 when the
/// consumer has taken F by then), H (16) at 32 by the fast path, its
/// terminator at 48 over D's header, whose lap parity is lap 2's; then I
/// (24 bytes: padding at 48, I at 0 of lap 3), so that the consumer looks
/// at 48 while it waits for I. Only the Release store of H's header in
/// `try_write_now` makes the terminator visible to a consumer that sees H;
/// without it the consumer may read D's header there and deliver a
/// message of D's length that was never sent (I's length differs, so no
/// interleaving can pass it off as I). Seen: with that store Relaxed
/// (`scripts/loom-mutants.sh spsc-try-write-header-relaxed`) the model
/// fails. Spin-only: in a futex ring the wake check's SeqCst fences cover
/// for that Release in the model (see the terminator model).
#[test]
fn spsc_spin_only_fast_path_terminator_over_a_two_laps_old_header() {
    spsc_in_order(
        || spsc_tiny().spin_only(true),
        &[24, 8, 8, 24, 24, 24, 8, 16],
    );
}

/// A write batch larger than the ring: when it fills the ring, the producer
/// must publish what the batch committed so far (or it would wait forever
/// for a consumer that cannot see it), then go on once the consumer frees
/// space.
#[test]
fn spsc_batch_overflows_ring() {
    check(|| {
        let (mut tx, mut rx) = spsc::channel(&spsc_tiny()).unwrap();
        let p = thread::spawn(move || {
            {
                let mut b = tx.batch();
                // Four 24-byte records: 96 bytes through a 64-byte ring.
                for id in 1..=4 {
                    spsc_send(&mut b, &msg(id, 16));
                }
            }
            tx
        });
        for id in 1..=4 {
            assert_eq!(spsc_recv(&mut rx).unwrap(), msg(id, 16));
        }
        drop(p.join().unwrap());
    });
}

/// The producer sleeps on a full ring while the consumer reads under a batch:
/// the space comes free only when the batch drops, and that release must
/// wake the producer.
#[test]
fn spsc_wakeup_by_batch_release() {
    check(|| {
        let (mut tx, mut rx) = spsc::channel(&spsc_tiny_blocking()).unwrap();
        tx.try_send(&msg(1, 24)).unwrap();
        tx.try_send(&msg(2, 24)).unwrap();
        let c = thread::spawn(move || {
            {
                let mut b = rx.batch();
                assert_eq!(spsc_recv(&mut b).unwrap(), msg(1, 24));
                assert_eq!(spsc_recv(&mut b).unwrap(), msg(2, 24));
            }
            rx
        });
        tx.send(&msg(3, 24)).unwrap();
        let mut rx = c.join().unwrap();
        assert_eq!(spsc_recv(&mut rx).unwrap(), msg(3, 24));
    });
}

/// The consumer sleeps in `recv()`; the producer sends one message and
/// detaches. The consumer gets the message, then `Disconnected` (woken by
/// the detach, not by a timeout: loom's sleeps never time out).
#[test]
fn spsc_disconnect_wakes_and_drains() {
    check(|| {
        let (mut tx, mut rx) = spsc::channel(&spsc_tiny_blocking()).unwrap();
        let p = thread::spawn(move || {
            tx.try_send(b"last").unwrap();
        });
        assert_eq!(&*rx.recv().unwrap(), b"last");
        match rx.recv() {
            Err(Error::Disconnected) => {}
            other => panic!("after the producer left: {:?}", other.map(|g| g.to_vec())),
        }
        p.join().unwrap();
    });
}

/// As `spsc_wakeup_consumer_sleeps`, with the semaphore backend's
/// bookkeeping (the waker takes every registration with one swap).
#[test]
fn spsc_wakeup_semaphore() {
    check(|| {
        let opts = spsc_tiny()
            .spin(Duration::ZERO)
            .wait(WaitStrategy::Semaphore);
        let (mut tx, mut rx) = spsc::channel(&opts).unwrap();
        let p = thread::spawn(move || {
            tx.try_send(b"wake").unwrap();
            tx
        });
        assert_eq!(&*rx.recv().unwrap(), b"wake");
        drop(p.join().unwrap());
    });
}

/// A grant dropped without commit publishes nothing; a grant committed with
/// fewer bytes than reserved publishes exactly those. Then the producer
/// detaches and the consumer drains to `Disconnected`.
#[test]
fn spsc_grant_commit_vs_drop() {
    check(|| {
        let (mut tx, mut rx) = spsc::channel(&spsc_tiny()).unwrap();
        let p = thread::spawn(move || {
            {
                let mut g = tx.try_reserve(16).unwrap();
                g.fill(0xee);
                // Dropped: nothing is committed.
            }
            let mut g = tx.try_reserve(24).unwrap();
            g[..5].copy_from_slice(b"hello");
            g.commit(5);
            // `tx` drops here: detach after the publish.
        });
        assert_eq!(spsc_recv(&mut rx).unwrap(), b"hello");
        assert_eq!(spsc_recv(&mut rx).err(), Some(Error::Disconnected));
        p.join().unwrap();
    });
}

/// A write batch publishes all its records with one store: once the first is
/// visible, the others are too. The consumer reads them under a read batch,
/// which frees their space with one store when it drops; only then does the
/// producer's fourth message (which needs padding and the whole ring) fit.
#[test]
fn spsc_batch_publish() {
    check(|| {
        let (mut tx, mut rx) = spsc::channel(&spsc_tiny()).unwrap();
        let p = thread::spawn(move || {
            {
                let mut b = tx.batch();
                b.try_send(&msg(1, 8)).unwrap();
                b.try_send(&msg(2, 8)).unwrap();
                b.try_send(&msg(3, 8)).unwrap();
            }
            // 48 bytes used: the 32-byte record needs 16 bytes of padding
            // plus 32 at the start, so the whole batch must be freed first.
            spsc_send(&mut tx, &msg(4, 24));
            tx
        });
        {
            let mut b = rx.batch();
            assert_eq!(spsc_recv(&mut b).unwrap(), msg(1, 8));
            // Published together with the first: no waiting.
            assert_eq!(&*b.try_recv().unwrap(), &msg(2, 8)[..]);
            assert_eq!(&*b.try_recv().unwrap(), &msg(3, 8)[..]);
        }
        assert_eq!(spsc_recv(&mut rx).unwrap(), msg(4, 24));
        drop(p.join().unwrap());
    });
}

/// Two full-size records fill the ring; the third needs the consumer to free
/// the first, which the producer only learns by refreshing its cached head.
#[test]
fn spsc_full_refresh() {
    check(|| {
        let (mut tx, mut rx) = spsc::channel(&spsc_tiny()).unwrap();
        let p = thread::spawn(move || {
            for id in 1..=3 {
                spsc_send(&mut tx, &msg(id, 24));
            }
            tx
        });
        for id in 1..=3 {
            assert_eq!(spsc_recv(&mut rx).unwrap(), msg(id, 24));
        }
        drop(p.join().unwrap());
    });
}

/// The consumer looks at an empty ring (its cached tail says empty), then the
/// producer publishes twice; each time the consumer must refresh the cached
/// tail to see the new record.
#[test]
fn spsc_empty_refresh() {
    check(|| {
        let (mut tx, mut rx) = spsc::channel(&spsc_tiny()).unwrap();
        match rx.try_recv() {
            Err(Error::Empty) => {}
            other => panic!("fresh ring: {:?}", other.map(|g| g.to_vec())),
        }
        let p = thread::spawn(move || {
            spsc_send(&mut tx, &msg(1, 8));
            spsc_send(&mut tx, &msg(2, 16));
            tx
        });
        assert_eq!(spsc_recv(&mut rx).unwrap(), msg(1, 8));
        assert_eq!(spsc_recv(&mut rx).unwrap(), msg(2, 16));
        drop(p.join().unwrap());
    });
}

/// The consumer sleeps in `recv()` (no spin window, futex strategy); the
/// producer sends one message. No wakeup may be lost. The producer stays
/// attached until the consumer has the message, so that the wake of its
/// detach cannot hide a lost wake of the publish.
#[test]
fn spsc_wakeup_consumer_sleeps() {
    check(|| {
        let (mut tx, mut rx) = spsc::channel(&spsc_tiny_blocking()).unwrap();
        let p = thread::spawn(move || {
            tx.try_send(b"wake").unwrap();
            tx
        });
        assert_eq!(&*rx.recv().unwrap(), b"wake");
        drop(p.join().unwrap());
    });
}

/// The producer sleeps in `send()` on a full ring; the consumer frees one
/// record. No wakeup may be lost.
#[test]
fn spsc_wakeup_producer_sleeps() {
    check(|| {
        let (mut tx, mut rx) = spsc::channel(&spsc_tiny_blocking()).unwrap();
        tx.try_send(&msg(1, 24)).unwrap();
        tx.try_send(&msg(2, 24)).unwrap();
        let c = thread::spawn(move || {
            assert_eq!(spsc_recv(&mut rx).unwrap(), msg(1, 24));
            rx
        });
        tx.send(&msg(3, 24)).unwrap();
        let mut rx = c.join().unwrap();
        assert_eq!(spsc_recv(&mut rx).unwrap(), msg(2, 24));
        assert_eq!(spsc_recv(&mut rx).unwrap(), msg(3, 24));
    });
}

// ---------------------------------------------------------------------------
// MPMC
// ---------------------------------------------------------------------------

/// Two producers race for the claim cursor; one consumer gets both messages,
/// each once, then `Disconnected` when both producers have detached.
///
/// Catches a Relaxed sequence publish or a Relaxed sequence load in
/// `try_take`: the consumer would read a stale info word (0 → `Corrupted`).
#[test]
fn mpmc_two_producers_one_consumer() {
    two_producers_one_consumer(mpmc_tiny);
}

/// The same in a spin-only ring (no wake check's fences; see
/// `spsc_spin_only_stream_mixed_lengths`).
#[test]
fn mpmc_spin_only_two_producers_one_consumer() {
    two_producers_one_consumer(|| mpmc_tiny().spin_only(true));
}

fn two_producers_one_consumer(opts: fn() -> Options) {
    check(move || {
        let (tx1, mut rx) = mpmc::channel(&opts()).unwrap();
        let tx2 = tx1.try_clone().unwrap();
        let ps: Vec<_> = [(tx1, 1u8), (tx2, 2u8)]
            .into_iter()
            .map(|(mut tx, id)| thread::spawn(move || mpmc_send(&mut tx, &msg(id, 8))))
            .collect();
        let mut got = mpmc_drain(&mut rx);
        got.sort();
        assert_eq!(got, [msg(1, 8), msg(2, 8)]);
        for p in ps {
            p.join().unwrap();
        }
    });
}

/// Up to `n` messages, trying `n` times without waiting.
fn mpmc_try_n(rx: &mut mpmc::Consumer, n: usize) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    for _ in 0..n {
        match rx.try_recv() {
            Ok(g) => got.push(g.to_vec()),
            Err(Error::Empty | Error::Disconnected) => {}
            Err(e) => panic!("mpmc try_recv: {e}"),
        }
    }
    got
}

/// Two producers race for four slots with two messages each; each
/// producer's messages arrive in its order.
#[test]
fn mpmc_two_producers_two_messages_each() {
    check(|| {
        let opts = mpmc_tiny().slots(4);
        let (tx1, mut rx) = mpmc::channel(&opts).unwrap();
        let tx2 = tx1.try_clone().unwrap();
        let ps: Vec<_> = [(tx1, 10u8), (tx2, 20u8)]
            .into_iter()
            .map(|(mut tx, base)| {
                thread::spawn(move || {
                    mpmc_send(&mut tx, &msg(base, 8));
                    mpmc_send(&mut tx, &msg(base + 1, 8));
                })
            })
            .collect();
        let got = mpmc_drain(&mut rx);
        for base in [10u8, 20] {
            let mine: Vec<_> = got.iter().filter(|m| m[0] / 10 == base / 10).collect();
            assert_eq!(mine, [&msg(base, 8), &msg(base + 1, 8)]);
        }
        for p in ps {
            p.join().unwrap();
        }
    });
}

/// The producer sleeps in `send()` on a full queue; the consumer takes one
/// message, which frees a slot and must wake it.
#[test]
fn mpmc_wakeup_producer_sleeps() {
    check(|| {
        let opts = mpmc_tiny().spin(Duration::ZERO).wait(WaitStrategy::Futex);
        let (mut tx, mut rx) = mpmc::channel(&opts).unwrap();
        tx.try_send(&msg(1, 8)).unwrap();
        tx.try_send(&msg(2, 8)).unwrap();
        let c = thread::spawn(move || {
            assert_eq!(mpmc_recv(&mut rx).unwrap(), msg(1, 8));
            rx
        });
        tx.send(&msg(3, 8)).unwrap();
        let mut rx = c.join().unwrap();
        assert_eq!(mpmc_recv(&mut rx).unwrap(), msg(2, 8));
        assert_eq!(mpmc_recv(&mut rx).unwrap(), msg(3, 8));
    });
}

/// One producer, two consumers, three messages through two slots (the third
/// reuses slot 0 after a consumer releases it): every message is taken
/// exactly once.
///
/// The consumers race with two attempts each that do not wait; then the
/// first drains the rest. (Loom does not assume a fair scheduler: with two
/// threads spinning at once it explores schedules that starve the third one
/// forever, e.g. a consumer preempted while it holds a slot. So at most one
/// thread besides the producer may spin.)
#[test]
fn mpmc_one_producer_two_consumers() {
    check(|| {
        let (mut tx, mut rx1) = mpmc::channel(&mpmc_tiny()).unwrap();
        let mut rx2 = rx1.try_clone().unwrap();
        let p = thread::spawn(move || {
            for id in 1..=3 {
                mpmc_send(&mut tx, &msg(id, 8));
            }
        });
        let c = thread::spawn(move || mpmc_try_n(&mut rx2, 2));
        let mut got = mpmc_try_n(&mut rx1, 2);
        got.extend(c.join().unwrap());
        got.extend(mpmc_drain(&mut rx1));
        got.sort();
        assert_eq!(got, [msg(1, 8), msg(2, 8), msg(3, 8)]);
        p.join().unwrap();
    });
}

/// A write grant dropped without commit becomes a skip record that the
/// consumer drops silently, while a second producer's message goes through.
#[test]
fn mpmc_grant_drop_is_skipped() {
    check(|| {
        let (mut tx1, mut rx) = mpmc::channel(&mpmc_tiny()).unwrap();
        let mut tx2 = tx1.try_clone().unwrap();
        let p1 = thread::spawn(move || {
            let mut g = tx1.try_reserve().unwrap();
            g.fill(0xee);
            // Dropped without commit.
        });
        let p2 = thread::spawn(move || mpmc_send(&mut tx2, b"kept"));
        assert_eq!(mpmc_drain(&mut rx), [b"kept".to_vec()]);
        assert_eq!(rx.stats().abandoned, 0);
        p1.join().unwrap();
        p2.join().unwrap();
    });
}

/// A producer dies holding a claimed slot (position 0). The consumer finds
/// position 0 in flight, sees its claimer dead (abandon timeout zero), marks
/// it abandoned and skips it; the live producer's messages at positions 1 and
/// 2 (slot 0 again, freed by that skip) arrive.
#[test]
fn mpmc_abandoned_slot_is_skipped() {
    check(|| {
        let opts = mpmc_tiny().abandon_timeout(Duration::ZERO);
        let (mut dying, mut rx) = mpmc::channel(&opts).unwrap();
        let mut tx = dying.try_clone().unwrap();
        dying.try_reserve().unwrap().__simulate_crash();
        let p = thread::spawn(move || {
            mpmc_send(&mut tx, &msg(1, 8));
            mpmc_send(&mut tx, &msg(2, 8));
            tx
        });
        assert_eq!(mpmc_recv(&mut rx).unwrap(), msg(1, 8));
        assert_eq!(mpmc_recv(&mut rx).unwrap(), msg(2, 8));
        assert_eq!(rx.stats().abandoned, 1);
        drop(p.join().unwrap());
    });
}

/// A producer dies holding position 0; the live producer's message sits at
/// position 1. Two consumers race: either may mark position 0 abandoned, and
/// either may then take (and skip) it; the message is received exactly once.
///
/// Catches a Relaxed `abandon` publish: the consumer that did not abandon
/// would read a stale info word (0 → `Corrupted`).
#[test]
fn mpmc_abandoned_slot_two_consumers() {
    check(|| {
        let opts = mpmc_tiny().abandon_timeout(Duration::ZERO);
        let (mut dying, mut rx1) = mpmc::channel(&opts).unwrap();
        let mut tx = dying.try_clone().unwrap();
        let mut rx2 = rx1.try_clone().unwrap();
        dying.try_reserve().unwrap().__simulate_crash();
        tx.try_send(&msg(1, 8)).unwrap();
        let c = thread::spawn(move || {
            let got = mpmc_try_n(&mut rx2, 3);
            (got, rx2.stats().abandoned)
        });
        let mut got = mpmc_try_n(&mut rx1, 3);
        let (got2, abandoned2) = c.join().unwrap();
        got.extend(got2);
        if got.is_empty() {
            got.push(mpmc_recv(&mut rx1).unwrap());
        }
        assert_eq!(got, [msg(1, 8)]);
        assert_eq!(rx1.stats().abandoned + abandoned2, 1);
        drop(tx);
    });
}

/// A consumer dies holding a message in a full queue; the producer, stuck on
/// that slot, finds its taker dead and reclaims it, and the surviving
/// consumer gets the other messages.
#[test]
fn mpmc_dead_consumer_slot_is_reclaimed() {
    check(|| {
        let opts = mpmc_tiny().abandon_timeout(Duration::ZERO);
        let (mut tx, mut rx) = mpmc::channel(&opts).unwrap();
        let mut dying = rx.try_clone().unwrap();
        tx.try_send(&msg(1, 8)).unwrap();
        tx.try_send(&msg(2, 8)).unwrap();
        let c = thread::spawn(move || {
            let g = dying.try_recv().unwrap();
            assert_eq!(&*g, &msg(1, 8)[..]);
            g.__simulate_crash();
        });
        // Full until the dead consumer's slot is reclaimed.
        mpmc_send(&mut tx, &msg(3, 8));
        c.join().unwrap();
        drop(tx);
        assert_eq!(mpmc_drain(&mut rx), [msg(2, 8), msg(3, 8)]);
    });
}

/// The consumer sleeps in `recv()`; the producer publishes one message and
/// stays attached (so its detach wake cannot mask a lost publish wake).
#[test]
fn mpmc_wakeup_consumer_sleeps() {
    check(|| {
        let opts = mpmc_tiny().spin(Duration::ZERO).wait(WaitStrategy::Futex);
        let (mut tx, mut rx) = mpmc::channel(&opts).unwrap();
        let p = thread::spawn(move || {
            tx.try_send(b"wake").unwrap();
            tx
        });
        assert_eq!(&*rx.recv().unwrap(), b"wake");
        drop(p.join().unwrap());
    });
}

/// Disconnect while a consumer is blocked: the producer sends one message and
/// detaches; the sleeping consumer gets the message, then `Disconnected`.
#[test]
fn mpmc_disconnect_wakes_and_drains() {
    check(|| {
        let opts = mpmc_tiny().spin(Duration::ZERO).wait(WaitStrategy::Futex);
        let (mut tx, mut rx) = mpmc::channel(&opts).unwrap();
        let p = thread::spawn(move || {
            tx.try_send(b"last").unwrap();
        });
        assert_eq!(&*rx.recv().unwrap(), b"last");
        match rx.recv() {
            Err(Error::Disconnected) => {}
            other => panic!(
                "after the last producer left: {:?}",
                other.map(|g| g.to_vec())
            ),
        }
        p.join().unwrap();
    });
}

// ---------------------------------------------------------------------------
// Review defects (issue 12) and the recovery rule's blind spots: abandonment
// with a zero timeout, a second lap of a slot, a live producer publishing
// late, a stale claim record, the first producer's attach, two sleepers on
// one semaphore, forgotten grants and batches.

/// Review 1. A producer dies holding position 0 of two slots; two consumers
/// race to abandon it (zero timeout, so every branch of the recovery rule
/// runs at once). C1 resolves position 0 and takes the live message at 1;
/// then the producer's next message reuses slot 0 (position 2, a second
/// lap) while C2 may still act on its own decision about position 0. Both
/// live messages arrive exactly once and one slot is counted abandoned.
#[test]
fn mpmc_late_abandon_spares_the_second_lap() {
    check(|| {
        let opts = mpmc_tiny().abandon_timeout(Duration::ZERO);
        let (mut dying, mut rx1) = mpmc::channel(&opts).unwrap();
        let mut tx = dying.try_clone().unwrap();
        let mut rx2 = rx1.try_clone().unwrap();
        dying.try_reserve().unwrap().__simulate_crash();
        tx.try_send(&msg(1, 8)).unwrap(); // position 1
        let c = thread::spawn(move || {
            let got = mpmc_try_n(&mut rx2, 1);
            (got, rx2.stats().abandoned)
        });
        let mut got = mpmc_try_n(&mut rx1, 1);
        // Position 2 needs slot 0, free once position 0 is resolved.
        while tx.try_send(&msg(2, 8)).is_err() {
            thread::yield_now();
        }
        let (got2, abandoned2) = c.join().unwrap();
        got.extend(got2);
        while got.len() < 2 {
            got.push(mpmc_recv(&mut rx1).unwrap());
        }
        got.sort();
        assert_eq!(got, [msg(1, 8), msg(2, 8)]);
        assert_eq!(rx1.stats().abandoned + abandoned2, 1);
    });
}

/// Blind spot: a live producer claims position 0 and publishes late. With
/// a zero abandon timeout both consumers look at the stalled slot at once;
/// its claimer is alive, so neither may abandon it, and the message arrives
/// exactly once.
#[test]
fn mpmc_live_late_publish_is_never_abandoned() {
    check(|| {
        let opts = mpmc_tiny().abandon_timeout(Duration::ZERO);
        let (mut tx, mut rx1) = mpmc::channel(&opts).unwrap();
        let mut rx2 = rx1.try_clone().unwrap();
        let p = thread::spawn(move || {
            let mut g = tx.try_reserve().unwrap();
            g[..4].copy_from_slice(b"late");
            thread::yield_now();
            g.commit(4);
            tx
        });
        let c = thread::spawn(move || {
            let got = mpmc_try_n(&mut rx2, 2);
            (got, rx2.stats().abandoned)
        });
        let mut got = mpmc_try_n(&mut rx1, 2);
        let (got2, abandoned2) = c.join().unwrap();
        got.extend(got2);
        drop(p.join().unwrap());
        got.extend(mpmc_drain(&mut rx1));
        assert_eq!(got, [b"late".to_vec()]);
        assert_eq!(rx1.stats().abandoned + abandoned2, 0);
    });
}

/// Blind spot, "at least one dead claimer": a dead producer left a stale
/// claim record for position 0 (it lost that claim and died before clearing
/// it); the live producer really claimed position 0 and publishes while a
/// consumer decides. If the consumer reads the records after the publish
/// cleared the live one, it sees only the dead claimer: its abandon must
/// then fail, not drop the live message.
#[test]
fn mpmc_stale_dead_claim_record_spares_a_live_publish() {
    check(|| {
        let opts = mpmc_tiny().abandon_timeout(Duration::ZERO);
        let (dying, mut rx) = mpmc::channel(&opts).unwrap();
        let mut tx = dying.try_clone().unwrap();
        dying.__set_claim_record(0);
        dying.__simulate_crash();
        let p = thread::spawn(move || {
            let mut g = tx.try_reserve().unwrap();
            g[..4].copy_from_slice(b"live");
            g.commit(4);
            tx
        });
        let mut got = mpmc_try_n(&mut rx, 2);
        drop(p.join().unwrap());
        if got.is_empty() {
            got.push(mpmc_recv(&mut rx).unwrap());
        }
        assert_eq!(got, [b"live".to_vec()]);
        assert_eq!(rx.stats().abandoned, 0);
    });
}

/// Review 6. The consumer polls while the first producer attaches and
/// sends: it must never see "every producer gone" before the message.
#[test]
fn mpmc_first_producer_attach_is_not_disconnected() {
    check(|| {
        let mut rx = mpmc::__heap_consumer(&mpmc_tiny()).unwrap();
        let spare = rx.try_clone().unwrap();
        let p = thread::spawn(move || {
            let mut tx = spare.__attach_producer().unwrap();
            drop(spare);
            tx.try_send(b"first").unwrap();
            tx
        });
        match mpmc_recv(&mut rx) {
            Ok(m) => assert_eq!(m, b"first"),
            Err(e) => panic!("before the first message: {e}"),
        }
        drop(p.join().unwrap());
        assert_eq!(mpmc_recv(&mut rx).err(), Some(Error::Disconnected));
    });
}

/// Review 7, with two sleepers on one semaphore wake word (the semaphore is
/// a loom token counter). A sleeps; a message is posted for it and taken by
/// a third consumer that does not sleep; B registers, finds nothing, and its
/// wait may take the token posted for A. Every later message must still
/// reach a sleeper: a robbed sleeper whose registration is gone would wait
/// forever, which loom reports.
#[test]
fn mpmc_semaphore_token_robbed_by_a_later_sleeper_is_replaced() {
    check(|| {
        let opts = mpmc_tiny()
            .slots(4)
            .max_consumers(3)
            .spin(Duration::ZERO)
            .wait(WaitStrategy::Semaphore);
        let (mut tx, mut stealer) = mpmc::channel(&opts).unwrap();
        let mut a = stealer.try_clone().unwrap();
        let mut b = stealer.try_clone().unwrap();
        let ta = thread::spawn(move || a.recv().unwrap().to_vec());
        tx.try_send(&msg(1, 8)).unwrap();
        let stolen = stealer.try_recv().map(|g| g.to_vec()).ok();
        let tb = thread::spawn(move || b.recv().unwrap().to_vec());
        tx.try_send(&msg(2, 8)).unwrap();
        if stolen.is_some() {
            tx.try_send(&msg(3, 8)).unwrap();
        }
        let sent = if stolen.is_some() { 3 } else { 2 };
        let mut got = vec![ta.join().unwrap(), tb.join().unwrap()];
        got.extend(stolen);
        got.sort();
        let want: Vec<_> = (1..=sent).map(|id| msg(id, 8)).collect();
        assert_eq!(got, want);
        drop(tx);
    });
}

/// Two consumers sleep on the futex wake word at once; one message and a
/// detach must wake both (one gets the message, the other `Disconnected`).
#[test]
fn mpmc_futex_two_sleepers_one_word() {
    check(|| {
        let opts = mpmc_tiny().spin(Duration::ZERO).wait(WaitStrategy::Futex);
        let (mut tx, mut a) = mpmc::channel(&opts).unwrap();
        let mut b = a.try_clone().unwrap();
        let tb = thread::spawn(move || b.recv().map(|g| g.to_vec()));
        let p = thread::spawn(move || {
            tx.try_send(b"one").unwrap();
        });
        let ra = a.recv().map(|g| g.to_vec());
        let rb = tb.join().unwrap();
        p.join().unwrap();
        let (mut oks, mut disc) = (0, 0);
        for r in [ra, rb] {
            match r {
                Ok(m) => {
                    assert_eq!(m, b"one");
                    oks += 1;
                }
                Err(Error::Disconnected) => disc += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!((oks, disc), (1, 1));
    });
}

/// Review 8. A write grant given to `mem::forget` must not wedge the queue:
/// the producer's next claim publishes it as a skip record, and the
/// consumer, draining concurrently, gets the message after it.
#[test]
fn mpmc_forgotten_write_grant_is_skipped() {
    check(|| {
        let (mut tx, mut rx) = mpmc::channel(&mpmc_tiny()).unwrap();
        let c = thread::spawn(move || mpmc_drain(&mut rx));
        std::mem::forget(tx.try_reserve().unwrap());
        tx.try_send(&msg(1, 8)).unwrap();
        drop(tx);
        assert_eq!(c.join().unwrap(), [msg(1, 8)]);
    });
}

/// Review 8. A read grant given to `mem::forget` holds its slot only until
/// the consumer's next receive: the producer, waiting for that slot, then
/// goes on.
#[test]
fn mpmc_forgotten_read_grant_frees_its_slot() {
    check(|| {
        let (mut tx, mut rx) = mpmc::channel(&mpmc_tiny()).unwrap();
        tx.try_send(&msg(1, 8)).unwrap();
        tx.try_send(&msg(2, 8)).unwrap();
        let p = thread::spawn(move || {
            mpmc_send(&mut tx, &msg(3, 8)); // needs slot 0
        });
        std::mem::forget(rx.try_recv().unwrap());
        assert_eq!(mpmc_drain(&mut rx), [msg(2, 8), msg(3, 8)]);
        p.join().unwrap();
    });
}

/// Review 8. A write batch given to `mem::forget` leaves its records
/// unpublished only until the producer's next send; a consumer waiting
/// concurrently gets them all, in order.
#[test]
fn spsc_forgotten_batch_is_published_by_the_next_send() {
    check(|| {
        let (mut tx, mut rx) = spsc::channel(&spsc_tiny()).unwrap();
        let c = thread::spawn(move || {
            let a = spsc_recv(&mut rx).unwrap();
            let b = spsc_recv(&mut rx).unwrap();
            (a, b)
        });
        let mut b = tx.batch();
        b.try_send(&msg(1, 8)).unwrap();
        std::mem::forget(b);
        tx.try_send(&msg(2, 8)).unwrap();
        assert_eq!(c.join().unwrap(), (msg(1, 8), msg(2, 8)));
    });
}

// ---------------------------------------------------------------------------
// Named segments (review 3 and 5): the real create, publish, open, attach,
// detach and remove code over loom's model of /dev/shm and of OFD locks.

/// Review 3. The last endpoint leaves (and removes the segment) while
/// another opens the name and attaches. The opener must never end on a
/// segment that lost its name, and nothing may be left behind.
#[test]
fn segment_last_leaver_races_an_opener() {
    check(|| {
        let opts = spsc_tiny();
        let rx = spsc::Consumer::create("race", &opts).unwrap();
        let o2 = opts.clone();
        let t = thread::spawn(move || {
            let tx = spsc::Producer::open_or_create("race", &o2).unwrap();
            assert!(tx.__linked(), "attached to an orphaned segment");
        });
        drop(rx);
        t.join().unwrap();
        assert_eq!(shmq::__model_shm_names(), Vec::<String>::new());
    });
}

/// Review 5. Two endpoints `open_or_create` one name at once: one creates,
/// the other opens the winner's segment (never a half-made one); a message
/// gets across, and the last to leave removes the segment.
#[test]
fn segment_open_or_create_race() {
    check(|| {
        let opts = spsc_tiny();
        let o2 = opts.clone();
        let t = thread::spawn(move || {
            let mut tx = spsc::Producer::open_or_create("oc", &o2).unwrap();
            assert!(tx.__linked());
            tx.try_send(b"hi").unwrap();
            tx
        });
        let mut rx = spsc::Consumer::open_or_create("oc", &opts).unwrap();
        assert!(rx.__linked());
        let tx = t.join().unwrap();
        assert_eq!(spsc_recv(&mut rx).unwrap(), b"hi");
        drop((tx, rx));
        assert_eq!(shmq::__model_shm_names(), Vec::<String>::new());
    });
}
