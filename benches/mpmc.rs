//! MPMC, cross-process: throughput of 64-byte messages for 1P1C and 2P2C,
//! beside a POSIX message queue with the same producers and consumers. The
//! peers are this binary started again as harness peers; with one producer
//! and one consumer this process consumes, otherwise it only sends the stop
//! messages.

mod common;

use criterion::{Criterion, Throughput};
use shmq_bench::{Case, Params, TransportName as T, WaitName as W};

fn throughput(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("mpmc/throughput_64B");
    g.throughput(Throughput::Elements(1));
    for n in [1, 2] {
        for (t, w, name) in [(T::ShmqMpmc, W::Futex, "shmq"), (T::Mq, W::Kernel, "mq")] {
            let case = Case::throughput(Params::new(t, w, 64), n, n);
            common::bench(&mut g, &format!("{name}_{n}p{n}c"), &case);
        }
    }
    g.finish();
}

common::bench_main!(500, 2000; throughput);
