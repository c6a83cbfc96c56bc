//! `shmq bench`: shmq rings against the floor, pipes, POSIX message queues
//! and Unix sockets, every one cross-process and through the same code path
//! ([`shmq_bench::Transport`]).
//!
//! Method: the peer is a child `shmq bench-peer` process pinned to another
//! CPU; every case runs once per round, cases alternate within a round so
//! that machine drift hits all alike, and the table reports medians across
//! rounds. Each run warms up before it measures.

use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use shmq::{WaitStrategy, mpmc, spsc};
use shmq_bench::{
    Duplex, MessageQueue, PipeSender, Transport, mq_msgsize_max, pipe, seqpacket_pair,
};

mod peer;
mod report;

use peer::{PeerSpec, Peers, Report, STOP, mono_ns, shmq_options};
use shmq_bench::Floor;

/// Arguments of `shmq bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Short run: sizes 64 and 4096, 3 short rounds (well under a minute).
    #[arg(long)]
    quick: bool,
    /// One JSON object per measurement on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Also draw latency distributions and throughput bars into this SVG.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<std::path::PathBuf>,
    /// Instead of the comparison: sweep the futex and semaphore spin window
    /// (0, 1, 10, 50 µs) and report round trip and CPU time per round trip.
    #[arg(long)]
    spin_sweep: bool,
    /// Message sizes in bytes (default 8,64,1024,65536; --quick: 64,4096).
    #[arg(long, value_delimiter = ',')]
    sizes: Vec<usize>,
    /// Rounds (default 5; --quick: 3).
    #[arg(long)]
    rounds: Option<usize>,
    /// Measured time per case and round, in ms (default 300; --quick: 100).
    #[arg(long)]
    measure_ms: Option<u64>,
    /// Only these transports (floor, shmq-spsc, shmq-mpmc, pipe, mq, uds).
    #[arg(long, value_delimiter = ',')]
    transports: Vec<TransportName>,
    /// Only these patterns (latency, throughput).
    #[arg(long, value_delimiter = ',')]
    patterns: Vec<PatternName>,
    /// Kernel buffer for pipes (F_SETPIPE_SZ) and sockets (SO_SNDBUF), in
    /// bytes; 0 keeps the kernel defaults (64 KiB pipes).
    #[arg(long, default_value_t = KERNEL_BUFFER)]
    kernel_buffer: usize,
    /// Do not pin the processes to CPUs.
    #[arg(long)]
    no_pin: bool,
}

/// Arguments of the hidden peer process.
#[derive(clap::Args, Debug)]
pub struct PeerArgs {
    #[arg(long)]
    transport: TransportName,
    #[arg(long)]
    wait: WaitName,
    #[arg(long)]
    role: Role,
    #[arg(long)]
    size: usize,
    #[arg(long)]
    spin_us: Option<u64>,
    #[arg(long, value_delimiter = ',')]
    names: Vec<String>,
    #[arg(long, value_delimiter = ',')]
    fds: Vec<i32>,
    #[arg(long)]
    cpu: Option<usize>,
    #[arg(long)]
    stop: bool,
    #[arg(long)]
    slots: Option<usize>,
}

/// A transport under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TransportName {
    /// Raw cache-line hand-off, no ring (ping-pong only).
    Floor,
    /// shmq SPSC ring.
    ShmqSpsc,
    /// shmq MPMC ring.
    ShmqMpmc,
    /// Length-prefixed messages over pipes.
    Pipe,
    /// POSIX message queue.
    Mq,
    /// Unix-domain SOCK_SEQPACKET socket.
    Uds,
}

impl TransportName {
    fn as_str(self) -> &'static str {
        match self {
            TransportName::Floor => "floor",
            TransportName::ShmqSpsc => "shmq-spsc",
            TransportName::ShmqMpmc => "shmq-mpmc",
            TransportName::Pipe => "pipe",
            TransportName::Mq => "mq",
            TransportName::Uds => "uds",
        }
    }
}

/// How the receiving side waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum WaitName {
    /// Busy-wait.
    Spin,
    /// Spin window, then futex.
    Futex,
    /// Spin window, then POSIX semaphore.
    Sem,
    /// The kernel transport's own blocking.
    Kernel,
}

