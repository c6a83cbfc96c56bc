//! Regression tests for bugs the fuzzers (`fuzz/`) found. Each one replays
//! the essence of a minimized fuzz input through the public API, on a named
//! segment whose bytes the test scribbles on as a hostile peer would.

mod common;

use std::io::{Seek, SeekFrom, Write};

use common::Name;
use std::time::Duration;

use shmq::{Error, Options, WaitStrategy, mpmc, spsc};

use shmq::__layout::{CAPACITY, CONS_CURSOR, NOT_FULL, PROD_CURSOR, SLOT_SIZE};

/// Where the slots of an MPMC ring with one producer and one consumer slot
/// start.
fn mpmc_data_1x1() -> u64 {
    shmq::__layout::mpmc_data_offset(1, 1)
}

/// Writes `v` at byte `off` of the segment file, as a scribbling peer would.
fn scribble(name: &Name, off: u64, v: u64) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(name.path())
        .unwrap();
    f.seek(SeekFrom::Start(off)).unwrap();
    f.write_all(&v.to_le_bytes()).unwrap();
}

/// A small SPSC ring that sleeps on semaphores, kept for the test to
/// scribble on.
fn semaphore_opts() -> Options {
    Options::new()
        .capacity(256)
        .wait(WaitStrategy::Semaphore)
        .keep(true)
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
#[cfg_attr(miri, ignore = "named segments need shm_open")]
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
#[cfg_attr(miri, ignore = "named segments need shm_open")]
fn mpmc_enqueue_cursor_at_u64_max_is_corrupted_not_a_panic() {
    let name = Name::new("reg-enq-max");
    drop(mpmc::Producer::create(&name, &mpmc_opts()).unwrap());
    scribble(&name, PROD_CURSOR, u64::MAX);
    // Slot 3 serves position u64::MAX: make its sequence say "free for it".
    scribble(&name, mpmc_data_1x1() + 3 * 64, u64::MAX);
    let mut tx = mpmc::Producer::open(&name, &mpmc_opts()).unwrap();
    assert!(matches!(tx.try_send(b"x").err(), Some(Error::Corrupted(_))));
}

/// fuzz: the SPSC producer continues from the segment's write cursor; one
/// just below `u64::MAX` (valid as far as attach checks go) made
/// `try_reserve` overflow computing the record's start after padding.
#[test]
#[cfg_attr(miri, ignore = "named segments need shm_open")]
fn spsc_write_cursor_near_u64_max_is_corrupted_not_a_panic() {
    let name = Name::new("reg-tail-max");
    let opts = Options::new().capacity(256).keep(true);
    drop(spsc::Producer::create(&name, &opts).unwrap());
    scribble(&name, PROD_CURSOR, u64::MAX - 7);
    scribble(&name, CONS_CURSOR, u64::MAX - 7);
    // Reported at attach (before version 5: by the first send).
    assert!(matches!(
        spsc::Producer::open(&name, &opts).err(),
        Some(shmq::OpenError::Corrupted { .. })
    ));
    assert!(matches!(
        spsc::Consumer::open(&name, &opts).err(),
        Some(shmq::OpenError::Corrupted { .. })
    ));
}

/// fuzz: peer_hostile, `fuzz/regressions/peer_hostile/mpmc-sequence-ahead-of-cursor-spin`.
/// A slot sequence ahead of an enqueue cursor that does not move (a peer
/// scribbled one or the other) made every claim spin `MAX_TRIES` times and
/// report `Full`: `send_timeout(0)` took seconds under the fuzzer and the
/// producer was wedged instead of poisoned.
#[test]
#[cfg_attr(miri, ignore = "named segments need shm_open")]
fn mpmc_sequence_ahead_of_enqueue_cursor_is_corrupted() {
    let name = Name::new("reg-seq-ahead-p");
    drop(mpmc::Producer::create(&name, &mpmc_opts()).unwrap());
    // Slot 0 serves position 0, which the cursor says is unclaimed.
    scribble(&name, mpmc_data_1x1(), 5);
    let mut tx = mpmc::Producer::open(&name, &mpmc_opts()).unwrap();
    assert!(matches!(tx.try_send(b"x").err(), Some(Error::Corrupted(_))));
}

/// fuzz: the consumer-side twin (`try_take`).
#[test]
#[cfg_attr(miri, ignore = "named segments need shm_open")]
fn mpmc_sequence_ahead_of_dequeue_cursor_is_corrupted() {
    let name = Name::new("reg-seq-ahead-c");
    drop(mpmc::Producer::create(&name, &mpmc_opts()).unwrap());
    scribble(&name, mpmc_data_1x1(), 7);
    let mut rx = mpmc::Consumer::open(&name, &mpmc_opts()).unwrap();
    assert!(matches!(rx.try_recv().err(), Some(Error::Corrupted(_))));
}

/// fuzz: open_hostile, `fuzz/regressions/open_hostile/semaphore-waiters-post-loop`.
/// With the semaphore backend, a wake posts once per registered sleeper,
/// and the sleeper count is a segment word: a scribbled count of ~2^32 made
/// any wake (here the one in the consumer's detach) loop on `sem_post` for
/// minutes. Wakes now post at most once per possible endpoint.
#[test]
#[cfg_attr(miri, ignore = "named segments need shm_open")]
fn semaphore_wake_with_scribbled_sleeper_count_returns_promptly() {
    let name = Name::new("reg-sem-waiters");
    // A semaphore segment. (This test used to make one by scribbling the
    // `wake` field of a futex segment; its semaphores were then never
    // initialised, which opens now refuse: see
    // `semaphore_with_scribbled_flags_is_corrupted_not_an_abort`.)
    let opts = semaphore_opts();
    drop(spsc::Producer::create(&name, &opts).unwrap());
    // `not_full` wake word: epoch 0, u32::MAX sleepers.
    scribble(&name, NOT_FULL, 0xffff_ffff_0000_0000);
    let rx = spsc::Consumer::open(&name, &opts).unwrap();
    // Detaching wakes `not_full`: this must return (before the fix it
    // posted the semaphore 2^32 - 1 times, for minutes). At most 2048
    // posts (the most endpoints a segment can have) take milliseconds; the
    // bound is generous for a loaded machine.
    let t0 = std::time::Instant::now();
    drop(rx);
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(5), "the detach took {took:?}");
}

