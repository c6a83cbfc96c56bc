//! Single-producer single-consumer ring of variable-length byte messages.
//!
//! One [`Producer`] and one [`Consumer`] per ring, in one process
//! ([`channel`]) or two (named segments: [`Producer::create`],
//! [`Consumer::open`], …). Messages are written and read in place through
//! grants ([`WriteGrant`], [`ReadGrant`]); [`Producer::send`] and
//! [`Consumer::recv_into`] copy for convenience.
//!
//! ```
//! let (mut tx, mut rx) = shmq::spsc::channel(&shmq::Options::new()).unwrap();
//! let mut grant = tx.try_reserve(5).unwrap();
//! grant.copy_from_slice(b"hello");
//! grant.commit(5);
//! assert_eq!(&*rx.try_recv().unwrap(), b"hello");
//! ```
//!
//! # Batches
//! [`Producer::batch`] returns a guard under which commits are not published
//! until the guard drops (or [`WriteBatch::publish`]): many records, one
//! Release store, at most one wake. [`Consumer::batch`] likewise frees every
//! message read under it with one store when it drops.

use std::ops::{Deref, DerefMut};

use crate::endpoint::{self, Endpoint, Peer, Role, Side};
use crate::error::{Error, Kind, OpenError};
use crate::header::TypeInfo;
use crate::notify::{self, Wait};
use crate::options::Options;
use crate::region::Mem;
use crate::ring::spsc::{ConsumerRing, ProducerRing, Record, Reservation};

const PRODUCER_SLOT: usize = 0;
const CONSUMER_SLOT: usize = 1;

/// Creates an in-process ring on the heap (for threads, tests and tools).
///
/// # Errors
/// [`OpenError::InvalidOptions`] if the capacity is out of range.
///
/// # Examples
/// ```
/// let (mut tx, mut rx) = shmq::spsc::channel(&shmq::Options::new().capacity(4096)).unwrap();
/// tx.send(b"ping").unwrap();
/// let mut buf = [0u8; 16];
/// let n = rx.recv_into(&mut buf).unwrap();
/// assert_eq!(&buf[..n], b"ping");
/// ```
pub fn channel(opts: &Options) -> Result<(Producer, Consumer), OpenError> {
    endpoint::heap_pair(opts, TypeInfo::default())
}

/// The writing end of an SPSC ring. `Send`, not `Sync`.
pub struct Producer {
    ep: Endpoint<ProducerRing>,
}

/// The reading end of an SPSC ring. `Send`, not `Sync`.
pub struct Consumer {
    ep: Endpoint<ConsumerRing>,
}

endpoint::endpoint_api!(
    Producer,
    ProducerRing,
    "shmq::spsc::channel(&shmq::Options::new())",
    "tx"
);
endpoint::endpoint_api!(
    Consumer,
    ConsumerRing,
    "shmq::spsc::channel(&shmq::Options::new())",
    "rx"
);

/// The methods both SPSC endpoints have.
macro_rules! spsc_common {
    ($ty:ident, $peer:expr) => {
        impl $ty {
            /// Ring size in bytes.
            pub fn capacity(&self) -> usize {
                self.ep.at.mem.geometry().capacity as usize
            }

            /// Largest message this ring accepts: `capacity / 2 - 8`, and at
            /// most `u32::MAX` bytes (a record header's length field).
            pub fn max_message_len(&self) -> usize {
                crate::ring::spsc::max_message_len(self.ep.at.mem.geometry().capacity)
            }

            /// Whether the peer is attached and (for segments) its process
            /// alive. Costs a syscall on segments.
            pub fn peer_alive(&self) -> bool {
                self.ep.peer($peer, true) == Peer::Attached
            }
        }
    };
}
spsc_common!(Producer, CONSUMER_SLOT);
spsc_common!(Consumer, PRODUCER_SLOT);

