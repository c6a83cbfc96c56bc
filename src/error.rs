//! Error types: [`OpenError`] for setting a channel up, [`Error`] for using it.

use std::fmt;
use std::io;

/// The two ring kinds a segment can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Single producer, single consumer ring of variable-length messages.
    Spsc,
    /// Multi producer, multi consumer ring of fixed-size slots.
    Mpmc,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Kind::Spsc => "spsc",
            Kind::Mpmc => "mpmc",
        })
    }
}

/// Which side of a ring an endpoint is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Writes messages.
    Producer,
    /// Reads messages.
    Consumer,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Role::Producer => "producer",
            Role::Consumer => "consumer",
        })
    }
}

/// How a segment's sleepers sleep, fixed when it is created (see
/// [`WaitStrategy`](crate::WaitStrategy) and
/// [`Options::spin_only`](crate::Options::spin_only)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// A futex on the wake word.
    Futex,
    /// A process-shared POSIX semaphore.
    Semaphore,
    /// Nobody sleeps: every endpoint spins or yields, and no publish or
    /// release checks for sleepers.
    SpinOnly,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Backend::Futex => "futex",
            Backend::Semaphore => "semaphore",
            Backend::SpinOnly => "spin-only",
        })
    }
}

/// What to do about a [`OpenError::WaitMismatch`].
fn wait_advice(expected: Backend, found: Backend) -> &'static str {
    match (expected, found) {
        (Backend::SpinOnly, _) => {
            "open it without `spin_only`: its endpoints may sleep, and a spinning endpoint works with any segment"
        }
        (_, Backend::SpinOnly) => {
            "open it with a spin strategy (`WaitStrategy::Spin` or `SpinThenYield`): nobody may sleep in it"
        }
        _ => "open it with the segment's backend, or with a spin strategy, which works with any",
    }
}

