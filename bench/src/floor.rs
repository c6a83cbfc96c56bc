//! The `floor` transports: the least a copying shared-memory hand-off can
//! cost. Two processes share one memfd page set, no validation, no
//! wake-ups. A message is "copy the payload in, store a sequence word
//! (Release)"; receiving is "spin until the sequence word moves (Acquire),
//! copy the payload out". Two shapes ([`FloorShape`]):
//!
//! - `floor` ([`FloorShape::Fixed`]): one sequence line and one payload
//!   buffer per direction, the same lines for every message.
//! - `floor-ring` ([`FloorShape::Ring`]): the sequence word sits in front of
//!   its payload, and each message goes where the previous one ended (8-byte
//!   steps through 4 MiB per direction, as the records of the harness's
//!   shmq rings do), so consecutive messages share lines and every message
//!   reaches lines the last one did not touch: what any ring pays, and
//!   the fixed floor does not.
//!
//! Either carries one message per direction at a time, so it only serves
//! the ping-pong (latency) pattern.

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

/// The bytes each direction of a ring-shaped floor steps through (at
/// least; more for messages too large for one).
use crate::case::RING_BYTES;

/// Gives up a wait after this long (the peer is presumed dead).
const PATIENCE: Duration = Duration::from_secs(10);

/// Where a floor channel puts its messages (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FloorShape {
    /// One sequence line and one payload buffer per direction, the same
    /// lines for every message.
    Fixed,
    /// Each message's sequence word in front of its payload, at the
    /// position after the previous message, through 4 MiB per direction
    /// (more, if one message is larger).
    Ring,
}

/// One side of the floor channel.
pub struct Floor {
    map: SharedMap,
    size: usize,
    shape: FloorShape,
    /// Side A (the pinger) sends on the A→B line; side B on the B→A line.
    a_side: bool,
    sent: u64,
    seen: u64,
}

fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

impl Floor {
    /// The bytes of shared memory a channel of `shape` for messages of at
    /// most `size` bytes needs (size the file to this before
    /// [`map`](Self::map)).
    pub fn map_len(size: usize, shape: FloorShape) -> usize {
        match shape {
            FloorShape::Fixed => round_up(DATA + 2 * round_up(size.max(8), 128), 4096),
            FloorShape::Ring => DATA + 2 * ring_bytes(size),
        }
    }

    /// Maps side A or B of a channel of `shape` for messages of at most
    /// `size` bytes over `fd`, a shared-memory file of at least
    /// [`map_len(size, shape)`](Self::map_len) bytes (an anonymous memfd:
    /// nothing to clean up). The mapping outlives the descriptor.
    ///
    /// # Errors
    /// The `mmap` error.
    pub fn map(
        fd: BorrowedFd<'_>,
        size: usize,
        shape: FloorShape,
        a_side: bool,
    ) -> io::Result<Floor> {
        Ok(Floor {
            map: SharedMap::new(fd, Self::map_len(size, shape))?,
            size,
            shape,
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

    /// Ring shape: the offset of message `m`'s sequence word in direction
    /// A→B (`ab`) or B→A; its payload follows it.
    fn ring_at(&self, ab: bool, m: u64) -> usize {
        let bytes = ring_bytes(self.size);
        let stride = 8 + round_up(self.size.max(8), 8);
        let slot = (m % (bytes / stride) as u64) as usize;
        DATA + if ab { 0 } else { bytes } + slot * stride
    }
}

/// Ring shape: the bytes per direction (room for one message at least).
fn ring_bytes(size: usize) -> usize {
    RING_BYTES.max(round_up(8 + round_up(size.max(8), 8), 4096))
}

/// Ring shape: the sequence word of message `m` (counted from 0) of `len`
/// bytes: its number plus one (mod 2^32: a word one lap old differs), and
/// its length.
fn ring_word(m: u64, len: usize) -> u64 {
    ((m + 1) as u32 as u64) << 32 | len as u64
}

impl Transport for Floor {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        if msg.len() > self.size {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "too large"));
        }
        if self.shape == FloorShape::Ring {
            let at = self.ring_at(self.a_side, self.sent);
            // SAFETY: message `sent`'s payload buffer (`size` bytes after its
            // sequence word, inside the mapping: `ring_at`, `map_len`); in
            // ping-pong the peer is done with whatever was there (it
            // answered it) and does not read it before the store below.
            unsafe {
                std::ptr::copy_nonoverlapping(msg.as_ptr(), self.map.base().add(at + 8), msg.len());
            }
            let w = ring_word(self.sent, msg.len());
            self.sent += 1;
            // Release: pairs with the peer's Acquire load in `recv`.
            self.word(at).store(w, Ordering::Release);
            return Ok(());
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
        // The word to watch, and what it holds once the message is there.
        let ring = self.shape == FloorShape::Ring;
        let (seq, len) = match (ring, self.a_side) {
            (true, a) => (self.ring_at(!a, self.seen), 0),
            (false, true) => (SEQ_BA, LEN_BA),
            (false, false) => (SEQ_AB, LEN_AB),
        };
        let ready = |w: u64| {
            if ring {
                w >> 32 == ring_word(self.seen, 0) >> 32
            } else {
                w != self.seen
            }
        };
        let mut spins: u32 = 0;
        let mut since: Option<Instant> = None;
        // Acquire: pairs with the peer's Release store in `send`.
        let w = loop {
            let w = self.word(seq).load(Ordering::Acquire);
            if ready(w) {
                break w;
            }
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
        };
        self.seen += 1;
        let (n, src) = if ring {
            // SAFETY: the payload after the sequence word, inside the
            // mapping (`ring_at`, `map_len`).
            (w as u32 as usize, unsafe { self.map.base().add(seq + 8) })
        } else {
            // Relaxed: ordered by the Acquire load above.
            let n = self.word(len).load(Ordering::Relaxed) as usize;
            (n, self.buf(!self.a_side))
        };
        let n = n.min(self.size);
        if n > buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer too small",
            ));
        }
        // SAFETY: the peer's buffer holds `n <= size` bytes it wrote before
        // its Release store; it does not touch them until we answer.
        unsafe { std::ptr::copy_nonoverlapping(src, buf.as_mut_ptr(), n) };
        Ok(n)
    }
}