impl WaitName {
    fn as_str(self) -> &'static str {
        match self {
            WaitName::Spin => "spin",
            WaitName::Futex => "futex",
            WaitName::Sem => "sem",
            WaitName::Kernel => "kernel",
        }
    }
    fn strategy(self) -> WaitStrategy {
        match self {
            WaitName::Spin => WaitStrategy::Spin,
            WaitName::Sem => WaitStrategy::Semaphore,
            WaitName::Futex | WaitName::Kernel => WaitStrategy::Futex,
        }
    }
}

/// What a peer process does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Answer every message with itself.
    Echo,
    /// Send until the window closes.
    Produce,
    /// Receive until a stop message.
    Consume,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Echo => "echo",
            Role::Produce => "produce",
            Role::Consume => "consume",
        }
    }
}

/// A measurement pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PatternName {
    /// Ping-pong round trips.
    Latency,
    /// One-way stream.
    Throughput,
}

/// One thing to measure.
#[derive(Clone, Debug)]
struct Case {
    transport: TransportName,
    wait: WaitName,
    latency: bool,
    size: usize,
    producers: usize,
    consumers: usize,
    /// Spin window override (µs); `None` = the library default.
    spin_us: Option<u64>,
    /// Sweep only: pause this long between pings.
    pace: Option<Duration>,
    /// mq queue depth (mq only).
    mq_depth: usize,
}

impl Case {
    fn label(&self) -> String {
        let mut s = self.transport.as_str().to_owned();
        if matches!(
            self.transport,
            TransportName::ShmqSpsc | TransportName::ShmqMpmc
        ) {
            s += "/";
            s += self.wait.as_str();
        }
        if self.producers > 1 || self.consumers > 1 {
            s += &format!(" {}P{}C", self.producers, self.consumers);
        }
        s
    }
}

/// One round of one case.
struct Sample {
    hist: Option<Histogram<u64>>,
    msgs_per_s: Option<f64>,
    wake_syscalls: u64,
    /// Messages counted at both ends (sent + received).
    endpoint_messages: u64,
    cpu_ns: u64,
    round_trips: u64,
}

/// Default kernel buffer for pipes (F_SETPIPE_SZ) and sockets (SO_SNDBUF):
/// the shmq SPSC ring's capacity, so that no transport queues less.
const KERNEL_BUFFER: usize = 1 << 20;

/// Run-wide settings.
struct Cfg {
    warmup: Duration,
    measure: Duration,
    parent_cpu: Option<usize>,
    child_cpu: Option<usize>,
    /// Pipe / socket buffer; 0 = kernel default.
    kernel_buffer: usize,
}

/// Segment names created for one measurement; removed on drop (normally
/// the last endpoint has removed them already).
struct Names(Vec<String>);

impl Names {
    fn new(n: usize) -> Names {
        use std::sync::atomic::Ordering;
        // A plain counter for unique names; no shared memory involved.
        #[allow(clippy::disallowed_types)]
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let pid = std::process::id();
        Names(
            (0..n)
                .map(|_| format!("bench-{pid}-{}", NEXT.fetch_add(1, Ordering::Relaxed)))
                .collect(),
        )
    }
    fn mq(&self, i: usize) -> String {
        format!("/shmq-{}", self.0[i])
    }
}

impl Drop for Names {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = shmq::remove(n);
        }
    }
}

fn ioe(what: &'static str) -> impl Fn(io::Error) -> String {
    move |e| format!("{what}: {e}")
}

fn oe(e: shmq::OpenError) -> String {
    e.to_string()
}

