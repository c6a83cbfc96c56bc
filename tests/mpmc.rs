//! MPMC ring: exactly-once delivery with competing consumers, in threads and
//! across processes, and recovery from endpoints that die mid-operation.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{Name, env, spawn_child, spawn_role, wait_for_line};
use shmq::mpmc::{self, Consumer, Producer};
use shmq::{Error, OpenError, Options};

fn opts() -> Options {
    Options::new().slots(16).slot_size(64)
}

fn msg(producer: u32, seq: u64) -> [u8; 12] {
    let mut m = [0u8; 12];
    m[..4].copy_from_slice(&producer.to_le_bytes());
    m[4..].copy_from_slice(&seq.to_le_bytes());
    m
}

fn parse(m: &[u8]) -> (u32, u64) {
    assert_eq!(m.len(), 12, "message length");
    (
        u32::from_le_bytes(m[..4].try_into().unwrap()),
        u64::from_le_bytes(m[4..].try_into().unwrap()),
    )
}

#[test]
fn fifo_with_one_consumer() {
    let (mut tx, mut rx) = mpmc::channel(&opts()).unwrap();
    for i in 0..10 {
        tx.send(&msg(0, i)).unwrap();
    }
    for i in 0..10 {
        assert_eq!(parse(&rx.try_recv().unwrap()), (0, i));
    }
    assert_eq!(rx.try_recv().err(), Some(Error::Empty));
}

#[test]
fn full_queue_reports_full_and_oversize_is_too_large() {
    let (mut tx, mut rx) = mpmc::channel(&opts()).unwrap();
    for i in 0..16 {
        tx.try_send(&msg(0, i)).unwrap();
    }
    assert_eq!(tx.try_send(&msg(0, 99)).err(), Some(Error::Full));
    assert_eq!(tx.max_message_len(), 48);
    assert_eq!(
        tx.try_send(&[0; 49]).err(),
        Some(Error::TooLarge { len: 49, max: 48 })
    );
    assert_eq!(rx.len(), 16);
    for i in 0..16 {
        assert_eq!(parse(&rx.try_recv().unwrap()), (0, i));
    }
}

#[test]
fn dropped_write_grant_is_skipped_not_wedged() {
    let (mut tx, mut rx) = mpmc::channel(&opts()).unwrap();
    tx.send(&msg(0, 1)).unwrap();
    drop(tx.try_reserve().unwrap());
    tx.send(&msg(0, 2)).unwrap();
    assert_eq!(parse(&rx.try_recv().unwrap()), (0, 1));
    assert_eq!(parse(&rx.try_recv().unwrap()), (0, 2));
    assert_eq!(rx.try_recv().err(), Some(Error::Empty));
}

#[test]
fn zero_copy_grants_round_trip() {
    let (mut tx, mut rx) = mpmc::channel(&opts()).unwrap();
    let mut g = tx.try_reserve().unwrap();
    assert_eq!(g.len(), 48);
    g[..5].copy_from_slice(b"hello");
    g.commit(5);
    let r = rx.try_recv().unwrap();
    assert_eq!(&*r, b"hello");
}

#[test]
fn endpoint_limits_give_busy() {
    let o = opts().max_producers(2).max_consumers(1);
    let (tx, rx) = mpmc::channel(&o).unwrap();
    let _tx2 = tx.try_clone().unwrap();
    assert!(matches!(
        tx.try_clone(),
        Err(OpenError::Busy {
            role: shmq::Role::Producer,
            max: 2,
            ..
        })
    ));
    assert!(matches!(
        rx.try_clone(),
        Err(OpenError::Busy {
            role: shmq::Role::Consumer,
            max: 1,
            ..
        })
    ));
}

#[test]
fn all_producers_gone_means_drain_then_disconnected() {
    let (tx, mut rx) = mpmc::channel(&opts()).unwrap();
    let mut tx2 = tx.try_clone().unwrap();
    drop(tx);
    tx2.send(&msg(2, 0)).unwrap();
    assert!(rx.try_recv().is_ok());
    drop(tx2);
    assert_eq!(rx.recv().err(), Some(Error::Disconnected));
}

#[test]
fn threads_4x4_exactly_once_in_order_per_producer() {
    exactly_once_4x4(&Options::new().slots(64).slot_size(32), 50_000);
}

