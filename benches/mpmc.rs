//! MPMC, cross-process: throughput of 64-byte messages for 1P1C and 2P2C,
//! beside a POSIX message queue with the same producers and consumers. The
//! peers are this binary re-executed with `SHMQ_BENCH_PEER` set; the parent
//! holds one producer endpoint to send the stop messages.

mod common;

use std::time::{Duration, Instant};

use common::{Chan, Mq, Name, Peer, SIZE, STOP, mpmc_opts};
use criterion::{Criterion, Throughput, criterion_group};
use shmq::mpmc;

/// P producer peers and C consumer peers on one queue; the parent's `ctl`
/// endpoint sends one stop message per consumer after each sample.
fn run(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: &str,
    ctl: &mut dyn Chan,
    prod_role: &str,
    cons_role: &str,
    p: u64,
    c: u64,
) {
    let mut prods: Vec<Peer> = (0..p).map(|_| Peer::spawn(prod_role)).collect();
    let mut cons: Vec<Peer> = (0..c).map(|_| Peer::spawn(cons_role)).collect();
    let mut stop = [0u8; SIZE];
    stop[0] = STOP;
    g.bench_function(id, |b| {
        b.iter_custom(|n| {
            let each = n.div_ceil(p);
            let start = Instant::now();
            for q in &mut prods {
                q.say(&each.to_string());
            }
            for q in &mut prods {
                q.line();
            }
            for _ in 0..c {
                ctl.send(&stop);
            }
            let mut got = 0u64;
            for q in &mut cons {
                got += q.line().parse::<u64>().unwrap_or(0);
            }
            let e = start.elapsed();
            assert_eq!(got, each * p, "messages lost");
            for q in &mut cons {
                q.say("next");
            }
            e
        })
    });
    for q in prods {
        q.finish();
    }
    // Each consumer is back in `recv`: one more stop each, then EOF on its
    // control line lets it exit.
    for _ in 0..c {
        ctl.send(&stop);
    }
    for q in cons {
        q.finish();
    }
}

fn throughput(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("mpmc/throughput_64B");
    g.throughput(Throughput::Elements(1));
    for (p, c) in [(1u64, 1u64), (2, 2)] {
        let name = Name::new("mpmc");
        let mut ctl = mpmc::Producer::create(&name.0, &mpmc_opts("futex", None)).expect("create");
        run(
            &mut g,
            &format!("shmq_{p}p{c}c"),
            &mut ctl,
            &format!("mpmc-produce {}", name.0),
            &format!("mpmc-consume {}", name.0),
            p,
            c,
        );
        let q = Name::new("mq");
        let mut ctl = Mq::create(&q.mq(), 10);
        run(
            &mut g,
            &format!("mq_{p}p{c}c"),
            &mut ctl,
            &format!("mq-produce {}", q.mq()),
            &format!("mq-consume {}", q.mq()),
            p,
            c,
        );
    }
    g.finish();
}

fn config() -> Criterion {
    common::config(Duration::from_millis(500), Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = throughput
}

fn main() {
    common::run(benches);
}
