//! # shmq-bench — the one benchmark harness of shmq
//!
//! `shmq bench` (the CLI) and the criterion benches in `benches/` measure
//! every transport through this crate, so a transport is written once and
//! measured the same way everywhere:
//!
//! * [`Transport`]: the one interface, implemented by the shmq endpoints
//!   and by the kernel baselines: [`pipe`] ([`PipeSender`],
//!   [`PipeReceiver`]), POSIX [`MessageQueue`], Unix-domain [`SeqPacket`]
//!   sockets, the [`Floor`] (a raw cache-line hand-off, fixed lines or
//!   laid out as a ring's records: [`FloorShape`]) and the
//!   [`Limit`] (a bare one-way shared-memory stream: the ceiling).
//! * [`endpoint`]: the one factory, keyed on transport × [`Role`], over a
//!   [`Link`] (the names and descriptors a measurement's processes share).
//! * [`Session`] / [`measure`]: a [`Case`]'s processes (peers are copies
//!   of the running program, see [`peer`]) and the measurement loops:
//!   ping-pong latency, one-way streams, many-to-many streams; each run
//!   bounded by a time window or a message count ([`Until`]).
//! * [`line_rtt`]: how far apart the two pinned CPUs are right now (a
//!   VM's may move), taken around every measurement of `shmq bench`.
//! * [`hot`]: one-thread hot paths (SPSC copy and zero-copy, MPMC, typed)
//!   for instruction counts per message.
//!
//! ```no_run
//! use shmq_bench::{Case, Host, Params, TransportName, Until, WaitName, measure};
//! use std::time::Duration;
//! # fn main() -> Result<(), String> {
//! // A bench binary's `main` starts with this: its peers are copies of it.
//! if let Some(r) = shmq_bench::peer::serve_if_peer() {
//!     return r;
//! }
//! let host = Host::new(&[], true);
//! let case = Case::latency(Params::new(TransportName::ShmqSpsc, WaitName::Spin, 64));
//! let s = measure(&case, &host, Until::Count(10_000))?;
//! println!("{:?} per round trip", s.elapsed / s.counted as u32);
//! # Ok(())
//! # }
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

mod case;
mod endpoints;
mod floor;
pub mod hot;
mod limit;
mod link;
mod measure;
mod mqueue;
pub mod peer;
mod pipe;
mod placement;
mod seqpacket;
mod sys;
mod transport;

pub use case::{
    Case, KERNEL_BUFFER, LIMIT_BATCH, Params, Pattern, RING_BYTES, TransportName, WaitName,
};
pub use endpoints::{Role, endpoint};
pub use floor::{Floor, FloorShape};
pub use limit::Limit;
pub use link::Link;
pub use measure::{DATA, Go, STOP, Sample, Session, Until, measure};
pub use mqueue::{MessageQueue, mq_msgsize_max};
pub use peer::Host;
pub use pipe::{PipeReceiver, PipeSender, pipe};
pub use placement::line_rtt;
pub use seqpacket::{SeqPacket, seqpacket_pair};
pub use sys::{allowed_cpus, cpu_ns, mono_ns, pin_to};
pub use transport::{Alternating, Counters, Duplex, Polling, Receiving, Stretch, Transport, to_io};
