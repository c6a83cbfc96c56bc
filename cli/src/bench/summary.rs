//! One row of the results: a case's samples summarised across rounds.

use hdrhistogram::Histogram;
use shmq_bench::{Case, Pattern, Receiving, Sample, Stretch};

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
    /// An alternating consumer's turns, round by round (empty for other
    /// cases).
    pub round_turns: Vec<Turns>,
    /// Not measured, and why.
    pub na: Option<String>,
}

/// What an [`shmq_bench::Alternating`] consumer's stretches add up to,
/// per way of receiving: messages and time, so that a way's rate is its
/// messages over its time (a stretch that ran slow counts for as long as
/// it took). The blocking stretches are kept in two pools, the even and
/// the odd turns, and the second over the first is the control: what the
/// method reads when nothing differs.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Turns {
    /// Blocking stretches of even and of odd turns: (messages, ns).
    pub blocking: [(u64, u64); 2],
    /// Paced stretches: (messages, ns).
    pub paced: (u64, u64),
    /// Bare polling stretches: (messages, ns).
    pub polling: (u64, u64),
}

fn rate((msgs, ns): (u64, u64)) -> Option<f64> {
    (msgs > 0 && ns > 0).then(|| msgs as f64 * 1e9 / ns as f64)
}

impl Turns {
    /// One round's stretches, in the order they ran.
    pub fn of(stretches: &[Stretch]) -> Turns {
        let mut t = Turns::default();
        let mut blocking = 0;
        for s in stretches {
            let pool = match s.how {
                Receiving::Blocking => {
                    blocking += 1;
                    &mut t.blocking[blocking % 2]
                }
                Receiving::Paced => &mut t.paced,
                Receiving::Polling => &mut t.polling,
            };
            pool.0 += s.msgs;
            pool.1 += s.end_ns.saturating_sub(s.start_ns);
        }
        t
    }

    /// The sum of two rounds.
    pub fn add(self, b: Turns) -> Turns {
        let sum = |x: (u64, u64), y: (u64, u64)| (x.0 + y.0, x.1 + y.1);
        Turns {
            blocking: [
                sum(self.blocking[0], b.blocking[0]),
                sum(self.blocking[1], b.blocking[1]),
            ],
            paced: sum(self.paced, b.paced),
            polling: sum(self.polling, b.polling),
        }
    }

    /// Paced, bare polling and the odd blocking turns, each over all the
    /// blocking (the even ones, for the control).
    pub fn ratios(&self) -> Option<[f64; 3]> {
        let all = rate((
            self.blocking[0].0 + self.blocking[1].0,
            self.blocking[0].1 + self.blocking[1].1,
        ))?;
        Some([
            rate(self.paced)? / all,
            rate(self.polling)? / all,
            rate(self.blocking[1])? / rate(self.blocking[0])?,
        ])
    }
}

/// The middle value (the mean of the two middle ones for an even count);
/// `None` for no values.
pub fn median(mut v: Vec<f64>) -> Option<f64> {
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
        round_turns: samples
            .iter()
            .filter(|s| !s.stretches.is_empty())
            .map(|s| Turns::of(&s.stretches))
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

    fn stretch(how: Receiving, start_ns: u64, msgs: u64, ns: u64) -> Stretch {
        Stretch {
            how,
            start_ns,
            end_ns: start_ns + ns,
            msgs,
        }
    }

    #[test]
    fn turns_weigh_each_way_by_its_time_and_split_blocking_into_a_control() {
        use Receiving::{Blocking, Paced, Polling};
        // Blocking: 10 msgs in 10 ns, then 30 in 10 (the turns alternate
        // between the two pools); paced 20 in 10 and 20 in 30; polling 15
        // in 10.
        let round = [
            stretch(Blocking, 0, 10, 10),
            stretch(Paced, 10, 20, 10),
            stretch(Polling, 20, 15, 10),
            stretch(Blocking, 30, 30, 10),
            stretch(Paced, 40, 20, 30),
        ];
        let t = Turns::of(&round);
        assert_eq!(t.blocking, [(30, 10), (10, 10)]);
        assert_eq!((t.paced, t.polling), ((40, 40), (15, 10)));
        // Blocking runs at 2 msgs/ns in all, paced at 1, polling at 1.5;
        // the odd turns (1/ns) over the even ones (3/ns).
        let [paced, polling, control] = t.ratios().unwrap();
        assert!((paced - 0.5).abs() < 1e-9 && (polling - 0.75).abs() < 1e-9);
        assert!((control - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(Turns::default().ratios(), None);
        assert_eq!(t.add(t).ratios(), t.ratios());
    }
}
