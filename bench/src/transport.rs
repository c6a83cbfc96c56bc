//! The one interface every measured transport offers, and its shmq
//! implementations.
//!
//! | transport | type | messages |
//! |---|---|---|
//! | shmq SPSC | [`spsc::Producer`], [`spsc::Consumer`] | records in the ring |
//! | shmq MPMC | [`mpmc::Producer`], [`mpmc::Consumer`] | one slot each |
//! | pipe | [`PipeSender`](crate::PipeSender), [`PipeReceiver`](crate::PipeReceiver) | 4-byte length prefix + payload |
//! | POSIX message queue | [`MessageQueue`](crate::MessageQueue) | one kernel message each |
//! | Unix-domain socket | [`SeqPacket`](crate::SeqPacket) | one `SOCK_SEQPACKET` datagram each |
//! | floor | [`Floor`](crate::Floor) | one cache-line hand-off, no ring |
//! | floor-ring | [`Floor`](crate::Floor) ([`FloorShape::Ring`](crate::FloorShape::Ring)) | the same, laid out as a ring's records |
//! | limit | [`Limit`](crate::Limit) | records in a bare byte ring, no checks |
//!
//! A [`Duplex`] joins a sending and a receiving half into one endpoint for
//! request/response patterns (two rings, two pipes, two queues).
//!
//! Errors are [`io::Error`]s; a peer that closed or died shows up as
//! [`io::ErrorKind::UnexpectedEof`] (see [`to_io`]).

use std::io;

use serde::{Deserialize, Serialize};
use shmq::{Error, Stats, mpmc, spsc};

use crate::sys::mono_ns;

/// A message-oriented channel endpoint: what every benchmarked transport
/// offers.
///
/// Both calls block. A half that only sends (or only receives) returns
/// [`io::ErrorKind::Unsupported`] from the other call.
///
/// ```
/// use shmq_bench::{Transport, pipe};
/// let (mut tx, mut rx) = pipe()?;
/// tx.send(b"ping")?;
/// let mut buf = [0u8; 16];
/// let n = rx.recv(&mut buf)?;
/// assert_eq!(&buf[..n], b"ping");
/// # Ok::<(), std::io::Error>(())
/// ```
pub trait Transport {
    /// Sends `msg` as one message, waiting for room.
    ///
    /// # Errors
    /// The transport's error; [`io::ErrorKind::UnexpectedEof`] or
    /// [`io::ErrorKind::BrokenPipe`] when the peer is gone.
    fn send(&mut self, msg: &[u8]) -> io::Result<()>;

    /// Sends `msg` `n` times, as one batch where the transport has them
    /// (shmq SPSC: one [`WriteBatch`](shmq::spsc::WriteBatch), published
    /// once; `limit`: one cursor store); else `n` sends.
    ///
    /// # Errors
    /// As [`send`](Self::send).
    fn send_batch(&mut self, msg: &[u8], n: usize) -> io::Result<()> {
        for _ in 0..n {
            self.send(msg)?;
        }
        Ok(())
    }

    /// Receives the next message into `buf`, waiting for one; returns its
    /// length.
    ///
    /// # Errors
    /// The transport's error; [`io::ErrorKind::UnexpectedEof`] when the peer
    /// closed (or died) and nothing is left; [`io::ErrorKind::InvalidInput`]
    /// if `buf` is too small for the message.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize>;

    /// Receives up to `max` messages, waiting for the first only, as one
    /// batch where the transport has them (shmq SPSC: one
    /// [`ReadBatch`](shmq::spsc::ReadBatch), freed with one store; `limit`:
    /// one cursor store); else one `recv`. Each message lands in `buf` in
    /// turn and is passed to `each`, which returns `false` to end the batch
    /// there. Returns how many were received.
    ///
    /// ```
    /// use shmq_bench::Transport;
    /// let (mut tx, mut rx) = shmq::spsc::channel(&shmq::Options::new()).unwrap();
    /// tx.send_batch(b"abc", 3)?;
    /// let mut buf = [0u8; 8];
    /// let mut lens = Vec::new();
    /// let n = rx.recv_batch(&mut buf, 32, &mut |m| {
    ///     lens.push(m.len());
    ///     true
    /// })?;
    /// assert_eq!((n, lens), (3, vec![3, 3, 3]));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`recv`](Self::recv), for the first message or a later one.
    fn recv_batch(
        &mut self,
        buf: &mut [u8],
        max: usize,
        each: &mut dyn FnMut(&[u8]) -> bool,
    ) -> io::Result<usize> {
        let _ = max;
        let n = self.recv(buf)?;
        each(&buf[..n]);
        Ok(1)
    }

