//! Waiting and waking: wait strategies, the futex and POSIX-semaphore
//! backends, the waiter-count protocol, and per-endpoint statistics.
//!
//! # The waiter-count protocol
//!
//! Each direction has a [`WakeWord`]: one `u64` `state` whose low half is the
//! `epoch` (the futex word) and whose high half counts registered sleepers,
//! plus a process-shared semaphore.
//!
//! * Waiter: `state += 1 << 32` (SeqCst; the old low half is the epoch it
//!   will sleep on), `fence(SeqCst)`, re-check the ring; only if still not
//!   ready, sleep on the epoch (futex) or the semaphore, with a timeout; then
//!   unregister, unless a waker did so already (the epoch moved).
//! * Waker: publish (Release store of a cursor or a slot sequence),
//!   `fence(SeqCst)`, read `state`: only if sleepers are registered, CAS
//!   `state` to `(epoch + 1, 0 sleepers)` and make the wake syscall (one
//!   futex wake, or one semaphore post per sleeper taken).
//!
//! The two SeqCst fences make the Dekker pattern sound: either the waiter's
//! re-check sees the publish, or the waker sees the waiter's registration. So
//! no wakeup is lost, and while nobody sleeps a wake costs one fence and one
//! load — no syscall.
//!
//! Because the waker takes every registration it wakes, a sleeper that was
//! woken but has not run yet does not make the next publish wake again: one
//! syscall per sleep, not per message.

use std::time::{Duration, Instant};

use crate::error::{Corruption, Error};
use crate::layout::WakeWord;
use crate::sync::{Ordering, fence};

/// How an endpoint waits when the ring is full (producer) or empty
/// (consumer).
///
/// The blocking strategies first spin for the endpoint's spin window
/// ([`Options::spin`](crate::Options::spin)), then sleep in the kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WaitStrategy {
    /// Busy-wait with a spin hint. Lowest latency; burns a core while waiting.
    /// When every endpoint of a ring spins, create it with
    /// [`Options::spin_only`](crate::Options::spin_only): its publishes and
    /// releases then skip the check for sleepers.
    Spin,
    /// Spin for the spin window, then `sched_yield` in a loop.
    SpinThenYield,
    /// Spin for the spin window, then sleep on a shared futex (the default).
    #[default]
    Futex,
    /// Spin for the spin window, then sleep on a process-shared POSIX
    /// semaphore (`sem_timedwait`).
    Semaphore,
}

impl WaitStrategy {
    /// The kernel mechanism this strategy sleeps on, if any.
    pub(crate) fn backend(self) -> Option<Backend> {
        match self {
            WaitStrategy::Futex => Some(Backend::Futex),
            WaitStrategy::Semaphore => Some(Backend::Semaphore),
            WaitStrategy::Spin | WaitStrategy::SpinThenYield => None,
        }
    }
}

/// The sleeping mechanism of a segment, fixed at creation and stored in the
/// header so that every waker uses the one every sleeper sleeps on.
pub(crate) use crate::error::Backend;

/// Counters kept by each endpoint; read them with `stats()`.
///
/// `wake_syscalls` counts the futex wakes and semaphore posts this endpoint
/// issued; in a steady stream where the peer never sleeps it stays at zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    // `messages` and `bytes` are not neighbours: the hot path adds to both,
    // and as neighbours the compiler pairs the two adds into six vector
    // instructions where two scalar ones do.
    /// Messages sent (producers) or received (consumers).
    pub messages: u64,
    /// Times this endpoint went to sleep in the kernel.
    pub waits: u64,
    /// Payload bytes sent or received.
    pub bytes: u64,
    /// Wake syscalls issued (futex wakes, semaphore posts).
    pub wake_syscalls: u64,
    /// Sleeps that ended without the condition being met and before the
    /// timeout chunk elapsed.
    pub spurious_wakeups: u64,
    /// Total time spent asleep, in nanoseconds.
    pub sleep_ns: u64,
    /// MPMC: slots skipped because their claimer died (consumers), or
    /// reclaimed from a dead consumer (producers).
    pub abandoned: u64,
}

/// An endpoint's waiting configuration.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WaitCfg {
    pub strategy: WaitStrategy,
    pub spin: Duration,
    /// How the spin phase paces its looks ([`Pacer`], fed this endpoint's
    /// message count at each wait's start).
    pub pace: Pacer,
    /// `Stats::messages` when the last wait began.
    pub msgs_seen: u64,
    /// Longest single sleep; after it the peer's liveness is probed.
    pub check_every: Duration,
    pub backend: Backend,
}

/// Most spin hints between two looks of a spinning waiter.
pub(crate) const MAX_BACKOFF: u32 = 64;

/// Looks after which a waiter that backs off looks as often as it can
/// again, for the rest of that wait: the stream has paused, and a lone
/// message must not wait for a long pause to end.
const IDLE_LOOKS: u32 = 8;

