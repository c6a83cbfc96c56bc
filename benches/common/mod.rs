//! Shared by the criterion benches: their `main` (a copy started as a peer
//! serves; otherwise pin and run the groups), a short configuration, and
//! one criterion function per harness case.

use std::sync::OnceLock;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};
use shmq_bench::{Case, Counters, Host, Session, Until};

/// This process on the first CPU, peers on the second (if there are two).
fn host() -> &'static Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(|| Host::new(&[], true))
}

/// Short criterion runs: this 2-core VM is noisy and CI compiles the benches.
pub fn config(warm_up: Duration, measure: Duration) -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(warm_up)
        .measurement_time(measure)
}

/// Benchmarks `case` as `id`: one session (its processes live across the
/// samples), each sample a counted run. Returns the shmq counters of all
/// runs and how many messages they moved.
pub fn bench(g: &mut BenchmarkGroup<'_, WallTime>, id: &str, case: &Case) -> (Counters, u64) {
    let mut s = Session::start(case, host()).unwrap_or_else(|e| panic!("{id}: {e}"));
    let (mut counters, mut messages) = (Counters::default(), 0);
    g.bench_function(id, |b| {
        b.iter_custom(|n| {
            let r = s
                .run(Until::Count(n))
                .unwrap_or_else(|e| panic!("{id}: {e}"));
            counters = counters + r.counters;
            messages += r.total;
            r.elapsed
        })
    });
    s.finish().unwrap_or_else(|e| panic!("{id}: {e}"));
    (counters, messages)
}

/// The end of a bench binary: a criterion group of `targets` with the
/// short configuration (warm-up and measurement in ms), and `main`.
macro_rules! bench_main {
    ($warm_up_ms:expr, $measure_ms:expr; $($target:path),+) => {
        criterion::criterion_group! {
            name = benches;
            config = common::config(
                std::time::Duration::from_millis($warm_up_ms),
                std::time::Duration::from_millis($measure_ms),
            );
            targets = $($target),+
        }

        fn main() {
            common::run(benches);
        }
    };
}
pub(crate) use bench_main;

/// A bench binary's `main`: serve if started as a peer, else run `benches`.
pub fn run(benches: fn()) {
    if let Some(r) = shmq_bench::peer::serve_if_peer() {
        if let Err(e) = r {
            eprintln!("bench peer: {e}");
            std::process::exit(1);
        }
        return;
    }
    host();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
