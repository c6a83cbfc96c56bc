//! What every endpoint does, whatever its ring: create or open the region,
//! the init handshake, attach to an endpoint slot (taking its liveness lock),
//! detach, and remove the segment when the last endpoint leaves.

use std::ops::Range;
#[cfg_attr(loom, allow(unused_imports))]
use std::time::{Duration, Instant};

use crate::error::OpenError;
#[cfg_attr(loom, allow(unused_imports))]
use crate::layout::{
    EP_ATTACHED, EP_DETACHED, EP_FREE, EP_MASK, Geometry, Kind, LAYOUT_HASH, LOCK_INIT, MAGIC,
    STATE_READY, VERSION,
};
use crate::notify::{self, Backend, Stats, WaitCfg};
use crate::options::Options;
use crate::region::Mem;
use crate::sync::Ordering;

/// Which side of a ring an endpoint is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Producer,
    Consumer,
}

impl Role {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Role::Producer => "producer",
            Role::Consumer => "consumer",
        }
    }
}

/// Element type of a typed channel: size, alignment and a fingerprint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct TypeInfo {
    pub size: u32,
    pub align: u32,
    pub fingerprint: u64,
}

impl std::fmt::Display for TypeInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if *self == TypeInfo::default() {
            f.write_str("raw bytes")
        } else {
            write!(
                f,
                "size {} align {} fingerprint {:#x}",
                self.size, self.align, self.fingerprint
            )
        }
    }
}

/// What a caller wants: the ring kind and geometry and the element type.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Spec {
    pub kind: Kind,
    pub ty: TypeInfo,
}

pub(crate) fn geometry(spec: &Spec, opts: &Options) -> Result<Geometry, OpenError> {
    Ok(match spec.kind {
        Kind::Spsc => {
            opts.check_spsc()?;
            Geometry {
                kind: Kind::Spsc,
                capacity: opts.capacity,
                slot_size: 0,
                max_producers: 1,
                max_consumers: 1,
            }
        }
        Kind::Mpmc => {
            opts.check_mpmc()?;
            Geometry {
                kind: Kind::Mpmc,
                capacity: opts.slots,
                slot_size: opts.slot_size as u32,
                max_producers: opts.max_producers,
                max_consumers: opts.max_consumers,
            }
        }
    })
}

fn creation_backend(opts: &Options) -> Backend {
    opts.wait.backend().unwrap_or(Backend::Futex)
}

/// Writes a fresh header; READY is stored last, with Release.
fn init_header(mem: &Mem, spec: &Spec, backend: Backend, mode: u32) {
    let geo = *mem.geometry();
    let m = &mem.header().meta;
    // Relaxed stores: all published by the Release store of READY below.
    m.magic.store(MAGIC, Ordering::Relaxed);
    m.version.store(VERSION, Ordering::Relaxed);
    m.kind.store(geo.kind.to_raw(), Ordering::Relaxed);
    m.layout_hash.store(LAYOUT_HASH, Ordering::Relaxed);
    m.wake.store(backend.to_raw(), Ordering::Relaxed);
    m.capacity.store(geo.capacity, Ordering::Relaxed);
    m.slot_size.store(geo.slot_size, Ordering::Relaxed);
    m.max_producers.store(geo.max_producers, Ordering::Relaxed);
    m.max_consumers.store(geo.max_consumers, Ordering::Relaxed);
    m.total_size
        .store(geo.total_size().unwrap_or(0), Ordering::Relaxed);
    m.creator_pid.store(std::process::id(), Ordering::Relaxed);
    m.mode.store(mode, Ordering::Relaxed);
    m.type_size.store(spec.ty.size, Ordering::Relaxed);
    m.type_align.store(spec.ty.align, Ordering::Relaxed);
    m.type_fingerprint
        .store(spec.ty.fingerprint, Ordering::Relaxed);
    // Only a semaphore segment ever touches its semaphores: every endpoint
    // sleeps and wakes through the backend recorded above. (Skipping
    // `sem_init` otherwise also lets Miri run heap channels.)
    if backend == Backend::Semaphore {
        notify::init_word(&mem.header().not_empty);
        notify::init_word(&mem.header().not_full);
    }
    if geo.kind == Kind::Mpmc {
        crate::ring::mpmc::Slots::of(mem).init(mem);
    }
    // Release: pairs with the Acquire load of `state` in `open_shm`; every
    // field above is visible to an opener that sees READY.
    m.state.store(STATE_READY, Ordering::Release);
}

