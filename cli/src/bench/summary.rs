//! One row of the results: a case's samples summarised across rounds.

use hdrhistogram::Histogram;
use shmq_bench::{Case, Pattern, Sample};

/// Medians across rounds, and the merged histogram.
pub struct Summary {
    /// What was measured.
    pub case: Case,
    /// Round trip, median of the rounds' medians (ns).
    pub rtt_p50: Option<f64>,
    /// Round trip, median of the rounds' 99th percentiles (ns).
    pub rtt_p99: Option<f64>,
    /// Throughput, median across rounds.
    pub msgs_per_s: Option<f64>,
    /// shmq wake syscalls per message.
    pub wake_per_msg: Option<f64>,
    /// CPU time of both processes per round trip (ns).
    pub cpu_ns_per_rtt: Option<f64>,
    /// Every round's round trips.
    pub hist: Option<Histogram<u64>>,
    /// Not measured, and why.
    pub na: Option<String>,
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Summarises a case's samples.
pub fn summarize(case: Case, samples: &[Sample]) -> Summary {
    let q = |p: f64| {
        median(
            samples
                .iter()
                .filter_map(|s| s.hist.as_ref().map(|h| h.value_at_quantile(p) as f64))
                .collect(),
        )
    };
    let mut merged: Option<Histogram<u64>> = None;
    for h in samples.iter().filter_map(|s| s.hist.as_ref()) {
        match &mut merged {
            None => merged = Some(h.clone()),
            Some(m) => {
                let _ = m.add(h);
            }
        }
    }
    let latency = case.pattern == Pattern::Latency;
    let sum = |f: fn(&Sample) -> u64| samples.iter().map(f).sum::<u64>();
    let wake = sum(|s| s.counters.wake_syscalls);
    let msgs = sum(|s| s.counters.messages);
    let trips = sum(|s| s.total);
    let cpu = sum(|s| s.cpu_ns);
    Summary {
        rtt_p50: q(0.5),
        rtt_p99: q(0.99),
        msgs_per_s: (!latency)
            .then(|| median(samples.iter().map(Sample::rate).collect()))
            .flatten(),
        // Each message is counted by its sender and by its receiver.
        wake_per_msg: (case.params.transport.is_shmq() && msgs > 0)
            .then(|| wake as f64 / (msgs as f64 / 2.0)),
        cpu_ns_per_rtt: (latency && trips > 0).then(|| cpu as f64 / trips as f64),
        hist: merged,
        na: None,
        case,
    }
}

/// A row for a case that could not be measured.
pub fn not_measured(case: Case, why: &str) -> Summary {
    Summary {
        na: Some(why.to_owned()),
        ..summarize(case, &[])
    }
}
