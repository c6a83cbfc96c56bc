//! One row of the results: a case's samples summarised across rounds.

use hdrhistogram::Histogram;
use shmq_bench::{Case, Pattern, Sample};

/// One round of one case: its sample, and the machine around it.
pub struct Round {
    /// What the round measured.
    pub sample: Sample,
    /// The line round trip between the two CPUs just before and just after
    /// the measurement (ns; [`shmq_bench::line_rtt`]), when pinned.
    pub c2c: Option<[f64; 2]>,
}

/// A round's headline figure (throughput, or the median round trip) and
/// the line round trips around it: what placement-matched ratios pair.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RoundFigure {
    /// msgs/s (throughput) or the round trip's median (ns, latency).
    pub value: f64,
    /// As [`Round::c2c`].
    pub c2c: Option<[f64; 2]>,
}

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
    /// The line round trip between the two CPUs around the rounds (ns):
    /// the median of every probe (before and after each round). Not a
    /// mean of the two: when the placement moved, no placement had that.
    pub c2c: Option<f64>,
    /// Every round's figure, in round order (the same order for every
    /// case of a run, so round `r` of two cases ran close in time).
    pub rounds: Vec<RoundFigure>,
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

/// Summarises a case's rounds.
pub fn summarize(case: Case, rounds: &[Round]) -> Summary {
    let samples: Vec<&Sample> = rounds.iter().map(|r| &r.sample).collect();
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
    let sum = |f: fn(&Sample) -> u64| samples.iter().copied().map(f).sum::<u64>();
    let wake = sum(|s| s.counters.wake_syscalls);
    let msgs = sum(|s| s.counters.messages);
    let trips = sum(|s| s.total);
    let cpu = sum(|s| s.cpu_ns);
    Summary {
        rtt_p50: q(0.5),
        rtt_p99: q(0.99),
        msgs_per_s: (!latency)
            .then(|| median(samples.iter().copied().map(Sample::rate).collect()))
            .flatten(),
        // Each message is counted by its sender and by its receiver.
        wake_per_msg: (case.params.transport.is_shmq() && msgs > 0)
            .then(|| wake as f64 / (msgs as f64 / 2.0)),
        cpu_ns_per_rtt: (latency && trips > 0).then(|| cpu as f64 / trips as f64),
        hist: merged,
        c2c: median(rounds.iter().filter_map(|r| r.c2c).flatten().collect()),
        rounds: rounds
            .iter()
            .filter_map(|r| {
                let value = if latency {
                    r.sample.hist.as_ref()?.value_at_quantile(0.5) as f64
                } else {
                    r.sample.rate()
                };
                Some(RoundFigure { value, c2c: r.c2c })
            })
            .collect(),
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

/// Two line round trips agree: neither is more than this times the other.
const SAME_PLACEMENT: f64 = 1.5;

pub fn agree(a: f64, b: f64) -> bool {
    a.max(b) <= SAME_PLACEMENT * a.min(b)
}

/// A round's line round trip if it held still (its two probes agree).
fn steady(r: &RoundFigure) -> Option<f64> {
    let [a, b] = r.c2c?;
    agree(a, b).then_some((a + b) / 2.0)
}

/// The placements a run saw: the steady rounds' line round trips (every
/// row's), sorted and cut wherever one is more than 1.5x the one before;
/// each group's median, smallest first.
pub fn placements(sums: &[Summary]) -> Vec<f64> {
    let mut v: Vec<f64> = sums
        .iter()
        .flat_map(|s| &s.rounds)
        .filter_map(steady)
        .collect();
    v.sort_by(f64::total_cmp);
    let mut groups: Vec<Vec<f64>> = Vec::new();
    for x in v {
        match groups.last_mut() {
            Some(g) if x <= SAME_PLACEMENT * g[g.len() - 1] => g.push(x),
            _ => groups.push(vec![x]),
        }
    }
    groups.into_iter().filter_map(median).collect()
}

/// The placement (index into `centers`) a round ran on: it held still, and
/// its line round trip agrees with the nearest placement's.
fn placement_of(r: &RoundFigure, centers: &[f64]) -> Option<usize> {
    let x = steady(r)?;
    let far = |c: f64| (x / c).ln().abs();
    let (i, &c) = centers
        .iter()
        .enumerate()
        .min_by(|a, b| far(*a.1).total_cmp(&far(*b.1)))?;
    agree(x, c).then_some(i)
}

/// `a` over `b` on each placement both ran on: the median of `a`'s rounds
/// there over the median of `b`'s. Returns (placement, ratio, `a`'s
/// rounds, `b`'s rounds) per placement.
pub fn ratio_by_placement(
    a: &Summary,
    b: &Summary,
    centers: &[f64],
) -> Vec<(f64, f64, usize, usize)> {
    let on = |s: &Summary, i: usize| -> Vec<f64> {
        s.rounds
            .iter()
            .filter(|r| placement_of(r, centers) == Some(i))
            .map(|r| r.value)
            .collect()
    };
    (0..centers.len())
        .filter_map(|i| {
            let (x, y) = (on(a, i), on(b, i));
            let (ka, kb) = (x.len(), y.len());
            let r = median(x)? / median(y)?;
            r.is_finite().then_some((centers[i], r, ka, kb))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use shmq_bench::{Params, TransportName, WaitName};

    /// A throughput row with these rounds: (msgs/s, line rtt before, after).
    fn row(rounds: &[(f64, f64, f64)]) -> Summary {
        let case = Case::throughput(
            Params::new(TransportName::ShmqSpsc, WaitName::Spin, 64),
            1,
            1,
        );
        Summary {
            rounds: rounds
                .iter()
                .map(|&(value, a, b)| RoundFigure {
                    value,
                    c2c: Some([a, b]),
                })
                .collect(),
            ..summarize(case, &[])
        }
    }

    #[test]
    fn placements_are_the_steady_rounds_cut_at_gaps_of_one_and_a_half() {
        let a = row(&[(1.0, 50.0, 52.0), (1.0, 125.0, 120.0), (1.0, 500.0, 130.0)]);
        let b = row(&[(1.0, 48.0, 49.0), (1.0, 510.0, 490.0), (1.0, 130.0, 128.0)]);
        // The round that moved (500 -> 130) is left out.
        let c = placements(&[a, b]);
        assert_eq!(c.len(), 3, "{c:?}");
        assert!(
            (48.0..53.0).contains(&c[0]) && (120.0..130.0).contains(&c[1]),
            "{c:?}"
        );
        assert!((490.0..=510.0).contains(&c[2]), "{c:?}");
    }

    #[test]
    fn ratios_pair_rounds_of_the_same_placement_only() {
        // Near: 20 M and 22 M against a pipe of 1 M and 1.1 M; far: 5 M
        // against 0.5 M; one round of each moved and counts nowhere.
        let spsc = row(&[
            (20e6, 125.0, 125.0),
            (5e6, 500.0, 510.0),
            (22e6, 130.0, 126.0),
            (90e6, 50.0, 500.0),
        ]);
        let pipe = row(&[
            (1.0e6, 120.0, 124.0),
            (0.5e6, 505.0, 495.0),
            (1.1e6, 127.0, 125.0),
            (0.1e6, 500.0, 125.0),
        ]);
        let both = [spsc, pipe];
        let centers = placements(&both);
        let r = ratio_by_placement(&both[0], &both[1], &centers);
        assert_eq!(r.len(), 2, "{r:?}");
        let (near, x, ka, kb) = r[0];
        assert!(
            near < 200.0 && (x - 20.0).abs() < 1e-9 && ka == 2 && kb == 2,
            "{r:?}"
        );
        let (far, x, ka, kb) = r[1];
        assert!(
            far > 400.0 && (x - 10.0).abs() < 1e-9 && ka == 1 && kb == 1,
            "{r:?}"
        );
        // Without probes there is nothing to pair.
        assert!(placements(&[row(&[])]).is_empty());
    }
}
