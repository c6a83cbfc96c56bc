//! Looking at segments from outside: what `shmq ls`, `shmq stat` and
//! `shmq gc` show and do. Nothing here attaches; only `gc` takes a lock
//! (the gate, while it decides to remove a segment).

use std::os::unix::fs::MetadataExt;

use crate::error::{Backend, OpenError, Role};
use crate::header::{Found, read_header};
use crate::layout::{
    EP_ATTACHED, EP_DETACHED, EP_MASK, EndpointSlot, Header, Kind, LOCK_GATE, LOCK_INIT,
};
use crate::liveness::Liveness;
use crate::shm::{Lock, Segment};
use crate::sync::Ordering;

/// What an endpoint slot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointState {
    /// Attached, and its process holds the liveness lock.
    Alive,
    /// Marked attached, but no process holds its lock: it died.
    Dead,
    /// Detached cleanly.
    Detached,
}

/// One endpoint slot in use (never-used slots are not listed).
#[derive(Clone, Debug)]
pub struct EndpointInfo {
    /// Producer or consumer.
    pub role: Role,
    /// Slot index within its role.
    pub index: usize,
    /// Alive, dead or detached.
    pub state: EndpointState,
    /// PID recorded at attach (display only: PIDs are reused).
    pub pid: u32,
}

/// A snapshot of a segment's header and endpoints.
#[derive(Clone, Debug)]
pub struct SegmentInfo {
    /// User-facing name.
    pub name: String,
    /// Layout version (if ready).
    pub version: u32,
    /// Whether the creator finished initialising.
    pub ready: bool,
    /// Ring kind (if ready).
    pub kind: Option<Kind>,
    /// SPSC bytes or MPMC slots.
    pub capacity: u64,
    /// MPMC slot size (0 for SPSC).
    pub slot_size: u32,
    /// Most producers / consumers that may attach.
    pub max_producers: u32,
    /// Most consumers that may attach.
    pub max_consumers: u32,
    /// Typed channels: element size, alignment, fingerprint (all 0 for bytes).
    pub type_size: u32,
    /// Element alignment (typed channels).
    pub type_align: u32,
    /// Element type fingerprint (typed channels).
    pub type_fingerprint: u64,
    /// MPMC: producers found dead, ever.
    pub producers_died: u32,
    /// Bytes (SPSC) or messages (MPMC) in the ring.
    pub used: u64,
    /// File size in bytes.
    pub file_size: u64,
    /// Permission bits of the file.
    pub mode: u32,
    /// The wake backend (if ready).
    pub wake: Option<Backend>,
    /// Whether an endpoint found the segment corrupted.
    pub poisoned: bool,
    /// The creator's PID (display only).
    pub creator_pid: u32,
    /// Endpoint slots that were ever used.
    pub endpoints: Vec<EndpointInfo>,
    /// No live endpoint and no creator at work: safe to remove.
    pub stale: bool,
}

/// Reads a segment's header without attaching.
///
/// # Errors
/// `NotFound`, `PermissionDenied`, `NotShmq` (not ours), `VersionMismatch`,
/// `Corrupted`.
pub fn inspect(name: &str) -> Result<SegmentInfo, OpenError> {
    // Allow any mode for looking: we never write through this mapping.
    let seg = Segment::open(name, 0o777, size_of::<Header>() as u64)?;
    look(name, &seg)
}

