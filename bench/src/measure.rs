//! The measurement loops: a [`Session`] is one case's processes and
//! endpoints; each [`Session::run`] is one measurement, bounded by a time
//! window (`shmq bench`: warm up, then measure) or by a message count
//! (criterion's `iter_custom`).
//!
//! Latency is a ping-pong: this process pings, a child echoes. Throughput
//! is a one-way stream: with one producer and one consumer, a child
//! produces and this process consumes; otherwise P producer and C consumer
//! children share the channel and this process only sends the stop
//! messages.

use std::io;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::case::{Case, Pattern};
use crate::endpoints::{Role, endpoint};
use crate::link::Link;
use crate::peer::{Host, PeerSpec, Peers, Report};
use crate::sys::{cpu_ns, mono_ns};
use crate::transport::{Counters, Stretch, Transport};

/// First payload byte of the message that ends a run.
pub const STOP: u8 = 0xff;
/// First payload byte of every other message.
pub const DATA: u8 = 0;

/// How long a run lasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Until {
    /// Warm up for `warmup`, then measure for `measure`; latency runs keep
    /// a histogram of the measured round trips.
    Window {
        /// Not measured.
        warmup: Duration,
        /// Measured.
        measure: Duration,
    },
    /// Exactly this many round trips, or messages (per producer: this many
    /// divided among them), all measured, no warm-up.
    Count(u64),
}

/// What a child is told to do: its measurement window (`CLOCK_MONOTONIC`
/// ns), or a message count (when not 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Go {
    /// Start of the measured window.
    pub start_ns: u64,
    /// End of the measured window.
    pub stop_ns: u64,
    /// Producers: send exactly this many (0: until `stop_ns`).
    pub count: u64,
}

impl Go {
    /// Parses `go START_NS STOP_NS COUNT`.
    pub(crate) fn parse(line: &str) -> Option<Go> {
        let mut w = line.split_whitespace();
        if w.next()? != "go" {
            return None;
        }
        let mut n = || w.next()?.parse::<u64>().ok();
        Some(Go {
            start_ns: n()?,
            stop_ns: n()?,
            count: n()?,
        })
    }

    /// The measured window, or `None` when the run is counted.
    pub(crate) fn window(&self) -> Option<(u64, u64)> {
        (self.count == 0).then_some((self.start_ns, self.stop_ns))
    }
}

/// One run of one case.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Latency in a window: the measured round trips (ns).
    pub hist: Option<Histogram<u64>>,
    /// Measured time: the window, or what the count took.
    pub elapsed: Duration,
    /// Measured round trips (latency) or messages received (throughput).
    pub counted: u64,
    /// Round trips or messages received in the whole run, warm-up included.
    pub total: u64,
    /// The shmq counters of every endpoint, both sides, during the run.
    pub counters: Counters,
    /// CPU time of every process during the run.
    pub cpu_ns: u64,
    /// An [`Alternating`](crate::Alternating) consumer's stretches inside
    /// the measured window (all of them in a counted run); empty for every
    /// other case.
    pub stretches: Vec<Stretch>,
}

