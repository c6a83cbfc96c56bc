//! SIGINT, SIGTERM and SIGHUP end `send` and `recv` cleanly.
//!
//! The handler does only async-signal-safe work: it records the signal,
//! makes the armed endpoint's blocking call return `Error::Interrupted`
//! ([`shmq::Interrupter::interrupt`]), and writes a byte to a self-pipe.
//! Every wait for stdin, and every pause, polls that pipe together with
//! what it waits for, and the pipe is never drained: a signal that lands
//! just before a wait is seen by it, not at the next input. An interrupt
//! likewise stays pending until a wait of the endpoint takes it. The loops
//! then return, the endpoint detaches, and the peer sees a clean
//! disconnect, not a dead process; no stale segment is left behind.
//!
//! `send` and `recv` run on one thread, which the handler interrupts: it
//! runs to completion between two instructions of that thread, which is
//! what [`Armed`]'s drop relies on.
//!
//! Test hook: `SHMQ_CLI_TEST_STALL_MS=N` makes every wait for stdin pause N
//! ms between its last look for a signal and the wait itself, so that a
//! test can land a signal in that window (cli/tests/tools.rs).

// A signal handler may only touch lock-free atomics; these are not part of
// any protocol that loom should see (clippy.toml bans std atomics for that
// reason).
#![allow(clippy::disallowed_types)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr;
use std::sync::atomic::{AtomicI32, AtomicPtr, Ordering};
use std::time::Duration;

use shmq::Interrupter;

/// The last signal caught, 0 if none.
static CAUGHT: AtomicI32 = AtomicI32::new(0);
/// The self-pipe: the handler writes to `PIPE_W`, waits poll `PIPE_R`.
static PIPE_R: AtomicI32 = AtomicI32::new(-1);
static PIPE_W: AtomicI32 = AtomicI32::new(-1);
/// `SHMQ_CLI_TEST_STALL_MS` (module docs), read by [`install`].
static STALL_MS: AtomicI32 = AtomicI32::new(0);
/// The interrupter of the endpoint in use, or null (see [`arm`]).
static TARGET: AtomicPtr<Interrupter> = AtomicPtr::new(ptr::null_mut());