/// The reserving and sending methods of [`Producer`] and [`WriteBatch`]:
/// `$batch` says whether a commit waits for the batch to publish it.
macro_rules! sending {
    ($batch:literal, |$s:ident| $p:expr) => {
        notify::waiting_variants! {
            /// Reserves `len` bytes for a message, waiting while the ring is
            /// full. The grant derefs to the reserved bytes; commit it to
            /// publish them.
            ///
            /// ```
            /// let (mut tx, mut rx) = shmq::spsc::channel(&shmq::Options::new())?;
            /// let mut g = tx.reserve(5)?;
            /// g.copy_from_slice(b"hello");
            /// g.commit(5);
            /// assert_eq!(&*rx.recv()?, b"hello");
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            ///
            /// # Errors
            /// `TooLarge`, `Disconnected` (the consumer detached), `PeerDied`
            /// (its process died while we waited), `Corrupted`.
            fn reserve / try_reserve / reserve_timeout (len: usize) -> Result<WriteGrant<'_>, Error>,
            |$s, w| $p.reserve_with(len, w, $batch)
        }

        notify::waiting_variants! {
            /// Copies `msg` into the ring as one message, waiting for room.
            ///
            /// ```
            /// let (mut tx, mut rx) = shmq::spsc::channel(&shmq::Options::new())?;
            /// tx.send(b"ping")?;
            /// assert_eq!(&*rx.recv()?, b"ping");
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            ///
            /// # Errors
            /// As [`reserve`](Self::reserve); on error nothing was sent.
            fn send / try_send / send_timeout (msg: &[u8]) -> Result<(), Error>,
            |$s, w| $p.send_with(msg, w, $batch)
        }
    };
}

/// The receiving methods of [`Consumer`] and [`ReadBatch`]: `$batch` says
/// whether a release waits for the batch to free the space.
macro_rules! receiving {
    ($batch:literal, |$s:ident| $c:expr) => {
        notify::waiting_variants! {
            /// The next message, read in place, waiting for one. Dropping the
            /// grant frees its space.
            ///
            /// ```
            /// let (mut tx, mut rx) = shmq::spsc::channel(&shmq::Options::new())?;
            /// tx.send(b"ping")?;
            /// assert_eq!(&*rx.recv()?, b"ping");
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            ///
            /// # Errors
            /// `Disconnected` (the producer detached and everything it sent
            /// was received), `PeerDied` (its process died; everything it
            /// committed was received first), `Corrupted`.
            fn recv / try_recv / recv_timeout () -> Result<ReadGrant<'_>, Error>,
            |$s, w| $c.recv_with(w, $batch)
        }

        notify::waiting_variants! {
            /// Copies the next message into `buf`, waiting for one; returns
            /// its length. Never reads the ring through a reference: the
            /// receive for peers you do not trust.
            ///
            /// ```
            /// let (mut tx, mut rx) = shmq::spsc::channel(&shmq::Options::new())?;
            /// tx.send(b"ping")?;
            /// let mut buf = [0u8; 16];
            /// let n = rx.recv_into(&mut buf)?;
            /// assert_eq!(&buf[..n], b"ping");
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            ///
            /// # Errors
            /// As [`recv`](Self::recv), plus `BufferTooSmall`: the message
            /// stays queued, and the error says how big it is.
            fn recv_into / try_recv_into / recv_into_timeout (buf: &mut [u8]) -> Result<usize, Error>,
            |$s, w| $c.recv_into_with(buf, w, $batch)
        }
    };
}

/// The [`Side`] impl of an SPSC ring half: its peer is the one endpoint
/// in slot `$peer`; what it held back it publishes with one store.
macro_rules! spsc_side {
    ($ring:ident, $role:expr, $ready:ty, $arg:ty, $peer:expr, $attempt:ident) => {
        impl Side for $ring {
            const KIND: Kind = Kind::Spsc;
            const ROLE: Role = $role;
            type Ready = $ready;
            type Arg = $arg;

            fn new(mem: &Mem) -> Result<Self, Error> {
                $ring::attach(mem)
            }

            #[inline]
            fn attempt(
                ep: &mut Endpoint<Self>,
                arg: $arg,
                spinning: bool,
            ) -> Result<$ready, Error> {
                $attempt(ep, arg, spinning)
            }

            fn peers_gone(ep: &mut Endpoint<Self>) -> Option<Error> {
                match ep.peer($peer, true) {
                    Peer::Dead => Some(Error::PeerDied),
                    Peer::Detached => Some(Error::Disconnected),
                    Peer::Attached | Peer::NeverAttached => None,
                }
            }

            #[inline]
            fn publish_pending(&mut self, mem: &Mem) -> bool {
                self.publish(mem)
            }
        }
    };
}

