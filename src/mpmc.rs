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
//! [`Stats::abandoned`]). A consumer that dies holding a [`ReadGrant`] loses
//! that one message; producers reclaim its slot the same way.
//! [`Error::Disconnected`] means every producer is gone (cleanly or dead) and
//! the queue is drained.

use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use crate::endpoint::{self, Attachment, Role, Spec, TypeInfo, role_range};
use crate::error::{Error, OpenError};
use crate::layout::{EP_DETACHED, EP_FREE, EP_MASK, Kind, WakeWord};
use crate::notify::{self, Stats, Wait, WaitCfg, Waitable};
use crate::options::Options;
use crate::region::Mem;
use crate::ring::mpmc::{self as ring, KIND_ABANDONED, KIND_MSG, KIND_SKIP, Slots, Stall, Taken};
use crate::sync::Ordering;

/// Creates an in-process MPMC ring on the heap. More endpoints:
/// [`Producer::try_clone`], [`Consumer::try_clone`].
///
/// # Errors
/// [`OpenError::InvalidOptions`] if slots or slot size are out of range.
pub fn channel(opts: &Options) -> Result<(Producer, Consumer), OpenError> {
    channel_typed(opts, TypeInfo::default())
}

pub(crate) fn channel_typed(
    opts: &Options,
    ty: TypeInfo,
) -> Result<(Producer, Consumer), OpenError> {
    let spec = Spec {
        kind: Kind::Mpmc,
        ty,
    };
    let mem = endpoint::create_heap(&spec, opts)?;
    let other = mem.share().expect("heap regions can be shared");
    let p = Producer::from_mem(mem, opts, "<heap>")?;
    let c = Consumer::from_mem(other, opts, "<heap>")?;
    Ok((p, c))
}

/// Test hook: a heap ring with a consumer and no producer yet (attach one
/// with [`Consumer::__attach_producer`]).
#[doc(hidden)]
pub fn __heap_consumer(opts: &Options) -> Result<Consumer, OpenError> {
    let spec = Spec {
        kind: Kind::Mpmc,
        ty: TypeInfo::default(),
    };
    Consumer::from_mem(endpoint::create_heap(&spec, opts)?, opts, "<heap>")
}

/// Common state of both MPMC endpoint kinds.
struct Inner {
    at: Attachment,
    slots: Slots,
    poisoned: Option<Error>,
    name: Option<String>,
    opts: Options,
    ty: TypeInfo,
    /// Position we have seen stuck, and since when.
    stall: Option<(u64, Instant)>,
    /// Consumers: empty looks since the last time check, and the last
    /// liveness probe of the producers.
    empties: u32,
    last_probe: Instant,
}

impl Inner {
    fn new(
        mem: Mem,
        role: Role,
        opts: &Options,
        name: &str,
        ty: TypeInfo,
    ) -> Result<Inner, OpenError> {
        let slots = Slots::of(&mem);
        let at = Attachment::attach(mem, role, opts, name)?;
        Ok(Inner {
            at,
            slots,
            poisoned: None,
            name: (name != "<heap>").then(|| name.to_owned()),
            opts: opts.clone(),
            ty,
            stall: None,
            empties: 0,
            last_probe: Instant::now(),
        })
    }

    fn clone_mem(&self) -> Result<Mem, OpenError> {
        if let Some(m) = self.at.mem.share() {
            return Ok(m);
        }
        let spec = Spec {
            kind: Kind::Mpmc,
            ty: self.ty,
        };
        let name = self.name.as_deref().unwrap_or("");
        let mem = endpoint::open_shm(name, &spec, &self.opts)?;
        match (mem.segment(), self.at.mem.segment()) {
            (Some(new), Some(old)) if !new.same_file(old) => Err(OpenError::NotFound {
                name: name.to_owned(),
            }),
            _ => Ok(mem),
        }
    }

    fn note(&mut self, e: Error) -> Error {
        if let Error::Corrupted(_) = e {
            self.poisoned = Some(e);
        }
        e
    }

    /// Tracks a stuck position; true once it has been stuck long enough.
    fn stalled_long(&mut self, pos: u64, urgent: bool) -> bool {
        let now = Instant::now();
        match self.stall {
            Some((p, since)) if p == pos => urgent || now - since >= self.opts.abandon_timeout,
            _ => {
                self.stall = Some((pos, now));
                urgent || self.opts.abandon_timeout.is_zero()
            }
        }
    }