    /// The shmq endpoint counters (wake syscalls, sleeps), summed over both
    /// halves of a [`Duplex`]; `None` for kernel transports.
    fn stats(&self) -> Option<Counters> {
        None
    }

    /// The stretches an [`Alternating`] consumer completed since the last
    /// call (it forgets them, and the one under way); empty for every
    /// other endpoint.
    fn take_stretches(&mut self) -> Vec<Stretch> {
        Vec::new()
    }
}

impl<T: Transport + ?Sized> Transport for Box<T> {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        (**self).send(msg)
    }
    fn send_batch(&mut self, msg: &[u8], n: usize) -> io::Result<()> {
        (**self).send_batch(msg, n)
    }
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (**self).recv(buf)
    }
    fn recv_batch(
        &mut self,
        buf: &mut [u8],
        max: usize,
        each: &mut dyn FnMut(&[u8]) -> bool,
    ) -> io::Result<usize> {
        (**self).recv_batch(buf, max, each)
    }
    fn stats(&self) -> Option<Counters> {
        (**self).stats()
    }
    fn take_stretches(&mut self) -> Vec<Stretch> {
        (**self).take_stretches()
    }
}

/// Converts a ring [`Error`] into an [`io::Error`] with a fitting kind:
/// `Disconnected` and `PeerDied` become [`io::ErrorKind::UnexpectedEof`],
/// `Timeout` [`io::ErrorKind::TimedOut`], `TooLarge` and `BufferTooSmall`
/// [`io::ErrorKind::InvalidInput`], `Corrupted` [`io::ErrorKind::InvalidData`].
///
/// ```
/// let e = shmq_bench::to_io(shmq::Error::PeerDied);
/// assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
/// ```
pub fn to_io(e: Error) -> io::Error {
    let kind = match e {
        Error::Disconnected | Error::PeerDied => io::ErrorKind::UnexpectedEof,
        Error::Timeout => io::ErrorKind::TimedOut,
        Error::TooLarge { .. } | Error::BufferTooSmall { .. } => io::ErrorKind::InvalidInput,
        Error::Corrupted(_) => io::ErrorKind::InvalidData,
        Error::Full | Error::Empty => io::ErrorKind::WouldBlock,
        Error::Interrupted => io::ErrorKind::Interrupted,
        // `Error` is non_exhaustive: new kinds map to Other.
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, e)
}

/// The error of a half asked to do what only the other half does.
pub(crate) fn unsupported(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!("this endpoint cannot {what}"),
    )
}

/// The shmq endpoint counters a measurement reads (a subset of
/// [`Stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Messages sent plus received.
    pub messages: u64,
    /// Wake syscalls issued (futex wakes, semaphore posts).
    pub wake_syscalls: u64,
    /// Times the endpoint went to sleep in the kernel.
    pub waits: u64,
}

impl From<Stats> for Counters {
    fn from(s: Stats) -> Counters {
        Counters {
            messages: s.messages,
            wake_syscalls: s.wake_syscalls,
            waits: s.waits,
        }
    }
}

impl std::ops::Add for Counters {
    type Output = Counters;
    fn add(self, b: Counters) -> Counters {
        Counters {
            messages: self.messages + b.messages,
            wake_syscalls: self.wake_syscalls + b.wake_syscalls,
            waits: self.waits + b.waits,
        }
    }
}

impl std::ops::Sub for Counters {
    type Output = Counters;
    /// What happened since `b`, an earlier reading of the same endpoint.
    fn sub(self, b: Counters) -> Counters {
        Counters {
            messages: self.messages - b.messages,
            wake_syscalls: self.wake_syscalls - b.wake_syscalls,
            waits: self.waits - b.waits,
        }
    }
}

