//! SPSC ring: heap and named segments, in one process and across processes.

mod common;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use common::{Name, Rng, env, fill, spawn_role, wait_for_line};
use proptest::prelude::*;
use shmq::spsc::{self, Consumer, Producer};
use shmq::{Error, OpenError, Options, WaitStrategy};

fn small() -> Options {
    Options::new().capacity(256)
}

#[test]
fn heap_send_then_recv_in_order() {
    let (mut tx, mut rx) = spsc::channel(&small()).unwrap();
    for i in 0u8..10 {
        tx.send(&[i; 3]).unwrap();
    }
    for i in 0u8..10 {
        assert_eq!(&*rx.try_recv().unwrap(), &[i; 3]);
    }
    assert_eq!(rx.try_recv().err(), Some(Error::Empty));
}

#[test]
fn empty_message_round_trips() {
    let (mut tx, mut rx) = spsc::channel(&small()).unwrap();
    tx.send(b"").unwrap();
    assert_eq!(rx.try_recv().unwrap().len(), 0);
}

#[test]
fn exactly_max_message_fits_and_one_more_is_too_large() {
    let (mut tx, mut rx) = spsc::channel(&small()).unwrap();
    let max = tx.max_message_len();
    assert_eq!(max, 256 / 2 - 8);
    let msg = vec![7u8; max];
    for _ in 0..5 {
        tx.send(&msg).unwrap();
        assert_eq!(&*rx.try_recv().unwrap(), &msg[..]);
    }
    let big = vec![1u8; max + 1];
    assert_eq!(
        tx.try_send(&big).err(),
        Some(Error::TooLarge { len: max + 1, max })
    );
    assert_eq!(
        rx.try_recv().err(),
        Some(Error::Empty),
        "nothing was written"
    );
}

#[test]
fn full_ring_reports_full_and_keeps_contents() {
    let (mut tx, mut rx) = spsc::channel(&small()).unwrap();
    let mut sent = 0u8;
    while tx.try_send(&[sent; 24]).is_ok() {
        sent += 1;
    }
    assert_eq!(tx.try_send(&[0; 24]).err(), Some(Error::Full));
    for i in 0..sent {
        assert_eq!(&*rx.try_recv().unwrap(), &[i; 24]);
    }
    assert_eq!(rx.try_recv().err(), Some(Error::Empty));
}

#[test]
fn dropped_write_grant_commits_nothing() {
    let (mut tx, mut rx) = spsc::channel(&small()).unwrap();
    {
        let mut g = tx.try_reserve(10).unwrap();
        g.copy_from_slice(b"0123456789");
    }
    assert_eq!(rx.try_recv().err(), Some(Error::Empty));
    tx.send(b"after").unwrap();
    assert_eq!(&*rx.try_recv().unwrap(), b"after");
}

#[test]
fn partial_commit_publishes_only_the_prefix() {
    let (mut tx, mut rx) = spsc::channel(&small()).unwrap();
    let mut g = tx.try_reserve(50).unwrap();
    g[..4].copy_from_slice(b"abcd");
    g.commit(4);
    assert_eq!(&*rx.try_recv().unwrap(), b"abcd");
}

#[test]
#[should_panic(expected = "committed")]
fn committing_more_than_reserved_panics() {
    let (mut tx, _rx) = spsc::channel(&small()).unwrap();
    tx.try_reserve(4).unwrap().commit(5);
}

#[test]
fn write_batch_publishes_on_drop() {
    let (mut tx, mut rx) = spsc::channel(&Options::new().capacity(4096)).unwrap();
    {
        let mut b = tx.batch();
        for i in 0u8..20 {
            b.send(&[i]).unwrap();
        }
        assert_eq!(rx.try_recv().err(), Some(Error::Empty));
        b.publish();
        assert_eq!(&*rx.try_recv().unwrap(), &[0]);
        b.send(&[99]).unwrap();
    }
    for i in 1u8..20 {
        assert_eq!(&*rx.try_recv().unwrap(), &[i]);
    }
    assert_eq!(&*rx.try_recv().unwrap(), &[99]);
}