spsc_side!(
    ProducerRing,
    Role::Producer,
    Reservation,
    usize,
    CONSUMER_SLOT,
    try_reserve
);
spsc_side!(
    ConsumerRing,
    Role::Consumer,
    Record,
    (),
    PRODUCER_SLOT,
    try_take
);

/// One reserve attempt of the producer. `spinning`: no sleeper to wake
/// cheaply, so hold out for a better moment.
#[inline]
fn try_reserve(
    ep: &mut Endpoint<ProducerRing>,
    len: usize,
    spinning: bool,
) -> Result<Reservation, Error> {
    ep.usable()?;
    if ep.peer(CONSUMER_SLOT, false) == Peer::Detached {
        return Err(Error::Disconnected);
    }
    // While spinning on a full ring, wait for an eighth of it to be free
    // (see `ProducerRing::try_reserve_slack`). Not when about to sleep:
    // there each early wake would cost a syscall.
    let slack = if spinning { ep.side.capacity() / 8 } else { 0 };
    match ep.side.try_reserve_slack(&ep.at.mem, len, slack) {
        Err(Error::Full) => {
            if ep.side.has_unpublished() {
                // A batch filled the ring: publish it, or we would wait
                // for ever for a consumer that cannot see it.
                ep.publish();
            }
            if spinning {
                // And look less often: each look pulls the consumer's
                // cursor line over while it is writing it.
                for _ in 0..64 {
                    crate::sync::spin_hint();
                }
            }
            Err(Error::Full)
        }
        Err(e) => Err(ep.note(e)),
        r => r,
    }
}

impl Producer {
    #[inline(always)]
    fn reserve_with(
        &mut self,
        len: usize,
        wait: Wait,
        batch: bool,
    ) -> Result<WriteGrant<'_>, Error> {
        // Fast path: usable, the consumer attached (the general path tells
        // a detached one from one not attached yet), then room by the
        // cached head.
        let ep = &mut self.ep;
        let quick = if ep.usable().is_ok() && ep.peer_attached(CONSUMER_SLOT) {
            ep.side.try_reserve_fast(len)
        } else {
            None
        };
        // The grant is built in one place from the reservation's fields
        // (not returned whole by the slow path), so that it stays in
        // registers when this inlines.
        let res = match quick {
            Some(res) => res,
            None => self.reserve_slow(len, wait)?,
        };
        // Every reservation is of the length asked for; saying so with the
        // caller's `len` lets a caller's constant length reach the grant
        // (whose slice length the caller's copy then need not compare).
        debug_assert_eq!(res.len, len);
        Ok(WriteGrant {
            p: self,
            res: Reservation { len, ..res },
            batch,
        })
    }

    #[inline(never)]
    fn reserve_slow(&mut self, len: usize, wait: Wait) -> Result<Reservation, Error> {
        self.ep.run(len, wait)
    }

    #[inline(always)]
    fn send_with(&mut self, msg: &[u8], wait: Wait, batch: bool) -> Result<(), Error> {
        // Fast path: the ring has room now. Usable, the consumer attached
        // (as in `reserve_with`), then one ring call that reserves, copies,
        // commits (and unless in a batch, publishes).
        let ep = &mut self.ep;
        if ep.usable().is_ok() && ep.peer_attached(CONSUMER_SLOT) {
            // Outside a batch, the ring's quick case alone: a `bool`, not a
            // `Result` the slow path's error would make live in memory.
            let written = if batch {
                match ep.side.try_write(&ep.at.mem, msg, false) {
                    Ok(()) => true,
                    Err(Error::Full) => false,
                    Err(e) => return Err(ep.note(e)),
                }
            } else {
                ep.side.try_write_now(&ep.at.mem, msg)
            };
            if written {
                ep.at.stats.messages += 1;
                ep.at.stats.bytes += msg.len() as u64;
                if !batch {
                    ep.wake_peers();
                }
                return Ok(());
            }
        }
        self.send_slow(msg, wait, batch)
    }

    #[inline(never)]
    fn send_slow(&mut self, msg: &[u8], wait: Wait, batch: bool) -> Result<(), Error> {
        let res = self.reserve_slow(msg.len(), wait)?;
        WriteGrant {
            p: self,
            res,
            batch,
        }
        .write(msg);
        Ok(())
    }

    sending!(false, |p| p);

    /// Starts a batch: messages committed through the returned guard are
    /// published together, with one store and at most one wake, when it drops.
    ///
    /// ```
    /// let (mut tx, mut rx) = shmq::spsc::channel(&shmq::Options::new()).unwrap();
    /// {
    ///     let mut batch = tx.batch();
    ///     for i in 0u8..10 {
    ///         batch.send(&[i]).unwrap();
    ///     }
    ///     assert!(rx.try_recv().is_err()); // not yet published
    /// }
    /// assert_eq!(&*rx.try_recv().unwrap(), &[0]);
    /// ```
    pub fn batch(&mut self) -> WriteBatch<'_> {
        WriteBatch { p: self }
    }

    /// Bytes in the ring as far as this producer knows (an upper bound).
    pub fn used(&self) -> usize {
        self.ep.side.used() as usize
    }
}

