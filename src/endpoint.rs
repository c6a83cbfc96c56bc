//! The one endpoint core every ring kind and front end stands on.
//!
//! * [`Attachment`]: an endpoint slot taken (its liveness mark held), the
//!   wait configuration, statistics, the interrupt flag, fork detection;
//!   on drop, the detach, the wakes that tell peers, and the removal of the
//!   segment by the last endpoint to leave.
//! * [`Endpoint<S>`]: an attachment plus one ring side `S` (a [`Side`]: the
//!   SPSC producer or consumer ring, the MPMC producer or consumer), the
//!   poison state, the name, the element type and the options. It owns the
//!   one [`Waitable`] implementation: a side says how to try once and when
//!   its peers are gone; waiting, spinning, sleeping, liveness probes and
//!   interrupts are done here for every ring.
//! * [`endpoint_api!`]: the public methods every endpoint type shares
//!   (constructors, `name`, `stats`, `interrupter`, the test hooks), written
//!   once.

use std::ops::Range;
#[cfg_attr(loom, allow(unused_imports))]
use std::time::{Duration, Instant};

use crate::acquire::How;
use crate::error::{Error, OpenError};
use crate::header::{Spec, TypeInfo};
#[cfg_attr(loom, allow(unused_imports))]
use crate::layout::{EP_ATTACHED, EP_DETACHED, EP_FREE, EP_MASK, Geometry, Kind, LOCK_INIT};
use crate::layout::{Header, WakeWord, ep_attached};
use crate::notify::{self, Backend, Stats, WaitCfg};
use crate::notify::{Wait, Waitable};
use crate::options::Options;
use crate::region::Mem;
use crate::sync::Ordering;

pub(crate) use crate::error::Role;

/// The endpoint-slot range of a role.
pub(crate) fn role_range(geo: &Geometry, role: Role) -> Range<usize> {
    let p = geo.max_producers as usize;
    match role {
        Role::Producer => 0..p,
        Role::Consumer => p..p + geo.max_consumers as usize,
    }
}

/// Before a dead MPMC endpoint's slot `i` (whose lock we now hold) is
/// reused, its claim record must be resolved, or the record that lets
/// survivors recover its position would be lost. Resolves it here if that
/// is safe: every endpoint recording a claim of that position is dead
/// (`abandon` for a producer's unpublished slot, `reclaim` for a consumer's
/// unreleased one, the same CASes survivors use). Returns whether the slot
/// may be reused.
fn resolve_dead_claim(mem: &Mem, i: usize, role: Role, backend: Backend) -> bool {
    use crate::ring::mpmc as ring;
    let s = ring::Slots::of(mem);
    // Relaxed: ordered after the Acquire state load of the caller.
    let claim = mem.endpoint(i).claiming.load(Ordering::Relaxed);
    let producer = role == Role::Producer;
    if !ring::claim_unresolved(mem, claim, producer) {
        return true;
    }
    let pos = claim - 1;
    let who = ring::claimers(mem, role_range(mem.geometry(), role), pos);
    // Our own slot reads as dead: its lock is ours, and ours do not count.
    if who.iter().any(|&j| mem.endpoint_alive(j)) {
        return false;
    }
    let (done, word) = if producer {
        (ring::abandon(mem, pos, &who), &mem.header().not_empty)
    } else {
        (ring::reclaim(mem, &s, pos, &who), &mem.header().not_full)
    };
    if done {
        // Whoever waits on that position can go on now.
        notify::wake(word, &backend, &mut Stats::default());
    }
    !ring::claim_unresolved(mem, claim, producer)
}

/// An attached endpoint: the region, our endpoint slot (whose liveness lock we
/// hold), and what to do on drop.
pub(crate) struct Attachment {
    pub mem: Mem,
    pub slot: usize,
    pub role: Role,
    /// Our `state` word value (generation | ATTACHED).
    state: u32,
    keep: bool,
    pub wait: WaitCfg,
    pub stats: Stats,
    /// Shared with this endpoint's interrupters.
    pub interrupt: std::sync::Arc<crate::interrupt::Shared>,
    /// The fork generation this endpoint was attached in.
    #[cfg(not(loom))]
    pub fork_gen: u64,
    /// Set by the crash-simulation hooks: drop as if the process had died.
    /// (Outside loom, `fork_gen == CRASHED_GEN` says it.)
    #[cfg(loom)]
    pub crashed: bool,
}

