//! Heap-only scenarios meant for Miri (`scripts/ci-miri.sh`): real threads,
//! the zero-copy grants, wrap-around with padding, batches, futex sleeps and
//! wakes, and the MPMC dead-endpoint recovery, all on heap channels, so Miri
//! checks the unsafe code (raw pointers into the region, payload slices,
//! atomics next to plain bytes) for undefined behaviour and data races.
//!
//! They run under plain `cargo test` too. Counts are small because Miri is
//! slow; they are scenarios, not stress tests.

use std::thread;
use std::time::Duration;

use shmq::{Error, Options, WaitStrategy, mpmc, spsc};

/// Messages per producer: enough to wrap a tiny ring many times.
const N: usize = if cfg!(miri) { 40 } else { 2000 };

/// Blocking calls sleep on the futex at once (no spin window), so that the
/// sleep and wake paths run, under Miri too.
fn blocking(o: Options) -> Options {
    o.spin(Duration::ZERO).wait(WaitStrategy::Futex)
}

/// Message `i`: its length cycles through 0..=24, its bytes encode `i`.
fn message(i: usize) -> Vec<u8> {
    let len = i % 25;
    (0..len).map(|k| (i + k) as u8).collect()
}

#[test]
fn spsc_threads_wrap_with_padding() {
    wrap_with_padding(&blocking(Options::new().capacity(64)));
}

/// The same in a spin-only ring: both sides spin, no wake checks.
#[test]
fn spsc_spin_only_threads_wrap_with_padding() {
    wrap_with_padding(&Options::new().capacity(64).spin_only(true));
}

/// `N` messages through a 64-byte ring, messages up to 24 bytes: padding
/// records all the time.
fn wrap_with_padding(opts: &Options) {
    let (mut tx, mut rx) = spsc::channel(opts).unwrap();
    let p = thread::spawn(move || {
        for i in 0..N {
            tx.send(&message(i)).unwrap();
        }
    });
    for i in 0..N {
        let g = rx.recv().unwrap();
        assert_eq!(&*g, &message(i)[..], "message {i}");
    }
    p.join().unwrap();
    assert_eq!(rx.recv().err(), Some(Error::Disconnected));
}

#[test]
fn spsc_threads_grants_and_batches() {
    let (mut tx, mut rx) = spsc::channel(&blocking(Options::new().capacity(128))).unwrap();
    let p = thread::spawn(move || {
        let mut i = 0;
        while i < N {
            if i % 3 == 0 {
                // A batch of up to three, published with one store.
                let mut b = tx.batch();
                for _ in 0..3.min(N - i) {
                    b.send(&message(i)).unwrap();
                    i += 1;
                }
            } else {
                // Reserve more than needed, write in place, commit a prefix;
                // and a dropped grant in between that must publish nothing.
                tx.reserve(8).unwrap().fill(0xee);
                let m = message(i);
                let mut g = tx.reserve(m.len() + 5).unwrap();
                g[..m.len()].copy_from_slice(&m);
                g[m.len()..].fill(0xee);
                g.commit(m.len());
                i += 1;
            }
        }
    });
    let mut i = 0;
    while i < N {
        // Read in batches of two; the space is freed when the batch drops.
        let mut b = rx.batch();
        for _ in 0..2.min(N - i) {
            let mut buf = [0u8; 64];
            let n = b.recv_into(&mut buf).unwrap();
            assert_eq!(&buf[..n], &message(i)[..], "message {i}");
            i += 1;
        }
    }
    p.join().unwrap();
}

#[test]
fn spsc_recv_wakes_on_disconnect() {
    let (tx, mut rx) = spsc::channel(&blocking(Options::new().capacity(64))).unwrap();
    let c = thread::spawn(move || rx.recv().err());
    thread::sleep(Duration::from_millis(10));
    drop(tx);
    assert_eq!(c.join().unwrap(), Some(Error::Disconnected));
}

#[test]
fn mpmc_threads_two_by_two() {
    let opts = blocking(Options::new().slots(2).slot_size(32))
        .max_producers(2)
        .max_consumers(2);
    let (tx1, rx1) = mpmc::channel(&opts).unwrap();
    let tx2 = tx1.try_clone().unwrap();
    let rx2 = rx1.try_clone().unwrap();
    let producers: Vec<_> = [(tx1, 0u8), (tx2, 1u8)]
        .into_iter()
        .map(|(mut tx, id)| {
            thread::spawn(move || {
                for i in 0..N {
                    if i % 5 == 4 {
                        // Dropped without commit: consumers skip it.
                        let mut g = tx.reserve().unwrap();
                        g.fill(0xee);
                        continue;
                    }
                    let mut m = [id; 16];
                    m[..8].copy_from_slice(&(i as u64).to_le_bytes());
                    tx.send(&m).unwrap();
                }
            })
        })
        .collect();
    let consumers: Vec<_> = [rx1, rx2]
        .into_iter()
        .map(|mut rx| {
            thread::spawn(move || {
                let mut got = Vec::new();
                loop {
                    match rx.recv() {
                        Ok(g) => {
                            let i = u64::from_le_bytes(g[..8].try_into().unwrap());
                            got.push((g[8], i as usize));
                        }
                        Err(Error::Disconnected) => return got,
                        Err(e) => panic!("recv: {e}"),
                    }
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    let mut got: Vec<_> = consumers
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    got.sort();
    let want: Vec<_> = (0..2u8)
        .flat_map(|id| (0..N).filter(|i| i % 5 != 4).map(move |i| (id, i)))
        .collect();
    assert_eq!(got, want, "every message exactly once");
}

#[test]
fn mpmc_dead_producer_slot_is_skipped() {
    let opts = Options::new()
        .slots(2)
        .slot_size(24)
        .abandon_timeout(Duration::ZERO);
    let (mut dying, mut rx) = mpmc::channel(&opts).unwrap();
    let mut tx = dying.try_clone().unwrap();
    dying.try_reserve().unwrap().__simulate_crash();
    tx.try_send(b"one").unwrap();
    // Position 0 is in flight; its claimer is dead: skipped on the retry.
    let first = loop {
        match rx.try_recv() {
            Ok(g) => break g.to_vec(),
            Err(Error::Empty) => thread::yield_now(),
            Err(e) => panic!("recv: {e}"),
        }
    };
    assert_eq!(first, b"one");
    assert_eq!(rx.stats().abandoned, 1);
    // Slot 0 is free again.
    tx.try_send(b"two").unwrap();
    assert_eq!(&*rx.try_recv().unwrap(), b"two");
}

#[test]
fn mpmc_dead_consumer_slot_is_reclaimed() {
    let opts = Options::new()
        .slots(2)
        .slot_size(24)
        .abandon_timeout(Duration::ZERO);
    let (mut tx, mut rx) = mpmc::channel(&opts).unwrap();
    let mut dying = rx.try_clone().unwrap();
    tx.try_send(b"a").unwrap();
    tx.try_send(b"b").unwrap();
    dying.try_recv().unwrap().__simulate_crash();
    // Full until the producer finds the dead consumer's slot and frees it.
    loop {
        match tx.try_send(b"c") {
            Ok(()) => break,
            Err(Error::Full) => thread::yield_now(),
            Err(e) => panic!("send: {e}"),
        }
    }
    assert_eq!(tx.stats().abandoned, 1);
    assert_eq!(&*rx.try_recv().unwrap(), b"b");
    assert_eq!(&*rx.try_recv().unwrap(), b"c");
}