/// Room for one message, written in place. Deref to `[u8]` of the reserved
/// length; [`commit`](Self::commit) publishes the first `n` bytes. Dropping the
/// grant without committing writes nothing.
///
/// The bytes are in shared memory: writing them through the slice is sound
/// while the consumer keeps to the protocol (it does not look at them before
/// the commit). [`Producer::send`] copies in without forming a slice.
pub struct WriteGrant<'a> {
    p: &'a mut Producer,
    res: Reservation,
    /// Inside a [`WriteBatch`]: the commit waits for the batch to publish.
    batch: bool,
}

impl WriteGrant<'_> {
    /// Publishes the first `n` bytes as one message (unless inside a batch,
    /// which publishes when it ends).
    ///
    /// # Panics
    /// If `n` is larger than the reserved length.
    #[inline(always)]
    pub fn commit(self, n: usize) {
        // No fork check: a child that inherited this grant has its own
        // zero pages where the ring was (`fork.rs`), so its commit reaches
        // nobody; the parent's copy of the grant is the one that publishes.
        let ep = &mut self.p.ep;
        ep.at.stats.messages += 1;
        ep.at.stats.bytes += n as u64;
        if self.batch {
            ep.side.commit(&ep.at.mem, &self.res, n);
        } else {
            ep.publish_then_wake(|side, mem| side.commit_publish(mem, &self.res, n));
        }
    }

    #[inline]
    fn write(self, msg: &[u8]) {
        let ptr = self.p.ep.side.payload(&self.p.ep.at.mem, &self.res);
        // SAFETY: the reservation covers `msg.len()` bytes of the data area
        // that the consumer does not read before we publish them; `msg` is
        // our caller's memory, so the two do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), ptr, msg.len()) };
        self.commit(msg.len());
    }
}

impl Deref for WriteGrant<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        let ptr = self.p.ep.side.payload(&self.p.ep.at.mem, &self.res);
        // SAFETY: the reservation covers `len` bytes inside the data area that
        // the consumer will not read until we publish them (protocol: they
        // lie between the published tail and head + capacity).
        unsafe { std::slice::from_raw_parts(ptr, self.res.len) }
    }
}

impl DerefMut for WriteGrant<'_> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        let ptr = self.p.ep.side.payload(&self.p.ep.at.mem, &self.res);
        // SAFETY: as in `deref`; `&mut self` makes this the only view.
        unsafe { std::slice::from_raw_parts_mut(ptr, self.res.len) }
    }
}

/// A run of sends published together, with one store and at most one wake,
/// when this guard drops (or at [`publish`](Self::publish)). It borrows the
/// [`Producer`] and has the same sending methods.
///
/// Given to `mem::forget`, the batch's commits are published by the
/// producer's next send, or when it drops.
pub struct WriteBatch<'a> {
    p: &'a mut Producer,
}

impl WriteBatch<'_> {
    sending!(true, |b| b.p);

    /// Publishes what was committed so far; the batch goes on.
    pub fn publish(&mut self) {
        self.p.ep.publish();
    }
}

