//! Multi-producer multi-consumer ring of fixed-size slots: work queues where
//! every message is taken by exactly one consumer, across processes.
//!
//! Any number of [`Producer`]s and [`Consumer`]s (up to
//! [`Options::max_producers`] / [`Options::max_consumers`]) attach and detach
//! at any time, from any process. A message is at most
//! `slot_size - 16` bytes ([`Producer::max_message_len`]).
//!
//! ```
//! let opts = shmq::Options::new().slots(8).slot_size(64);
//! let (mut tx, mut rx) = shmq::mpmc::channel(&opts).unwrap();
//! let mut rx2 = rx.try_clone().unwrap();
//! tx.send(b"job 1").unwrap();
//! tx.send(b"job 2").unwrap();
//! assert_eq!(&*rx.try_recv().unwrap(), b"job 1");
//! assert_eq!(&*rx2.try_recv().unwrap(), b"job 2");
//! ```
//!
//! # Dead endpoints
//! A producer that dies between claiming a slot and committing it would wedge
//! a plain Vyukov queue. Here a consumer that waits on such a slot for
//! [`Options::abandon_timeout`] checks the claimer's liveness lock and, if it
//! is dead, marks the slot abandoned and moves on (counted in
//! [`Stats::abandoned`](crate::Stats::abandoned)). A consumer that dies holding a [`ReadGrant`] loses
//! that one message; producers reclaim its slot the same way.
//! [`Error::Disconnected`] means every producer is gone (cleanly or dead) and
//! the queue is drained.

use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use crate::endpoint::{self, Endpoint, Peer, Role, Side, role_range};
use crate::error::{Error, Kind, OpenError};
use crate::header::TypeInfo;
use crate::layout::{EP_DETACHED, EP_FREE, EP_MASK, KIND_ABANDONED, KIND_MSG, KIND_SKIP};
use crate::notify::{self, Wait};
use crate::options::Options;
use crate::region::Mem;
use crate::ring::mpmc::{self as ring, Slots, Stall, Taken};
use crate::sync::Ordering;

/// Creates an in-process MPMC ring on the heap. More endpoints:
/// [`Producer::try_clone`], [`Consumer::try_clone`].
///
/// # Errors
/// [`OpenError::InvalidOptions`] if slots or slot size are out of range.
///
/// ```
/// let (mut tx, mut rx) = shmq::mpmc::channel(&shmq::Options::new().slots(4))?;
/// tx.send(b"job")?;
/// assert_eq!(&*rx.recv()?, b"job");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn channel(opts: &Options) -> Result<(Producer, Consumer), OpenError> {
    endpoint::heap_pair(opts, TypeInfo::default())
}

/// Test hook: a heap ring with a consumer and no producer yet (attach one
/// with [`Consumer::__attach_producer`]).
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub fn __heap_consumer(opts: &Options) -> Result<Consumer, OpenError> {
    let spec = crate::header::Spec {
        kind: Kind::Mpmc,
        ty: TypeInfo::default(),
    };
    let mem = crate::acquire::create_heap(&spec, opts)?;
    Ok(Consumer {
        ep: Endpoint::attach(mem, opts, None, TypeInfo::default())?,
    })
}

/// A position seen stuck, and since when: after `abandon_timeout` its
/// claimer's liveness is probed.
#[derive(Default)]
struct StallClock(Option<(u64, Instant)>);

impl StallClock {
    /// Forgets the stuck position. (One store; testing first for one, as
    /// this did, is a compare and a branch more on every message.)
    #[inline]
    fn clear(&mut self) {
        self.0 = None;
    }

    /// Tracks a stuck position; true once it has been stuck long enough.
    fn long(&mut self, pos: u64, urgent: bool, timeout: Duration) -> bool {
        let now = Instant::now();
        match self.0 {
            Some((p, since)) if p == pos => urgent || now - since >= timeout,
            _ => {
                self.0 = Some((pos, now));
                urgent || timeout.is_zero()
            }
        }
    }
}

