//! Finding a ring's memory: create a segment (built unnamed, published
//! under its name when ready), open one (under the gate lock, waiting for
//! its creator), or make a heap region; and the init handshake.

#[cfg_attr(loom, allow(unused_imports))]
use std::time::{Duration, Instant};

use crate::error::{Backend, Kind, OpenError};
use crate::header::{Found, Spec, read_header};
#[cfg_attr(loom, allow(unused_imports))]
use crate::layout::{Geometry, LAYOUT_HASH, LOCK_INIT, MAGIC, STATE_READY, VERSION};
use crate::notify;
use crate::options::Options;
use crate::region::Mem;
use crate::sync::Ordering;

fn creation_backend(opts: &Options) -> Backend {
    if opts.spin_only {
        // `Options::check_kind` refused a sleeping strategy beside it.
        return Backend::SpinOnly;
    }
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
    let geo = spec.geometry(opts)?;
    let mem = Mem::heap(geo);
    init_header(&mem, spec, creation_backend(opts), opts.mode);
    Ok(mem)
}

/// Creates the named segment exclusively: it is built and initialised as an
/// unnamed file (holding the init lock from the start) and only then given
/// its name, atomically and only if the name is free, so an opener never
/// sees it half made. The init lock stays held until the creator's endpoint
/// is attached ([`Attachment::attach`](crate::endpoint::Attachment::attach) releases it), so no one takes the
/// fresh segment for a stale one in between.
///
/// With `reclaim` (the `reclaim_stale` option of `create`), a stale segment
/// in the way is removed first.
pub(crate) fn create_shm(name: &str, spec: &Spec, opts: &Options) -> Result<Mem, OpenError> {
    create_named(name, spec, opts, opts.reclaim_stale)
}

fn create_named(name: &str, spec: &Spec, opts: &Options, reclaim: bool) -> Result<Mem, OpenError> {
    use crate::shm::Segment;
    let geo = spec.geometry(opts)?;
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

/// Opens the named segment and checks it is what `spec` asks for.
///
/// The opener holds the segment's gate lock shared from `shm_open` until its
/// endpoint is attached ([`Attachment::attach`](crate::endpoint::Attachment::attach) releases it), and checks,
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
    loop {
        match read_header(name, seg.header(), seg.len() as u64)? {
            Found::Ready(v) => {
                spec.check(name, &v, opts)?;
                return Ok(Mem::shm(seg, v.geo));
            }
            Found::NotReady if Instant::now() >= deadline => return Err(timeout()),
            Found::NotReady => crate::sync::pause(Duration::from_millis(1)),
        }
    }
}

/// The open path's header checks over a segment image in memory instead of
/// a file. For fuzzing.
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
    match read_header(name, head.header(), image.len() as u64)? {
        Found::NotReady => Err(OpenError::Timeout {
            name: name.into(),
            waited_ms: 0,
        }),
        Found::Ready(v) => {
            spec.check(name, &v, &Options::default())?;
            Ok(Mem::from_image(image, v.geo))
        }
    }
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
