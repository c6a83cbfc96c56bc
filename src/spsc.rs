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
use std::time::Duration;

use crate::endpoint::{self, Attachment, Peer, Role, Spec, TypeInfo};
use crate::error::{Error, OpenError};
use crate::layout::{Kind, WakeWord};
use crate::notify::{self, Stats, Wait, WaitCfg, Waitable};
use crate::options::Options;
use crate::ring::spsc::{ConsumerRing, ProducerRing, Record, Reservation};

const PRODUCER_SLOT: usize = 0;
const CONSUMER_SLOT: usize = 1;

fn corrupted_at_attach(name: &str, e: Error) -> OpenError {
    OpenError::Corrupted {
        name: name.to_owned(),
        detail: e.to_string(),
    }
}

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
    channel_typed(opts, TypeInfo::default())
}

pub(crate) fn channel_typed(
    opts: &Options,
    ty: TypeInfo,
) -> Result<(Producer, Consumer), OpenError> {
    let spec = Spec {
        kind: Kind::Spsc,
        ty,
    };
    let mem = endpoint::create_heap(&spec, opts)?;
    let other = mem.share().expect("heap regions can be shared");
    let p = Producer::from_mem(mem, opts, "<heap>")?;
    let c = Consumer::from_mem(other, opts, "<heap>")?;
    Ok((p, c))
}

/// The writing end of an SPSC ring. `Send`, not `Sync`.
pub struct Producer {
    at: Attachment,
    ring: ProducerRing,
    poisoned: Option<Error>,
    name: Option<String>,
}

/// The reading end of an SPSC ring. `Send`, not `Sync`.
pub struct Consumer {
    at: Attachment,
    ring: ConsumerRing,
    poisoned: Option<Error>,
    name: Option<String>,
}

static_assertions::assert_impl_all!(Producer: Send);
static_assertions::assert_not_impl_any!(Producer: Sync);
static_assertions::assert_impl_all!(Consumer: Send);
static_assertions::assert_not_impl_any!(Consumer: Sync);

macro_rules! named_ctors {
    ($ty:ident) => {
        impl $ty {
            /// The segment name (`None` for heap channels).
            pub fn name(&self) -> Option<&str> {
                self.name.as_deref()
            }

            #[allow(dead_code)]
            pub(crate) fn mem(&self) -> &crate::region::Mem {
                &self.at.mem
            }

            /// Test hook: drops this endpoint as if its process had been
            /// killed (no detach). Not for production use.
            #[doc(hidden)]
            pub fn __simulate_crash(mut self) {
                self.at.simulate_crash();
            }

            /// Counters of this endpoint.
            pub fn stats(&self) -> Stats {
                self.at.stats
            }

            /// A handle that makes this endpoint's blocking calls return
            /// [`Error::Interrupted`], from another thread or a signal
            /// handler (see [`Interrupter`](crate::Interrupter)).
            ///
            /// ```
            /// let (mut tx, mut rx) = shmq::spsc::channel(&shmq::Options::new())?;
            /// let i = rx.interrupter();
            /// i.interrupt();
            /// tx.send(b"x")?;
            /// // A message is there: it wins over the pending interrupt...
            /// assert_eq!(&*rx.recv()?, b"x");
            /// // ...which ends the next wait.
            /// assert_eq!(rx.recv().err(), Some(shmq::Error::Interrupted));
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            pub fn interrupter(&self) -> crate::Interrupter {
                self.at.interrupter()
            }

            /// Test hook: a peer scribbles `v` at byte `off` of the region.
            #[doc(hidden)]
            #[cfg(not(loom))]
            pub fn __poke(&self, off: usize, v: u64) {
                self.at.mem.poke(off, v);
            }

            /// Test hook: whether this endpoint's segment still has its name
            /// (an endpoint on an unlinked segment is orphaned). Heap: true.
            #[doc(hidden)]
            pub fn __linked(&self) -> bool {
                self.at.mem.segment().is_none_or(|s| !s.is_unlinked())
            }

            /// Test hook: byte offset of endpoint slot `i` (producers
            /// first, then consumers) in the region.
            #[doc(hidden)]
            pub fn __endpoint_offset(&self, i: usize) -> usize {
                self.at.mem.geometry().table_offset() + i * 16
            }

            /// Test hook: byte offset of the data area in the region.
            #[doc(hidden)]
            pub fn __data_offset(&self) -> usize {
                self.at.mem.geometry().data_offset()
            }

            /// Ring size in bytes.
            pub fn capacity(&self) -> usize {
                self.at.mem.geometry().capacity as usize
            }

            /// Largest message this ring accepts: `capacity / 2 - 8`, and at
            /// most `u32::MAX` bytes (a record header's length field).
            pub fn max_message_len(&self) -> usize {
                crate::ring::spsc::max_message_len(self.at.mem.geometry().capacity)
            }
        }
    };
}