/// The producer side: the slots, a stall clock, and the claim of the grant
/// handed out last, until it is committed or dropped. Still set at the next
/// claim only if the grant was given to `mem::forget`: then that claim is
/// published as a skip record first, so a forgotten grant cannot wedge the
/// queue, and its claim record is never overwritten while the slot is
/// unresolved.
pub(crate) struct Tx {
    slots: Slots,
    stall: StallClock,
    held: Option<u64>,
}

/// The consumer side: the slots, a stall clock, the liveness-probe clock of
/// a polling consumer, and two messages it may own:
/// * `held`: the message of the read grant handed out last, until the grant
///   drops. Still set at the next receive only if the grant was given to
///   `mem::forget`: then its slot is released first, so producers are not
///   wedged behind it.
/// * `pending`: a message that did not fit the caller's buffer
///   (`BufferTooSmall`): it stays ours and is what the next receive returns.
pub(crate) struct Rx {
    slots: Slots,
    stall: StallClock,
    empties: u32,
    last_probe: Instant,
    held: Option<Taken>,
    pending: Option<Taken>,
}

/// Whether every endpoint of `role` that claims `pos` is dead (and there
/// is at least one).
fn claimers_dead<S: Side>(ep: &Endpoint<S>, role: Role, pos: u64) -> Option<Vec<usize>> {
    let mem = &ep.at.mem;
    let who = ring::claimers(mem, role_range(mem.geometry(), role), pos);
    let all_dead = !who.is_empty() && who.iter().all(|&i| !mem.endpoint_alive(i));
    all_dead.then_some(who)
}

impl Side for Tx {
    const KIND: Kind = Kind::Mpmc;
    const ROLE: Role = Role::Producer;
    type Ready = u64;
    type Arg = ();

    fn new(mem: &Mem) -> Result<Self, Error> {
        Ok(Tx {
            slots: Slots::of(mem),
            stall: StallClock::default(),
            held: None,
        })
    }

    #[inline]
    fn attempt(ep: &mut Endpoint<Self>, (): (), spinning: bool) -> Result<u64, Error> {
        resolve_forgotten(ep);
        ep.usable()?;
        match ring::try_claim(&ep.at.mem, &ep.side.slots, ep.at.slot) {
            Ok(pos) => {
                ep.side.stall.clear();
                ep.side.held = Some(pos);
                Ok(pos)
            }
            Err(Error::Full) => claim_full(ep, spinning),
            Err(e) => Err(ep.note(e)),
        }
    }

    fn peers_gone(ep: &mut Endpoint<Self>) -> Option<Error> {
        let mut any_ever = false;
        for c in role_range(ep.at.mem.geometry(), Role::Consumer) {
            match ep.peer(c, true) {
                Peer::Attached => return None,
                Peer::NeverAttached => {}
                Peer::Detached | Peer::Dead => any_ever = true,
            }
        }
        any_ever.then_some(Error::Disconnected)
    }

    fn leave(ep: &mut Endpoint<Self>) {
        resolve_forgotten(ep);
    }
}

/// A claim found the queue full: reclaim a slot a dead consumer holds
/// (after `abandon_timeout`), and while spinning look less often. Out of the
/// hot path.
#[cold]
#[inline(never)]
fn claim_full(ep: &mut Endpoint<Tx>, spinning: bool) -> Result<u64, Error> {
    // A consumer that died holding a slot would block us forever.
    if let Some(prev) = ring::producer_stall(&ep.at.mem, &ep.side.slots) {
        let timeout = ep.opts.abandon_timeout;
        if ep.side.stall.long(prev, false, timeout) {
            if let Some(dead) = claimers_dead(ep, Role::Consumer, prev) {
                if ring::reclaim(&ep.at.mem, &ep.side.slots, prev, &dead) {
                    ep.at.stats.abandoned += 1;
                    ep.wake_mates();
                }
                ep.side.stall = StallClock::default();
            }
        }
    }
    if spinning {
        // Look less often while the queue is full: each look
        // pulls the cursor and slot lines the consumers are
        // writing (as for SPSC).
        for _ in 0..64 {
            crate::sync::spin_hint();
        }
    }
    Err(Error::Full)
}