/// A heap region (both endpoints in this process).
pub(crate) fn create_heap(spec: &Spec, opts: &Options) -> Result<Mem, OpenError> {
    let geo = geometry(spec, opts)?;
    let mem = Mem::heap(geo);
    init_header(&mem, spec, creation_backend(opts), opts.mode);
    Ok(mem)
}

/// Creates the named segment exclusively: it is built and initialised as an
/// unnamed file (holding the init lock from the start) and only then given
/// its name, atomically and only if the name is free, so an opener never
/// sees it half made. The init lock stays held until the creator's endpoint
/// is attached ([`Attachment::attach`] releases it), so no one takes the
/// fresh segment for a stale one in between.
///
/// With `reclaim` (the `reclaim_stale` option of `create`), a stale segment
/// in the way is removed first.
pub(crate) fn create_shm(name: &str, spec: &Spec, opts: &Options) -> Result<Mem, OpenError> {
    create_named(name, spec, opts, opts.reclaim_stale)
}

fn create_named(name: &str, spec: &Spec, opts: &Options, reclaim: bool) -> Result<Mem, OpenError> {
    use crate::shm::Segment;
    let geo = geometry(spec, opts)?;
    let seg = Segment::create_private(name, &geo, opts.mode)?;
    let mut mem = Mem::shm(seg, geo);
    init_header(&mem, spec, creation_backend(opts), opts.mode);
    let seg = mem.segment_mut().expect("a segment");
    match seg.publish(name) {
        Err(e @ OpenError::AlreadyExists { .. }) if reclaim => {
            if !remove_if_stale(name) {
                return Err(e);
            }
            seg.publish(name)?;
        }
        r => r?,
    }
    Ok(mem)
}

/// Removes `name` if no live process uses it (see [`gc_one`]).
///
/// [`gc_one`]: crate::inspect::gc_one
#[cfg(not(loom))]
fn remove_if_stale(name: &str) -> bool {
    matches!(
        crate::inspect::gc_one(name),
        crate::inspect::GcOutcome::Removed
    )
}

/// The loom models do not reclaim (`inspect` reads files directly).
#[cfg(loom)]
fn remove_if_stale(_name: &str) -> bool {
    false
}