named_ctors!(Producer);
named_ctors!(Consumer);

/// The reserving and sending methods of [`Producer`] and [`WriteBatch`]:
/// `$batch` says whether a commit waits for the batch to publish it.
macro_rules! sending {
    ($batch:literal, |$s:ident| $p:expr) => {
        /// Reserves `len` bytes for a message, without waiting.
        ///
        /// # Errors
        /// `Full`, `TooLarge`, `Disconnected` (the consumer detached),
        /// `Corrupted`.
        pub fn try_reserve(&mut self, len: usize) -> Result<WriteGrant<'_>, Error> {
            let $s = self;
            $p.reserve_with(len, Wait::No, $batch)
        }

        /// Reserves `len` bytes, waiting while the ring is full.
        ///
        /// # Errors
        /// `TooLarge`, `Disconnected`, `PeerDied` (the consumer's process
        /// died while we waited), `Corrupted`.
        pub fn reserve(&mut self, len: usize) -> Result<WriteGrant<'_>, Error> {
            let $s = self;
            $p.reserve_with(len, Wait::Forever, $batch)
        }

        /// Reserves `len` bytes, waiting at most `timeout`.
        ///
        /// # Errors
        /// As [`reserve`](Self::reserve), plus `Timeout`.
        pub fn reserve_timeout(
            &mut self,
            len: usize,
            timeout: Duration,
        ) -> Result<WriteGrant<'_>, Error> {
            let $s = self;
            $p.reserve_with(len, Wait::at_most(timeout), $batch)
        }

        /// Copies `msg` into the ring as one message, without waiting.
        ///
        /// # Errors
        /// As [`try_reserve`](Self::try_reserve); on error nothing was sent.
        pub fn try_send(&mut self, msg: &[u8]) -> Result<(), Error> {
            let $s = self;
            $p.send_with(msg, Wait::No, $batch)
        }

        /// Copies `msg` into the ring, waiting for room.
        ///
        /// # Errors
        /// As [`reserve`](Self::reserve); on error nothing was sent.
        pub fn send(&mut self, msg: &[u8]) -> Result<(), Error> {
            let $s = self;
            $p.send_with(msg, Wait::Forever, $batch)
        }

        /// Copies `msg` into the ring, waiting at most `timeout` for room.
        ///
        /// # Errors
        /// As [`reserve_timeout`](Self::reserve_timeout); on error nothing
        /// was sent.
        pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<(), Error> {
            let $s = self;
            $p.send_with(msg, Wait::at_most(timeout), $batch)
        }
    };
}