/// Publishes the claim of a grant given to `mem::forget` as a skip record.
fn resolve_forgotten(ep: &mut Endpoint<Tx>) {
    if let Some(pos) = ep.side.held {
        publish(ep, pos, 0, KIND_SKIP);
    }
}

fn publish(ep: &mut Endpoint<Tx>, pos: u64, len: usize, kind: u32) {
    ep.side.held = None;
    ring::publish(&ep.at.mem, ep.at.slot, pos, len, kind);
    if kind == KIND_MSG {
        ep.at.stats.messages += 1;
        ep.at.stats.bytes += len as u64;
    }
    ep.wake_peers();
}

impl Rx {
    /// Marks producers found dead (with a liveness probe, a syscall per
    /// attached producer on segments) detached, so that the slot states
    /// alone say who is left.
    fn reap_producers(mem: &Mem) {
        for i in role_range(mem.geometry(), Role::Producer) {
            let ep = mem.endpoint(i);
            // Acquire: pairs with the Release attach CAS.
            let st = ep.state.load(Ordering::Acquire);
            if endpoint::died(mem, i, st) {
                let detached = (st & !EP_MASK) | EP_DETACHED;
                // AcqRel: the generation in `st` makes this fail if a new
                // producer took the slot since our load.
                if ep
                    .state
                    .compare_exchange(st, detached, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    // Relaxed: a statistic; read after Disconnected, which
                    // needed this reaping first.
                    mem.header()
                        .meta
                        .producers_died
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// All producers gone (and at least one ever attached)? Read from the
    /// producer slots' states (no syscall): every slot never used or
    /// detached (cleanly, or reaped after death), and one at least used.
    ///
    /// (An earlier design kept a counter beside the states; a producer
    /// killed between its state change and the counter's update left the
    /// two disagreeing for good. The states are the one truth.)
    fn producers_gone(mem: &Mem) -> bool {
        let mut ever = false;
        for i in role_range(mem.geometry(), Role::Producer) {
            // Acquire: pairs with the Release state stores of detach (after
            // the producer's last publish) and of reaping, so a re-check of
            // the queue after seeing every slot detached sees all publishes.
            match mem.endpoint(i).state.load(Ordering::Acquire) & EP_MASK {
                EP_FREE => {}
                EP_DETACHED => ever = true,
                // Attached (alive or not reaped yet), or crashed (heap).
                _ => return false,
            }
        }
        ever
    }
}

/// On an empty queue, probes the producers' liveness at most once per
/// liveness interval, so a consumer that only polls `try_recv` also learns
/// that they died.
fn maybe_reap(ep: &mut Endpoint<Rx>) {
    ep.side.empties = ep.side.empties.wrapping_add(1);
    if ep.side.empties % 64 != 0 {
        return;
    }
    let now = Instant::now();
    if now.duration_since(ep.side.last_probe) >= ep.at.wait.check_every {
        ep.side.last_probe = now;
        Rx::reap_producers(&ep.at.mem);
    }
}

impl Side for Rx {
    type Ready = Taken;
    type Arg = ();
    const KIND: Kind = Kind::Mpmc;
    const ROLE: Role = Role::Consumer;

    fn new(mem: &Mem) -> Result<Self, Error> {
        Ok(Rx {
            slots: Slots::of(mem),
            stall: StallClock::default(),
            empties: 0,
            last_probe: Instant::now(),
            held: None,
            pending: None,
        })
    }

    #[inline]
    fn attempt(ep: &mut Endpoint<Self>, (): (), _spinning: bool) -> Result<Taken, Error> {
        if let Some(t) = ep.side.held {
            // A read grant given to `mem::forget`: free its slot.
            release(ep, &t);
        }
        ep.usable()?;
        if let Some(t) = ep.side.pending {
            // The message that did not fit the last buffer. (Tested before
            // taken: the common case is one load.)
            ep.side.pending = None;
            return Ok(t);
        }
        match ring::try_take(&ep.at.mem, &ep.side.slots, ep.at.slot) {
            Ok(t) if t.kind == KIND_MSG => {
                ep.side.stall.clear();
                Ok(t)
            }
            first => take_slow(ep, first),
        }
    }

    fn peers_gone(ep: &mut Endpoint<Self>) -> Option<Error> {
        Rx::reap_producers(&ep.at.mem);
        // `attempt` turns "all gone and drained" into Disconnected itself,
        // after abandoning what dead producers left in flight.
        None
    }

    fn leave(ep: &mut Endpoint<Self>) {
        // A forgotten grant's message was delivered; a pending one was not,
        // but no one else can take it (MPMC positions cannot be given
        // back): both slots are freed.
        for t in [ep.side.held, ep.side.pending.take()].into_iter().flatten() {
            release(ep, &t);
        }
    }
}

/// The rest of a receive attempt, out of the hot path: skip records,
/// abandoned slots, an empty queue (stalls, dead producers, the end).
/// `first` is what the first `try_take` gave.
#[cold]
#[inline(never)]
fn take_slow(ep: &mut Endpoint<Rx>, first: Result<Taken, Error>) -> Result<Taken, Error> {
    let mut next = Some(first);
    // Skip records are consumed here; at most one lap of them per call.
    for _ in 0..=ep.side.slots.n {
        let r = next
            .take()
            .unwrap_or_else(|| ring::try_take(&ep.at.mem, &ep.side.slots, ep.at.slot));
        match r {
            Ok(t) if t.kind == KIND_MSG => {
                ep.side.stall.clear();
                return Ok(t);
            }
            Ok(t) => {
                ring::release(&ep.at.mem, &ep.side.slots, ep.at.slot, t.pos);
                if t.kind == KIND_ABANDONED {
                    ep.at.stats.abandoned += 1;
                }
                debug_assert!(t.kind == KIND_SKIP || t.kind == KIND_ABANDONED);
                ep.wake_peers();
            }
            Err(Error::Empty) => {
                maybe_reap(ep);
                let gone = Rx::producers_gone(&ep.at.mem);
                if let Stall::InFlight(pos) = ring::consumer_stall(&ep.at.mem) {
                    // With every producer gone there is nobody to wait for.
                    let timeout = ep.opts.abandon_timeout;
                    if ep.side.stall.long(pos, gone, timeout) {
                        if let Some(dead) = claimers_dead(ep, Role::Producer, pos) {
                            if ring::abandon(&ep.at.mem, pos, &dead) {
                                // Other consumers may sleep with
                                // messages waiting behind this slot.
                                ep.wake_mates();
                            }
                            ep.side.stall = StallClock::default();
                            continue;
                        }
                    }
                    return Err(Error::Empty);
                }
                if gone {
                    // The last detach came after its publishes: look again.
                    return match ring::try_take(&ep.at.mem, &ep.side.slots, ep.at.slot) {
                        Ok(t) if t.kind == KIND_MSG => Ok(t),
                        Ok(t) => {
                            ring::release(&ep.at.mem, &ep.side.slots, ep.at.slot, t.pos);
                            Err(Error::Empty)
                        }
                        Err(Error::Empty) => Err(Error::Disconnected),
                        Err(e) => Err(ep.note(e)),
                    };
                }
                return Err(Error::Empty);
            }
            Err(e) => return Err(ep.note(e)),
        }
    }
    Err(Error::Empty)
}

#[inline]
fn release(ep: &mut Endpoint<Rx>, t: &Taken) {
    ep.side.held = None;
    ring::release(&ep.at.mem, &ep.side.slots, ep.at.slot, t.pos);
    ep.at.stats.messages += 1;
    ep.at.stats.bytes += t.len as u64;
    ep.wake_peers();
}

/// A producer of an MPMC ring. `Send`, not `Sync`; more producers:
/// [`try_clone`](Self::try_clone) or another `open`.
pub struct Producer {
    ep: Endpoint<Tx>,
}

/// A consumer of an MPMC ring. `Send`, not `Sync`.
pub struct Consumer {
    ep: Endpoint<Rx>,
}

endpoint::endpoint_api!(
    Producer,
    Tx,
    "shmq::mpmc::channel(&shmq::Options::new())",
    "tx"
);
endpoint::endpoint_api!(
    Consumer,
    Rx,
    "shmq::mpmc::channel(&shmq::Options::new())",
    "rx"
);

/// The methods both MPMC endpoints have.
macro_rules! mpmc_common {
    ($ty:ident) => {
        impl $ty {
            /// Attaches another endpoint of this kind to the same ring (for
            /// another thread).
            ///
            /// # Errors
            /// `Busy` when the maximum is attached; open errors for segments.
            pub fn try_clone(&self) -> Result<$ty, OpenError> {
                Ok($ty {
                    ep: self.ep.try_clone()?,
                })
            }

            /// Number of slots.
            pub fn slots(&self) -> usize {
                self.ep.side.slots.n as usize
            }

            /// Largest message: the slot size minus its 16-byte header.
            pub fn max_message_len(&self) -> usize {
                self.ep.side.slots.max_message_len()
            }

            /// Messages in the queue (published or being written), a snapshot.
            pub fn len(&self) -> usize {
                ring::len(&self.ep.at.mem) as usize
            }

            /// Whether [`len`](Self::len) is zero.
            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }
        }
    };
}
mpmc_common!(Producer);
mpmc_common!(Consumer);

impl Producer {
    /// Test hook: overwrites this producer's claim record, as a producer
    /// that lost a claim race and died before clearing it leaves it.
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn __set_claim_record(&self, pos: u64) {
        // Relaxed: a simulated stale record; published, like the real ones,
        // by the cursor CASes of later claims.
        self.ep
            .at
            .mem
            .endpoint(self.ep.at.slot)
            .claiming
            .store(pos + 1, Ordering::Relaxed);
    }

    #[inline]
    fn grant(&mut self, pos: u64) -> WriteGrant<'_> {
        WriteGrant {
            p: self,
            pos,
            committed: false,
        }
    }

    #[inline(always)]
    fn reserve_with(&mut self, wait: Wait) -> Result<WriteGrant<'_>, Error> {
        let pos = self.ep.run((), wait)?;
        Ok(self.grant(pos))
    }

    notify::waiting_variants! {
        /// Claims a slot, waiting while the queue is full. The grant derefs
        /// to the whole payload area ([`max_message_len`](Self::max_message_len)
        /// bytes); commit the first `n` to publish them.
        ///
        /// ```
        /// let (mut tx, mut rx) = shmq::mpmc::channel(&shmq::Options::new().slots(4))?;
        /// let mut g = tx.reserve()?;
        /// g[..3].copy_from_slice(b"job");
        /// g.commit(3);
        /// assert_eq!(&*rx.recv()?, b"job");
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        ///
        /// # Errors
        /// `Disconnected` (every consumer detached or died), `Corrupted`.
        fn reserve / try_reserve / reserve_timeout () -> Result<WriteGrant<'_>, Error>,
        |p, w| p.reserve_with(w)
    }

    #[inline(always)]
    fn send_with(&mut self, msg: &[u8], wait: Wait) -> Result<(), Error> {
        let max = self.max_message_len();
        if msg.len() > max {
            return Err(Error::TooLarge {
                len: msg.len(),
                max,
            });
        }
        // Fast path: a slot is free now (and no forgotten grant to resolve
        // first): claim at the first try, copy and publish in one ring call.
        // Anything else (full, contended, corrupted) takes the general path,
        // which claims again and says which.
        let ep = &mut self.ep;
        if ep.side.held.is_none()
            && ep.usable().is_ok()
            && ring::try_send_first(&ep.at.mem, ep.at.slot, msg)
        {
            ep.side.stall.clear();
            ep.at.stats.messages += 1;
            ep.at.stats.bytes += msg.len() as u64;
            ep.wake_peers();
            return Ok(());
        }
        self.send_slow(msg, wait)
    }

    #[inline(never)]
    fn send_slow(&mut self, msg: &[u8], wait: Wait) -> Result<(), Error> {
        self.reserve_with(wait)?.write(msg);
        Ok(())
    }

    notify::waiting_variants! {
        /// Copies `msg` into a slot, waiting for one.
        ///
        /// ```
        /// let (mut tx, mut rx) = shmq::mpmc::channel(&shmq::Options::new().slots(4))?;
        /// tx.send(b"job")?;
        /// assert_eq!(&*rx.recv()?, b"job");
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        ///
        /// # Errors
        /// As [`reserve`](Self::reserve), plus `TooLarge`; on error nothing
        /// was sent.
        fn send / try_send / send_timeout (msg: &[u8]) -> Result<(), Error>,
        |p, w| p.send_with(msg, w)
    }
}

/// A claimed slot, written in place. Derefs to the slot's whole payload area;
/// [`commit`](Self::commit) publishes the first `n` bytes. Dropped without
/// commit, it publishes an empty skip record that consumers drop silently, so
/// the queue never wedges.
pub struct WriteGrant<'a> {
    p: &'a mut Producer,
    pos: u64,
    committed: bool,
}