/// fuzz: open_hostile (the CI run of stop 18),
/// `fuzz/regressions/open_hostile/semaphore-flags-abort`. glibc keeps a
/// semaphore's futex flags inside the `sem_t` (the `int` after the 64-bit
/// count) and aborts the process ("The futex facility returned an
/// unexpected error code") when the kernel refuses them. A peer that
/// scribbled that word made any post or wait on the semaphore kill us:
/// the fuzzer's image did it through the consumer's detach, which wakes
/// the producers' word. Now the word is checked at open and before every
/// post or wait: a blocked receive returns `Corrupted`, a wake skips the
/// post, an open fails with `OpenError::Corrupted`.
#[test]
#[cfg(target_env = "gnu")]
#[cfg_attr(miri, ignore = "named segments need shm_open")]
fn semaphore_with_scribbled_flags_is_corrupted_not_an_abort() {
    use shmq::__layout::{NOT_EMPTY, WAKE_SEM};
    // glibc (64-bit): `struct new_sem { uint64_t data; int private; int pad; }`.
    const FLAGS: u64 = WAKE_SEM + 8;
    const JUNK: u64 = 0x6d6d_6d6d_6d6d_6d6d;
    let name = Name::new("reg-sem-flags");
    let opts = semaphore_opts();
    let tx = spsc::Producer::create(&name, &opts).unwrap();
    let mut rx = spsc::Consumer::open(&name, &opts).unwrap();
    // A receive that has to sleep on the scribbled semaphore.
    scribble(&name, NOT_EMPTY + FLAGS, JUNK);
    let r = rx.recv_timeout(Duration::from_secs(10)).map(|g| g.len());
    assert!(matches!(r, Err(Error::Corrupted(_))), "{r:?}");
    assert!(matches!(rx.try_recv().err(), Some(Error::Corrupted(_))));
    // A wake that has to post: one registered producer on `not_full`.
    scribble(&name, NOT_FULL, 1 << 32);
    scribble(&name, NOT_FULL + FLAGS, JUNK);
    drop(rx);
    drop(tx);
    match spsc::Consumer::open(&name, &opts) {
        Err(shmq::OpenError::Corrupted { detail, .. }) => {
            assert!(detail.contains("semaphore"), "{detail}")
        }
        r => panic!("open of a scribbled semaphore: {:?}", r.err()),
    }
}