/// `Transport` for a shmq producer: `send` sends, `recv` is unsupported;
/// with `batched`, `send_batch` sends under one `batch()`.
macro_rules! shmq_sender {
    ($ty:ty, $what:literal, batched) => {
        shmq_sender!($ty, $what, {
            fn send_batch(&mut self, msg: &[u8], n: usize) -> io::Result<()> {
                let mut b = self.batch();
                for _ in 0..n {
                    b.send(msg).map_err(to_io)?;
                }
                Ok(())
            }
        });
    };
    ($ty:ty, $what:literal) => {
        shmq_sender!($ty, $what, {});
    };
    ($ty:ty, $what:literal, { $($batch:tt)* }) => {
        impl Transport for $ty {
            fn send(&mut self, msg: &[u8]) -> io::Result<()> {
                <$ty>::send(self, msg).map_err(to_io)
            }
            $($batch)*
            fn recv(&mut self, _buf: &mut [u8]) -> io::Result<usize> {
                Err(unsupported(concat!("receive (it is an ", $what, ")")))
            }
            fn stats(&self) -> Option<Counters> {
                Some(<$ty>::stats(self).into())
            }
        }
    };
}

/// `Transport` for a shmq consumer: `recv` copies out (`recv_into`), `send`
/// is unsupported; with `batched`, `recv_batch` receives under one
/// `batch()`.
macro_rules! shmq_receiver {
    ($ty:ty, $what:literal, batched) => {
        shmq_receiver!($ty, $what, {
            fn recv_batch(
                &mut self,
                buf: &mut [u8],
                max: usize,
                each: &mut dyn FnMut(&[u8]) -> bool,
            ) -> io::Result<usize> {
                let mut b = self.batch();
                let n = b.recv_into(buf).map_err(to_io)?;
                let mut got = 1;
                if !each(&buf[..n]) {
                    return Ok(got);
                }
                while got < max {
                    match b.try_recv_into(buf) {
                        Ok(n) => {
                            got += 1;
                            if !each(&buf[..n]) {
                                break;
                            }
                        }
                        Err(Error::Empty) => break,
                        Err(e) => return Err(to_io(e)),
                    }
                }
                Ok(got)
            }
        });
    };
    ($ty:ty, $what:literal) => {
        shmq_receiver!($ty, $what, {});
    };
    ($ty:ty, $what:literal, { $($batch:tt)* }) => {
        impl Transport for $ty {
            fn send(&mut self, _msg: &[u8]) -> io::Result<()> {
                Err(unsupported(concat!("send (it is an ", $what, ")")))
            }
            fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.recv_into(buf).map_err(to_io)
            }
            $($batch)*
            fn stats(&self) -> Option<Counters> {
                Some(<$ty>::stats(self).into())
            }
        }
    };
}

shmq_sender!(spsc::Producer, "SPSC producer", batched);
shmq_receiver!(spsc::Consumer, "SPSC consumer", batched);
shmq_sender!(mpmc::Producer, "MPMC producer");
shmq_receiver!(mpmc::Consumer, "MPMC consumer");

/// An SPSC consumer that receives by polling: `try_recv_into` in a loop,
/// never sleeping (the `poll` and `paced` rows of `shmq bench`, beside the
/// blocking `recv_into` of the others): on `Empty` it spins one hint
/// (`poll`), or as a [`shmq::Pacer`] says (`paced`). Every 2^16 empty polls
/// it asks whether the producer still lives, so a dead one ends the wait.
pub struct Polling {
    rx: spsc::Consumer,
    pace: Option<shmq::Pacer>,
}

impl Polling {
    /// Polls `rx`, paced by a [`shmq::Pacer`] if `paced`.
    pub fn new(rx: spsc::Consumer, paced: bool) -> Polling {
        Polling {
            rx,
            pace: paced.then(shmq::Pacer::new),
        }
    }
}

impl Transport for Polling {
    fn send(&mut self, _msg: &[u8]) -> io::Result<()> {
        Err(unsupported("send (it is an SPSC consumer)"))
    }
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        poll_into(&mut self.rx, buf, self.pace.as_mut())
    }
    fn stats(&self) -> Option<Counters> {
        Some(self.rx.stats().into())
    }
}