impl WriteGrant<'_> {
    /// Publishes the first `n` bytes as one message.
    ///
    /// # Panics
    /// If `n` exceeds the slot's payload size.
    pub fn commit(mut self, n: usize) {
        assert!(
            n <= self.p.max_message_len(),
            "committed {n} bytes of a {}-byte slot",
            self.p.max_message_len()
        );
        self.committed = true;
        // No fork check: a child that inherited this grant has its own zero
        // pages where the ring was (`fork.rs`), so its commit reaches nobody.
        publish(&mut self.p.ep, self.pos, n, KIND_MSG);
    }

    #[inline]
    fn write(self, msg: &[u8]) {
        let ep = &self.p.ep;
        let ptr = ep.at.mem.slot_payload(self.pos, msg.len());
        // SAFETY: we won the claim of `pos`: no consumer reads this slot's
        // payload until we publish it; `msg` (checked against the payload
        // size by the caller) is our caller's memory, so they do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), ptr, msg.len()) };
        self.commit(msg.len());
    }
}

impl Deref for WriteGrant<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        let ep = &self.p.ep;
        let len = ep.side.slots.max_message_len();
        let ptr = ep.at.mem.slot_payload(self.pos, len);
        // SAFETY: we won the claim of `pos`, so nobody else reads or writes
        // this slot's payload until we publish it (protocol).
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }
}

