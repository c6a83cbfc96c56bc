//! The one place where atomics, fences and spin hints come from.
//!
//! Normally these are `std`'s; under `--cfg loom` they are loom's, so that the
//! loom models in `tests/loom.rs` explore every interleaving of the real
//! protocol code. `clippy.toml` forbids the std types everywhere else.

#![allow(clippy::disallowed_types)]

// Aliases (not re-exports), so that clippy's `disallowed-types` sees the
// alias and not the std type at every use site.
#[cfg(not(loom))]
pub(crate) type AtomicU32 = std::sync::atomic::AtomicU32;
#[cfg(not(loom))]
pub(crate) type AtomicU64 = std::sync::atomic::AtomicU64;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{Ordering, fence};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

/// A hint that we are busy-waiting. Under loom it yields to the model
/// scheduler, so that spin loops terminate in the model.
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(not(loom))]
    std::hint::spin_loop();
    #[cfg(loom)]
    loom::thread::yield_now();
}

/// Yield the CPU to another runnable thread.
#[inline]
pub(crate) fn yield_now() {
    #[cfg(not(loom))]
    std::thread::yield_now();
    #[cfg(loom)]
    loom::thread::yield_now();
}

/// Raw storage for a value that is handed to the kernel or libc by pointer
/// (a `sem_t`), never read or written by Rust code directly. It is not tracked
/// by loom: loom models never use the semaphore backend.
#[repr(transparent)]
pub(crate) struct RawCell<T>(std::cell::UnsafeCell<T>);

impl<T> RawCell<T> {
    /// Wraps a value.
    #[cfg_attr(not(loom), allow(dead_code))]
    pub(crate) fn new(v: T) -> RawCell<T> {
        RawCell(std::cell::UnsafeCell::new(v))
    }

    /// Pointer to the contents, for libc calls.
    pub(crate) fn get(&self) -> *mut T {
        self.0.get()
    }
}

// SAFETY: the contents are only ever accessed through raw pointers passed to
// libc functions that are themselves safe for concurrent use (sem_post,
// sem_timedwait); Rust code never forms a reference to them.
unsafe impl<T> Sync for RawCell<T> {}