/// `try_recv_into` until a message comes: on `Empty` one spin hint, or as
/// `pace` says; every 2^16 empty polls, whether the producer still lives.
///
/// Inlined into its callers, as `recv_into` is into theirs: a polling
/// loop a user writes sits in their own receive loop, and the turns of
/// [`Alternating`] compare ways of receiving, not call frames. Out of
/// line, this function's frame (six saved registers, the attempt's result
/// through the stack) is a sixth to a fifth of a 7-10 ns receive: a full
/// ring drained through it at 108 / 83 M msgs/s (8 / 64 B) against 136 /
/// 97 M inline, and even blocking `recv_into` called through it read
/// 0.70-0.85 of the same call inlined, turn by turn at 64 B (ARCHITECTURE.md,
/// "Polling on the Xeon VM").
#[inline(always)]
fn poll_into(
    rx: &mut spsc::Consumer,
    buf: &mut [u8],
    mut pace: Option<&mut shmq::Pacer>,
) -> io::Result<usize> {
    let mut empty: u32 = 0;
    loop {
        match rx.try_recv_into(buf) {
            Err(Error::Empty) => {
                empty = empty.wrapping_add(1);
                if empty % (1 << 16) == 0 && !rx.peer_alive() {
                    return Err(to_io(Error::PeerDied));
                }
                match &mut pace {
                    Some(p) => p.wait(),
                    None => std::hint::spin_loop(),
                }
            }
            r => {
                if let (Ok(_), Some(p)) = (&r, &mut pace) {
                    p.moved();
                }
                return r.map_err(to_io);
            }
        }
    }
}

/// How an [`Alternating`] consumer receives during one stretch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Receiving {
    /// Blocking `recv_into` (the `futex` row's consumer).
    Blocking,
    /// `try_recv_into` paced by a [`shmq::Pacer`] (the `paced` row's).
    Paced,
    /// `try_recv_into` with one spin hint per `Empty` (the `poll` row's).
    Polling,
}

impl Receiving {
    /// The turns an [`Alternating`] consumer takes, in order.
    pub const TURNS: [Receiving; 3] = [Receiving::Blocking, Receiving::Paced, Receiving::Polling];
}

/// One stretch of an [`Alternating`] consumer's stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stretch {
    /// How its messages were received.
    pub how: Receiving,
    /// `CLOCK_MONOTONIC` (ns) when it began: its first message was asked for.
    pub start_ns: u64,
    /// When it ended: its last message was received.
    pub end_ns: u64,
    /// Messages received in it.
    pub msgs: u64,
}

/// An SPSC consumer that takes turns at receiving: a stretch of messages
/// with blocking `recv_into`, one with `try_recv_into` paced by a
/// [`shmq::Pacer`], one with bare polling ([`Receiving::TURNS`]), and
/// again, all in one stream from one producer, so that the three ways of
/// receiving are compared on the same placement of a VM's CPUs, turn by
/// turn: what the `alternate` case of `shmq bench` measures
/// ([`Transport::take_stretches`] hands the stretches over).
///
/// A stretch moves eight times the ring's capacity in records (1-10 ms
/// with the 1 MiB ring the `alternate` case uses, well inside the time a
/// VM keeps a placement): a backlog one way of receiving leaves in the
/// ring is drained by the next and counts for the wrong one, and a ring's
/// worth of it moves a stretch's rate by an eighth at most.
///
/// ```
/// use shmq_bench::{Alternating, Receiving, Transport};
/// let (mut tx, rx) = shmq::spsc::channel(&shmq::Options::new()).unwrap();
/// let mut rx = Alternating::with_stretch(rx, 2);
/// let mut buf = [0u8; 8];
/// for _ in 0..7 {
///     tx.send(b"m").map_err(shmq_bench::to_io)?;
///     rx.recv(&mut buf)?;
/// }
/// let hows: Vec<Receiving> = rx.take_stretches().iter().map(|s| s.how).collect();
/// assert_eq!(hows, [Receiving::Blocking, Receiving::Paced, Receiving::Polling]);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Alternating {
    rx: spsc::Consumer,
    pace: shmq::Pacer,
    stretch: u64,
    turn: usize,
    /// Messages received in the current stretch, and when it began.
    msgs: u64,
    start_ns: u64,
    done: Vec<Stretch>,
}

