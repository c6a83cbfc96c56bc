//! What to measure: the transports, how receivers wait, the two patterns,
//! and one [`Case`].

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shmq::{Kind, Options, WaitStrategy};

/// A transport under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TransportName {
    /// Raw cache-line hand-off, no ring (ping-pong only): [`Floor`](crate::Floor).
    Floor,
    /// The same hand-off with its messages laid out as a ring's records
    /// (ping-pong only): [`FloorShape::Ring`](crate::FloorShape::Ring).
    FloorRing,
    /// The bare C probe's one-way shared-memory stream, ported (throughput
    /// only): the ceiling the SPSC ring is held to, [`Limit`](crate::Limit).
    Limit,
    /// The same stream with one cursor store per [`LIMIT_BATCH`] records on
    /// each side (`spsc_limit.c` with a batch of 32; fewer for messages so
    /// large that 32 would fill more than an eighth of the ring: one at 64
    /// KiB): the machine's ceiling for a one-way stream, the bar of issue
    /// 15's 1 KiB goal (throughput only).
    LimitBatch,
    /// shmq SPSC ring.
    ShmqSpsc,
    /// shmq MPMC ring.
    ShmqMpmc,
    /// Length-prefixed messages over pipes.
    Pipe,
    /// POSIX message queue.
    Mq,
    /// Unix-domain `SOCK_SEQPACKET` socket.
    Uds,
}

impl TransportName {
    /// Every transport, in table order.
    pub const ALL: [TransportName; 9] = [
        TransportName::Floor,
        TransportName::FloorRing,
        TransportName::Limit,
        TransportName::LimitBatch,
        TransportName::ShmqSpsc,
        TransportName::ShmqMpmc,
        TransportName::Pipe,
        TransportName::Mq,
        TransportName::Uds,
    ];

    /// The name used on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportName::Floor => "floor",
            TransportName::FloorRing => "floor-ring",
            TransportName::Limit => "limit",
            TransportName::LimitBatch => "limit-32",
            TransportName::ShmqSpsc => "shmq-spsc",
            TransportName::ShmqMpmc => "shmq-mpmc",
            TransportName::Pipe => "pipe",
            TransportName::Mq => "mq",
            TransportName::Uds => "uds",
        }
    }

    /// A bare stream, [`Limit`](crate::Limit) (it only streams).
    ///
    /// ```
    /// use shmq_bench::TransportName;
    /// assert!(TransportName::LimitBatch.is_limit());
    /// assert!(!TransportName::ShmqSpsc.is_limit());
    /// ```
    pub fn is_limit(self) -> bool {
        matches!(self, TransportName::Limit | TransportName::LimitBatch)
    }

    /// A shmq ring (it has wake statistics and a wait strategy).
    pub fn is_shmq(self) -> bool {
        matches!(self, TransportName::ShmqSpsc | TransportName::ShmqMpmc)
    }

    /// Many producer and many consumer processes can share one channel.
    pub fn many_to_many(self) -> bool {
        matches!(self, TransportName::ShmqMpmc | TransportName::Mq)
    }
}

/// Parses one of the names `name` gives the values in `all`; the error
/// lists them all.
pub(crate) fn parse_name<T: Copy>(
    s: &str,
    all: &[T],
    name: fn(T) -> &'static str,
) -> Result<T, String> {
    all.iter().copied().find(|&t| name(t) == s).ok_or_else(|| {
        let names: Vec<&str> = all.iter().map(|&t| name(t)).collect();
        format!("unknown {s:?}; one of {}", names.join(", "))
    })
}

impl FromStr for TransportName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_name(s, &Self::ALL, Self::as_str)
    }
}

impl fmt::Display for TransportName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the receiving side waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WaitName {
    /// Busy-wait ([`WaitStrategy::Spin`]).
    Spin,
    /// Spin window, then futex ([`WaitStrategy::Futex`]).
    Futex,
    /// Spin window, then POSIX semaphore ([`WaitStrategy::Semaphore`]).
    Sem,
    /// The kernel transport's own blocking.
    Kernel,
    /// The consumer polls `try_recv_into`, spinning on `Empty`; the
    /// producer waits as with `Futex`.
    Poll,
    /// As `Poll`, with the loop paced by [`shmq::Pacer`] (what the `try_`
    /// variants' docs advise a polling loop).
    Paced,
    /// The consumer takes turns at receiving as `Futex`, `Paced` and `Poll`
    /// do, a stretch of messages each, in one stream
    /// ([`Alternating`](crate::Alternating)): their rates compared on the
    /// same placement. Not a row of its own.
    Alternate,
}