/// What `inspect` reports, for an open segment.
fn look(name: &str, seg: &Segment) -> Result<SegmentInfo, OpenError> {
    let md = seg.metadata().map_err(|e| OpenError::Io {
        name: name.to_owned(),
        op: "fstat",
        source: e,
    })?;
    let mut info = SegmentInfo {
        name: name.to_owned(),
        version: 0,
        ready: false,
        kind: None,
        capacity: 0,
        slot_size: 0,
        max_producers: 0,
        max_consumers: 0,
        type_size: 0,
        type_align: 0,
        type_fingerprint: 0,
        producers_died: 0,
        used: 0,
        file_size: md.len(),
        mode: md.mode() & 0o7777,
        wake: None,
        poisoned: false,
        creator_pid: 0,
        endpoints: Vec::new(),
        stale: false,
    };
    // Someone is creating it (init lock) or opening it (gate, shared).
    let busy = seg.is_locked(LOCK_INIT) || seg.is_locked(LOCK_GATE);
    if seg.is_short() {
        // Too short for a header: a creator that died before sizing it (or
        // one of another build still at work) — unless it is not ours.
        let mut head = [0u8; 8];
        let n = seg.read_start(&mut head);
        crate::header::check_short(name, head, n)?;
        info.stale = !busy;
        return Ok(info);
    }
    let v = match read_header(name, seg.header(), seg.len() as u64)? {
        Found::NotReady => {
            info.stale = !busy;
            return Ok(info);
        }
        Found::Ready(v) => v,
    };
    info.ready = true;
    let (geo, ty) = (v.geo, v.ty);
    let h = seg.header();
    info.version = v.version;
    info.max_producers = geo.max_producers;
    info.max_consumers = geo.max_consumers;
    info.type_size = ty.size;
    info.type_align = ty.align;
    info.type_fingerprint = ty.fingerprint;
    // Relaxed: a statistic.
    info.producers_died = h.meta.producers_died.load(Ordering::Relaxed);
    info.kind = Some(geo.kind);
    info.capacity = geo.capacity;
    info.slot_size = geo.slot_size;
    info.wake = Some(v.backend);
    // Relaxed loads: a snapshot for display.
    info.poisoned = h.meta.poisoned.load(Ordering::Relaxed) != 0;
    info.creator_pid = h.meta.creator_pid.load(Ordering::Relaxed);
    info.used = h
        .prod
        .load(Ordering::Relaxed)
        .saturating_sub(h.cons.load(Ordering::Relaxed));
    let mut any_alive = false;
    for i in 0..geo.endpoints() {
        // SAFETY: the table lies inside the mapping (read_geometry checked
        // the geometry against the file size); slots are 16-byte aligned
        // and made only of atomics.
        let ep = unsafe {
            &*seg
                .ptr()
                .as_ptr()
                .add(geo.table_offset() + i * size_of::<EndpointSlot>())
                .cast::<EndpointSlot>()
        };
        // Relaxed: a snapshot for display.
        let st = ep.state.load(Ordering::Relaxed);
        let locked = seg.alive(i, st);
        any_alive |= locked;
        let state = match st & EP_MASK {
            _ if locked => EndpointState::Alive,
            EP_ATTACHED => EndpointState::Dead,
            EP_DETACHED => EndpointState::Detached,
            _ => continue,
        };
        let (role, index) = if i < geo.max_producers as usize {
            (Role::Producer, i)
        } else {
            (Role::Consumer, i - geo.max_producers as usize)
        };
        info.endpoints.push(EndpointInfo {
            role,
            index,
            state,
            // Relaxed: display only.
            pid: ep.pid.load(Ordering::Relaxed),
        });
    }
    info.stale = !any_alive && !busy;
    Ok(info)
}

/// What `gc` did with one segment.
#[derive(Debug)]
pub enum GcOutcome {
    /// Stale: removed.
    Removed,
    /// Has a live endpoint (or its creator is initialising): kept.
    InUse,
    /// Could not be read as a shmq segment: kept, with the reason.
    Skipped(OpenError),
}

/// Removes every shmq segment that no live process uses. Never removes one
/// with a live endpoint, nor one being created or opened. Returns what it
/// did with each segment.
///
/// # Errors
/// If `/dev/shm` cannot be listed.
pub fn gc() -> std::io::Result<Vec<(String, GcOutcome)>> {
    let mut out = Vec::new();
    for name in crate::shm::list()? {
        if crate::shm::validate_name(&name).is_err() {
            continue;
        }
        let outcome = gc_one(&name);
        out.push((name, outcome));
    }
    Ok(out)
}

/// [`gc`] for one segment: removes `name` if no live process uses it.
///
/// The decision is made holding the segment's gate lock exclusive, as the
/// last endpoint to leave does: no opener can attach meanwhile, and only
/// the very file judged is removed (not a newer one under the same name).
pub fn gc_one(name: &str) -> GcOutcome {
    let seg = match Segment::open(name, 0o777, size_of::<Header>() as u64) {
        Ok(seg) => seg,
        Err(e) => return GcOutcome::Skipped(e),
    };
    if !seg.try_lock(LOCK_GATE, Lock::Exclusive).unwrap_or(false) {
        // An opener or another remover is at work.
        return GcOutcome::InUse;
    }
    match look(name, &seg) {
        Ok(info) if info.stale => {
            if seg.unlink_if_same() {
                GcOutcome::Removed
            } else {
                GcOutcome::Skipped(OpenError::NotFound {
                    name: name.to_owned(),
                })
            }
        }
        Ok(_) => GcOutcome::InUse,
        Err(e) => GcOutcome::Skipped(e),
    }
}
