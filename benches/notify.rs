//! Wake-up backends, cross-process: round trip of 64-byte messages over SPSC
//! rings with spin, futex and semaphore waits beside a pipe, then the spin
//! window (0, 1, 10, 50 µs) for futex and semaphore. CPU time per round trip
//! and paced round trips: `shmq bench --spin-sweep`.

mod common;

use criterion::Criterion;
use shmq_bench::{Case, Params, TransportName as T, WaitName as W};

fn backends(c: &mut Criterion) {
    let mut g = c.benchmark_group("notify/round_trip_64B");
    for wait in [W::Spin, W::Futex, W::Sem] {
        let case = Case::latency(Params::new(T::ShmqSpsc, wait, 64));
        common::bench(&mut g, wait.as_str(), &case);
    }
    common::bench(
        &mut g,
        "pipe",
        &Case::latency(Params::new(T::Pipe, W::Kernel, 64)),
    );
    g.finish();
}

fn spin_window(c: &mut Criterion) {
    let mut g = c.benchmark_group("notify/spin_window_64B");
    for wait in [W::Futex, W::Sem] {
        for spin in [0u64, 1, 10, 50] {
            let p = Params {
                spin_us: Some(spin),
                ..Params::new(T::ShmqSpsc, wait, 64)
            };
            let id = format!("{}_{spin}us", wait.as_str());
            common::bench(&mut g, &id, &Case::latency(p));
        }
    }
    g.finish();
}

common::bench_main!(300, 1000; backends, spin_window);