impl WaitName {
    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            WaitName::Spin => "spin",
            WaitName::Futex => "futex",
            WaitName::Sem => "sem",
            WaitName::Kernel => "kernel",
            WaitName::Poll => "poll",
            WaitName::Paced => "paced",
            WaitName::Alternate => "alternate",
        }
    }

    /// The ring's wait strategy.
    pub fn strategy(self) -> WaitStrategy {
        match self {
            WaitName::Spin => WaitStrategy::Spin,
            WaitName::Sem => WaitStrategy::Semaphore,
            WaitName::Futex
            | WaitName::Kernel
            | WaitName::Poll
            | WaitName::Paced
            | WaitName::Alternate => WaitStrategy::Futex,
        }
    }
}

/// A measurement pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pattern {
    /// Ping-pong round trips.
    Latency,
    /// One-way stream.
    Throughput,
}

impl Pattern {
    /// Both patterns.
    pub const ALL: [Pattern; 2] = [Pattern::Latency, Pattern::Throughput];

    /// The name used on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Pattern::Latency => "latency",
            Pattern::Throughput => "throughput",
        }
    }
}

impl FromStr for Pattern {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_name(s, &Self::ALL, Self::as_str)
    }
}

/// The bytes of every ring the harness lays out: the shmq SPSC ring, the
/// `limit` streams' ring and each direction of the `floor-ring`.
///
/// 4 MiB, not the library's default 1 MiB: on this machine (1 MiB of L2
/// per core) a 64-byte stream through a 1 MiB ring ran at half the rate of
/// the same stream through 4 MiB, placement for placement (ARCHITECTURE.md,
/// "Ring size in the harness"), and what the bench compares is rings at
/// their best against the kernel's.
pub const RING_BYTES: usize = 4 << 20;

/// Default kernel buffer for pipes (`F_SETPIPE_SZ`) and sockets
/// (`SO_SNDBUF`): 1 MiB, the most a pipe may have without
/// `CAP_SYS_RESOURCE` (`/proc/sys/fs/pipe-max-size`). A kernel transport
/// pays a system call per message; its buffer only bounds how far the
/// sender runs ahead.
pub const KERNEL_BUFFER: usize = 1 << 20;

/// What every process of a measurement must agree on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    /// The transport.
    pub transport: TransportName,
    /// How receivers wait.
    pub wait: WaitName,
    /// Message size in bytes.
    pub size: usize,
    /// shmq spin window in µs; `None` = the library default.
    pub spin_us: Option<u64>,
    /// POSIX mq: messages a queue holds.
    pub mq_depth: usize,
    /// Pipe (`F_SETPIPE_SZ`) and socket (`SO_SNDBUF`) buffer in bytes;
    /// 0 keeps the kernel defaults.
    pub kernel_buffer: usize,
    /// Stream producers send in batches of this many
    /// ([`Transport::send_batch`](crate::Transport::send_batch)); 1: one
    /// message at a time.
    #[serde(default = "one")]
    pub batch: usize,
}

fn one() -> usize {
    1
}

/// Records per cursor store of the [`TransportName::LimitBatch`] stream.
pub const LIMIT_BATCH: usize = 32;

impl Params {
    /// `size`-byte messages over `transport`, receivers waiting as `wait`;
    /// the library's spin window, mq depth 10, [`KERNEL_BUFFER`].
    pub fn new(transport: TransportName, wait: WaitName, size: usize) -> Params {
        Params {
            transport,
            wait,
            size,
            spin_us: None,
            mq_depth: 10,
            kernel_buffer: KERNEL_BUFFER,
            batch: 1,
        }
    }

    /// The batch the stream's two sides send and receive in: `batch` (at
    /// least 1), or for the batched limit, whatever `batch` says,
    /// [`LIMIT_BATCH`] records as long as they fill at most an eighth of its
    /// ring ([`Limit::batch`](crate::Limit::batch)).
    ///
    /// ```
    /// use shmq_bench::{LIMIT_BATCH, Params, TransportName, WaitName};
    /// let p = Params::new(TransportName::LimitBatch, WaitName::Spin, 64);
    /// assert_eq!(p.stream_batch(), LIMIT_BATCH);
    /// let q = Params { batch: 8, ..Params::new(TransportName::ShmqSpsc, WaitName::Spin, 64) };
    /// assert_eq!(q.stream_batch(), 8);
    /// ```
    pub fn stream_batch(&self) -> usize {
        if self.transport == TransportName::LimitBatch {
            crate::Limit::batch(self.size)
        } else {
            self.batch.max(1)
        }
    }