impl Drop for WriteBatch<'_> {
    fn drop(&mut self) {
        self.p.ep.publish();
    }
}

/// One receive attempt of the consumer.
#[inline]
fn try_take(ep: &mut Endpoint<ConsumerRing>, (): (), _spinning: bool) -> Result<Record, Error> {
    ep.usable()?;
    match ep.side.try_peek(&ep.at.mem) {
        Err(Error::Empty) => {
            // Batch-released space the producer may be waiting for.
            ep.publish();
            if ep.peer(PRODUCER_SLOT, false) != Peer::Detached {
                return Err(Error::Empty);
            }
            // The detach came after its last publish: look once more.
            match ep.side.try_peek(&ep.at.mem) {
                Err(Error::Empty) => Err(Error::Disconnected),
                Err(e) => Err(ep.note(e)),
                r => r,
            }
        }
        Err(e) => Err(ep.note(e)),
        r => r,
    }
}

impl Consumer {
    #[inline(always)]
    fn recv_with(&mut self, wait: Wait, batch: bool) -> Result<ReadGrant<'_>, Error> {
        // Fast path: the checks of `try_take`, then a valid record at the
        // head.
        let ep = &mut self.ep;
        let quick = if ep.usable().is_ok() {
            ep.side.try_peek_fast(&ep.at.mem)
        } else {
            None
        };
        // Built in one place: see `Producer::reserve_with`.
        let rec = match quick {
            Some(rec) => rec,
            None => self.recv_slow(wait)?,
        };
        Ok(ReadGrant {
            c: self,
            rec,
            batch,
        })
    }

    #[inline(never)]
    fn recv_slow(&mut self, wait: Wait) -> Result<Record, Error> {
        self.ep.run((), wait)
    }

    #[inline(always)]
    fn recv_into_with(&mut self, buf: &mut [u8], wait: Wait, batch: bool) -> Result<usize, Error> {
        // Fast path: a message is there. The checks of `try_recv`, then one
        // ring call that reads, copies and consumes it (a record longer
        // than `buf` stays queued: `BufferTooSmall`).
        let ep = &mut self.ep;
        if ep.usable().is_ok() {
            // An `Option`, not a `Result`: see `send_with`.
            if let Some(n) = ep.side.try_read_into_fast(&ep.at.mem, buf) {
                ep.at.stats.messages += 1;
                ep.at.stats.bytes += n as u64;
                if !batch {
                    ep.side.publish_now(&ep.at.mem);
                    ep.wake_peers();
                }
                return Ok(n);
            }
        }
        self.recv_into_slow(buf, wait, batch)
    }

    #[inline(never)]
    fn recv_into_slow(&mut self, buf: &mut [u8], wait: Wait, batch: bool) -> Result<usize, Error> {
        let rec = self.recv_slow(wait)?;
        ReadGrant {
            c: self,
            rec,
            batch,
        }
        .copy_to(buf)
    }

    receiving!(false, |c| c);

    /// Starts a batch: messages released under the returned guard are freed
    /// for the producer with one store when it drops.
    ///
    /// ```
    /// let (mut tx, mut rx) = shmq::spsc::channel(&shmq::Options::new()).unwrap();
    /// for i in 0u8..4 { tx.send(&[i]).unwrap(); }
    /// let mut batch = rx.batch();
    /// let mut seen = Vec::new();
    /// while let Ok(m) = batch.try_recv() { seen.push(m[0]); }
    /// assert_eq!(seen, [0, 1, 2, 3]);
    /// ```
    pub fn batch(&mut self) -> ReadBatch<'_> {
        ReadBatch { c: self }
    }

    #[inline]
    fn release(&mut self, rec: &Record, batch: bool) {
        let ep = &mut self.ep;
        ep.side.release(rec);
        ep.at.stats.messages += 1;
        ep.at.stats.bytes += rec.len as u64;
        if !batch {
            ep.side.publish_now(&ep.at.mem);
            ep.wake_peers();
        }
    }

    /// Whether the ring looked empty when last checked (no syscall, no
    /// refresh).
    pub fn looks_empty(&self) -> bool {
        self.ep.side.looks_empty()
    }
}

