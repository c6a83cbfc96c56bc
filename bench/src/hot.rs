//! One-thread hot paths, for counting instructions per message
//! (`benches/instructions.rs` with gungraun, `scripts/instructions.sh`
//! with callgrind): both endpoints of one named segment live in this
//! process, wait with [`WaitStrategy::Spin`](shmq::WaitStrategy::Spin)
//! and move [`HOT_SIZE`]-byte messages one at a time (send one, receive
//! it), so every message takes the fast path of both sides and nothing
//! sleeps. The segment is spin-only
//! ([`Options::spin_only`](shmq::Options::spin_only): no wake checks) or,
//! with [`HotSegment::Futex`], the default kind, where every publish and
//! release also checks for sleepers. Two reference paths
//! count the best in-process rings the same way: rtrb's SPSC `push` +
//! `pop` and crossbeam's `ArrayQueue` (MPMC), of the same `[u8; 64]`
//! values, on the heap (no segment, no checks, no wake-ups).

use std::hint::black_box;
use std::str::FromStr;

use shmq::typed::{Receiver, Sender};
use shmq::{Kind, OpenError, mpmc, spsc};

use crate::case::{WaitName, parse_name, ring_options};
use crate::link::unique_name;

/// Message size of the hot paths.
pub const HOT_SIZE: usize = 64;

/// A path a message can take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HotPath {
    /// SPSC `send`, then `recv_into` (copy in, copy out).
    SpscSendRecvInto,
    /// SPSC zero-copy: `reserve`, write, `commit`, then `recv` and drop the
    /// grant.
    SpscReserveCommit,
    /// MPMC `send`, then `recv` and drop the grant.
    MpmcSendRecv,
    /// Typed SPSC channel of `[u8; 64]`: `send`, then `recv`.
    TypedSendRecv,
    /// SPSC batches of [`HOT_BATCH`]: `send`s under one `batch()`, then
    /// `recv_into`s under one `batch()` (one publish and one release per
    /// batch).
    SpscBatch,
    /// Reference: an [`rtrb::RingBuffer`] of `[u8; 64]`, `push`, then
    /// `pop` (in-process, on the heap).
    RtrbPushPop,
    /// Reference: a [`crossbeam_queue::ArrayQueue`] of `[u8; 64]`, `push`,
    /// then `pop` (in-process, on the heap).
    ArrayQueuePushPop,
}

/// Messages per batch of [`HotPath::SpscBatch`].
pub const HOT_BATCH: u64 = 32;

impl HotPath {
    /// Every path.
    pub const ALL: [HotPath; 7] = [
        HotPath::SpscSendRecvInto,
        HotPath::SpscReserveCommit,
        HotPath::MpmcSendRecv,
        HotPath::TypedSendRecv,
        HotPath::SpscBatch,
        HotPath::RtrbPushPop,
        HotPath::ArrayQueuePushPop,
    ];

    /// The name used on command lines.
    pub fn as_str(self) -> &'static str {
        match self {
            HotPath::SpscSendRecvInto => "spsc-send-recv-into",
            HotPath::SpscReserveCommit => "spsc-reserve-commit",
            HotPath::MpmcSendRecv => "mpmc-send-recv",
            HotPath::TypedSendRecv => "typed-send-recv",
            HotPath::SpscBatch => "spsc-batch",
            HotPath::RtrbPushPop => "rtrb-push-pop",
            HotPath::ArrayQueuePushPop => "arrayqueue-push-pop",
        }
    }
}

impl FromStr for HotPath {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_name(s, &Self::ALL, Self::as_str)
    }
}

type Message = [u8; HOT_SIZE];

enum Ends {
    Spsc(spsc::Producer, spsc::Consumer),
    // Boxed: the largest by far (reached once per run, not per message).
    Mpmc(Box<(mpmc::Producer, mpmc::Consumer)>),
    Typed(Sender<Message>, Receiver<Message>),
    Rtrb(rtrb::Producer<Message>, rtrb::Consumer<Message>),
    ArrayQueue(crossbeam_queue::ArrayQueue<Message>),
}

/// The kind of segment a hot path's shmq endpoints share (the reference
/// paths have none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HotSegment {
    /// [`Options::spin_only`](shmq::Options::spin_only): nobody can sleep,
    /// so no wake checks (what a user whose endpoints all spin creates).
    SpinOnly,
    /// The default segment (futex wake-ups): `Spin` endpoints still check
    /// for sleepers after every publish and release.
    Futex,
}

impl HotSegment {
    /// Both kinds.
    pub const ALL: [HotSegment; 2] = [HotSegment::SpinOnly, HotSegment::Futex];

    /// The name used on command lines.
    pub fn as_str(self) -> &'static str {
        match self {
            HotSegment::SpinOnly => "spin-only",
            HotSegment::Futex => "futex",
        }
    }
}

impl FromStr for HotSegment {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_name(s, &Self::ALL, Self::as_str)
    }
}

/// Slots of the reference rings (one message is in flight at a time).
const REFERENCE_SLOTS: usize = 1024;

/// Both endpoints of a hot path; dropping them removes the segment.
pub struct Hot {
    path: HotPath,
    ends: Ends,
}