/// Found in review of the fix above: a scribbled semaphore *count* (the
/// low half of glibc's 64-bit `data` word) made every sleep return at once
/// with a token: a consumer waiting for a message spun through sleeps
/// (2^31 of them, minutes of CPU) instead of sleeping. No more tokens can
/// be pending than sleepers could ever be woken; a count far above that is
/// `Corrupted`, like the flags word.
#[test]
#[cfg(all(target_env = "gnu", target_pointer_width = "64"))]
#[cfg_attr(miri, ignore = "named segments need shm_open")]
fn semaphore_with_scribbled_count_is_corrupted_not_a_busy_loop() {
    use shmq::__layout::{NOT_EMPTY, WAKE_SEM};
    let name = Name::new("reg-sem-count");
    let opts = semaphore_opts();
    let _tx = spsc::Producer::create(&name, &opts).unwrap();
    let mut rx = spsc::Consumer::open(&name, &opts).unwrap();
    // `data`: count 0x7fff_ffff, no waiters.
    scribble(&name, NOT_EMPTY + WAKE_SEM, 0x7fff_ffff);
    let r = rx.recv_timeout(Duration::from_millis(300)).map(|g| g.len());
    assert!(matches!(r, Err(Error::Corrupted(_))), "{r:?}");
    assert!(rx.stats().waits < 1000, "{} sleeps", rx.stats().waits);
}

// ---------------------------------------------------------------------------
// Defects found by the hostile review (issue 12). Each test failed on the
// code before its fix.

/// Review 1: a consumer that decided late (after a preemption) to abandon
/// position 0 stored `ABD!` into the slot's info word before its CAS on the
/// sequence, without checking that the slot still served position 0. By
/// then another consumer had abandoned and skipped position 0 and a
/// producer had published position 2 into the same slot: that real message
/// was dropped as "abandoned".
#[test]
fn review_01_late_abandon_does_not_touch_the_next_lap() {
    let o = Options::new()
        .slots(2)
        .slot_size(32)
        .abandon_timeout(std::time::Duration::ZERO);
    let (mut dying, mut c1) = mpmc::channel(&o).unwrap();
    let mut live = dying.try_clone().unwrap();
    let mut c2 = c1.try_clone().unwrap();
    // Position 0: claimed by a producer that dies before committing.
    dying.try_reserve().unwrap().__simulate_crash();
    live.send(b"one").unwrap(); // position 1
    // C1 finds position 0 stalled, its claimer dead: abandons and skips it.
    assert_eq!(&*c1.try_recv().unwrap(), b"one");
    assert_eq!(c1.stats().abandoned, 1);
    live.send(b"two").unwrap(); // position 2: slot 0 again
    // C2 acts on its stale decision about position 0.
    assert!(!c2.__abandon(0), "position 0 was resolved long ago");
    assert_eq!(&*c1.try_recv().unwrap(), b"two");
    assert_eq!(c1.stats().abandoned + c2.stats().abandoned, 1);
}

/// Review 2: a spinning reserve added the full-ring back-off slack (an
/// eighth of the ring) to a need that already included the wrap padding,
/// so a message above about 3/8 of the ring that had to wrap never fit,
/// even in an empty ring: `send` spun forever.
#[test]
fn review_02_spin_reserve_of_a_wrapping_large_message_succeeds() {
    for wait in [WaitStrategy::Spin, WaitStrategy::SpinThenYield] {
        let o = Options::new().capacity(1024).wait(wait);
        let (mut tx, mut rx) = spsc::channel(&o).unwrap();
        tx.send(&[1; 504]).unwrap();
        tx.send(&[2; 8]).unwrap(); // write position 528
        // The consumer drains both while the producer already spins: 504
        // bytes need a 512-byte record, after 496 bytes of padding.
        let c = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            assert_eq!(rx.try_recv().unwrap().len(), 504);
            assert_eq!(rx.try_recv().unwrap().len(), 8);
            rx
        });
        let r = tx.send_timeout(&[3; 504], Duration::from_secs(2));
        let mut rx = c.join().unwrap();
        r.unwrap_or_else(|e| panic!("{wait:?}: {e}"));
        assert_eq!(&*rx.try_recv().unwrap(), &[3; 504][..]);
    }
}