/// The receiving methods of [`Consumer`] and [`ReadBatch`]: `$batch` says
/// whether a release waits for the batch to free the space.
macro_rules! receiving {
    ($batch:literal, |$s:ident| $c:expr) => {
        /// The next message, without waiting.
        ///
        /// # Errors
        /// `Empty`, `Disconnected` (the producer detached and everything it
        /// sent was received), `Corrupted`.
        pub fn try_recv(&mut self) -> Result<ReadGrant<'_>, Error> {
            let $s = self;
            $c.recv_with(Wait::No, $batch)
        }

        /// The next message, waiting for one.
        ///
        /// # Errors
        /// `Disconnected`, `PeerDied` (the producer's process died;
        /// everything it committed was received first), `Corrupted`.
        pub fn recv(&mut self) -> Result<ReadGrant<'_>, Error> {
            let $s = self;
            $c.recv_with(Wait::Forever, $batch)
        }

        /// The next message, waiting at most `timeout`.
        ///
        /// # Errors
        /// As [`recv`](Self::recv), plus `Timeout`.
        pub fn recv_timeout(&mut self, timeout: Duration) -> Result<ReadGrant<'_>, Error> {
            let $s = self;
            $c.recv_with(Wait::at_most(timeout), $batch)
        }

        /// Copies the next message into `buf` without waiting; returns its
        /// length.
        ///
        /// # Errors
        /// As [`try_recv`](Self::try_recv), plus `BufferTooSmall` (the
        /// message stays queued).
        pub fn try_recv_into(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
            let $s = self;
            $c.recv_into_with(buf, Wait::No, $batch)
        }

        /// Copies the next message into `buf`, waiting for one; returns its
        /// length.
        ///
        /// # Errors
        /// As [`recv`](Self::recv), plus `BufferTooSmall` (the message stays
        /// queued).
        pub fn recv_into(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
            let $s = self;
            $c.recv_into_with(buf, Wait::Forever, $batch)
        }

        /// Copies the next message into `buf`, waiting at most `timeout`.
        ///
        /// # Errors
        /// As [`recv_timeout`](Self::recv_timeout), plus `BufferTooSmall`.
        pub fn recv_into_timeout(
            &mut self,
            buf: &mut [u8],
            timeout: Duration,
        ) -> Result<usize, Error> {
            let $s = self;
            $c.recv_into_with(buf, Wait::at_most(timeout), $batch)
        }
    };
}
endpoint::named_constructors!(Producer, Kind::Spsc);
endpoint::named_constructors!(Consumer, Kind::Spsc);

impl Producer {
    fn from_mem_typed(
        mem: crate::region::Mem,
        opts: &Options,
        name: &str,
        _ty: TypeInfo,
    ) -> Result<Producer, OpenError> {
        Self::from_mem(mem, opts, name)
    }

    pub(crate) fn from_mem(
        mem: crate::region::Mem,
        opts: &Options,
        name: &str,
    ) -> Result<Producer, OpenError> {
        let ring = ProducerRing::attach(&mem).map_err(|e| corrupted_at_attach(name, e))?;
        let at = Attachment::attach(mem, Role::Producer, opts, name)?;
        // Re-read after attaching: a predecessor may have published since.
        let ring = ProducerRing::attach(&at.mem).unwrap_or(ring);
        Ok(Producer {
            at,
            ring,
            poisoned: None,
            name: (name != "<heap>").then(|| name.to_owned()),
        })
    }

    /// Whether a consumer is attached and (for segments) its process alive.
    /// Costs a syscall on segments.
    pub fn peer_alive(&self) -> bool {
        endpoint::peer_state(&self.at.mem, CONSUMER_SLOT, true) == Peer::Attached
    }

    #[inline]
    fn check(&mut self, r: Result<Reservation, Error>) -> Result<Reservation, Error> {
        if let Err(e @ Error::Corrupted(_)) = r {
            self.poisoned = Some(e);
        }
        r
    }

    #[inline]
    fn attempt(&mut self, len: usize, slack: u64) -> Result<Reservation, Error> {
        if let Some(e) = self.poisoned {
            return Err(e);
        }
        if self.at.forked() {
            return Err(Error::Forked);
        }
        if endpoint::peer_state(&self.at.mem, CONSUMER_SLOT, false) == Peer::Detached {
            return Err(Error::Disconnected);
        }
        let r = self.ring.try_reserve_slack(&self.at.mem, len, slack);
        if matches!(r, Err(Error::Full)) && self.ring.has_unpublished() {
            // A batch filled the ring: publish it, or we would wait forever
            // for a consumer that cannot see it.
            self.publish();
        }
        self.check(r)
    }