/// The parent's endpoint(s) and the child spec for a ping-pong case.
fn measure_latency(c: &Case, cfg: &Cfg) -> Result<Sample, String> {
    let names = Names::new(2);
    let opts = shmq_options(c.wait, c.size, c.spin_us, None);
    let mut spec = PeerSpec {
        transport: c.transport,
        wait: c.wait,
        role: Role::Echo,
        size: c.size,
        spin_us: c.spin_us,
        names: names.0.clone(),
        fds: vec![],
        cpu: cfg.child_cpu,
        stop: false,
        slots: None,
    };
    let mut peers = Peers::default();
    let mut t: Box<dyn Transport> = match c.transport {
        TransportName::Floor => {
            let f = Floor::create(c.size).map_err(ioe("floor"))?;
            spec.fds = vec![f.raw_fd()];
            peers.spawn(&spec)?;
            Box::new(f)
        }
        TransportName::ShmqSpsc => {
            let t = Duplex::new(
                spsc::Producer::create(&names.0[0], &opts).map_err(oe)?,
                spsc::Consumer::create(&names.0[1], &opts).map_err(oe)?,
            );
            peers.spawn(&spec)?;
            Box::new(t)
        }
        TransportName::ShmqMpmc => {
            let t = Duplex::new(
                mpmc::Producer::create(&names.0[0], &opts).map_err(oe)?,
                mpmc::Consumer::create(&names.0[1], &opts).map_err(oe)?,
            );
            peers.spawn(&spec)?;
            Box::new(t)
        }
        TransportName::Pipe => {
            let (a_tx, b_rx) = pipe().map_err(ioe("pipe"))?;
            let (b_tx, a_rx) = pipe().map_err(ioe("pipe"))?;
            for p in [&a_tx, &b_tx] {
                if cfg.kernel_buffer > 0 {
                    p.set_capacity(cfg.kernel_buffer)
                        .map_err(ioe("F_SETPIPE_SZ"))?;
                }
            }
            spec.fds = vec![b_rx.as_raw_fd(), b_tx.as_raw_fd()];
            peers.spawn(&spec)?;
            drop((b_rx, b_tx));
            Box::new(Duplex::new(a_tx, a_rx))
        }
        TransportName::Uds => {
            let (a, b) = seqpacket_pair().map_err(ioe("socketpair"))?;
            for s in [&a, &b] {
                if cfg.kernel_buffer > 0 {
                    s.set_send_buffer(cfg.kernel_buffer)
                        .map_err(ioe("SO_SNDBUF"))?;
                }
            }
            spec.fds = vec![b.as_raw_fd()];
            peers.spawn(&spec)?;
            drop(b);
            Box::new(a)
        }
        TransportName::Mq => {
            spec.names = vec![names.mq(0), names.mq(1)];
            let t = Duplex::new(
                MessageQueue::create(&names.mq(0), c.mq_depth, c.size).map_err(ioe("mq"))?,
                MessageQueue::create(&names.mq(1), c.mq_depth, c.size).map_err(ioe("mq"))?,
            );
            peers.spawn(&spec)?;
            Box::new(t)
        }
    };
    peers.ready()?;
    let now = mono_ns();
    let start_ns = now + cfg.warmup.as_nanos() as u64;
    let stop_ns = start_ns + cfg.measure.as_nanos() as u64;
    peers.go(start_ns, stop_ns)?;
    let cpu0 = peer::cpu_ns();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
        .map_err(|e| format!("histogram: {e}"))?;
    let mut msg = vec![peer::DATA; c.size];
    let mut buf = vec![0u8; c.size + 64];
    let t0 = Instant::now();
    let warm_end = t0 + cfg.warmup;
    let end = warm_end + cfg.measure;
    let io = |e: io::Error| format!("{} ping: {e}", c.label());
    let mut prev = Instant::now();
    let mut trips: u64 = 0;
    loop {
        if let Some(p) = c.pace {
            // Paced pings: the peer idles between messages.
            std::thread::sleep(p);
            prev = Instant::now();
        }
        t.send(&msg).map_err(io)?;
        let n = t.recv(&mut buf).map_err(io)?;
        let now = Instant::now();
        if n != c.size {
            return Err(format!("{}: echo of {n} bytes, sent {}", c.label(), c.size));
        }
        trips += 1;
        if now >= warm_end {
            hist.saturating_record((now - prev).as_nanos() as u64);
            if now >= end {
                break;
            }
        }
        prev = now;
    }
    msg[0] = STOP;
    t.send(&msg).map_err(io)?;
    t.recv(&mut buf).map_err(io)?;
    let cpu = peer::cpu_ns() - cpu0;
    let reports = peers.finish(0..1, Duration::from_secs(10))?;
    let mine = t.stats();
    drop(t);
    let r = reports[0];
    Ok(Sample {
        hist: Some(hist),
        msgs_per_s: None,
        wake_syscalls: r.wake_syscalls + mine.map_or(0, |s| s.wake_syscalls),
        endpoint_messages: mine.map_or(0, |s| s.messages) + r.messages,
        cpu_ns: cpu + r.cpu_ns,
        round_trips: trips,
    })
}