/// Reads and validates the geometry of a READY header against `file_len`.
pub(crate) fn read_geometry(
    name: &str,
    m: &crate::layout::Meta,
    file_len: u64,
) -> Result<(Geometry, Backend, TypeInfo), OpenError> {
    let corrupted = |detail: String| OpenError::Corrupted {
        name: name.to_owned(),
        detail,
    };
    // Relaxed loads: ordered after the Acquire load of READY by the caller.
    let magic = m.magic.load(Ordering::Relaxed);
    if magic != MAGIC {
        return Err(OpenError::NotShmq {
            name: name.to_owned(),
            detail: format!("bad magic {magic:#018x}"),
        });
    }
    let version = m.version.load(Ordering::Relaxed);
    let hash = m.layout_hash.load(Ordering::Relaxed);
    if version != VERSION || hash != LAYOUT_HASH {
        return Err(OpenError::VersionMismatch {
            name: name.to_owned(),
            found: version,
            expected: VERSION,
            found_hash: hash,
            expected_hash: LAYOUT_HASH,
        });
    }
    let raw_kind = m.kind.load(Ordering::Relaxed);
    let kind =
        Kind::from_raw(raw_kind).ok_or_else(|| corrupted(format!("unknown kind {raw_kind}")))?;
    let geo = Geometry {
        kind,
        capacity: m.capacity.load(Ordering::Relaxed),
        slot_size: m.slot_size.load(Ordering::Relaxed),
        max_producers: m.max_producers.load(Ordering::Relaxed),
        max_consumers: m.max_consumers.load(Ordering::Relaxed),
    };
    let ok = match kind {
        Kind::Spsc => {
            geo.capacity.is_power_of_two()
                && (64..=1 << 40).contains(&geo.capacity)
                && geo.slot_size == 0
                && geo.max_producers == 1
                && geo.max_consumers == 1
        }
        Kind::Mpmc => {
            geo.capacity.is_power_of_two()
                && (2..=1 << 24).contains(&geo.capacity)
                && geo.slot_size % 8 == 0
                && (24..=1 << 24).contains(&geo.slot_size)
                && (1..=1024).contains(&geo.max_producers)
                && (1..=1024).contains(&geo.max_consumers)
        }
    };
    if !ok {
        return Err(corrupted(format!("impossible geometry {geo:?}")));
    }
    let total = geo.total_size();
    let recorded = m.total_size.load(Ordering::Relaxed);
    if total != Some(file_len) || recorded != file_len {
        return Err(corrupted(format!(
            "header says {recorded} bytes (geometry {total:?}) but the file has {file_len}"
        )));
    }
    let raw_wake = m.wake.load(Ordering::Relaxed);
    let backend = Backend::from_raw(raw_wake)
        .ok_or_else(|| corrupted(format!("unknown wake backend {raw_wake}")))?;
    let ty = TypeInfo {
        size: m.type_size.load(Ordering::Relaxed),
        align: m.type_align.load(Ordering::Relaxed),
        fingerprint: m.type_fingerprint.load(Ordering::Relaxed),
    };
    Ok((geo, backend, ty))
}

/// Opens the named segment and checks it is what `spec` asks for.
///
/// The opener holds the segment's gate lock shared from `shm_open` until its
/// endpoint is attached ([`Attachment::attach`] releases it), and checks,
/// once it holds it, that the file still has its name: whoever removes a
/// segment holds the gate exclusive while it decides and unlinks, so an
/// opener either attaches before the decision (and is counted in it) or
/// finds the file unlinked and looks again.
pub(crate) fn open_shm(name: &str, spec: &Spec, opts: &Options) -> Result<Mem, OpenError> {
    use crate::layout::{Header, LOCK_GATE};
    use crate::shm::{Lock, Segment};
    let start = Instant::now();
    let deadline = crate::notify::deadline(start, opts.open_timeout);
    let timeout = || OpenError::Timeout {
        name: name.to_owned(),
        waited_ms: start.elapsed().as_millis(),
    };
    let seg = loop {
        let seg = Segment::open(name, opts.mode, size_of::<Header>() as u64)?;
        if !seg.lock_until(LOCK_GATE, Lock::Shared, deadline) {
            return Err(timeout());
        }
        if seg.is_unlinked() {
            // Removed while we opened it: the name is gone or names another
            // file now.
            continue;
        }
        if seg.is_short() {
            if !seg.is_locked(LOCK_INIT) {
                return Err(OpenError::NotShmq {
                    name: name.to_owned(),
                    detail: format!(
                        "it has {} bytes, fewer than a header ({}), and no creator is at work \
                         (a stale leftover: `shmq gc {name}` removes it)",
                        seg.file_len(),
                        size_of::<Header>()
                    ),
                });
            }
            // A creator (of another build: ours publish finished segments)
            // is still sizing it.
            if Instant::now() >= deadline {
                return Err(timeout());
            }
            drop(seg);
            crate::sync::pause(Duration::from_millis(1));
            continue;
        }
        break seg;
    };
    let header = seg.header();
    loop {
        // Acquire: pairs with the creator's Release store of READY in
        // `init_header`.
        if header.meta.state.load(Ordering::Acquire) == STATE_READY {
            break;
        }
        // Relaxed: a quick look for garbage while the creator may still be
        // writing; the real check follows READY.
        let magic = header.meta.magic.load(Ordering::Relaxed);
        if magic != 0 && magic != MAGIC {
            return Err(OpenError::NotShmq {
                name: name.to_owned(),
                detail: format!("bad magic {magic:#018x}"),
            });
        }
        if Instant::now() >= deadline {
            return Err(timeout());
        }
        crate::sync::pause(Duration::from_millis(1));
    }
    let (geo, backend, ty) = read_geometry(name, &header.meta, seg.len() as u64)?;
    check_spec(name, spec, opts, geo, backend, ty)?;
    Ok(Mem::shm(seg, geo))
}