impl Attachment {
    /// Takes a free endpoint slot of `role`.
    pub(crate) fn attach(
        mem: Mem,
        role: Role,
        opts: &Options,
        name: &str,
    ) -> Result<Attachment, OpenError> {
        let geo = *mem.geometry();
        let range = role_range(&geo, role);
        // Relaxed: the backend was published with READY (Acquire at open) or
        // written by this thread (heap).
        let raw = mem.header().meta.wake.load(Ordering::Relaxed);
        let backend = Backend::from_raw(raw).unwrap_or(Backend::Futex);
        let wait = WaitCfg {
            strategy: opts.wait,
            spin: opts.spin,
            pace: crate::notify::Pacer::new(),
            msgs_seen: 0,
            check_every: opts.liveness_interval,
            backend,
        };
        // Prefer never-used and cleanly detached slots over a dead endpoint's.
        for pass in 0..2 {
            for i in range.clone() {
                let ep = mem.endpoint(i);
                // Acquire: pairs with the Release state stores of the
                // previous owner (detach) so we see its final claim record.
                let old = ep.state.load(Ordering::Acquire);
                let usable = match old & EP_MASK {
                    EP_FREE | EP_DETACHED => pass == 0,
                    // Attached (or marked crashed): only if it died, and
                    // only once no free slot is left.
                    _ => pass == 1 && died(&mem, i, old),
                };
                if !usable || !mem.liveness().hold(i) {
                    continue;
                }
                if geo.kind == Kind::Mpmc && !resolve_dead_claim(&mem, i, role, backend) {
                    mem.liveness().release(i);
                    continue;
                }
                let new = (old & !EP_MASK).wrapping_add(4) | EP_ATTACHED;
                // AcqRel: on the heap this CAS is the mutual exclusion (no
                // locks); Release publishes our attachment to peers that load
                // the state with Acquire.
                if ep
                    .state
                    .compare_exchange(old, new, Ordering::AcqRel, Ordering::Relaxed)
                    .is_err()
                {
                    mem.liveness().release(i);
                    continue;
                }
                // Relaxed: display only.
                ep.pid.store(std::process::id(), Ordering::Relaxed);
                // Relaxed: the claim is resolved (checked above).
                ep.claiming.store(0, Ordering::Relaxed);
                if let Some(seg) = mem.segment() {
                    // Attached: a remover now counts us through our slot
                    // lock. Let go of the gate (openers) and the init lock
                    // (creators).
                    seg.unlock(crate::layout::LOCK_GATE);
                    seg.unlock(LOCK_INIT);
                }
                let interrupt =
                    crate::interrupt::Shared::new(mem.backing(), role == Role::Consumer, backend);
                return Ok(Attachment {
                    interrupt,
                    #[cfg(not(loom))]
                    fork_gen: crate::fork::generation(),
                    mem,
                    slot: i,
                    role,
                    state: new,
                    keep: opts.keep,
                    wait,
                    stats: Stats::default(),
                    #[cfg(loom)]
                    crashed: false,
                });
            }
        }
        Err(OpenError::Busy {
            name: name.to_owned(),
            role,
            max: range.len() as u32,
        })
    }

    /// Whether any endpoint other than us holds its liveness lock.
    fn others_alive(&self) -> bool {
        let geo = self.mem.geometry();
        (0..geo.endpoints()).any(|i| i != self.slot && self.mem.endpoint_alive(i))
    }
}

/// The `fork_gen` of an endpoint whose process "died" (`simulate_crash`):
/// fork generations count up from 0 by one per `fork()`, so none reaches it.
#[cfg(not(loom))]
const CRASHED_GEN: u64 = u64::MAX;

impl Attachment {
    /// Whether this endpoint was inherited through `fork()` (it belongs to
    /// the parent; see `fork.rs`).
    #[inline]
    pub(crate) fn forked(&self) -> bool {
        #[cfg(not(loom))]
        return self.fork_gen != crate::fork::generation() && self.fork_gen != CRASHED_GEN;
        #[cfg(loom)]
        return false;
    }

    /// Whether drops must leave the ring alone: the endpoint's process
    /// "died" (a test hook), or this is a forked child's copy. One
    /// comparison (grants ask it at every commit and drop): a crashed
    /// endpoint's `fork_gen` is [`CRASHED_GEN`], which no fork generation
    /// reaches.
    #[inline]
    pub(crate) fn inert(&self) -> bool {
        #[cfg(not(loom))]
        return self.fork_gen != crate::fork::generation();
        #[cfg(loom)]
        return self.crashed;
    }