#[test]
fn read_batch_frees_space_on_drop() {
    let (mut tx, mut rx) = spsc::channel(&small()).unwrap();
    while tx.try_send(&[1; 24]).is_ok() {}
    {
        let mut b = rx.batch();
        for _ in 0..3 {
            let _ = b.try_recv().unwrap();
        }
        assert_eq!(
            tx.try_send(&[1; 24]).err(),
            Some(Error::Full),
            "not freed yet"
        );
    }
    tx.try_send(&[1; 24]).unwrap();
}

#[test]
fn blocking_batch_that_fills_the_ring_does_not_deadlock() {
    let (mut tx, mut rx) = spsc::channel(&small()).unwrap();
    let t = std::thread::spawn(move || {
        let mut b = tx.batch();
        for i in 0..1000u32 {
            b.send(&i.to_le_bytes()).unwrap();
        }
    });
    for i in 0..1000u32 {
        let m = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(&*m, &i.to_le_bytes());
    }
    t.join().unwrap();
}

#[test]
fn recv_into_too_small_buffer_keeps_the_message() {
    let (mut tx, mut rx) = spsc::channel(&small()).unwrap();
    tx.send(b"hello world").unwrap();
    let mut small_buf = [0u8; 4];
    assert_eq!(
        rx.try_recv_into(&mut small_buf).err(),
        Some(Error::BufferTooSmall {
            needed: 11,
            capacity: 4
        })
    );
    let mut buf = [0u8; 64];
    let n = rx.try_recv_into(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello world");
}

#[test]
fn producer_drop_drains_then_disconnects() {
    let (mut tx, mut rx) = spsc::channel(&small()).unwrap();
    tx.send(b"a").unwrap();
    tx.send(b"b").unwrap();
    drop(tx);
    assert_eq!(&*rx.recv().unwrap(), b"a");
    assert_eq!(&*rx.recv().unwrap(), b"b");
    assert_eq!(rx.recv().err(), Some(Error::Disconnected));
    assert_eq!(rx.try_recv().err(), Some(Error::Disconnected));
}

#[test]
fn consumer_drop_disconnects_producer() {
    let (mut tx, rx) = spsc::channel(&small()).unwrap();
    drop(rx);
    assert_eq!(tx.try_send(b"x").err(), Some(Error::Disconnected));
    assert_eq!(tx.send(b"x").err(), Some(Error::Disconnected));
}

#[test]
fn blocked_consumer_wakes_on_disconnect() {
    let (tx, mut rx) = spsc::channel(&small().spin(Duration::ZERO)).unwrap();
    let t = std::thread::spawn(move || rx.recv().err());
    std::thread::sleep(Duration::from_millis(20));
    drop(tx);
    assert_eq!(t.join().unwrap(), Some(Error::Disconnected));
}

#[test]
fn recv_timeout_times_out() {
    let (_tx, mut rx) = spsc::channel(&small()).unwrap();
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(5)).err(),
        Some(Error::Timeout)
    );
}

#[test]
fn send_timeout_times_out_when_full() {
    let (mut tx, _rx) = spsc::channel(&small()).unwrap();
    while tx.try_send(&[0; 40]).is_ok() {}
    assert_eq!(
        tx.send_timeout(&[0; 40], Duration::from_millis(5)).err(),
        Some(Error::Timeout)
    );
}

#[test]
fn steady_stream_without_sleepers_makes_no_wake_syscalls() {
    let (mut tx, mut rx) = spsc::channel(&Options::new().capacity(1 << 16)).unwrap();
    for i in 0..10_000u32 {
        tx.send(&i.to_le_bytes()).unwrap();
        assert_eq!(&*rx.try_recv().unwrap(), &i.to_le_bytes());
    }
    assert_eq!(tx.stats().messages, 10_000);
    assert_eq!(rx.stats().messages, 10_000);
    assert_eq!(tx.stats().wake_syscalls, 0);
    assert_eq!(rx.stats().wake_syscalls, 0);
    assert_eq!(rx.stats().waits, 0);
}