    /// Whether every endpoint of `role` that claims `pos` is dead (and there
    /// is at least one).
    fn claimers_dead(&self, role: Role, pos: u64) -> Option<Vec<usize>> {
        let range = role_range(self.at.mem.geometry(), role);
        let who = ring::claimers(&self.at.mem, range, pos);
        let all_dead = !who.is_empty() && who.iter().all(|&i| !self.at.mem.endpoint_alive(i));
        all_dead.then_some(who)
    }

    /// Marks producers found dead (with a liveness probe, a syscall per
    /// attached producer on segments) detached, so that the slot states
    /// alone say who is left.
    fn reap_producers(&self) {
        let mem = &self.at.mem;
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
    fn producers_gone(&self) -> bool {
        let mem = &self.at.mem;
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

    /// On an empty queue, probes the producers' liveness at most once per
    /// liveness interval, so a consumer that only polls `try_recv` also
    /// learns that they died.
    fn maybe_reap(&mut self) {
        self.empties = self.empties.wrapping_add(1);
        if self.empties % 64 != 0 {
            return;
        }
        let now = Instant::now();
        if now.duration_since(self.last_probe) >= self.at.wait.check_every {
            self.last_probe = now;
            self.reap_producers();
        }
    }
}

macro_rules! mpmc_common {
    ($ty:ident, $role:expr) => {
        impl $ty {
            #[allow(dead_code)]
            pub(crate) fn from_mem(mem: Mem, opts: &Options, name: &str) -> Result<$ty, OpenError> {
                Self::from_mem_typed(mem, opts, name, TypeInfo::default())
            }

            fn from_mem_typed(
                mem: Mem,
                opts: &Options,
                name: &str,
                ty: TypeInfo,
            ) -> Result<$ty, OpenError> {
                Ok($ty {
                    i: Inner::new(mem, $role, opts, name, ty)?,
                    held: None,
                })
            }

            /// Attaches another endpoint of this kind to the same ring (for
            /// another thread).
            ///
            /// # Errors
            /// `Busy` when the maximum is attached; open errors for segments.
            pub fn try_clone(&self) -> Result<$ty, OpenError> {
                let mem = self.i.clone_mem()?;
                let name = self.i.name.clone().unwrap_or_else(|| "<heap>".into());
                Self::from_mem_typed(mem, &self.i.opts, &name, self.i.ty)
            }

            /// The segment name (`None` for heap channels).
            pub fn name(&self) -> Option<&str> {
                self.i.name.as_deref()
            }

            #[allow(dead_code)]
            pub(crate) fn mem(&self) -> &Mem {
                &self.i.at.mem
            }

            /// Test hook: drops this endpoint as if its process had been
            /// killed (no detach, claim records left in place). Not for
            /// production use.
            #[doc(hidden)]
            pub fn __simulate_crash(mut self) {
                self.i.at.simulate_crash();
            }

            /// Counters of this endpoint.
            pub fn stats(&self) -> Stats {
                self.i.at.stats
            }

            /// A handle that makes this endpoint's blocking calls return
            /// [`Error::Interrupted`], from another thread or a signal
            /// handler (see [`Interrupter`](crate::Interrupter)).
            ///
            /// ```
            /// let (_tx, mut rx) = shmq::mpmc::channel(&shmq::Options::new())?;
            /// rx.interrupter().interrupt();
            /// assert_eq!(rx.recv().err(), Some(shmq::Error::Interrupted));
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            pub fn interrupter(&self) -> crate::Interrupter {
                self.i.at.interrupter()
            }

            /// Test hook: a peer scribbles `v` at byte `off` of the region.
            #[doc(hidden)]
            #[cfg(not(loom))]
            pub fn __poke(&self, off: usize, v: u64) {
                self.i.at.mem.poke(off, v);
            }

            /// Test hook: byte offset of endpoint slot `i` (producers
            /// first, then consumers) in the region.
            #[doc(hidden)]
            pub fn __endpoint_offset(&self, i: usize) -> usize {
                self.i.at.mem.geometry().table_offset() + i * 16
            }

            /// Test hook: byte offset of the data area in the region.
            #[doc(hidden)]
            pub fn __data_offset(&self) -> usize {
                self.i.at.mem.geometry().data_offset()
            }

            /// Number of slots.
            pub fn slots(&self) -> usize {
                self.i.slots.n as usize
            }

            /// Largest message: the slot size minus its 16-byte header.
            pub fn max_message_len(&self) -> usize {
                self.i.slots.max_message_len()
            }

            /// Messages in the queue (published or being written), a snapshot.
            pub fn len(&self) -> usize {
                ring::len(&self.i.at.mem) as usize
            }

            /// Whether [`len`](Self::len) is zero.
            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }
        }
    };
}

/// A producer of an MPMC ring. `Send`, not `Sync`; more producers:
/// [`try_clone`](Self::try_clone) or another `open`.
pub struct Producer {
    i: Inner,
    /// The position of the grant handed out last, until it is committed or
    /// dropped. Still set at the next claim only if the grant was given to
    /// `mem::forget`: then that claim is published as a skip record first,
    /// so a forgotten grant cannot wedge the queue, and its claim record is
    /// never overwritten while the slot is unresolved.
    held: Option<u64>,
}

/// A consumer of an MPMC ring. `Send`, not `Sync`.
pub struct Consumer {
    i: Inner,
    /// The message of the read grant handed out last, until the grant
    /// drops. Still set at the next receive only if the grant was given to
    /// `mem::forget`: then its slot is released first, so producers are not
    /// wedged behind it.
    held: Option<Taken>,
}

static_assertions::assert_impl_all!(Producer: Send);
static_assertions::assert_not_impl_any!(Producer: Sync);
static_assertions::assert_impl_all!(Consumer: Send);
static_assertions::assert_not_impl_any!(Consumer: Sync);

mpmc_common!(Producer, Role::Producer);
mpmc_common!(Consumer, Role::Consumer);
endpoint::named_constructors!(Producer, Kind::Mpmc);
endpoint::named_constructors!(Consumer, Kind::Mpmc);

impl Producer {
    /// Publishes the claim of a grant given to `mem::forget` as a skip
    /// record.
    fn resolve_forgotten(&mut self) {
        if let Some(pos) = self.held {
            self.publish(pos, 0, KIND_SKIP);
        }
    }

