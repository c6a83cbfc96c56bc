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
    pub(crate) spin_only: bool,
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
            spin_only: false,
            spin: DEFAULT_SPIN,
            liveness_interval: Duration::from_millis(100),
            abandon_timeout: Duration::from_secs(1),
            keep: false,
            reclaim_stale: false,
            set: 0,
        }
    }
}

/// Builder setters: each sets one field (and, for the options of one ring
/// kind, marks it set, so that the other kind refuses it).
macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident($v:ident: $t:ty) $(marks $bit:ident)? => $field:ident = $val:expr;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, $v: $t) -> Self {
                $(self.set |= $bit;)?
                self.$field = $val;
                self
            }
        )*
    };
}

impl Options {
    /// The defaults: 1 MiB SPSC ring, 1024 MPMC slots of 256 bytes, 64
    /// producers and consumers at most, mode 0600, futex waits after a
    /// 50 µs spin, 1 s open timeout.
    pub fn new() -> Options {
        Options::default()
    }

    setters! {
        /// SPSC ring size in bytes: a power of two from 64 to 2^40. The largest
        /// message is `capacity / 2 - 8` bytes (at most `u32::MAX`). For
        /// streams of small messages, a ring several times the CPU's L2
        /// cache per core is faster: on a VM with 1 MiB of L2 per core, a
        /// 64-byte stream ran about twice as fast through 4 MiB as through
        /// the default 1 MiB (ARCHITECTURE.md, "Ring size in the harness").
        capacity(bytes: usize) marks SET_CAPACITY => capacity = bytes as u64;
        /// MPMC: number of slots, a power of two from 2 to 2^24.
        slots(n: usize) marks SET_SLOTS => slots = n as u64;
        /// MPMC: bytes per slot including its 16-byte header, a multiple of 8
        /// from 24 to 2^24. The largest message is `slot_size - 16` bytes.
        slot_size(bytes: usize) marks SET_SLOT_SIZE => slot_size = bytes as u64;
        /// MPMC: most producers attached at once (1 to 1024, default 64).
        max_producers(n: u32) marks SET_MAX_PRODUCERS => max_producers = n;
        /// MPMC: most consumers attached at once (1 to 1024, default 64).
        max_consumers(n: u32) marks SET_MAX_CONSUMERS => max_consumers = n;
        /// Permission bits of a created segment (default `0o600`), and the most
        /// an opened segment may grant: a segment with more bits is refused.
        mode(mode: u32) => mode = mode & 0o777;
        /// How long `open` waits for a segment's creator to finish (default 1 s).
        open_timeout(t: Duration) => open_timeout = t;
        /// How long the blocking strategies spin before they sleep.
        spin(d: Duration) => spin = d;
        /// Longest sleep between liveness checks of the peer while blocked
        /// (default 100 ms): a dead peer is reported within about this time.
        liveness_interval(d: Duration) => liveness_interval = d.max(Duration::from_micros(100));
        /// MPMC: how long a stalled slot is waited for before its claimer's
        /// liveness is checked and, if dead, the slot is skipped (default 1 s).
        abandon_timeout(d: Duration) marks SET_ABANDON => abandon_timeout = d;
        /// Keep the segment in `/dev/shm` when the last endpoint drops (default:
        /// the last endpoint removes it, unless it is a producer leaving unread
        /// messages behind).
        keep(keep: bool) => keep = keep;
        /// When creating over an existing segment that no live process uses
        /// (stale), remove it and create anew instead of failing.
        reclaim_stale(yes: bool) => reclaim_stale = yes;
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

    /// Creates a segment in which no endpoint ever sleeps, or opens only
    /// such a segment (default `false`).
    ///
    /// Every publish and release in a segment where endpoints may sleep
    /// checks for sleepers: a full fence and a load of the peer's wake
    /// word, which on x86 waits for the payload's stores to drain. A
    /// spin-only segment (wake backend [`Backend::SpinOnly`](crate::Backend::SpinOnly))
    /// skips that check. In return, every endpoint of it spins or yields:
    /// one that does not choose a strategy spins ([`WaitStrategy::Spin`]),
    /// and one that asks for a sleeping strategy is refused
    /// ([`OpenError::InvalidOptions`] with this option, an
    /// [`OpenError::WaitMismatch`] when opening such a segment without it).
    /// Opening a segment whose endpoints may sleep with this option is a
    /// `WaitMismatch` too.
    ///
    /// ```
    /// use shmq::spsc::{Consumer, Producer};
    /// use shmq::{Backend, OpenError, Options, WaitStrategy};
    /// let name = format!("doc-spin-only-{}", std::process::id());
    /// let mut tx = Producer::create(&name, &Options::new().spin_only(true))?;
    /// // A sleeping strategy is refused; whoever opens it without one spins.
    /// let futex = Options::new().wait(WaitStrategy::Futex);
    /// assert!(matches!(
    ///     Consumer::open(&name, &futex).err(),
    ///     Some(OpenError::WaitMismatch { found: Backend::SpinOnly, .. })
    /// ));
    /// let mut rx = Consumer::open(&name, &Options::new())?;
    /// tx.send(b"hi")?;
    /// let mut buf = [0; 8];
    /// assert_eq!(rx.recv_into(&mut buf)?, 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn spin_only(mut self, yes: bool) -> Self {
        self.spin_only = yes;
        self
    }

    /// Whether `slot_size` was set explicitly.
    pub(crate) fn slot_size_set(&self) -> bool {
        self.set & SET_SLOT_SIZE != 0
    }

    /// The SPSC capacity in bytes.
    pub fn get_capacity(&self) -> usize {
        self.capacity as usize
    }

    /// The wait strategy.
    pub fn get_wait(&self) -> WaitStrategy {
        self.wait
    }

    /// Checks that no option of the other ring kind was set, and that a
    /// spin-only endpoint was not asked to sleep: at open as well as at
    /// create.
    pub(crate) fn check_kind(&self, kind: Kind) -> Result<(), OpenError> {
        if self.spin_only && self.wait_explicit && self.wait.backend().is_some() {
            return Err(OpenError::InvalidOptions(format!(
                "spin_only with the sleeping wait strategy {:?}: nobody may sleep in a spin-only \
                 segment; use WaitStrategy::Spin or SpinThenYield, or drop spin_only",
                self.wait
            )));
        }
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