    /// The shmq options every endpoint of the measurement uses:
    /// The options `ring_options` gives its ring kind, with the spin window if set.
    pub fn shmq_options(&self) -> Options {
        let kind = if self.transport == TransportName::ShmqMpmc {
            Kind::Mpmc
        } else {
            Kind::Spsc
        };
        let o = ring_options(kind, self.wait, self.size);
        match self.spin_us {
            Some(s) => o.spin(Duration::from_micros(s)),
            None => o,
        }
    }
}

/// The one place the harness sizes a shmq ring (the measurements and the
/// hot paths): an SPSC ring of [`RING_BYTES`] (the library's default ring
/// for the `alternate` case: its stretches of eight capacities through
/// 4 MiB would leave few turns per measurement), or MPMC slots that fit
/// one `size`-byte message with up to 4 producers and 4 consumers (each
/// ring kind gets only its own options); receivers wait as `wait` does.
pub(crate) fn ring_options(kind: Kind, wait: WaitName, size: usize) -> Options {
    // The spin rows' endpoints never sleep: their segment skips the check
    // for sleepers (`Options::spin_only`), as a spinning user's would.
    let o = Options::new()
        .wait(wait.strategy())
        .spin_only(wait == WaitName::Spin);
    match kind {
        Kind::Spsc if wait == WaitName::Alternate => o,
        Kind::Spsc => o.capacity(RING_BYTES),
        Kind::Mpmc => o
            .slot_size(slot_size(size))
            .slots(mpmc_slots(size))
            .max_producers(4)
            .max_consumers(4),
    }
}

/// An MPMC slot for `size`-byte messages: the 16-byte slot header plus the
/// payload, rounded up to 8.
fn slot_size(size: usize) -> usize {
    (size + 16).div_ceil(8) * 8
}

/// MPMC slot count: a power of two up to 1024, at most about 4 MiB of slots.
fn mpmc_slots(size: usize) -> usize {
    let fit = (4usize << 20) / slot_size(size);
    let p = if fit.is_power_of_two() {
        fit
    } else {
        fit.next_power_of_two() / 2
    };
    p.clamp(2, 1024)
}

/// One thing to measure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Case {
    /// Transport, wait, size and the other shared settings.
    pub params: Params,
    /// Ping-pong or stream.
    pub pattern: Pattern,
    /// Producer processes (throughput).
    pub producers: usize,
    /// Consumer processes (throughput).
    pub consumers: usize,
    /// Latency only: pause this long before each ping (the peer idles).
    pub pace: Option<Duration>,
}

impl Case {
    /// Ping-pong round trips.
    pub fn latency(params: Params) -> Case {
        Case {
            params,
            pattern: Pattern::Latency,
            producers: 1,
            consumers: 1,
            pace: None,
        }
    }

    /// A one-way stream from `producers` to `consumers` processes; with one
    /// of each, this process consumes.
    pub fn throughput(params: Params, producers: usize, consumers: usize) -> Case {
        Case {
            params,
            pattern: Pattern::Throughput,
            producers,
            consumers,
            pace: None,
        }
    }

    /// More than one producer or consumer.
    pub fn is_multi(&self) -> bool {
        self.producers > 1 || self.consumers > 1
    }

    /// `shmq-spsc/futex 2P2C`: transport, wait (shmq), and the process
    /// counts when not 1x1.
    pub fn label(&self) -> String {
        let p = &self.params;
        let mut s = p.transport.as_str().to_owned();
        if p.transport.is_shmq() {
            s += "/";
            s += p.wait.as_str();
        }
        if self.is_multi() {
            s += &format!(" {}P{}C", self.producers, self.consumers);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_errors_list_the_choices() {
        for t in TransportName::ALL {
            assert_eq!(t.as_str().parse::<TransportName>(), Ok(t));
        }
        let e = "tcp".parse::<TransportName>().unwrap_err();
        assert!(e.contains("shmq-spsc") && e.contains("uds"), "{e}");
        assert_eq!("latency".parse::<Pattern>(), Ok(Pattern::Latency));
    }

    #[test]
    fn mpmc_slots_fit_four_mib() {
        assert_eq!(mpmc_slots(64), 1024);
        assert_eq!(mpmc_slots(65536), 32);
        assert_eq!(slot_size(65536) * mpmc_slots(65536), 65552 * 32);
    }
}