    fn attempt(&mut self) -> Result<u64, Error> {
        self.resolve_forgotten();
        let i = &mut self.i;
        if let Some(e) = i.poisoned {
            return Err(e);
        }
        if i.at.forked() {
            return Err(Error::Forked);
        }
        match ring::try_claim(&i.at.mem, &i.slots, i.at.slot) {
            Ok(pos) => {
                i.stall = None;
                self.held = Some(pos);
                Ok(pos)
            }
            Err(Error::Full) => {
                // A consumer that died holding a slot would block us forever.
                if let Some(prev) = ring::producer_stall(&i.at.mem, &i.slots) {
                    if i.stalled_long(prev, false) {
                        if let Some(dead) = i.claimers_dead(Role::Consumer, prev) {
                            if ring::reclaim(&i.at.mem, &i.slots, prev, &dead) {
                                i.at.stats.abandoned += 1;
                                notify::wake(
                                    &i.at.mem.header().not_full,
                                    i.at.wait.backend,
                                    &mut i.at.stats,
                                );
                            }
                            i.stall = None;
                        }
                    }
                }
                Err(Error::Full)
            }
            Err(e) => Err(i.note(e)),
        }
    }

    /// Test hook: overwrites this producer's claim record, as a producer
    /// that lost a claim race and died before clearing it leaves it.
    #[doc(hidden)]
    pub fn __set_claim_record(&self, pos: u64) {
        // Relaxed: a simulated stale record; published, like the real ones,
        // by the cursor CASes of later claims.
        self.i
            .at
            .mem
            .endpoint(self.i.at.slot)
            .claiming
            .store(pos + 1, Ordering::Relaxed);
    }

    fn grant(&mut self, pos: u64) -> WriteGrant<'_> {
        WriteGrant {
            p: self,
            pos,
            committed: false,
        }
    }