    /// An interrupter for this endpoint's blocking calls.
    pub(crate) fn interrupter(&self) -> crate::Interrupter {
        crate::Interrupter::new(self.interrupt.clone())
    }

    /// Leaves the endpoint slot as a dying process would: attached, with its
    /// claim record, but no longer alive. Segments: drop the lock (closing
    /// the descriptor would do the same). Heap: mark the slot crashed.
    #[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
    pub(crate) fn simulate_crash(&mut self) {
        #[cfg(not(loom))]
        {
            self.fork_gen = CRASHED_GEN;
        }
        #[cfg(loom)]
        {
            self.crashed = true;
        }
        let slot = self.mem.endpoint(self.slot);
        self.mem.liveness().crash(self.slot, slot, self.state);
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        if self.inert() {
            return;
        }
        let ep = self.mem.endpoint(self.slot);
        let detached = (self.state & !EP_MASK) | EP_DETACHED;
        // Release: pairs with the peer's Acquire state load in its disconnect
        // check: everything we published before is visible once it sees
        // DETACHED.
        let _ =
            ep.state
                .compare_exchange(self.state, detached, Ordering::Release, Ordering::Relaxed);
        // Whoever sleeps must notice the detach now, not at its next check.
        let mut st = Stats::default();
        notify::wake(&self.mem.header().not_empty, &self.wait.backend, &mut st);
        notify::wake(&self.mem.header().not_full, &self.wait.backend, &mut st);
        self.mem.liveness().release(self.slot);
        if self.keep || self.mem.is_heap() || self.others_alive() {
            return;
        }
        let h = self.mem.header();
        // Acquire: pairs with the Release cursor stores of the endpoints.
        let unread = h.prod.load(Ordering::Acquire) != h.cons.load(Ordering::Acquire);
        if self.role == Role::Producer && unread {
            // Leave the messages for a consumer that has yet to come.
            return;
        }
        let Some(seg) = self.mem.segment() else {
            return;
        };
        // Decide under the exclusive gate: openers hold it shared until they
        // are attached, so each is either counted by the re-check below or
        // finds the file unlinked once we let go, and looks again. (They
        // hold it for microseconds; after a second we leave the segment to
        // `shmq gc` rather than hang a drop.)
        let deadline = Instant::now() + Duration::from_secs(1);
        if !seg.lock_until(
            crate::layout::LOCK_GATE,
            crate::shm::Lock::Exclusive,
            deadline,
        ) {
            return;
        }
        if !self.others_alive() && !seg.is_locked(LOCK_INIT) {
            seg.unlink_if_same();
        }
        seg.unlock(crate::layout::LOCK_GATE);
    }
}

/// State of the peer endpoint slot `i`, as seen from its state word alone
/// (cheap) or with a liveness probe (`probe`, one syscall on segments).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Peer {
    NeverAttached,
    Attached,
    Detached,
    Dead,
}

#[inline]
pub(crate) fn peer_state(mem: &Mem, i: usize, probe: bool) -> Peer {
    // Acquire: pairs with the Release state store in `Attachment::drop`, so
    // seeing DETACHED means seeing every cursor store before it.
    let st = mem.endpoint(i).state.load(Ordering::Acquire);
    // The common answer inline (every send asks it); the rest out of line.
    if ep_attached(st) && !probe {
        return Peer::Attached;
    }
    peer_state_of(mem, i, st, probe)
}

/// Whether endpoint slot `i` holds an attached endpoint: the fast paths'
/// question about the peer (one load, one mask, one branch). Anything else
/// (never attached, detached, dead) sends them to the general path, which
/// asks `peer_state` and tells those apart.
#[inline(always)]
pub(crate) fn attached(mem: &Mem, i: usize) -> bool {
    // Acquire: as in `peer_state`.
    ep_attached(mem.endpoint(i).state.load(Ordering::Acquire))
}

/// `peer_state` from the state value `st`, just loaded.
#[cold]
fn peer_state_of(mem: &Mem, i: usize, st: u32, probe: bool) -> Peer {
    match st & EP_MASK {
        EP_FREE => Peer::NeverAttached,
        EP_ATTACHED if probe && !mem.liveness().alive(i, st) => Peer::Dead,
        EP_ATTACHED => Peer::Attached,
        _ if mem.liveness().marked_dead(st) => Peer::Dead,
        _ => Peer::Detached,
    }
}

