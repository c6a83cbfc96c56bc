//! The `limit` transport: the ceiling of a bare one-way shared-memory
//! stream on this machine, measured in the same run and through the same
//! harness as the rings. It is a port of the stream of `spsc_limit.c`, the
//! bare C probe of issue 15: one producer, one consumer, a byte ring in a
//! shared mapping; a record is an 8-byte length header and the payload
//! padded to 8; each side keeps a cached copy of the other's cursor and
//! reloads it only when the cache says "full" (or "empty"); each side
//! stores its own cursor (Release) once after every record, like the probe
//! with a batch of 1. No validation, no wake-ups (both sides spin), no
//! endpoint bookkeeping: nothing a ring that survives crashes needs.
//!
//! It is the ceiling of this protocol, not of every one: a ring that
//! publishes through the record's header instead of the producer's cursor
//! (as shmq's SPSC ring does), or stores cursors once per batch, moves fewer
//! cache lines per record and can pass it with small messages.
//!
//! It only streams (the throughput pattern); the [`Floor`](crate::Floor)
//! is its ping-pong counterpart.

// The limit deliberately uses std atomics, not the library's loom shim:
// it is a reference point outside the library, and must not share its code.
#![allow(clippy::disallowed_types)]

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::Transport;
use crate::sys::SharedMap;

/// Offsets in the mapping: the producer's cursor (tail) and the
/// consumer's (head) on 128-byte lines of their own, then the ring.
const TAIL: usize = 0;
const HEAD: usize = 128;
const DATA: usize = 256;

/// The ring's bytes, as the shmq SPSC ring's in `shmq bench` (larger only
/// when two records would not fit).
const CAPACITY: usize = crate::case::RING_BYTES;

/// The header of the filler that pads the end of the ring when the next
/// record does not fit before it (the probe uses 0, which cannot be a
/// length here: empty messages are allowed).
const PAD: u64 = u64::MAX;

/// Gives up a wait after this long (the peer is presumed dead).
const PATIENCE: Duration = Duration::from_secs(10);

/// One end of a limit stream: the producer or the consumer.
pub struct Limit {
    map: SharedMap,
    /// Ring bytes, a power of two.
    cap: u64,
    size: usize,
    producer: bool,
    /// Own cursor: bytes written (producer) or read (consumer) so far.
    pos: u64,
    /// The peer's cursor as last loaded.
    peer: u64,
}

fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

/// Bytes a record of a `len`-byte message takes: header, payload padded
/// to 8.
pub(crate) fn record(len: usize) -> u64 {
    (8 + round_up(len, 8)) as u64
}

impl Limit {
    /// The ring's bytes for messages of at most `size` bytes: 4 MiB
    /// ([`RING_BYTES`](crate::RING_BYTES)), or
    /// the power of two that holds two records of `size` bytes (so that a
    /// record always fits after a pad to the ring's end).
    pub fn capacity(size: usize) -> usize {
        CAPACITY.max((2 * record(size) as usize).next_power_of_two())
    }

    /// Records per cursor store of the batched stream
    /// ([`TransportName::LimitBatch`](crate::TransportName::LimitBatch)) of
    /// `size`-byte messages: [`LIMIT_BATCH`](crate::LIMIT_BATCH), or as many
    /// as fill an eighth of the ring if fewer (seven at 64 KiB: a batch
    /// that fills the ring makes each side wait for the other's whole
    /// batch, slower than a store per record).
    ///
    /// ```
    /// use shmq_bench::{LIMIT_BATCH, Limit};
    /// assert_eq!(Limit::batch(1024), LIMIT_BATCH);
    /// assert_eq!(Limit::batch(65536), 7);
    /// ```
    pub fn batch(size: usize) -> usize {
        let fit = Self::capacity(size) / 8 / record(size) as usize;
        fit.clamp(1, crate::LIMIT_BATCH)
    }

    /// The bytes of shared memory a stream of messages of at most `size`
    /// bytes needs (size the file to this before [`map`](Self::map)).
    pub fn map_len(size: usize) -> usize {
        round_up(DATA + Self::capacity(size), 4096)
    }

    /// Maps the producer's or the consumer's end of a stream of messages
    /// of at most `size` bytes over `fd`, a zero-filled shared-memory file
    /// of at least [`map_len(size)`](Self::map_len) bytes (an anonymous
    /// memfd: nothing to clean up). The mapping outlives the descriptor.
    ///
    /// # Errors
    /// The `mmap` error.
    pub fn map(fd: BorrowedFd<'_>, size: usize, producer: bool) -> io::Result<Limit> {
        Ok(Limit {
            map: SharedMap::new(fd, Self::map_len(size))?,
            cap: Self::capacity(size) as u64,
            size,
            producer,
            pos: 0,
            peer: 0,
        })
    }

    fn word(&self, off: usize) -> &AtomicU64 {
        // SAFETY: `off` is one of the 8-aligned cursor offsets inside the
        // mapping; both processes access the cursors only atomically.
        unsafe { self.map.word(off) }
    }