    /// Claims a slot without waiting. The grant derefs to the whole payload
    /// area ([`max_message_len`](Self::max_message_len) bytes).
    ///
    /// # Errors
    /// `Full`, `Corrupted`.
    pub fn try_reserve(&mut self) -> Result<WriteGrant<'_>, Error> {
        let pos = self.attempt()?;
        Ok(self.grant(pos))
    }

    /// Claims a slot, waiting while the queue is full.
    ///
    /// # Errors
    /// `Disconnected` (every consumer detached or died), `Corrupted`.
    pub fn reserve(&mut self) -> Result<WriteGrant<'_>, Error> {
        let pos = notify::wait_for(&mut ClaimOp { p: self }, Wait::Forever)?;
        Ok(self.grant(pos))
    }

    /// Claims a slot, waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`reserve`](Self::reserve), plus `Timeout`.
    pub fn reserve_timeout(&mut self, timeout: Duration) -> Result<WriteGrant<'_>, Error> {
        let pos = notify::wait_for(&mut ClaimOp { p: self }, Wait::at_most(timeout))?;
        Ok(self.grant(pos))
    }

    fn check_len(&self, len: usize) -> Result<(), Error> {
        let max = self.max_message_len();
        if len > max {
            return Err(Error::TooLarge { len, max });
        }
        Ok(())
    }

    /// Copies `msg` into a slot without waiting.
    ///
    /// # Errors
    /// `TooLarge`, `Full`, `Corrupted`; on error nothing was sent.
    pub fn try_send(&mut self, msg: &[u8]) -> Result<(), Error> {
        self.check_len(msg.len())?;
        if self.send_fast(msg)? {
            return Ok(());
        }
        self.try_reserve()?.write(msg);
        Ok(())
    }

    /// Copies `msg` into a slot, waiting for one.
    ///
    /// # Errors
    /// As [`reserve`](Self::reserve), plus `TooLarge`.
    pub fn send(&mut self, msg: &[u8]) -> Result<(), Error> {
        self.check_len(msg.len())?;
        if self.send_fast(msg)? {
            return Ok(());
        }
        self.reserve()?.write(msg);
        Ok(())
    }

    /// The sends' fast path: a slot is free now. `Ok(false)`: take the
    /// general path (full, or a forgotten grant to resolve first).
    #[inline]
    fn send_fast(&mut self, msg: &[u8]) -> Result<bool, Error> {
        let i = &mut self.i;
        if self.held.is_some() || i.poisoned.is_some() || i.at.forked() {
            return Ok(false);
        }
        match ring::try_send(&i.at.mem, &i.slots, i.at.slot, msg) {
            Ok(_) => {
                i.stall = None;
                i.at.stats.messages += 1;
                i.at.stats.bytes += msg.len() as u64;
                notify::wake(
                    &i.at.mem.header().not_empty,
                    i.at.wait.backend,
                    &mut i.at.stats,
                );
                Ok(true)
            }
            Err(Error::Full) => Ok(false),
            Err(e) => Err(i.note(e)),
        }
    }

    /// Copies `msg` into a slot, waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`reserve_timeout`](Self::reserve_timeout), plus `TooLarge`.
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<(), Error> {
        self.check_len(msg.len())?;
        self.reserve_timeout(timeout)?.write(msg);
        Ok(())
    }

    fn publish(&mut self, pos: u64, len: usize, kind: u32) {
        self.held = None;
        let i = &mut self.i;
        ring::publish(&i.at.mem, &i.slots, i.at.slot, pos, len, kind);
        if kind == KIND_MSG {
            i.at.stats.messages += 1;
            i.at.stats.bytes += len as u64;
        }
        notify::wake(
            &i.at.mem.header().not_empty,
            i.at.wait.backend,
            &mut i.at.stats,
        );
    }
}

struct ClaimOp<'a> {
    p: &'a mut Producer,
}

