//! SPSC protocol: variable-length records in a power-of-two byte ring.
//!
//! Cursors are `u64` byte counts that only grow; a cursor's position in the
//! ring is `cursor & (capacity - 1)`, its lap `cursor / capacity`.
//!
//! A record is an 8-byte header word `tag << 32 | len` followed by `len`
//! payload bytes, padded to a multiple of 8. A record never wraps: when it does
//! not fit before the end of the ring, a padding record (tag `PAD`) fills the
//! rest and the record starts at position 0. The lowest bit of the tag is the
//! parity of the record's lap, so a header left from the previous lap never
//! reads as a new one.
//!
//! **Publishing by header word.** The consumer does not read the producer's
//! cursor to find new records: it reads the header word at its own cursor.
//! The producer writes the payload, then a zero word after the record (the
//! *terminator*: "nothing yet" for the consumer once it gets there), then the
//! header word with a Release store; the consumer loads the header word with
//! Acquire and, if it is a record of the current lap, reads it. So neither
//! side touches the other's cursor line while the ring is neither full nor
//! empty. The terminator is left out only when the ring is exactly full: the
//! word after the record is then the header of the oldest unreleased record,
//! one lap old, which its parity marks as "nothing yet".
//!
//! A batch holds back the header word of its first record until it
//! publishes: the consumer cannot get past it, and its Release store
//! publishes every record of the batch at once.
//!
//! The producer still stores its cursor (`tail`) after each publish, for
//! tools and for a successor producer, which continues from it after
//! skipping any records published after the last cursor store (a producer
//! that died between the two). The consumer frees space with a Release store
//! of `head`, which the producer reads only when its cached copy says full.

use crate::error::{Corruption, Error};
use crate::layout::{CONS_AT, PROD_AT, RECORD_HEADER, TAG_MSG, TAG_PAD};
use crate::region::Mem;
use crate::sync::{AtomicU64, Ordering};

/// Cursors count bytes from 0 and cannot honestly get near this (decades at
/// any rate); a value this high comes from a scribbling peer. Below it,
/// `cursor + 2 * capacity` never overflows.
const CURSOR_LIMIT: u64 = 1 << 62;

/// The header word of a record of `len` bytes with `tag` at cursor `at` of
/// a ring of `cap` bytes: the tag's lowest bit flipped on odd laps (`at &
/// cap` is the lap's lowest bit, `cap` being a power of two).
#[inline(always)]
const fn header_word(len: u32, tag: u32, at: u64, cap: u64) -> u64 {
    (((tag ^ (at & cap != 0) as u32) as u64) << 32) | len as u64
}

/// The upper half of the header word of a message at cursor `at` (its
/// tag, with the lap parity).
#[inline(always)]
const fn msg_hi(at: u64, cap: u64) -> u64 {
    header_word(0, TAG_MSG, at, cap) >> 32
}

/// Bytes a record of `len` payload bytes takes in the ring.
///
/// `len` is at most `u32::MAX` (a header's length field), so the rounding
/// cannot overflow; `(len + 7) & !7` is two instructions where
/// `next_multiple_of` is five.
#[inline(always)]
pub(crate) const fn record_size(len: u64) -> u64 {
    debug_assert!(len <= u32::MAX as u64);
    RECORD_HEADER as u64 + ((len + 7) & !7)
}

/// Largest payload a ring of `capacity` bytes accepts: half the ring minus a
/// record header, and no more than the header's 32-bit length field can say
/// (`u32::MAX`, for rings above 8 GiB). Half, because a record must be
/// contiguous: wherever the write position is, a record of at most half the
/// ring fits either before the end or, after a padding record, at the start
/// once the consumer has caught up.
pub(crate) const fn max_message_len(capacity: u64) -> usize {
    let half = capacity / 2 - RECORD_HEADER as u64;
    if half > u32::MAX as u64 {
        u32::MAX as usize
    } else {
        half as usize
    }
}

fn corrupted(mem: &Mem, what: &'static str, at: Option<u64>, value: u64) -> Error {
    // Relaxed: a diagnostic flag for tools (`shmq stat`); nothing is ordered by it.
    mem.header().meta.poisoned.store(1, Ordering::Relaxed);
    Error::Corrupted(Corruption::new(what, at, value))
}

/// Checks the shared cursors an endpoint starts from. `tail` may lag `head`
/// by the records of one publish (a producer that died, or has not yet
/// stored its cursor, after publishing them), and lead it by at most the
/// capacity. Both are below `CURSOR_LIMIT` (decades of traffic away), so
/// that the quick paths' sums cannot overflow.
fn check_cursors(mem: &Mem, tail: u64, head: u64, cap: u64) -> Option<Error> {
    if tail % 8 != 0 || tail >= CURSOR_LIMIT || tail.abs_diff(head) > cap {
        return Some(corrupted(
            mem,
            "write cursor out of range at attach",
            PROD_AT,
            tail,
        ));
    }
    if head % 8 != 0 || head >= CURSOR_LIMIT {
        return Some(corrupted(
            mem,
            "read cursor out of range at attach",
            CONS_AT,
            head,
        ));
    }
    None
}

/// One call's view of the ring's data area: `mem` and, outside loom, the
/// base pointer of the whole ring, bounds-checked once, so that accesses at
/// positions the protocol keeps inside the ring need no check of their own.
#[derive(Clone, Copy)]
struct Data<'m> {
    mem: &'m Mem,
    #[cfg(not(loom))]
    base: *mut u8,
}