/// Review 6: `attach` counted a producer in `producers_seen` before
/// `live_producers`, so a consumer polling while the first producer
/// attached could read "none alive, one seen" and report `Disconnected`
/// (38 of 2000 trials in the review).
#[test]
#[cfg_attr(miri, ignore = "named segments need shm_open")]
fn review_06_first_producer_attach_is_not_disconnected() {
    let o = Options::new().slots(4).slot_size(32);
    let mut spurious = 0;
    for _ in 0..2000 {
        let name = Name::new("reg-first-attach");
        let mut rx = mpmc::Consumer::create(&name, &o).unwrap();
        let n = name.0.clone();
        let o2 = o.clone();
        let p = std::thread::spawn(move || {
            let mut tx = mpmc::Producer::open(&n, &o2).unwrap();
            tx.send(b"x").unwrap();
            tx
        });
        loop {
            match rx.try_recv() {
                Ok(_) => break,
                Err(Error::Empty) => std::hint::spin_loop(),
                Err(Error::Disconnected) => {
                    spurious += 1;
                    break;
                }
                Err(e) => panic!("{e}"),
            }
        }
        drop(p.join().unwrap());
    }
    assert_eq!(spurious, 0, "Disconnected before the first producer sent");
}

/// Review 8: a write grant given to `mem::forget` (safe code) left its
/// slot claimed forever: the producer's next claim overwrote its claim
/// record, so the slot could never be abandoned, and every consumer
/// stopped there. Likewise a forgotten read grant held its slot from the
/// producers, and a forgotten SPSC batch left the producer unpublished.
#[test]
fn review_08_forgotten_grants_and_batches_do_not_wedge() {
    let t = Duration::from_secs(2);
    let o = Options::new().slots(2).slot_size(32);
    // MPMC write grant.
    let (mut tx, mut rx) = mpmc::channel(&o).unwrap();
    std::mem::forget(tx.try_reserve().unwrap());
    tx.send(b"after").unwrap();
    assert_eq!(&*rx.recv_timeout(t).unwrap(), b"after");
    std::mem::forget(tx.try_reserve().unwrap());
    drop(tx);
    assert_eq!(rx.recv_timeout(t).err(), Some(Error::Disconnected));
    // MPMC read grant: the consumer's next call frees the slot.
    let (mut tx, mut rx) = mpmc::channel(&o).unwrap();
    tx.send(b"a").unwrap();
    tx.send(b"b").unwrap();
    std::mem::forget(rx.try_recv().unwrap());
    assert_eq!(&*rx.try_recv().unwrap(), b"b");
    tx.send_timeout(b"c", t).unwrap();
    tx.send_timeout(b"d", t).unwrap();
    // SPSC write batch: the next send publishes what it committed.
    let (mut tx, mut rx) = spsc::channel(&Options::new().capacity(256)).unwrap();
    let mut b = tx.batch();
    b.send(b"in batch").unwrap();
    std::mem::forget(b);
    tx.send(b"after").unwrap();
    assert_eq!(&*rx.recv_timeout(t).unwrap(), b"in batch");
    assert_eq!(&*rx.recv_timeout(t).unwrap(), b"after");
    // SPSC read batch: the next release frees what it released.
    for _ in 0..6 {
        tx.send(&[0; 24]).unwrap();
    }
    let mut b = rx.batch();
    for _ in 0..6 {
        drop(b.try_recv().unwrap());
    }
    std::mem::forget(b);
    tx.send(&[1; 24]).unwrap();
    drop(rx.try_recv().unwrap());
    for _ in 0..6 {
        tx.send_timeout(&[2; 24], t).unwrap();
    }
}