/// Spin hints between two looks in the next wait, from the last wait's
/// `back` and `found`: the messages this endpoint moved since that wait
/// began (the one it waited for, and any it found without waiting).
///
/// A waiter that looks as often as it can keeps pulling the line the peer
/// is writing into its own cache, and each look costs the peer a transfer
/// of that line back: with a record every 50-200 ns, a consumer that looks
/// every spin hint slows the producer it waits for. So a waiter that found
/// more than its one message (the peer got ahead while it looked less
/// often: a stream) doubles its pause, up to `MAX_BACKOFF` hints, and lets
/// the peer run ahead and hand over several records per look, which it
/// then takes without waiting; one that found only its one message (a
/// ping-pong, or messages far apart) halves it, back to one hint: there
/// each look is the one that sees the message. Measured in C first, on
/// the record layout of the SPSC ring, variants alternating every 50 000
/// messages in one pair of processes (so both saw the same placement of the
/// VM's CPUs): against one hint per look, 64 hints gave 1.8-2.6x at 64 B
/// and 1.2-1.8x at 1 KiB, this rule 1.8-2.5x and 1.04-1.5x.
pub(crate) fn next_backoff(back: u32, found: u64) -> u32 {
    // Under loom every hint is a yield to the model's scheduler: one per
    // look keeps the models' state space as it was.
    if cfg!(loom) {
        1
    } else if found >= 2 {
        back.saturating_mul(2).clamp(1, MAX_BACKOFF)
    } else {
        (back / 2).max(1)
    }
}

/// Paces a loop that retries a `try_` call (`try_recv_into`, `try_send`,
/// ...) the way the blocking calls pace their own waiting: one spin hint
/// between tries while each wait ends with just the one message it waited
/// for (a ping-pong: each try may be the one that sees it), up to 64 while
/// the peer keeps ahead of the loop (a stream: a try that looks at the
/// ring pulls the line the peer is writing away from it, so fewer tries
/// let the peer hand over several messages per try); after 8 tries in one
/// wait, one hint again. It never sleeps; a loop that may wait long should
/// sleep or block itself.
///
/// ```
/// use shmq::{Error, Pacer};
/// let (mut tx, mut rx) = shmq::spsc::channel(&shmq::Options::new())?;
/// tx.send(b"a")?;
/// tx.send(b"b")?;
/// let (mut pace, mut buf, mut got) = (Pacer::new(), [0u8; 8], 0);
/// while got < 2 {
///     match rx.try_recv_into(&mut buf) {
///         Ok(_) => {
///             got += 1;
///             pace.moved();
///         }
///         Err(Error::Empty) => pace.wait(),
///         Err(e) => return Err(e.into()),
///     }
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Pacer {
    /// Spin hints between two tries in the current wait.
    back: u32,
    /// Messages moved since the current (or last) wait began.
    moved: u64,
    /// Tries in the current wait; `None` between waits.
    tries: Option<u32>,
}

impl Default for Pacer {
    fn default() -> Self {
        Pacer::new()
    }
}

impl Pacer {
    /// A pacer for a loop that has not waited yet (one hint per try).
    ///
    /// ```
    /// let pace = shmq::Pacer::new();
    /// # let _ = pace;
    /// ```
    pub fn new() -> Pacer {
        Pacer {
            back: 1,
            moved: 0,
            tries: None,
        }
    }

    /// Call after a `try_` call succeeded: a message (or slot) moved.
    ///
    /// ```
    /// let mut pace = shmq::Pacer::new();
    /// pace.moved();
    /// ```
    pub fn moved(&mut self) {
        self.moved = self.moved.wrapping_add(1);
        self.tries = None;
    }

    /// Call after a `try_` call found `Empty` (or `Full`): pauses before
    /// the next try, from one to 64 spin hints (see the type's docs).
    ///
    /// ```
    /// let mut pace = shmq::Pacer::new();
    /// pace.wait();
    /// ```
    pub fn wait(&mut self) {
        self.pause();
    }

    /// A wait begins after `moved` more messages moved than `moved()` was
    /// told of: learn its pace from the wait before it.
    pub(crate) fn start(&mut self, moved: u64) {
        self.back = next_backoff(self.back, self.moved.wrapping_add(moved));
        self.moved = 0;
        self.tries = Some(0);
    }

    /// [`wait`](Self::wait), returning the spin hints it paused.
    pub(crate) fn pause(&mut self) -> u32 {
        if self.tries.is_none() {
            self.start(0);
        }
        let tries = self.tries.unwrap_or(0);
        let hints = if tries >= IDLE_LOOKS { 1 } else { self.back };
        for _ in 0..hints {
            crate::sync::spin_hint();
        }
        self.tries = Some(tries.saturating_add(1));
        hints
    }
}

/// One registered sleeper in `WakeWord::state`.
const ONE_SLEEPER: u64 = 1 << 32;

fn epoch_of(state: u64) -> u32 {
    state as u32
}

fn sleepers_of(state: u64) -> u32 {
    (state >> 32) as u32
}