impl<'m> Data<'m> {
    /// The data area of a ring of `cap` bytes.
    ///
    /// # Safety
    /// `cap` is `mem.geometry().capacity`, which a `Mem` keeps within its
    /// data area. (Ring sides read their `cap` from the geometry of the
    /// `Mem` they attach to, and are only ever called with that `Mem`: an
    /// `Endpoint` holds both. Debug builds check it.)
    #[inline(always)]
    unsafe fn of(mem: &'m Mem, cap: u64) -> Data<'m> {
        debug_assert_eq!(
            cap,
            mem.geometry().capacity,
            "ring used with another region"
        );
        Data {
            mem,
            #[cfg(not(loom))]
            base: mem.data_ptr(),
        }
    }

    /// The 8-byte word at data offset `pos`, as an atomic.
    ///
    /// # Safety
    /// `pos` is a multiple of 8 and `pos + 8 <= cap` (the `cap` of `of`).
    /// Positions of record headers are: every cursor is a multiple of 8
    /// (checked at attach; record and padding sizes are multiples of 8),
    /// and a position is a cursor masked by `cap - 1`.
    #[inline(always)]
    unsafe fn word(self, pos: u64) -> &'m AtomicU64 {
        #[cfg(loom)]
        return self.mem.word(pos);
        #[cfg(not(loom))]
        {
            debug_assert!(pos % 8 == 0, "unaligned record position {pos}");
            // SAFETY: in bounds of the `cap` bytes checked in `of`, and
            // 8-aligned (the data area is 128-aligned), as the caller
            // promises; atomics may be accessed while the peer accesses them
            // too; the reference does not outlive `mem`.
            unsafe { AtomicU64::from_ptr(self.base.add(pos as usize).cast()) }
        }
    }

    /// Pointer to `len` bytes at data offset `pos`.
    ///
    /// # Safety
    /// `pos + len <= cap` (the `cap` of `of`).
    #[inline(always)]
    unsafe fn bytes(self, pos: u64, len: usize) -> *mut u8 {
        #[cfg(loom)]
        return self.mem.bytes(pos, len);
        #[cfg(not(loom))]
        {
            let _ = len;
            // SAFETY: in bounds of the `cap` bytes checked in `of`, as the
            // caller promises.
            unsafe { self.base.add(pos as usize) }
        }
    }
}

/// What a header word says, read at cursor `at`.
enum Word {
    /// Nothing published here yet: the terminator, or a header of the
    /// previous lap.
    Nothing,
    Msg(u64),
    Pad(u64),
    Bad,
}

#[inline]
fn decode(word: u64, at: u64, cap: u64) -> Word {
    let parity = (at & cap != 0) as u32;
    let (len, tag) = (word as u32 as u64, ((word >> 32) as u32) ^ parity);
    match tag {
        TAG_MSG => Word::Msg(len),
        TAG_PAD => Word::Pad(len),
        _ if word == 0 || tag == TAG_MSG ^ 1 || tag == TAG_PAD ^ 1 => Word::Nothing,
        _ => Word::Bad,
    }
}

/// A reserved but not yet committed record.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reservation {
    /// Cursor of the record header (after any padding).
    pub start: u64,
    /// Bytes of padding record before `start` (0 if none).
    pub pad: u64,
    /// Payload bytes reserved.
    pub len: usize,
}

/// A validated record to read.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Record {
    /// Data offset of the first payload byte (a masked cursor).
    pub at: u64,
    pub len: usize,
    /// Cursor just past the record.
    pub next: u64,
}

/// The producer's private state.
#[derive(Debug)]
pub(crate) struct ProducerRing {
    /// The capacity minus one (the capacity is a power of two): the mask
    /// of positions. Kept instead of the capacity, which only the slow
    /// paths need (`cap()`): the quick ones mask twice per record, and a
    /// stored capacity cost a decrement each time (callgrind). The consumer
    /// keeps `cap`: its quicker quick path made a 64-byte spin-only stream
    /// slower, not faster (ARCHITECTURE.md, "Instructions in futex rings").
    mask: u64,
    /// `max_message_len(cap)`.
    max: usize,
    /// Next write cursor, including committed but unpublished records.
    tail: u64,
    /// Last value stored to the shared `tail`.
    published: u64,
    /// Last `head` seen; refreshed only when it says "full".
    head_cache: u64,
    /// How far the quick paths may write: the end of the lap `tail` was in
    /// at the last `set_limit`, or `head_cache + cap` then, whichever is
    /// lower. It only goes stale on the safe side (`head_cache` grows, and
    /// once `tail` leaves that lap it is at or past `limit`), so `tail +
    /// need <= limit` alone proves that a record fits before the ring's end
    /// and in the free space, in `tail`'s lap of the last `set_limit`.
    limit: u64,
    /// The upper half of a message header word of that lap (see
    /// `header_word`): a quick path's header is `lap_tag | len`.
    lap_tag: u64,
    /// While records wait for `publish`: the data offset of the first one's
    /// header word (a padding record's, if it starts with one) and that
    /// word, held back until then.
    pending_at: u64,
    pending_word: u64,
}

impl ProducerRing {
    /// The ring's capacity in bytes.
    #[inline(always)]
    fn cap(&self) -> u64 {
        self.mask + 1
    }