impl Alternating {
    /// Takes turns on `rx` with stretches of eight times its capacity in
    /// records of `size`-byte messages (records as the limit's and the
    /// ring's: an 8-byte header, the payload rounded up to 8).
    ///
    /// ```
    /// use shmq_bench::{Alternating, Transport};
    /// let (mut tx, rx) = shmq::spsc::channel(&shmq::Options::new().capacity(1024)).unwrap();
    /// // 1 KiB ring, 64-byte messages in 72-byte records: 113 per stretch.
    /// let mut rx = Alternating::new(rx, 64);
    /// let mut buf = [0u8; 64];
    /// for _ in 0..113 {
    ///     tx.send(&buf).map_err(shmq_bench::to_io)?;
    ///     rx.recv(&mut buf)?;
    /// }
    /// assert_eq!(rx.take_stretches()[0].msgs, 113);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new(rx: spsc::Consumer, size: usize) -> Alternating {
        let stretch = 8 * rx.capacity() as u64 / crate::limit::record(size);
        Alternating::with_stretch(rx, stretch)
    }

    /// Takes turns on `rx`, `stretch` messages each (at least one).
    pub fn with_stretch(rx: spsc::Consumer, stretch: u64) -> Alternating {
        Alternating {
            rx,
            pace: shmq::Pacer::new(),
            stretch: stretch.max(1),
            turn: 0,
            msgs: 0,
            start_ns: 0,
            done: Vec::new(),
        }
    }
}

impl Transport for Alternating {
    fn send(&mut self, _msg: &[u8]) -> io::Result<()> {
        Err(unsupported("send (it is an SPSC consumer)"))
    }
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.msgs == 0 {
            self.start_ns = mono_ns();
        }
        let how = Receiving::TURNS[self.turn];
        let n = match how {
            Receiving::Blocking => self.rx.recv_into(buf).map_err(to_io)?,
            Receiving::Paced => poll_into(&mut self.rx, buf, Some(&mut self.pace))?,
            Receiving::Polling => poll_into(&mut self.rx, buf, None)?,
        };
        self.msgs += 1;
        if self.msgs == self.stretch {
            self.done.push(Stretch {
                how,
                start_ns: self.start_ns,
                end_ns: mono_ns(),
                msgs: self.msgs,
            });
            self.msgs = 0;
            self.turn = (self.turn + 1) % Receiving::TURNS.len();
        }
        Ok(n)
    }
    fn stats(&self) -> Option<Counters> {
        Some(self.rx.stats().into())
    }
    fn take_stretches(&mut self) -> Vec<Stretch> {
        // The stretch under way is dropped too: a run hands over its
        // stretches when its stream has ended, and clears them before
        // the next begins, so an unfinished one would span the gap.
        self.msgs = 0;
        std::mem::take(&mut self.done)
    }
}

/// A sending half and a receiving half used as one endpoint: `send` goes to
/// `tx`, `recv` comes from `rx`.
///
/// ```
/// use shmq_bench::{Duplex, Transport, pipe};
/// let (a_tx, b_rx) = pipe()?;
/// let (b_tx, a_rx) = pipe()?;
/// let mut a = Duplex::new(a_tx, a_rx);
/// let mut b = Duplex::new(b_tx, b_rx);
/// a.send(b"ping")?;
/// let mut buf = [0u8; 8];
/// let n = b.recv(&mut buf)?;
/// b.send(&buf[..n])?;
/// assert_eq!(a.recv(&mut buf)?, 4);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Duplex<T, R> {
    /// The sending half.
    pub tx: T,
    /// The receiving half.
    pub rx: R,
}

impl<T, R> Duplex<T, R> {
    /// Joins two halves.
    pub fn new(tx: T, rx: R) -> Self {
        Duplex { tx, rx }
    }
}

impl<T: Transport, R: Transport> Transport for Duplex<T, R> {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        self.tx.send(msg)
    }
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.rx.recv(buf)
    }
    fn stats(&self) -> Option<Counters> {
        match (self.tx.stats(), self.rx.stats()) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        }
    }
}