    #[inline]
    fn publish(&mut self) {
        if self.ring.publish(&self.at.mem) {
            notify::wake(
                &self.at.mem.header().not_empty,
                self.at.wait.backend,
                &mut self.at.stats,
            );
        }
    }

    #[inline]
    fn reserve_with(
        &mut self,
        len: usize,
        wait: Wait,
        batch: bool,
    ) -> Result<WriteGrant<'_>, Error> {
        let res = notify::wait_for(&mut ReserveOp { p: self, len }, wait)?;
        Ok(WriteGrant {
            p: self,
            res,
            batch,
        })
    }

    #[inline]
    fn send_with(&mut self, msg: &[u8], wait: Wait, batch: bool) -> Result<(), Error> {
        // Fast path: the ring has room now (the checks of `attempt`, then
        // one ring call that reserves, copies and commits).
        if self.poisoned.is_none()
            && !self.at.forked()
            && endpoint::peer_state(&self.at.mem, CONSUMER_SLOT, false) != Peer::Detached
        {
            match self.ring.try_write(&self.at.mem, msg, !batch) {
                Ok(()) => {
                    self.at.stats.messages += 1;
                    self.at.stats.bytes += msg.len() as u64;
                    if !batch {
                        notify::wake(
                            &self.at.mem.header().not_empty,
                            self.at.wait.backend,
                            &mut self.at.stats,
                        );
                    }
                    return Ok(());
                }
                Err(Error::Full) => {}
                Err(e) => return self.check(Err(e)).map(drop),
            }
        }
        self.send_slow(msg, wait, batch)
    }

    #[inline(never)]
    fn send_slow(&mut self, msg: &[u8], wait: Wait, batch: bool) -> Result<(), Error> {
        self.reserve_with(msg.len(), wait, batch)?.write(msg);
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
        self.ring.used() as usize
    }
}

struct ReserveOp<'a> {
    p: &'a mut Producer,
    len: usize,
}

impl Waitable for ReserveOp<'_> {
    type Output = Reservation;
    #[inline]
    fn attempt(&mut self) -> Result<Reservation, Error> {
        self.p.attempt(self.len, 0)
    }
    fn attempt_spinning(&mut self) -> Result<Reservation, Error> {
        // While spinning on a full ring, wait for an eighth of it to be free
        // (see `ProducerRing::try_reserve_slack`). Not when about to sleep:
        // there each early wake would cost a syscall.
        let slack = self.p.ring.capacity() / 8;
        let r = self.p.attempt(self.len, slack);
        if matches!(r, Err(Error::Full)) {
            // And look less often: each look pulls the consumer's cursor
            // line over while it is writing it.
            for _ in 0..64 {
                crate::sync::spin_hint();
            }
        }
        r
    }
    fn interrupted(&mut self) -> bool {
        self.p.at.interrupt.take()
    }
    fn peer_gone(&mut self) -> Option<Error> {
        match endpoint::peer_state(&self.p.at.mem, CONSUMER_SLOT, true) {
            Peer::Dead => Some(Error::PeerDied),
            Peer::Detached => Some(Error::Disconnected),
            Peer::Attached | Peer::NeverAttached => None,
        }
    }
    fn word(&self) -> &WakeWord {
        &self.p.at.mem.header().not_full
    }
    fn cfg(&self) -> &WaitCfg {
        &self.p.at.wait
    }
    fn stats(&mut self) -> &mut Stats {
        &mut self.p.at.stats
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
    #[inline]
    pub fn commit(self, n: usize) {
        let p = self.p;
        if p.at.inert() {
            // A grant inherited through fork(): its ring belongs to the
            // parent. (Its message is the parent's to commit.)
            return;
        }
        p.at.stats.messages += 1;
        p.at.stats.bytes += n as u64;
        if self.batch {
            p.ring.commit(&p.at.mem, &self.res, n);
        } else {
            p.ring.commit_publish(&p.at.mem, &self.res, n);
            notify::wake(
                &p.at.mem.header().not_empty,
                p.at.wait.backend,
                &mut p.at.stats,
            );
        }
    }

    #[inline]
    fn write(self, msg: &[u8]) {
        let ptr = self.p.ring.payload(&self.p.at.mem, &self.res);
        // SAFETY: the reservation covers `msg.len()` bytes of the data area
        // that the consumer does not read before we publish them; `msg` is
        // our caller's memory, so the two do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), ptr, msg.len()) };
        self.commit(msg.len());
    }
}