    /// Starts from the shared cursors, after any records a predecessor
    /// published without storing its cursor.
    pub(crate) fn attach(mem: &Mem) -> Result<ProducerRing, Error> {
        let cap = mem.geometry().capacity;
        let h = mem.header();
        // Acquire: pairs with the Release stores of earlier endpoints, so that
        // we continue from a state they finished writing.
        let tail = h.prod.load(Ordering::Acquire);
        let head = h.cons.load(Ordering::Acquire);
        if let Some(e) = check_cursors(mem, tail, head, cap) {
            return Err(e);
        }
        // SAFETY: `cap` was just read from `mem`'s geometry.
        let data = unsafe { Data::of(mem, cap) };
        // Skip the records published after the last store of `tail`: each
        // reads as a record of its lap (a terminator or an old header ends
        // them), and together they stay within one ring from `head`.
        let mut t = tail;
        while t < CURSOR_LIMIT && head < CURSOR_LIMIT && t + RECORD_HEADER as u64 <= head + cap {
            let pos = t & (cap - 1);
            // SAFETY: `t` is a multiple of 8 (checked above, and every size
            // added below is one), masked below `cap`.
            // Acquire: pairs with the Release header store in `publish`.
            let word = unsafe { data.word(pos) }.load(Ordering::Acquire);
            let size = match decode(word, t, cap) {
                Word::Msg(len) if len <= max_message_len(cap) as u64 => record_size(len),
                Word::Pad(len) if pos != 0 && len + 8 == cap - pos => cap - pos,
                _ => break,
            };
            if pos + size > cap || t + size > head + cap {
                break;
            }
            t += size;
        }
        if t < head {
            return Err(corrupted(
                mem,
                "write cursor behind the read cursor at attach",
                PROD_AT,
                tail,
            ));
        }
        // Out of range: make the first reserve take the slow path, which
        // reports it.
        let head_cache = if t >= CURSOR_LIMIT { t - cap - 1 } else { head };
        let mut ring = ProducerRing {
            mask: cap - 1,
            max: max_message_len(cap),
            tail: t,
            published: t,
            head_cache,
            limit: 0,
            lap_tag: 0,
            pending_at: 0,
            pending_word: 0,
        };
        if t < CURSOR_LIMIT {
            ring.set_limit();
        }
        Ok(ring)
    }

    /// Recomputes `limit` and `lap_tag` from `tail` and `head_cache`: at the
    /// start of every reserve that is not a quick one, and after a refresh.
    /// (`tail` stays below `CURSOR_LIMIT + 2 * cap`: the first reserve that
    /// pads or finds the ring full past the limit reports it. No overflow.)
    #[inline]
    fn set_limit(&mut self) {
        let lap_end = (self.tail | self.mask) + 1;
        self.limit = lap_end.min(self.head_cache + self.cap());
        self.lap_tag = header_word(0, TAG_MSG, self.tail, self.cap());
    }

    /// The header word of a message of `n` bytes at cursor `at`, which a
    /// quick path (or a reserve that began with `set_limit`) reserved: in
    /// the lap of `lap_tag`.
    #[inline(always)]
    fn msg_word(&self, n: usize, at: u64) -> u64 {
        debug_assert_eq!(self.lap_tag, header_word(0, TAG_MSG, at, self.cap()));
        let _ = at;
        self.lap_tag | n as u64
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.cap()
    }

    /// Whether committed records wait for `publish`.
    pub(crate) fn has_unpublished(&self) -> bool {
        self.tail != self.published
    }

    /// Reserves room for a record of `len` payload bytes. With `slack > 0`,
    /// while the ring is full, reports `Full` until `slack` bytes beyond the
    /// record are free too. A producer spinning on a
    /// full ring then waits for a stretch of free space instead of taking each
    /// freed record at once, so the two sides stop bouncing the cursor lines
    /// between their caches one message at a time.
    #[inline]
    pub(crate) fn try_reserve_slack(
        &mut self,
        mem: &Mem,
        len: usize,
        slack: u64,
    ) -> Result<Reservation, Error> {
        let max = self.max;
        if len > max {
            return Err(Error::TooLarge { len, max });
        }
        // Every reservation made here (not by a quick path) starts in the
        // lap of a fresh `lap_tag`: `commit_publish` relies on it.
        self.set_limit();
        let need = record_size(len as u64);
        if self.fits(need, slack) {
            return Ok(Reservation {
                start: self.tail,
                pad: 0,
                len,
            });
        }
        self.reserve_slow(mem, len, need, slack)
    }

    /// The quick case of `try_reserve_slack(mem, len, 0)`: the record fits
    /// before the end of the ring and the cached head says there is room.
    /// `None`: ask `try_reserve_slack`.
    #[inline(always)]
    pub(crate) fn try_reserve_fast(&self, len: usize) -> Option<Reservation> {
        // `len <= max < 2^32`: `record_size` is exact.
        (len <= self.max && self.fits_fast(record_size(len as u64))).then_some(Reservation {
            start: self.tail,
            pad: 0,
            len,
        })
    }

    /// The quick paths' test: a record of `need` bytes fits before the end
    /// of the ring and in the free space (see `limit`).
    #[inline(always)]
    fn fits_fast(&self, need: u64) -> bool {
        self.tail + need <= self.limit
    }

    /// The test of every other reserve: a record of `need` bytes fits
    /// before the end of the ring, and the cached head says there is room
    /// for it and `slack` bytes more. (`tail - head_cache <= cap + 1`, `need
    /// <= cap / 2` and `slack <= cap / 8`: no overflow.)
    #[inline(always)]
    fn fits(&self, need: u64, slack: u64) -> bool {
        (self.tail & self.mask) + need <= self.cap()
            && self.tail - self.head_cache + need + slack <= self.cap()
    }

    /// `try_reserve_slack` when the record needs padding or the cached head
    /// says full.
    #[cold]
    fn reserve_slow(
        &mut self,
        mem: &Mem,
        len: usize,
        need: u64,
        slack: u64,
    ) -> Result<Reservation, Error> {
        // Our own cursor: below `CURSOR_LIMIT` here, it stays below
        // `CURSOR_LIMIT + cap` until the next look here (the fast path
        // writes at most `cap` bytes beyond `head_cache`), so `tail + pad +
        // need` cannot overflow.
        if self.tail >= CURSOR_LIMIT {
            return Err(corrupted(
                mem,
                "write cursor out of range",
                PROD_AT,
                self.tail,
            ));
        }
        let pos = self.tail & self.mask;
        let contiguous = self.cap() - pos;
        let pad = if need <= contiguous { 0 } else { contiguous };
        let total = pad + need;
        // The room to wait for: the record (with its padding) and the
        // slack, but never more than the whole ring, so that the wait ends
        // once the consumer drains. (`pad < need <= cap / 2`, so the record
        // alone always fits an empty ring.)
        let want = (total + slack).min(self.cap());
        if self.tail - self.head_cache + want > self.cap() {
            self.refresh_head(mem)?;
            if self.tail - self.head_cache + want > self.cap() {
                return Err(Error::Full);
            }
        }
        Ok(Reservation {
            start: self.tail + pad,
            pad,
            len,
        })
    }

