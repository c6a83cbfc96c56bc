//! Wait strategies and wakeup backends: spin, futex and POSIX semaphore.

mod common;

use std::time::{Duration, Instant};

use common::{Name, env, spawn_role, wait_for_line};
use shmq::spsc::{self, Consumer, Producer};
use shmq::{Backend, Error, OpenError, Options, WaitStrategy};

fn with(wait: WaitStrategy, spin: Duration) -> Options {
    Options::new().capacity(4096).wait(wait).spin(spin)
}

/// Round trips between this thread and another, `n` times.
fn thread_ping_pong(opts: &Options, n: u64) -> (shmq::Stats, shmq::Stats) {
    let (mut tx, mut rx_peer) = spsc::channel(opts).unwrap();
    let (mut tx_peer, mut rx) = spsc::channel(opts).unwrap();
    let t = std::thread::spawn(move || {
        for _ in 0..n {
            let v = u64::from_le_bytes(rx_peer.recv().unwrap()[..8].try_into().unwrap());
            tx_peer.send(&(v + 1).to_le_bytes()).unwrap();
        }
        rx_peer.stats()
    });
    for i in 0..n {
        tx.send(&(2 * i).to_le_bytes()).unwrap();
        let v = u64::from_le_bytes(rx.recv().unwrap()[..8].try_into().unwrap());
        assert_eq!(v, 2 * i + 1);
    }
    (rx.stats(), t.join().unwrap())
}

/// A 1 µs spin window: some waits sleep, some don't, so wakes race with
/// registrations in every way; for each blocking backend.
#[test]
fn no_lost_wakeup_over_a_million_ping_pongs() {
    for w in [WaitStrategy::Futex, WaitStrategy::Semaphore] {
        let (a, b) = thread_ping_pong(&with(w, Duration::from_micros(1)), 1_000_000);
        println!("{w:?}: {a:?} / {b:?}");
        assert_eq!(a.messages, 1_000_000, "{w:?}");
    }
}

#[test]
fn spin_and_yield_ping_pong() {
    thread_ping_pong(&with(WaitStrategy::Spin, Duration::ZERO), 20_000);
    thread_ping_pong(
        &with(WaitStrategy::SpinThenYield, Duration::from_micros(5)),
        20_000,
    );
}

#[test]
fn futex_and_semaphore_sleepers_are_counted() {
    for w in [WaitStrategy::Futex, WaitStrategy::Semaphore] {
        let (mut tx, mut rx) = spsc::channel(&with(w, Duration::ZERO)).unwrap();
        let t = std::thread::spawn(move || {
            let n = rx.recv().unwrap().len();
            (n, rx.stats())
        });
        // Give the consumer every chance to fall asleep; correctness does not
        // depend on it (the assertion is on the stats being consistent).
        std::thread::sleep(Duration::from_millis(50));
        tx.send(b"wake").unwrap();
        let (n, st) = t.join().unwrap();
        assert_eq!(n, 4);
        assert!(st.waits >= 1, "{w:?}: consumer slept: {st:?}");
        assert!(st.sleep_ns > 0);
        assert_eq!(
            tx.stats().wake_syscalls,
            1,
            "{w:?}: one wake for one sleeper"
        );
    }
}

#[test]
fn steady_stream_to_a_spinning_consumer_makes_zero_wake_syscalls() {
    // The consumer spins and never sleeps, so the producer never finds a
    // registered waiter: not one futex wake.
    let opts_c = Options::new().capacity(1 << 16).wait(WaitStrategy::Spin);
    let (mut tx, mut rx) = spsc::channel(&opts_c).unwrap();
    let t = std::thread::spawn(move || {
        let mut n = 0u64;
        while let Ok(m) = rx.recv() {
            n += m.len() as u64;
        }
        (n, rx.stats())
    });
    for i in 0..200_000u64 {
        tx.send(&i.to_le_bytes()).unwrap();
    }
    let st = tx.stats();
    drop(tx);
    let (bytes, rst) = t.join().unwrap();
    assert_eq!(bytes, 200_000 * 8);
    assert_eq!(st.wake_syscalls, 0, "{st:?}");
    assert_eq!(rst.waits, 0, "{rst:?}");
}

