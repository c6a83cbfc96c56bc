//! # shmq-bench — the one benchmark harness of shmq
//!
//! `shmq bench` (the CLI) and the criterion benches in `benches/` measure
//! every transport through the code in this crate:
//!
//! * [`Transport`]: the one interface, implemented by the shmq endpoints
//!   and by the kernel baselines: [`pipe`] ([`PipeSender`],
//!   [`PipeReceiver`]), POSIX [`MessageQueue`], Unix-domain [`SeqPacket`]
//!   sockets, and the [`Floor`] (a raw cache-line hand-off, no ring).
//!
//! It is not published: it exists so that a transport is written once and
//! measured the same way everywhere.
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

mod floor;
mod mqueue;
mod pipe;
mod seqpacket;
mod sys;
mod transport;

pub use floor::Floor;
pub use mqueue::{MessageQueue, mq_msgsize_max};
pub use pipe::{PipeReceiver, PipeSender, pipe};
pub use seqpacket::{SeqPacket, seqpacket_pair};
pub use sys::{allowed_cpus, cpu_ns, mono_ns, pin_to};
pub use transport::{Counters, Duplex, Transport, to_io};