/// Wakes whoever sleeps on `word`. Call right after publishing.
/// Nothing at all in a spin-only segment (`Options::spin_only`).
#[inline]
pub(crate) fn wake(word: &WakeWord, backend: &Backend, stats: &mut Stats) {
    if *backend == Backend::SpinOnly {
        // Nobody sleeps in this segment: its endpoints spin or yield, and
        // a version that could sleep cannot open it (`VERSION`).
        return;
    }
    // SeqCst fence: pairs with the sleeper's SeqCst fence after it registers
    // in `block_on_slow`. Either that waiter's re-check sees the publish that
    // precedes this fence, or this load sees its registration.
    fence(Ordering::SeqCst);
    // Relaxed: ordered by the fence above.
    if sleepers_of(word.state.load(Ordering::Relaxed)) == 0 {
        return;
    }
    wake_slow(word, *backend, stats);
}

/// Most endpoints a segment can have (1024 producers and 1024 consumers,
/// checked at open), so the most that can sleep on one wake word.
const MAX_SLEEPERS: u32 = 2048;

#[cold]
fn wake_slow(word: &WakeWord, backend: Backend, stats: &mut Stats) {
    // Relaxed: a starting guess for the CAS, which validates it.
    let mut s = word.state.load(Ordering::Relaxed);
    let taken = loop {
        let n = sleepers_of(s);
        if n == 0 {
            return;
        }
        let next = u64::from(epoch_of(s).wrapping_add(1));
        // AcqRel: takes every registration and bumps the epoch in one step.
        // Release pairs with the SeqCst (so Acquire) registration RMW of any
        // later waiter: seeing the new epoch, it also sees our publish.
        match word
            .state
            .compare_exchange_weak(s, next, Ordering::AcqRel, Ordering::Relaxed)
        {
            Ok(_) => break n,
            Err(cur) => s = cur,
        }
    };
    match backend {
        Backend::Futex => {
            sys::futex_wake(word);
            stats.wake_syscalls += 1;
        }
        Backend::Semaphore => {
            // A semaphore whose flags a peer scribbled would make the C
            // library abort us: post nothing. Its sleepers check the same
            // word before each wait and return `Corrupted`.
            if sys::sem_check(word).is_err() {
                return;
            }
            // One post per sleeper taken. A peer may have scribbled any count
            // here; there are never more sleepers than endpoints, so post at
            // most that many times rather than up to 2^32.
            let n = taken.min(MAX_SLEEPERS);
            for _ in 0..n {
                sys::sem_post(word);
            }
            stats.wake_syscalls += u64::from(n);
        }
        // `wake` returns before the fence in a spin-only segment.
        Backend::SpinOnly => {}
    }
}

/// What a wait loop needs from an endpoint.
pub(crate) trait Waitable {
    type Output;
    /// Try once; `Err(Full)` / `Err(Empty)` mean "not yet".
    fn attempt(&mut self) -> Result<Self::Output, Error>;
    /// Try once while spinning (no sleeper to wake cheaply): may hold out
    /// for a better moment than `attempt` would.
    fn attempt_spinning(&mut self) -> Result<Self::Output, Error> {
        self.attempt()
    }
    /// Checks the peer (syscall allowed): `Some(err)` if it is gone for good.
    fn peer_gone(&mut self) -> Option<Error>;
    /// Takes a pending interrupt (see [`Interrupter`](crate::Interrupter)).
    fn interrupted(&mut self) -> bool;
    fn word(&self) -> &WakeWord;
    fn cfg(&self) -> &WaitCfg;
    /// The endpoint's waiting state ([`WaitCfg::pace`] and the count it
    /// learns from).
    fn cfg_mut(&mut self) -> &mut WaitCfg;
    fn stats(&mut self) -> &mut Stats;
}

/// How long an operation may wait.
#[derive(Clone, Copy, Debug)]
pub enum Wait {
    /// Not at all: one attempt (`try_` variants).
    No,
    /// Until it succeeds or fails for good.
    Forever,
    /// Until this instant (`_timeout` variants).
    Until(Instant),
}

impl Wait {
    /// At most `d` from now (for ever if that is beyond what `Instant` can
    /// say, e.g. `Duration::MAX`).
    pub(crate) fn at_most(d: Duration) -> Wait {
        match Instant::now().checked_add(d) {
            Some(t) => Wait::Until(t),
            None => Wait::Forever,
        }
    }
}