impl Waitable for ClaimOp<'_> {
    type Output = u64;
    fn attempt(&mut self) -> Result<u64, Error> {
        self.p.attempt()
    }
    fn attempt_spinning(&mut self) -> Result<u64, Error> {
        let r = self.p.attempt();
        if matches!(r, Err(Error::Full)) {
            // Look less often while the queue is full: each look pulls the
            // cursor and slot lines the consumers are writing (as for SPSC).
            for _ in 0..64 {
                crate::sync::spin_hint();
            }
        }
        r
    }
    fn interrupted(&mut self) -> bool {
        self.p.i.at.interrupt.take()
    }
    fn peer_gone(&mut self) -> Option<Error> {
        let mem = &self.p.i.at.mem;
        let mut any_ever = false;
        for c in role_range(mem.geometry(), Role::Consumer) {
            match endpoint::peer_state(mem, c, true) {
                endpoint::Peer::Attached => return None,
                endpoint::Peer::NeverAttached => {}
                _ => any_ever = true,
            }
        }
        any_ever.then_some(Error::Disconnected)
    }
    fn word(&self) -> &WakeWord {
        &self.p.i.at.mem.header().not_full
    }
    fn cfg(&self) -> &WaitCfg {
        &self.p.i.at.wait
    }
    fn stats(&mut self) -> &mut Stats {
        &mut self.p.i.at.stats
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
        if self.p.i.at.inert() {
            // A grant inherited through fork(): the parent's to commit.
            return;
        }
        self.p.publish(self.pos, n, KIND_MSG);
    }

    fn write(self, msg: &[u8]) {
        let i = &self.p.i;
        let ptr = i.slots.payload(&i.at.mem, self.pos, msg.len());
        // SAFETY: we won the claim of `pos`: no consumer reads this slot's
        // payload until we publish it; `msg` (checked against the payload
        // size by the caller) is our caller's memory, so they do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), ptr, msg.len()) };
        self.commit(msg.len());
    }
}

impl Deref for WriteGrant<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        let i = &self.p.i;
        let len = i.slots.max_message_len();
        let ptr = i.slots.payload(&i.at.mem, self.pos, len);
        // SAFETY: we won the claim of `pos`, so nobody else reads or writes
        // this slot's payload until we publish it (protocol).
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }
}

impl DerefMut for WriteGrant<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        let i = &self.p.i;
        let len = i.slots.max_message_len();
        let ptr = i.slots.payload(&i.at.mem, self.pos, len);
        // SAFETY: as in `deref`; `&mut self` makes this the only view.
        unsafe { std::slice::from_raw_parts_mut(ptr, len) }
    }
}

impl WriteGrant<'_> {
    /// Test hook: the producer's process dies while it holds this claim.
    #[doc(hidden)]
    pub fn __simulate_crash(mut self) {
        self.committed = true;
        self.p.i.at.simulate_crash();
    }
}

impl Drop for WriteGrant<'_> {
    fn drop(&mut self) {
        if !self.committed && !self.p.i.at.inert() {
            self.p.publish(self.pos, 0, KIND_SKIP);
        }
    }
}

impl Consumer {
    fn attempt(&mut self) -> Result<Taken, Error> {
        if let Some(t) = self.held {
            // A read grant given to `mem::forget`: free its slot.
            self.release(&t);
        }
        if let Some(e) = self.i.poisoned {
            return Err(e);
        }
        if self.i.at.forked() {
            return Err(Error::Forked);
        }
        // Skip records are consumed here; at most one lap of them per call.
        for _ in 0..=self.i.slots.n {
            let i = &mut self.i;
            match ring::try_take(&i.at.mem, &i.slots, i.at.slot) {
                Ok(t) if t.kind == KIND_MSG => {
                    i.stall = None;
                    return Ok(t);
                }
                Ok(t) => {
                    ring::release(&i.at.mem, &i.slots, i.at.slot, t.pos);
                    if t.kind == KIND_ABANDONED {
                        i.at.stats.abandoned += 1;
                    }
                    debug_assert!(matches!(t.kind, KIND_SKIP | KIND_ABANDONED));
                    notify::wake(
                        &i.at.mem.header().not_full,
                        i.at.wait.backend,
                        &mut i.at.stats,
                    );
                }
                Err(Error::Empty) => {
                    i.maybe_reap();
                    let gone = i.producers_gone();
                    if let Stall::InFlight(pos) = ring::consumer_stall(&i.at.mem, &i.slots) {
                        // With every producer gone there is nobody to wait for.
                        if i.stalled_long(pos, gone) {
                            if let Some(dead) = i.claimers_dead(Role::Producer, pos) {
                                if ring::abandon(&i.at.mem, &i.slots, pos, &dead) {
                                    // Other consumers may sleep with
                                    // messages waiting behind this slot.
                                    notify::wake(
                                        &i.at.mem.header().not_empty,
                                        i.at.wait.backend,
                                        &mut i.at.stats,
                                    );
                                }
                                i.stall = None;
                                continue;
                            }
                        }
                        return Err(Error::Empty);
                    }
                    if gone {
                        // The last detach came after its publishes: look again.
                        return match ring::try_take(&i.at.mem, &i.slots, i.at.slot) {
                            Ok(t) if t.kind == KIND_MSG => Ok(t),
                            Ok(t) => {
                                ring::release(&i.at.mem, &i.slots, i.at.slot, t.pos);
                                Err(Error::Empty)
                            }
                            Err(Error::Empty) => Err(Error::Disconnected),
                            Err(e) => Err(i.note(e)),
                        };
                    }
                    return Err(Error::Empty);
                }
                Err(e) => return Err(i.note(e)),
            }
        }
        Err(Error::Empty)
    }