/// Review 9: the SPSC record header stores the length in 32 bits, but the
/// largest message of a ring above 2^33 bytes was larger: a message of
/// 4 GiB + 16 bytes was accepted and arrived as 16 bytes. (The ring's
/// pages are reserved lazily: the test touches only a few of them.)
#[test]
#[cfg_attr(miri, ignore = "16 GiB of address space")]
fn review_09_message_longer_than_the_header_can_say_is_too_large() {
    let (mut tx, mut rx) = spsc::channel(&Options::new().capacity(1 << 34)).unwrap();
    assert!(tx.max_message_len() <= u32::MAX as usize);
    let len = (1usize << 32) + 16;
    match tx.try_reserve(len) {
        Err(Error::TooLarge { len: l, max }) => assert_eq!((l, max), (len, tx.max_message_len())),
        Err(e) => panic!("{e}"),
        Ok(g) => {
            g.commit(len);
            assert_eq!(rx.try_recv().unwrap().len(), len, "length truncated");
        }
    }
}

/// Review 10: `recv_into` (and the typed `recv`) copied a message out
/// through a `&[u8]` over ring memory, which a peer may write at any time.
/// Run under Miri (`scripts/ci-miri.sh`), a peer rewriting the payload with
/// atomic word stores while it is copied out is a data race unless the copy
/// reads the ring with atomic loads through raw pointers.
#[test]
fn review_10_copy_out_reads_the_ring_without_references() {
    // SPSC: the first record's payload starts 8 bytes into the data area.
    let (mut tx, mut rx) = spsc::channel(&Options::new().capacity(256)).unwrap();
    tx.send(&[7; 64]).unwrap();
    let off = tx.__data_offset() + 8;
    let peer = std::thread::spawn(move || {
        for k in 0..8 {
            tx.__poke(off + 8 * k, u64::MAX);
        }
        tx
    });
    let mut buf = [0u8; 64];
    assert_eq!(rx.recv_into(&mut buf).unwrap(), 64);
    assert!(buf.iter().all(|&b| b == 7 || b == 0xff));
    drop(peer.join().unwrap());
    // MPMC: the slot's payload follows its 16-byte header.
    let (mut tx, mut rx) = mpmc::channel(&Options::new().slots(2).slot_size(80)).unwrap();
    tx.send(&[7; 64]).unwrap();
    let off = tx.__data_offset() + 16;
    let peer = std::thread::spawn(move || {
        for k in 0..8 {
            tx.__poke(off + 8 * k, u64::MAX);
        }
        tx
    });
    assert_eq!(rx.recv_into(&mut buf).unwrap(), 64);
    assert!(buf.iter().all(|&b| b == 7 || b == 0xff));
    drop(peer.join().unwrap());
    // Typed `recv_into` copies out the same way.
    let (mut tx, mut rx) =
        shmq::typed::channel::<[u64; 8], shmq::typed::Spsc>(&Options::new()).unwrap();
    tx.send([7; 8]).unwrap();
    let off = tx.raw().__data_offset() + 8;
    let peer = std::thread::spawn(move || {
        for k in 0..8 {
            tx.raw().__poke(off + 8 * k, u64::MAX);
        }
        tx
    });
    let mut v = [0u64; 8];
    rx.recv_into(&mut v).unwrap();
    assert!(v.iter().all(|&w| w == 7 || w == u64::MAX));
    drop(peer.join().unwrap());
}

// ---------------------------------------------------------------------------
// Found by a second hostile review (of the fixes above), each reproduced
// first by a test that failed; numbered as in that review.

extern "C" fn ignore_signal(_: libc::c_int) {}

/// R1: a signal arriving more often than the liveness interval ended every
/// sleep early (a futex wait returns EINTR), and the wait loop only probed
/// the peer after a sleep that timed out: a dead producer was never
/// reported while the signals went on.
#[test]
#[cfg_attr(miri, ignore = "signals")]
fn review2_r1_periodic_signals_do_not_hide_a_dead_peer() {
    // SAFETY: a handler that does nothing; SA_RESTART as most programs set.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = ignore_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut());
    }
    let o = Options::new()
        .liveness_interval(Duration::from_millis(100))
        .spin(Duration::ZERO);
    let (tx, mut rx) = spsc::channel(&o).unwrap();
    tx.__simulate_crash();
    let (done, done_rx) = std::sync::mpsc::channel();
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        // SAFETY: no preconditions.
        tid_tx.send(unsafe { libc::pthread_self() }).unwrap();
        done.send(rx.recv().map(|g| g.len())).unwrap();
    });
    let tid = tid_rx.recv().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let got = loop {
        if let Ok(r) = done_rx.try_recv() {
            break Some(r);
        }
        if std::time::Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
        // SAFETY: the thread is alive until it sends its result.
        unsafe { libc::pthread_kill(tid, libc::SIGUSR1) };
    };
    // (Without the signals the thread ends at once: let it.)
    let late = done_rx.recv_timeout(Duration::from_secs(5)).ok();
    h.join().unwrap();
    assert_eq!(
        got,
        Some(Err(Error::PeerDied)),
        "only after the signals stopped: {late:?}"
    );
}