/// Checks an opened segment's kind, element type and wake backend against
/// what the opener asked for.
fn check_spec(
    name: &str,
    spec: &Spec,
    opts: &Options,
    geo: Geometry,
    backend: Backend,
    ty: TypeInfo,
) -> Result<(), OpenError> {
    if geo.kind != spec.kind {
        return Err(OpenError::KindMismatch {
            name: name.to_owned(),
            expected: spec.kind,
            found: geo.kind,
        });
    }
    if ty != spec.ty {
        return Err(OpenError::TypeMismatch {
            name: name.to_owned(),
            expected: spec.ty.to_string(),
            found: ty.to_string(),
        });
    }
    if let Some(want) = opts.wait.backend() {
        if opts.wait_explicit && want != backend {
            return Err(OpenError::WaitMismatch {
                name: name.to_owned(),
                expected: want.name(),
                found: backend.name(),
            });
        }
    }
    Ok(())
}

/// The open path's header checks (`read_geometry` and the spec checks) over
/// a segment image in memory instead of a file. For fuzzing.
#[cfg(not(loom))]
#[allow(dead_code)]
pub(crate) fn open_image(image: &[u8], spec: &Spec) -> Result<Mem, OpenError> {
    use crate::layout::Header;
    let name = "<image>";
    if image.len() < size_of::<Header>() {
        return Err(OpenError::NotShmq {
            name: name.into(),
            detail: "too small".into(),
        });
    }
    // Copy the header into an aligned heap region first, so that we read it
    // through the same atomics as a mapping. (No table, no data: exactly a
    // header's bytes.)
    let probe_geo = Geometry {
        kind: Kind::Spsc,
        capacity: 0,
        slot_size: 0,
        max_producers: 0,
        max_consumers: 0,
    };
    let head = Mem::from_image(&image[..size_of::<Header>()], probe_geo);
    // Acquire: as in `open_shm`.
    if head.header().meta.state.load(Ordering::Acquire) != STATE_READY {
        return Err(OpenError::Timeout {
            name: name.into(),
            waited_ms: 0,
        });
    }
    let (geo, _backend, ty) = read_geometry(name, &head.header().meta, image.len() as u64)?;
    if geo.kind != spec.kind {
        return Err(OpenError::KindMismatch {
            name: name.into(),
            expected: spec.kind,
            found: geo.kind,
        });
    }
    if ty != spec.ty {
        return Err(OpenError::TypeMismatch {
            name: name.into(),
            expected: spec.ty.to_string(),
            found: ty.to_string(),
        });
    }
    Ok(Mem::from_image(image, geo))
}