/// Writes the three waiting variants of one operation: `$wait` (for as
/// long as it takes; documented by the caller), `$try` (no wait) and
/// `$timeout` (at most a duration). `$body` runs with `$s` bound to `self`
/// and `$w` to the [`Wait`].
macro_rules! waiting_variants {
    (
        $(#[$doc:meta])*
        fn $wait:ident / $try:ident / $timeout:ident ($($arg:ident: $t:ty),*) -> $ret:ty,
        |$s:ident, $w:ident| $body:expr
    ) => {
        $(#[$doc])*
        #[inline]
        pub fn $wait(&mut self $(, $arg: $t)*) -> $ret {
            let ($s, $w) = (self, $crate::notify::Wait::Forever);
            $body
        }

        #[doc = concat!("As [`", stringify!($wait), "`](Self::", stringify!($wait), "), without waiting: `Full` (sending) or `Empty` (receiving) where it would wait.")]
        ///
        #[doc = concat!("A loop that retries this in a busy stream goes faster if it looks less often while the peer keeps ahead of it, as [`", stringify!($wait), "`](Self::", stringify!($wait), ") does: [`Pacer`](crate::Pacer) paces such a loop the same way.")]
        ///
        /// # Errors
        #[doc = concat!("As [`", stringify!($wait), "`](Self::", stringify!($wait), "), plus `Full` / `Empty`.")]
        #[inline]
        pub fn $try(&mut self $(, $arg: $t)*) -> $ret {
            let ($s, $w) = (self, $crate::notify::Wait::No);
            $body
        }

        #[doc = concat!("As [`", stringify!($wait), "`](Self::", stringify!($wait), "), waiting at most `timeout`.")]
        ///
        /// # Errors
        #[doc = concat!("As [`", stringify!($wait), "`](Self::", stringify!($wait), "), plus `Timeout`.")]
        #[inline]
        pub fn $timeout(&mut self $(, $arg: $t)*, timeout: std::time::Duration) -> $ret {
            let ($s, $w) = (self, $crate::notify::Wait::at_most(timeout));
            $body
        }
    };
}
pub(crate) use waiting_variants;

/// `start + d`, or a point about a century away when that overflows
/// (`Duration::MAX` means "no limit").
pub(crate) fn deadline(start: Instant, d: Duration) -> Instant {
    start
        .checked_add(d)
        .or_else(|| start.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
        .unwrap_or(start)
}

/// Runs `w` once, or waits for it as `wait` says.
#[inline(always)]
pub(crate) fn wait_for<W: Waitable>(w: &mut W, wait: Wait) -> Result<W::Output, Error> {
    match wait {
        Wait::No => w.attempt(),
        Wait::Forever => block_on(w, None),
        Wait::Until(d) => block_on(w, Some(d)),
    }
}

fn not_yet(e: &Error) -> bool {
    matches!(e, Error::Full | Error::Empty)
}

/// Waits until `w.attempt()` succeeds, fails for good, or `deadline` passes.
/// The first attempt is inlined into the caller; the waiting is not.
#[inline]
pub(crate) fn block_on<W: Waitable>(
    w: &mut W,
    deadline: Option<Instant>,
) -> Result<W::Output, Error> {
    match w.attempt() {
        Err(e) if not_yet(&e) => block_on_slow(w, deadline),
        r => r,
    }
}

#[inline(never)]
fn block_on_slow<W: Waitable>(w: &mut W, deadline: Option<Instant>) -> Result<W::Output, Error> {
    let cfg = *w.cfg();
    let start = Instant::now();
    let mut last_check = start;
    // In a spin-only segment every endpoint spins, whatever its strategy (an
    // explicit sleeping one was refused at open; the default spins here).
    let blocking = cfg.strategy.backend().is_some() && cfg.backend != Backend::SpinOnly;
    let spin_for = if blocking { cfg.spin } else { Duration::MAX };
    // Spin hints (or yields) since the clock was last read.
    let mut hints: u32 = 0;
    // The pace of this wait, learnt from what moved since the last one
    // began; kept for the next wait before any way out of this one.
    let moved = w.stats().messages;
    let c = w.cfg_mut();
    c.pace.start(moved.wrapping_sub(c.msgs_seen));
    c.msgs_seen = moved;
    let mut pace = c.pace;
    if w.interrupted() {
        return Err(Error::Interrupted);
    }
    // Phase 1: spin (and, for SpinThenYield, yield) without syscalls.
    if !blocking || !cfg.spin.is_zero() {
        loop {
            hints += if cfg.strategy == WaitStrategy::SpinThenYield && start.elapsed() > cfg.spin {
                crate::sync::yield_now();
                1
            } else {
                pace.pause()
            };
            match w.attempt_spinning() {
                Err(e) if not_yet(&e) => {}
                r => return r,
            }
            if w.interrupted() {
                return Err(Error::Interrupted);
            }
            if hints >= 128 {
                hints = 0;
                let now = Instant::now();
                if deadline.is_some_and(|d| now >= d) {
                    return Err(Error::Timeout);
                }
                if now.duration_since(last_check) >= cfg.check_every {
                    last_check = now;
                    if let Some(e) = w.peer_gone() {
                        return w.attempt().or(Err(e));
                    }
                }
                if now.duration_since(start) >= spin_for {
                    break;
                }
            }
        }
    }
    // Phase 2: sleep in the kernel. The peer's liveness is probed every
    // `check_every`, however the sleeps end: a sleep cut short (a signal, a
    // wake for another sleeper on this word) does not start the count anew.
    loop {
        let now = Instant::now();
        if now.duration_since(last_check) >= cfg.check_every {
            last_check = now;
            if let Some(e) = w.peer_gone() {
                return w.attempt().or(Err(e));
            }
        }
        let remaining = match deadline {
            Some(d) if now >= d => return Err(Error::Timeout),
            Some(d) => d - now,
            None => Duration::MAX,
        };
        let to_check = cfg
            .check_every
            .saturating_sub(now.duration_since(last_check));
        let chunk = remaining.min(to_check);
        // SeqCst: registration, part of the Dekker pair with `wake` (see the
        // module docs); as an Acquire it also pairs with the Release epoch
        // bump in `wake_slow`: seeing a bumped epoch, we see its publish.
        let epoch = epoch_of(w.word().state.fetch_add(ONE_SLEEPER, Ordering::SeqCst));
        // SeqCst fence: pairs with the waker's SeqCst fence in `wake` (after
        // a publish, or an interrupt: its flag store precedes that fence
        // too).
        fence(Ordering::SeqCst);
        if w.interrupted() {
            unregister(w.word(), epoch);
            return Err(Error::Interrupted);
        }
        match w.attempt() {
            Err(e) if not_yet(&e) => {}
            r => {
                unregister(w.word(), epoch);
                return r;
            }
        }
        let t0 = Instant::now();
        let woke = sys::sleep(w.word(), cfg.backend, epoch, chunk);
        if woke != Woke::Token {
            unregister(w.word(), epoch);
        }
        if let Woke::Corrupt(c) = woke {
            return Err(Error::Corrupted(c));
        }
        // Woken by a semaphore token: leave the registration. Either a
        // waker took it already (the epoch moved; unregistering would do
        // nothing), or the token was posted for a sleeper whose registration
        // a waker took before we registered. Then ours is still counted and
        // must stay, standing for that sleeper, now without a token: the
        // next wake posts for it. (Unregistering here made two sleepers
        // count as none, and the robbed one waited a whole timeout.)
        let slept = t0.elapsed();
        let st = w.stats();
        st.waits += 1;
        st.sleep_ns += slept.as_nanos() as u64;
        if w.interrupted() {
            return Err(Error::Interrupted);
        }
        match w.attempt() {
            Err(e) if not_yet(&e) => {}
            r => return r,
        }
        if woke != Woke::TimedOut {
            w.stats().spurious_wakeups += 1;
        }
    }
}

/// How a sleep ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Woke {
    /// The timeout chunk passed.
    TimedOut,
    /// Woken (a futex wake, a signal, or the epoch moved before we slept).
    Woken,
    /// A semaphore wait took a token.
    Token,
    /// Not slept: the semaphore is scribbled (see [`check_word`]). The
    /// simulated sleeps of loom and Miri have no semaphore to check.
    #[cfg_attr(any(loom, miri), allow(dead_code))]
    Corrupt(Corruption),
}

/// Most tokens a semaphore can legitimately hold: a waker posts one per
/// registration it takes (at most `MAX_SLEEPERS` per wake) and every sleep
/// takes one, so pending tokens stay near the number of sleepers; a count
/// far above it was scribbled.
#[cfg_attr(
    any(loom, miri, not(all(target_env = "gnu", target_pointer_width = "64"))),
    allow(dead_code)
)]
const MAX_TOKENS: u32 = 1 << 20;