impl Deref for WriteGrant<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        let ptr = self.p.ring.payload(&self.p.at.mem, &self.res);
        // SAFETY: the reservation covers `len` bytes inside the data area that
        // the consumer will not read until we publish them (protocol: they
        // lie between the published tail and head + capacity).
        unsafe { std::slice::from_raw_parts(ptr, self.res.len) }
    }
}

impl DerefMut for WriteGrant<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        let ptr = self.p.ring.payload(&self.p.at.mem, &self.res);
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
        self.p.publish();
    }
}

impl Drop for WriteBatch<'_> {
    fn drop(&mut self) {
        self.p.publish();
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        if self.at.inert() {
            return;
        }
        self.publish();
    }
}

impl Consumer {
    fn from_mem_typed(
        mem: crate::region::Mem,
        opts: &Options,
        name: &str,
        _ty: TypeInfo,
    ) -> Result<Consumer, OpenError> {
        Self::from_mem(mem, opts, name)
    }

    pub(crate) fn from_mem(
        mem: crate::region::Mem,
        opts: &Options,
        name: &str,
    ) -> Result<Consumer, OpenError> {
        let at = Attachment::attach(mem, Role::Consumer, opts, name)?;
        let ring = ConsumerRing::attach(&at.mem).map_err(|e| corrupted_at_attach(name, e))?;
        Ok(Consumer {
            at,
            ring,
            poisoned: None,
            name: (name != "<heap>").then(|| name.to_owned()),
        })
    }

    /// Whether a producer is attached and (for segments) its process alive.
    /// Costs a syscall on segments.
    pub fn peer_alive(&self) -> bool {
        endpoint::peer_state(&self.at.mem, PRODUCER_SLOT, true) == Peer::Attached
    }

    #[inline]
    fn attempt(&mut self) -> Result<Record, Error> {
        if let Some(e) = self.poisoned {
            return Err(e);
        }
        if self.at.forked() {
            return Err(Error::Forked);
        }
        let r = match self.ring.try_peek(&self.at.mem) {
            Err(Error::Empty) => {
                if self.ring.publish(&self.at.mem) {
                    // Batch-released space the producer may be waiting for.
                    notify::wake(
                        &self.at.mem.header().not_full,
                        self.at.wait.backend,
                        &mut self.at.stats,
                    );
                }
                if endpoint::peer_state(&self.at.mem, PRODUCER_SLOT, false) == Peer::Detached {
                    // The detach came after its last publish: look once more.
                    match self.ring.try_peek(&self.at.mem) {
                        Err(Error::Empty) => Err(Error::Disconnected),
                        r => r,
                    }
                } else {
                    Err(Error::Empty)
                }
            }
            r => r,
        };
        if let Err(e @ Error::Corrupted(_)) = r {
            self.poisoned = Some(e);
        }
        r
    }