/// One-way stream: P producer children; 1P1C: the parent consumes;
/// otherwise C consumer children and the parent only coordinates.
fn measure_throughput(c: &Case, cfg: &Cfg) -> Result<Sample, String> {
    let names = Names::new(1);
    let opts = shmq_options(c.wait, c.size, c.spin_us, None);
    let multi = c.producers > 1 || c.consumers > 1;
    let spec = |role: Role, cpu: Option<usize>| PeerSpec {
        transport: c.transport,
        wait: c.wait,
        role,
        size: c.size,
        spin_us: c.spin_us,
        names: if c.transport == TransportName::Mq {
            vec![names.mq(0)]
        } else {
            names.0.clone()
        },
        fds: vec![],
        cpu,
        stop: !multi,
        slots: None,
    };
    let mut peers = Peers::default();
    let prod_cpu = cfg.child_cpu;
    let cons_cpu = cfg.parent_cpu;
    // The parent's endpoint: the consumer (1P1C) or a holder that sends the
    // stop messages (multi).
    let mut t: Box<dyn Transport> = match (c.transport, multi) {
        (TransportName::ShmqSpsc, false) => {
            let t = spsc::Consumer::create(&names.0[0], &opts).map_err(oe)?;
            peers.spawn(&spec(Role::Produce, prod_cpu))?;
            Box::new(t)
        }
        (TransportName::ShmqMpmc, false) => {
            let t = mpmc::Consumer::create(&names.0[0], &opts).map_err(oe)?;
            peers.spawn(&spec(Role::Produce, prod_cpu))?;
            Box::new(t)
        }
        (TransportName::ShmqMpmc, true) => {
            Box::new(mpmc::Producer::create(&names.0[0], &opts).map_err(oe)?)
        }
        (TransportName::Pipe, false) => {
            let (tx, rx) = pipe().map_err(ioe("pipe"))?;
            tx.set_capacity(KERNEL_BUFFER)
                .map_err(ioe("F_SETPIPE_SZ"))?;
            let mut s = spec(Role::Produce, prod_cpu);
            s.fds = vec![tx.as_raw_fd()];
            peers.spawn(&s)?;
            drop::<PipeSender>(tx);
            Box::new(rx)
        }
        (TransportName::Uds, false) => {
            let (a, b) = seqpacket_pair().map_err(ioe("socketpair"))?;
            if cfg.kernel_buffer > 0 {
                b.set_send_buffer(cfg.kernel_buffer)
                    .map_err(ioe("SO_SNDBUF"))?;
            }
            let mut s = spec(Role::Produce, prod_cpu);
            s.fds = vec![b.as_raw_fd()];
            peers.spawn(&s)?;
            drop(b);
            Box::new(a)
        }
        (TransportName::Mq, m) => {
            let q = MessageQueue::create(&names.mq(0), c.mq_depth, c.size).map_err(ioe("mq"))?;
            if !m {
                peers.spawn(&spec(Role::Produce, prod_cpu))?;
            }
            Box::new(q)
        }
        (tr, _) => {
            return Err(format!(
                "{} has no {}P{}C throughput mode",
                tr.as_str(),
                c.producers,
                c.consumers
            ));
        }
    };
    if multi {
        for _ in 0..c.producers {
            peers.spawn(&spec(Role::Produce, prod_cpu))?;
        }
        for _ in 0..c.consumers {
            peers.spawn(&spec(Role::Consume, cons_cpu))?;
        }
    }
    peers.ready()?;
    let now = mono_ns();
    let start_ns = now + cfg.warmup.as_nanos() as u64;
    let stop_ns = start_ns + cfg.measure.as_nanos() as u64;
    peers.go(start_ns, stop_ns)?;
    let cpu0 = peer::cpu_ns();
    let window = (stop_ns - start_ns) as f64 / 1e9;
    let patience = cfg.warmup + cfg.measure + Duration::from_secs(10);
    let io = |e: io::Error| format!("{}: {e}", c.label());
    let (counted, reports) = if multi {
        let mut reports = peers.finish(0..c.producers, patience)?;
        let mut stop = vec![0u8; c.size];
        stop[0] = STOP;
        for _ in 0..c.consumers {
            t.send(&stop).map_err(io)?;
        }
        let n = peers.list.len();
        let cons = peers.finish(c.producers..n, Duration::from_secs(10))?;
        let counted = cons.iter().map(|r| r.counted).sum::<u64>();
        reports.extend(cons);
        (counted, reports)
    } else {
        let mut buf = vec![0u8; c.size + 64];
        let got = peer::consume(t.as_mut(), &mut buf, c.size, start_ns, stop_ns).map_err(io)?;
        let reports = peers.finish(0..1, Duration::from_secs(10))?;
        (got.counted, reports)
    };
    let cpu = peer::cpu_ns() - cpu0;
    let mine = t.stats();
    drop(t);
    let sum = |f: fn(&Report) -> u64| reports.iter().map(f).sum::<u64>();
    let msgs = counted as f64 / window;

    Ok(Sample {
        hist: None,
        msgs_per_s: Some(msgs),
        wake_syscalls: sum(|r| r.wake_syscalls) + mine.map_or(0, |s| s.wake_syscalls),
        endpoint_messages: sum(|r| r.messages) + mine.map_or(0, |s| s.messages),
        cpu_ns: cpu + sum(|r| r.cpu_ns),
        round_trips: 0,
    })
}

