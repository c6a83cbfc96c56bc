//! The `floor` transport: the least a copying shared-memory hand-off can
//! cost. Two processes share one memfd page set: a sequence word and a
//! payload buffer per direction, no ring, no validation, no wake-ups. A
//! message is "copy the payload in, store the sequence (Release)"; receiving
//! is "spin until the sequence moves (Acquire), copy the payload out".
//!
//! It carries one message per direction at a time, so it only serves the
//! ping-pong (latency) pattern.

// The floor deliberately uses std atomics, not the library's loom shim:
// it is a reference point outside the library, and must not share its code.
#![allow(clippy::disallowed_types)]

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::Transport;
use crate::sys::SharedMap;

/// Offsets in the mapping: two 128-byte lines of control words, then the
/// two payload buffers.
const SEQ_AB: usize = 0;
const LEN_AB: usize = 8;
const SEQ_BA: usize = 128;
const LEN_BA: usize = 136;
const DATA: usize = 256;

/// Gives up a wait after this long (the peer is presumed dead).
const PATIENCE: Duration = Duration::from_secs(10);

/// One side of the floor channel.
pub struct Floor {
    map: SharedMap,
    size: usize,
    /// Side A (the pinger) sends on the A→B line; side B on the B→A line.
    a_side: bool,
    sent: u64,
    seen: u64,
}

fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

impl Floor {
    /// The bytes of shared memory a channel for messages of at most `size`
    /// bytes needs (size the file to this before [`map`](Self::map)).
    pub fn map_len(size: usize) -> usize {
        round_up(DATA + 2 * round_up(size.max(8), 128), 4096)
    }

    /// Maps side A or B of a channel for messages of at most `size` bytes
    /// over `fd`, a shared-memory file of at least
    /// [`map_len(size)`](Self::map_len) bytes (an anonymous memfd: nothing
    /// to clean up). The mapping outlives the descriptor.
    ///
    /// # Errors
    /// The `mmap` error.
    pub fn map(fd: BorrowedFd<'_>, size: usize, a_side: bool) -> io::Result<Floor> {
        Ok(Floor {
            map: SharedMap::new(fd, Self::map_len(size))?,
            size,
            a_side,
            sent: 0,
            seen: 0,
        })
    }

    fn word(&self, off: usize) -> &AtomicU64 {
        // SAFETY: `off` is one of the 8-aligned control offsets inside the
        // mapping; both processes access those words only atomically.
        unsafe { self.map.word(off) }
    }

    fn buf(&self, ab: bool) -> *mut u8 {
        let off = if ab {
            DATA
        } else {
            DATA + round_up(self.size.max(8), 128)
        };
        // SAFETY: both buffers lie inside the mapping (see `map_len`).
        unsafe { self.map.base().add(off) }
    }
}

impl Transport for Floor {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        if msg.len() > self.size {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "too large"));
        }
        let (seq, len) = if self.a_side {
            (SEQ_AB, LEN_AB)
        } else {
            (SEQ_BA, LEN_BA)
        };
        // SAFETY: the out-buffer holds `size` bytes; in ping-pong the peer
        // does not read it until we store the new sequence below, and has
        // finished reading the previous message (it answered it).
        unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), self.buf(self.a_side), msg.len()) };
        // Relaxed: published by the Release store of the sequence.
        self.word(len).store(msg.len() as u64, Ordering::Relaxed);
        self.sent += 1;
        // Release: pairs with the peer's Acquire load in `recv`.
        self.word(seq).store(self.sent, Ordering::Release);
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (seq, len) = if self.a_side {
            (SEQ_BA, LEN_BA)
        } else {
            (SEQ_AB, LEN_AB)
        };
        let mut spins: u32 = 0;
        let mut since: Option<Instant> = None;
        // Acquire: pairs with the peer's Release store in `send`.
        while self.word(seq).load(Ordering::Acquire) == self.seen {
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins % (1 << 20) == 0 {
                let t = *since.get_or_insert_with(Instant::now);
                if t.elapsed() > PATIENCE {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "floor: the peer did not answer within 10 s",
                    ));
                }
            }
        }
        self.seen += 1;
        // Relaxed: ordered by the Acquire load above.
        let n = (self.word(len).load(Ordering::Relaxed) as usize).min(self.size);
        if n > buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer too small",
            ));
        }
        // SAFETY: the peer's buffer holds `n <= size` bytes it wrote before
        // its Release store; it does not touch them until we answer.
        unsafe { std::ptr::copy_nonoverlapping(self.buf(!self.a_side), buf.as_mut_ptr(), n) };
        Ok(n)
    }
}