/// Whether endpoint slot `i` holds an endpoint that died without detaching
/// (state value `st`, just loaded). Costs a syscall on segments.
pub(crate) fn died(mem: &Mem, i: usize, st: u32) -> bool {
    match st & EP_MASK {
        EP_ATTACHED => !mem.liveness().alive(i, st),
        _ => mem.liveness().marked_dead(st),
    }
}

/// The per-ring half of an endpoint: its private ring state and the few
/// things that differ between rings. Everything else is [`Endpoint`]'s.
pub(crate) trait Side: Sized {
    /// The ring this side belongs to.
    const KIND: Kind;
    /// Producer or consumer.
    const ROLE: Role;
    /// What one successful attempt yields (a reservation, a record, a slot).
    type Ready;
    /// What an attempt needs (a length to reserve, or nothing).
    type Arg: Copy;
    /// Reads the shared state this side starts from.
    fn new(mem: &Mem) -> Result<Self, Error>;
    /// Tries once. `spinning`: no sleeper to wake cheaply, so it may hold
    /// out for a better moment. `Err(Full)` / `Err(Empty)` mean "not yet".
    fn attempt(
        ep: &mut Endpoint<Self>,
        arg: Self::Arg,
        spinning: bool,
    ) -> Result<Self::Ready, Error>;
    /// Probes the peers (syscall allowed): `Some(err)` if they are gone for
    /// good.
    fn peers_gone(ep: &mut Endpoint<Self>) -> Option<Error>;
    /// Settles what this side owes the ring before it detaches (publish a
    /// batch, release a forgotten grant). By default: publish.
    fn leave(ep: &mut Endpoint<Self>) {
        ep.publish();
    }
    /// Makes what this side did visible to its peers if it was held back
    /// (SPSC: commits or releases of a batch); `true` if anything was.
    fn publish_pending(&mut self, _mem: &Mem) -> bool {
        false
    }
}

/// An attached endpoint of any ring: see the module docs.
pub(crate) struct Endpoint<S: Side> {
    pub at: Attachment,
    pub side: S,
    /// The first corruption seen: every later call returns it.
    pub poisoned: Option<Error>,
    /// The fork generation the endpoint is usable in: the attachment's, or
    /// `u64::MAX` (never a generation) once poisoned, so that `usable`
    /// checks both with one comparison.
    #[cfg(not(loom))]
    usable_gen: u64,
    /// The segment name (`None` for heap rings).
    pub name: Option<String>,
    pub ty: TypeInfo,
    pub opts: Options,
}

fn corrupted_at_attach(name: Option<&str>, e: Error) -> OpenError {
    OpenError::Corrupted {
        name: name.unwrap_or("<heap>").to_owned(),
        detail: e.to_string(),
    }
}

impl<S: Side> Endpoint<S> {
    /// Attaches to `mem` as this side. The shared state is validated before
    /// taking a slot (a corrupted segment is refused without attaching) and
    /// read again after (a predecessor may have moved it meanwhile).
    pub(crate) fn attach(
        mem: Mem,
        opts: &Options,
        name: Option<&str>,
        ty: TypeInfo,
    ) -> Result<Self, OpenError> {
        S::new(&mem).map_err(|e| corrupted_at_attach(name, e))?;
        let at = Attachment::attach(mem, S::ROLE, opts, name.unwrap_or("<heap>"))?;
        let side = S::new(&at.mem).map_err(|e| corrupted_at_attach(name, e))?;
        Ok(Endpoint {
            #[cfg(not(loom))]
            usable_gen: at.fork_gen,
            at,
            side,
            poisoned: None,
            name: name.map(str::to_owned),
            ty,
            opts: opts.clone(),
        })
    }

    /// Finds the named segment as `how` says, for elements of type `ty`,
    /// and attaches.
    pub(crate) fn connect(
        how: How,
        name: &str,
        opts: &Options,
        ty: TypeInfo,
    ) -> Result<Self, OpenError> {
        let spec = Spec { kind: S::KIND, ty };
        let mem = how.region()(name, &spec, opts)?;
        Self::attach(mem, opts, Some(name), ty)
    }

    /// Another endpoint of this side on the same ring: the same heap
    /// region, or the same segment file opened again (refused if the name
    /// now names another file).
    pub(crate) fn try_clone(&self) -> Result<Self, OpenError> {
        Self::attach(self.clone_mem()?, &self.opts, self.name.as_deref(), self.ty)
    }