    /// The cached head says full: reads the consumer's cursor.
    #[cold]
    fn refresh_head(&mut self, mem: &Mem) -> Result<(), Error> {
        // Acquire: pairs with the consumer's Release store of `head` in
        // `ConsumerRing::publish`; its reads of the bytes it released
        // happen-before our writes into them.
        let head = mem.header().cons.load(Ordering::Acquire);
        if head % 8 != 0 || head < self.head_cache || head > self.published {
            return Err(corrupted(
                mem,
                "consumer cursor out of range",
                CONS_AT,
                head,
            ));
        }
        self.head_cache = head;
        self.set_limit();
        Ok(())
    }

    /// The payload bytes of a reservation.
    #[inline]
    pub(crate) fn payload(&self, mem: &Mem, r: &Reservation) -> *mut u8 {
        // SAFETY: this ring's capacity, read from `mem`'s geometry at
        // attach (a side is only used with the `Mem` it attached to).
        let data = unsafe { Data::of(mem, self.cap()) };
        // SAFETY: a reservation's record (header and `len` payload bytes)
        // does not wrap: it ends at or before `cap` (`try_reserve_*`).
        unsafe { data.bytes((r.start & self.mask) + RECORD_HEADER as u64, r.len) }
    }

    /// Writes the record for `n <= r.len` payload bytes: its terminator and
    /// its header words (the first unpublished one is held back). Not
    /// visible to the consumer until `publish`.
    ///
    /// # Panics
    /// If `n > r.len`.
    #[inline]
    pub(crate) fn commit(&mut self, mem: &Mem, r: &Reservation, n: usize) {
        assert!(n <= r.len, "committed {n} bytes of a {}-byte grant", r.len);
        // SAFETY: this ring's capacity, read from `mem`'s geometry at
        // attach (a side is only used with the `Mem` it attached to).
        let data = unsafe { Data::of(mem, self.cap()) };
        let end = self.terminate(data, r.start + record_size(n as u64));
        let msg = header_word(n as u32, TAG_MSG, r.start, self.cap());
        if r.pad == 0 {
            self.hold_or_store(data, r.start & self.mask, msg);
        } else {
            self.commit_padded(data, *r, msg);
        }
        self.tail = end;
    }

    /// The header word `word` of a committed record at data offset `at`:
    /// held back for `publish` if it is the first unpublished one, else
    /// stored now (the held-back word, stored Release later, publishes it).
    #[inline(always)]
    fn hold_or_store(&mut self, data: Data<'_>, at: u64, word: u64) {
        if self.pending_word == 0 {
            self.pending_at = at;
            self.pending_word = word;
        } else {
            // SAFETY: `at` is a cursor (a multiple of 8), masked.
            let w = unsafe { data.word(at) };
            // Relaxed: published by the Release store of the held-back
            // header word before it (in `publish`).
            w.store(word, Ordering::Relaxed);
        }
    }

    /// Writes the terminator after a record that ends at cursor `end`
    /// (returned), unless the ring is exactly full: the next word is then
    /// the header of the record at `head_cache`, one lap old, which reads
    /// as nothing.
    #[inline(always)]
    fn terminate(&self, data: Data<'_>, end: u64) -> u64 {
        // `end < limit` is the quick proof (`limit <= head_cache + cap`).
        if end < self.limit || end - self.head_cache <= self.mask {
            // SAFETY: `end` is a multiple of 8 (a cursor), masked below `cap`.
            let w = unsafe { data.word(end & self.mask) };
            // Relaxed: published by the Release store of the first
            // unpublished header word (in `publish` or `commit_publish`).
            w.store(0, Ordering::Relaxed);
        }
        end
    }

    /// `commit` of a record after padding: the message's header word now,
    /// the padding's (which comes first) held back or stored.
    /// (`r` by value, as in `commit_then_publish`.)
    #[cold]
    fn commit_padded(&mut self, data: Data<'_>, r: Reservation, msg: u64) {
        let mask = self.mask;
        // SAFETY: `r.start` is a cursor (a multiple of 8), masked.
        let w = unsafe { data.word(r.start & mask) };
        // Relaxed: published with the padding header, stored after it.
        w.store(msg, Ordering::Relaxed);
        let pad = header_word((r.pad - 8) as u32, TAG_PAD, self.tail, self.cap());
        self.hold_or_store(data, self.tail & mask, pad);
    }

    /// Copies `msg` into the ring as one record and commits it; with
    /// `publish`, publishes it (and whatever a batch committed before it)
    /// too, else it waits for `publish`. On `Full` (and any other error)
    /// nothing is written.
    #[inline]
    pub(crate) fn try_write(&mut self, mem: &Mem, msg: &[u8], publish: bool) -> Result<(), Error> {
        let quick = if publish {
            self.try_write_now(mem, msg)
        } else {
            self.try_write_held(mem, msg)
        };
        if quick {
            return Ok(());
        }
        self.write_slow(mem, msg, publish)
    }

