//! [`Options`]: how to create or open a channel.

use std::time::Duration;

use crate::error::{Kind, OpenError};
use crate::notify::WaitStrategy;

/// Settings for creating or opening a channel. Build with method chaining:
///
/// ```
/// use std::time::Duration;
/// use shmq::{Options, WaitStrategy};
/// let opts = Options::new()
///     .capacity(1 << 16)
///     .wait(WaitStrategy::Futex)
///     .spin(Duration::from_micros(20));
/// assert_eq!(opts.get_capacity(), 1 << 16);
/// ```
///
/// Sizes are checked when a segment is created; an out-of-range value is an
/// [`OpenError::InvalidOptions`] that names the allowed range. An option of
/// the other ring kind (say [`slots`](Self::slots) for an SPSC ring) is an
/// `InvalidOptions` too, at create and at open, rather than silently
/// ignored:
///
/// ```
/// let opts = shmq::Options::new().slots(64);
/// assert!(matches!(
///     shmq::spsc::channel(&opts).err(),
///     Some(shmq::OpenError::InvalidOptions(_))
/// ));
/// assert!(shmq::mpmc::channel(&opts).is_ok());
/// ```
#[derive(Clone, Debug)]
pub struct Options {
    pub(crate) capacity: u64,
    pub(crate) slots: u64,
    pub(crate) slot_size: u64,
    pub(crate) max_producers: u32,
    pub(crate) max_consumers: u32,
    pub(crate) mode: u32,
    pub(crate) open_timeout: Duration,
    pub(crate) wait: WaitStrategy,
    pub(crate) wait_explicit: bool,
    pub(crate) spin: Duration,
    pub(crate) liveness_interval: Duration,
    pub(crate) abandon_timeout: Duration,
    pub(crate) keep: bool,
    pub(crate) reclaim_stale: bool,
    /// Ring-specific options set explicitly (`SPSC_ONLY` / `MPMC_ONLY`
    /// bits), so that one the ring ignores is an error, not dropped.
    pub(crate) set: u8,
}

const SET_CAPACITY: u8 = 1;
const SET_SLOTS: u8 = 2;
const SET_SLOT_SIZE: u8 = 4;
const SET_MAX_PRODUCERS: u8 = 8;
const SET_MAX_CONSUMERS: u8 = 16;
const SET_ABANDON: u8 = 32;
const MPMC_ONLY: [(u8, &str); 5] = [
    (SET_SLOTS, "slots"),
    (SET_SLOT_SIZE, "slot_size"),
    (SET_MAX_PRODUCERS, "max_producers"),
    (SET_MAX_CONSUMERS, "max_consumers"),
    (SET_ABANDON, "abandon_timeout"),
];

/// Default spin window of the blocking strategies (see ARCHITECTURE.md,
/// "Spin window", for the measurement behind it).
pub const DEFAULT_SPIN: Duration = Duration::from_micros(50);

impl Default for Options {
    fn default() -> Self {
        Options {
            capacity: 1 << 20,
            slots: 1024,
            slot_size: 256,
            max_producers: 64,
            max_consumers: 64,
            mode: 0o600,
            open_timeout: Duration::from_secs(1),
            wait: WaitStrategy::Futex,
            wait_explicit: false,
            spin: DEFAULT_SPIN,
            liveness_interval: Duration::from_millis(100),
            abandon_timeout: Duration::from_secs(1),
            keep: false,
            reclaim_stale: false,
            set: 0,
        }
    }
}

impl Options {
    /// The defaults: 1 MiB SPSC ring, 1024 MPMC slots of 256 bytes, 64
    /// producers and consumers at most, mode 0600, futex waits after a
    /// 50 µs spin, 1 s open timeout.
    pub fn new() -> Options {
        Options::default()
    }

    /// SPSC ring size in bytes: a power of two from 64 to 2^40. The largest
    /// message is `capacity / 2 - 8` bytes (at most `u32::MAX`).
    pub fn capacity(mut self, bytes: usize) -> Self {
        self.set |= SET_CAPACITY;
        self.capacity = bytes as u64;
        self
    }

    /// MPMC: number of slots, a power of two from 2 to 2^24.
    pub fn slots(mut self, n: usize) -> Self {
        self.set |= SET_SLOTS;
        self.slots = n as u64;
        self
    }

    /// MPMC: bytes per slot including its 16-byte header, a multiple of 8
    /// from 24 to 2^24. The largest message is `slot_size - 16` bytes.
    pub fn slot_size(mut self, bytes: usize) -> Self {
        self.set |= SET_SLOT_SIZE;
        self.slot_size = bytes as u64;
        self
    }

    /// MPMC: most producers attached at once (1 to 1024, default 64).
    pub fn max_producers(mut self, n: u32) -> Self {
        self.set |= SET_MAX_PRODUCERS;
        self.max_producers = n;
        self
    }

    /// MPMC: most consumers attached at once (1 to 1024, default 64).
    pub fn max_consumers(mut self, n: u32) -> Self {
        self.set |= SET_MAX_CONSUMERS;
        self.max_consumers = n;
        self
    }