    /// The other side of this ring, attached to it (heap rings, and test
    /// hooks for segments).
    #[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
    pub(crate) fn attach_other<T: Side>(&self) -> Result<Endpoint<T>, OpenError> {
        Endpoint::attach(self.clone_mem()?, &self.opts, self.name.as_deref(), self.ty)
    }

    fn clone_mem(&self) -> Result<Mem, OpenError> {
        if let Some(m) = self.at.mem.share() {
            return Ok(m);
        }
        let spec = Spec {
            kind: S::KIND,
            ty: self.ty,
        };
        let name = self.name.as_deref().unwrap_or("");
        let mem = crate::acquire::open_shm(name, &spec, &self.opts)?;
        match (mem.segment(), self.at.mem.segment()) {
            (Some(new), Some(old)) if !new.same_file(old) => Err(OpenError::NotFound {
                name: name.to_owned(),
            }),
            _ => Ok(mem),
        }
    }

    /// The error every call returns once the ring is poisoned, or the
    /// endpoint was inherited through `fork()`.
    #[inline]
    pub(crate) fn usable(&self) -> Result<(), Error> {
        #[cfg(not(loom))]
        if self.usable_gen == crate::fork::generation() {
            return Ok(());
        }
        self.unusable()
    }

    /// `usable` once the quick check failed (or under loom).
    #[cfg_attr(not(loom), cold)]
    fn unusable(&self) -> Result<(), Error> {
        if let Some(e) = self.poisoned {
            return Err(e);
        }
        if self.at.forked() {
            return Err(Error::Forked);
        }
        Ok(())
    }

    /// Passes `e` on, remembering a corruption for good.
    #[inline]
    pub(crate) fn note(&mut self, e: Error) -> Error {
        if let Error::Corrupted(_) = e {
            self.poisoned = Some(e);
            #[cfg(not(loom))]
            {
                self.usable_gen = u64::MAX;
            }
        }
        e
    }

    /// The word this side sleeps on: `not_full` for producers, `not_empty`
    /// for consumers.
    fn own_word(h: &Header) -> &WakeWord {
        match S::ROLE {
            Role::Producer => &h.not_full,
            Role::Consumer => &h.not_empty,
        }
    }

    /// The other side's wake word in header `h` (what `wake_peers` wakes).
    #[inline(always)]
    fn peer_word(h: &Header) -> &WakeWord {
        match S::ROLE {
            Role::Producer => &h.not_empty,
            Role::Consumer => &h.not_full,
        }
    }

    /// Wakes whoever sleeps on the other side (after a publish or a
    /// release). No syscall unless somebody sleeps.
    #[inline]
    pub(crate) fn wake_peers(&mut self) {
        let word = Self::peer_word(self.at.mem.header());
        notify::wake(word, &self.at.wait.backend, &mut self.at.stats);
    }

    /// `publish` (a ring call that publishes, or releases), then
    /// `wake_peers`. The wake word's address is taken before the call:
    /// after its stores to shared memory, which the compiler cannot tell
    /// apart from the mapping's address in `Mem`, it would load that
    /// address again (an instruction per message, callgrind).
    #[inline(always)]
    pub(crate) fn publish_then_wake<R>(&mut self, publish: impl FnOnce(&mut S, &Mem) -> R) -> R {
        let word = Self::peer_word(self.at.mem.header());
        let r = publish(&mut self.side, &self.at.mem);
        notify::wake(word, &self.at.wait.backend, &mut self.at.stats);
        r
    }

    /// Publishes what this side held back, and wakes a sleeping peer.
    #[inline]
    pub(crate) fn publish(&mut self) {
        if self.side.publish_pending(&self.at.mem) {
            self.wake_peers();
        }
    }

    /// Wakes the other endpoints of this side (MPMC: after abandoning a
    /// slot, consumers may sleep with messages waiting behind it).
    pub(crate) fn wake_mates(&mut self) {
        let word = Self::own_word(self.at.mem.header());
        notify::wake(word, &self.at.wait.backend, &mut self.at.stats);
    }

    /// The state of endpoint slot `i` (see [`Peer`]).
    #[inline]
    pub(crate) fn peer(&self, i: usize, probe: bool) -> Peer {
        peer_state(&self.at.mem, i, probe)
    }

