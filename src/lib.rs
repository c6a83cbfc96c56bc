//! # shmq — lock-free rings in named shared memory
//!
//! Processes hand each other messages through a ring buffer in a named
//! shared-memory segment (`/dev/shm/shmq.NAME`), written and read in place:
//! no syscall and no copy per message while both sides keep up.
//!
//! * [`spsc`]: one producer, one consumer, variable-length byte messages,
//!   zero-copy grants and batches.
//! * [`mpmc`]: many producers and consumers across processes, fixed-size
//!   slots, each message taken by exactly one consumer.
//! * [`typed`]: channels of plain-old-data values (`bytemuck::Pod`) over
//!   either ring, with the element type checked at open.
//! * Waiting: [`WaitStrategy`] — spin, spin-then-yield, futex (default) or
//!   POSIX semaphore; a wake syscall only when somebody sleeps, and no
//!   check for sleepers at all in a ring whose endpoints all spin
//!   ([`Options::spin_only`]).
//! * Failure model: a peer may die at any instruction; the survivor gets
//!   [`Error::PeerDied`] or [`Error::Disconnected`] within the liveness
//!   interval (100 ms by default), after receiving everything committed.
//!   A peer that scribbles on the segment gets you [`Error::Corrupted`],
//!   never an out-of-bounds access, a panic or a hang.
//!
//! ```no_run
//! // Process A
//! let mut tx = shmq::spsc::Producer::open_or_create("orders", &shmq::Options::new())?;
//! tx.send(b"buy 100")?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//! ```no_run
//! // Process B
//! let mut rx = shmq::spsc::Consumer::open_or_create("orders", &shmq::Options::new())?;
//! let msg = rx.recv()?;
//! println!("{}", String::from_utf8_lossy(&msg));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The layers, the header layout and every memory ordering are described in
//! `ARCHITECTURE.md`.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]
// Under loom only the heap paths are modelled; the segment code idles.
#![cfg_attr(loom, allow(dead_code, unused_imports))]

mod acquire;
mod endpoint;
mod error;
#[cfg(not(loom))]
mod fork;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
mod header;
mod heap;
#[cfg(not(loom))]
mod inspect;
mod interrupt;
mod layout;
mod liveness;
pub mod mpmc;
mod notify;
mod options;
mod region;
mod ring;
mod shm;
pub mod spsc;
mod sync;
pub mod typed;

pub use error::{Backend, Corruption, Error, Kind, OpenError, Role};
#[cfg(not(loom))]
pub use inspect::{EndpointInfo, EndpointState, GcOutcome, SegmentInfo, gc, gc_one, inspect};
pub use interrupt::Interrupter;
pub use notify::{Pacer, Stats, WaitStrategy};
pub use options::{DEFAULT_SPIN, Options};
pub use shm::{MAX_NAME_LEN, PREFIX, list, remove, validate_name};

/// Test hook: byte offsets of header fields, for tests that scribble on a
/// segment as a hostile peer would.
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub mod __layout {
    use std::mem::offset_of;

    use crate::layout::{Geometry, Header, Meta, WakeWord};

    const META: usize = offset_of!(Header, meta);
    /// The producer cursor (SPSC write / MPMC enqueue).
    pub const PROD_CURSOR: u64 = offset_of!(Header, prod) as u64;
    /// The consumer cursor (SPSC read / MPMC dequeue).
    pub const CONS_CURSOR: u64 = offset_of!(Header, cons) as u64;
    /// `capacity` (SPSC bytes, MPMC slots).
    pub const CAPACITY: u64 = (META + offset_of!(Meta, capacity)) as u64;
    /// The word holding `slot_size` (low half) and `max_producers`.
    pub const SLOT_SIZE: u64 = (META + offset_of!(Meta, slot_size)) as u64;
    /// The producers' wake word.
    pub const NOT_FULL: u64 = offset_of!(Header, not_full) as u64;
    /// The consumers' wake word.
    pub const NOT_EMPTY: u64 = offset_of!(Header, not_empty) as u64;
    /// Where a wake word's `sem_t` starts, from the start of the word.
    pub const WAKE_SEM: u64 = offset_of!(WakeWord, sem) as u64;

    /// Where the data area of an MPMC ring with these endpoint counts
    /// starts.
    pub fn mpmc_data_offset(max_producers: u32, max_consumers: u32) -> u64 {
        let geo = Geometry {
            kind: crate::Kind::Mpmc,
            capacity: 2,
            slot_size: 24,
            max_producers,
            max_consumers,
        };
        geo.data_offset() as u64
    }
}

/// Loom test hook: the names in the model of `/dev/shm`.
#[cfg(loom)]
#[doc(hidden)]
pub fn __model_shm_names() -> Vec<String> {
    shm::model_names()
}