#[test]
fn timeouts_are_honoured_by_every_strategy() {
    for w in [
        WaitStrategy::Spin,
        WaitStrategy::SpinThenYield,
        WaitStrategy::Futex,
        WaitStrategy::Semaphore,
    ] {
        let (mut tx, mut rx) = spsc::channel(&with(w, Duration::from_micros(10))).unwrap();
        let t0 = Instant::now();
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(30)).err(),
            Some(Error::Timeout),
            "{w:?}"
        );
        assert!(
            t0.elapsed() >= Duration::from_millis(30),
            "{w:?} returned early"
        );
        while tx.try_send(&[0; 100]).is_ok() {}
        let t0 = Instant::now();
        assert_eq!(
            tx.send_timeout(&[0; 100], Duration::from_millis(30)).err(),
            Some(Error::Timeout),
            "{w:?}"
        );
        assert!(
            t0.elapsed() >= Duration::from_millis(30),
            "{w:?} returned early"
        );
    }
}

// ---------------------------------------------------------------------------
// Across processes.

/// A spin-only segment refuses sleepers, gives an opener that chose no
/// strategy a spinning one, never wakes anyone, and still honours
/// interrupts, timeouts and a peer's detach while spinning.
#[test]
fn spin_only_segment_refuses_sleepers_and_its_endpoints_spin() {
    let name = Name::new("spinonly");
    let so = Options::new().capacity(4096).spin_only(true);
    // A sleeping strategy beside `spin_only` is refused before anything
    // is created.
    for w in [WaitStrategy::Futex, WaitStrategy::Semaphore] {
        let e = Producer::create(&name, &so.clone().wait(w)).err();
        assert!(matches!(e, Some(OpenError::InvalidOptions(_))), "{e:?}");
    }
    let mut tx = Producer::create(&name, &so).unwrap();
    for w in [WaitStrategy::Futex, WaitStrategy::Semaphore] {
        let e = Consumer::open(&name, &Options::new().wait(w)).err();
        assert!(
            matches!(
                &e,
                Some(OpenError::WaitMismatch {
                    found: Backend::SpinOnly,
                    ..
                })
            ),
            "{e:?}"
        );
        assert!(e.unwrap().to_string().contains("spin strategy"));
    }
    let mut rx = Consumer::open(&name, &Options::new()).unwrap();
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(20)).err(),
        Some(Error::Timeout)
    );
    let handle = rx.interrupter();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        handle.interrupt();
    });
    assert_eq!(rx.recv().err(), Some(Error::Interrupted));
    t.join().unwrap();
    for i in 0..10_000u32 {
        tx.send(&i.to_le_bytes()).unwrap();
        let m = rx.recv().unwrap();
        assert_eq!(m[..], i.to_le_bytes());
    }
    drop(tx);
    assert_eq!(rx.recv().err(), Some(Error::Disconnected));
    let st = rx.stats();
    assert_eq!((st.waits, st.wake_syscalls), (0, 0), "{st:?}");
    // `spin_only` opens only a spin-only segment.
    let other = Name::new("notspinonly");
    let _tx = Producer::create(&other, &Options::new().capacity(4096)).unwrap();
    let e = Consumer::open(&other, &so).err();
    assert!(
        matches!(
            e,
            Some(OpenError::WaitMismatch {
                expected: Backend::SpinOnly,
                found: Backend::Futex,
                ..
            })
        ),
        "{e:?}"
    );
}

fn strategy(s: &str) -> WaitStrategy {
    match s {
        "spin" | "spin-only" => WaitStrategy::Spin,
        "futex" => WaitStrategy::Futex,
        "sem" => WaitStrategy::Semaphore,
        other => panic!("strategy {other}"),
    }
}

/// Child processes' entry (run by `spawn_child`; ignored as a test).
#[test]
#[ignore = "child process entry point, run by spawn_child"]
fn child_entry() {
    let Some((role, name)) = common::child() else {
        return;
    };
    let o = opts(&env("SHMQ_WAIT"), std::env::var("SHMQ_RACY").is_ok());
    match role.as_str() {
        "echo" => {
            let n: u64 = env("SHMQ_COUNT").parse().unwrap();
            let mut rx = Consumer::open(&format!("{name}.ab"), &o).unwrap();
            let mut tx = Producer::open(&format!("{name}.ba"), &o).unwrap();
            for i in 0..n {
                let m = rx
                    .recv_timeout(LOST_WAKE)
                    .unwrap_or_else(|e| panic!("echo {i}: {e}"));
                let v = u64::from_le_bytes(m[..8].try_into().unwrap());
                drop(m);
                tx.send(&(v + 1).to_le_bytes()).unwrap();
            }
        }
        "sleep" => {
            let _tx = Producer::open(&name, &o).unwrap();
            println!("READY");
            std::thread::sleep(Duration::from_secs(600));
        }
        other => panic!("unknown role {other}"),
    }
    std::process::exit(0);
}