/// Checks the parts of `word`'s semaphore that the C library trusts, as
/// every peer-written value is checked: checked at open and before every
/// post or wait (glibc; other C libraries are not checked).
/// * The futex flags: glibc keeps them inside the `sem_t` (the `int` after
///   its 64-bit count) and aborts the process (`__libc_fatal`, "The futex
///   facility returned an unexpected error code") when the kernel refuses
///   them. They must be what `sem_init(pshared = 1)` writes. A peer that
///   rewrites them between this check and the C library's read can still
///   abort us: the futex backend has no such word.
/// * The count (64-bit targets): above `MAX_TOKENS`, every sleep would
///   return at once with a token, a busy loop of up to 2^31 sleeps.
///
/// The waiter count may hold anything without harm.
pub(crate) fn check_word(word: &WakeWord) -> Result<(), Corruption> {
    sys::sem_check(word)
}

/// Removes our registration, unless a waker took it already (the epoch moved
/// past the one we registered under). A semaphore waker that took it has
/// posted for us; if we did not sleep, that post stays pending and costs one
/// spurious wakeup later.
fn unregister(word: &WakeWord, epoch: u32) {
    // Relaxed: the registration is only a hint to wakers; the Dekker pair in
    // `block_on`/`wake` is what prevents lost wakeups.
    let _ = word
        .state
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
            (epoch_of(s) == epoch && sleepers_of(s) > 0).then(|| s - ONE_SLEEPER)
        });
}

/// Initialises the semaphores of a fresh segment (`pshared = 1`).
pub(crate) fn init_word(word: &WakeWord) {
    sys::sem_init(word);
}

#[cfg(not(any(loom, miri)))]
mod sys {
    use std::time::Duration;