    /// The ring byte at stream position `pos` (8-aligned when `pos` is).
    fn at(&self, pos: u64) -> *mut u8 {
        // SAFETY: the offset is below `cap`, and the ring's `cap` bytes lie
        // inside the mapping after DATA (see `map_len`).
        unsafe { self.map.base().add(DATA + (pos & (self.cap - 1)) as usize) }
    }

    /// Reloads the peer's cursor until `ready` holds for it; the slow path
    /// of both sides (the cached copy said full, or empty). Gives up after
    /// [`PATIENCE`].
    #[cold]
    #[inline(never)]
    fn await_peer(&mut self, ready: impl Fn(u64) -> bool) -> io::Result<()> {
        let off = if self.producer { HEAD } else { TAIL };
        let mut spins: u32 = 0;
        let mut since: Option<Instant> = None;
        loop {
            // Acquire: pairs with the peer's Release store of its cursor
            // (the consumer's head in `recv`: it has copied those bytes
            // out; the producer's tail in `send`: the records before it
            // are written).
            self.peer = self.word(off).load(Ordering::Acquire);
            if ready(self.peer) {
                return Ok(());
            }
            // No pause: the probe reloads in a bare loop, and so do we.
            spins = spins.wrapping_add(1);
            if spins % (1 << 20) == 0 {
                let t = *since.get_or_insert_with(Instant::now);
                if t.elapsed() > PATIENCE {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "limit: the peer did not move within 10 s",
                    ));
                }
            }
        }
    }

    /// Waits until `need` more bytes after our cursor are free (first
    /// publishing what a batch wrote: the consumer can only free what it
    /// sees).
    #[inline]
    fn room(&mut self, need: u64) -> io::Result<()> {
        let (pos, cap) = (self.pos, self.cap);
        if pos + need - self.peer > cap {
            self.publish();
            self.await_peer(|head| pos + need - head <= cap)?;
        }
        Ok(())
    }

    /// Stores the producer's cursor: every record before it is visible.
    fn publish(&self) {
        // Release: pairs with the consumer's Acquire load of the tail in
        // `await_peer`: the records (and any pad) are written before it.
        self.word(TAIL).store(self.pos, Ordering::Release);
    }

    /// Writes one record (and any pad before it) without publishing it.
    fn write(&mut self, msg: &[u8]) -> io::Result<()> {
        if !self.producer {
            return Err(crate::transport::unsupported("send (it is the consumer)"));
        }
        if msg.len() > self.size {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "too large"));
        }
        let rec = record(msg.len());
        let to_end = self.cap - (self.pos & (self.cap - 1));
        if to_end < rec {
            // Pad to the end; published with the record's tail.
            self.room(to_end)?;
            // SAFETY: `to_end >= 8` bytes (cursors move in 8s) at an
            // 8-aligned ring offset that the consumer has left (`room`).
            unsafe { self.at(self.pos).cast::<u64>().write(PAD) };
            self.pos += to_end;
        }
        self.room(rec)?;
        let p = self.at(self.pos);
        // SAFETY: `rec` bytes at an 8-aligned ring offset, before the
        // ring's end (padded above) and left by the consumer (`room`): the
        // header, then the payload.
        unsafe {
            p.cast::<u64>().write(msg.len() as u64);
            std::ptr::copy_nonoverlapping(msg.as_ptr(), p.add(8), msg.len());
        }
        self.pos += rec;
        Ok(())
    }
}

impl Transport for Limit {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        self.write(msg)?;
        self.publish();
        Ok(())
    }

    /// `n` records, one cursor store (`spsc_limit.c` with a batch of `n`).
    fn send_batch(&mut self, msg: &[u8], n: usize) -> io::Result<()> {
        for _ in 0..n {
            self.write(msg)?;
        }
        self.publish();
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.read(buf, true)?.unwrap_or(0);
        self.release();
        Ok(n)
    }

    /// Up to `max` records, one cursor store (`spsc_limit.c`'s consumer
    /// with a batch of `max`).
    fn recv_batch(
        &mut self,
        buf: &mut [u8],
        max: usize,
        each: &mut dyn FnMut(&[u8]) -> bool,
    ) -> io::Result<usize> {
        let mut got = 0;
        while got < max {
            let Some(n) = self.read(buf, got == 0)? else {
                break;
            };
            got += 1;
            if !each(&buf[..n]) {
                break;
            }
        }
        self.release();
        Ok(got)
    }
}

impl Limit {
    /// Stores the consumer's cursor: frees what it read.
    fn release(&mut self) {
        // Release: pairs with the producer's Acquire load of the head in
        // `await_peer`: our copy-outs are done before it reuses the bytes.
        self.word(HEAD).store(self.pos, Ordering::Release);
    }

