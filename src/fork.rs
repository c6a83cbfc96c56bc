//! `fork()`: an endpoint belongs to the process that opened it.
//!
//! A forked child inherits the parent's endpoints (their memory, their
//! segment descriptors and mappings), but the OFD liveness locks belong to
//! the open file descriptions, which parent and child now share: a child
//! that merely lives on would keep a dead parent's endpoints looking alive,
//! and one that used or dropped an inherited endpoint would act for the
//! parent (unlocking its slot, detaching it, committing or releasing its
//! messages).
//!
//! So a `pthread_atfork` child handler (installed at the first segment
//! open) lets go of every segment the child inherited, without releasing the
//! parent's locks: it points the descriptor at `/dev/null` with `dup2`, and
//! replaces the mapping with zeroed anonymous memory at the same address (a
//! mapping holds the file description too; the child's inherited objects
//! then read zeros, never a dangling address). It also bumps a generation
//! number. Endpoints remember the generation they were attached in; in a
//! child it differs, and every call returns
//! [`Error::Forked`](crate::Error::Forked) while drops leave the ring alone.
//!
//! The remap is also what keeps grants that cross a `fork()` harmless: a
//! child that writes, commits or drops a grant it inherited writes only its
//! private zero pages, so grants check nothing per commit or drop (the hot
//! path). For that, every mapping is recorded (the registry grows as
//! needed) and the remap cannot be skipped: if the child cannot get zero
//! pages, the inherited mapping is made inaccessible instead (a child that
//! touches it then faults; the parent's ring is never written).

// Process-local bookkeeping, not shared memory and not part of a protocol
// loom should see: std atomics are what a fork handler may touch.
#![allow(clippy::disallowed_types)]

use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

/// Bumped in every forked child.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// A descriptor of `/dev/null`, opened before any fork (-1: not yet), that
/// the child handler points inherited segment descriptors at. Opening it in
/// the child could fail (a parent at its descriptor limit forks a child at
/// it too), and then the child's drops would unlock the open file
/// descriptions it shares with the parent.
static DEV_NULL: AtomicI32 = AtomicI32::new(-1);

/// Entries per registry chunk.
const CHUNK: usize = 64;

/// Segments open in this process, a chunk at a time: descriptor (-1: free
/// entry, -2: being filled), mapping address and length. Chunks are added
/// when all are full and never freed (the fork handler walks them without
/// locks or allocation), so the registry holds as many entries as the most
/// segments this process ever had open at once, rounded up to a chunk.
struct Chunk {
    fds: [AtomicI32; CHUNK],
    addrs: [AtomicUsize; CHUNK],
    lens: [AtomicUsize; CHUNK],
    next: AtomicPtr<Chunk>,
}

impl Chunk {
    const fn new() -> Chunk {
        Chunk {
            fds: [const { AtomicI32::new(-1) }; CHUNK],
            addrs: [const { AtomicUsize::new(0) }; CHUNK],
            lens: [const { AtomicUsize::new(0) }; CHUNK],
            next: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// The chunk after this one, if any.
    fn next(&self) -> Option<&'static Chunk> {
        // Acquire: pairs with the Release CAS in `register` that linked the
        // chunk: its initialised entries are visible.
        let p = self.next.load(Ordering::Acquire);
        // SAFETY: non-null `next` pointers come from `Box::leak` in
        // `register` and are never freed.
        unsafe { p.as_ref() }
    }
}

static FIRST: Chunk = Chunk::new();

/// Every chunk, first to last.
fn chunks() -> impl Iterator<Item = &'static Chunk> {
    std::iter::successors(Some(&FIRST), |c| c.next())
}

/// The generation of this process (0 in one that was not forked since the
/// first segment was opened).
#[inline]
pub(crate) fn generation() -> u64 {
    // Relaxed: only ever changed by the fork handler in the child, before
    // any other code of the child runs.
    GENERATION.load(Ordering::Relaxed)
}

/// Records a segment: its descriptor and its mapping (`len` 0 if none), and
/// installs the fork handler once.
pub(crate) fn register(fd: i32, addr: usize, len: usize) {
    install();
    open_dev_null();
    let mut chunk = &FIRST;
    loop {
        for (i, e) in chunk.fds.iter().enumerate() {
            // Relaxed throughout the entries: the registry is only read by
            // the fork handler, in the forking thread (a registration racing
            // a fork in another thread is seen whole, or "being filled" and
            // skipped, or not at all).
            if e.compare_exchange(-1, -2, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                chunk.addrs[i].store(addr, Ordering::Relaxed);
                chunk.lens[i].store(len, Ordering::Relaxed);
                e.store(fd, Ordering::Relaxed);
                return;
            }
        }
        chunk = match chunk.next() {
            Some(next) => next,
            None => {
                let new: &'static Chunk = Box::leak(Box::new(Chunk::new()));
                // Release: pairs with the Acquire load in `Chunk::next`.
                // Acquire on failure: the chunk another thread linked first
                // is read next.
                match chunk.next.compare_exchange(
                    std::ptr::null_mut(),
                    std::ptr::from_ref(new).cast_mut(),
                    Ordering::Release,
                    Ordering::Acquire,
                ) {
                    Ok(_) => new,
                    Err(other) => {
                        // SAFETY: `new` was leaked above and never shared:
                        // this is its only reference, given back to its Box.
                        drop(unsafe { Box::from_raw(std::ptr::from_ref(new).cast_mut()) });
                        // SAFETY: as in `Chunk::next`.
                        unsafe { &*other }
                    }
                }
            }
        };
    }
}