    /// The quick paths' record: when it fits before the ring's end and in
    /// the free space (`limit`), copies `msg` in after the header word at
    /// `tail` and writes the terminator; returns the header's position,
    /// the record's end and its header word, which the caller stores (or
    /// holds back). `None`: nothing written.
    #[inline(always)]
    fn write_quick(&self, data: Data<'_>, msg: &[u8]) -> Option<(u64, u64, u64)> {
        let (len, t) = (msg.len(), self.tail);
        // `len <= max < 2^32`, so `record_size` is exact.
        if len > self.max {
            return None;
        }
        let need = record_size(len as u64);
        if !self.fits_fast(need) {
            return None;
        }
        let pos = t & self.mask;
        // SAFETY: the record (header and payload, `need` bytes) starts at
        // `pos` and ends at or before `cap` (`fits_fast`).
        let dst = unsafe { data.bytes(pos + RECORD_HEADER as u64, len) };
        // SAFETY: those bytes lie between the committed records and the end
        // of the free space: the consumer does not read them before their
        // header word is published; `msg` is the caller's memory, so the two
        // do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), dst, len) };
        let end = self.terminate(data, t + need);
        Some((pos, end, self.msg_word(len, t)))
    }

    /// `try_write(mem, msg, false)`'s quick case alone: one record in a
    /// batch, no padding, room by the cached head; its header word is held
    /// back if it is the batch's first unpublished one, else stored at once
    /// (the held-back word publishes it). `false`: nothing written.
    #[inline(always)]
    pub(crate) fn try_write_held(&mut self, mem: &Mem, msg: &[u8]) -> bool {
        // SAFETY: this ring's capacity, read from `mem`'s geometry at
        // attach (a side is only used with the `Mem` it attached to).
        let data = unsafe { Data::of(mem, self.cap()) };
        let Some((pos, end, word)) = self.write_quick(data, msg) else {
            return false;
        };
        self.hold_or_store(data, pos, word);
        self.tail = end;
        true
    }

    /// `try_write(mem, msg, true)`'s quick case alone: one record,
    /// published at once, nothing pending before it, no padding, and room
    /// by the cached head. `false`: nothing written (ask `try_write`).
    #[inline(always)]
    pub(crate) fn try_write_now(&mut self, mem: &Mem, msg: &[u8]) -> bool {
        let t = self.tail;
        if t != self.published {
            return false;
        }
        // SAFETY: this ring's capacity, read from `mem`'s geometry at
        // attach (a side is only used with the `Mem` it attached to).
        let data = unsafe { Data::of(mem, self.cap()) };
        let Some((pos, end, word)) = self.write_quick(data, msg) else {
            return false;
        };
        // SAFETY: `pos` is a masked cursor, a multiple of 8.
        let w = unsafe { data.word(pos) };
        // Release: as in `publish`.
        w.store(word, Ordering::Release);
        // Release: as in `publish`.
        mem.header().prod.store(end, Ordering::Release);
        self.tail = end;
        self.published = end;
        true
    }

    /// `try_write` inside a batch, after one, with padding, or when the
    /// cached head says full.
    #[inline(never)]
    fn write_slow(&mut self, mem: &Mem, msg: &[u8], publish: bool) -> Result<(), Error> {
        let r = self.try_reserve_slack(mem, msg.len(), 0)?;
        let dst = self.payload(mem, &r);
        // SAFETY: the reservation covers `msg.len()` bytes of the data area
        // that the consumer does not read before we publish them (they lie
        // between the published records and the free space's end); `msg` is
        // the caller's memory, so the two do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), dst, msg.len()) };
        if publish {
            self.commit_publish(mem, &r, msg.len());
        } else {
            self.commit(mem, &r, msg.len());
        }
        Ok(())
    }

    /// `commit`, then `publish`: one record (after whatever a batch
    /// committed before it) made visible at once.
    ///
    /// # Panics
    /// If `n > r.len`.
    #[inline(always)]
    pub(crate) fn commit_publish(&mut self, mem: &Mem, r: &Reservation, n: usize) {
        assert!(n <= r.len, "committed {n} bytes of a {}-byte grant", r.len);
        // `r.start == tail + r.pad` and `published <= tail`: equal only
        // without padding and with nothing pending (one comparison for both).
        debug_assert_eq!(r.start, self.tail + r.pad);
        if r.start != self.published {
            self.commit_then_publish(mem, *r, n);
            return;
        }
        // No padding and nothing pending: no header word to hold back.
        // SAFETY: this ring's capacity, read from `mem`'s geometry at
        // attach (a side is only used with the `Mem` it attached to).
        let data = unsafe { Data::of(mem, self.cap()) };
        let end = self.terminate(data, r.start + record_size(n as u64));
        // No padding: `r.start` is the `tail` of a quick reserve or of one
        // that began with `set_limit`.
        let msg = self.msg_word(n, r.start);
        // SAFETY: `r.start` is a cursor (a multiple of 8), masked.
        let w = unsafe { data.word(r.start & self.mask) };
        // Release: as in `publish`.
        w.store(msg, Ordering::Release);
        // Release: as in `publish`.
        mem.header().prod.store(end, Ordering::Release);
        self.tail = end;
        self.published = end;
    }

    /// `commit_publish` after padding or a batch's commits.
    ///
    /// `r` by value: a reference handed to an out-of-line function lets the
    /// caller's grant escape, and the compiler then keeps every grant in
    /// memory on the quick path too (6 instructions per grant round,
    /// callgrind); the copy is made only here, on the cold path.
    #[cold]
    fn commit_then_publish(&mut self, mem: &Mem, r: Reservation, n: usize) {
        self.commit(mem, &r, n);
        self.publish(mem);
    }

    /// Makes every committed record visible with one store. Returns whether
    /// anything was published (then the caller wakes the consumer).
    #[inline]
    pub(crate) fn publish(&mut self, mem: &Mem) -> bool {
        if self.tail == self.published {
            return false;
        }
        // SAFETY: `self.cap()` is this ring's capacity, read from `mem`'s
        // geometry at attach; `pending_at` is a masked cursor (set in
        // `commit`).
        let w = unsafe { Data::of(mem, self.cap()).word(self.pending_at) };
        // Release: pairs with the consumer's Acquire load of this header
        // word in `ConsumerRing::try_peek`: the payloads, terminators and
        // header words written before it are visible to a consumer that
        // sees it.
        w.store(self.pending_word, Ordering::Release);
        self.pending_word = 0;
        // Release: pairs with the Acquire loads of `tail` at attach (a
        // successor producer, a consumer) and with tools' reads.
        mem.header().prod.store(self.tail, Ordering::Release);
        self.published = self.tail;
        true
    }