impl Sample {
    /// Messages (or round trips) per second in the measured time.
    pub fn rate(&self) -> f64 {
        self.counted as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// One case's processes and endpoints, ready to run.
pub struct Session {
    case: Case,
    me: Box<dyn Transport>,
    peers: Peers,
    /// Kept for its names: dropping it after the endpoints removes what is
    /// left of the segments and queues.
    _link: Link,
    msg: Vec<u8>,
    buf: Vec<u8>,
}

impl Session {
    /// Opens this process's endpoint and starts the children.
    ///
    /// # Errors
    /// The case is not possible (several processes on a one-to-one
    /// transport), or an endpoint or child failed to start.
    pub fn start(case: &Case, host: &Host) -> Result<Session, String> {
        let p = &case.params;
        let multi = case.is_multi();
        if multi && (case.pattern == Pattern::Latency || !p.transport.many_to_many()) {
            return Err(format!(
                "{} has no {}P{}C {} mode",
                p.transport.as_str(),
                case.producers,
                case.consumers,
                case.pattern.as_str()
            ));
        }
        let (mine, children): (Role, Vec<(Role, Option<usize>)>) = match case.pattern {
            Pattern::Latency => (Role::Ping, vec![(Role::Echo, host.child_cpu)]),
            Pattern::Throughput if !multi => (Role::Consume, vec![(Role::Produce, host.child_cpu)]),
            // Consumers share the idle parent's CPU.
            Pattern::Throughput => (
                Role::Produce,
                std::iter::repeat_n((Role::Produce, host.child_cpu), case.producers)
                    .chain(std::iter::repeat_n(
                        (Role::Consume, host.parent_cpu),
                        case.consumers,
                    ))
                    .collect(),
            ),
        };
        let mut link = Link::new();
        let me = endpoint(mine, p, &mut link).map_err(|e| format!("{}: {e}", case.label()))?;
        let mut peers = Peers::default();
        for (role, cpu) in children {
            let spec = PeerSpec {
                params: p.clone(),
                role,
                names: link.names().to_vec(),
                fds: link.raw_fds(),
                cpu,
                stop: !multi,
            };
            peers.spawn(host, &spec)?;
        }
        peers.ready()?;
        link.close_fds();
        let mut msg = vec![DATA; p.size.max(1)];
        msg[0] = DATA;
        Ok(Session {
            case: case.clone(),
            me,
            peers,
            _link: link,
            msg,
            buf: vec![0u8; p.size.max(1) + 64],
        })
    }

    /// The case.
    pub fn case(&self) -> &Case {
        &self.case
    }

    /// Runs one measurement.
    ///
    /// # Errors
    /// A transport error, a child that failed or hung, messages lost.
    pub fn run(&mut self, until: Until) -> Result<Sample, String> {
        let go = match until {
            Until::Window { warmup, measure } => {
                let start_ns = mono_ns() + warmup.as_nanos() as u64;
                Go {
                    start_ns,
                    stop_ns: start_ns + measure.as_nanos() as u64,
                    count: 0,
                }
            }
            Until::Count(n) => Go {
                start_ns: 0,
                stop_ns: u64::MAX,
                count: if self.case.pattern == Pattern::Latency {
                    n
                } else {
                    n.div_ceil(self.case.producers as u64).max(1)
                },
            },
        };
        let before = self.me.stats();
        // Stretches of an earlier run are not this one's.
        let _ = self.me.take_stretches();
        self.peers.go(&go)?;
        let cpu0 = cpu_ns();
        let mut s = match self.case.pattern {
            Pattern::Latency => self.ping(until)?,
            Pattern::Throughput if self.case.is_multi() => self.many(until, &go)?,
            Pattern::Throughput => self.stream(&go)?,
        };
        s.cpu_ns += cpu_ns() - cpu0;
        if let (Some(a), Some(b)) = (before, self.me.stats()) {
            s.counters = s.counters + (b - a);
        }
        Ok(s)
    }

    /// Ends the children and waits for them.
    ///
    /// # Errors
    /// A child failed or did not exit.
    pub fn finish(mut self) -> Result<(), String> {
        self.peers.finish(Duration::from_secs(10))
    }

    fn err(&self) -> impl Fn(io::Error) -> String + '_ {
        move |e| format!("{}: {e}", self.case.label())
    }

    /// Sends a stop message (and takes its echo, in a ping-pong).
    fn stop(&mut self, echoed: bool) -> Result<(), String> {
        self.msg[0] = STOP;
        let r = self.me.send(&self.msg);
        self.msg[0] = DATA;
        r.map_err(self.err())?;
        if echoed {
            self.me.recv(&mut self.buf).map_err(self.err())?;
        }
        Ok(())
    }

    /// A sample with the children's counters and CPU time (this process's
    /// are added by [`run`](Self::run)).
    fn sample(
        hist: Option<Histogram<u64>>,
        elapsed: Duration,
        (counted, total): (u64, u64),
        reports: &[Report],
    ) -> Sample {
        Sample {
            hist,
            elapsed,
            counted,
            total,
            counters: reports
                .iter()
                .fold(Counters::default(), |c, r| c + r.counters),
            cpu_ns: reports.iter().map(|r| r.cpu_ns).sum(),
            stretches: Vec::new(),
        }
    }

    /// Ping-pong until the window closes or `n` round trips.
    fn ping(&mut self, until: Until) -> Result<Sample, String> {
        let (warm_end, end, n) = match until {
            Until::Window { warmup, measure } => {
                let w = Instant::now() + warmup;
                (Some(w), w + measure, u64::MAX)
            }
            Until::Count(n) => (None, Instant::now(), n),
        };
        let mut hist = match until {
            Until::Window { .. } => Some(
                Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
                    .map_err(|e| format!("histogram: {e}"))?,
            ),
            Until::Count(_) => None,
        };
        let size = self.case.params.size;
        let (mut counted, mut total, mut busy) = (0u64, 0u64, Duration::ZERO);
        let mut prev = Instant::now();
        while counted < n {
            if let Some(p) = self.case.pace {
                // Paced pings: the peer idles between messages.
                std::thread::sleep(p);
                prev = Instant::now();
            }
            self.me.send(&self.msg).map_err(self.err())?;
            let got = self.me.recv(&mut self.buf).map_err(self.err())?;
            let now = Instant::now();
            if got != size {
                return Err(format!(
                    "{}: echo of {got} bytes, sent {size}",
                    self.case.label()
                ));
            }
            total += 1;
            if warm_end.is_none_or(|w| now >= w) {
                counted += 1;
                busy += now - prev;
                if let Some(h) = &mut hist {
                    h.saturating_record((now - prev).as_nanos() as u64);
                }
                if warm_end.is_some() && now >= end {
                    break;
                }
            }
            prev = now;
        }
        self.stop(true)?;
        let reports = self.peers.reports(0..1, Duration::from_secs(10))?;
        Ok(Self::sample(hist, busy, (counted, total), &reports))
    }

    /// One producer child, this process consumes until its stop message.
    fn stream(&mut self, go: &Go) -> Result<Sample, String> {
        let t0 = Instant::now();
        let size = self.case.params.size;
        let batch = self.case.params.stream_batch();
        let c = consume(self.me.as_mut(), &mut self.buf, size, batch, go.window())
            .map_err(self.err())?;
        let elapsed = match go.window() {
            Some((a, b)) => Duration::from_nanos(b - a),
            None => t0.elapsed(),
        };
        let reports = self.peers.reports(0..1, Duration::from_secs(10))?;
        let mut s = Self::sample(None, elapsed, (c.counted, c.total), &reports);
        s.stretches = self.me.take_stretches();
        if let Some((a, b)) = go.window() {
            s.stretches.retain(|t| t.start_ns >= a && t.end_ns <= b);
        }
        Ok(s)
    }

    /// P producer and C consumer children; this process sends one stop
    /// message per consumer once the producers are done.
    fn many(&mut self, until: Until, go: &Go) -> Result<Sample, String> {
        let t0 = Instant::now();
        let (p, c) = (self.case.producers, self.case.consumers);
        let patience = match until {
            Until::Window { warmup, measure } => warmup + measure,
            Until::Count(_) => Duration::from_secs(50),
        } + Duration::from_secs(10);
        let mut reports = self.peers.reports(0..p, patience)?;
        for _ in 0..c {
            self.stop(false)?;
        }
        let cons = self.peers.reports(p..p + c, Duration::from_secs(10))?;
        let elapsed = match go.window() {
            Some((a, b)) => Duration::from_nanos(b - a),
            None => t0.elapsed(),
        };
        let counted = cons.iter().map(|r| r.counted).sum::<u64>();
        let total = cons.iter().map(|r| r.total).sum::<u64>();
        if go.count > 0 && total != go.count * p as u64 {
            return Err(format!(
                "{}: {total} messages received, {} sent",
                self.case.label(),
                go.count * p as u64
            ));
        }
        reports.extend(cons);
        Ok(Self::sample(None, elapsed, (counted, total), &reports))
    }
}

/// One sample from fresh processes: start, run once, finish (what `shmq
/// bench` does for every case in every round).
///
/// # Errors
/// As [`Session::start`], [`Session::run`], [`Session::finish`].
pub fn measure(case: &Case, host: &Host, until: Until) -> Result<Sample, String> {
    let mut s = Session::start(case, host)?;
    let sample = s.run(until)?;
    s.finish()?;
    Ok(sample)
}

/// Echoes messages until (and including) the stop message; returns how many.
pub(crate) fn echo(t: &mut dyn Transport, buf: &mut [u8]) -> io::Result<u64> {
    let mut n = 0;
    loop {
        let len = t.recv(buf)?;
        t.send(&buf[..len])?;
        n += 1;
        if len > 0 && buf[0] == STOP {
            return Ok(n);
        }
    }
}

/// How many messages pass between two looks at the clock.
fn clock_every(size: usize) -> u64 {
    if size < 1024 { 64 } else { 1 }
}

/// Sends `size`-byte messages, `batch` at a time (`Transport::send_batch`
/// when `batch > 1`), until the window closes (or `go.count` of them); then
/// a stop message if `stop`. Returns how many were sent.
pub(crate) fn produce(
    t: &mut dyn Transport,
    size: usize,
    batch: usize,
    go: &Go,
    stop: bool,
) -> io::Result<u64> {
    let mut msg = vec![DATA; size.max(1)];
    let every = clock_every(size).max(batch as u64);
    let mut n: u64 = 0;
    loop {
        let k = if go.count > 0 {
            (batch as u64).min(go.count - n)
        } else {
            batch as u64
        };
        if k == 1 {
            t.send(&msg)?;
        } else {
            t.send_batch(&msg, k as usize)?;
        }
        // The clock is read once per `every` messages (batches: once per
        // batch at least).
        let before = n;
        n += k;
        let done = if go.count > 0 {
            n >= go.count
        } else {
            n / every != before / every && mono_ns() >= go.stop_ns
        };
        if done {
            break;
        }
    }
    if stop {
        msg[0] = STOP;
        t.send(&msg)?;
    }
    Ok(n)
}

/// What a consumer saw.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Consumed {
    /// Data messages received in total.
    pub total: u64,
    /// Data messages received inside the window (all, without one).
    pub counted: u64,
}

