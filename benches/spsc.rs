//! SPSC, cross-process: round trip of 64-byte messages (spin waits) beside a
//! pipe ping-pong in the same run, and one-way throughput (spin, futex, and
//! a consumer polling `try_recv_into`).
//! Prints the futex-mode wake syscalls per message while the consumer keeps
//! up. The peer is this binary started again as a harness peer.

mod common;

use criterion::{Criterion, Throughput};
use shmq_bench::{Case, Params, TransportName as T, WaitName as W};

fn round_trip(c: &mut Criterion) {
    let mut g = c.benchmark_group("spsc/round_trip_64B");
    common::bench(
        &mut g,
        "shmq_spin",
        &Case::latency(Params::new(T::ShmqSpsc, W::Spin, 64)),
    );
    common::bench(
        &mut g,
        "pipe",
        &Case::latency(Params::new(T::Pipe, W::Kernel, 64)),
    );
    g.finish();
}

fn throughput(c: &mut Criterion) {
    let mut g = c.benchmark_group("spsc/throughput_64B");
    g.throughput(Throughput::Elements(1));
    for wait in [W::Spin, W::Futex, W::Poll] {
        let case = Case::throughput(Params::new(T::ShmqSpsc, wait, 64), 1, 1);
        let (counters, received) = common::bench(&mut g, &format!("shmq_{}", wait.as_str()), &case);
        if wait == W::Futex {
            println!(
                "spsc futex throughput, consumer keeping up: {:.6} wake syscalls per message \
                 ({} wake syscalls, {received} messages)",
                counters.wake_syscalls as f64 / received.max(1) as f64,
                counters.wake_syscalls,
            );
        }
    }
    g.finish();
}

common::bench_main!(500, 2000; round_trip, throughput);