    /// Whether endpoint slot `i` is attached (see [`attached`]).
    #[inline(always)]
    pub(crate) fn peer_attached(&self, i: usize) -> bool {
        attached(&self.at.mem, i)
    }

    /// One attempt, or a wait as `wait` says.
    #[inline(always)]
    pub(crate) fn run(&mut self, arg: S::Arg, wait: Wait) -> Result<S::Ready, Error> {
        match wait {
            Wait::No => S::attempt(self, arg, false),
            _ => {
                let r = notify::wait_for(&mut Op { ep: self, arg }, wait);
                // A corruption found while waiting (a scribbled semaphore)
                // poisons the endpoint like one found by an attempt.
                r.map_err(|e| self.note(e))
            }
        }
    }

    /// Whether this endpoint must leave the ring alone (a forked child's
    /// copy, or a simulated crash).
    #[inline]
    pub(crate) fn inert(&self) -> bool {
        self.at.inert()
    }
}

impl<S: Side> Drop for Endpoint<S> {
    fn drop(&mut self) {
        // The side settles first; the attachment detaches after (fields
        // drop after this).
        if !self.inert() {
            S::leave(self);
        }
    }
}

/// The one [`Waitable`]: an endpoint's next attempt.
struct Op<'a, S: Side> {
    ep: &'a mut Endpoint<S>,
    arg: S::Arg,
}

impl<S: Side> Waitable for Op<'_, S> {
    type Output = S::Ready;
    #[inline]
    fn attempt(&mut self) -> Result<S::Ready, Error> {
        S::attempt(self.ep, self.arg, false)
    }
    fn attempt_spinning(&mut self) -> Result<S::Ready, Error> {
        S::attempt(self.ep, self.arg, true)
    }
    fn peer_gone(&mut self) -> Option<Error> {
        S::peers_gone(self.ep)
    }
    fn interrupted(&mut self) -> bool {
        self.ep.at.interrupt.take()
    }
    fn word(&self) -> &WakeWord {
        Endpoint::<S>::own_word(self.ep.at.mem.header())
    }
    fn cfg(&self) -> &WaitCfg {
        &self.ep.at.wait
    }
    fn cfg_mut(&mut self) -> &mut WaitCfg {
        &mut self.ep.at.wait
    }
    fn stats(&mut self) -> &mut Stats {
        &mut self.ep.at.stats
    }
}

/// What the generic code needs of a public endpoint type.
pub(crate) trait Front: Sized {
    type Side: Side;
    fn from_endpoint(ep: Endpoint<Self::Side>) -> Self;
    fn endpoint(&self) -> &Endpoint<Self::Side>;
    fn max_len(&self) -> usize;
}

/// A heap ring with both ends attached, for `channel`.
pub(crate) fn heap_pair<P: Front, C: Front>(
    opts: &Options,
    ty: TypeInfo,
) -> Result<(P, C), OpenError> {
    let spec = Spec {
        kind: <P::Side as Side>::KIND,
        ty,
    };
    let mem = crate::acquire::create_heap(&spec, opts)?;
    let other = mem.share().expect("heap regions can be shared");
    let p = Endpoint::attach(mem, opts, None, ty)?;
    let c = Endpoint::attach(other, opts, None, ty)?;
    Ok((P::from_endpoint(p), C::from_endpoint(c)))
}