/// As above in a spin-only segment: no wake checks, every waiter spins
/// (eight spinning threads on this machine's two CPUs: fewer messages).
#[test]
fn spin_only_threads_4x4_exactly_once_in_order_per_producer() {
    exactly_once_4x4(
        &Options::new().slots(64).slot_size(32).spin_only(true),
        20_000,
    );
}

/// Four producer and four consumer threads, `per` messages from each
/// producer: every message arrives once, each producer's in order.
fn exactly_once_4x4(opts: &Options, per: u64) {
    let (tx, rx) = mpmc::channel(opts).unwrap();
    let mut producers = Vec::new();
    for p in 0..4u32 {
        let mut t = tx.try_clone().unwrap();
        producers.push(std::thread::spawn(move || {
            for s in 0..per {
                t.send(&msg(p, s)).unwrap();
            }
        }));
    }
    drop(tx);
    let mut consumers = Vec::new();
    for _ in 0..4 {
        let mut r = rx.try_clone().unwrap();
        consumers.push(std::thread::spawn(move || {
            let mut got: Vec<(u32, u64)> = Vec::new();
            let mut last: HashMap<u32, u64> = HashMap::new();
            loop {
                match r.recv() {
                    Ok(m) => {
                        let (p, s) = parse(&m);
                        if let Some(&prev) = last.get(&p) {
                            assert!(s > prev, "producer {p}: {s} after {prev}");
                        }
                        last.insert(p, s);
                        got.push((p, s));
                    }
                    Err(Error::Disconnected) => return got,
                    Err(e) => panic!("{e}"),
                }
            }
        }));
    }
    drop(rx);
    for p in producers {
        p.join().unwrap();
    }
    let mut all: Vec<(u32, u64)> = consumers
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    all.sort_unstable();
    let want: Vec<(u32, u64)> = (0..4).flat_map(|p| (0..per).map(move |s| (p, s))).collect();
    assert_eq!(all.len(), want.len());
    assert!(all == want, "loss or duplicate");
}

#[test]
fn crashed_producer_holding_a_claim_is_skipped() {
    let o = opts().abandon_timeout(Duration::from_millis(10));
    let (tx, mut rx) = mpmc::channel(&o).unwrap();
    let mut live = tx.try_clone().unwrap();
    let mut doomed = tx;
    doomed.send(&msg(1, 0)).unwrap();
    doomed.try_reserve().unwrap().__simulate_crash();
    doomed.__simulate_crash();
    for s in 0..5 {
        live.send(&msg(2, s)).unwrap();
    }
    assert_eq!(parse(&rx.recv().unwrap()), (1, 0));
    for s in 0..5 {
        let m = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(parse(&m), (2, s));
    }
    assert_eq!(rx.stats().abandoned, 1);
    drop(live);
    assert_eq!(rx.recv().err(), Some(Error::Disconnected));
    assert_eq!(rx.producers_died(), 1, "the crashed producer was reaped");
}

#[test]
fn crashed_consumer_holding_a_message_does_not_block_producers() {
    let o = Options::new()
        .slots(2)
        .slot_size(32)
        .abandon_timeout(Duration::from_millis(10));
    let (mut tx, rx) = mpmc::channel(&o).unwrap();
    let mut survivor = rx.try_clone().unwrap();
    let mut doomed = rx;
    tx.send(&msg(0, 0)).unwrap();
    tx.send(&msg(0, 1)).unwrap();
    doomed.try_recv().unwrap().__simulate_crash();
    doomed.__simulate_crash();
    // Slot 0 is held by the dead consumer: the producer must reclaim it.
    tx.send_timeout(&msg(0, 2), Duration::from_secs(10))
        .unwrap();
    assert_eq!(tx.stats().abandoned, 1);
    assert_eq!(parse(&survivor.recv().unwrap()), (0, 1));
    assert_eq!(parse(&survivor.recv().unwrap()), (0, 2));
}

#[test]
fn invalid_mpmc_options_are_rejected() {
    for o in [
        opts().slots(3),
        opts().slots(0),
        opts().slot_size(20),
        opts().slot_size(65),
        opts().max_producers(0),
        opts().max_consumers(5000),
    ] {
        assert!(matches!(
            mpmc::channel(&o),
            Err(OpenError::InvalidOptions(_))
        ));
    }
}

// ---------------------------------------------------------------------------
// Across processes.