impl DerefMut for WriteGrant<'_> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        let ep = &self.p.ep;
        let len = ep.side.slots.max_message_len();
        let ptr = ep.at.mem.slot_payload(self.pos, len);
        // SAFETY: as in `deref`; `&mut self` makes this the only view.
        unsafe { std::slice::from_raw_parts_mut(ptr, len) }
    }
}

impl WriteGrant<'_> {
    /// Test hook: the producer's process dies while it holds this claim.
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn __simulate_crash(mut self) {
        self.committed = true;
        self.p.ep.at.simulate_crash();
    }
}

impl Drop for WriteGrant<'_> {
    #[inline]
    fn drop(&mut self) {
        // (A forked child's skip lands in its own zero pages, as in
        // `commit`; a simulated crash sets `committed`.)
        if !self.committed {
            publish(&mut self.p.ep, self.pos, 0, KIND_SKIP);
        }
    }
}

impl Consumer {
    /// Test hook: this consumer decides now that position `pos` was
    /// claimed by a producer that died, and abandons it: the late decision
    /// of a consumer that was preempted after its liveness probe.
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn __abandon(&mut self, pos: u64) -> bool {
        ring::abandon(&self.ep.at.mem, pos, &[])
    }

    /// Test hook: attaches a producer to this consumer's ring.
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn __attach_producer(&self) -> Result<Producer, OpenError> {
        Ok(Producer {
            ep: self.ep.attach_other()?,
        })
    }