/// R2: a producer killed between its attach CAS and the live-producer count
/// increment (or between its detach CAS and the decrement) left the count
/// wrong for good: a consumer reported `Disconnected` with a producer
/// attached, and never once all were gone. Here the slot states left by
/// such kills are written directly; the states are now the only record.
#[test]
#[cfg_attr(miri, ignore = "named segments need shm_open")]
fn review2_r2_producer_killed_inside_attach_or_detach() {
    let o = Options::new()
        .slots(8)
        .slot_size(64)
        .max_producers(2)
        .max_consumers(2)
        .liveness_interval(Duration::from_millis(10));
    // Killed inside attach: slot 0 attached (generation 1), never counted.
    let name = Name::new("r2-attach");
    let mut rx = mpmc::Consumer::create(&name, &o).unwrap();
    rx.__poke(rx.__endpoint_offset(0), 4 | 1);
    let mut tx = mpmc::Producer::open(&name, &o).unwrap();
    let idle = rx.recv_timeout(Duration::from_millis(300)).map(|g| g.len());
    assert_eq!(idle, Err(Error::Timeout), "a live producer is attached");
    tx.send(b"last").unwrap();
    drop(tx);
    assert_eq!(&*rx.recv().unwrap(), b"last");
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(2)).map(|g| g.len()),
        Err(Error::Disconnected)
    );
    // Killed inside detach: slot 0 detached, still counted.
    let name = Name::new("r2-detach");
    let mut rx = mpmc::Consumer::create(&name, &o).unwrap();
    let mut tx = mpmc::Producer::open(&name, &o).unwrap();
    tx.send(b"last").unwrap();
    rx.__poke(rx.__endpoint_offset(0), 4 | 2);
    tx.__simulate_crash();
    assert_eq!(&*rx.recv().unwrap(), b"last");
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(2)).map(|g| g.len()),
        Err(Error::Disconnected)
    );
}

/// R3: a dead consumer's slot was not reused while its claim was
/// unresolved, and only producers wrapping around onto that position could
/// resolve it: with `max_consumers(1)` and light traffic, a restarted
/// consumer got `Busy` for ever.
#[test]
#[cfg_attr(miri, ignore = "named segments need shm_open")]
fn review2_r3_dead_consumer_slot_is_taken_over() {
    let name = Name::new("r3");
    let o = Options::new().slots(64).slot_size(64).max_consumers(1);
    let mut tx = mpmc::Producer::create(&name, &o).unwrap();
    let mut rx = mpmc::Consumer::open(&name, &o).unwrap();
    tx.send(b"job 1").unwrap();
    tx.send(b"job 2").unwrap();
    rx.recv().unwrap().__simulate_crash();
    rx.__simulate_crash();
    let mut rx = mpmc::Consumer::open(&name, &o).expect("the dead consumer's slot");
    // Job 1 died with its consumer (at most once); job 2 is next.
    assert_eq!(&*rx.recv().unwrap(), b"job 2");
}

/// R4: a typed endpoint checked the element type's size against the header
/// but not against the ring's geometry: a peer that rewrote capacity and
/// slot size (keeping the file size) made a typed MPMC send panic on a
/// slice out of range.
#[test]
#[cfg_attr(miri, ignore = "named segments need shm_open")]
fn review2_r4_typed_open_checks_the_slot_holds_the_type() {
    use shmq::typed::{Mpmc, Receiver, Sender};
    let name = Name::new("r4");
    let o = Options::new().slots(8);
    let rx = Receiver::<[u8; 64], Mpmc>::create(&name, &o).unwrap(); // 8 x 80
    rx.raw().__poke(CAPACITY as usize, 16);
    // Slot size 40 (max_producers 64 kept): the same file size.
    rx.raw().__poke(SLOT_SIZE as usize, 40 | (64 << 32));
    let r = Sender::<[u8; 64], Mpmc>::open(&name, &o);
    assert!(
        matches!(r, Err(shmq::OpenError::Corrupted { .. })),
        "{:?}",
        r.err()
    );
}

