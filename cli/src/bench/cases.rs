//! Which cases `shmq bench` measures: the comparison table, or the
//! spin-window sweep.

use std::time::Duration;

use shmq_bench::{Case, Params, Pattern, TransportName as T, WaitName as W};

use super::args::BenchArgs;

/// The latency rows of each size, in table order.
const LATENCY: [(T, W); 9] = [
    (T::Floor, W::Spin),
    (T::FloorRing, W::Spin),
    (T::ShmqSpsc, W::Spin),
    (T::ShmqSpsc, W::Futex),
    (T::ShmqSpsc, W::Sem),
    (T::ShmqMpmc, W::Futex),
    (T::Pipe, W::Kernel),
    (T::Mq, W::Kernel),
    (T::Uds, W::Kernel),
];

/// The throughput rows of each size: transport, wait, producers (= consumers).
/// `poll` is the futex row with a consumer that polls `try_recv_into`
/// (`paced`: its loop paced by `shmq::Pacer`; `alternate`: a consumer that
/// takes turns at the futex, paced and poll ways, not a row of its own); the
/// `limit` row (it spins) is the ceiling the shmq SPSC rows are held to,
/// `limit-32` the same stream in batches: the machine's.
const THROUGHPUT: [(T, W, usize); 14] = [
    (T::Limit, W::Spin, 1),
    (T::LimitBatch, W::Spin, 1),
    (T::ShmqSpsc, W::Spin, 1),
    (T::ShmqSpsc, W::Futex, 1),
    (T::ShmqSpsc, W::Poll, 1),
    (T::ShmqSpsc, W::Paced, 1),
    (T::ShmqSpsc, W::Alternate, 1),
    (T::ShmqSpsc, W::Sem, 1),
    (T::ShmqMpmc, W::Futex, 1),
    (T::ShmqMpmc, W::Futex, 2),
    (T::Pipe, W::Kernel, 1),
    (T::Mq, W::Kernel, 1),
    (T::Mq, W::Kernel, 2),
    (T::Uds, W::Kernel, 1),
];

/// The comparison: every row of [`LATENCY`] and [`THROUGHPUT`] for every
/// size, less what `--transports` / `--patterns` leave out.
pub fn comparison(a: &BenchArgs, sizes: &[usize]) -> Vec<Case> {
    let want_t = |t: T| a.transports.is_empty() || a.transports.contains(&t);
    let want_p = |p: Pattern| a.patterns.is_empty() || a.patterns.contains(&p);
    let params = |t, w, size| Params {
        kernel_buffer: a.kernel_buffer,
        batch: usize::from(a.batch),
        ..Params::new(t, w, size)
    };
    let mut v = Vec::new();
    for &size in sizes {
        if want_p(Pattern::Latency) {
            for (t, w) in LATENCY.into_iter().filter(|&(t, _)| want_t(t)) {
                v.push(Case::latency(params(t, w, size)));
            }
        }
        if want_p(Pattern::Throughput) {
            for (t, w, n) in THROUGHPUT.into_iter().filter(|&(t, _, _)| want_t(t)) {
                v.push(Case::throughput(params(t, w, size), n, n));
            }
        }
    }
    v
}

/// The spin-window sweep: 64 B SPSC round trips with futex and semaphore
/// waits and spin windows of 0, 1, 10 and 50 µs, back to back and paced
/// (200 µs between pings), each beside a pipe.
pub fn sweep(a: &BenchArgs) -> Vec<Case> {
    let mut v = Vec::new();
    for pace in [None, Some(Duration::from_micros(200))] {
        for w in [W::Futex, W::Sem] {
            for spin in [0u64, 1, 10, 50] {
                let p = Params {
                    spin_us: Some(spin),
                    ..Params::new(T::ShmqSpsc, w, 64)
                };
                v.push(Case {
                    pace,
                    ..Case::latency(p)
                });
            }
        }
        let p = Params {
            kernel_buffer: a.kernel_buffer,
            ..Params::new(T::Pipe, W::Kernel, 64)
        };
        v.push(Case {
            pace,
            ..Case::latency(p)
        });
    }
    v
}