    /// How many producers of this ring were found dead (killed without
    /// detaching) since it was created. `Disconnected` does not tell a clean
    /// end from a dead producer; compare this before and after.
    pub fn producers_died(&self) -> u32 {
        // Relaxed: a statistic.
        self.ep
            .at
            .mem
            .header()
            .meta
            .producers_died
            .load(Ordering::Relaxed)
    }

    #[inline(always)]
    fn recv_with(&mut self, wait: Wait) -> Result<ReadGrant<'_>, Error> {
        // The grant is built in one place, from the quick take (an
        // `Option`: nothing for the slow path's error to keep in memory)
        // or the general one, as SPSC's `recv_with` does.
        let t = match self.take_fast() {
            Some(t) => t,
            None => self.recv_slow(wait)?,
        };
        self.ep.side.held = Some(t);
        Ok(ReadGrant { c: self, t })
    }

    #[inline(never)]
    fn recv_slow(&mut self, wait: Wait) -> Result<Taken, Error> {
        self.ep.run((), wait)
    }

    /// The receives' quick take: a message is there (and nothing held or
    /// pending). `None`: take the general path (empty, contended or an
    /// abandoned slot: nothing taken; a skip record: freed here; a
    /// corruption: noted here, so that the general path's first check
    /// reports it).
    #[inline(always)]
    fn take_fast(&mut self) -> Option<Taken> {
        let ep = &mut self.ep;
        if ep.side.held.is_some() || ep.side.pending.is_some() || ep.usable().is_err() {
            return None;
        }
        let (pos, info) = ring::try_take_first(&ep.at.mem, ep.at.slot)?;
        match ring::message_of(&ep.side.slots, pos, info) {
            Some(t) => {
                ep.side.stall.clear();
                Some(t)
            }
            None => {
                Self::not_a_message(ep, pos, info);
                None
            }
        }
    }

    /// A quick take claimed `pos`, whose info word `info` is not a valid
    /// message: a skip record is freed, anything else freed by
    /// `check_taken` and noted (`Corrupted` poisons the endpoint, and the
    /// general path's first check reports it).
    #[cold]
    fn not_a_message(ep: &mut Endpoint<Rx>, pos: u64, info: u64) {
        match ring::check_taken(&ep.at.mem, &ep.side.slots, ep.at.slot, pos, info) {
            Ok(t) => {
                // A skip record (an abandoned slot never passes the quick
                // take: its sequence has the ABANDONED bit).
                ring::release(&ep.at.mem, &ep.side.slots, ep.at.slot, t.pos);
                ep.wake_peers();
            }
            Err(e) => {
                ep.note(e);
            }
        }
    }

    /// The copying receives' fast path: the quick take, then the copy.
    /// `None`: take the general path (as `take_fast`).
    #[inline(always)]
    fn recv_into_fast(&mut self, buf: &mut [u8]) -> Option<Result<usize, Error>> {
        let t = self.take_fast()?;
        let ep = &mut self.ep;
        if t.len > buf.len() {
            // Stays ours, for the next receive (the rule of `recv_into`).
            ep.side.pending = Some(t);
            return Some(Err(Error::BufferTooSmall {
                needed: t.len,
                capacity: buf.len(),
            }));
        }
        let r = ring::copy_out(&ep.at.mem, &t, buf);
        release(ep, &t);
        Some(r)
    }

    notify::waiting_variants! {
        /// The next message, read in place, waiting for one; dropping the
        /// grant frees its slot.
        ///
        /// ```
        /// let (mut tx, mut rx) = shmq::mpmc::channel(&shmq::Options::new().slots(4))?;
        /// tx.send(b"job")?;
        /// assert_eq!(&*rx.recv()?, b"job");
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        ///
        /// # Errors
        /// `Disconnected` (every producer gone and the queue drained),
        /// `Corrupted`.
        fn recv / try_recv / recv_timeout () -> Result<ReadGrant<'_>, Error>,
        |c, w| c.recv_with(w)
    }

    notify::waiting_variants! {
        /// Copies the next message into `buf`, waiting for one; returns its
        /// length. Never reads the ring through a reference: the receive for
        /// peers you do not trust.
        ///
        /// ```
        /// let (mut tx, mut rx) = shmq::mpmc::channel(&shmq::Options::new().slots(4))?;
        /// tx.send(b"twelve bytes")?;
        /// let mut small = [0u8; 4];
        /// assert!(matches!(
        ///     rx.recv_into(&mut small),
        ///     Err(shmq::Error::BufferTooSmall { needed: 12, .. })
        /// ));
        /// let mut big = [0u8; 64];
        /// let n = rx.recv_into(&mut big)?;
        /// assert_eq!(&big[..n], b"twelve bytes");
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        ///
        /// # Errors
        /// As [`recv`](Self::recv), plus `BufferTooSmall`: the message then
        /// stays with this consumer, and its next receive returns it (the
        /// rule of SPSC too; an MPMC position cannot be handed back to the
        /// queue, so it is dropped only if this consumer drops first).
        fn recv_into / try_recv_into / recv_into_timeout (buf: &mut [u8]) -> Result<usize, Error>,
        |c, w| match c.recv_into_fast(buf) {
            Some(r) => r,
            None => c.recv_with(w)?.copy_to(buf),
        }
    }
}

