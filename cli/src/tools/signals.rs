//! SIGINT, SIGTERM and SIGHUP end `send` and `recv` cleanly: the handler
//! only records the signal; the loops notice it within [`TICK`] (blocking
//! calls wait in slices of that length, and the handler is installed
//! without `SA_RESTART`, so a blocked `read(2)` returns `EINTR`) and return,
//! so the endpoint detaches and the peer sees a clean disconnect, not a
//! dead process, and no stale segment is left behind.

// A signal handler may only touch lock-free atomics; this one is not part
// of any protocol that loom should see (clippy.toml bans std atomics for
// that reason).
#![allow(clippy::disallowed_types)]

use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

/// Longest a blocked `send` or `recv` takes to notice a signal.
pub const TICK: Duration = Duration::from_millis(100);

/// The last signal caught, 0 if none.
static CAUGHT: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    // Relaxed: a flag polled by the same process; nothing else is ordered
    // by it. An atomic store is async-signal-safe.
    CAUGHT.store(sig, Ordering::Relaxed);
}

/// Installs the handler for SIGINT, SIGTERM and SIGHUP. Failures are
/// ignored: the default action (terminate) then still applies.
pub fn install() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a zeroed `sigaction` is a valid value (empty mask, no
        // flags); we then set the handler, which only stores to an atomic.
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // No SA_RESTART: a blocked read returns EINTR, so we notice.
        sa.sa_flags = 0;
        // SAFETY: `sa.sa_mask` is a valid sigset_t to initialise.
        unsafe { libc::sigemptyset(&mut sa.sa_mask) };
        // SAFETY: `sa` is fully initialised; a null old-action pointer is
        // allowed.
        unsafe { libc::sigaction(sig, &sa, std::ptr::null_mut()) };
    }
}

/// The signal caught since [`install`], if any.
pub fn caught() -> Option<i32> {
    // Relaxed: see `on_signal`.
    match CAUGHT.load(Ordering::Relaxed) {
        0 => None,
        s => Some(s),
    }
}