/// Forgets a segment descriptor, before it is closed and unmapped.
pub(crate) fn unregister(fd: i32) {
    for e in chunks().flat_map(|c| c.fds.iter()) {
        // Relaxed: as in `register`.
        if e.compare_exchange(fd, -1, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
    }
}

/// Opens [`DEV_NULL`] unless it is open (each registration tries again
/// until it is: a process at its descriptor limit gets it once it has one
/// to spare).
fn open_dev_null() {
    // Relaxed: the descriptor number is all there is to see; a race between
    // two registrations opens two and closes the loser's.
    if DEV_NULL.load(Ordering::Relaxed) >= 0 {
        return;
    }
    let Ok(f) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    else {
        return;
    };
    let fd = std::os::fd::IntoRawFd::into_raw_fd(f);
    if DEV_NULL
        .compare_exchange(-1, fd, Ordering::Relaxed, Ordering::Relaxed)
        .is_err()
    {
        // SAFETY: ours, just opened, not shared.
        unsafe { libc::close(fd) };
    }
}

/// (Miri runs no fork handlers: nothing to install.)
#[cfg(miri)]
fn install() {}

#[cfg(not(miri))]
fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: registers a handler that only makes raw syscalls (open,
        // dup2, mmap, close) and touches atomics.
        unsafe { pthread_atfork(None, None, Some(in_child)) };
    });
}

#[cfg(not(miri))]
unsafe extern "C" {
    fn pthread_atfork(
        prepare: Option<unsafe extern "C" fn()>,
        parent: Option<unsafe extern "C" fn()>,
        child: Option<unsafe extern "C" fn()>,
    ) -> libc::c_int;
}

/// Runs in the child right after `fork()`, before `fork()` returns there.
#[cfg(not(miri))]
unsafe extern "C" fn in_child() {
    // Relaxed: the child has one thread, this one.
    GENERATION.fetch_add(1, Ordering::Relaxed);
    // Relaxed: as above.
    let kept = DEV_NULL.load(Ordering::Relaxed);
    let null = if kept >= 0 {
        kept
    } else {
        // SAFETY: a valid NUL-terminated path.
        unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) }
    };
    for chunk in chunks() {
        for (i, e) in chunk.fds.iter().enumerate() {
            // Relaxed: as above.
            let fd = e.load(Ordering::Relaxed);
            if fd < 0 {
                continue;
            }
            if null >= 0 {
                // SAFETY: `fd` is one of our segment descriptors; dup2
                // replaces it atomically (keeping the number, so later drops
                // close /dev/null, not something else).
                unsafe { libc::dup2(null, fd) };
            }
            let (addr, len) = (
                chunk.addrs[i].load(Ordering::Relaxed),
                chunk.lens[i].load(Ordering::Relaxed),
            );
            if len > 0 {
                // SAFETY: exactly the segment's mapping (recorded when it
                // was made, forgotten before it is unmapped).
                unsafe { let_go_of_mapping(addr as *mut libc::c_void, len) };
            }
        }
    }
    if null >= 0 && null != kept {
        // SAFETY: our own descriptor, opened above (the kept one stays: the
        // child may fork in turn).
        unsafe { libc::close(null) };
    }
}

/// Makes the child's view of an inherited segment mapping private: zero
/// pages at the same address (MAP_FIXED replaces it in place, so no address
/// the child's objects hold becomes invalid), or, if the child cannot have
/// them (no memory to commit), no access at all. Either way nothing the
/// child does through inherited endpoints or grants reaches the parent's
/// ring.
///
/// # Safety
/// `addr .. addr + len` is exactly one of this process's segment mappings.
#[cfg(not(miri))]
unsafe fn let_go_of_mapping(addr: *mut libc::c_void, len: usize) {
    // SAFETY: the caller's mapping, replaced in place.
    let zeros = unsafe {
        libc::mmap(
            addr,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_FIXED | libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if zeros == libc::MAP_FAILED {
        // SAFETY: the caller's mapping; PROT_NONE needs no memory, and
        // changes only this process's view.
        unsafe { libc::mprotect(addr, len, libc::PROT_NONE) };
    }
}