/// A message taken from the queue, read in place; dropping it frees the slot.
/// As with SPSC, a misbehaving peer could rewrite the bytes while you read.
pub struct ReadGrant<'a> {
    c: &'a mut Consumer,
    t: Taken,
}

impl ReadGrant<'_> {
    #[inline]
    fn copy_to(self, buf: &mut [u8]) -> Result<usize, Error> {
        let n = self.t.len;
        if n > buf.len() {
            // The message stays ours, for the next receive.
            let mut me = std::mem::ManuallyDrop::new(self);
            me.c.ep.side.held = None;
            me.c.ep.side.pending = Some(me.t);
            return Err(Error::BufferTooSmall {
                needed: n,
                capacity: buf.len(),
            });
        }
        let ep = &self.c.ep;
        let src = ep.at.mem.slot_payload(self.t.pos, n);
        // SAFETY: the payload starts 8-aligned (slot stride and header are
        // multiples of 8) and `n` rounded up to 8 stays inside the slot,
        // whose payload area is a multiple of 8 bytes.
        unsafe { crate::sync::copy_out(src, &mut buf[..n]) };
        Ok(n)
    }
}

impl Deref for ReadGrant<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        let ep = &self.c.ep;
        let ptr = ep.at.mem.slot_payload(self.t.pos, self.t.len);
        // SAFETY: we won the claim of this published slot, so no producer
        // writes it until we release it; `len` was validated against the
        // slot size. Bytes are plain `u8`: any value is valid.
        unsafe { std::slice::from_raw_parts(ptr, self.t.len) }
    }
}

impl ReadGrant<'_> {
    /// Test hook: the consumer's process dies while it holds this message.
    #[cfg(feature = "test-hooks")]
    #[doc(hidden)]
    pub fn __simulate_crash(self) {
        let mut me = std::mem::ManuallyDrop::new(self);
        me.c.ep.at.simulate_crash();
    }
}

impl Drop for ReadGrant<'_> {
    #[inline]
    fn drop(&mut self) {
        // No fork check: as in `WriteGrant::commit`.
        let t = self.t;
        release(&mut self.c.ep, &t);
    }
}