/// Medians across rounds, and the merged histogram.
pub(crate) struct Summary {
    case: Case,
    rtt_p50: Option<f64>,
    rtt_p99: Option<f64>,
    msgs_per_s: Option<f64>,
    wake_per_msg: Option<f64>,
    cpu_ns_per_rtt: Option<f64>,
    hist: Option<Histogram<u64>>,
    na: Option<String>,
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

fn summarize(case: Case, samples: &[Sample]) -> Summary {
    let q = |p: f64| {
        median(
            samples
                .iter()
                .filter_map(|s| s.hist.as_ref().map(|h| h.value_at_quantile(p) as f64))
                .collect(),
        )
    };
    let mut merged: Option<Histogram<u64>> = None;
    for s in samples {
        if let Some(h) = &s.hist {
            match &mut merged {
                None => merged = Some(h.clone()),
                Some(m) => {
                    let _ = m.add(h);
                }
            }
        }
    }
    let shmq = matches!(
        case.transport,
        TransportName::ShmqSpsc | TransportName::ShmqMpmc
    );
    let wake: u64 = samples.iter().map(|s| s.wake_syscalls).sum();
    let msgs: u64 = samples.iter().map(|s| s.endpoint_messages).sum();
    let trips: u64 = samples.iter().map(|s| s.round_trips).sum();
    let cpu: u64 = samples.iter().map(|s| s.cpu_ns).sum();
    Summary {
        rtt_p50: q(0.5),
        rtt_p99: q(0.99),
        msgs_per_s: median(samples.iter().filter_map(|s| s.msgs_per_s).collect()),
        // Each message is counted by its sender and by its receiver.
        wake_per_msg: (shmq && msgs > 0).then(|| wake as f64 / (msgs as f64 / 2.0)),
        cpu_ns_per_rtt: (trips > 0).then(|| cpu as f64 / trips as f64),
        hist: merged,
        na: None,
        case,
    }
}

/// The deepest mq (up to 64 messages) whose two queues fit the user's
/// RLIMIT_MSGQUEUE, or why there is none for this size.
fn mq_depth(size: usize) -> Result<usize, String> {
    // SAFETY: rlimit is plain old data; all-zero is valid.
    let mut rl: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `rl` is a valid out-pointer.
    unsafe { libc::getrlimit(libc::RLIMIT_MSGQUEUE, &mut rl) };
    let budget = (rl.rlim_cur as usize / 2).max(1);
    let want = (budget / (size + 128)).clamp(1, 64);
    let name = format!("/shmq-bench-{}-probe", std::process::id());
    let mut last = String::new();
    for depth in [want, want.min(10)] {
        match MessageQueue::create(&name, depth, size) {
            Ok(q) => {
                drop(q);
                return Ok(depth);
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

const MSGSIZE_MAX: &str = "/proc/sys/fs/mqueue/msgsize_max";

/// Restores `/proc/sys/fs/mqueue/msgsize_max` when dropped.
struct MsgsizeGuard(usize);

impl Drop for MsgsizeGuard {
    fn drop(&mut self) {
        if std::fs::write(MSGSIZE_MAX, self.0.to_string()).is_err() {
            eprintln!(
                "warning: could not restore {MSGSIZE_MAX} to {}; do it by hand",
                self.0
            );
        }
    }
}

/// Raises the mq message size limit to `need` if it is lower and we may
/// (root); returns the guard that restores it. Otherwise larger mq sizes are
/// reported n/a.
fn raise_mq_msgsize(need: usize) -> Option<MsgsizeGuard> {
    let old = mq_msgsize_max()?;
    if need <= old {
        return None;
    }
    match std::fs::write(MSGSIZE_MAX, need.to_string()) {
        Ok(()) => {
            eprintln!(
                "note: raised {MSGSIZE_MAX} from {old} to {need} for this run (restored at exit)"
            );
            Some(MsgsizeGuard(old))
        }
        Err(e) => {
            eprintln!("note: cannot raise {MSGSIZE_MAX} ({e}): mq is n/a above {old} bytes");
            None
        }
    }
}

fn build_cases(a: &BenchArgs, sizes: &[usize]) -> Vec<Case> {
    use TransportName as T;
    use WaitName as W;
    let want_t = |t: T| a.transports.is_empty() || a.transports.contains(&t);
    let want_p = |p: PatternName| a.patterns.is_empty() || a.patterns.contains(&p);
    let mut v = Vec::new();
    let mk = |t, w, latency, size, p, c| Case {
        transport: t,
        wait: w,
        latency,
        size,
        producers: p,
        consumers: c,
        spin_us: None,
        pace: None,
        mq_depth: 1,
    };
    for &size in sizes {
        if want_p(PatternName::Latency) {
            for (t, w) in [
                (T::Floor, W::Spin),
                (T::ShmqSpsc, W::Spin),
                (T::ShmqSpsc, W::Futex),
                (T::ShmqSpsc, W::Sem),
                (T::ShmqMpmc, W::Futex),
                (T::Pipe, W::Kernel),
                (T::Mq, W::Kernel),
                (T::Uds, W::Kernel),
            ] {
                if want_t(t) {
                    v.push(mk(t, w, true, size, 1, 1));
                }
            }
        }
        if want_p(PatternName::Throughput) {
            for (t, w, p) in [
                (T::ShmqSpsc, W::Spin, 1),
                (T::ShmqSpsc, W::Futex, 1),
                (T::ShmqSpsc, W::Sem, 1),
                (T::ShmqMpmc, W::Futex, 1),
                (T::ShmqMpmc, W::Futex, 2),
                (T::Pipe, W::Kernel, 1),
                (T::Mq, W::Kernel, 1),
                (T::Mq, W::Kernel, 2),
                (T::Uds, W::Kernel, 1),
            ] {
                if want_t(t) {
                    v.push(mk(t, w, false, size, p, p));
                }
            }
        }
    }
    v
}

fn sweep_cases() -> Vec<Case> {
    let mut v = Vec::new();
    for pace in [None, Some(Duration::from_micros(200))] {
        for w in [WaitName::Futex, WaitName::Sem] {
            for spin in [0u64, 1, 10, 50] {
                v.push(Case {
                    transport: TransportName::ShmqSpsc,
                    wait: w,
                    latency: true,
                    size: 64,
                    producers: 1,
                    consumers: 1,
                    spin_us: Some(spin),
                    pace,
                    mq_depth: 1,
                });
            }
        }
        v.push(Case {
            transport: TransportName::Pipe,
            wait: WaitName::Kernel,
            latency: true,
            size: 64,
            producers: 1,
            consumers: 1,
            spin_us: None,
            pace,
            mq_depth: 1,
        });
    }
    v
}

fn measure(c: &Case, cfg: &Cfg) -> Result<Sample, String> {
    if c.latency {
        measure_latency(c, cfg)
    } else {
        measure_throughput(c, cfg)
    }
}

/// Set by SIGINT/SIGTERM: the run stops after the current measurement and
/// cleans up (children, segments, queues, the mq sysctl).
// A plain flag for a signal handler; no shared memory involved.
#[allow(clippy::disallowed_types)]
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_signal(_sig: libc::c_int) {
    INTERRUPTED.store(true, std::sync::atomic::Ordering::Relaxed);
}

fn catch_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe; exec resets it to the default in the children.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

fn interrupted() -> bool {
    INTERRUPTED.load(std::sync::atomic::Ordering::Relaxed)
}

fn run_inner(a: BenchArgs) -> Result<(), String> {
    catch_signals();
    let machine = machine_label();
    let sizes: Vec<usize> = if !a.sizes.is_empty() {
        a.sizes.clone()
    } else if a.quick {
        vec![64, 4096]
    } else {
        vec![8, 64, 1024, 65536]
    };
    if let Some(&s) = sizes.iter().find(|&&s| !(8..=1 << 20).contains(&s)) {
        return Err(format!(
            "message size {s} is out of range (8 to 1048576 bytes)"
        ));
    }
    let rounds = a.rounds.unwrap_or(if a.quick { 3 } else { 5 }).max(1);
    let measure_ms = a.measure_ms.unwrap_or(if a.quick { 100 } else { 300 });
    let cpus = peer::allowed_cpus();
    let (parent_cpu, child_cpu) = if !a.no_pin && cpus.len() >= 2 {
        if peer::pin_to(cpus[0]) {
            (Some(cpus[0]), Some(cpus[1]))
        } else {
            (None, None)
        }
    } else {
        (None, None)
    };
    let cfg = Cfg {
        warmup: Duration::from_millis((measure_ms / 5).max(20)),
        measure: Duration::from_millis(measure_ms),
        parent_cpu,
        child_cpu,
        kernel_buffer: a.kernel_buffer,
    };
    let mut cases = if a.spin_sweep {
        sweep_cases()
    } else {
        build_cases(&a, &sizes)
    };
    // POSIX mq: messages above msgsize_max need the sysctl raised (we are
    // root) for the duration of the run; restored when the guard drops.
    let _msgsize = raise_mq_msgsize(
        cases
            .iter()
            .filter(|c| c.transport == TransportName::Mq)
            .map(|c| c.size)
            .max()
            .unwrap_or(0),
    );
    // POSIX mq: pick the queue depth, or mark the size n/a.
    let mut na: Vec<(usize, String)> = Vec::new();
    let mut depth_of = std::collections::HashMap::new();
    cases.retain_mut(|c| {
        if c.transport != TransportName::Mq {
            return true;
        }
        let d = depth_of.entry(c.size).or_insert_with(|| mq_depth(c.size));
        match d {
            Ok(d) => {
                c.mq_depth = *d;
                true
            }
            Err(e) => {
                if !na.iter().any(|(s, _)| *s == c.size) {
                    na.push((c.size, e.clone()));
                }
                false
            }
        }
    });
    for (s, e) in &na {
        eprintln!("note: mq n/a at {s} bytes: {e}");
    }
    if cases.is_empty() {
        return Err(
            "nothing to measure: no case matches --transports / --patterns / --sizes \
             (the floor has no throughput pattern)"
                .into(),
        );
    }
    eprintln!(
        "shmq bench: {} cases x {rounds} rounds, {} ms each (+{} ms warm-up); parent on CPU {}, peers on CPU {}",
        cases.len(),
        cfg.measure.as_millis(),
        cfg.warmup.as_millis(),
        parent_cpu.map_or("any".into(), |c| c.to_string()),
        child_cpu.map_or("any".into(), |c| c.to_string()),
    );
    let started = Instant::now();
    let mut samples: Vec<Vec<Sample>> = cases.iter().map(|_| Vec::new()).collect();
    for r in 0..rounds {
        for (i, c) in cases.iter().enumerate() {
            if interrupted() {
                return Err("interrupted".into());
            }
            let s = measure(c, &cfg).map_err(|e| {
                if interrupted() {
                    "interrupted".to_owned()
                } else {
                    format!("{} {} B: {e}", c.label(), c.size)
                }
            })?;
            let what = match (&s.hist, s.msgs_per_s) {
                (Some(h), _) => format!("p50 {}", report::ns(h.value_at_quantile(0.5) as f64)),
                (_, Some(m)) => format!("{} msgs/s", report::si(m)),
                _ => String::new(),
            };
            eprintln!(
                "[{:>4.0}s] round {}/{rounds} {:<22} {:<10} {:>6} B  {what}",
                started.elapsed().as_secs_f64(),
                r + 1,
                c.label(),
                if c.latency { "latency" } else { "throughput" },
                c.size,
            );
            samples[i].push(s);
        }
    }
    let mut sums: Vec<Summary> = cases
        .into_iter()
        .zip(samples)
        .map(|(c, s)| summarize(c, &s))
        .collect();
    let mut out = io::stdout().lock();
    let w = |e: io::Error| format!("writing output: {e}");
    if a.spin_sweep {
        report::sweep(&mut out, &sums, a.json).map_err(w)?;
    } else {
        for (s, e) in &na {
            for latency in [true, false] {
                let mut c = Case {
                    transport: TransportName::Mq,
                    wait: WaitName::Kernel,
                    latency,
                    size: *s,
                    producers: 1,
                    consumers: 1,
                    spin_us: None,
                    pace: None,
                    mq_depth: 0,
                };
                let mut sm = summarize(c.clone(), &[]);
                sm.na = Some(e.clone());
                sums.push(sm);
                if !latency {
                    c.producers = 2;
                    c.consumers = 2;
                    let mut sm = summarize(c, &[]);
                    sm.na = Some(e.clone());
                    sums.push(sm);
                }
            }
        }
        if a.json {
            report::json(&mut out, &sums).map_err(w)?;
        } else {
            report::table(&mut out, &sums).map_err(w)?;
        }
    }
    out.flush().map_err(w)?;
    if let Some(p) = &a.plot {
        report::plot(p, &sums, &machine).map_err(|e| format!("plot {}: {e}", p.display()))?;
        eprintln!("plot written to {}", p.display());
    }
    eprintln!(
        "done in {:.0} s; {machine}",
        started.elapsed().as_secs_f64(),
    );
    Ok(())
}

/// `nproc`, CPU model and date, for labelling results.
pub(crate) fn machine_label() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown CPU", str::trim)
        .to_owned();
    // The `hypervisor` CPU flag: running under virtualisation.
    let vm = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .is_some_and(|l| l.split_whitespace().any(|f| f == "hypervisor"));
    // Not available_parallelism: this process may be pinned to one CPU.
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let kind = if vm { "VM" } else { "machine" };
    format!("{n}-core {kind} (nproc {n}), {model}, {date}")
}

fn guarded<F: FnOnce() -> Result<(), String> + std::panic::UnwindSafe>(what: &str, f: F) -> u8 {
    std::panic::set_hook(Box::new(|_| {}));
    match std::panic::catch_unwind(f) {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            eprintln!("shmq {what}: error: {e}");
            1
        }
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "unknown".into());
            eprintln!("shmq {what}: internal error: {msg}");
            1
        }
    }
}

/// `shmq bench`: returns the exit code.
pub fn run(a: BenchArgs) -> u8 {
    guarded("bench", move || run_inner(a))
}

/// The hidden `shmq bench-peer` process.
pub fn peer(a: PeerArgs) -> u8 {
    guarded("bench-peer", move || peer::run_peer(&a))
}