    /// Bytes in the ring as far as this producer knows (upper bound).
    pub(crate) fn used(&self) -> u64 {
        self.tail - self.head_cache
    }
}

/// The consumer's private state.
#[derive(Debug)]
pub(crate) struct ConsumerRing {
    cap: u64,
    /// `max_message_len(cap)`.
    max: u64,
    /// Next read cursor, including read but unreleased records.
    head: u64,
    /// Last value stored to the shared `head`.
    released: u64,
    /// Whether the last look found nothing.
    empty: bool,
    /// What the upper half of a message header word at `head` must be
    /// (`msg_hi`: the tag with `head`'s lap parity), which the quick look
    /// compares with. Kept without a test per release: the quick look takes
    /// no record that ends a lap (those go to `peek_slow`), so only
    /// `peek_slow` moves `head` into another lap or hands out a record
    /// whose release does, and it sets this field for the cursor after what
    /// it returns. Between `peek_slow` returning a lap's last record and its
    /// release, the field names the next lap, and the quick look at the
    /// unreleased record's header (this lap's tag) sends it back to
    /// `peek_slow`.
    lap_hi: u64,
}

impl ConsumerRing {
    /// Starts from the shared cursors.
    pub(crate) fn attach(mem: &Mem) -> Result<ConsumerRing, Error> {
        let cap = mem.geometry().capacity;
        let h = mem.header();
        // Acquire: as in `ProducerRing::attach`.
        let head = h.cons.load(Ordering::Acquire);
        let tail = h.prod.load(Ordering::Acquire);
        if let Some(e) = check_cursors(mem, tail, head, cap) {
            return Err(e);
        }
        Ok(ConsumerRing {
            cap,
            max: max_message_len(cap) as u64,
            head,
            released: head,
            empty: false,
            lap_hi: msg_hi(head, cap),
        })
    }

    /// The next record, without consuming it. Skips padding.
    #[inline]
    pub(crate) fn try_peek(&mut self, mem: &Mem) -> Result<Record, Error> {
        // SAFETY: this ring's capacity, read from `mem`'s geometry at
        // attach (a side is only used with the `Mem` it attached to).
        self.peek(unsafe { Data::of(mem, self.cap) })
    }

    #[inline(always)]
    fn peek(&mut self, data: Data<'_>) -> Result<Record, Error> {
        match self.peek_fast(data) {
            Ok(r) => Ok(r),
            Err(w) => self.peek_slow(data, w),
        }
    }

    /// The next record if the word at `head` is a valid message header of
    /// this lap; else the word (nothing yet, padding, a bad word), which
    /// `peek_slow` sorts out.
    #[inline(always)]
    fn peek_fast(&mut self, data: Data<'_>) -> Result<Record, u64> {
        let head = self.head;
        let pos = head & (self.cap - 1);
        // SAFETY: `head` is a multiple of 8 (checked at attach; every record
        // and padding size is one), masked below `cap`.
        let w = unsafe { data.word(pos) };
        // Acquire: pairs with the producer's Release store of the header
        // word in `ProducerRing::publish` (or `commit_publish`): the record's
        // payload (and the terminator after it) are visible once its
        // header is.
        let w = w.load(Ordering::Acquire);
        if w >> 32 == self.lap_hi {
            let len = w as u32 as u64;
            let size = record_size(len);
            // `head` is below `CURSOR_LIMIT` at attach and is checked
            // against it at every slow look (nothing yet, padding): a
            // producer would have to keep the ring busy, without one
            // padding record, for the 2^62 bytes (years at any rate) it
            // takes to push `head` near overflow. A record that ends the
            // lap (`pos + size == cap`) is `peek_slow`'s (see `lap_hi`).
            if len <= self.max && pos + size < self.cap {
                self.empty = false;
                return Ok(Record {
                    at: pos + RECORD_HEADER as u64,
                    len: len as usize,
                    next: head + size,
                });
            }
        }
        Err(w)
    }

    /// `try_peek`'s quick case alone (see `peek_fast`).
    #[inline]
    pub(crate) fn try_peek_fast(&mut self, mem: &Mem) -> Option<Record> {
        // SAFETY: this ring's capacity, read from `mem`'s geometry at
        // attach (a side is only used with the `Mem` it attached to).
        self.peek_fast(unsafe { Data::of(mem, self.cap) }).ok()
    }