    /// Permission bits of a created segment (default `0o600`), and the most
    /// an opened segment may grant: a segment with more bits is refused.
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode & 0o777;
        self
    }

    /// How long `open` waits for a segment's creator to finish (default 1 s).
    pub fn open_timeout(mut self, t: Duration) -> Self {
        self.open_timeout = t;
        self
    }

    /// How this endpoint waits. A segment created with [`WaitStrategy::Semaphore`]
    /// wakes sleepers through semaphores, any other through futexes; opening it
    /// with the other blocking strategy is an [`OpenError::WaitMismatch`],
    /// while spin strategies work with either.
    pub fn wait(mut self, w: WaitStrategy) -> Self {
        self.wait = w;
        self.wait_explicit = true;
        self
    }

    /// How long the blocking strategies spin before they sleep.
    pub fn spin(mut self, d: Duration) -> Self {
        self.spin = d;
        self
    }

    /// Longest sleep between liveness checks of the peer while blocked
    /// (default 100 ms): a dead peer is reported within about this time.
    pub fn liveness_interval(mut self, d: Duration) -> Self {
        self.liveness_interval = d.max(Duration::from_micros(100));
        self
    }

    /// MPMC: how long a stalled slot is waited for before its claimer's
    /// liveness is checked and, if dead, the slot is skipped (default 1 s).
    pub fn abandon_timeout(mut self, d: Duration) -> Self {
        self.set |= SET_ABANDON;
        self.abandon_timeout = d;
        self
    }

    /// Keep the segment in `/dev/shm` when the last endpoint drops (default:
    /// the last endpoint removes it, unless it is a producer leaving unread
    /// messages behind).
    pub fn keep(mut self, keep: bool) -> Self {
        self.keep = keep;
        self
    }

    /// When creating over an existing segment that no live process uses
    /// (stale), remove it and create anew instead of failing.
    pub fn reclaim_stale(mut self, yes: bool) -> Self {
        self.reclaim_stale = yes;
        self
    }

    /// The SPSC capacity in bytes.
    pub fn get_capacity(&self) -> usize {
        self.capacity as usize
    }

    /// The wait strategy.
    pub fn get_wait(&self) -> WaitStrategy {
        self.wait
    }

    /// Checks that no option of the other ring kind was set: at open as
    /// well as at create.
    pub(crate) fn check_kind(&self, kind: Kind) -> Result<(), OpenError> {
        let foreign = |name: &str, other: Kind| {
            Err(OpenError::InvalidOptions(format!(
                "{name} is an {other} option, but this is an {kind} ring, which would ignore it; \
                 remove it, or use an {other} ring"
            )))
        };
        match kind {
            Kind::Spsc => {
                if let Some((_, name)) = MPMC_ONLY.iter().find(|(bit, _)| self.set & bit != 0) {
                    return foreign(name, Kind::Mpmc);
                }
            }
            Kind::Mpmc => {
                if self.set & SET_CAPACITY != 0 {
                    return foreign("capacity", Kind::Spsc);
                }
            }
        }
        Ok(())
    }

    /// Checks the options a creator of a `kind` ring uses.
    pub(crate) fn check_for(&self, kind: Kind) -> Result<(), OpenError> {
        self.check_kind(kind)?;
        match kind {
            Kind::Spsc => self.check_spsc(),
            Kind::Mpmc => self.check_mpmc(),
        }
    }

    fn check_spsc(&self) -> Result<(), OpenError> {
        let c = self.capacity;
        if !c.is_power_of_two() || !(64..=1 << 40).contains(&c) {
            return Err(OpenError::InvalidOptions(format!(
                "capacity {c} must be a power of two from 64 to 2^40 bytes"
            )));
        }
        Ok(())
    }

    fn check_mpmc(&self) -> Result<(), OpenError> {
        let n = self.slots;
        if !n.is_power_of_two() || !(2..=1 << 24).contains(&n) {
            return Err(OpenError::InvalidOptions(format!(
                "slots {n} must be a power of two from 2 to 2^24"
            )));
        }
        let s = self.slot_size;
        if s % 8 != 0 || !(24..=1 << 24).contains(&s) {
            return Err(OpenError::InvalidOptions(format!(
                "slot_size {s} must be a multiple of 8 from 24 to 2^24 bytes (it includes a 16-byte header)"
            )));
        }
        if n.checked_mul(s).is_none_or(|t| t > 1 << 40) {
            return Err(OpenError::InvalidOptions(format!(
                "slots x slot_size = {n} x {s} exceeds 2^40 bytes"
            )));
        }
        for (what, v) in [
            ("max_producers", self.max_producers),
            ("max_consumers", self.max_consumers),
        ] {
            if !(1..=1024).contains(&v) {
                return Err(OpenError::InvalidOptions(format!(
                    "{what} {v} must be from 1 to 1024"
                )));
            }
        }
        Ok(())
    }
}