/// Opens the segment, or creates it if there is none (race-free: a creator
/// publishes a finished segment only under a free name, so of two racing
/// creators one wins and the other opens the winner's). With
/// `reclaim_stale`, a segment that cannot be opened because its creator died
/// (never ready, or too short) and that no live process uses is replaced;
/// one that can be opened is never replaced, even if stale: it may hold
/// messages for this very endpoint.
pub(crate) fn open_or_create_shm(
    name: &str,
    spec: &Spec,
    opts: &Options,
) -> Result<Mem, OpenError> {
    let mut last = None;
    for _ in 0..64 {
        match open_shm(name, spec, opts) {
            Err(OpenError::NotFound { .. }) => {}
            Err(e @ (OpenError::Timeout { .. } | OpenError::NotShmq { .. }))
                if opts.reclaim_stale =>
            {
                if !remove_if_stale(name) {
                    return Err(e);
                }
            }
            r => return r,
        }
        match create_named(name, spec, opts, false) {
            // Created by someone else since we looked: open theirs.
            Err(e @ OpenError::AlreadyExists { .. }) => last = Some(e),
            r => return r,
        }
    }
    Err(last.unwrap_or(OpenError::NotFound {
        name: name.to_owned(),
    }))
}

/// How a constructor finds its segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum How {
    /// Create it; it must not exist.
    Create,
    /// Open it; it must exist.
    Open,
    /// Open it, creating it first if needed.
    OpenOrCreate,
}

impl How {
    pub(crate) fn region(self) -> fn(&str, &Spec, &Options) -> Result<Mem, OpenError> {
        match self {
            How::Create => create_shm,
            How::Open => open_shm,
            How::OpenOrCreate => open_or_create_shm,
        }
    }
}

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
    if !ring::claim_unresolved(mem, &s, claim, producer) {
        return true;
    }
    let pos = claim - 1;
    let who = ring::claimers(mem, role_range(mem.geometry(), role), pos);
    // Our own slot reads as dead: its lock is ours, and ours do not count.
    if who.iter().any(|&j| mem.endpoint_alive(j)) {
        return false;
    }
    let (done, word) = if producer {
        (ring::abandon(mem, &s, pos, &who), &mem.header().not_empty)
    } else {
        (ring::reclaim(mem, &s, pos, &who), &mem.header().not_full)
    };
    if done {
        // Whoever waits on that position can go on now.
        notify::wake(word, backend, &mut Stats::default());
    }
    !ring::claim_unresolved(mem, &s, claim, producer)
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
    fork_gen: u64,
    /// Set by the crash-simulation hooks: drop as if the process had died.
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
                let dead_owner = old & EP_MASK == EP_ATTACHED
                    || (old & EP_MASK == crate::layout::EP_CRASHED && mem.is_heap());
                let live_heap = old & EP_MASK == EP_ATTACHED && mem.is_heap();
                if dead_owner != (pass == 1) || live_heap {
                    // On the heap an ATTACHED slot is always a live endpoint.
                    continue;
                }
                if !mem.lock_endpoint(i) {
                    continue;
                }
                if geo.kind == Kind::Mpmc && !resolve_dead_claim(&mem, i, role, backend) {
                    mem.unlock_endpoint(i);
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
                    mem.unlock_endpoint(i);
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
                    crashed: false,
                });
            }
        }
        Err(OpenError::Busy {
            name: name.to_owned(),
            role: role.name(),
            max: range.len() as u32,
        })
    }

    /// Whether any endpoint other than us holds its liveness lock.
    fn others_alive(&self) -> bool {
        let geo = self.mem.geometry();
        (0..geo.endpoints()).any(|i| i != self.slot && self.mem.endpoint_alive(i))
    }
}

impl Attachment {
    /// Whether this endpoint was inherited through `fork()` (it belongs to
    /// the parent; see `fork.rs`).
    #[inline]
    pub(crate) fn forked(&self) -> bool {
        #[cfg(not(loom))]
        return self.fork_gen != crate::fork::generation();
        #[cfg(loom)]
        return false;
    }

    /// Whether drops must leave the ring alone: the endpoint's process
    /// "died" (a test hook), or this is a forked child's copy.
    pub(crate) fn inert(&self) -> bool {
        self.crashed || self.forked()
    }

    /// An interrupter for this endpoint's blocking calls.
    pub(crate) fn interrupter(&self) -> crate::Interrupter {
        crate::Interrupter::new(self.interrupt.clone())
    }