fn ping_pong(wait: WaitStrategy, rounds: u32) {
    let opts = Options::new()
        .capacity(4096)
        .wait(wait)
        .spin(Duration::ZERO);
    let (mut tx_a, mut rx_b) = spsc::channel(&opts).unwrap();
    let (mut tx_b, mut rx_a) = spsc::channel(&opts).unwrap();
    let t = std::thread::spawn(move || {
        for _ in 0..rounds {
            let v = {
                let m = rx_b.recv().unwrap();
                u32::from_le_bytes(m[..4].try_into().unwrap())
            };
            tx_b.send(&(v + 1).to_le_bytes()).unwrap();
        }
    });
    for i in 0..rounds {
        tx_a.send(&(i * 2).to_le_bytes()).unwrap();
        let m = rx_a.recv().unwrap();
        assert_eq!(u32::from_le_bytes(m[..4].try_into().unwrap()), i * 2 + 1);
    }
    t.join().unwrap();
}

#[test]
fn thread_ping_pong_futex() {
    ping_pong(WaitStrategy::Futex, 2000);
}

#[test]
fn thread_ping_pong_semaphore() {
    ping_pong(WaitStrategy::Semaphore, 2000);
}

#[test]
fn thread_ping_pong_spin_then_yield() {
    ping_pong(WaitStrategy::SpinThenYield, 2000);
}