/// Child processes' entry (run by `spawn_child`; ignored as a test).
#[test]
#[ignore = "child process entry point, run by spawn_child"]
fn child_entry() {
    let Some((role, name)) = common::child() else {
        return;
    };
    let o = Options::new().slots(256).slot_size(32);
    match role.as_str() {
        "producer" => {
            let id: u32 = env("SHMQ_ID").parse().unwrap();
            let count: u64 = env("SHMQ_COUNT").parse().unwrap();
            let mut tx = Producer::open(&name, &o).unwrap();
            for s in 0..count {
                tx.send(&msg(id, s)).unwrap();
            }
        }
        "consumer" => {
            // Per producer: count, sum, sum of squares; order checked here.
            let mut acc: HashMap<u32, (u64, u128, u128, u64)> = HashMap::new();
            let mut rx = Consumer::open(&name, &o).unwrap();
            loop {
                match rx.recv() {
                    Ok(m) => {
                        let (p, s) = parse(&m);
                        let e = acc.entry(p).or_insert((0, 0, 0, 0));
                        assert!(e.0 == 0 || s > e.3, "producer {p}: {s} after {}", e.3);
                        e.0 += 1;
                        e.1 += u128::from(s);
                        e.2 += u128::from(s) * u128::from(s);
                        e.3 = s;
                    }
                    Err(Error::Disconnected) => break,
                    Err(e) => panic!("consumer: {e}"),
                }
            }
            for (p, (n, sum, sq, _)) in acc {
                println!("ACC {p} {n} {sum} {sq}");
            }
        }
        "claim_and_hang" => {
            let mut tx = Producer::open(&name, &o).unwrap();
            tx.send(&msg(9, 0)).unwrap();
            let _g = tx.reserve().unwrap();
            println!("CLAIMED");
            std::thread::sleep(Duration::from_secs(600));
        }
        other => panic!("unknown role {other}"),
    }
    std::process::exit(0);
}

#[test]
fn three_by_three_processes_move_a_million_messages_exactly_once() {
    const PRODUCERS: u32 = 3;
    const PER: u64 = 333_334;
    let name = Name::new("mproc");
    let o = Options::new().slots(256).slot_size(32);
    // The test holds an idle consumer so the segment exists from the start.
    let _holder = Consumer::create(&name, &o).unwrap();
    let base = [("SHMQ_NAME", name.0.clone())];
    let consumers: Vec<_> = (0..3)
        .map(|_| spawn_child("child_entry", "consumer", &base))
        .collect();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let mut env = base.to_vec();
            env.push(("SHMQ_ID", p.to_string()));
            env.push(("SHMQ_COUNT", PER.to_string()));
            spawn_child("child_entry", "producer", &env)
        })
        .collect();
    for p in producers {
        assert!(p.wait_with_output().unwrap().status.success());
    }
    let mut total: HashMap<u32, (u64, u128, u128)> = HashMap::new();
    for c in consumers {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success());
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.first() != Some(&"ACC") {
                continue;
            }
            let e = total.entry(f[1].parse().unwrap()).or_insert((0, 0, 0));
            e.0 += f[2].parse::<u64>().unwrap();
            e.1 += f[3].parse::<u128>().unwrap();
            e.2 += f[4].parse::<u128>().unwrap();
        }
    }
    let n = u128::from(PER);
    for p in 0..PRODUCERS {
        let (count, sum, sq) = total[&p];
        assert_eq!(count, PER, "producer {p}: count");
        assert_eq!(sum, n * (n - 1) / 2, "producer {p}: sum");
        assert_eq!(
            sq,
            (n - 1) * n * (2 * n - 1) / 6,
            "producer {p}: sum of squares"
        );
    }
    println!("{} messages, each exactly once", u64::from(PRODUCERS) * PER);
}

#[test]
fn producer_killed_between_claim_and_commit_is_abandoned() {
    let name = Name::new("mkill");
    let o = Options::new()
        .slots(256)
        .slot_size(32)
        .abandon_timeout(Duration::from_millis(200));
    let mut rx = Consumer::create(&name, &o).unwrap();
    let mut doomed = spawn_role("claim_and_hang", &name, &[]);
    wait_for_line(&mut doomed, "CLAIMED");
    let mut live = Producer::open(&name, &o).unwrap();
    for s in 0..100 {
        live.send(&msg(1, s)).unwrap();
    }
    assert_eq!(parse(&rx.recv().unwrap()), (9, 0));
    doomed.kill().unwrap();
    doomed.wait().unwrap();
    for s in 0..100 {
        let m = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(parse(&m), (1, s));
    }
    assert_eq!(rx.stats().abandoned, 1);
    drop(live);
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)).err(),
        Some(Error::Disconnected)
    );
}