/// Why a segment could not be created or opened.
///
/// Every variant says what went wrong and what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The name breaks the naming rule.
    #[error(
        "invalid segment name {name:?}: {reason}; use 1-200 bytes of [A-Za-z0-9._-], not starting with '.'"
    )]
    InvalidName {
        /// The name as given.
        name: String,
        /// Which part of the rule it breaks.
        reason: &'static str,
    },
    /// An option is out of range.
    #[error("invalid option: {0}")]
    InvalidOptions(String),
    /// No segment of that name exists.
    #[error(
        "no shmq segment named {name:?} (looked for /dev/shm/shmq.{name}); create it first, or use open_or_create"
    )]
    NotFound {
        /// The segment name.
        name: String,
    },
    /// A segment of that name exists already.
    #[error(
        "a segment named {name:?} exists already; open it, pick another name, or remove it with `shmq rm {name}` if it is stale"
    )]
    AlreadyExists {
        /// The segment name.
        name: String,
    },
    /// The file exists but we may not use it: owned by another user, too
    /// permissive, or the OS refused.
    #[error("permission denied for segment {name:?}: {detail}")]
    PermissionDenied {
        /// The segment name.
        name: String,
        /// What exactly was refused.
        detail: String,
    },
    /// The file under that name is not a shmq segment (wrong magic, a
    /// symlink, not a regular file, too small).
    #[error(
        "{name:?} is not a shmq segment: {detail}; remove it (`shmq rm {name}`) if you know it is not in use"
    )]
    NotShmq {
        /// The segment name.
        name: String,
        /// Why it was rejected.
        detail: String,
    },
    /// The segment was made by an incompatible version of shmq.
    #[error(
        "segment {name:?} has layout version {found} (hash {found_hash:#x}); this build speaks version {expected} (hash {expected_hash:#x}): use the same shmq version on both sides"
    )]
    VersionMismatch {
        /// The segment name.
        name: String,
        /// Version found in the segment.
        found: u32,
        /// Version this build writes.
        expected: u32,
        /// Layout hash found.
        found_hash: u64,
        /// Layout hash of this build.
        expected_hash: u64,
    },
    /// The segment holds the other kind of ring.
    #[error("segment {name:?} holds an {found} ring, but an {expected} endpoint was asked for")]
    KindMismatch {
        /// The segment name.
        name: String,
        /// Kind asked for.
        expected: Kind,
        /// Kind found.
        found: Kind,
    },
    /// A typed endpoint's element type differs from the segment's.
    #[error(
        "segment {name:?} carries elements of {found}, but this endpoint's type is {expected}; both sides must use the same type"
    )]
    TypeMismatch {
        /// The segment name.
        name: String,
        /// This endpoint's type (size, align, fingerprint).
        expected: String,
        /// The segment's type.
        found: String,
    },
    /// The caller asked for a wake backend other than the segment's.
    #[error(
        "segment {name:?} uses the {found} wake backend, but {expected} was asked for; {}",
        wait_advice(*.expected, *.found)
    )]
    WaitMismatch {
        /// The segment name.
        name: String,
        /// Backend asked for.
        expected: Backend,
        /// Backend in the segment.
        found: Backend,
    },
    /// The header is inconsistent (sizes that disagree with the file, bad
    /// fields).
    #[error(
        "segment {name:?} is corrupted: {detail}; remove it with `shmq rm {name}` and create it again"
    )]
    Corrupted {
        /// The segment name.
        name: String,
        /// What is inconsistent.
        detail: String,
    },
    /// The creator did not finish initialising in time.
    #[error(
        "segment {name:?} did not become ready within {waited_ms} ms (its creator may have died while initialising); retry, or reclaim it with `shmq gc`"
    )]
    Timeout {
        /// The segment name.
        name: String,
        /// How long we waited.
        waited_ms: u128,
    },
    /// Every endpoint slot of this role is held by a live process.
    #[error(
        "segment {name:?} already has its maximum of {max} live {role}(s) attached; detach one first"
    )]
    Busy {
        /// The segment name.
        name: String,
        /// The role asked for.
        role: Role,
        /// How many may be attached.
        max: u32,
    },
    /// `/dev/shm` has no room for the segment.
    #[error(
        "not enough space in /dev/shm for segment {name:?} ({size} bytes); free space there (`shmq gc`, `df -h /dev/shm`) or ask for a smaller capacity"
    )]
    NoSpace {
        /// The segment name.
        name: String,
        /// Bytes asked for.
        size: u64,
    },
    /// Any other operating-system error.
    #[error("{op} failed for segment {name:?}: {source}")]
    Io {
        /// The segment name.
        name: String,
        /// The operation that failed.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// Why a send or receive did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No room now (`try_` variants only); nothing was written.
    #[error("the ring is full")]
    Full,
    /// Nothing to receive now (`try_` variants only).
    #[error("the ring is empty")]
    Empty,
    /// The deadline passed (`_timeout` variants); nothing was sent or received.
    #[error("timed out")]
    Timeout,
    /// The message is longer than the ring can ever hold; nothing was written.
    #[error("message of {len} bytes is larger than the maximum of {max}")]
    TooLarge {
        /// Bytes asked for.
        len: usize,
        /// Largest message this ring accepts.
        max: usize,
    },
    /// The receive buffer is too small for the next message; it stays queued.
    #[error("the next message has {needed} bytes, more than the buffer's {capacity}")]
    BufferTooSmall {
        /// Length of the next message.
        needed: usize,
        /// Length of the buffer given.
        capacity: usize,
    },
    /// The peer detached cleanly (and, when receiving, everything it sent has
    /// been received).
    #[error("the peer has disconnected")]
    Disconnected,
    /// The peer process died without detaching (and, when receiving,
    /// everything it committed has been received).
    #[error("the peer process died")]
    PeerDied,
    /// A blocking call was ended by
    /// [`Interrupter::interrupt`](crate::Interrupter::interrupt); nothing
    /// was sent or received.
    #[error("interrupted")]
    Interrupted,
    /// This endpoint was inherited through `fork()`: it belongs to the
    /// parent process. A forked child must open its own endpoints.
    #[error(
        "this endpoint belongs to the process that opened it, not to this forked child; open a new one here"
    )]
    Forked,
    /// A value in the segment broke the protocol. The channel is poisoned:
    /// every later call returns this error.
    #[error("the shared segment is corrupted: {0}")]
    Corrupted(Corruption),
}

/// What a peer-written value in a segment got wrong: which value, where it
/// is, and what it held. Carried by [`Error::Corrupted`].
///
/// ```
/// let c = shmq::Corruption::new("bad record tag", Some(0x300), 0xdead_beef);
/// assert_eq!(
///     c.to_string(),
///     "bad record tag (value 0xdeadbeef at byte 0x300 of the segment)"
/// );
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Corruption {
    /// What is wrong, e.g. "bad record tag".
    pub what: &'static str,
    /// Byte offset of the value in the segment (header, endpoint table or
    /// data area), when it is one word of it.
    pub offset: Option<u64>,
    /// The value read.
    pub value: u64,
}

impl Corruption {
    /// A description of a bad value.
    pub const fn new(what: &'static str, offset: Option<u64>, value: u64) -> Corruption {
        Corruption {
            what,
            offset,
            value,
        }
    }
}

impl std::fmt::Display for Corruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.offset {
            Some(off) => write!(
                f,
                "{} (value {:#x} at byte {off:#x} of the segment)",
                self.what, self.value
            ),
            None => write!(f, "{} (value {:#x})", self.what, self.value),
        }
    }
}