    use super::Woke;
    use crate::error::Corruption;
    use crate::layout::WakeWord;

    // glibc 2.30+: `sem_clockwait` takes the clock of the deadline.
    #[cfg(target_env = "gnu")]
    unsafe extern "C" {
        fn sem_clockwait(
            sem: *mut libc::sem_t,
            clock: libc::clockid_t,
            abstime: *const libc::timespec,
        ) -> libc::c_int;
    }

    #[cfg(target_env = "gnu")]
    const SEM_CLOCK: libc::clockid_t = libc::CLOCK_MONOTONIC;
    #[cfg(not(target_env = "gnu"))]
    const SEM_CLOCK: libc::clockid_t = libc::CLOCK_REALTIME;

    /// `sem_clockwait` on `SEM_CLOCK` (`sem_timedwait`, which only knows the
    /// wall clock, where glibc's extension is missing).
    ///
    /// # Safety
    /// `sem` is an initialised semaphore; `abs` a valid deadline on
    /// `SEM_CLOCK`.
    unsafe fn sem_wait_until(sem: *mut libc::sem_t, abs: &libc::timespec) -> libc::c_int {
        #[cfg(target_env = "gnu")]
        // SAFETY: as the caller promises.
        return unsafe { sem_clockwait(sem, SEM_CLOCK, abs) };
        #[cfg(not(target_env = "gnu"))]
        // SAFETY: as the caller promises.
        return unsafe { libc::sem_timedwait(sem, abs) };
    }

    /// The epoch half of the wake word: the futex word.
    fn futex_word(word: &WakeWord) -> *mut u32 {
        let p = word.state.as_ptr().cast::<u32>();
        if cfg!(target_endian = "big") {
            // SAFETY: the second half of the same 8-byte atomic.
            unsafe { p.add(1) }
        } else {
            p
        }
    }

