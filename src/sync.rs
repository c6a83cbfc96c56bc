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

#[cfg(loom)]
pub(crate) use loom::thread::yield_now;
/// Yield the CPU to another runnable thread.
#[cfg(not(loom))]
pub(crate) use std::thread::yield_now;

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
    #[cfg_attr(miri, allow(dead_code))] // only the semaphore backend's
    pub(crate) fn get(&self) -> *mut T {
        self.0.get()
    }
}

// SAFETY: the contents are only ever accessed through raw pointers passed to
// libc functions that are themselves safe for concurrent use (sem_post,
// sem_timedwait); Rust code never forms a reference to them.
unsafe impl<T> Sync for RawCell<T> {}

/// Copies `dst.len()` bytes of ring memory at `src` into `dst` with atomic
/// word loads, never through a reference: a peer that rewrites the bytes
/// meanwhile makes us copy a mix of old and new words, not undefined
/// behaviour. (Loom keeps payload bytes in plain memory it does not track:
/// there this is a plain copy.)
///
/// The caller checks the range once; the loop does no bounds checks. Relaxed
/// `u64` loads compile to plain moves, eight per round.
///
/// # Safety
/// `src` is 8-aligned, and the `dst.len()` bytes from it, rounded up to a
/// multiple of 8, lie inside one live mapping or allocation.
#[inline]
pub(crate) unsafe fn copy_out(src: *const u8, dst: &mut [u8]) {
    #[cfg(loom)]
    {
        // SAFETY: in bounds (caller), and `dst` is our own buffer.
        unsafe { std::ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), dst.len()) };
    }
    #[cfg(not(loom))]
    {
        let words = dst.len() / 8;
        let load = |p: *const u64| {
            // SAFETY: every `p` below is one of the first `⌈len / 8⌉` words
            // from `src`: 8-aligned and in bounds (caller); atomics may be
            // read while others write them.
            unsafe { AtomicU64::from_ptr(p.cast_mut()) }.load(Ordering::Relaxed)
        };
        // Relaxed loads: the caller's Acquire load of the record or slot
        // header ordered the producer's writes before them.
        let (mut s, mut d) = (src.cast::<u64>(), dst.as_mut_ptr().cast::<u64>());
        for _ in 0..words / 8 {
            let w: [u64; 8] = std::array::from_fn(|k| {
                // SAFETY: word `k < 8` of this block of 8 source words.
                load(unsafe { s.add(k) })
            });
            // SAFETY: the next 8 words of `dst` (`8 * words <= len`);
            // unaligned stores are allowed. Both pointers stay within (or
            // one past) their ranges.
            unsafe {
                d.cast::<[u64; 8]>().write_unaligned(w);
                s = s.add(8);
                d = d.add(8);
            }
        }
        // The tests on the length's bits, not on `words % 8` and `len % 8`
        // as counts: one `test` each when a message is whole blocks.
        if dst.len() & 0x38 != 0 {
            for _ in 0..words % 8 {
                let w = load(s);
                // SAFETY: as above, one word.
                unsafe {
                    d.write_unaligned(w);
                    s = s.add(1);
                    d = d.add(1);
                }
            }
        }
        if dst.len() & 7 != 0 {
            let tail = load(s).to_ne_bytes();
            // A byte loop: at most 7 bytes, not worth a `memcpy` call.
            for (d, s) in dst[8 * words..].iter_mut().zip(tail) {
                *d = s;
            }
        }
    }
}

/// A number unique within this process (the loom segment model's file
/// descriptions). Not shared memory and not part of any protocol, so not a
/// loom atomic.
#[cfg(loom)]
pub(crate) fn unique_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    // Relaxed: only uniqueness matters, which the RMW gives.
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Waits a little for another process or thread (an opener's retry while a
/// creator or remover is at work). Under loom, a yield to the model's
/// scheduler.
pub(crate) fn pause(d: std::time::Duration) {
    #[cfg(not(loom))]
    std::thread::sleep(d);
    #[cfg(loom)]
    {
        let _ = d;
        loom::thread::yield_now();
    }
}