    /// Test hook: this consumer decides now that position `pos` was
    /// claimed by a producer that died, and abandons it: the late decision
    /// of a consumer that was preempted after its liveness probe.
    #[doc(hidden)]
    pub fn __abandon(&mut self, pos: u64) -> bool {
        ring::abandon(&self.i.at.mem, &self.i.slots, pos, &[])
    }

    /// Test hook: attaches a producer to this consumer's ring.
    #[doc(hidden)]
    pub fn __attach_producer(&self) -> Result<Producer, OpenError> {
        let mem = self.i.clone_mem()?;
        let name = self.i.name.clone().unwrap_or_else(|| "<heap>".into());
        Producer::from_mem_typed(mem, &self.i.opts, &name, self.i.ty)
    }

    /// How many producers of this ring were found dead (killed without
    /// detaching) since it was created. `Disconnected` does not tell a clean
    /// end from a dead producer; compare this before and after.
    pub fn producers_died(&self) -> u32 {
        // Relaxed: a statistic.
        self.i
            .at
            .mem
            .header()
            .meta
            .producers_died
            .load(Ordering::Relaxed)
    }

    fn grant(&mut self, t: Taken) -> ReadGrant<'_> {
        self.held = Some(t);
        ReadGrant { c: self, t }
    }

    /// The next message without waiting.
    ///
    /// # Errors
    /// `Empty`, `Disconnected` (every producer gone and the queue drained),
    /// `Corrupted`.
    pub fn try_recv(&mut self) -> Result<ReadGrant<'_>, Error> {
        let t = self.attempt()?;
        Ok(self.grant(t))
    }

    /// The next message, waiting for one.
    ///
    /// # Errors
    /// `Disconnected`, `Corrupted`.
    pub fn recv(&mut self) -> Result<ReadGrant<'_>, Error> {
        let t = notify::wait_for(&mut TakeOp { c: self }, Wait::Forever)?;
        Ok(self.grant(t))
    }

    /// The next message, waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`recv`](Self::recv), plus `Timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<ReadGrant<'_>, Error> {
        let t = notify::wait_for(&mut TakeOp { c: self }, Wait::at_most(timeout))?;
        Ok(self.grant(t))
    }

    /// Copies the next message into `buf`, waiting for one.
    ///
    /// # Errors
    /// As [`recv`](Self::recv), plus `BufferTooSmall` (the message is then
    /// dropped: the slot cannot stay claimed; size `buf` to
    /// [`max_message_len`](Self::max_message_len)).
    pub fn recv_into(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        if let Some(r) = self.recv_into_fast(buf) {
            return r;
        }
        self.recv()?.copy_to(buf)
    }

    /// The copying receives' fast path: a message is there. `None`: take
    /// the general path (empty, a skip or abandoned slot was consumed, or a
    /// forgotten grant to release first).
    #[inline]
    fn recv_into_fast(&mut self, buf: &mut [u8]) -> Option<Result<usize, Error>> {
        let i = &mut self.i;
        if self.held.is_some() || i.poisoned.is_some() || i.at.forked() {
            return None;
        }
        // A message too long for `buf` is dropped, as `copy_to` drops it:
        // the slot cannot stay claimed.
        match ring::try_take_into(&i.at.mem, &i.slots, i.at.slot, buf) {
            Ok((t, r)) => {
                let r = match t.kind {
                    KIND_MSG => {
                        i.stall = None;
                        i.at.stats.messages += 1;
                        i.at.stats.bytes += t.len as u64;
                        Some(r)
                    }
                    KIND_ABANDONED => {
                        i.at.stats.abandoned += 1;
                        None
                    }
                    _ => None,
                };
                notify::wake(
                    &i.at.mem.header().not_full,
                    i.at.wait.backend,
                    &mut i.at.stats,
                );
                r
            }
            Err(Error::Empty) => None,
            Err(e) => Some(Err(i.note(e))),
        }
    }

    /// Copies the next message into `buf` without waiting.
    ///
    /// # Errors
    /// As [`try_recv`](Self::try_recv), plus `BufferTooSmall`.
    pub fn try_recv_into(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        if let Some(r) = self.recv_into_fast(buf) {
            return r;
        }
        self.try_recv()?.copy_to(buf)
    }

    /// Copies the next message into `buf`, waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`recv_timeout`](Self::recv_timeout), plus `BufferTooSmall`.
    pub fn recv_into_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, Error> {
        if let Some(r) = self.recv_into_fast(buf) {
            return r;
        }
        self.recv_timeout(timeout)?.copy_to(buf)
    }

    fn release(&mut self, t: &Taken) {
        self.held = None;
        let i = &mut self.i;
        ring::release(&i.at.mem, &i.slots, i.at.slot, t.pos);
        i.at.stats.messages += 1;
        i.at.stats.bytes += t.len as u64;
        notify::wake(
            &i.at.mem.header().not_full,
            i.at.wait.backend,
            &mut i.at.stats,
        );
    }
}