    pub(super) fn futex_wake(word: &WakeWord) {
        // SAFETY: the address is a valid, aligned u32 inside a mapping that
        // outlives the call; FUTEX_WAKE does not dereference anything else.
        // Not FUTEX_PRIVATE: the waiter may be another process.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                futex_word(word),
                libc::FUTEX_WAKE,
                i32::MAX,
                std::ptr::null::<libc::timespec>(),
                std::ptr::null::<u32>(),
                0u32,
            );
        }
    }

    pub(super) fn sem_post(word: &WakeWord) {
        // SAFETY: the semaphore was initialised by the creator (sem_init,
        // pshared) before READY; sem_post is safe to call concurrently.
        unsafe {
            libc::sem_post(word.sem.get());
        }
    }

    pub(super) fn sem_init(word: &WakeWord) {
        // SAFETY: called once by the creator before the segment is published
        // (READY), so nobody else uses the semaphore yet.
        unsafe {
            libc::sem_init(word.sem.get(), 1, 0);
        }
        // Learn the flags now, outside any signal handler.
        #[cfg(target_env = "gnu")]
        pshared_flags();
    }

    /// Where glibc keeps a semaphore's futex flags (`struct new_sem`'s
    /// `private`): after the 64-bit count, or after the 32-bit value on
    /// targets without 64-bit atomics.
    #[cfg(target_env = "gnu")]
    const SEM_FLAGS_AT: usize = if cfg!(target_pointer_width = "64") {
        8
    } else {
        4
    };

    /// The futex flags word of the semaphore at `sem`, read atomically (a
    /// peer may write it meanwhile; a plain read would be a data race).
    ///
    /// # Safety
    /// `sem` points to an 8-aligned `sem_t` in a live mapping or our stack.
    #[cfg(target_env = "gnu")]
    unsafe fn flags_of(sem: *mut libc::sem_t) -> u32 {
        // SAFETY: `SEM_FLAGS_AT + 4 <= size_of::<sem_t>()` (32) and the
        // `sem_t` is 8-aligned (caller), so the word is aligned and inside
        // it.
        let p = unsafe { sem.cast::<u8>().add(SEM_FLAGS_AT) }.cast::<u32>();
        // SAFETY: as above; atomics may be read while others write them.
        // Relaxed: one value, checked on its own.
        unsafe { crate::sync::AtomicU32::from_ptr(p) }.load(crate::sync::Ordering::Relaxed)
    }

    /// What `sem_init(pshared = 1)` writes into the flags word, learnt from
    /// a semaphore of our own once per process. Not per wake: a wake may
    /// run in a signal handler (`Interrupter::interrupt`), and `sem_init` is
    /// not async-signal-safe. A process learns it when it first creates
    /// (`sem_init`) or opens (`check_word`) a semaphore segment, before any
    /// of its endpoints can wake anyone.
    #[cfg(target_env = "gnu")]
    fn pshared_flags() -> u32 {
        const UNKNOWN: u32 = u32::MAX;
        static FLAGS: crate::sync::AtomicU32 = crate::sync::AtomicU32::new(UNKNOWN);
        // Relaxed: every thread computes the same value; a race only
        // computes it twice.
        let known = FLAGS.load(crate::sync::Ordering::Relaxed);
        if known != UNKNOWN {
            return known;
        }
        let mut own = std::mem::MaybeUninit::<libc::sem_t>::zeroed();
        // SAFETY: `own` is a valid, writable, 8-aligned `sem_t`.
        let want = unsafe {
            libc::sem_init(own.as_mut_ptr(), 1, 0);
            flags_of(own.as_mut_ptr())
        };
        // SAFETY: initialised just above, and unused after.
        unsafe { libc::sem_destroy(own.as_mut_ptr()) };
        // Relaxed: as above.
        FLAGS.store(want, crate::sync::Ordering::Relaxed);
        want
    }

    /// See [`check_word`](super::check_word).
    pub(super) fn sem_check(word: &WakeWord) -> Result<(), Corruption> {
        #[cfg(target_env = "gnu")]
        {
            let want = pshared_flags();
            // SAFETY: the wake word's `sem_t` is 8-aligned inside the mapping.
            let found = unsafe { flags_of(word.sem.get()) };
            if found != want {
                return Err(Corruption::new(
                    "semaphore flags word overwritten (not what sem_init wrote)",
                    None,
                    u64::from(found),
                ));
            }
            // glibc's 64-bit `data`: the count in the low half, waiters in
            // the high half.
            #[cfg(target_pointer_width = "64")]
            {
                // SAFETY: the first 8 bytes of an 8-aligned `sem_t`, inside
                // the mapping; read atomically because a peer may write
                // them meanwhile. Relaxed: one value, checked on its own.
                let data = unsafe { crate::sync::AtomicU64::from_ptr(word.sem.get().cast()) }
                    .load(crate::sync::Ordering::Relaxed);
                if data as u32 > super::MAX_TOKENS {
                    return Err(Corruption::new(
                        "semaphore count above any number of sleepers",
                        None,
                        u64::from(data as u32),
                    ));
                }
            }
        }
        #[cfg(not(target_env = "gnu"))]
        let _ = word;
        Ok(())
    }

    /// Sleeps until woken or `timeout`.
    pub(super) fn sleep(
        word: &WakeWord,
        backend: super::Backend,
        epoch: u32,
        timeout: Duration,
    ) -> Woke {
        let ts = libc::timespec {
            tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        match backend {
            super::Backend::Futex => {
                // SAFETY: valid aligned u32 inside a live mapping; `ts` lives
                // across the call. The kernel compares the word with `epoch`
                // atomically, so a wake between our check and the sleep is not
                // lost. Relative timeout (FUTEX_WAIT uses CLOCK_MONOTONIC).
                let rc = unsafe {
                    libc::syscall(
                        libc::SYS_futex,
                        futex_word(word),
                        libc::FUTEX_WAIT,
                        epoch,
                        &ts as *const libc::timespec,
                        std::ptr::null::<u32>(),
                        0u32,
                    )
                };
                if rc != 0
                    && std::io::Error::last_os_error().raw_os_error() == Some(libc::ETIMEDOUT)
                {
                    Woke::TimedOut
                } else {
                    Woke::Woken
                }
            }
            super::Backend::Semaphore => {
                // An absolute deadline on the monotonic clock: a step of the
                // wall clock cannot stretch (or cut) the sleep.
                // SAFETY: clock_gettime writes into a valid timespec.
                let mut now: libc::timespec = unsafe { std::mem::zeroed() };
                // SAFETY: `now` is a valid out-pointer.
                unsafe { libc::clock_gettime(SEM_CLOCK, &mut now) };
                let mut abs = libc::timespec {
                    tv_sec: now.tv_sec.saturating_add(ts.tv_sec),
                    tv_nsec: now.tv_nsec + ts.tv_nsec,
                };
                if abs.tv_nsec >= 1_000_000_000 {
                    abs.tv_sec += 1;
                    abs.tv_nsec -= 1_000_000_000;
                }
                loop {
                    if let Err(c) = sem_check(word) {
                        return Woke::Corrupt(c);
                    }
                    // SAFETY: initialised process-shared semaphore in a live
                    // mapping, its flags checked just above; `abs` is valid
                    // for the call.
                    let rc = unsafe { sem_wait_until(word.sem.get(), &abs) };
                    if rc == 0 {
                        return Woke::Token;
                    }
                    match std::io::Error::last_os_error().raw_os_error() {
                        Some(libc::EINTR) => continue,
                        _ => return Woke::TimedOut,
                    }
                }
            }
            // `block_on_slow` never sleeps in a spin-only segment.
            super::Backend::SpinOnly => Woke::TimedOut,
        }
    }
}

