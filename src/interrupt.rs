//! [`Interrupter`]: a way out of a blocking call that needs no timeout.

use std::sync::Arc;

use crate::layout::WakeWord;
use crate::notify::{self, Backend, Stats};
use crate::region::Backing;
use crate::sync::{AtomicU32, Ordering};

/// Makes a blocking call of one endpoint return [`Error::Interrupted`]
/// (`recv`, `send`, `reserve`, their `_timeout` variants, `loan`, …),
/// from another thread or from a signal handler.
///
/// Get one with the endpoint's `interrupter()`. An interrupt is kept until
/// a blocking call of that endpoint takes it: one made while the endpoint
/// is not waiting ends its next wait at once, so an interrupt raced by the
/// call it targets is never lost. Calls that do not wait (`try_`) leave it
/// pending, and a call that finds its message (or room) at once returns
/// that, not the interrupt.
///
/// [`interrupt`](Self::interrupt) is async-signal-safe: it stores a flag,
/// and if the endpoint sleeps, wakes it with one futex wake or semaphore
/// post (no locks, no allocation). Other endpoints sleeping on the same
/// wake word (in any process) see a spurious wakeup and sleep again.
///
/// ```
/// use std::time::Duration;
/// let (_tx, mut rx) = shmq::spsc::channel(&shmq::Options::new())?;
/// let stop = rx.interrupter();
/// let t = std::thread::spawn(move || {
///     std::thread::sleep(Duration::from_millis(20));
///     stop.interrupt();
/// });
/// // Nothing is sent: without the interrupt this would wait for ever.
/// assert_eq!(rx.recv().err(), Some(shmq::Error::Interrupted));
/// t.join().unwrap();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// [`Error::Interrupted`]: crate::Error::Interrupted
#[derive(Clone)]
pub struct Interrupter {
    shared: Arc<Shared>,
}

static_assertions::assert_impl_all!(Interrupter: Send, Sync);

/// What an endpoint and its interrupters share.
pub(crate) struct Shared {
    /// 1 while an interrupt is pending.
    flag: AtomicU32,
    /// Keeps the wake word mapped as long as an interrupter lives.
    backing: Arc<Backing>,
    /// The word the endpoint sleeps on: `not_empty` for consumers,
    /// `not_full` for producers.
    consumer: bool,
    backend: Backend,
}

impl Shared {
    pub(crate) fn new(backing: Arc<Backing>, consumer: bool, backend: Backend) -> Arc<Shared> {
        Arc::new(Shared {
            flag: AtomicU32::new(0),
            backing,
            consumer,
            backend,
        })
    }

    fn word(&self) -> &WakeWord {
        let h = self.backing.header();
        if self.consumer {
            &h.not_empty
        } else {
            &h.not_full
        }
    }

    /// Takes a pending interrupt.
    #[inline]
    pub(crate) fn take(&self) -> bool {
        // Relaxed first look: the common case is "none", one plain load.
        // SeqCst swap: the waiter's side of the Dekker pair with
        // `interrupt` (its store, then the SeqCst fence in `wake`); it runs
        // after the waiter's registration and SeqCst fence in
        // `block_on_slow`.
        self.flag.load(Ordering::Relaxed) != 0 && self.flag.swap(0, Ordering::SeqCst) != 0
    }
}

impl Interrupter {
    pub(crate) fn new(shared: Arc<Shared>) -> Interrupter {
        Interrupter { shared }
    }

    /// Interrupts the endpoint's current blocking call, or its next one.
    /// Async-signal-safe.
    ///
    /// ```
    /// let (mut tx, _rx) = shmq::spsc::channel(&shmq::Options::new().capacity(64))?;
    /// while tx.try_send(&[0; 24]).is_ok() {} // full
    /// tx.interrupter().interrupt(); // before the call: kept for it
    /// assert_eq!(tx.send(&[1; 24]).err(), Some(shmq::Error::Interrupted));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn interrupt(&self) {
        // SeqCst: part of the Dekker pair with a sleeper's registration;
        // the SeqCst fence in `wake` follows it, so either the sleeper's
        // check after its registration and fence sees the flag, or `wake`
        // sees the registration and wakes it.
        self.shared.flag.store(1, Ordering::SeqCst);
        let mut unused = Stats::default();
        notify::wake(self.shared.word(), &self.shared.backend, &mut unused);
    }
}