#[test]
fn invalid_options_are_rejected() {
    for cap in [0usize, 63, 100, 1000] {
        assert!(matches!(
            spsc::channel(&Options::new().capacity(cap)),
            Err(OpenError::InvalidOptions(_))
        ));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Random interleavings of sends and receives of random sizes, across
    /// many wraps of a tiny ring, agree with a VecDeque.
    #[test]
    fn wraparound_matches_vecdeque_model(ops in prop::collection::vec((any::<bool>(), 0usize..60), 1..400)) {
        let (mut tx, mut rx) = spsc::channel(&small()).unwrap();
        let mut model: VecDeque<Vec<u8>> = VecDeque::new();
        let mut n = 0u64;
        for (send, size) in ops {
            if send {
                let mut msg = vec![0u8; size];
                fill(&mut msg, n);
                match tx.try_send(&msg) {
                    Ok(()) => { model.push_back(msg); n += 1; }
                    Err(Error::Full) => prop_assert!(!model.is_empty()),
                    Err(e) => prop_assert!(false, "unexpected {e}"),
                }
            } else {
                match rx.try_recv() {
                    Ok(m) => { let want = model.pop_front(); prop_assert_eq!(Some(&m[..]), want.as_deref()) }
                    Err(Error::Empty) => prop_assert!(model.is_empty()),
                    Err(e) => prop_assert!(false, "unexpected {e}"),
                }
            }
        }
        while let Some(want) = model.pop_front() {
            prop_assert_eq!(&*rx.try_recv().unwrap(), &want[..]);
        }
    }
}

// ---------------------------------------------------------------------------
// Named segments.

#[test]
fn named_round_trip_and_removed_after_drop() {
    let name = Name::new("rt");
    let mut tx = Producer::create(&name, &small()).unwrap();
    assert!(std::path::Path::new(&name.path()).exists());
    let mut rx = Consumer::open(&name, &small()).unwrap();
    tx.send(b"over shm").unwrap();
    assert_eq!(&*rx.recv().unwrap(), b"over shm");
    assert!(tx.peer_alive() && rx.peer_alive());
    drop(tx);
    drop(rx);
    assert!(
        !std::path::Path::new(&name.path()).exists(),
        "last endpoint unlinks"
    );
}

/// The fast paths of `send` and `reserve` ask only whether the consumer is
/// attached; a producer that sends before any consumer has attached takes
/// the general path, and what it sent is all there for the consumer.
#[test]
fn sends_before_the_consumer_attaches_all_arrive() {
    let name = Name::new("early");
    let mut tx = Producer::create(&name, &small()).unwrap();
    // Six 32-byte records in the 256-byte ring.
    for i in 0..5u8 {
        tx.send(&[i; 20]).unwrap();
    }
    let mut g = tx.try_reserve(20).unwrap();
    g.copy_from_slice(&[5; 20]);
    g.commit(20);
    let mut rx = Consumer::open(&name, &small()).unwrap();
    for i in 0..6u8 {
        assert_eq!(&*rx.try_recv().unwrap(), &[i; 20], "message {i}");
    }
    tx.send(b"attached now").unwrap();
    assert_eq!(&*rx.try_recv().unwrap(), b"attached now");
    drop(rx);
    assert!(matches!(tx.send(b"gone"), Err(Error::Disconnected)));
}

#[test]
fn segment_is_created_0600() {
    use std::os::unix::fs::PermissionsExt;
    let name = Name::new("mode");
    let _tx = Producer::create(&name, &small()).unwrap();
    let mode = std::fs::metadata(name.path()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn keep_option_leaves_the_segment_and_remove_deletes_it() {
    let name = Name::new("keep");
    let opts = small().keep(true);
    drop(Producer::create(&name, &opts).unwrap());
    assert!(std::path::Path::new(&name.path()).exists());
    shmq::remove(&name).unwrap();
    assert!(matches!(
        shmq::remove(&name),
        Err(OpenError::NotFound { .. })
    ));
}

#[test]
fn producer_leaving_unread_messages_keeps_them_for_a_later_consumer() {
    let name = Name::new("later");
    let mut tx = Producer::create(&name, &small()).unwrap();
    tx.send(b"for later").unwrap();
    drop(tx);
    let mut rx = Consumer::open(&name, &small()).unwrap();
    assert_eq!(&*rx.recv().unwrap(), b"for later");
    assert_eq!(rx.recv().err(), Some(Error::Disconnected));
    drop(rx);
    assert!(!std::path::Path::new(&name.path()).exists());
}

#[test]
fn second_producer_and_second_consumer_are_busy() {
    let name = Name::new("busy");
    let _tx = Producer::create(&name, &small()).unwrap();
    let _rx = Consumer::open(&name, &small()).unwrap();
    assert!(matches!(
        Producer::open(&name, &small()),
        Err(OpenError::Busy {
            role: shmq::Role::Producer,
            ..
        })
    ));
    assert!(matches!(
        Consumer::open(&name, &small()),
        Err(OpenError::Busy {
            role: shmq::Role::Consumer,
            ..
        })
    ));
}

#[test]
fn a_new_producer_can_attach_after_the_old_one_detached() {
    let name = Name::new("reattach");
    let mut rx = Consumer::create(&name, &small()).unwrap();
    let mut tx = Producer::open(&name, &small()).unwrap();
    tx.send(b"one").unwrap();
    drop(tx);
    assert_eq!(&*rx.recv().unwrap(), b"one");
    assert_eq!(rx.try_recv().err(), Some(Error::Disconnected));
    let mut tx = Producer::open(&name, &small()).unwrap();
    tx.send(b"two").unwrap();
    assert_eq!(&*rx.recv().unwrap(), b"two");
}

#[test]
fn bad_names_are_rejected_with_the_rule() {
    for bad in [
        "",
        ".hidden",
        "a/b",
        "sp ace",
        "nul\0",
        &"x".repeat(201),
        "ü",
    ] {
        let err = Producer::create(bad, &small()).err().unwrap();
        assert!(
            matches!(err, OpenError::InvalidName { .. }),
            "{bad:?}: {err}"
        );
        assert!(err.to_string().contains("[A-Za-z0-9._-]"));
    }
    assert!(shmq::validate_name(&"x".repeat(200)).is_ok());
}

#[test]
fn opening_a_missing_segment_is_not_found() {
    let name = Name::new("missing");
    assert!(matches!(
        Consumer::open(&name, &small()),
        Err(OpenError::NotFound { .. })
    ));
}

#[test]
fn create_twice_is_already_exists() {
    let name = Name::new("twice");
    let _a = Producer::create(&name, &small()).unwrap();
    assert!(matches!(
        Consumer::create(&name, &small()),
        Err(OpenError::AlreadyExists { .. })
    ));
}

#[test]
fn opening_the_other_kind_is_kind_mismatch() {
    let (a, b) = (Name::new("kind-a"), Name::new("kind-b"));
    let _p = shmq::mpmc::Producer::create(&a, &Options::new()).unwrap();
    let e = Consumer::open(&a, &small()).err();
    assert!(matches!(e, Some(OpenError::KindMismatch { .. })), "{e:?}");
    let _q = Producer::create(&b, &small()).unwrap();
    let e = shmq::mpmc::Consumer::open(&b, &Options::new()).err();
    assert!(matches!(e, Some(OpenError::KindMismatch { .. })), "{e:?}");
}

#[test]
fn garbage_file_is_not_shmq() {
    let name = Name::new("garbage");
    name.write_file(&[0xAB; 8192]);
    let err = Consumer::open(&name, &small()).err().unwrap();
    assert!(matches!(err, OpenError::NotShmq { .. }), "{err}");
}

#[test]
fn tiny_file_is_not_shmq() {
    let name = Name::new("tiny");
    name.write_file(b"hi");
    assert!(matches!(
        Consumer::open(&name, &small()),
        Err(OpenError::NotShmq { .. })
    ));
}

#[test]
fn world_writable_segment_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let name = Name::new("perm");
    let _tx = Producer::create(&name, &small()).unwrap();
    std::fs::set_permissions(name.path(), std::fs::Permissions::from_mode(0o666)).unwrap();
    assert!(matches!(
        Consumer::open(&name, &small()),
        Err(OpenError::PermissionDenied { .. })
    ));
}

#[test]
fn never_ready_segment_times_out() {
    let name = Name::new("notready");
    name.write_file(&[0u8; 8192]);
    let t0 = Instant::now();
    let err = Consumer::open(&name, &small().open_timeout(Duration::from_millis(50)))
        .err()
        .unwrap();
    assert!(matches!(err, OpenError::Timeout { .. }), "{err}");
    assert!(t0.elapsed() >= Duration::from_millis(50));
}

#[test]
fn other_version_is_version_mismatch() {
    let name = Name::new("version");
    let _tx = Producer::create(&name, &small().keep(true)).unwrap();
    let mut bytes = std::fs::read(name.path()).unwrap();
    bytes[8..12].copy_from_slice(&999u32.to_le_bytes());
    std::fs::write(name.path(), &bytes).unwrap();
    assert!(matches!(
        Consumer::open(&name, &small()),
        Err(OpenError::VersionMismatch { found: 999, .. })
    ));
}

#[test]
fn wait_backend_mismatch_is_refused_and_spin_follows() {
    let name = Name::new("waitmis");
    let _tx = Producer::create(&name, &small().wait(WaitStrategy::Semaphore)).unwrap();
    assert!(matches!(
        Consumer::open(&name, &small().wait(WaitStrategy::Futex)),
        Err(OpenError::WaitMismatch { .. })
    ));
    let _rx = Consumer::open(&name, &small().wait(WaitStrategy::Spin)).unwrap();
}

#[test]
fn open_or_create_race_gives_one_segment() {
    // Both ends are kept, and a message must get from one to the other: two
    // successful opens on two segments would fail here. (Across processes,
    // with thousands of names: `faults::review_05_…`.)
    for i in 0..200u32 {
        let name = Name::new("race");
        let n2 = name.0.clone();
        let t = std::thread::spawn(move || Consumer::open_or_create(&n2, &small()));
        let mut tx = Producer::open_or_create(&name, &small()).unwrap();
        let mut rx = t.join().unwrap().unwrap();
        tx.send(&i.to_le_bytes()).unwrap();
        let got = rx.recv_timeout(Duration::from_secs(5)).map(|m| m.to_vec());
        assert_eq!(
            got,
            Ok(i.to_le_bytes().to_vec()),
            "round {i}: two segments?"
        );
    }
}

#[test]
fn no_space_is_reported_at_create() {
    let name = Name::new("nospace");
    let err = Producer::create(&name, &Options::new().capacity(1 << 40))
        .err()
        .unwrap();
    assert!(matches!(err, OpenError::NoSpace { .. }), "{err}");
    assert!(!std::path::Path::new(&name.path()).exists());
}

#[test]
fn scribbled_cursor_is_corrupted_not_a_crash() {
    let name = Name::new("scribble");
    let mut tx = Producer::create(&name, &small()).unwrap();
    let mut rx = Consumer::open(&name, &small()).unwrap();
    tx.send(b"ok").unwrap();
    // The producer cursor (`tail`) lives at byte 128 of the header. The
    // consumer finds records by their header words, not by `tail`: the
    // message still arrives. An endpoint that starts from the cursor (a
    // consumer attaching now) reports the corruption.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(name.path())
        .unwrap();
    std::os::unix::fs::FileExt::write_at(&f, &u64::MAX.to_le_bytes(), 128).unwrap();
    assert_eq!(&*rx.try_recv().unwrap(), b"ok");
    // The read cursor (`head`, byte 256) is the producer's to check: it
    // reads it once the ring looks full.
    std::os::unix::fs::FileExt::write_at(&f, &u64::MAX.to_le_bytes(), 256).unwrap();
    let r = loop {
        match tx.try_send(&[1; 100]) {
            Ok(()) => continue,
            r => break r,
        }
    };
    assert!(matches!(r, Err(Error::Corrupted(_))), "{r:?}");
    assert!(
        matches!(tx.send(b"x").err(), Some(Error::Corrupted(_))),
        "poisoned"
    );
    drop(rx);
    let err = Consumer::open(&name, &small()).err().unwrap();
    assert!(matches!(err, OpenError::Corrupted { .. }), "{err}");
}

#[test]
fn inspect_and_gc_see_live_endpoints() {
    let name = Name::new("inspect");
    let tx = Producer::create(&name, &small()).unwrap();
    let info = shmq::inspect(&name).unwrap();
    assert_eq!(info.kind, Some(shmq::Kind::Spsc));
    assert!(!info.stale);
    assert_eq!(info.endpoints.len(), 1);
    assert_eq!(info.endpoints[0].state, shmq::EndpointState::Alive);
    assert!(matches!(shmq::gc_one(&name), shmq::GcOutcome::InUse));
    assert!(
        std::path::Path::new(&name.path()).exists(),
        "gc keeps live segments"
    );
    drop(tx);
}

// ---------------------------------------------------------------------------
// Across processes. The child is this test binary, running `child_entry`.

const MESSAGES: u64 = 1_000_000;

/// Child processes' entry (run by `spawn_child`; ignored as a test).
#[test]
#[ignore = "child process entry point, run by spawn_child"]
fn child_entry() {
    let Some((role, name)) = common::child() else {
        return;
    };
    match role.as_str() {
        "producer" => {
            let count: u64 = env("SHMQ_COUNT").parse().unwrap();
            let mut tx = Producer::open(&name, &Options::new()).unwrap();
            let mut rng = Rng(42);
            for i in 0..count {
                let len = rng.below(200) as usize;
                let mut g = tx.reserve(len).unwrap();
                fill(&mut g, i);
                g.commit(len);
                // Now and then pause, so the consumer has to sleep on empty.
                if i % 100_000 == 99_999 {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        "sender" => {
            let count: u64 = env("SHMQ_COUNT").parse().unwrap();
            let mut tx = Producer::open(&name, &Options::new()).unwrap();
            let mut rng = Rng(7);
            let mut msg = vec![0u8; LONGEST];
            for i in 0..count {
                let len = rng.below(LONGEST as u64) as usize;
                fill(&mut msg[..len], i);
                tx.send(&msg[..len]).unwrap();
            }
        }
        "hang" => {
            let _tx = Producer::open(&name, &Options::new()).unwrap();
            println!("READY");
            std::thread::sleep(Duration::from_secs(600));
        }
        other => panic!("unknown role {other}"),
    }
    std::process::exit(0);
}

#[test]
fn cross_process_million_messages_with_checksum() {
    let name = Name::new("xproc");
    // A small ring so the producer often blocks on full, too.
    let opts = Options::new().capacity(4096);
    let mut rx = Consumer::create(&name, &opts).unwrap();
    let mut child = spawn_role("producer", &name, &[("SHMQ_COUNT", MESSAGES.to_string())]);
    let mut rng = Rng(42);
    let mut want = vec![0u8; 256];
    let mut sum = 0u64;
    for i in 0..MESSAGES {
        let len = rng.below(200) as usize;
        fill(&mut want[..len], i);
        let m = rx.recv_timeout(Duration::from_secs(60)).unwrap();
        assert_eq!(&*m, &want[..len], "message {i}");
        sum = sum.wrapping_add(m.iter().map(|&b| u64::from(b)).sum::<u64>());
        // Now and then stall, so the producer has to sleep on full.
        if i % 100_000 == 50_000 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(60)).err(),
        Some(Error::Disconnected)
    );
    assert!(child.wait().unwrap().success());
    let st = rx.stats();
    println!("checksum {sum:#x}; consumer stats {st:?}");
    assert_eq!(st.messages, MESSAGES);
}

/// Longest message of `cross_process_recv_into_of_long_messages`: past
/// the length from which `recv_into` copies with `rep movsb` (1 KiB).
const LONGEST: usize = 3000;

/// `recv_into` copies out of ring memory that the producer keeps writing
/// (the word loop below 1 KiB, `rep movsb` from 1 KiB on x86-64): every
/// length up to `LONGEST`, through a ring of 16 KiB that wraps every few
/// messages, each message checked byte for byte, in a buffer with bytes
/// on both sides that must stay untouched.
#[test]
fn cross_process_recv_into_of_long_messages() {
    const COUNT: u64 = 100_000;
    let name = Name::new("xlong");
    let mut rx = Consumer::create(&name, &Options::new().capacity(16 * 1024)).unwrap();
    let mut child = spawn_role("sender", &name, &[("SHMQ_COUNT", COUNT.to_string())]);
    let mut rng = Rng(7);
    let mut want = vec![0u8; LONGEST];
    let mut buf = vec![0x5au8; LONGEST + 16];
    for i in 0..COUNT {
        let len = rng.below(LONGEST as u64) as usize;
        fill(&mut want[..len], i);
        let n = rx
            .recv_into_timeout(&mut buf[3..3 + LONGEST], Duration::from_secs(60))
            .unwrap();
        assert_eq!(n, len, "message {i}");
        assert!(buf[3..3 + n] == want[..len], "message {i}, {len} bytes");
        assert!(buf[..3].iter().all(|&b| b == 0x5a), "before, message {i}");
        assert!(
            buf[3 + LONGEST..].iter().all(|&b| b == 0x5a),
            "after, message {i}"
        );
    }
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(60)).err(),
        Some(Error::Disconnected)
    );
    assert!(child.wait().unwrap().success());
}

#[test]
fn killed_producer_gives_peer_died_to_a_blocked_consumer() {
    let name = Name::new("kill");
    let mut rx = Consumer::create(&name, &Options::new()).unwrap();
    let mut child = spawn_role("hang", &name, &[]);
    wait_for_line(&mut child, "READY");
    assert!(rx.peer_alive());
    let killer = std::thread::spawn(move || common::kill_after(child, Duration::from_millis(100)));
    // Generous deadline: the point is PeerDied rather than Timeout.
    let r = rx.recv_timeout(Duration::from_secs(10)).err();
    let detected = Instant::now();
    let killed = killer.join().unwrap();
    assert_eq!(r, Some(Error::PeerDied));
    println!(
        "PeerDied {:?} after SIGKILL",
        detected.saturating_duration_since(killed)
    );
    assert!(!rx.peer_alive());
}

/// Issue 14: an option of the other ring kind is refused, not ignored, at
/// create and at open (and by the typed and MPMC endpoints the same way).
#[test]
fn options_of_the_other_kind_are_refused() {
    let name = Name::new("foreign-opt");
    let e = Producer::create(&name, &small().slots(8)).err();
    assert!(matches!(e, Some(OpenError::InvalidOptions(_))), "{e:?}");
    let _tx = Producer::create(&name, &small()).unwrap();
    let e = Consumer::open(&name, &Options::new().max_consumers(2)).err();
    assert!(matches!(e, Some(OpenError::InvalidOptions(_))), "{e:?}");
    let e = shmq::mpmc::channel(&Options::new().capacity(4096)).err();
    assert!(matches!(e, Some(OpenError::InvalidOptions(_))), "{e:?}");
}