    /// `try_peek` when the word at `head` is not a valid message header
    /// (nothing yet, padding, or corrupted).
    #[cold]
    fn peek_slow(&mut self, data: Data<'_>, mut w: u64) -> Result<Record, Error> {
        let mem = data.mem;
        let mask = self.cap - 1;
        // The check `peek_fast` leaves to us (see there): below the limit,
        // `head` plus two records cannot overflow.
        if self.head >= CURSOR_LIMIT {
            return Err(corrupted(
                mem,
                "read cursor out of range",
                CONS_AT,
                self.head,
            ));
        }
        // At most one padding record precedes a message: after it the position
        // is 0, where padding is invalid. So two rounds suffice.
        for round in 0..2 {
            let head = self.head;
            let pos = head & mask;
            if round > 0 {
                // SAFETY: as in `peek_fast`.
                let word = unsafe { data.word(pos) };
                // Acquire: as in `peek_fast`.
                w = word.load(Ordering::Acquire);
            }
            match decode(w, head, self.cap) {
                Word::Msg(len) => {
                    let size = record_size(len);
                    if len > self.max || pos + size > self.cap {
                        return Err(corrupted(mem, "bad record length", mem.at_data(pos), w));
                    }
                    self.empty = false;
                    // The lap after this record: its release may end the
                    // lap (see `lap_hi`).
                    self.lap_hi = msg_hi(head + size, self.cap);
                    return Ok(Record {
                        at: pos + RECORD_HEADER as u64,
                        len: len as usize,
                        next: head + size,
                    });
                }
                Word::Pad(len) => {
                    let size = self.cap - pos;
                    if pos == 0 || len + 8 != size {
                        return Err(corrupted(mem, "bad padding record", mem.at_data(pos), w));
                    }
                    self.head += size;
                }
                Word::Nothing => {
                    self.empty = true;
                    // After padding, `head` is in the next lap. (An honest
                    // producer publishes padding with the record after it,
                    // so only a scribbling one gets here that way; the
                    // field then still names `head`'s lap, and a lap-old
                    // header at 0 reads as nothing, not as a message.)
                    self.lap_hi = msg_hi(self.head, self.cap);
                    return Err(Error::Empty);
                }
                Word::Bad => {
                    return Err(corrupted(mem, "bad record tag", mem.at_data(pos), w));
                }
            }
        }
        let pos = self.head & mask;
        Err(corrupted(mem, "padding after padding", mem.at_data(pos), 0))
    }

    /// The payload bytes of a record.
    #[inline]
    pub(crate) fn payload(&self, mem: &Mem, r: &Record) -> *mut u8 {
        // SAFETY: this ring's capacity, read from `mem`'s geometry at
        // attach (a side is only used with the `Mem` it attached to).
        let data = unsafe { Data::of(mem, self.cap) };
        // SAFETY: a record was validated to lie inside the ring (`peek`:
        // its position plus its size is at most `cap`).
        unsafe { data.bytes(r.at, r.len) }
    }

    /// Copies the next record into `buf` and consumes it locally (the
    /// producer sees the space after `publish`); returns its length. Only
    /// the quick case (`peek_fast` finds a message that fits `buf`);
    /// `None`: nothing was consumed (ask `try_peek`, which tells empty,
    /// padding, a corruption and a short buffer apart).
    #[inline(always)]
    pub(crate) fn try_read_into_fast(&mut self, mem: &Mem, buf: &mut [u8]) -> Option<usize> {
        // SAFETY: this ring's capacity, read from `mem`'s geometry at
        // attach (a side is only used with the `Mem` it attached to).
        let data = unsafe { Data::of(mem, self.cap) };
        let r = self.peek_fast(data).ok()?;
        let dst = buf.get_mut(..r.len)?;
        // SAFETY: the record was validated to lie inside the ring (`peek`:
        // position plus record size within `cap`), payload padded to a
        // multiple of 8 bytes.
        let src = unsafe { data.bytes(r.at, r.len) };
        // SAFETY: `src` is 8-aligned (a cursor plus the header, masked) and
        // the payload rounded up to 8 bytes is inside the record; `copy_out`
        // reads it with atomic loads, never through a reference.
        unsafe { crate::sync::copy_out(src, dst) };
        self.head = r.next;
        Some(r.len)
    }

    /// Consumes `r` locally; the producer sees the space after `publish`.
    #[inline]
    pub(crate) fn release(&mut self, r: &Record) {
        self.head = r.next;
    }

    /// Frees every released record with one store. Returns whether anything
    /// was freed (then the caller wakes the producer).
    #[inline]
    pub(crate) fn publish(&mut self, mem: &Mem) -> bool {
        if self.head == self.released {
            return false;
        }
        self.publish_now(mem);
        true
    }

    /// `publish` right after a record was consumed (so there is something
    /// to free): the store, without the comparison.
    #[inline]
    pub(crate) fn publish_now(&mut self, mem: &Mem) {
        debug_assert_ne!(self.head, self.released);
        let head = self.head;
        // Release: pairs with the producer's Acquire load of `head` in
        // `ProducerRing::refresh_head`: our reads of the freed bytes
        // happen-before it overwrites them.
        mem.header().cons.store(head, Ordering::Release);
        self.released = head;
    }