/// One received message, read in place. Derefs to its bytes; dropping the
/// grant frees its space (unless inside a batch, which frees on drop).
///
/// **Trusted peers only.** The bytes live in shared memory, and the slice
/// is only sound while the producer keeps to the protocol: one that
/// rewrites a message while you hold its slice is undefined behaviour in
/// your process. With a peer you do not trust, copy messages out with
/// [`Consumer::recv_into`], which never reads the ring through a reference.
pub struct ReadGrant<'a> {
    c: &'a mut Consumer,
    rec: Record,
    /// Inside a [`ReadBatch`]: the release waits for the batch to free it.
    batch: bool,
}

impl ReadGrant<'_> {
    #[inline]
    fn copy_to(self, buf: &mut [u8]) -> Result<usize, Error> {
        let n = self.rec.len;
        if n > buf.len() {
            let e = Error::BufferTooSmall {
                needed: n,
                capacity: buf.len(),
            };
            // The message stays queued: not released.
            std::mem::forget(self);
            return Err(e);
        }
        let src = self.c.ep.side.payload(&self.c.ep.at.mem, &self.rec);
        // SAFETY: the record was validated to lie inside the data area, its
        // payload 8-aligned and padded to a multiple of 8 bytes (the ring
        // invariant), so the rounded-up length is readable.
        unsafe { crate::sync::copy_out(src, &mut buf[..n]) };
        Ok(n)
    }
}

impl Deref for ReadGrant<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        let ptr = self.c.ep.side.payload(&self.c.ep.at.mem, &self.rec);
        // SAFETY: the record was validated to lie inside the data area and
        // below the published tail; the producer does not write it until we
        // release it (protocol). A hostile peer could, which the type's docs
        // state (trusted peers only); the bytes are plain `u8`.
        unsafe { std::slice::from_raw_parts(ptr, self.rec.len) }
    }
}

impl Drop for ReadGrant<'_> {
    #[inline]
    fn drop(&mut self) {
        // No fork check: as in `WriteGrant::commit`, a forked child's
        // release lands in its own zero pages.
        let rec = self.rec;
        self.c.release(&rec, self.batch);
    }
}

/// A run of receives whose space is freed for the producer with one store
/// when this guard drops (or at [`release`](Self::release)). It borrows the
/// [`Consumer`] and has the same receiving methods. A receive that finds
/// the ring empty frees what the batch took so far too (the producer may be
/// waiting for that space); see [`ready`](Self::ready) to take only what
/// is there.
///
/// Given to `mem::forget`, the batch's space is freed by the consumer's next
/// receive, or when it drops.
pub struct ReadBatch<'a> {
    c: &'a mut Consumer,
}

impl ReadBatch<'_> {
    receiving!(true, |b| b.c);

    /// Whether a message is there to receive now: one look at the ring
    /// (no syscall), which frees nothing, unlike a receive that finds the
    /// ring empty. While it says `true`, [`try_recv`](Self::try_recv)
    /// returns that message, so a batch can take what is there, pass it on
    /// (say, `write(2)` it) and only then free its space: a receiver killed
    /// before the release leaves the messages to its successor.
    ///
    /// ```
    /// let (mut tx, mut rx) = shmq::spsc::channel(&shmq::Options::new())?;
    /// tx.send(b"a")?;
    /// tx.send(b"b")?;
    /// let mut out = Vec::new();
    /// let mut batch = rx.batch();
    /// out.extend_from_slice(&batch.recv()?);
    /// while batch.ready() {
    ///     out.extend_from_slice(&batch.try_recv()?);
    /// }
    /// // ... hand `out` on, then free the space:
    /// drop(batch);
    /// assert_eq!(out, b"ab");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ready(&mut self) -> bool {
        let ep = &mut self.c.ep;
        // A corruption is left for the receive to report.
        ep.usable().is_ok() && !matches!(ep.side.try_peek(&ep.at.mem), Err(Error::Empty))
    }

    /// Frees what was released so far; the batch goes on.
    pub fn release(&mut self) {
        self.c.ep.publish();
    }
}

impl Drop for ReadBatch<'_> {
    fn drop(&mut self) {
        self.c.ep.publish();
    }
}
