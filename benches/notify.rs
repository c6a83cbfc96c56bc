//! Wake-up backends, cross-process: round trip of 64-byte messages over SPSC
//! rings with spin, futex and semaphore waits beside a pipe, then a sweep of
//! the spin window (0, 1, 10, 50 µs) for futex and semaphore that prints
//! round trip and CPU time (getrusage of both processes) per round trip,
//! back to back and paced (one round trip every 200 µs, so the peer idles).

mod common;

use std::time::{Duration, Instant};

use common::{Chan, Name, Peer, Pipe, SIZE, STOP, cpu_ns, opts};
use criterion::{Criterion, criterion_group};
use shmq::spsc;

struct Dup<T, R>(T, R);

impl<T: Chan, R: Chan> Chan for Dup<T, R> {
    fn send(&mut self, m: &[u8]) {
        self.0.send(m)
    }
    fn recv(&mut self, b: &mut [u8]) -> usize {
        self.1.recv(b)
    }
    fn wake_syscalls(&self) -> u64 {
        self.0.wake_syscalls() + self.1.wake_syscalls()
    }
}

fn ping(t: &mut dyn Chan, iters: u64, pace: Option<Duration>) -> Duration {
    let msg = [0u8; SIZE];
    let mut buf = [0u8; SIZE + 64];
    let mut busy = Duration::ZERO;
    for _ in 0..iters {
        if let Some(p) = pace {
            std::thread::sleep(p);
        }
        let t0 = Instant::now();
        t.send(&msg);
        t.recv(&mut buf);
        busy += t0.elapsed();
    }
    busy
}

/// An SPSC ping-pong pair with its echo peer.
struct Rings {
    t: Dup<spsc::Producer, spsc::Consumer>,
    peer: Option<Peer>,
    _names: (Name, Name),
}

impl Rings {
    fn new(wait: &str, spin_us: Option<u64>) -> Rings {
        let names = (Name::new("ping"), Name::new("pong"));
        let o = opts(wait, spin_us);
        let tx = spsc::Producer::create(&names.0.0, &o).expect("create");
        let rx = spsc::Consumer::create(&names.1.0, &o).expect("create");
        let spin = spin_us.map_or("-".to_owned(), |s| s.to_string());
        let peer = Peer::spawn(&format!(
            "spsc-echo {wait} {spin} {} {}",
            names.0.0, names.1.0
        ));
        Rings {
            t: Dup(tx, rx),
            peer: Some(peer),
            _names: names,
        }
    }

    /// Stops the peer; returns its (wake syscalls, CPU ns).
    fn finish(mut self) -> (u64, u64) {
        let mut m = [0u8; SIZE];
        m[0] = STOP;
        self.t.send(&m);
        let mut buf = [0u8; SIZE + 64];
        self.t.recv(&mut buf);
        let line = self.peer.take().map(|p| p.finish()).unwrap_or_default();
        let mut it = line
            .split_whitespace()
            .map(|w| w.parse::<u64>().unwrap_or(0));
        (it.next().unwrap_or(0), it.next().unwrap_or(0))
    }
}

fn backends(c: &mut Criterion) {
    let mut g = c.benchmark_group("notify/round_trip_64B");
    for wait in ["spin", "futex", "sem"] {
        let mut r = Rings::new(wait, None);
        g.bench_function(wait, |b| b.iter_custom(|n| ping(&mut r.t, n, None)));
        r.finish();
    }
    let (to_child, from_child, cin, cout) = common::pipe_pair();
    let peer = Peer::spawn_with("pipe-echo", cin, cout);
    let mut t = Pipe {
        rd: common::raw(&from_child),
        wr: common::raw(&to_child),
    };
    g.bench_function("pipe", |b| b.iter_custom(|n| ping(&mut t, n, None)));
    let mut m = [0u8; SIZE];
    m[0] = STOP;
    t.send(&m);
    let mut buf = [0u8; SIZE + 64];
    t.recv(&mut buf);
    drop(peer);
    g.finish();
}

fn spin_sweep(c: &mut Criterion) {
    let mut g = c.benchmark_group("notify/spin_window_64B");
    for wait in ["futex", "sem"] {
        for spin in [0u64, 1, 10, 50] {
            let mut r = Rings::new(wait, Some(spin));
            g.bench_function(format!("{wait}_{spin}us"), |b| {
                b.iter_custom(|n| ping(&mut r.t, n, None))
            });
            r.finish();
        }
    }
    g.finish();
    // CPU cost, outside criterion: dedicated runs with getrusage on both
    // sides (the peer reports its own).
    println!("\nspin-window sweep, 64 B round trips (CPU = user+sys of both processes):");
    println!(
        "{:<6} {:>6} {:>9} {:>12} {:>14} {:>10}",
        "wait", "spin", "pace", "rtt mean", "cpu/rtt", "wake/msg"
    );
    for pace in [None, Some(Duration::from_micros(200))] {
        for wait in ["futex", "sem"] {
            for spin in [0u64, 1, 10, 50] {
                let mut r = Rings::new(wait, Some(spin));
                let n: u64 = if pace.is_some() { 2_000 } else { 100_000 };
                ping(&mut r.t, n / 10, pace);
                let c0 = cpu_ns();
                let busy = ping(&mut r.t, n, pace);
                let mine = cpu_ns() - c0;
                let my_wakes = r.t.wake_syscalls();
                let (peer_wakes, peer_cpu) = r.finish();
                let trips = n + n / 10;
                println!(
                    "{wait:<6} {:>4}us {:>9} {:>9.0} ns {:>11.0} ns {:>10.4}",
                    spin,
                    pace.map_or("none".into(), |p| format!("{}us", p.as_micros())),
                    busy.as_nanos() as f64 / n as f64,
                    // The peer's CPU covers warm-up and measured trips.
                    mine as f64 / n as f64 + peer_cpu as f64 / trips as f64,
                    (my_wakes + peer_wakes) as f64 / (2 * trips) as f64,
                );
            }
        }
    }
}

fn config() -> Criterion {
    common::config(Duration::from_millis(300), Duration::from_secs(1))
}

criterion_group! {
    name = benches;
    config = config();
    targets = backends, spin_sweep
}

fn main() {
    common::run(benches);
}