    /// Whether the last look at the ring found no message.
    pub(crate) fn looks_empty(&self) -> bool {
        self.empty
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::layout::{Geometry, Kind};

    fn ring(cap: u64) -> Mem {
        Mem::heap(Geometry {
            kind: Kind::Spsc,
            capacity: cap,
            slot_size: 0,
            max_producers: 1,
            max_consumers: 1,
        })
    }

    fn read(c: &mut ConsumerRing, mem: &Mem) -> Result<Vec<u8>, Error> {
        let r = c.try_peek(mem)?;
        let mut buf = vec![0; r.len];
        // SAFETY: a record `try_peek` validated (8-aligned, inside the ring).
        unsafe { crate::sync::copy_out(c.payload(mem, &r), &mut buf) };
        c.release(&r);
        Ok(buf)
    }

    /// A producer that died between publishing a record (its header word)
    /// and storing its cursor: its successor continues after the record.
    #[test]
    fn successor_skips_records_published_after_the_last_cursor_store() {
        let mem = ring(256);
        let mut p = ProducerRing::attach(&mem).unwrap();
        p.try_write(&mem, b"one", true).unwrap();
        p.try_write(&mem, &[2; 20], true).unwrap();
        let end = p.tail;
        // The cursor store of the second record never happened.
        mem.header().prod.store(16, Ordering::Relaxed);
        let mut p2 = ProducerRing::attach(&mem).unwrap();
        assert_eq!(p2.tail, end);
        p2.try_write(&mem, b"three", true).unwrap();
        let mut c = ConsumerRing::attach(&mem).unwrap();
        assert_eq!(read(&mut c, &mem).unwrap(), b"one");
        assert_eq!(read(&mut c, &mem).unwrap(), [2; 20]);
        assert_eq!(read(&mut c, &mem).unwrap(), b"three");
        assert_eq!(read(&mut c, &mem), Err(Error::Empty));
    }

    /// A 64-byte ring that two 24-byte messages, `[1; 24]` and `[2; 24]`,
    /// fill exactly, and its two ends.
    fn exactly_full() -> (Mem, ProducerRing, ConsumerRing) {
        let mem = ring(64);
        let mut p = ProducerRing::attach(&mem).unwrap();
        let c = ConsumerRing::attach(&mem).unwrap();
        p.try_write(&mem, &[1; 24], true).unwrap();
        p.try_write(&mem, &[2; 24], true).unwrap();
        (mem, p, c)
    }

    /// Two 24-byte messages fill a 64-byte ring exactly: no terminator fits,
    /// and the word after the second record is the first record's header,
    /// one lap old, which must read as nothing until the third message
    /// replaces it.
    #[test]
    fn exactly_full_ring_reads_as_nothing_until_the_next_lap() {
        let (mem, mut p, mut c) = exactly_full();
        assert_eq!(p.try_write(&mem, &[3; 24], true), Err(Error::Full));
        assert_eq!(read(&mut c, &mem).unwrap(), [1; 24]);
        assert_eq!(read(&mut c, &mem).unwrap(), [2; 24]);
        assert_eq!(read(&mut c, &mem), Err(Error::Empty));
        assert!(c.looks_empty());
        assert!(c.publish(&mem));
        p.try_write(&mem, &[3; 24], true).unwrap();
        assert_eq!(read(&mut c, &mem).unwrap(), [3; 24]);
        assert_eq!(read(&mut c, &mem), Err(Error::Empty));
    }

    /// A lap's last record comes from `peek_slow`, which then names the
    /// next lap in `lap_hi` before the record is released: looking at the
    /// record again (a receive into a short buffer, a batch's peek) still
    /// finds it, the quick copy-out path included, and once it is released
    /// the first record's header, one lap old, reads as nothing.
    #[test]
    fn a_laps_last_record_can_be_looked_at_again_before_its_release() {
        let (mem, mut p, mut c) = exactly_full();
        assert_eq!(read(&mut c, &mem).unwrap(), [1; 24]);
        let first = c.try_peek(&mem).unwrap();
        assert_eq!((first.at, first.len, first.next), (40, 24, 64));
        assert_eq!(c.try_read_into_fast(&mem, &mut [0; 8]), None);
        let again = c.try_peek(&mem).unwrap();
        assert_eq!((again.at, again.len, again.next), (40, 24, 64));
        assert_eq!(read(&mut c, &mem).unwrap(), [2; 24]);
        assert_eq!(read(&mut c, &mem), Err(Error::Empty));
        assert!(c.try_peek_fast(&mem).is_none());
        c.publish(&mem);
        p.try_write(&mem, &[3; 24], true).unwrap();
        let mut buf = [0; 24];
        assert_eq!(c.try_read_into_fast(&mem, &mut buf), Some(24));
        assert_eq!(buf, [3; 24]);
        assert_eq!(read(&mut c, &mem), Err(Error::Empty));
    }

    /// A batch holds back its first header word: nothing is visible until
    /// `publish`, then every record is, padding included.
    #[test]
    fn batch_is_invisible_until_published() {
        let mem = ring(64);
        let mut p = ProducerRing::attach(&mem).unwrap();
        let mut c = ConsumerRing::attach(&mem).unwrap();
        p.try_write(&mem, &[1; 24], true).unwrap();
        assert_eq!(read(&mut c, &mem).unwrap(), [1; 24]);
        c.publish(&mem);
        // 16 + 16 bytes after the first record, then one that needs the
        // 0 position again (padding of 0 bytes: it ends exactly at 64).
        p.try_write(&mem, &[2; 8], false).unwrap();
        p.try_write(&mem, &[3; 8], false).unwrap();
        p.try_write(&mem, &[4; 16], false).unwrap();
        assert_eq!(read(&mut c, &mem), Err(Error::Empty));
        assert!(p.publish(&mem));
        assert_eq!(read(&mut c, &mem).unwrap(), [2; 8]);
        assert_eq!(read(&mut c, &mem).unwrap(), [3; 8]);
        assert_eq!(read(&mut c, &mem).unwrap(), [4; 16]);
        assert_eq!(read(&mut c, &mem), Err(Error::Empty));
        c.publish(&mem);
        // Head at 88 (position 24). A record at 24..48, then one that needs
        // 16 bytes of padding and fills the ring exactly (no terminator):
        // in a batch, the padding header is not the held-back word.
        p.try_write(&mem, &[5; 16], false).unwrap();
        p.try_write(&mem, &[6; 16], false).unwrap();
        assert_eq!(read(&mut c, &mem), Err(Error::Empty));
        p.publish(&mem);
        assert_eq!(read(&mut c, &mem).unwrap(), [5; 16]);
        assert_eq!(read(&mut c, &mem).unwrap(), [6; 16]);
        assert_eq!(read(&mut c, &mem), Err(Error::Empty));
        c.publish(&mem);
        p.try_write(&mem, &[7; 8], true).unwrap();
        assert_eq!(read(&mut c, &mem).unwrap(), [7; 8]);
        c.publish(&mem);
        // Head at 168 (position 40): now the first record of the batch needs
        // 24 bytes of padding, and the padding header is the held-back word.
        p.try_write(&mem, &[8; 24], false).unwrap();
        p.try_write(&mem, &[], false).unwrap();
        assert_eq!(read(&mut c, &mem), Err(Error::Empty));
        p.publish(&mem);
        assert_eq!(read(&mut c, &mem).unwrap(), [8; 24]);
        assert_eq!(read(&mut c, &mem).unwrap(), []);
        assert_eq!(read(&mut c, &mem), Err(Error::Empty));
    }
}