/// A wait this long means a lost wakeup (the racy options never probe the
/// peer in between, which would end the sleep early).
const LOST_WAKE: Duration = Duration::from_secs(20);

/// Options under which wakes race registrations in every way: a 1 µs spin
/// window (some waits sleep, some do not) and no liveness probe during the
/// test (it would wake a sleeper whose wake was lost, hiding the loss).
fn racy(w: WaitStrategy) -> Options {
    with(w, Duration::from_micros(1)).liveness_interval(Duration::from_secs(600))
}

/// The options of strategy `wait` (`spin-only`: spinning in a spin-only
/// segment), [`racy`] ones with `racy_opts`.
fn opts(wait: &str, racy_opts: bool) -> Options {
    let w = strategy(wait);
    let o = if racy_opts {
        racy(w)
    } else {
        with(w, Duration::ZERO)
    };
    o.spin_only(wait == "spin-only")
}

fn cross_process_ping_pong(wait: &str, n: u64) {
    ping_pong_with(wait, n, false);
}

/// Round trips with an echoing child process; `racy_opts`: with [`racy`]
/// options on both sides.
fn ping_pong_with(wait: &str, n: u64, racy_opts: bool) {
    let name = Name::new(&format!("pp{wait}"));
    let ab = Name(format!("{}.ab", name.0));
    let ba = Name(format!("{}.ba", name.0));
    let o = opts(wait, racy_opts);
    let mut tx = Producer::create(&ab, &o).unwrap();
    let mut rx = Consumer::create(&ba, &o).unwrap();
    let mut env = vec![
        ("SHMQ_WAIT", wait.to_string()),
        ("SHMQ_COUNT", n.to_string()),
    ];
    if racy_opts {
        env.push(("SHMQ_RACY", "1".to_string()));
    }
    let mut child = spawn_role("echo", &name, &env);
    for i in 0..n {
        tx.send(&(2 * i).to_le_bytes()).unwrap();
        let m = rx
            .recv_timeout(LOST_WAKE)
            .unwrap_or_else(|e| panic!("round {i}: {e} (a lost wakeup?)"));
        assert_eq!(u64::from_le_bytes(m[..8].try_into().unwrap()), 2 * i + 1);
    }
    assert!(child.wait().unwrap().success());
    println!("{wait}: {:?}", rx.stats());
}

/// Across processes: racing wakes and registrations (each side's SeqCst
/// fences against the other's) lose no wakeup, for each blocking backend.
#[test]
fn no_lost_wakeup_across_processes() {
    for wait in ["futex", "sem"] {
        ping_pong_with(wait, 100_000, true);
    }
}

#[test]
fn spin_wakeup_across_processes() {
    cross_process_ping_pong("spin", 20_000);
}

#[test]
fn spin_only_wakeup_across_processes() {
    cross_process_ping_pong("spin-only", 20_000);
}

#[test]
fn futex_wakeup_across_processes() {
    cross_process_ping_pong("futex", 20_000);
}

#[test]
fn semaphore_wakeup_across_processes() {
    cross_process_ping_pong("sem", 20_000);
}

fn killed_while_sleeping(wait: &str) {
    let name = Name::new(&format!("ks{wait}"));
    let o = opts(wait, false);
    let mut rx = Consumer::create(&name, &o).unwrap();
    let mut child = spawn_role("sleep", &name, &[("SHMQ_WAIT", wait.to_string())]);
    wait_for_line(&mut child, "READY");
    let killer = std::thread::spawn(move || common::kill_after(child, Duration::from_millis(100)));
    let r = rx.recv_timeout(Duration::from_secs(10)).err();
    let seen = Instant::now();
    let killed = killer.join().unwrap();
    assert_eq!(r, Some(Error::PeerDied), "{wait}");
    println!(
        "{wait}: PeerDied {:?} after SIGKILL; consumer {:?}",
        seen.saturating_duration_since(killed),
        rx.stats()
    );
}

#[test]
fn spin_peer_killed_gives_peer_died() {
    killed_while_sleeping("spin");
}

#[test]
fn spin_only_peer_killed_gives_peer_died() {
    killed_while_sleeping("spin-only");
}

#[test]
fn futex_peer_killed_while_asleep_gives_peer_died() {
    killed_while_sleeping("futex");
}

#[test]
fn semaphore_peer_killed_while_asleep_gives_peer_died() {
    killed_while_sleeping("sem");
}
