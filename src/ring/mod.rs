//! The ring protocols: pure index, record and slot logic over a [`Mem`]
//! (header, endpoint table and data area). No syscalls and no waiting here;
//! every value read from the region is read once, validated, and a violation
//! becomes [`Error::Corrupted`](crate::Error::Corrupted).
//!
//! [`Mem`]: crate::region::Mem

pub(crate) mod mpmc;
pub(crate) mod spsc;