/// R5: a timeout of `Duration::MAX` ("no limit") overflowed `Instant` and
/// panicked, in `recv_timeout` and in `open_timeout`.
#[test]
fn review2_r5_duration_max_means_no_limit() {
    let (mut tx, mut rx) = spsc::channel(&Options::new()).unwrap();
    tx.send(b"x").unwrap();
    assert_eq!(&*rx.recv_timeout(Duration::MAX).unwrap(), b"x");
    if !cfg!(miri) {
        // (Named segments need shm_open, which Miri cannot run.)
        let o = Options::new().open_timeout(Duration::MAX);
        assert!(matches!(
            spsc::Consumer::open("surely-not-there-r5", &o),
            Err(shmq::OpenError::NotFound { .. })
        ));
    }
}

/// R8: after a consumer abandoned a slot whose producer died, only
/// producers were woken: another consumer asleep with a message waiting
/// behind that slot slept on until its liveness check.
#[test]
#[cfg_attr(miri, ignore = "named segments need shm_open")]
fn review2_r8_abandoning_a_slot_wakes_the_other_consumers() {
    let name = Name::new("r8");
    let base = Options::new()
        .slots(8)
        .slot_size(64)
        .max_producers(2)
        .max_consumers(2);
    let fast = base
        .clone()
        .liveness_interval(Duration::from_millis(20))
        .abandon_timeout(Duration::from_millis(100));
    let slow = base
        .clone()
        .liveness_interval(Duration::from_secs(5))
        .abandon_timeout(Duration::from_millis(100));
    let mut dead = mpmc::Producer::create(&name, &base).unwrap();
    let mut live = mpmc::Producer::open(&name, &base).unwrap();
    let mut a = mpmc::Consumer::open(&name, &fast).unwrap();
    let mut b = mpmc::Consumer::open(&name, &slow).unwrap();
    let (done, got) = std::sync::mpsc::channel();
    let d2 = done.clone();
    let ha = std::thread::spawn(move || {
        let g = a.recv().unwrap();
        d2.send(g.to_vec()).unwrap();
        std::thread::sleep(Duration::from_secs(3)); // busy with it
    });
    let hb = std::thread::spawn(move || {
        let g = b.recv().unwrap();
        done.send(g.to_vec()).unwrap();
    });
    std::thread::sleep(Duration::from_millis(50));
    dead.reserve().unwrap().__simulate_crash(); // claims position 0, dies
    live.send(b"m1").unwrap();
    live.send(b"m2").unwrap();
    let first = got.recv_timeout(Duration::from_secs(2)).unwrap();
    // B must not sleep until its 5 s liveness check with m2 waiting.
    let second = got.recv_timeout(Duration::from_secs(1));
    ha.join().unwrap();
    hb.join().unwrap();
    // (Either consumer may take either message once position 0 is
    // abandoned, and report it first: the order of the two is a race.)
    let mut both = [Some(first), second.ok()];
    both.sort();
    assert_eq!(both, [Some(b"m1".to_vec()), Some(b"m2".to_vec())]);
}

/// R9: `open_or_create` with `reclaim_stale` removed a segment it could
/// open, and the messages a producer had left in it: it lost the race to
/// publish its own segment and then reclaimed the winner's as stale.
#[test]
#[cfg_attr(miri, ignore = "named segments need shm_open")]
fn review2_r9_open_or_create_never_reclaims_an_openable_segment() {
    let mut lost = 0;
    for _ in 0..40 {
        let name = Name::new("r9");
        let n2 = name.0.clone();
        let bar = std::sync::Arc::new(std::sync::Barrier::new(2));
        let b2 = bar.clone();
        let p = std::thread::spawn(move || {
            b2.wait();
            std::thread::sleep(Duration::from_micros(300));
            let o = Options::new().capacity(4096);
            let mut tx = spsc::Producer::open_or_create(&n2, &o).unwrap();
            tx.send(b"committed").unwrap();
        });
        bar.wait();
        let o = Options::new().capacity(64 << 20).reclaim_stale(true);
        let mut rx = spsc::Consumer::open_or_create(&name, &o).unwrap();
        p.join().unwrap();
        if rx.recv_timeout(Duration::from_millis(500)).is_err() {
            lost += 1;
        }
    }
    assert_eq!(lost, 0, "runs that lost the committed message");
}

