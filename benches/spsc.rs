//! SPSC, cross-process: round trip of 64-byte messages (spin waits) beside a
//! pipe ping-pong in the same run, and one-way throughput (spin and futex).
//! Prints the futex-mode wake syscalls per message while the consumer keeps
//! up. The peer is this binary re-executed with `SHMQ_BENCH_PEER` set.

mod common;

use std::time::{Duration, Instant};

use common::{Chan, Name, Peer, Pipe, SIZE, STOP, opts};
use criterion::{Criterion, Throughput, criterion_group};
use shmq::spsc;

/// Times `iters` round trips of 64-byte messages through `t`.
fn ping(t: &mut dyn Chan, iters: u64) -> Duration {
    let msg = [0u8; SIZE];
    let mut buf = [0u8; SIZE + 64];
    let start = Instant::now();
    for _ in 0..iters {
        t.send(&msg);
        t.recv(&mut buf);
    }
    start.elapsed()
}

fn stop(t: &mut dyn Chan) {
    let mut m = [0u8; SIZE];
    m[0] = STOP;
    t.send(&m);
    let mut buf = [0u8; SIZE + 64];
    t.recv(&mut buf);
}

struct Dup<T, R>(T, R);

impl<T: Chan, R: Chan> Chan for Dup<T, R> {
    fn send(&mut self, m: &[u8]) {
        self.0.send(m)
    }
    fn recv(&mut self, b: &mut [u8]) -> usize {
        self.1.recv(b)
    }
}

fn round_trip(c: &mut Criterion) {
    let mut g = c.benchmark_group("spsc/round_trip_64B");
    {
        let (ping_n, pong_n) = (Name::new("ping"), Name::new("pong"));
        let o = opts("spin", None);
        let tx = spsc::Producer::create(&ping_n.0, &o).expect("create");
        let rx = spsc::Consumer::create(&pong_n.0, &o).expect("create");
        let peer = Peer::spawn(&format!("spsc-echo spin - {} {}", ping_n.0, pong_n.0));
        let mut t = Dup(tx, rx);
        g.bench_function("shmq_spin", |b| b.iter_custom(|n| ping(&mut t, n)));
        stop(&mut t);
        peer.finish();
    }
    {
        let (to_child, from_child, cin, cout) = common::pipe_pair();
        let peer = Peer::spawn_with("pipe-echo", cin, cout);
        let mut t = Pipe {
            rd: common::raw(&from_child),
            wr: common::raw(&to_child),
        };
        g.bench_function("pipe", |b| b.iter_custom(|n| ping(&mut t, n)));
        stop(&mut t);
        drop(peer);
    }
    g.finish();
}

fn throughput(c: &mut Criterion) {
    let mut g = c.benchmark_group("spsc/throughput_64B");
    g.throughput(Throughput::Elements(1));
    for wait in ["spin", "futex"] {
        let name = Name::new("thr");
        let mut rx = spsc::Consumer::create(&name.0, &opts(wait, None)).expect("create");
        let mut peer = Peer::spawn(&format!("spsc-produce {wait} {}", name.0));
        let mut buf = [0u8; SIZE + 64];
        let mut received = 0u64;
        g.bench_function(format!("shmq_{wait}"), |b| {
            b.iter_custom(|n| {
                let start = Instant::now();
                peer.say(&n.to_string());
                for _ in 0..n {
                    rx.recv_into(&mut buf).expect("recv");
                }
                let e = start.elapsed();
                peer.line();
                received += n;
                e
            })
        });
        let producer_wakes: u64 = peer.finish().parse().unwrap_or(0);
        if wait == "futex" {
            let consumer_wakes = rx.stats().wake_syscalls;
            println!(
                "spsc futex throughput, consumer keeping up: {:.6} wake syscalls per message \
                 (producer {producer_wakes}, consumer {consumer_wakes}, {received} messages)",
                (producer_wakes + consumer_wakes) as f64 / received.max(1) as f64
            );
        }
    }
    g.finish();
}

fn config() -> Criterion {
    common::config(Duration::from_millis(500), Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = round_trip, throughput
}

fn main() {
    common::run(benches);
}