    #[inline]
    fn recv_with(&mut self, wait: Wait, batch: bool) -> Result<ReadGrant<'_>, Error> {
        let rec = notify::wait_for(&mut RecvOp { c: self }, wait)?;
        Ok(ReadGrant {
            c: self,
            rec,
            batch,
        })
    }

    #[inline]
    fn recv_into_with(&mut self, buf: &mut [u8], wait: Wait, batch: bool) -> Result<usize, Error> {
        // Fast path: a message is there (the checks of `attempt`, then one
        // ring call that reads, copies and consumes it).
        if self.poisoned.is_none() && !self.at.forked() {
            match self.ring.try_read_into(&self.at.mem, buf) {
                Ok(n) => {
                    self.at.stats.messages += 1;
                    self.at.stats.bytes += n as u64;
                    if !batch {
                        self.free();
                    }
                    return Ok(n);
                }
                Err(Error::Empty) => {}
                Err(e) => {
                    if let Error::Corrupted(_) = e {
                        self.poisoned = Some(e);
                    }
                    return Err(e);
                }
            }
        }
        self.recv_into_slow(buf, wait, batch)
    }

    #[inline(never)]
    fn recv_into_slow(&mut self, buf: &mut [u8], wait: Wait, batch: bool) -> Result<usize, Error> {
        self.recv_with(wait, batch)?.copy_to(buf)
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
        self.ring.release(rec);
        self.at.stats.messages += 1;
        self.at.stats.bytes += rec.len as u64;
        if !batch {
            self.free();
        }
    }

    #[inline]
    fn free(&mut self) {
        if self.ring.publish(&self.at.mem) {
            notify::wake(
                &self.at.mem.header().not_full,
                self.at.wait.backend,
                &mut self.at.stats,
            );
        }
    }

    /// Whether the ring looked empty when last checked (no syscall, no
    /// refresh).
    pub fn looks_empty(&self) -> bool {
        self.ring.looks_empty()
    }
}

struct RecvOp<'a> {
    c: &'a mut Consumer,
}

impl Waitable for RecvOp<'_> {
    type Output = Record;
    #[inline]
    fn attempt(&mut self) -> Result<Record, Error> {
        self.c.attempt()
    }
    fn interrupted(&mut self) -> bool {
        self.c.at.interrupt.take()
    }
    fn peer_gone(&mut self) -> Option<Error> {
        match endpoint::peer_state(&self.c.at.mem, PRODUCER_SLOT, true) {
            Peer::Dead => Some(Error::PeerDied),
            Peer::Detached => Some(Error::Disconnected),
            Peer::Attached | Peer::NeverAttached => None,
        }
    }
    fn word(&self) -> &WakeWord {
        &self.c.at.mem.header().not_empty
    }
    fn cfg(&self) -> &WaitCfg {
        &self.c.at.wait
    }
    fn stats(&mut self) -> &mut Stats {
        &mut self.c.at.stats
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
        let src = self.c.ring.payload(&self.c.at.mem, &self.rec);
        // SAFETY: the record was validated to lie inside the data area, its
        // payload 8-aligned and padded to a multiple of 8 bytes (the ring
        // invariant), so the rounded-up length is readable.
        unsafe { crate::sync::copy_out(src, &mut buf[..n]) };
        Ok(n)
    }
}

impl Deref for ReadGrant<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        let ptr = self.c.ring.payload(&self.c.at.mem, &self.rec);
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
        if self.c.at.inert() {
            return;
        }
        let rec = self.rec;
        self.c.release(&rec, self.batch);
    }
}

/// A run of receives whose space is freed for the producer with one store
/// when this guard drops (or at [`release`](Self::release)). It borrows the
/// [`Consumer`] and has the same receiving methods.
///
/// Given to `mem::forget`, the batch's space is freed by the consumer's next
/// receive, or when it drops.
pub struct ReadBatch<'a> {
    c: &'a mut Consumer,
}

impl ReadBatch<'_> {
    receiving!(true, |b| b.c);

    /// Frees what was released so far; the batch goes on.
    pub fn release(&mut self) {
        self.c.free();
    }
}

impl Drop for ReadBatch<'_> {
    fn drop(&mut self) {
        self.c.free();
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if self.at.inert() {
            return;
        }
        self.free();
    }
}