/// A consumer's count of what it received, and where the window began
/// and ended.
struct Counting {
    every: u64,
    window: Option<(u64, u64)>,
    total: u64,
    at_start: Option<u64>,
    at_stop: Option<u64>,
    stopped: bool,
}

impl Counting {
    /// Counts message `m`: `false` at the stop message.
    fn see(&mut self, m: &[u8]) -> bool {
        if m.first() == Some(&STOP) {
            self.stopped = true;
            return false;
        }
        self.total += 1;
        if let Some((start_ns, stop_ns)) = self.window {
            if self.at_stop.is_none() && self.total % self.every == 0 {
                let now = mono_ns();
                if self.at_start.is_none() && now >= start_ns {
                    self.at_start = Some(self.total);
                }
                if now >= stop_ns {
                    self.at_stop = Some(self.total);
                }
            }
        }
        true
    }
}

/// Receives `size`-byte messages, up to `batch` at a time
/// (`Transport::recv_batch` when `batch > 1`), until a stop message; counts
/// those inside `window` (`CLOCK_MONOTONIC` ns), or all of them.
pub(crate) fn consume(
    t: &mut dyn Transport,
    buf: &mut [u8],
    size: usize,
    batch: usize,
    window: Option<(u64, u64)>,
) -> io::Result<Consumed> {
    let mut st = Counting {
        every: clock_every(size),
        window,
        total: 0,
        at_start: None,
        at_stop: None,
        stopped: false,
    };
    while !st.stopped {
        if batch > 1 {
            t.recv_batch(buf, batch, &mut |m| st.see(m))?;
        } else {
            let len = t.recv(buf)?;
            st.see(&buf[..len]);
        }
    }
    let Counting {
        total,
        at_start,
        at_stop,
        ..
    } = st;
    let counted = match window {
        Some(_) => at_stop
            .unwrap_or(total)
            .saturating_sub(at_start.unwrap_or(total)),
        None => total,
    };
    Ok(Consumed { total, counted })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_lines_parse() {
        let g = Go::parse("go 1 2 0").unwrap();
        assert_eq!(g.window(), Some((1, 2)));
        assert_eq!(Go::parse("go 1 2 5").unwrap().window(), None);
        assert!(Go::parse("go 1 2").is_none());
        assert!(Go::parse("stop").is_none());
    }
}