impl Hot {
    /// Creates a spin-only segment under a fresh name and attaches both
    /// endpoints (the reference paths: their ring on the heap).
    ///
    /// # Errors
    /// The segment cannot be created (`/dev/shm` full, …).
    pub fn new(path: HotPath) -> Result<Hot, OpenError> {
        Hot::in_segment(path, HotSegment::SpinOnly)
    }

    /// [`new`](Self::new), in a segment of kind `seg`.
    ///
    /// # Errors
    /// The segment cannot be created (`/dev/shm` full, …).
    pub fn in_segment(path: HotPath, seg: HotSegment) -> Result<Hot, OpenError> {
        let name = format!("hot-{}", unique_name());
        let spin_only = seg == HotSegment::SpinOnly;
        let o = ring_options(Kind::Spsc, WaitName::Spin, HOT_SIZE).spin_only(spin_only);
        let om = ring_options(Kind::Mpmc, WaitName::Spin, HOT_SIZE).spin_only(spin_only);
        let ends = match path {
            HotPath::SpscSendRecvInto | HotPath::SpscReserveCommit | HotPath::SpscBatch => {
                Ends::Spsc(
                    spsc::Producer::create(&name, &o)?,
                    spsc::Consumer::open(&name, &o)?,
                )
            }
            HotPath::MpmcSendRecv => Ends::Mpmc(Box::new((
                mpmc::Producer::create(&name, &om)?,
                mpmc::Consumer::open(&name, &om)?,
            ))),
            HotPath::TypedSendRecv => {
                Ends::Typed(Sender::create(&name, &o)?, Receiver::open(&name, &o)?)
            }
            HotPath::RtrbPushPop => {
                let (tx, rx) = rtrb::RingBuffer::new(REFERENCE_SLOTS);
                Ends::Rtrb(tx, rx)
            }
            HotPath::ArrayQueuePushPop => {
                Ends::ArrayQueue(crossbeam_queue::ArrayQueue::new(REFERENCE_SLOTS))
            }
        };
        Ok(Hot { path, ends })
    }

    /// Moves `n` messages along the path.
    ///
    /// # Panics
    /// If an operation fails (it cannot, with both ends here and one
    /// message in flight).
    pub fn run(&mut self, n: u64) {
        let msg: Message = [7; HOT_SIZE];
        let mut buf: Message = [0; HOT_SIZE];
        match (&mut self.ends, self.path) {
            (Ends::Spsc(tx, rx), HotPath::SpscReserveCommit) => {
                for _ in 0..n {
                    // The message's length is its type's, and it is hidden
                    // from the compiler before the grant, as in the
                    // references' `push(black_box(msg))`.
                    let m: &Message = black_box(&msg);
                    let mut g = tx.reserve(HOT_SIZE).expect("reserve");
                    g.copy_from_slice(m);
                    g.commit(HOT_SIZE);
                    let r = rx.recv().expect("recv");
                    black_box(&*r);
                }
            }
            (Ends::Spsc(tx, rx), HotPath::SpscBatch) => {
                // Whole batches of `HOT_BATCH`, then what is left.
                let mut left = n;
                while left > 0 {
                    let k = left.min(HOT_BATCH);
                    let mut b = tx.batch();
                    for _ in 0..k {
                        b.send(black_box(&msg)).expect("send");
                    }
                    drop(b);
                    let mut b = rx.batch();
                    for _ in 0..k {
                        black_box(b.recv_into(&mut buf).expect("recv_into"));
                    }
                    drop(b);
                    left -= k;
                }
            }
            (Ends::Spsc(tx, rx), _) => {
                for _ in 0..n {
                    tx.send(black_box(&msg)).expect("send");
                    black_box(rx.recv_into(&mut buf).expect("recv_into"));
                }
            }
            (Ends::Mpmc(ends), _) => {
                let (tx, rx) = &mut **ends;
                for _ in 0..n {
                    tx.send(black_box(&msg)).expect("send");
                    let r = rx.recv().expect("recv");
                    black_box(&*r);
                }
            }
            (Ends::Typed(tx, rx), _) => {
                for _ in 0..n {
                    tx.send(black_box(msg)).expect("send");
                    rx.recv_into(&mut buf).expect("recv_into");
                    black_box(&buf);
                }
            }
            (Ends::Rtrb(tx, rx), _) => {
                for _ in 0..n {
                    tx.push(black_box(msg)).expect("push");
                    buf = rx.pop().expect("pop");
                    black_box(&buf);
                }
            }
            (Ends::ArrayQueue(q), _) => {
                for _ in 0..n {
                    q.push(black_box(msg)).expect("push");
                    buf = q.pop().expect("pop");
                    black_box(&buf);
                }
            }
        }
        black_box(&buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_moves_messages_and_leaves_no_segment() {
        for seg in HotSegment::ALL {
            assert_eq!(seg.as_str().parse::<HotSegment>(), Ok(seg));
            for p in HotPath::ALL {
                assert_eq!(p.as_str().parse::<HotPath>(), Ok(p));
                let mut h = Hot::in_segment(p, seg).unwrap();
                h.run(3000);
                drop(h);
            }
        }
        let me = format!("hot-bench-{}-", std::process::id());
        let left: Vec<String> = shmq::list()
            .unwrap()
            .into_iter()
            .filter(|n| n.starts_with(&me))
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }
}