struct TakeOp<'a> {
    c: &'a mut Consumer,
}

impl Waitable for TakeOp<'_> {
    type Output = Taken;
    fn attempt(&mut self) -> Result<Taken, Error> {
        self.c.attempt()
    }
    fn interrupted(&mut self) -> bool {
        self.c.i.at.interrupt.take()
    }
    fn peer_gone(&mut self) -> Option<Error> {
        self.c.i.reap_producers();
        // `attempt` turns "all gone and drained" into Disconnected itself,
        // after abandoning what dead producers left in flight.
        None
    }
    fn word(&self) -> &WakeWord {
        &self.c.i.at.mem.header().not_empty
    }
    fn cfg(&self) -> &WaitCfg {
        &self.c.i.at.wait
    }
    fn stats(&mut self) -> &mut Stats {
        &mut self.c.i.at.stats
    }
}

/// A message taken from the queue, read in place; dropping it frees the slot.
/// As with SPSC, a misbehaving peer could rewrite the bytes while you read.
pub struct ReadGrant<'a> {
    c: &'a mut Consumer,
    t: Taken,
}

impl ReadGrant<'_> {
    fn copy_to(self, buf: &mut [u8]) -> Result<usize, Error> {
        let n = self.t.len;
        if n > buf.len() {
            return Err(Error::BufferTooSmall {
                needed: n,
                capacity: buf.len(),
            });
        }
        let i = &self.c.i;
        let src = i.slots.payload(&i.at.mem, self.t.pos, n);
        // SAFETY: the payload starts 8-aligned (slot stride and header are
        // multiples of 8) and `n` rounded up to 8 stays inside the slot,
        // whose payload area is a multiple of 8 bytes.
        unsafe { crate::sync::copy_out(src, &mut buf[..n]) };
        Ok(n)
    }
}

impl Deref for ReadGrant<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        let i = &self.c.i;
        let ptr = i.slots.payload(&i.at.mem, self.t.pos, self.t.len);
        // SAFETY: we won the claim of this published slot, so no producer
        // writes it until we release it; `len` was validated against the
        // slot size. Bytes are plain `u8`: any value is valid.
        unsafe { std::slice::from_raw_parts(ptr, self.t.len) }
    }
}

impl ReadGrant<'_> {
    /// Test hook: the consumer's process dies while it holds this message.
    #[doc(hidden)]
    pub fn __simulate_crash(self) {
        let mut me = std::mem::ManuallyDrop::new(self);
        me.c.i.at.simulate_crash();
    }
}

impl Drop for ReadGrant<'_> {
    fn drop(&mut self) {
        if self.c.i.at.inert() {
            return;
        }
        let t = self.t;
        self.c.release(&t);
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        if !self.i.at.inert() {
            self.resolve_forgotten();
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if let (Some(t), false) = (self.held, self.i.at.inert()) {
            self.release(&t);
        }
    }
}