extern "C" fn on_signal(sig: libc::c_int) {
    // SAFETY: `__errno_location` returns this thread's errno; saved here
    // and restored below, so the interrupted code never sees the handler's
    // syscalls change it.
    let errno = unsafe { *libc::__errno_location() };
    // SeqCst everywhere here: the handler and the code it interrupts are
    // one thread, so any ordering would do; these run once per signal.
    CAUGHT.store(sig, Ordering::SeqCst);
    let fd = PIPE_W.load(Ordering::SeqCst);
    if fd >= 0 {
        // A full pipe (EAGAIN) already holds a byte; nothing else can fail
        // that we could act on here.
        // SAFETY: write(2) is async-signal-safe; the buffer is one valid byte.
        let _ = unsafe { libc::write(fd, [1u8].as_ptr().cast(), 1) };
    }
    let target = TARGET.load(Ordering::SeqCst);
    if !target.is_null() {
        // SAFETY: a non-null `TARGET` points to the live boxed interrupter
        // of an `Armed` guard: the guard clears it before freeing the box,
        // on the one thread this handler interrupts (module docs).
        // `interrupt` is async-signal-safe (atomics and one futex wake or
        // semaphore post).
        unsafe { (*target).interrupt() };
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// Creates the self-pipe and installs the handler for SIGINT, SIGTERM and
/// SIGHUP.
///
/// # Errors
/// If the pipe cannot be created (no descriptors left). A handler that
/// cannot be installed is not an error: the default action (terminate)
/// then still applies.
pub fn install() -> io::Result<()> {
    let mut fds = [-1; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    PIPE_R.store(fds[0], Ordering::SeqCst);
    PIPE_W.store(fds[1], Ordering::SeqCst);
    if let Some(ms) = std::env::var("SHMQ_CLI_TEST_STALL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        STALL_MS.store(ms, Ordering::SeqCst);
    }
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a zeroed `sigaction` is a valid value (empty mask, no
        // flags); we then set the handler, which is async-signal-safe.
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // No SA_RESTART: a blocked read(2) returns EINTR, so we notice.
        sa.sa_flags = 0;
        // SAFETY: `sa.sa_mask` is a valid sigset_t to initialise.
        unsafe { libc::sigemptyset(&mut sa.sa_mask) };
        // SAFETY: `sa` is fully initialised; a null old-action pointer is
        // allowed.
        unsafe { libc::sigaction(sig, &sa, ptr::null_mut()) };
    }
    Ok(())
}

/// The signal caught since [`install`], if any.
pub fn caught() -> Option<i32> {
    match CAUGHT.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// While this guard lives, a signal interrupts the blocking calls of the
/// endpoint whose interrupter it holds.
pub struct Armed(*mut Interrupter);

/// Arms `i`: a signal caught before (while the endpoint was being opened)
/// interrupts it at once, the next ones from the handler.
pub fn arm(i: Interrupter) -> Armed {
    let p = Box::into_raw(Box::new(i));
    TARGET.store(p, Ordering::SeqCst);
    if caught().is_some() {
        // SAFETY: `p` is the box we just leaked; it lives until our drop.
        unsafe { (*p).interrupt() };
    }
    Armed(p)
}

impl Drop for Armed {
    fn drop(&mut self) {
        TARGET.store(ptr::null_mut(), Ordering::SeqCst);
        // SAFETY: `self.0` came from `Box::into_raw` in `arm` and is freed
        // only here. The handler runs on this thread (module docs): one
        // that loaded the pointer before the store above has returned
        // before we got here, and later ones load null.
        drop(unsafe { Box::from_raw(self.0) });
    }
}

/// The error of a wait that a signal ended. Not `ErrorKind::Interrupted`,
/// which `BufRead` and `write_all` would retry for ever.
pub fn interrupted_error() -> io::Error {
    io::Error::other("interrupted by a signal")
}

/// Polls `fd` (if any) for input and the self-pipe, for at most `timeout`
/// (`None`: no limit). `Ok(true)` if `fd` is readable (or at end of input,
/// or in error: the read will tell), `Ok(false)` on timeout, the error of
/// [`interrupted_error`] once a signal was caught.
fn poll(fd: Option<BorrowedFd<'_>>, timeout: Option<Duration>) -> io::Result<bool> {
    let pipe = PIPE_R.load(Ordering::SeqCst);
    let mut pfds = [
        libc::pollfd {
            fd: pipe,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: fd.map_or(-1, |f| f.as_raw_fd()),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as libc::c_int);
    loop {
        if caught().is_some() {
            return Err(interrupted_error());
        }
        let stall = STALL_MS.load(Ordering::SeqCst);
        if stall > 0 && fd.is_some() {
            // The test hook: a signal now is only seen through the pipe.
            // (`thread::sleep` resumes after the handler ran.)
            std::thread::sleep(Duration::from_millis(stall as u64));
        }
        // SAFETY: `pfds` is a valid array of two pollfds for the duration
        // of the call (a negative fd is ignored by poll(2)).
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), 2, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                // A handler ran: the check above sees it. (Restarting with
                // the full timeout is fine: the pipe is readable now.)
                continue;
            }
            return Err(e);
        }
        if pfds[0].revents != 0 || caught().is_some() {
            return Err(interrupted_error());
        }
        return Ok(n > 0);
    }
}

/// Waits until `fd` has input (or is at end of input, or in error), or a
/// signal is caught (the error of [`interrupted_error`]).
pub fn wait_readable(fd: BorrowedFd<'_>) -> io::Result<()> {
    poll(Some(fd), None).map(|_| ())
}

/// Sleeps for `d`, or until a signal is caught: then `Err(signal)`.
pub fn pause(d: Duration) -> Result<(), i32> {
    match poll(None, Some(d)) {
        Ok(_) => Ok(()),
        // Anything but a signal (poll failing): we slept less, which the
        // caller's loop tolerates.
        Err(_) => caught().map_or(Ok(()), Err),
    }
}