    /// Leaves the endpoint slot as a dying process would: attached, with its
    /// claim record, but no longer alive. Segments: drop the lock (closing
    /// the descriptor would do the same). Heap: mark the slot crashed.
    pub(crate) fn simulate_crash(&mut self) {
        self.crashed = true;
        if self.mem.is_heap() {
            let crashed = (self.state & !EP_MASK) | crate::layout::EP_CRASHED;
            // Release: as a detach would.
            self.mem
                .endpoint(self.slot)
                .state
                .store(crashed, Ordering::Release);
        } else {
            self.mem.unlock_endpoint(self.slot);
        }
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
        notify::wake(&self.mem.header().not_empty, self.wait.backend, &mut st);
        notify::wake(&self.mem.header().not_full, self.wait.backend, &mut st);
        self.mem.unlock_endpoint(self.slot);
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

pub(crate) fn peer_state(mem: &Mem, i: usize, probe: bool) -> Peer {
    // Acquire: pairs with the Release state store in `Attachment::drop`, so
    // seeing DETACHED means seeing every cursor store before it.
    let st = mem.endpoint(i).state.load(Ordering::Acquire);
    match st & EP_MASK {
        EP_FREE => Peer::NeverAttached,
        EP_ATTACHED if probe && !mem.endpoint_alive(i) => Peer::Dead,
        EP_ATTACHED => Peer::Attached,
        crate::layout::EP_CRASHED if mem.is_heap() => Peer::Dead,
        _ => Peer::Detached,
    }
}

/// Whether endpoint slot `i` holds an endpoint that died without detaching
/// (state value `st`, just loaded). Costs a syscall on segments.
pub(crate) fn died(mem: &Mem, i: usize, st: u32) -> bool {
    match st & EP_MASK {
        EP_ATTACHED => !mem.endpoint_alive(i),
        crate::layout::EP_CRASHED => mem.is_heap(),
        _ => false,
    }
}

/// The named-segment constructors shared by every endpoint type. The type
/// provides `from_mem_typed(mem, opts, name, ty)`.
macro_rules! named_constructors {
    ($ty:ident, $kind:expr) => {
        impl $ty {
            /// Creates the named segment (it must not exist) and attaches.
            ///
            /// # Errors
            /// [`OpenError`]: bad name or options, `AlreadyExists`, `NoSpace`, …
            pub fn create(name: &str, opts: &Options) -> Result<$ty, OpenError> {
                Self::connect_typed(
                    $crate::endpoint::How::Create,
                    name,
                    opts,
                    TypeInfo::default(),
                )
            }

            /// Opens an existing segment and attaches.
            ///
            /// # Errors
            /// [`OpenError`]: `NotFound`, `NotShmq`, `KindMismatch`, `Busy`, …
            pub fn open(name: &str, opts: &Options) -> Result<$ty, OpenError> {
                Self::connect_typed($crate::endpoint::How::Open, name, opts, TypeInfo::default())
            }

            /// Opens the segment, creating it first if it does not exist.
            /// Race-free: when two processes try at once, one creates and the
            /// other waits for it to be ready.
            ///
            /// # Errors
            /// As [`create`](Self::create) and [`open`](Self::open).
            pub fn open_or_create(name: &str, opts: &Options) -> Result<$ty, OpenError> {
                Self::connect_typed(
                    $crate::endpoint::How::OpenOrCreate,
                    name,
                    opts,
                    TypeInfo::default(),
                )
            }

            /// Finds the segment as `how` says, for elements of type `ty`,
            /// and attaches.
            pub(crate) fn connect_typed(
                how: $crate::endpoint::How,
                name: &str,
                opts: &Options,
                ty: TypeInfo,
            ) -> Result<$ty, OpenError> {
                let spec = $crate::endpoint::Spec { kind: $kind, ty };
                let mem = how.region()(name, &spec, opts)?;
                Self::from_mem_typed(mem, opts, name, ty)
            }
        }
    };
}
pub(crate) use named_constructors;