// ---------------------------------------------------------------------------
// API additions of issue 12.

/// A blocked `recv` with no deadline returns `Interrupted` when another
/// thread interrupts it; a pending interrupt ends the next wait; each
/// backend wakes the sleeper.
#[test]
fn interrupter_ends_blocked_calls() {
    for wait in [
        WaitStrategy::Futex,
        WaitStrategy::Semaphore,
        WaitStrategy::Spin,
        WaitStrategy::SpinThenYield,
    ] {
        let o = Options::new().wait(wait).spin(Duration::from_micros(10));
        let (_tx, mut rx) = spsc::channel(&o).unwrap();
        let i = rx.interrupter();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            i.interrupt();
        });
        assert_eq!(rx.recv().err(), Some(Error::Interrupted), "{wait:?}");
        t.join().unwrap();
        // Taken: the next wait is a normal one.
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(10)).err(),
            Some(Error::Timeout)
        );
    }
    // MPMC producer waiting on a full queue.
    let (mut tx, _rx) = mpmc::channel(&Options::new().slots(2).slot_size(32)).unwrap();
    tx.send(b"1").unwrap();
    tx.send(b"2").unwrap();
    let i = tx.interrupter();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        i.interrupt();
    });
    assert_eq!(tx.send(b"3").err(), Some(Error::Interrupted));
    t.join().unwrap();
}

static SIGNAL_INTERRUPTER: std::sync::OnceLock<shmq::Interrupter> = std::sync::OnceLock::new();

extern "C" fn interrupt_from_signal(_: libc::c_int) {
    if let Some(i) = SIGNAL_INTERRUPTER.get() {
        i.interrupt();
    }
}

/// `Interrupter::interrupt` from a signal handler ends a blocking call.
#[test]
#[cfg_attr(miri, ignore = "signals")]
fn interrupter_works_from_a_signal_handler() {
    let (_tx, mut rx) = spsc::channel(&Options::new().spin(Duration::ZERO)).unwrap();
    SIGNAL_INTERRUPTER.set(rx.interrupter()).ok().unwrap();
    // SAFETY: installs a handler that only calls `interrupt` (async-signal-safe).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = interrupt_from_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigaction(libc::SIGUSR2, &sa, std::ptr::null_mut());
    }
    // SAFETY: no preconditions.
    let me = unsafe { libc::pthread_self() };
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        // SAFETY: the main test thread outlives this one (joined below).
        unsafe { libc::pthread_kill(me, libc::SIGUSR2) };
    });
    assert_eq!(rx.recv().err(), Some(Error::Interrupted));
    t.join().unwrap();
}

/// `Corrupted` says which value was wrong, where, and what it held.
#[test]
#[cfg_attr(miri, ignore = "named segments need shm_open")]
fn corrupted_names_the_field_offset_and_value() {
    let name = Name::new("reg-detail");
    let opts = Options::new().capacity(256).keep(true);
    let mut tx = spsc::Producer::create(&name, &opts).unwrap();
    let mut rx = spsc::Consumer::open(&name, &opts).unwrap();
    tx.send(b"x").unwrap();
    let off = tx.__data_offset();
    tx.__poke(off, 0xdead_0000_0001);
    match rx.try_recv().err() {
        Some(Error::Corrupted(c)) => {
            assert_eq!(c.what, "bad record tag");
            assert_eq!(c.offset, Some(off as u64));
            assert_eq!(c.value, 0xdead_0000_0001);
            let text = Error::Corrupted(c).to_string();
            assert!(
                text.contains("0xdead00000001") && text.contains(&format!("{off:#x}")),
                "{text}"
            );
        }
        other => panic!("{other:?}"),
    }
}
