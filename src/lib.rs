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
//!   POSIX semaphore; a wake syscall only when somebody sleeps.
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

mod endpoint;
mod error;
#[cfg(not(loom))]
mod fork;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(not(loom))]
mod inspect;
mod interrupt;
mod layout;
pub mod mpmc;
mod notify;
mod options;
mod region;
mod ring;
mod shm;
pub mod spsc;
mod sync;
pub mod typed;

pub use error::{Corruption, Error, OpenError};
#[cfg(not(loom))]
pub use inspect::{EndpointInfo, EndpointState, GcOutcome, SegmentInfo, gc, gc_one, inspect};
pub use interrupt::Interrupter;
pub use layout::Kind;
pub use notify::{Stats, WaitStrategy};
pub use options::{DEFAULT_SPIN, Options};
pub use shm::{MAX_NAME_LEN, PREFIX, list, remove, validate_name};

/// Loom test hook: the names in the model of `/dev/shm`.
#[cfg(loom)]
#[doc(hidden)]
pub fn __model_shm_names() -> Vec<String> {
    shm::model_names()
}
