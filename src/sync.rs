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

/// From this many bytes on, [`copy_out`] copies with one `rep movsb` (on
/// x86-64 CPUs with ERMS). Measured (issue 15, `shmq bench --patterns
/// latency`, against the `floor-ring` row of the same run): at 4 KiB the
/// round trip went from 1.13–1.21x the ring floor to 1.00–1.03x, at 1 KiB
/// from 1.12–1.17x to 1.11–1.12x; at 256 bytes `rep movsb` was 20 ns
/// slower than the word loop, at 512 about the same.
#[cfg(all(not(loom), not(miri), not(fuzzing), target_arch = "x86_64"))]
pub(crate) const REP_MOVSB_FROM: usize = 1024;

/// Copies `dst.len()` bytes of ring memory at `src` into `dst` with atomic
/// word loads, never through a reference: a peer that rewrites the bytes
/// meanwhile makes us copy a mix of old and new words, not undefined
/// behaviour. (Loom keeps payload bytes in plain memory it does not track:
/// there this is a plain copy.)
///
/// The caller checks the range once; the loop does no bounds checks. Relaxed
/// `u64` loads compile to plain moves, eight per round, each word stored
/// as soon as it is loaded (loading all eight first ran out of registers
/// where the loop is inlined: two spills and two reloads per round). From
/// [`REP_MOVSB_FROM`] bytes on x86-64 (with ERMS, not under Miri) one
/// `rep movsb` copies instead: see there. (Not in fuzz builds either:
/// AddressSanitizer checks the loop's loads, not an `asm!` block's.)
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
    #[cfg(all(not(loom), not(miri), not(fuzzing), target_arch = "x86_64"))]
    if dst.len() >= REP_MOVSB_FROM && std::arch::is_x86_feature_detected!("ermsb") {
        // SAFETY: `rep movsb` copies `rcx` bytes from `rsi` up to `rdi`
        // (the direction flag is clear on entry to an asm block); the
        // source bytes are in bounds (caller), `dst` is our own buffer of
        // that length, and the two do not overlap (`dst` is a unique
        // borrow, `src` ring memory). It touches no stack and no flags. To
        // the Rust model the block is opaque: its effect is what the loop
        // below does (each byte it reads is one single-copy-atomic hardware
        // load, so a peer rewriting the bytes meanwhile makes us copy a mix
        // of old and new bytes, never undefined behaviour), and it is a
        // compiler barrier, so it stays after the caller's Acquire load.
        unsafe {
            std::arch::asm!(
                "rep movsb",
                inout("rcx") dst.len() => _,
                inout("rsi") src => _,
                inout("rdi") dst.as_mut_ptr() => _,
                options(nostack, preserves_flags),
            );
        }
        return;
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
            for k in 0..8 {
                // SAFETY: word `k < 8` of this block of 8 source words, and
                // of the next 8 words of `dst` (`8 * words <= len`);
                // unaligned stores are allowed.
                unsafe { d.add(k).write_unaligned(load(s.add(k))) };
            }
            // SAFETY: both pointers stay within (or one past) their ranges.
            unsafe {
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

#[cfg(all(test, not(loom)))]
mod tests {
    use super::copy_out;

    /// Both copies (the word loop and, from `REP_MOVSB_FROM` bytes on
    /// x86-64, `rep movsb`) copy exactly `dst.len()` bytes, whatever the
    /// length and however `dst` is aligned.
    #[test]
    fn copy_out_copies_every_length_exactly() {
        let src: Vec<u64> = (0..1200u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .collect();
        // SAFETY: `u64`s are 8 bytes of plain data.
        let bytes = unsafe { std::slice::from_raw_parts(src.as_ptr().cast::<u8>(), 9600) };
        for len in [
            0, 1, 7, 8, 9, 63, 64, 65, 255, 1016, 1023, 1024, 1025, 1031, 4096, 9593,
        ] {
            for skew in [0, 1, 3] {
                let mut buf = vec![0xa5u8; len + skew + 1];
                // SAFETY: `src` is 8-aligned and holds 9600 bytes, at least
                // `len` rounded up to 8.
                unsafe { copy_out(src.as_ptr().cast(), &mut buf[skew..skew + len]) };
                assert_eq!(
                    &buf[skew..skew + len],
                    &bytes[..len],
                    "len {len}, skew {skew}"
                );
                assert!(buf[..skew].iter().all(|&b| b == 0xa5), "before, len {len}");
                assert_eq!(buf[skew + len], 0xa5, "after, len {len}");
            }
        }
    }
}
