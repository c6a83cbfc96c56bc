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

// Process-local bookkeeping, not shared memory and not part of a protocol
// loom should see: std atomics are what a fork handler may touch.
#![allow(clippy::disallowed_types)]

use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};

/// Bumped in every forked child.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Segments open in this process: descriptor (-1: free entry, -2: being
/// filled), mapping address and length. A process with more segments open
/// at once than this leaves the rest unrecorded: their children keep the
/// descriptions referenced until they exit (documented).
const MAX_SEGMENTS: usize = 1024;
static FDS: [AtomicI32; MAX_SEGMENTS] = [const { AtomicI32::new(-1) }; MAX_SEGMENTS];
static ADDRS: [AtomicUsize; MAX_SEGMENTS] = [const { AtomicUsize::new(0) }; MAX_SEGMENTS];
static LENS: [AtomicUsize; MAX_SEGMENTS] = [const { AtomicUsize::new(0) }; MAX_SEGMENTS];

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
    for (i, e) in FDS.iter().enumerate() {
        // Relaxed throughout: the registry is only read by the fork handler,
        // in the forking thread (a registration racing a fork in another
        // thread is seen whole, or "being filled" and skipped, or not at
        // all).
        if e.compare_exchange(-1, -2, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            ADDRS[i].store(addr, Ordering::Relaxed);
            LENS[i].store(len, Ordering::Relaxed);
            e.store(fd, Ordering::Relaxed);
            return;
        }
    }
}

/// Forgets a segment descriptor, before it is closed and unmapped.
pub(crate) fn unregister(fd: i32) {
    for e in &FDS {
        // Relaxed: as in `register`.
        if e.compare_exchange(fd, -1, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
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
    // SAFETY: a valid NUL-terminated path.
    let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    for (i, e) in FDS.iter().enumerate() {
        // Relaxed: as above.
        let fd = e.load(Ordering::Relaxed);
        if fd < 0 {
            continue;
        }
        if null >= 0 {
            // SAFETY: `fd` is one of our segment descriptors; dup2 replaces
            // it atomically (keeping the number, so later drops close
            // /dev/null, not something else).
            unsafe { libc::dup2(null, fd) };
        }
        let (addr, len) = (
            ADDRS[i].load(Ordering::Relaxed),
            LENS[i].load(Ordering::Relaxed),
        );
        if len > 0 {
            // SAFETY: exactly the segment's mapping (recorded when it was
            // made, forgotten before it is unmapped); MAP_FIXED replaces it
            // in place with private zero pages, so no address the child's
            // objects hold becomes invalid.
            unsafe {
                libc::mmap(
                    addr as *mut libc::c_void,
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_FIXED | libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
        }
    }
    if null >= 0 {
        // SAFETY: our own descriptor.
        unsafe { libc::close(null) };
    }
}