/// Loom stand-ins for the kernel: a mutex and a condition variable per
/// wake word, so a sleeper is blocked (not spinning) and a lost wakeup is a
/// deadlock that loom reports.
///
/// * Futex: a sleeper blocks while the epoch is still the one it registered
///   under, checked under the mutex; a waker bumps the epoch (in
///   `wake_slow`), then notifies under the mutex. That is FUTEX_WAIT's
///   atomic compare-and-sleep.
/// * Semaphore: a token count under the mutex; a post adds one, a sleeper
///   blocks until it can take one. So the one-post-per-sleeper accounting is
///   modelled too: a token taken by the wrong sleeper leaves another blocked
///   for ever.
///
/// Loom sleeps never time out.
#[cfg(loom)]
mod sys {
    use std::time::Duration;

    use super::Woke;
    use crate::layout::WakeWord;
    use crate::sync::Ordering;

    pub(super) fn futex_wake(word: &WakeWord) {
        let _g = word.kernel.lock().unwrap();
        word.kernel_cv.notify_all();
    }
    pub(super) fn sem_post(word: &WakeWord) {
        let mut tokens = word.kernel.lock().unwrap();
        *tokens += 1;
        word.kernel_cv.notify_all();
    }
    pub(super) fn sem_init(_word: &WakeWord) {}
    pub(super) fn sem_check(_word: &WakeWord) -> Result<(), crate::error::Corruption> {
        Ok(())
    }
    pub(super) fn sleep(word: &WakeWord, b: super::Backend, epoch: u32, _t: Duration) -> Woke {
        let mut tokens = word.kernel.lock().unwrap();
        match b {
            super::Backend::Futex => {
                // Acquire: pairs with the Release epoch bump in `wake_slow`.
                while super::epoch_of(word.state.load(Ordering::Acquire)) == epoch {
                    tokens = word.kernel_cv.wait(tokens).unwrap();
                }
                Woke::Woken
            }
            super::Backend::Semaphore => {
                while *tokens == 0 {
                    tokens = word.kernel_cv.wait(tokens).unwrap();
                }
                *tokens -= 1;
                Woke::Token
            }
            // `block_on_slow` never sleeps in a spin-only segment.
            super::Backend::SpinOnly => Woke::TimedOut,
        }
    }
}

/// Miri stand-ins: Miri runs neither semaphores nor a futex on half of a
/// 64-bit atomic, so a "sleep" yields until the epoch moves or the timeout
/// passes (Miri's clock is virtual). Everything around it is the real code.
#[cfg(all(miri, not(loom)))]
mod sys {
    use std::time::{Duration, Instant};

    use super::Woke;
    use crate::layout::WakeWord;
    use crate::sync::Ordering;

    pub(super) fn futex_wake(_word: &WakeWord) {}
    pub(super) fn sem_post(_word: &WakeWord) {}
    pub(super) fn sem_init(_word: &WakeWord) {}
    pub(super) fn sem_check(_word: &WakeWord) -> Result<(), crate::error::Corruption> {
        Ok(())
    }
    pub(super) fn sleep(word: &WakeWord, _b: super::Backend, epoch: u32, t: Duration) -> Woke {
        let start = Instant::now();
        // Acquire: pairs with the Release epoch bump in `wake_slow`.
        while super::epoch_of(word.state.load(Ordering::Acquire)) == epoch {
            if start.elapsed() >= t {
                return Woke::TimedOut;
            }
            std::thread::yield_now();
        }
        Woke::Woken
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_waiter_that_finds_more_than_its_message_looks_less_often() {
        // A stream: the peer got ahead while we looked, so look half as
        // often next time, up to MAX_BACKOFF hints.
        assert_eq!(next_backoff(1, 2), 2);
        assert_eq!(next_backoff(2, 40), 4);
        assert_eq!(next_backoff(MAX_BACKOFF / 2, 3), MAX_BACKOFF);
        assert_eq!(next_backoff(MAX_BACKOFF, 1000), MAX_BACKOFF);
        // A ping-pong, or messages far apart: each look is the one that
        // sees the message; back down to one hint.
        assert_eq!(next_backoff(MAX_BACKOFF, 1), MAX_BACKOFF / 2);
        assert_eq!(next_backoff(2, 1), 1);
        assert_eq!(next_backoff(1, 1), 1);
        // The first wait of an endpoint (nothing moved yet).
        assert_eq!(next_backoff(1, 0), 1);
    }

    #[test]
    fn a_pacer_learns_at_the_start_of_each_wait() {
        let mut p = Pacer::new();
        p.wait();
        assert_eq!((p.back, p.tries), (1, Some(1)));
        // A stream: three messages per wait, so each wait looks half as
        // often as the one before, up to MAX_BACKOFF hints.
        for expect in [2, 4, 8, 16, 32, 64, 64] {
            for _ in 0..3 {
                p.moved();
            }
            p.wait();
            assert_eq!(p.back, expect);
            // More tries in the same wait keep its pace.
            p.wait();
            assert_eq!(p.back, expect);
        }
        // A ping-pong: one message per wait; back down, one step a wait.
        for expect in [32, 16, 8, 4, 2, 1, 1] {
            p.moved();
            p.wait();
            assert_eq!(p.back, expect);
        }
        assert_eq!(p.tries, Some(1));
    }
}