    /// Reads the next record into `buf` without storing the cursor;
    /// `None` if there is none and `wait` is false.
    fn read(&mut self, buf: &mut [u8], wait: bool) -> io::Result<Option<usize>> {
        if self.producer {
            return Err(crate::transport::unsupported(
                "receive (it is the producer)",
            ));
        }
        loop {
            if self.pos == self.peer && !wait {
                // Acquire: as in `await_peer`.
                self.peer = self.word(TAIL).load(Ordering::Acquire);
                if self.pos == self.peer {
                    return Ok(None);
                }
            }
            if self.pos == self.peer {
                let pos = self.pos;
                self.await_peer(|tail| tail != pos)?;
            }
            let p = self.at(self.pos);
            // SAFETY: an 8-aligned ring offset below the producer's
            // published tail: a header it wrote before its Release store.
            let h = unsafe { p.cast::<u64>().read() };
            if h == PAD {
                self.pos += self.cap - (self.pos & (self.cap - 1));
                continue;
            }
            // `min`: the header came from `send`, which writes at most
            // `size`; this only keeps the copy in bounds if it did not.
            let n = (h as usize).min(self.size);
            if n > buf.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "buffer too small",
                ));
            }
            // SAFETY: `send` wrote the `n` payload bytes after the header,
            // before the ring's end and before its Release store of the
            // tail; it does not reuse them until our head store (`release`).
            unsafe { std::ptr::copy_nonoverlapping(p.add(8), buf.as_mut_ptr(), n) };
            self.pos += record(n);
            return Ok(Some(n));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

    use super::*;

    fn memfd(len: usize) -> OwnedFd {
        // SAFETY: the name is a NUL-terminated literal.
        let fd = unsafe { libc::memfd_create(c"limit-test".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0, "{}", io::Error::last_os_error());
        // SAFETY: memfd_create returned a fresh descriptor only we hold.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: a plain syscall on our own descriptor.
        let r = unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) };
        assert_eq!(r, 0, "{}", io::Error::last_os_error());
        fd
    }

    /// Message `i` of a stream of at most `size`-byte messages: a length
    /// that varies (so records pad the ring's end at different places) and
    /// bytes that name `i`.
    fn message(i: u64, size: usize) -> Vec<u8> {
        let len = if i % 3 == 0 {
            size
        } else {
            (i as usize * 7919) % (size + 1)
        };
        (0..len).map(|k| (i as usize + k * 31) as u8).collect()
    }

    /// Streams `n` messages from a producer thread to this thread and
    /// checks each.
    fn stream(size: usize, n: u64) {
        stream_batched(size, n, 1);
    }

    /// `stream`, the producer sending `batch` copies of each message with
    /// `send_batch` (one cursor store per batch), the consumer receiving
    /// with `recv_batch`.
    fn stream_batched(size: usize, n: u64, batch: usize) {
        let fd = memfd(Limit::map_len(size));
        let tx_fd = fd.try_clone().unwrap();
        let producer = std::thread::spawn(move || {
            let mut tx = Limit::map(tx_fd.as_fd(), size, true).unwrap();
            for i in 0..n / batch as u64 {
                if batch == 1 {
                    tx.send(&message(i, size)).unwrap();
                } else {
                    tx.send_batch(&message(i, size), batch).unwrap();
                }
            }
            // A producer cannot receive.
            assert_eq!(
                tx.recv(&mut [0u8; 8]).unwrap_err().kind(),
                io::ErrorKind::Unsupported
            );
        });
        let mut rx = Limit::map(fd.as_fd(), size, false).unwrap();
        drop(fd);
        let mut buf = vec![0u8; size];
        let total = n - n % batch as u64;
        let mut i = 0;
        while i < total {
            // The consumer takes batches too (up to `batch`, whatever is
            // there; one cursor store each).
            let got = rx
                .recv_batch(&mut buf, batch, &mut |m| {
                    let want = message(i / batch as u64, size);
                    assert_eq!(m, &want[..], "message {i} of {size} B");
                    i += 1;
                    true
                })
                .unwrap();
            assert!((1..=batch).contains(&got));
        }
        producer.join().unwrap();
        assert!(rx.send(b"x").is_err(), "a consumer cannot send");
    }

    #[test]
    fn limit_streams_messages_of_several_sizes_intact_across_laps() {
        // 64 B and 1 KiB go round the 4 MiB ring several times; 3 MiB
        // needs an 8 MiB ring.
        stream(8, 40_000);
        stream(64, 200_000);
        stream(1024, 20_000);
        stream(3 << 20, 8);
        assert_eq!(Limit::capacity(3 << 20), 8 << 20);
    }

    #[test]
    fn limit_streams_batches_larger_than_its_ring() {
        // 32 records per cursor store; with 600 KiB messages a batch of 8
        // is more than the 4 MiB ring: the producer must publish what it
        // wrote before waiting for room, or both sides wait for ever.
        stream_batched(64, 50_000, 32);
        stream_batched(600 << 10, 40, 8);
    }

    #[test]
    fn limit_refuses_messages_over_its_size() {
        let fd = memfd(Limit::map_len(64));
        let mut tx = Limit::map(fd.as_fd(), 64, true).unwrap();
        let e = tx.send(&[0u8; 65]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
}