/// The public methods every endpoint type shares, written once. The type
/// is a struct with a field `ep: Endpoint<S>` and implements [`Front`].
macro_rules! endpoint_api {
    ($ty:ident, $side:ty, $channel:literal, $v:literal) => {
        // Each endpoint keeps private cursor caches: movable to another
        // thread, not shareable.
        static_assertions::assert_impl_all!($ty: Send);
        static_assertions::assert_not_impl_any!($ty: Sync);

        impl $crate::endpoint::Front for $ty {
            type Side = $side;
            fn from_endpoint(ep: $crate::endpoint::Endpoint<$side>) -> Self {
                $ty { ep }
            }
            fn endpoint(&self) -> &$crate::endpoint::Endpoint<$side> {
                &self.ep
            }
            fn max_len(&self) -> usize {
                self.max_message_len()
            }
        }

        impl $ty {
            /// Creates the named segment (it must not exist) and attaches.
            ///
            /// # Errors
            /// [`OpenError`]: bad name or options, `AlreadyExists`, `NoSpace`, …
            pub fn create(name: &str, opts: &Options) -> Result<$ty, OpenError> {
                Self::connect($crate::acquire::How::Create, name, opts)
            }

            /// Opens an existing segment and attaches.
            ///
            /// # Errors
            /// [`OpenError`]: `NotFound`, `NotShmq`, `KindMismatch`, `Busy`, …
            pub fn open(name: &str, opts: &Options) -> Result<$ty, OpenError> {
                Self::connect($crate::acquire::How::Open, name, opts)
            }

            /// Opens the segment, creating it first if it does not exist.
            /// Race-free: when two processes try at once, one creates and the
            /// other waits for it to be ready.
            ///
            /// # Errors
            /// As [`create`](Self::create) and [`open`](Self::open).
            pub fn open_or_create(name: &str, opts: &Options) -> Result<$ty, OpenError> {
                Self::connect($crate::acquire::How::OpenOrCreate, name, opts)
            }

            fn connect(
                how: $crate::acquire::How,
                name: &str,
                opts: &Options,
            ) -> Result<$ty, OpenError> {
                $crate::endpoint::Endpoint::connect(how, name, opts, Default::default())
                    .map(|ep| $ty { ep })
            }

            /// The segment name (`None` for heap channels).
            ///
            /// ```
            #[doc = concat!("let (tx, rx) = ", $channel, "?;")]
            #[doc = concat!("assert_eq!(", $v, ".name(), None); // a heap ring")]
            /// # Ok::<(), shmq::OpenError>(())
            /// ```
            pub fn name(&self) -> Option<&str> {
                self.ep.name.as_deref()
            }

            /// Counters of this endpoint.
            ///
            /// ```
            #[doc = concat!("let (mut tx, mut rx) = ", $channel, "?;")]
            /// tx.send(b"x")?;
            /// drop(rx.recv()?);
            #[doc = concat!("assert_eq!(", $v, ".stats().messages, 1);")]
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            pub fn stats(&self) -> $crate::Stats {
                self.ep.at.stats
            }

            /// A handle that makes this endpoint's blocking calls return
            /// [`Error::Interrupted`](crate::Error::Interrupted), from
            /// another thread or a signal handler (see
            /// [`Interrupter`](crate::Interrupter)).
            ///
            /// ```
            #[doc = concat!("let (tx, rx) = ", $channel, "?;")]
            #[doc = concat!("let handle = ", $v, ".interrupter();")]
            /// // From another thread (or a signal handler): the endpoint's
            /// // next blocking call that has to wait returns `Interrupted`.
            /// std::thread::spawn(move || handle.interrupt()).join().unwrap();
            /// # Ok::<(), Box<dyn std::error::Error>>(())
            /// ```
            pub fn interrupter(&self) -> $crate::Interrupter {
                self.ep.at.interrupter()
            }

            #[allow(dead_code)]
            pub(crate) fn mem(&self) -> &$crate::region::Mem {
                &self.ep.at.mem
            }

            /// Test hook: drops this endpoint as if its process had been
            /// killed (no detach, claim records left in place).
            #[cfg(feature = "test-hooks")]
            #[doc(hidden)]
            pub fn __simulate_crash(mut self) {
                self.ep.at.simulate_crash();
            }

            /// Test hook: a peer scribbles `v` at byte `off` of the region.
            #[cfg(all(feature = "test-hooks", not(loom)))]
            #[doc(hidden)]
            pub fn __poke(&self, off: usize, v: u64) {
                self.ep.at.mem.poke(off, v);
            }

            /// Test hook: whether this endpoint's segment still has its name
            /// (an endpoint on an unlinked segment is orphaned). Heap: true.
            #[cfg(feature = "test-hooks")]
            #[doc(hidden)]
            pub fn __linked(&self) -> bool {
                self.ep.at.mem.segment().is_none_or(|s| !s.is_unlinked())
            }

            /// Test hook: byte offset of endpoint slot `i` (producers
            /// first, then consumers) in the region.
            #[cfg(feature = "test-hooks")]
            #[doc(hidden)]
            pub fn __endpoint_offset(&self, i: usize) -> usize {
                self.ep.at.mem.geometry().table_offset()
                    + i * size_of::<$crate::layout::EndpointSlot>()
            }

            /// Test hook: byte offset of the data area in the region.
            #[cfg(feature = "test-hooks")]
            #[doc(hidden)]
            pub fn __data_offset(&self) -> usize {
                self.ep.at.mem.geometry().data_offset()
            }
        }
    };
}
pub(crate) use endpoint_api;
